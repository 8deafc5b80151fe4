"""The plugin contract: every hook initgraph calls, when it calls it, and what it passes.

A plugin is a module (or any object) with functions marked ``@initgraph.hookimpl`` whose names are
those below. Hooks are called with keyword arguments, so an implementation may take any subset of
a hook's parameters, in any order. A name starting with ``initgraph_`` that is not a hook here is
a :class:`~initgraph.PluginError` when the plugin is loaded (a misspelling never goes unnoticed).

The life of a boot, in the order the hooks run::

    initgraph_plan(plan)                  parent, once per plugin, before any worker starts
    initgraph_init(ctx)                   a worker (or, for where = "main", the boot's thread)
    initgraph_commit(ctx, result)         the boot's thread, cookie order within the domain
    initgraph_boot_finished(boot)         parent, once per plugin, after the last commit
    initgraph_shutdown(ctx, result)       the boot's thread, at Boot.close(), commits reversed

"The boot's thread" is the thread that called ``boot()`` (for ``aboot``/``lifespan``, the event
loop's thread): objects made in a ``where = "main"`` init or a commit can be used in the later
hooks of the same plugin. ``initgraph_commit`` and ``initgraph_shutdown`` may be ``async def``.

Hook wrappers (``@hookimpl(wrapper=True)``) of one plugin wrap the hook implementations of every
plugin, as in any pluggy application: a wrapper of ``initgraph_commit`` sees every commit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from ._boot.plugins import CommitContext, InitContext
    from ._boot.run import Boot, Plan

__all__ = ["hookimpl", "hookspec"]

PROJECT = "initgraph"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def initgraph_plan(plan: Plan) -> None:
    """See the whole plan before the boot runs: every plugin with its cookie, domain and requires.

    Called in the parent once per plugin (each instance of a module), before any worker starts.
    ``plan`` is read-only; raise to stop the boot (the error is reported as this plugin's
    :class:`~initgraph.PluginError`).
    """


@hookspec(firstresult=True)
def initgraph_init(ctx: InitContext) -> Any:
    """Do the plugin's start-up work and return its result.

    Runs once per boot in a worker process, out of order: it starts as soon as every plugin it
    requires has finished its init (committed or not) and a worker is free. With
    ``where = "main"`` it runs on the boot's thread instead, after every lower ``where = "main"``
    init, one at a time; its ``ctx.synchronize()`` waits for lower cookies' inits, not commits.
    Its return value must pickle (unless it runs in the parent); it becomes
    ``ctx.results[name]`` for dependents and is passed to ``initgraph_commit``. A plugin without
    this hook never goes to a worker: its result is ``None``.

    Kernel style: call ``ctx.synchronize()`` and then ``ctx.publish(key, value)`` to publish from
    here, in cookie order within the domain. Publishing before synchronizing raises
    :class:`~initgraph.OrderingError`.

    It may be ``async def``: in a worker it runs in an event loop made for this init and closed
    when it returns (``asyncio.run`` style), so it may open many connections concurrently; with
    ``where = "main"`` it is awaited on the boot's loop under ``aboot``/``lifespan`` and runs in
    a loop of its own under ``boot()``. It waits with ``await ctx.asynchronize()``.
    """


@hookspec
def initgraph_commit(ctx: CommitContext, result: Any) -> None:
    """Publish the result of this plugin's init: the boot's thread, cookie order in its domain.

    ``ctx.registry`` is the boot's registry; ``ctx.publish`` adds to it. A plugin without this
    hook has its result recorded only. Commits of one domain never interleave; a commit runs only
    after every lower cookie of its domain is over and every plugin it requires has committed.
    If one of those fails to commit, this plugin does not commit: it is skipped.
    """


@hookspec
def initgraph_shutdown(ctx: CommitContext, result: Any) -> None:
    """Close what this plugin opened: the boot's thread, once, in reverse commit order.

    Called for every plugin that committed, when the boot is closed: :meth:`Boot.close`, the end
    of ``with initgraph.boot(...) as boot:`` or of ``async with initgraph.lifespan(...)``, the end
    of ``initgraph run``, and at once when a boot fails or is interrupted (what committed is
    shut down before the error is raised). The last plugin to commit is the first shut down:
    within a domain that is reverse cookie order; domains interleave as their commits did,
    reversed. A plugin that did not commit is not called.

    ``result`` is the init's result; ``ctx`` is the commit's context, and ``ctx.publish`` raises
    (the registry is closed). A hook that raises is reported and the others still run. A hook
    has ``shutdown_timeout`` seconds (plugin key, default 10) within a total cap
    (``[initgraph] shutdown_timeout``, default 30): a plain hook past its time is reported and
    waited for (code on the boot's thread cannot be stopped), an ``async def`` one is cancelled;
    hooks whose turn comes after the cap are not run, and reported.
    """


@hookspec
def initgraph_boot_finished(boot: Boot) -> None:
    """See the finished boot: registry, results, failures and timings; once per plugin, at the end.

    Called whether the boot succeeded or not, before :class:`~initgraph.BootError` is raised.
    """
