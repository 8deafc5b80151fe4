"""A boot: plan the plugins, run their inits out of order, commit in order, report.

::

    load_config ─► plan_order ─► load_plugins ─► initgraph_plan(plan)
        │ every plugin gets its cookie now, in plan order (Scheduler.reserve)
        ▼
    launch a plugin once everything it requires has finished its init
        (pool: Reservation.provide ─► a worker runs run_init; main: run in a thread here;
         no initgraph_init: ended here at once with result None)
        ▼
    outcomes arrive in any order ─► commit each domain in cookie order, each plugin after
        everything it requires committed: the init's publications, then initgraph_commit
        ▼
    Boot(registry, results, failures, timings) ─► initgraph_boot_finished(boot)

Cookies are given at plan time in dependency order, ties broken by file order, so each domain's
commit order — and the registry's log — is the same on every run, whatever finished first.
What to launch, commit or cancel next is decided by :class:`~.state.BootState`, which has no
I/O in it; ``_Run`` here carries its decisions out and feeds it what happened.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import Any, Protocol, cast

import pluggy

from .._core.scheduler import (
    Outcome,
    Reservation,
    Scheduler,
    as_hook_error,
    default_start_method,
)
from .._defs import ENTRY_POINT_GROUP
from .._errors import (
    BootError,
    ConfigError,
    HookError,
    HookTimeout,
    InitgraphError,
    PluginError,
    RegistryConflict,
)
from . import plugins as _plugins
from .conditions import skipped_plugins
from .config import Config, FrozenMapping, PluginConfig, load_config
from .debuglog import debug_lines
from .graph import plan_order
from .plugins import (
    CommitContext,
    InitResult,
    InitSpec,
    LazyResults,
    PluginSource,
    Results,
    Retry,
)
from .state import Attempt, BootState, Failure, Record, Stage, Transfer, Wait, describe_error

__all__ = [
    "Attempt",
    "Boot",
    "Failure",
    "Plan",
    "PlannedPlugin",
    "Publication",
    "Registry",
    "Timing",
    "Transfer",
    "Wait",
    "boot",
    "check",
    "plan",
]


# -- the plan ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlannedPlugin:
    """One plugin of a plan, with the cookie it will get.

    The retry and shutdown fields are the plugin's keys with the ``[initgraph]`` defaults
    applied: ``retries`` after the first attempt, the first ``retry_delay`` (doubling, at most
    ``retry_delay_max``), ``retry_on``, ``retry_crashes``, and ``shutdown_timeout``.
    """

    name: str
    cookie: int
    domain: str
    requires: tuple[str, ...]
    where: str
    optional: bool
    timeout: float | None
    source: str
    retries: int = 0
    retry_delay: float = 1.0
    retry_delay_max: float = 60.0
    retry_on: tuple[str, ...] = ()
    retry_crashes: bool = False
    shutdown_timeout: float = 10.0


@dataclass(frozen=True)
class Plan:
    """Every plugin of a boot in cookie order, and how the boot will run.

    ``skipped``: each plugin a condition left out (``enabled``, ``when``, ``--disable``, or a
    skipped requirement), with why, in plan order; they have no cookie and never run.
    """

    __module__ = "initgraph"

    path: str | None
    plugins: tuple[PlannedPlugin, ...]
    workers: int
    start_method: str
    on_error: str
    skipped: Mapping[str, str] = FrozenMapping()

    def __iter__(self) -> Iterator[PlannedPlugin]:
        return iter(self.plugins)

    def plugin(self, name: str) -> PlannedPlugin:
        """The planned plugin called ``name``."""
        for p in self.plugins:
            if p.name == name:
                return p
        raise KeyError(name)


def _with_entry_points(config: Config) -> Config:
    if not config.settings.entry_points:
        return config
    named = {p.name for p in config.plugins}
    targets = {p.entry_point for p in config.plugins if p.entry_point}
    extra = [
        PluginConfig(name=ep.name, entry_point=ep.name)
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
        if ep.name not in named and ep.name not in targets
    ]
    return replace(config, plugins=config.plugins + tuple(extra))


def _make_plan(config: Config) -> tuple[Plan, tuple[PluginConfig, ...]]:
    skipped = skipped_plugins(config)
    running = [p for p in config.plugins if p.name not in skipped]
    ordered = plan_order(running, path=config.path)
    settings = config.settings
    planned = tuple(
        PlannedPlugin(
            name=p.name,
            cookie=i,
            domain=p.domain,
            requires=p.requires,
            where=p.where,
            optional=p.optional,
            timeout=p.timeout if p.timeout is not None else settings.timeout,
            source=f"module {p.module}" if p.module else f"entry point {p.entry_point}",
            retries=settings.retries if p.retries is None else p.retries,
            retry_delay=settings.retry_delay if p.retry_delay is None else p.retry_delay,
            retry_delay_max=settings.retry_delay_max,
            retry_on=p.retry_on,
            retry_crashes=p.retry_crashes,
            shutdown_timeout=p.shutdown_timeout,
        )
        for i, p in enumerate(ordered, start=1)
    )
    workers = settings.workers or os.cpu_count() or 1
    method = settings.start_method or default_start_method()
    the_plan = Plan(
        config.path, planned, workers, method, settings.on_error, FrozenMapping(skipped)
    )
    return the_plan, ordered


def plan(config: str | os.PathLike[str] | Mapping[str, Any], **overrides: Any) -> Plan:
    """Validate ``config`` and plan it, starting nothing: what ``initgraph check`` prints."""
    loaded = _with_entry_points(load_config(config, **overrides))
    return _make_plan(loaded)[0]


def check(config: str | os.PathLike[str] | Mapping[str, Any], **overrides: Any) -> Plan:
    """:func:`plan`, and load every planned plugin as a boot would, calling no hook.

    What ``initgraph check`` runs: every :class:`PluginError` a boot would raise before its first
    hook (a module that fails to import, a misspelled or unmarked hook, a module with no hook, a
    second instance of a single-instance module) is raised here.
    """
    loaded = _with_entry_points(load_config(config, **overrides))
    the_plan, ordered = _make_plan(loaded)
    sources = tuple(PluginSource(p.name, p.module, p.entry_point) for p in ordered)
    _plugins.load_plugins(sources, loaded.settings.paths)
    _resolve_retry_on(loaded, the_plan)
    return the_plan


def _resolve_retry_on(config: Config, the_plan: Plan) -> None:
    """Import every ``retry_on`` name now, so a misspelled one fails before any work."""
    file = config.path or "config"
    for p in the_plan.plugins:
        if p.retry_on:
            where = f"plugins.{p.name}.retry_on"
            try:
                _plugins.retry_types(p.retry_on, config.settings.paths, where=where)
            except ConfigError as exc:
                raise ConfigError(f"{file}: {exc}", path=config.path, key=exc.key) from None


# -- what a boot leaves ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Publication:
    """One entry of the registry's log."""

    cookie: int
    domain: str
    plugin: str
    key: str
    value: Any


class Registry(Mapping[str, Any]):
    """The boot's published keys, read-only; ``log`` has every publication in order."""

    __module__ = "initgraph"

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}
        self._owners: dict[str, str] = {}
        self._log: list[Publication] = []

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"<Registry {len(self)} keys>"

    @property
    def log(self) -> tuple[Publication, ...]:
        """Every publication in the order it happened (cookie order within a domain)."""
        return tuple(self._log)

    def owner(self, key: str) -> str:
        """The plugin that published ``key``."""
        return self._owners[key]

    def _check(self, pub: Publication) -> None:
        first = self._owners.get(pub.key)
        if first is not None:
            self._conflict(pub, first)

    def _conflict(self, pub: Publication, first: str) -> None:
        msg = (
            f"key {pub.key!r} published twice: first by plugin {first!r}, then by plugin "
            f"{pub.plugin!r}; give one of them another key"
        )
        raise RegistryConflict(msg, key=pub.key, first=first, second=pub.plugin)

    def _apply(self, pubs: tuple[Publication, ...], mark: int) -> None:
        """Publish ``pubs`` (already checked), resuming where an interrupted call stopped.

        ``mark`` is the length of the log before the first call. Each entry is applied values,
        owners, then log, and the log says how far it got, so calling this again after an
        interrupt completes the batch without repeating an entry.
        """
        for pub in pubs[len(self._log) - mark :]:
            self._values[pub.key] = pub.value
            self._owners[pub.key] = pub.plugin
            self._log.append(pub)


@dataclass(frozen=True)
class Timing:
    """When things happened to one plugin, in seconds since the boot started."""

    scheduled: float
    ready: float | None = None  # launched: every plugin it requires had finished its init
    started: float | None = None
    ended: float | None = None
    commit_started: float | None = None
    commit_ended: float | None = None
    pid: int | None = None
    waits: tuple[Wait, ...] = ()
    shutdown_started: float | None = None
    shutdown_ended: float | None = None
    attempts: tuple[Attempt, ...] = ()  # each attempt, when its init was retried
    transfers: tuple[Transfer, ...] = ()  # its result and inputs between processes

    @property
    def init_time(self) -> float | None:
        """How long its init ran."""
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started

    @property
    def commit_time(self) -> float | None:
        """How long its commit ran."""
        if self.commit_started is None or self.commit_ended is None:
            return None
        return self.commit_ended - self.commit_started

    @property
    def shutdown_time(self) -> float | None:
        """How long its ``initgraph_shutdown`` ran."""
        if self.shutdown_started is None or self.shutdown_ended is None:
            return None
        return self.shutdown_ended - self.shutdown_started

    @property
    def waited(self) -> float | None:
        """How long it was ready before a worker started it."""
        if self.ready is None or self.started is None:
            return None
        return max(0.0, self.started - self.ready)


_STATUS = {
    "error": "failed",
    "timeout": "timeout",
    "crash": "crashed",
    "skipped": "skipped",
    "cancelled": "cancelled",
}


@dataclass
class Boot:
    """The finished boot: its plan, registry, results, failures and timings.

    A context manager: leaving the ``with`` block calls :meth:`close`, which runs the committed
    plugins' ``initgraph_shutdown`` in reverse commit order. ``shutdown_failures`` says which
    shutdown hooks failed, ran past their time or were not run.
    """

    __module__ = "initgraph"

    plan: Plan
    registry: Registry
    results: Results = field(default_factory=Results)
    failures: dict[str, Failure] = field(default_factory=dict)
    timings: dict[str, Timing] = field(default_factory=dict)
    wall: float = 0.0
    shutdown_failures: dict[str, Failure] = field(default_factory=dict)
    # Seconds since the start: when the pool was up, and when the boot's work was done and the
    # pool began to stop (None if the boot never got there).
    pool_started: float | None = None
    pool_stopping: float | None = None
    _shutdown: _Shutdown | None = field(default=None, repr=False, compare=False)

    def close(self) -> None:
        """Shut down every committed plugin, last committed first; a second call does nothing.

        Call it on the thread that called ``boot()``: the shutdown hooks run on the calling
        thread. An ``async def`` shutdown hook runs to completion in an event loop of its own.
        A failing hook is recorded in ``shutdown_failures`` and the others still run.
        """
        if self._shutdown is not None:
            self._shutdown.run(self)

    async def aclose(self) -> None:
        """:meth:`close` for a boot made by ``aboot``: ``async def`` hooks are awaited here."""
        if self._shutdown is not None:
            await self._shutdown.arun(self)

    def __enter__(self) -> Boot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def shutdown_wall(self) -> float | None:
        """Seconds from the first shutdown hook's start to the last one's end, if any ran."""
        timings = self.timings.values()
        started = [t.shutdown_started for t in timings if t.shutdown_started is not None]
        ended = [t.shutdown_ended for t in timings if t.shutdown_ended is not None]
        if not started or not ended:
            return None
        return max(ended) - min(started)

    @property
    def ok(self) -> bool:
        """True when every plugin committed, except optional ones and what follows from them.

        A plugin skipped because an optional plugin it requires failed does not fail the boot.
        """
        for name, failure in self.failures.items():
            if self.plan.plugin(name).optional:
                continue
            root = failure.root
            if failure.kind == "skipped" and root is not None and self.plan.plugin(root).optional:
                continue
            return False
        return True

    def status(self, plugin: str) -> str:
        """``ok``, ``failed``, ``timeout``, ``crashed``, ``skipped`` or ``cancelled``."""
        if plugin in self.plan.skipped:  # left out at plan time by a condition
            return "skipped"
        failure = self.failures.get(plugin)
        if failure is None:
            return "ok" if plugin in self.results else "cancelled"
        return _STATUS[failure.kind]

    def summary(self) -> str:
        """One line saying how the boot went."""
        in_order = [self.failures[p.name] for p in self.plan if p.name in self.failures]
        failed = [f for f in in_order if f.kind not in ("skipped", "cancelled")]
        if not failed and not self.ok:  # nothing failed, yet not everything committed
            return (
                f"boot of {len(self.plan.plugins)} plugins stopped after {self.wall:.3f} s; "
                f"{len(self.failures)} plugin(s) did not commit"
            )
        if not failed:
            return f"boot of {len(self.plan.plugins)} plugins finished in {self.wall:.3f} s"
        first = failed[0]
        rest = len(self.failures) - 1
        more = f"; {rest} other plugin(s) did not commit" if rest else ""
        return f"boot failed: plugin {first.plugin!r}: {first.message}{more}"


@dataclass(frozen=True)
class Interruption:
    """Where a boot stood when an interrupt stopped it.

    Attached to the ``KeyboardInterrupt`` (or the CLI's SIGTERM subclass of it) that leaves
    :func:`run_boot`; :func:`interruption` reads it. Each plugin is in exactly one group, and
    each group is in cookie order. ``boot`` is the boot as it stood: every plugin that did not
    commit has a :class:`Failure` of kind ``"cancelled"`` saying why, unless it had one already.
    """

    boot: Boot
    after: float  # seconds from the start of the boot to the interrupt
    committed: tuple[str, ...]  # init finished, commit done: everything it published is visible
    uncommitted: tuple[str, ...]  # init finished, not committed: it published nothing
    running: tuple[str, ...]  # handed to a worker (or a thread of the parent), not finished
    failed: tuple[str, ...]  # did not commit for another reason before the interrupt
    not_started: tuple[str, ...]  # never handed over


_INTERRUPTION = "_initgraph_interruption"


def interruption(exc: BaseException) -> Interruption | None:
    """The :class:`Interruption` a boot attached to ``exc``, if any."""
    found = getattr(exc, _INTERRUPTION, None)
    return found if isinstance(found, Interruption) else None


# -- running a boot ------------------------------------------------------------------------------
def boot(
    config: str | os.PathLike[str] | Mapping[str, Any], *, check: bool = True, **overrides: Any
) -> Boot:
    """Plan, run and commit every plugin of ``config`` (a path to init.toml, or a dict).

    ``overrides`` replace keys of the ``[initgraph]`` table (``workers=8``). Raises
    :class:`ConfigError` or :class:`PluginError` before any worker starts, and
    :class:`BootError` (carrying the :class:`Boot`) when a plugin that is not optional failed,
    unless ``check=False``. Every process it started is gone when it returns or raises.

    ``where = "main"`` inits, commits and (at :meth:`Boot.close`) shutdown hooks run on the
    calling thread. A boot that fails or is interrupted shuts down what committed before it
    raises; the shutdown's failures are notes of the error and ``boot.shutdown_failures``.
    """
    return run_boot(config, check=check, overrides=overrides)


# Kernel-style initcall lines (``calling  3_corpus @ 1234`` ...) for embedders, at DEBUG level;
# the same lines as ``initgraph run --debug``.
_DEBUG_LOG = logging.getLogger("initgraph.initcall_debug")
_LOG = logging.getLogger("initgraph")

Watcher = Callable[[Mapping[str, float], Mapping[str, str]], None]


Prepared = tuple[
    Config, Plan, tuple[PluginConfig, ...], tuple[PluginSource, ...], pluggy.PluginManager
]
"""A config loaded, planned, its plugins loaded and ``initgraph_plan`` called: ready to run."""


def load(
    config: str | os.PathLike[str] | Mapping[str, Any], overrides: Mapping[str, Any]
) -> Prepared:
    """Load and plan ``config`` and load its plugins, calling no hook and starting nothing."""
    loaded = _with_entry_points(load_config(config, **overrides))
    the_plan, ordered = _make_plan(loaded)
    sources = tuple(PluginSource(p.name, p.module, p.entry_point) for p in ordered)
    pm = _plugins.load_plugins(sources, loaded.settings.paths)
    _resolve_retry_on(loaded, the_plan)
    return loaded, the_plan, ordered, sources, pm


def call_plan(prepared: Prepared) -> None:
    """Call every plugin's ``initgraph_plan``."""
    _call_each(prepared[4], prepared[1], "initgraph_plan", plan=prepared[1])


def prepare(
    config: str | os.PathLike[str] | Mapping[str, Any], overrides: Mapping[str, Any]
) -> Prepared:
    """Load and plan ``config``, load its plugins and call ``initgraph_plan``; start nothing.

    What every way of running a config shares: a boot, and ``inprocess.run_in_process``.
    """
    prepared = load(config, overrides)
    call_plan(prepared)
    return prepared


def run_boot(
    config: str | os.PathLike[str] | Mapping[str, Any],
    *,
    check: bool = True,
    overrides: Mapping[str, Any],
    watch: Watcher | None = None,
) -> Boot:
    """:func:`boot`, plus ``watch(running, waiting)`` called on every event and 4 times a second.

    ``running``: each plugin handed to the pool and not finished, with when it was handed over
    (``time.monotonic()``); ``waiting``: each plugin not yet started, with the requirement it
    waits on. For progress displays. ``watch`` is called from the boot's coordinating thread.
    """
    run = _Run(prepare(config, overrides), _ThreadOwner(), watch)
    try:
        run.run()
    except BaseException as exc:
        run.shutdown_after(exc)
        raise
    try:
        run.finished()
    except KeyboardInterrupt as exc:  # the boot is over: every plugin committed or failed
        run.interrupted(exc)
        run.shutdown_after(exc)
        raise
    return run.checked(check)


def _call_each(pm: pluggy.PluginManager, the_plan: Plan, hook: str, **kwargs: Any) -> None:
    """Call ``hook`` plugin by plugin, in plan order, so an error names its plugin."""
    for p in the_plan.plugins:
        try:
            _plugins.call_one(pm, hook, p.name, **kwargs)
        except Exception as exc:
            msg = f"plugin {p.name!r}: {hook} raised {describe_error(exc)}"
            raise PluginError(msg, plugin=p.name) from exc


# -- the thread that owns the boot ---------------------------------------------------------------
Job = Callable[[], "Awaitable[None] | None"]
"""Work for the owner's thread: a main init, a commit. It may return what is left to await."""


class Owner(Protocol):
    """The thread a boot belongs to, fed jobs by the boot's coordinating thread.

    ``submit`` is called from the coordinating thread; the jobs run on the owner's thread, one
    at a time, in the order submitted. ``None`` ends them: the coordinator is done.
    """

    def submit(self, job: Job | None) -> None: ...


class _ThreadOwner:
    """The owner of a blocking ``boot()``: the calling thread runs the jobs in a loop."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()

    def submit(self, job: Job | None) -> None:
        self.jobs.put(job)

    def serve(self) -> None:
        """Run jobs until the coordinator is done."""
        while (job := self.jobs.get()) is not None:
            pending = job()
            if pending is not None:
                run_to_completion(pending)

    def drain(self) -> None:
        """Drop the jobs left until the coordinator is done: the boot is stopping."""
        while self.jobs.get() is not None:
            pass


def run_to_completion(pending: Awaitable[Any]) -> Any:
    """Run ``pending`` in an event loop of its own on this thread, ``asyncio.run`` style."""

    async def wrapped() -> Any:
        return await pending

    return asyncio.run(wrapped())


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def awaitables(returned: Any) -> list[Awaitable[Any]]:
    """What a hook's ``async def`` implementations returned, to be awaited."""
    if not isinstance(returned, list):
        return [returned] if inspect.isawaitable(returned) else []
    return [r for r in returned if inspect.isawaitable(r)]


def _close_unawaited(pending: list[Awaitable[Any]]) -> None:
    for aw in pending:
        if inspect.iscoroutine(aw):
            aw.close()  # never started: no "never awaited" warning


async def _await_all(pending: list[Awaitable[Any]]) -> None:
    try:
        for aw in pending:
            await aw
    finally:
        _close_unawaited(pending)


@dataclass(frozen=True)
class _CommitEnded:
    """The owner's report of a commit: when it really began and ended, and its error."""

    name: str
    started: float
    ended: float
    error: BaseException | None


class _Stop:
    """Asks the coordinator to stop the boot now (an interrupt or a cancellation)."""


class _Stopped(BaseException):
    """Raised in the coordinator to leave the scheduler as an interrupt does: stop at once."""


class _Run:
    """One boot while it runs, used once: the I/O around its :class:`BootState`.

    Two threads share the work::

        owner thread (called boot(), or runs the event loop)   coordinator thread
        ─────────────────────────────────────────────────────   ──────────────────────────────
        start() ─────────────────────────────────────────────►  with Scheduler: reserve cookies
                                                                loop: outcomes and reports in,
        serve(): run each job ◄─────── submit(job) ──────────   the state decides: provide()
          where = "main" init (Reservation.run_here)            pool work, cancel, submit main
          commit ──────── _CommitEnded report ──────────────►   inits and commits in order
        ◄──────────────────── submit(None) ──────────────────   scheduler closed: done
        finished(): initgraph_boot_finished; close(): initgraph_shutdown, reverse commit order

    The coordinator (:class:`_Coordinator`) alone writes the state while it runs (the owner
    reports through the scheduler's listener queue, so the coordinator waits on one queue); once
    it has ended, the owner takes over the state for interrupts and shutdown. An interrupt or
    cancellation on the owner's thread asks the coordinator to stop, drops the jobs still queued
    and waits for it: the scheduler then stops its processes at once.
    """

    def __init__(self, prepared: Prepared, owner: Owner, watch: Watcher | None = None) -> None:
        config, the_plan, ordered, sources, pm = prepared
        self.owner = owner
        self.watch = watch
        self.config = config
        self.plan = the_plan
        self.configs = {p.name: p for p in ordered}
        self.sources = sources
        self.pm = pm
        self.boot_id = uuid.uuid4().hex
        self.boot = Boot(the_plan, Registry())
        self.by_cookie = {p.cookie: p for p in the_plan.plugins}
        self.by_name = {p.name: p for p in the_plan.plugins}
        self.state = BootState(the_plan.plugins, on_error=the_plan.on_error)
        self.stopped_at: float | None = None  # when an interrupt stopped the boot
        self.reservations: dict[str, Reservation] = {}
        # Plugins without an initgraph_init of their own: nothing to send to a worker.
        self.no_init = frozenset(
            p.name
            for p in the_plan.plugins
            if not _plugins.implements(pm, "initgraph_init", p.name)
        )
        self.t0 = 0.0
        self.coordinator: threading.Thread | None = None
        self.stop_requested = threading.Event()
        self.events: queue.SimpleQueue[Any] | None = None  # the scheduler's listener queue
        self.error: BaseException | None = None  # what ended the coordinator, if not done

    def now(self) -> float:
        return time.monotonic() - self.t0

    # -- the owner's side ------------------------------------------------------------------------
    def start(self) -> None:
        self.t0 = time.monotonic()
        _plugins.remember(self.boot_id, self.pm)
        self.boot._shutdown = _Shutdown(self)
        self.coordinator = threading.Thread(
            target=_Coordinator(self).coordinate, name="initgraph-boot", daemon=True
        )
        self.coordinator.start()

    def run(self) -> Boot:
        """Run the boot with this thread as its owner; see the class docstring."""
        owner = self.owner
        assert isinstance(owner, _ThreadOwner)
        self.start()
        try:
            owner.serve()
        except BaseException as exc:
            self.stop()
            owner.drain()
            self.ended(exc)
            raise
        self.ended(None)
        return self.boot

    def stop(self) -> None:
        """Ask the coordinator to stop the boot now; the owner then drains its jobs."""
        self.stopped_at = self.now()
        self.stop_requested.set()
        events = self.events
        if events is not None:
            events.put(_Stop())

    def ended(self, exc: BaseException | None) -> None:
        """The coordinator is done (or stopping): wait for it, then record the boot's end.

        ``exc`` is what stopped the owner, if anything; an interrupt or cancellation is given the
        :class:`Interruption`. An error of the coordinator itself is raised here.
        """
        assert self.coordinator is not None
        self.coordinator.join()
        _plugins.forget(self.boot_id)
        # The frames of an error's traceback may keep this run: it must not keep the
        # reservations (the closed scheduler's, whose shared memory stays mapped while anything
        # refers to it), nor the coordinator's error, whose traceback holds the frames of its
        # thread: that would make a cycle.
        self.reservations.clear()
        self.events = None
        raised = self.error if exc is None else None
        self.error = None
        self.boot.wall = time.monotonic() - self.t0
        stopped_by = exc if exc is not None else raised
        if stopped_by is not None and not isinstance(stopped_by, Exception):
            self.interrupted(stopped_by)
        self.boot.failures = self.state.failures()
        self.boot.timings = {
            r.name: _timing(r) for r in self.state.records() if r.scheduled is not None
        }
        if raised is not None:
            try:
                raise raised
            finally:
                del raised, stopped_by  # its traceback holds this frame

    def finished(self) -> None:
        """After a boot that ran to its end: the debug lines, then ``initgraph_boot_finished``."""
        the_plan, result = self.plan, self.boot
        if _DEBUG_LOG.isEnabledFor(logging.DEBUG):
            for line in debug_lines(
                (p.cookie, p.name, t.pid, t.started, t.ended, t.waits)
                for p in the_plan.plugins
                if (t := result.timings.get(p.name)) is not None
                and t.pid is not None
                and t.started is not None
                and t.ended is not None
            ):
                _DEBUG_LOG.debug("%s", line)
        _call_each(self.pm, the_plan, "initgraph_boot_finished", boot=result)

    def checked(self, check: bool) -> Boot:
        """The boot, or (``check``, and it failed) :class:`BootError` after shutting it down."""
        if check and not self.boot.ok:
            err = BootError(self.boot.summary(), boot=self.boot)
            self.shutdown_after(err)
            try:
                raise err
            finally:
                del err  # its traceback holds this frame: no cycle back through a local
        return self.boot

    def shutdown_after(self, exc: BaseException) -> None:
        """Shut down what committed before ``exc`` leaves the boot; attach its failures to it.

        Nothing to do before the boot started (a bad config) or once it was shut down.
        """
        shutdown = self.boot._shutdown
        if shutdown is None or self.coordinator is None:
            return
        shutdown.run(self.boot)
        attach_shutdown_failures(exc, self.boot.shutdown_failures)

    async def ashutdown_after(self, exc: BaseException) -> None:
        shutdown = self.boot._shutdown
        if shutdown is None or self.coordinator is None:
            return
        await shutdown.arun(self.boot)
        attach_shutdown_failures(exc, self.boot.shutdown_failures)

    def interrupted(self, exc: BaseException) -> None:
        """Record where the boot stood and attach it to ``exc``, the interrupt that stopped it."""
        groups = self.state.interrupt()
        self.boot.failures = self.state.failures()
        after = self.stopped_at if self.stopped_at is not None else self.now()
        found = Interruption(
            self.boot,
            after,
            committed=groups.committed,
            uncommitted=groups.uncommitted,
            running=groups.running,
            failed=groups.failed,
            not_started=groups.not_started,
        )
        setattr(exc, _INTERRUPTION, found)

    def run_main_init(self, p: PlannedPlugin, spec: InitSpec) -> Awaitable[None] | None:
        """A ``where = "main"`` init, on the owner's thread (a job).

        An ``async def`` init is left to the owner to await: on the event loop under ``aboot``,
        in a loop of its own under ``boot()``.
        """
        if _plugins.is_async_init(self.pm, p.name):
            return self.await_main_init(p, spec)
        outcome = self.reservations[p.name].run_here(_plugins.run_init, spec)
        if isinstance(outcome.error, KeyboardInterrupt):
            # Ctrl-C lands in the owner's thread, here in the plugin's code: it stops the boot.
            raise outcome.error
        return None

    async def await_main_init(self, p: PlannedPlugin, spec: InitSpec) -> None:
        """The rest of an ``async def`` main init: awaited, as a job's pending part."""
        outcome = await self.reservations[p.name].arun_here(_plugins.arun_init, spec)
        if isinstance(outcome.error, (KeyboardInterrupt, asyncio.CancelledError)):
            raise outcome.error  # the boot's task was cancelled: stop the boot

    def commit(self, p: PlannedPlugin, init: InitResult, required: dict[str, Any]) -> Job:
        """The job that commits ``p`` on the owner's thread and reports how it went."""

        def job() -> Awaitable[None] | None:
            started = self.now()
            registry = self.boot.registry
            staged: dict[str, Publication] = {}

            def publish(key: str, value: Any) -> None:
                # Checked now, so the error points at the publish; applied only once the whole
                # commit succeeded, so a failed commit leaves nothing half-published.
                pub = Publication(p.cookie, p.domain, p.name, key, value)
                registry._check(pub)
                if key in staged:
                    registry._conflict(pub, p.name)
                staged[key] = pub

            try:
                for key, value in init.publications:
                    publish(key, value)
                ctx = CommitContext(
                    registry=registry,
                    publish=publish,
                    name=p.name,
                    cookie=p.cookie,
                    domain=p.domain,
                    config=self.configs[p.name].config,
                    results=LazyResults(required),
                )
                # loaded here only for a hook that takes it (a result from a worker is not)
                has_hook = _plugins.implements(self.pm, "initgraph_commit", p.name)
                returned = _plugins.call_one(
                    self.pm,
                    "initgraph_commit",
                    p.name,
                    ctx=ctx,
                    result=init.value if has_hook else None,
                )
            except Exception as exc:
                self.report(_CommitEnded(p.name, started, self.now(), self.commit_error(p, exc)))
                return None
            pending = awaitables(returned)
            if pending:
                return self.await_commit(p, init, staged, pending, started)
            self.publish_all(p, init, staged, started)
            return None

        return job

    async def await_commit(
        self,
        p: PlannedPlugin,
        init: InitResult,
        staged: dict[str, Publication],
        pending: list[Awaitable[Any]],
        started: float,
    ) -> None:
        """The rest of an ``async def`` commit: awaited, then published as a plain one is."""
        try:
            await _await_all(pending)
        except Exception as exc:
            self.report(_CommitEnded(p.name, started, self.now(), self.commit_error(p, exc)))
            return
        self.publish_all(p, init, staged, started)

    def commit_error(self, p: PlannedPlugin, exc: Exception) -> InitgraphError:
        if isinstance(exc, InitgraphError):
            return exc
        msg = f"initgraph_commit of plugin {p.name!r} raised {describe_error(exc)}"
        err = HookError(msg, cookie=p.cookie, name=p.name)
        err.__cause__ = exc
        return err

    def publish_all(
        self, p: PlannedPlugin, init: InitResult, staged: dict[str, Publication], started: float
    ) -> None:
        # Publishing and reporting the commit are one step. An interrupt is raised between any
        # two bytecodes of this thread; one that lands inside the step does not cut it short:
        # the step is completed, then the interrupt goes on (it is only bookkeeping by now:
        # every check passed, no plugin code runs). So a plugin's publications are all visible
        # or none, and it is committed exactly when they are. The coordinator takes a repeated
        # report as the same one.
        pubs = tuple(staged.values())
        mark = len(self.boot.registry._log)
        ended = self.now()
        try:
            self.settle(p, init, pubs, mark, started, ended)
        except BaseException:
            self.settle(p, init, pubs, mark, started, ended)
            raise

    def settle(
        self,
        p: PlannedPlugin,
        init: InitResult,
        pubs: tuple[Publication, ...],
        mark: int,
        started: float,
        ended: float,
    ) -> None:
        """Publish ``pubs`` and report ``p`` committed; a second call completes the first."""
        self.boot.registry._apply(pubs, mark)
        self.boot.results[p.name] = init  # its value is loaded when read
        self.report(_CommitEnded(p.name, started, ended, None))

    def report(self, what: _CommitEnded) -> None:
        assert self.events is not None
        self.events.put(what)


class _Coordinator:
    """The coordinator thread's side of a :class:`_Run`: the scheduler and the state's decisions.

    It alone writes the run's state while it runs: reserves every cookie, takes the outcomes
    and the owner's commit reports from one queue, asks the state what may start, commit, be
    skipped or cancelled, and carries that out (``provide``, ``cancel``, jobs for the owner).
    It holds the scheduler; once its thread ends, nothing refers to it.
    """

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.sched: Scheduler
        self.main_inits: list[Job] = []  # launched, to submit once the due commits are

    def coordinate(self) -> None:
        """The coordinating thread: the scheduler, the state's decisions, then ``submit(None)``."""
        try:
            settings = self.run.config.settings
            with Scheduler(
                self.run.plan.workers,
                start_method=self.run.plan.start_method,
                max_pending=settings.max_pending,
                max_result_bytes=settings.max_result_bytes,
                worker_threads=settings.worker_threads,
                worker_nice=settings.worker_nice,
            ) as sched:
                self.run.boot.pool_started = self.run.now()
                self.sched = sched
                self.run.events = cast("queue.SimpleQueue[Any]", sched.listen())
                for p in self.run.plan.plugins:
                    # A worker that ends what a pool init requires is kept for it a moment
                    # while this thread hands its work over (see Scheduler.reserve).
                    pooled = p.where != "main" and p.name not in self.run.no_init
                    reservation = sched.reserve(
                        domain=p.domain,
                        name=p.name,
                        timeout=p.timeout,
                        owner=f"plugin {p.name!r}",
                        after=[self.run.by_name[r].cookie for r in p.requires] if pooled else (),
                    )
                    assert reservation.cookie == p.cookie, (reservation, p)
                    self.run.reservations[p.name] = reservation
                    self.run.state.scheduled(p.name, self.run.now())
                # Asked to stop before the queue existed; later, a _Stop comes through it, after
                # every report the owner made before stopping.
                if self.run.stop_requested.is_set():
                    raise _Stopped
                self.loop(self.run.events)
                self.run.boot.pool_stopping = self.run.now()
        except _Stopped:
            pass
        except BaseException as exc:
            self.run.error = exc
        finally:
            self.run.owner.submit(None)

    def loop(self, events: queue.SimpleQueue[Any]) -> None:
        self.launch_ready()
        self.submit_main_inits()
        while not self.run.state.done:
            got: object
            if self.run.watch is None:
                got = events.get()
            else:
                self.report_progress()
                try:
                    got = events.get(timeout=0.25)
                except queue.Empty:
                    got = None
            if isinstance(got, _Stop):
                raise _Stopped
            if isinstance(got, _CommitEnded):
                self.on_commit_ended(got)
            elif got == 0:  # the scheduler cannot go on (say, its manager was killed)
                self.sched.raise_if_failed()
            elif isinstance(got, int) and (planned := self.run.by_cookie.get(got)) is not None:
                self.on_outcome(planned)
            self.cancel(self.run.state.skip_stuck())

    def report_progress(self) -> None:
        """Tell the watcher what runs and what waits on what."""
        assert self.run.watch is not None
        running = {name: self.run.t0 + ready for name, ready in self.run.state.running().items()}
        self.run.watch(running, self.run.state.waiting())

    def launch_ready(self) -> None:
        for name in self.run.state.ready():
            self.launch(self.run.by_name[name])

    def submit_main_inits(self) -> None:
        for job in self.main_inits:
            self.run.owner.submit(job)
        self.main_inits.clear()

    def launch(self, p: PlannedPlugin) -> None:
        # Before the handover, not after: a worker may start it before provide() returns, and an
        # interrupt then must not report as never started a plugin that ran.
        self.run.state.launched(p.name, self.run.now())
        if p.name in self.run.no_init:
            # Its init would return None and publish nothing, so no worker round trip (nor
            # its required results pickled there and back). Ended in this thread, it stays in
            # progress for whoever synchronizes until now, like any initcall.
            self.run.reservations[p.name].run_here(_no_init, None)
            return
        spec = InitSpec(
            boot_id=self.run.boot_id,
            plugin=p.name,
            domain=p.domain,
            config=self.run.configs[p.name].config,
            results=self.required_results(p, handles=p.where != "main"),
            sources=self.run.sources,
            paths=self.run.config.settings.paths,
            retry=Retry(p.retries, p.retry_delay, p.retry_delay_max, p.retry_on),
        )
        if p.where == "main":
            for init in spec.results.values():
                init.preload()  # what its ctx.results will read there, loaded here in steps
            # On the owner's thread, after every lower main init (the state sees to that). This
            # thread goes on launching and deciding meanwhile, so lower cookies it synchronizes
            # with can finish: an init never waits for a commit. Submitted after the commits
            # that are due now (see submit_main_inits): a commit does not wait behind an init.
            self.main_inits.append(functools.partial(self.run.run_main_init, p, spec))
            return
        try:
            # A crash or a timeout ends the run: the pool runs the same cookie again on a
            # fresh worker, with retries of its own, apart from the retries of exceptions.
            delays = spec.retry.delays() if p.retry_crashes else ()
            self.run.reservations[p.name].provide(_plugins.run_init, spec, retry_delays=delays)
        except InitgraphError as exc:
            err = HookError(str(exc), cookie=p.cookie, name=p.name)
            err.__cause__ = exc
            self.run.state.refused(p.name)
            self.run.reservations[p.name].cancel(err)

    def cancel(self, names: tuple[str, ...]) -> None:
        """Cancel the reservations of plugins the state ended without running them."""
        for name in names:
            failure = self.run.state.record(name).failure
            assert failure is not None
            err = HookError(failure.message, cookie=self.run.by_name[name].cookie, name=name)
            self.run.reservations[name].cancel(err)

    def required_results(self, p: PlannedPlugin, *, handles: bool = False) -> dict[str, Any]:
        """The init results of the plugins ``p`` requires: every one finished its init.

        ``handles``: a result that came from a worker is given as its store handle, forwarded
        to ``p``'s worker without being loaded or pickled again (``ctx.results`` there loads it
        when it is first read). Else each is its :class:`InitResult`, for a ``ctx.results``
        here (:class:`LazyResults`) that loads a value when it is read.
        """
        found: dict[str, Any] = {}
        for r in p.requires:
            init = self.run.state.record(r).result
            assert isinstance(init, InitResult), (r, init)
            if not handles:
                found[r] = init
                continue
            outcome = self.sched.outcome(self.run.by_name[r].cookie)
            found[r] = outcome.handle if outcome is not None and outcome.handle else init.value
        return found

    def on_outcome(self, p: PlannedPlugin) -> None:
        outcome = self.sched.outcome(p.cookie)
        assert outcome is not None
        if p.where == "main" and isinstance(
            outcome.error, (KeyboardInterrupt, asyncio.CancelledError)
        ):
            raise _Stopped  # Ctrl-C in a main init: the owner stops the boot (run_main_init)
        error = None if outcome.ok else as_hook_error(p.cookie, outcome)
        value = None
        loaded = self.run.now()
        if error is None:
            try:
                value = outcome.value  # its publications and attempts; the value stays unloaded
            except HookError as exc:  # the result cannot be loaded in the parent
                error = exc
        ran = bool(outcome.started)
        # A plugin with no init shows an init of length zero, at the moment it was ended.
        ended_at = outcome.started if p.name in self.run.no_init else outcome.ended
        ended = self.run.state.outcome(
            p.name,
            value=value,
            error=error,
            started=outcome.started - self.run.t0 if ran else None,
            ended=ended_at - self.run.t0 if ran else None,
            pid=outcome.pid or None,
            waits=tuple(
                Wait(w.what, w.domain, w.cookie, w.started - self.run.t0, w.ended - self.run.t0)
                for w in outcome.waits
            ),
            attempts=self.attempts(outcome, error),
            transfers=self.transfers(outcome, value, loaded) if ran else (),
        )
        self.cancel(ended)
        self.launch_ready()  # what requires it may start now, before it commits
        self.commit_ready()
        self.submit_main_inits()

    def transfers(self, outcome: Outcome, value: object, loaded: float) -> tuple[Transfer, ...]:
        """How its result came here from its worker, and its inputs went there.

        Its result: pickled in the worker once its init ended (``serialize``), in flight to this
        process (``transfer``), loaded here from ``loaded`` on (``load``). Its inputs: the
        results it was handed, in flight to its worker before its init started, and each loaded
        when the init first read it. Nothing for a result made here.
        """
        handle, pid, parent = outcome.handle, outcome.pid, os.getpid()
        if handle is None or not pid:
            return ()
        moved = []
        size = handle.nbytes
        started, ended = outcome.started - self.run.t0, outcome.ended - self.run.t0
        sent = ended + outcome.serialize_s
        moved.append(Transfer("serialize", pid, ended, sent, size))
        moved.append(Transfer("transfer", parent, sent, max(sent, sent + handle.transfer_s), size))
        if handle.load_s is not None:
            moved.append(Transfer("load", parent, loaded, loaded + handle.load_s, size))
        inputs = value.inputs if isinstance(value, InitResult) else ()
        for i in inputs:
            moved.append(Transfer("transfer", pid, started - i.transfer_s, started, i.size, i.of))
            if i.loaded is not None and i.load_ended is not None:
                load = Transfer(
                    "load", pid, i.loaded - self.run.t0, i.load_ended - self.run.t0, i.size, i.of
                )
                moved.append(load)
        return tuple(moved)

    def attempts(self, outcome: Outcome, error: HookError | None) -> tuple[Attempt, ...]:
        """Every attempt of a retried init, numbered in order, in seconds since the start.

        The runs the pool lost to a crash or a timeout come first, one attempt each; then the
        attempts of the last run, as its init recorded them (or that run as one attempt).
        """
        if error is not None:
            last: tuple[Attempt, ...] = error.attempts
        elif isinstance(outcome.value, InitResult):
            last = outcome.value.attempts
        else:
            last = ()
        if not outcome.retried and not last:
            return ()
        if not last:
            reason = None if error is None else str(error)
            last = (Attempt(1, outcome.started, outcome.ended, reason),)
        found = [Attempt(0, r.started, r.ended, r.error, r.delay) for r in outcome.retried]
        found.extend(last)
        return tuple(
            replace(a.shifted(self.run.t0), number=n) for n, a in enumerate(found, start=1)
        )

    def on_commit_ended(self, report: _CommitEnded) -> None:
        if self.run.state.record(report.name).stage is Stage.COMMITTED:
            return  # a report repeated by an interrupted settle()
        self.run.state.commit_began(report.name, report.started)
        if report.error is None:
            self.run.state.committed(report.name, report.ended)
        else:
            self.cancel(self.run.state.commit_failed(report.name, report.error, report.ended))
        self.launch_ready()
        self.commit_ready()
        self.submit_main_inits()

    def commit_ready(self) -> None:
        while (name := self.run.state.next_commit()) is not None:
            p = self.run.by_name[name]
            init = self.run.state.record(name).result
            assert isinstance(init, InitResult), init
            if _plugins.implements(self.run.pm, "initgraph_commit", name):
                # Its hook takes the value: loaded here, in steps, not in one C call on the
                # owner's thread, which under aboot is the event loop's.
                init.preload()
            self.run.state.commit_started(name, self.run.now())
            self.run.owner.submit(self.run.commit(p, init, self.required_results(p)))


# -- shutdown --------------------------------------------------------------------------------------


class _Shutdown:
    """Runs the committed plugins' ``initgraph_shutdown``, once, in the order the state gives.

    Each hook runs on the calling thread (the boot's owner). A plain hook there cannot be
    stopped: one that runs past its ``shutdown_timeout`` is reported (logged as it happens,
    then recorded as a timeout) and waited for. An ``async def`` hook is awaited with its
    timeout and, past it, cancelled: abandoned. Hooks whose turn comes after the total cap
    (``[initgraph] shutdown_timeout``) is spent are not run, and recorded as such.

    The :class:`Boot` holds it, so it holds what the shutdown needs of the run, not the run nor
    the boot (which is passed to :meth:`run`): either would make a reference cycle, and the
    closed boot, its results with it, would wait for the cyclic garbage collector. Once it ran,
    it lets go of the plugin manager too (see :func:`~.plugins.release`).
    """

    def __init__(self, run: _Run) -> None:
        self.t0 = run.t0
        self.plan = run.plan
        self.by_name = run.by_name
        self.configs = run.configs
        self.cap = run.config.settings.shutdown_timeout
        self.state = run.state
        self.pm: pluggy.PluginManager | None = run.pm
        self.order: tuple[str, ...] | None = None

    def now(self) -> float:
        return time.monotonic() - self.t0

    def begin(self) -> tuple[str, ...]:
        pm = self.pm
        if self.order is not None or pm is None:
            return ()
        having = {
            p.name
            for p in self.plan.plugins
            if _plugins.implements(pm, "initgraph_shutdown", p.name)
        }
        self.order = self.state.begin_shutdown(having)
        return self.order

    def done(self) -> None:
        """The shutdown is over, or was interrupted and never runs again: drop the manager."""
        pm, self.pm = self.pm, None
        if pm is not None:
            _plugins.release(pm)

    def run(self, boot: Boot) -> None:
        cap_start = time.monotonic()
        try:
            for name in self.begin():
                turn = self.turn(boot, name, cap_start)
                if turn is None:
                    continue
                limit, started = turn
                watchdog = _watchdog(name, limit)
                watchdog.start()
                pending = self.call(boot, name, watchdog)
                if pending is None:
                    continue
                error = None
                if pending:
                    error = self.await_in_own_loop(name, pending, limit)
                self.end(boot, name, started, limit, error)
        finally:
            self.done()

    async def arun(self, boot: Boot) -> None:
        cap_start = time.monotonic()
        loop = asyncio.get_running_loop()
        try:
            for name in self.begin():
                turn = self.turn(boot, name, cap_start)
                if turn is None:
                    continue
                limit, started = turn
                # Started from a thread: Thread.start() waits until the new thread runs, and the
                # loop would wait with it. The loop also gets a turn between two hooks.
                watchdog = _watchdog(name, limit)
                try:
                    await loop.run_in_executor(None, watchdog.start)
                except BaseException:  # cancelled: the timer may still start, and must not fire
                    watchdog.cancel()
                    raise
                pending = self.call(boot, name, watchdog)
                if pending is None:
                    continue
                error = None
                if pending:
                    error = await self.await_hook(name, pending, limit)
                self.end(boot, name, started, limit, error)
        finally:
            self.done()

    def limits(self, name: str, cap_start: float) -> tuple[float, float, float]:
        """The plugin's own timeout, the total cap, and what is left of the cap."""
        own = self.configs[name].shutdown_timeout
        cap = self.cap
        return own, cap, cap - (time.monotonic() - cap_start)

    def turn(self, boot: Boot, name: str, cap_start: float) -> tuple[float, float] | None:
        """``name``'s turn begins: its time limit and start; ``None`` if the cap is spent."""
        p = self.by_name[name]
        own, cap, left = self.limits(name, cap_start)
        if left <= 0:
            msg = (
                f"initgraph_shutdown of plugin {name!r} was not run: the shutdown's total "
                f"time ([initgraph] shutdown_timeout, {cap:g} s) was spent"
            )
            err = HookTimeout(msg, cookie=p.cookie, name=name, timeout=cap)
            self.state.shutdown_started(name, self.now())
            self.record(boot, name, err)
            return None
        started = time.monotonic()
        self.state.shutdown_started(name, started - self.t0)
        return min(own, left), started

    def call(self, boot: Boot, name: str, watchdog: threading.Timer) -> list[Awaitable[Any]] | None:
        """Call ``name``'s hook, watched; return what it left to await (``None``: it raised)."""
        p = self.by_name[name]
        assert self.pm is not None
        try:
            returned = _plugins.call_one(
                self.pm,
                "initgraph_shutdown",
                name,
                ctx=self.context(boot, p),
                result=boot.results.get(name),
            )
        except Exception as exc:
            self.record(boot, name, self.error(p, exc))
            return None
        finally:
            watchdog.cancel()
        return awaitables(returned)

    def context(self, boot: Boot, p: PlannedPlugin) -> CommitContext:
        def publish(key: str, value: Any) -> None:
            msg = (
                f"plugin {p.name!r} published {key!r} in initgraph_shutdown; the registry is "
                f"closed by then: publish from initgraph_commit"
            )
            raise PluginError(msg, plugin=p.name)

        required = boot.results.lazy(p.requires)
        return CommitContext(
            registry=boot.registry,
            publish=publish,
            name=p.name,
            cookie=p.cookie,
            domain=p.domain,
            config=self.configs[p.name].config,
            results=required,
        )

    def await_in_own_loop(
        self, name: str, pending: list[Awaitable[Any]], limit: float
    ) -> BaseException | None:
        if _loop_running():
            _close_unawaited(pending)
            msg = (
                f"initgraph_shutdown of plugin {name!r} is async def, and close() was called "
                f"inside a running event loop: use 'await boot.aclose()' there"
            )
            p = self.by_name[name]
            return HookError(msg, cookie=p.cookie, name=name)
        found: BaseException | None = run_to_completion(self.await_hook(name, pending, limit))
        return found

    async def await_hook(
        self, name: str, pending: list[Awaitable[Any]], limit: float
    ) -> BaseException | None:
        """Await an ``async def`` hook for at most ``limit`` seconds; past it, cancel it."""
        p = self.by_name[name]
        try:
            await asyncio.wait_for(_await_all(pending), timeout=max(limit, 0.0))
        except asyncio.TimeoutError:
            msg = (
                f"initgraph_shutdown of plugin {name!r} ran past its shutdown_timeout of "
                f"{limit:g} s and was abandoned (cancelled)"
            )
            return HookTimeout(msg, cookie=p.cookie, name=name, timeout=limit)
        except Exception as exc:
            return self.error(p, exc)
        return None

    def end(
        self, boot: Boot, name: str, started: float, limit: float, error: BaseException | None
    ) -> None:
        took = time.monotonic() - started
        if error is None and took > limit:
            p = self.by_name[name]
            msg = (
                f"initgraph_shutdown of plugin {name!r} ran {took:.3f} s, past its "
                f"shutdown_timeout of {limit:g} s (on the thread that called boot() it cannot "
                f"be stopped)"
            )
            error = HookTimeout(msg, cookie=p.cookie, name=name, timeout=limit)
        self.record(boot, name, error)

    def error(self, p: PlannedPlugin, exc: Exception) -> HookError:
        msg = f"initgraph_shutdown of plugin {p.name!r} raised {describe_error(exc)}"
        err = HookError(msg, cookie=p.cookie, name=p.name)
        err.__cause__ = exc
        return err

    def record(self, boot: Boot, name: str, error: BaseException | None) -> None:
        state = self.state
        state.shutdown_ended(name, self.now(), error)
        record = state.record(name)
        timing = boot.timings.get(name)
        if timing is not None:
            boot.timings[name] = replace(
                timing,
                shutdown_started=record.shutdown_started,
                shutdown_ended=record.shutdown_ended,
            )
        boot.shutdown_failures = state.shutdown_failures()
        if error is not None:
            _LOG.warning("shutdown: %s", error)


def _watchdog(name: str, limit: float) -> threading.Timer:
    """A timer that reports a plain shutdown hook still running after ``limit`` seconds."""
    watchdog = threading.Timer(limit, _overrun, (name, limit))
    watchdog.daemon = True
    return watchdog


def _overrun(name: str, limit: float) -> None:
    _LOG.warning(
        "initgraph_shutdown of plugin %r is past its shutdown_timeout of %g s; it runs on "
        "the thread that called boot() and cannot be stopped there: waiting for it",
        name,
        limit,
    )


def attach_shutdown_failures(exc: BaseException, failures: Mapping[str, Failure]) -> None:
    """Add a note to ``exc`` for each failure of the shutdown that followed it."""
    notes = getattr(exc, "__notes__", None)
    if not isinstance(notes, list):
        notes = []
    for failure in failures.values():
        notes.append(f"during the shutdown that followed: {failure.message}")
    if notes:
        exc.__notes__ = notes  # type: ignore[attr-defined]  # add_note() is Python 3.11+


def _no_init(data: None, cookie: int) -> InitResult:
    """The initcall of a plugin without ``initgraph_init``, run in the parent."""
    return InitResult(None)


def _timing(record: Record) -> Timing:
    """The public view of a plugin's times."""
    assert record.scheduled is not None
    return Timing(
        scheduled=record.scheduled,
        ready=record.ready,
        started=record.started,
        ended=record.ended,
        commit_started=record.commit_started,
        commit_ended=record.commit_ended,
        pid=record.pid,
        waits=record.waits,
        shutdown_started=record.shutdown_started,
        shutdown_ended=record.shutdown_ended,
        attempts=record.attempts,
        transfers=record.transfers,
    )
