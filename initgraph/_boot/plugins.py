"""Plugins: loading them into pluggy, the contexts hooks get, and the initcall that runs a plugin.

The initcall :func:`run_init` is what a worker runs for a plugin. It rebuilds the boot's plugin
manager in the worker once (with ``fork`` it is inherited ready-made) so that hook wrappers of
every plugin wrap the init of each one, exactly as in the parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import importlib
import inspect
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pluggy

from .. import hookspecs
from .._core import runtime as _runtime
from .._core.store import Handle
from .._defs import ENTRY_POINT_GROUP
from .._errors import OrderingError, PluginError

__all__ = [
    "NOT_IMPLEMENTED",
    "CommitContext",
    "InitContext",
    "InitResult",
    "InitSpec",
    "LazyResults",
    "PluginSource",
    "arun_init",
    "call_one",
    "implements",
    "is_async_init",
    "load_plugins",
    "run_in_own_loop",
    "run_init",
]

HOOKS = sorted(n for n in dir(hookspecs) if n.startswith("initgraph_"))


class _NotImplemented:
    def __repr__(self) -> str:
        return "NOT_IMPLEMENTED"


NOT_IMPLEMENTED: Any = _NotImplemented()


@dataclass(frozen=True)
class PluginSource:
    """Where a plugin's code comes from: a module name or an entry point of group initgraph."""

    name: str
    module: str | None = None
    entry_point: str | None = None

    def describe(self) -> str:
        return f"module {self.module}" if self.module else f"entry point {self.entry_point}"


@contextlib.contextmanager
def on_path(paths: Sequence[str]) -> Iterator[None]:
    added = [p for p in paths if p not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for p in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(p)


def load_plugins(sources: Sequence[PluginSource], paths: Sequence[str]) -> pluggy.PluginManager:
    """A plugin manager with one registered object per plugin, checked for misspellings.

    A module (or entry point) may back several plugins: each is registered as an
    :class:`_Instance` of its own, under its own name, so pluggy sees one object per plugin and
    two instances never share a registration. Raises PluginError naming the plugin whose module
    fails to import, forbids a second instance, has no hook implementation, whose hook
    implementation does not match the contract, or which implements an unknown hook.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    first_of: dict[int, str] = {}  # id of a loaded module -> the first plugin it backs
    with on_path(paths):
        for source in sources:
            loaded = _load(source)
            first = first_of.setdefault(id(loaded), source.name)
            if first != source.name and getattr(loaded, SINGLE_INSTANCE, False) is True:
                msg = (
                    f"plugin {source.name!r}: {source.describe()} allows only one instance "
                    f"({SINGLE_INSTANCE} = True) and already backs plugin {first!r}; "
                    f"remove one of them"
                )
                raise PluginError(msg, plugin=source.name)
            instance = _Instance(source.name, loaded)
            try:
                pm.register(instance, name=source.name)
            except (pluggy.PluginValidationError, ValueError) as exc:
                msg = f"plugin {source.name!r} breaks the hook contract: {exc}"
                raise PluginError(msg, plugin=source.name) from exc
    for name, plugin in pm.list_name_plugin():
        for attr in dir(plugin):
            if attr.startswith("initgraph_") and attr not in HOOKS:
                if not callable(getattr(plugin, attr, None)):
                    continue
                close = difflib.get_close_matches(attr, HOOKS, n=1)
                hint = (
                    f"; did you mean {close[0]!r}?" if close else f"; hooks are {', '.join(HOOKS)}"
                )
                msg = f"plugin {name!r} implements unknown hook {attr!r}{hint}"
                raise PluginError(msg, plugin=str(name))
    for source in sources:
        _check_marked(pm, source, pm.get_plugin(source.name))
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        plugin_name = pm.get_name(exc.plugin) or "?"
        msg = f"plugin {plugin_name!r}: {exc}"
        raise PluginError(msg, plugin=plugin_name) from exc
    return pm


SINGLE_INSTANCE = "initgraph_single_instance"
"""A module attribute: ``initgraph_single_instance = True`` lets the module back one plugin only."""


class _Instance:
    """What pluggy registers for one plugin: the ``initgraph_*`` attributes of its module.

    A module backing several plugins is wrapped once per plugin, so each plugin has its own
    registration (and its own name on every hook implementation) while the functions, and the
    module's globals, stay the module's.
    """

    def __init__(self, name: str, loaded: object) -> None:
        self._initgraph_name = name
        self._initgraph_loaded = loaded
        for attr in dir(loaded):
            if attr.startswith("initgraph_"):
                with contextlib.suppress(Exception):
                    setattr(self, attr, getattr(loaded, attr))

    def __repr__(self) -> str:
        return f"<plugin {self._initgraph_name!r} of {self._initgraph_loaded!r}>"


def _check_marked(pm: pluggy.PluginManager, source: PluginSource, instance: object) -> None:
    """Refuse a plugin with a hook function not marked ``@hookimpl``, or with no hook at all.

    pluggy ignores an unmarked function silently, so such a plugin would run nothing.
    """
    registered = {caller.name for caller in pm.get_hookcallers(instance) or ()}
    unmarked = [h for h in HOOKS if h not in registered and callable(getattr(instance, h, None))]
    if unmarked:
        msg = (
            f"plugin {source.name!r}: {unmarked[0]} in {source.describe()} is not marked "
            f"@initgraph.hookimpl; add the decorator"
        )
        raise PluginError(msg, plugin=source.name)
    if not registered:
        msg = (
            f"plugin {source.name!r}: {source.describe()} has no hook implementation; "
            f"mark its hooks with @initgraph.hookimpl"
        )
        raise PluginError(msg, plugin=source.name)


def _load(source: PluginSource) -> Any:
    try:
        if source.module is not None:
            return importlib.import_module(source.module)
        from importlib import metadata

        eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
        matches = [ep for ep in eps if ep.name == source.entry_point]
        if not matches:
            msg = (
                f"plugin {source.name!r}: no entry point {source.entry_point!r} in group "
                f"{ENTRY_POINT_GROUP!r}; is its distribution installed?"
            )
            raise PluginError(msg, plugin=source.name)
        return matches[0].load()
    except PluginError:
        raise
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        msg = (
            f"plugin {source.name!r}: importing {source.describe()} failed: "
            f"{type(exc).__name__}: {exc}"
        )
        raise PluginError(msg, plugin=source.name) from exc


def implements(pm: pluggy.PluginManager, hook_name: str, plugin: str) -> bool:
    """Whether ``plugin`` has an implementation of the hook of its own, not just a wrapper.

    Wrappers (``wrapper=True`` or ``hookwrapper=True``, of any plugin) wrap only the plugins
    that implement the hook: :func:`call_one` calls nothing for the others.
    """
    impls = getattr(pm.hook, hook_name).get_hookimpls()
    return any(i.plugin_name == plugin and not (i.wrapper or i.hookwrapper) for i in impls)


def call_one(pm: pluggy.PluginManager, hook_name: str, plugin: str, **kwargs: Any) -> Any:
    """Call ``plugin``'s implementation of a hook, wrapped by every plugin's wrappers.

    Returns NOT_IMPLEMENTED, calling no wrapper, when the plugin does not implement the hook.
    """
    if not implements(pm, hook_name, plugin):
        return NOT_IMPLEMENTED
    hook = getattr(pm.hook, hook_name)
    impls = hook.get_hookimpls()
    chosen = [i for i in impls if i.wrapper or i.hookwrapper or i.plugin_name == plugin]
    firstresult = bool(hook.spec and hook.spec.opts.get("firstresult"))
    return pm._hookexec(hook.name, chosen, kwargs, firstresult)


# -- the contexts ---------------------------------------------------------------------------------
class _Context:
    """What every hook of a plugin sees."""

    def __init__(
        self,
        *,
        name: str,
        cookie: int,
        domain: str,
        config: Mapping[str, Any],
        results: Mapping[str, Any],
    ) -> None:
        self.name = name
        self.cookie = cookie
        self.domain = domain
        self.config = config
        self.results = results
        self.log = logging.getLogger(f"initgraph.plugin.{name}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.cookie}_{self.name} domain={self.domain!r}>"


class InitContext(_Context):
    """The context of ``initgraph_init``: ``synchronize()`` then ``publish()``, kernel style."""

    __module__ = "initgraph"

    def __init__(
        self,
        *,
        sync: Callable[[int, str, float | None], None],
        async_sync: Callable[[int, str, float | None], Awaitable[None]] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self._sync = sync
        self._async_sync = async_sync
        self._synchronized = False
        self.publications: list[tuple[str, Any]] = []

    def synchronize(self, timeout: float | None = None) -> None:
        """Wait until every lower cookie of this plugin's domain is done: its turn to publish."""
        self._sync(self.cookie, self.domain, timeout)
        self._synchronized = True

    async def asynchronize(self, timeout: float | None = None) -> None:
        """``await ctx.asynchronize()``: :meth:`synchronize` for an ``async def`` init.

        The wait runs in a thread (``asyncio.to_thread``), so the init's event loop goes on
        running its other tasks meanwhile.
        """
        if self._async_sync is None:
            await asyncio.to_thread(self._sync, self.cookie, self.domain, timeout)
        else:
            await self._async_sync(self.cookie, self.domain, timeout)
        self._synchronized = True

    def publish(self, key: str, value: Any) -> None:
        """Publish ``key`` after every earlier plugin's publications in this domain."""
        if not self._synchronized:
            msg = (
                f"plugin {self.name!r} published {key!r} in initgraph_init before "
                f"ctx.synchronize(); call ctx.synchronize() first, or publish from "
                f"initgraph_commit"
            )
            raise OrderingError(msg)
        _check_key(self.name, key)
        self.publications.append((key, value))


class CommitContext(_Context):
    """The context of ``initgraph_commit``, in the parent, in cookie order within the domain."""

    __module__ = "initgraph"

    def __init__(self, *, registry: Any, publish: Callable[[str, Any], None], **kw: Any) -> None:
        super().__init__(**kw)
        self.registry = registry
        self._publish = publish

    def synchronize(self, timeout: float | None = None) -> None:
        """Nothing to wait for: a commit runs only after every lower cookie of its domain."""

    def publish(self, key: str, value: Any) -> None:
        """Publish ``key`` to the registry now."""
        _check_key(self.name, key)
        self._publish(key, value)


def _check_key(plugin: str, key: Any) -> None:
    if not isinstance(key, str) or not key:
        msg = f"plugin {plugin!r} published key {key!r}; keys are non-empty str"
        raise PluginError(msg, plugin=plugin)


# -- the initcall of a plugin ---------------------------------------------------------------------
@dataclass(frozen=True)
class InitSpec:
    """Everything a worker needs to run one plugin's init."""

    boot_id: str
    plugin: str
    domain: str
    config: Mapping[str, Any]
    results: Mapping[str, Any]
    sources: tuple[PluginSource, ...]
    paths: tuple[str, ...]


@dataclass(frozen=True)
class InitResult:
    """What a plugin's init produced: its value and what it published, in order."""

    value: Any
    publications: tuple[tuple[str, Any], ...] = field(default=())


class LazyResults(Mapping[str, Any]):
    """``ctx.results`` in a worker: a required plugin's result is loaded when first read.

    The boot puts the store handles of required results into the init's data, forwarded
    without being loaded in the parent; a plugin that never reads ``ctx.results["x"]`` never
    maps it. Arrays read here are read-only views of shared memory (``arr.copy()`` to write).
    """

    def __init__(self, given: Mapping[str, Any]) -> None:
        self._given = given
        self._loaded: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name in self._loaded:
            return self._loaded[name]
        value = self._given[name]
        if isinstance(value, Handle):
            value = value.value()
            if isinstance(value, InitResult):  # a plugin's initcall returns its InitResult
                value = value.value
        self._loaded[name] = value
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._given)

    def __len__(self) -> int:
        return len(self._given)

    def __repr__(self) -> str:
        return f"<results {sorted(self._given)!r}>"


_managers: dict[str, pluggy.PluginManager] = {}


def remember(boot_id: str, pm: pluggy.PluginManager) -> None:
    """Keep the boot's plugin manager so forked workers inherit it instead of rebuilding it."""
    _managers.clear()
    _managers[boot_id] = pm


def forget(boot_id: str) -> None:
    _managers.pop(boot_id, None)


def run_init(spec: InitSpec, cookie: int) -> InitResult:
    """The initcall of a plugin: run its ``initgraph_init`` with every wrapper around it.

    An ``async def`` init runs to completion in an event loop of its own, made for it and
    closed when it returns (``asyncio.run`` style): in a worker, or under a blocking boot.
    """
    ctx, value = _start_init(spec, cookie)
    if inspect.isawaitable(value):
        value = run_in_own_loop(value)
    return _init_result(ctx, value)


async def arun_init(spec: InitSpec, cookie: int) -> InitResult:
    """:func:`run_init` on a running event loop (a ``where = "main"`` init under ``aboot``).

    An ``async def`` init is awaited on that loop.
    """
    ctx, value = _start_init(spec, cookie)
    if inspect.isawaitable(value):
        value = await value
    return _init_result(ctx, value)


def is_async_init(pm: pluggy.PluginManager, plugin: str) -> bool:
    """Whether ``plugin``'s own ``initgraph_init`` is ``async def``."""
    impls = pm.hook.initgraph_init.get_hookimpls()
    return any(
        i.plugin_name == plugin
        and not (i.wrapper or i.hookwrapper)
        and inspect.iscoroutinefunction(i.function)
        for i in impls
    )


def run_in_own_loop(pending: Awaitable[Any]) -> Any:
    """Run ``pending`` in a new event loop on this thread, closed once it is done."""

    async def wrapped() -> Any:
        return await pending

    return asyncio.run(wrapped())


def _start_init(spec: InitSpec, cookie: int) -> tuple[InitContext, Any]:
    pm = _managers.get(spec.boot_id)
    if pm is None:
        pm = load_plugins(spec.sources, spec.paths)
        remember(spec.boot_id, pm)
    runtime = _runtime.active_runtime()

    def sync(c: int, domain: str, timeout: float | None) -> None:
        runtime.synchronize_cookie(c, domain=domain, timeout=timeout)

    ctx = InitContext(
        sync=sync,
        async_sync=_sync_in_thread(runtime),
        name=spec.plugin,
        cookie=cookie,
        domain=spec.domain,
        config=spec.config,
        results=LazyResults(spec.results),
    )
    with on_path(spec.paths):
        value = call_one(pm, "initgraph_init", spec.plugin, ctx=ctx)
    return ctx, value


def _init_result(ctx: InitContext, value: Any) -> InitResult:
    if value is NOT_IMPLEMENTED:
        value = None
    return InitResult(value, tuple(ctx.publications))


def _sync_in_thread(
    runtime: _runtime.Runtime,
) -> Callable[[int, str, float | None], Coroutine[Any, Any, None]]:
    """``ctx.asynchronize()`` of an initcall: the blocking wait, run in a thread of its own.

    The runtime keeps the running initcalls and the waits per thread: the thread takes over the
    caller's running stack (so a wait that would deadlock is refused as in ``synchronize()``)
    and hands its recorded waits back (so the trace shows them).
    """

    async def asynchronize(c: int, domain: str, timeout: float | None) -> None:
        running = list(runtime.running())
        waits: list[Any] = []

        def wait() -> None:
            runtime.running()[:] = running
            try:
                runtime.synchronize_cookie(c, domain=domain, timeout=timeout)
            finally:
                waits.extend(runtime.take_waits())
                runtime.running().clear()

        try:
            await asyncio.to_thread(wait)
        finally:
            if runtime.running():
                runtime.waits().extend(waits)

    return asynchronize
