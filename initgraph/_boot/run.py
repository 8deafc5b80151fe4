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

import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import Any

import pluggy

from .._core.scheduler import Reservation, Scheduler, as_hook_error, default_start_method
from .._defs import ENTRY_POINT_GROUP
from .._errors import (
    BootError,
    HookError,
    InitgraphError,
    PluginError,
    RegistryConflict,
)
from . import plugins as _plugins
from .conditions import skipped_plugins
from .config import Config, FrozenMapping, PluginConfig, load_config
from .debuglog import debug_lines
from .graph import plan_order
from .plugins import CommitContext, InitResult, InitSpec, PluginSource
from .state import BootState, Failure, Record, Wait, describe_error

__all__ = [
    "Boot",
    "Failure",
    "Plan",
    "PlannedPlugin",
    "Publication",
    "Registry",
    "Timing",
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
    return the_plan


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
    """The finished boot: its plan, registry, results, failures and timings."""

    __module__ = "initgraph"

    plan: Plan
    registry: Registry
    results: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, Failure] = field(default_factory=dict)
    timings: dict[str, Timing] = field(default_factory=dict)
    wall: float = 0.0

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
    """
    return run_boot(config, check=check, overrides=overrides)


# Kernel-style initcall lines (``calling  3_corpus @ 1234`` ...) for embedders, at DEBUG level;
# the same lines as ``initgraph run --debug``.
_DEBUG_LOG = logging.getLogger("initgraph.initcall_debug")

Watcher = Callable[[Mapping[str, float], Mapping[str, str]], None]


Prepared = tuple[
    Config, Plan, tuple[PluginConfig, ...], tuple[PluginSource, ...], pluggy.PluginManager
]
"""A config loaded, planned, its plugins loaded and ``initgraph_plan`` called: ready to run."""


def prepare(
    config: str | os.PathLike[str] | Mapping[str, Any], overrides: Mapping[str, Any]
) -> Prepared:
    """Load and plan ``config``, load its plugins and call ``initgraph_plan``; start nothing.

    What every way of running a config shares: a boot, and ``inprocess.run_in_process``.
    """
    loaded = _with_entry_points(load_config(config, **overrides))
    the_plan, ordered = _make_plan(loaded)
    sources = tuple(PluginSource(p.name, p.module, p.entry_point) for p in ordered)
    pm = _plugins.load_plugins(sources, loaded.settings.paths)
    _call_each(pm, the_plan, "initgraph_plan", plan=the_plan)
    return loaded, the_plan, ordered, sources, pm


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
    waits on. For progress displays.
    """
    loaded, the_plan, ordered, sources, pm = prepare(config, overrides)
    run = _Run(loaded, the_plan, ordered, sources, pm, watch)
    result = run.run()
    try:
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
        _call_each(pm, the_plan, "initgraph_boot_finished", boot=result)
    except KeyboardInterrupt as exc:  # the boot is over: every plugin committed or failed
        run.interrupted(exc)
        raise
    if check and not result.ok:
        raise BootError(result.summary(), boot=result)
    return result


def _call_each(pm: pluggy.PluginManager, the_plan: Plan, hook: str, **kwargs: Any) -> None:
    """Call ``hook`` plugin by plugin, in plan order, so an error names its plugin."""
    for p in the_plan.plugins:
        try:
            _plugins.call_one(pm, hook, p.name, **kwargs)
        except Exception as exc:
            msg = f"plugin {p.name!r}: {hook} raised {describe_error(exc)}"
            raise PluginError(msg, plugin=p.name) from exc


class _Run:
    """One boot while it runs, used once: the I/O around its :class:`BootState`.

    The state decides what to launch, what to commit and what to cancel; this class carries it
    out (the scheduler, a thread per ``where = "main"`` init, the hooks, the watcher) and feeds
    back what happened. Only the thread running :meth:`run` touches the state.
    """

    def __init__(
        self,
        config: Config,
        the_plan: Plan,
        ordered: tuple[PluginConfig, ...],
        sources: tuple[PluginSource, ...],
        pm: pluggy.PluginManager,
        watch: Watcher | None = None,
    ) -> None:
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
        self.stopped_at: float | None = None  # when an interrupt stopped the loop
        self.reservations: dict[str, Reservation] = {}
        # Plugins without an initgraph_init of their own: nothing to send to a worker.
        self.no_init = frozenset(
            p.name
            for p in the_plan.plugins
            if not _plugins.implements(pm, "initgraph_init", p.name)
        )
        self.threads: list[threading.Thread] = []  # where = "main" inits
        self.t0 = 0.0

    def now(self) -> float:
        return time.monotonic() - self.t0

    def run(self) -> Boot:
        self.t0 = time.monotonic()
        _plugins.remember(self.boot_id, self.pm)
        settings = self.config.settings
        try:
            with Scheduler(
                self.plan.workers,
                start_method=self.plan.start_method,
                max_pending=settings.max_pending,
            ) as sched:
                self.sched = sched
                events = sched.listen()
                for p in self.plan.plugins:
                    reservation = sched.reserve(domain=p.domain, name=p.name, timeout=p.timeout)
                    assert reservation.cookie == p.cookie, (reservation, p)
                    self.reservations[p.name] = reservation
                    self.state.scheduled(p.name, self.now())
                try:
                    self.loop(events)
                except KeyboardInterrupt:
                    self.stopped_at = self.now()  # before the scheduler stops its processes
                    raise
        except KeyboardInterrupt as exc:
            self.interrupted(exc)
            raise
        finally:
            _plugins.forget(self.boot_id)
            self.boot.wall = time.monotonic() - self.t0
            self.boot.failures = self.state.failures()
            self.boot.timings = {
                r.name: _timing(r) for r in self.state.records() if r.scheduled is not None
            }
        return self.boot

    def loop(self, events: queue.SimpleQueue[int]) -> None:
        self.launch_ready()
        while not self.state.done:
            got: int | None
            if self.watch is None:
                got = events.get()
            else:
                self.report()
                try:
                    got = events.get(timeout=0.25)
                except queue.Empty:
                    got = None
            if got == 0:  # the scheduler cannot go on (say, its manager was killed)
                self.sched.raise_if_failed()
            planned = self.by_cookie.get(got) if got is not None else None
            if planned is not None:
                self.on_outcome(planned)
            self.cancel(self.state.skip_stuck())
        for thread in self.threads:
            thread.join()

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

    def report(self) -> None:
        """Tell the watcher what runs and what waits on what."""
        assert self.watch is not None
        running = {name: self.t0 + ready for name, ready in self.state.running().items()}
        self.watch(running, self.state.waiting())

    # -- launching and cancelling ----------------------------------------------------------------
    def launch_ready(self) -> None:
        for name in self.state.ready():
            self.launch(self.by_name[name])

    def launch(self, p: PlannedPlugin) -> None:
        # Before the handover, not after: a worker may start it before provide() returns, and an
        # interrupt then must not report as never started a plugin that ran.
        self.state.launched(p.name, self.now())
        if p.name in self.no_init:
            # Its init would return None and publish nothing, so no worker round trip (nor
            # its required results pickled there and back). Ended in this thread, it stays in
            # progress for whoever synchronizes until now, like any initcall.
            self.reservations[p.name].run_here(_no_init, None)
            return
        spec = InitSpec(
            boot_id=self.boot_id,
            plugin=p.name,
            domain=p.domain,
            config=self.configs[p.name].config,
            results=self.required_results(p),
            sources=self.sources,
            paths=self.config.settings.paths,
        )
        if p.where == "main":
            # A thread of the parent, not the boot's own loop: the loop must go on committing
            # and launching while it runs, or a main plugin that synchronizes would wait for
            # a lower cookie that can only start after a commit this loop has yet to do.
            thread = threading.Thread(
                target=self.reservations[p.name].run_here,
                args=(_plugins.run_init, spec),
                name=f"initgraph-main-{p.name}",
                daemon=True,
            )
            self.threads.append(thread)
            thread.start()
        else:
            try:
                self.reservations[p.name].provide(_plugins.run_init, spec)
            except InitgraphError as exc:
                err = HookError(str(exc), cookie=p.cookie, name=p.name)
                err.__cause__ = exc
                self.state.refused(p.name)
                self.reservations[p.name].cancel(err)

    def cancel(self, names: tuple[str, ...]) -> None:
        """Cancel the reservations of plugins the state ended without running them."""
        for name in names:
            failure = self.state.record(name).failure
            assert failure is not None
            err = HookError(failure.message, cookie=self.by_name[name].cookie, name=name)
            self.reservations[name].cancel(err)

    def required_results(self, p: PlannedPlugin) -> dict[str, Any]:
        """The init results of the plugins ``p`` requires: every one finished its init."""
        found = {}
        for r in p.requires:
            init = self.state.record(r).result
            assert isinstance(init, InitResult), (r, init)
            found[r] = init.value
        return found

    # -- outcomes and commits --------------------------------------------------------------------
    def on_outcome(self, p: PlannedPlugin) -> None:
        outcome = self.sched.outcome(p.cookie)
        assert outcome is not None
        error = None if outcome.ok else as_hook_error(p.cookie, outcome)
        ran = bool(outcome.started)
        # A plugin with no init shows an init of length zero, at the moment it was ended.
        ended_at = outcome.started if p.name in self.no_init else outcome.ended
        ended = self.state.outcome(
            p.name,
            value=outcome.value,
            error=error,
            started=outcome.started - self.t0 if ran else None,
            ended=ended_at - self.t0 if ran else None,
            pid=outcome.pid or None,
            waits=tuple(
                Wait(w.what, w.domain, w.cookie, w.started - self.t0, w.ended - self.t0)
                for w in outcome.waits
            ),
        )
        self.cancel(ended)
        self.launch_ready()  # what requires it may start now, before it commits
        self.commit_ready()

    def commit_ready(self) -> None:
        while (name := self.state.next_commit()) is not None:
            self.commit(self.by_name[name])

    def commit(self, p: PlannedPlugin) -> None:
        init = self.state.record(p.name).result
        assert isinstance(init, InitResult), init
        self.state.commit_started(p.name, self.now())
        config = self.configs[p.name].config
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
                config=config,
                results=self.required_results(p),
            )
            _plugins.call_one(self.pm, "initgraph_commit", p.name, ctx=ctx, result=init.value)
        except Exception as exc:
            err = exc
            if not isinstance(exc, InitgraphError):
                msg = f"initgraph_commit of plugin {p.name!r} raised {describe_error(exc)}"
                err = HookError(msg, cookie=p.cookie, name=p.name)
                err.__cause__ = exc
            self.cancel(self.state.commit_failed(p.name, err, self.now()))
            return
        # Publishing and recording the commit are one step. An interrupt is raised between any
        # two bytecodes of this thread; one that lands inside the step does not cut it short:
        # the step is completed, then the interrupt goes on (it is only bookkeeping by now:
        # every check passed, no plugin code runs). So a plugin's publications are all visible
        # or none, and it is committed exactly when they are.
        pubs = tuple(staged.values())
        mark = len(registry._log)
        at = self.now()
        try:
            self.settle(p, init, pubs, mark, at)
        except BaseException:
            self.settle(p, init, pubs, mark, at)
            raise

    def settle(
        self,
        p: PlannedPlugin,
        init: InitResult,
        pubs: tuple[Publication, ...],
        mark: int,
        at: float,
    ) -> None:
        """Publish ``pubs`` and record ``p`` as committed; a second call completes the first."""
        self.boot.registry._apply(pubs, mark)
        self.boot.results[p.name] = init.value
        self.state.committed(p.name, at)


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
    )
