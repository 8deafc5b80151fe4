"""Where a boot's time went: blame, the critical chain, and a what-if planner.

All three read a :class:`~initgraph._observe.trace.TraceData` (from a trace file or a finished
boot) and do no I/O.

- :func:`blame`: one row per plugin, its life split into separate columns — waiting for its
  requirements, queued for a worker, running, waiting in synchronize, waiting for its turn to
  commit (in order), committing. Unlike ``systemd-analyze blame`` the waits are not counted as work.
- :func:`critical_chain`: the initcalls and waits that set the boot's total time, found by walking
  back from the last commit through whatever each step waited for.
- :func:`plan_from`: list-scheduling simulation of a plan with measured durations — how long the
  boot would take with another worker count, or with some plugins made faster.
"""

from __future__ import annotations

import heapq
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .._core.dispatch import GROW_AFTER, Dispatcher
from .._defs import default_max_workers
from .._errors import ConfigError
from .trace import TraceData, TracedPlugin, TracedWait

if TYPE_CHECKING:
    from .._boot.run import Plan

__all__ = [
    "BLAME_COLUMNS",
    "BlameRow",
    "ChainLink",
    "Prediction",
    "blame",
    "critical_chain",
    "format_critical_chain",
    "plan_from",
]

# Two events closer than this are taken as simultaneous when deciding what one waited for: the
# parent learns that an init ended a little after it did, and hands out work a little after it
# could. A wait shorter than this is not a wait worth following.
_SLACK = 0.001


# -- blame ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BlameRow:
    """Where one plugin's time went, in seconds; the columns add up to ``total``.

    ``requires``: scheduled until everything it requires had committed; ``queued``: then until a
    worker started it; ``running``: its init, waits left out; ``waiting``: its init's waits in
    synchronize; ``in_order``: from its init's end until its turn to commit came (lower cookies of
    its domain commit first); ``commit``: its commit.
    """

    name: str
    cookie: int
    status: str
    requires: float
    queued: float
    running: float
    waiting: float
    in_order: float
    commit: float

    @property
    def total(self) -> float:
        """From its scheduling to the end of its commit."""
        return (
            self.requires + self.queued + self.running + self.waiting + self.in_order + self.commit
        )


def _gap(start: float | None, end: float | None) -> float:
    return 0.0 if start is None or end is None else max(0.0, end - start)


def blame(trace: TraceData) -> list[BlameRow]:
    """One row per plugin, longest total first (ties in cookie order)."""
    rows = []
    for p in trace.plugins:
        ready = p.ready if p.ready is not None else p.started
        rows.append(
            BlameRow(
                name=p.name,
                cookie=p.cookie,
                status=p.status,
                requires=_gap(p.scheduled, ready),
                queued=_gap(ready, p.started),
                running=p.running,
                waiting=p.waiting,
                in_order=_gap(p.ended, p.commit_started),
                commit=p.commit_time,
            )
        )
    return sorted(rows, key=lambda r: (-r.total, r.cookie))


BLAME_COLUMNS = ("total", "requires", "queued", "running", "waiting", "in_order", "commit")
"""The columns of :class:`BlameRow`, in the order ``initgraph blame`` prints them."""


# -- the critical chain ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ChainLink:
    """One step of the critical chain, in seconds since the boot started.

    ``kind``: ``init`` (a plugin's init), ``wait`` (a wait inside it) or ``commit``. ``via``: how
    the step after it waited for this one — ``requires`` (it required this plugin), ``worker``
    (it was queued until this init freed the worker), ``in order`` (its commit came after this
    one's), ``parent`` (the parent was busy with this), ``synchronize`` (its wait ended when this
    init did) or ``inside`` (this wait is inside that init); empty for the last step.
    """

    plugin: str
    kind: str
    label: str
    started: float
    duration: float
    via: str = ""

    @property
    def ended(self) -> float:
        return self.started + self.duration


def critical_chain(trace: TraceData) -> list[ChainLink]:
    """The chain of initcalls and waits that set the boot's total time, first step first.

    It starts from the plugin whose commit ended last and walks back through what each step
    waited for: for an init, the requirement whose commit ended right before it became ready, or,
    if it was queued, the init that freed its worker (the parent, for ``where = "main"``); for a
    wait inside an init, the lower cookie whose end released it; for a commit that waited for its
    turn, the commit before it. Like ``systemd-analyze critical-chain``.
    """
    return _Walk(trace).chain()


class _Walk:
    """One walk back along a trace, from its last commit; see :func:`critical_chain`."""

    def __init__(self, trace: TraceData) -> None:
        self.trace = trace
        self.ran = [p for p in trace.plugins if p.ran]
        self.by_name = {p.name: p for p in trace.plugins}

    def chain(self) -> list[ChainLink]:
        done = [p for p in self.trace.plugins if p.finished is not None]
        if not done:
            return []
        last = max(done, key=lambda p: (p.finished or 0.0, p.cookie))
        links: list[ChainLink] = []
        step: tuple[str, TracedPlugin] | None = (
            ("commit", last) if last.commit_ended is not None else ("init", last)
        )
        via = ""
        seen: set[tuple[str, str]] = set()
        while step is not None and (step[0], step[1].name) not in seen:
            kind, p = step
            seen.add((kind, p.name))
            if kind == "commit":
                step, next_via = self.before_commit(p)
                if step is not None and step[1] is p:
                    continue  # its own init: the init's link stands for the plugin
                assert p.commit_started is not None
                label = f"{p.name} commit"
                links.append(
                    ChainLink(p.name, "commit", label, p.commit_started, p.commit_time, via)
                )
            else:
                links.append(ChainLink(p.name, "init", p.name, p.started or 0.0, p.init_time, via))
                wait = self.last_wait(p)
                if wait is not None:
                    label = f"{p.name} {wait.label}"
                    links.append(
                        ChainLink(p.name, "wait", label, wait.started, wait.duration, "inside")
                    )
                    releaser = self.releaser(p, wait)
                    step, next_via = (("init", releaser), "synchronize") if releaser else (None, "")
                else:
                    step, next_via = self.before_init(p)
            via = next_via
        links.reverse()
        return links

    # -- what each step waited for ---------------------------------------------------------------
    def before_commit(self, p: TracedPlugin) -> tuple[tuple[str, TracedPlugin] | None, str]:
        """What its commit waited for: its own init, the commit before it, or the busy parent."""
        assert p.commit_started is not None
        at = p.commit_started + _SLACK
        candidates: list[tuple[float, int, tuple[str, TracedPlugin], str]] = []
        if p.ended is not None:
            candidates.append((p.ended, 0, ("init", p), ""))
        earlier = [
            q
            for q in self.trace.plugins
            if q.domain == p.domain and q.cookie < p.cookie and q.commit_ended is not None
        ]
        if earlier:
            q = max(earlier, key=lambda q: q.cookie)
            assert q.commit_ended is not None
            candidates.append((q.commit_ended, 1, ("commit", q), "in order"))
        busy = [
            q
            for q in self.ran
            if q.where == "main" and q is not p and q.ended is not None and q.ended <= at
        ]
        if busy:
            q = max(busy, key=lambda q: q.ended or 0.0)
            candidates.append((q.ended or 0.0, 2, ("init", q), "parent"))
        return _latest(c for c in candidates if c[0] <= at)

    def before_init(self, p: TracedPlugin) -> tuple[tuple[str, TracedPlugin] | None, str]:
        """What its init waited for: its last requirement's commit, or a free worker."""
        if p.started is None:
            return None, ""
        at = p.started + _SLACK
        candidates: list[tuple[float, int, tuple[str, TracedPlugin], str]] = []
        required = [self.by_name[r] for r in p.requires if r in self.by_name]
        committed = [r for r in required if r.commit_ended is not None and r.commit_ended <= at]
        if committed:
            r = max(committed, key=lambda r: r.commit_ended or 0.0)
            candidates.append((r.commit_ended or 0.0, 0, ("commit", r), "requires"))
        ready = p.ready if p.ready is not None else p.started
        if p.started - ready > _SLACK:  # queued: the worker was busy
            same = [
                q
                for q in self.ran
                if q.pid == p.pid and q is not p and q.ended is not None and q.ended <= at
            ]
            if same:
                q = max(same, key=lambda q: q.ended or 0.0)
                candidates.append((q.ended or 0.0, 1, ("init", q), "worker"))
        return _latest(candidates)

    def last_wait(self, p: TracedPlugin) -> TracedWait | None:
        """Its last wait that lasted: what its init's end waited for, if anything did."""
        for wait in reversed(p.waits):
            if wait.duration > _SLACK:
                return wait
        return None

    def releaser(self, p: TracedPlugin, wait: TracedWait) -> TracedPlugin | None:
        """The init whose end let ``wait`` return: the last to end of those it waited for."""
        if wait.what == "after":
            held = [q for q in self.ran if q.cookie == wait.cookie]
        elif wait.what == "cookie":
            held = [q for q in self.ran if q.domain == wait.domain and q.cookie < wait.cookie]
        elif wait.domain is not None:
            held = [q for q in self.ran if q.domain == wait.domain and q is not p]
        else:
            held = [q for q in self.ran if q.domain != p.domain]
        ended = [q for q in held if q.ended is not None and q.ended <= wait.ended + _SLACK]
        if not ended:
            return None
        return max(ended, key=lambda q: (q.ended or 0.0, q.cookie))


def _latest(
    candidates: Iterable[tuple[float, int, tuple[str, TracedPlugin], str]],
) -> tuple[tuple[str, TracedPlugin] | None, str]:
    """The candidate that ended last; within ``_SLACK`` of it, the one of first rank."""
    found = list(candidates)
    if not found:
        return None, ""
    latest = max(c[0] for c in found)
    best = min((c for c in found if c[0] >= latest - _SLACK), key=lambda c: c[1])
    return best[2], best[3]


_VIA_TEXT = {
    "requires": "required by {}",
    "worker": "{} was queued behind it",
    "in order": "{} commits after it",
    "parent": "{} waited for the parent",
    "synchronize": "{} waited for it",
}


def format_critical_chain(chain: Sequence[ChainLink], *, wall: float | None = None) -> list[str]:
    """The chain as ``systemd-analyze critical-chain`` prints one: last step first, indented.

    ``@`` is when a step started, ``+`` how long it took, both in milliseconds.
    """
    lines = []
    if wall is not None:
        lines.append(f"boot took {wall * 1000:.1f}ms")
    above = ""
    for depth, link in enumerate(reversed(chain)):
        prefix = "" if depth == 0 else "  " * (depth - 1) + "└─"
        text = f"{prefix}{link.label} @{link.started * 1000:.1f}ms +{link.duration * 1000:.1f}ms"
        why = _VIA_TEXT.get(link.via)
        if why:
            text += f" ({why.format(above)})"
        lines.append(text)
        above = link.plugin
    return lines


# -- the what-if planner -------------------------------------------------------------------------
@dataclass(frozen=True)
class Prediction:
    """What :func:`plan_from` expects: the boot's wall time and its critical chain."""

    wall: float
    workers: int
    chain: tuple[ChainLink, ...]
    trace: TraceData  # the simulated boot, for blame and plots
    overheads: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _Segment:
    run: float  # seconds of running, then (if wait is set) a wait
    wait: TracedWait | None = None


def plan_from(
    plan: Plan,
    trace: TraceData,
    *,
    workers: int | None = None,
    faster: Mapping[str, float] | None = None,
) -> Prediction:
    """Predict how long ``plan`` boots with ``workers`` (default: the plan's), from ``trace``.

    A list-scheduling simulation: each plugin's init runs as long as it ran in ``trace`` with its
    waits left out (divided by ``faster[name]`` if given), split where it waited so that its
    synchronize calls wait again; it may start once everything it requires has committed and a
    worker is free, lowest cookie first; a waiting init holds its worker, and the pool grows and
    shrinks as the real one does (the simulation drives the pool's own ``Dispatcher``).
    ``where = "main"`` inits run on the parent. Each domain commits in cookie order on the
    parent, one commit at a time, each as long as measured. Measured from ``trace`` and added:
    the time until the first plugin was ready and after the last commit (starting and stopping
    the pool), and the median delay to start a ready init and to commit a finished one.
    """
    faster = dict(faster or {})
    count = workers if workers is not None else plan.workers
    if count < 1:
        msg = f"workers must be at least 1, got {count}"
        raise ConfigError(msg, key="workers")
    traced = {p.name: p for p in trace.plugins}
    for name, factor in faster.items():
        if name not in traced:
            msg = f"faster names {name!r}, which is not a plugin of the trace"
            raise ConfigError(msg, key="faster")
        if not factor > 0:
            msg = f"faster: the factor for {name!r} must be a positive number, got {factor!r}"
            raise ConfigError(msg, key="faster")
    for p in plan.plugins:
        t = traced.get(p.name)
        if t is None or not t.ran:
            why = "is not in the trace" if t is None else f"did not run in it ({t.status})"
            msg = f"plugin {p.name!r} {why}; record a trace of a boot where it ran"
            raise ConfigError(msg, path=plan.path)
    overheads = _overheads(trace)
    segments = {p.name: _segments(traced[p.name], faster.get(p.name, 1.0)) for p in plan.plugins}
    commits = {p.name: traced[p.name].commit_time for p in plan.plugins}
    sim = _Simulation(plan, count, segments, commits, overheads)
    simulated = sim.run()
    return Prediction(
        wall=simulated.wall,
        workers=count,
        chain=tuple(critical_chain(simulated)),
        trace=simulated,
        overheads=overheads,
    )


def _overheads(trace: TraceData) -> dict[str, float]:
    ran = [p for p in trace.plugins if p.ran]
    readies = [p.ready for p in ran if p.ready is not None]
    last_commit = max((p.finished or 0.0 for p in trace.plugins), default=0.0)
    dispatch = []
    for p in ran:
        if p.where != "pool" or p.ready is None or p.started is None:
            continue
        freed = [
            q.ended
            for q in ran
            if q.pid == p.pid and q is not p and q.ended is not None and q.ended <= p.started
        ]
        dispatch.append(max(0.0, p.started - max([p.ready, *freed])))
    report = []
    for p in ran:
        if p.commit_started is None or p.ended is None:
            continue
        earlier = [
            q.commit_ended
            for q in trace.plugins
            if q.domain == p.domain and q.cookie < p.cookie and q.commit_ended is not None
        ]
        report.append(max(0.0, p.commit_started - max([p.ended, *earlier])))
    return {
        "start": min(readies, default=0.0),
        "stop": max(0.0, trace.wall - last_commit),
        "dispatch": statistics.median(dispatch) if dispatch else 0.0,
        "commit": statistics.median(report) if report else 0.0,
    }


def _segments(p: TracedPlugin, factor: float) -> tuple[_Segment, ...]:
    assert p.started is not None
    assert p.ended is not None
    out = []
    at = p.started
    for w in p.waits:
        out.append(_Segment(max(0.0, w.started - at) / factor, w))
        at = max(at, w.ended)
    out.append(_Segment(max(0.0, p.ended - at) / factor))
    return tuple(out)


class _Simulation:
    """Discrete-event list scheduling of one boot; see :func:`plan_from`.

    Worker 0 is the parent: it runs ``where = "main"`` inits (first, as the boot launches them
    from inside the commit that made them ready) and commits, one thing at a time. The pool's
    workers are numbered from 1, and a :class:`Dispatcher` decides, as in the real pool, which
    ready init starts where, when the pool grows (invariant 5 and compensation for workers
    asleep in a synchronize) and when extra workers retire.
    """

    def __init__(
        self,
        plan: Plan,
        workers: int,
        segments: Mapping[str, tuple[_Segment, ...]],
        commits: Mapping[str, float],
        overheads: Mapping[str, float],
    ) -> None:
        self.plan = plan
        self.workers = workers
        self.segments = segments
        self.commit_times = commits
        self.overheads = overheads
        self.by_name = {p.name: p for p in plan.plugins}
        self.events: list[tuple[float, int, str, str]] = []  # (time, seq, kind, plugin)
        self.seq = 0
        self.by_cookie = {p.cookie: p.name for p in plan.plugins}
        self.dispatcher = Dispatcher()
        for worker in range(1, workers + 1):
            self.dispatcher.add_worker(worker)
        self.max_workers = default_max_workers(workers)
        self.blocked_since: dict[int, float] = {}  # pool worker -> when its init began to wait
        self.main_ready: list[tuple[int, str]] = []  # main inits waiting for the parent
        self.next_id = workers + 1
        self.running: dict[str, int] = {}  # init -> worker, while it runs or waits
        self.blocked: dict[str, TracedWait] = {}
        self.position: dict[str, int] = {}  # index of the segment it runs or waits after
        self.times: dict[str, dict[str, float]] = {p.name: {} for p in plan.plugins}
        self.pids: dict[str, int] = {}
        self.waits: dict[str, list[TracedWait]] = {p.name: [] for p in plan.plugins}
        self.ended: set[str] = set()
        self.committed: set[str] = set()
        self.queues = {
            d: [p.name for p in plan.plugins if p.domain == d]
            for d in dict.fromkeys(p.domain for p in plan.plugins)
        }
        self.parent_busy = False

    def push(self, at: float, kind: str, name: str) -> None:
        self.seq += 1
        heapq.heappush(self.events, (at, self.seq, kind, name))

    def run(self) -> TraceData:
        start = self.overheads["start"]
        for p in self.plan.plugins:
            self.times[p.name]["scheduled"] = 0.0
            if not p.requires:
                self.make_ready(p.name, start)
        now = start
        self.step(now)
        while self.events:
            now, _, kind, name = heapq.heappop(self.events)
            if kind == "segment":
                self.segment_done(name, now)
            elif kind == "committed":
                self.commit_done(name, now)
            self.step(now)  # "commit": a finished init may commit now
        missing = [p.name for p in self.plan.plugins if p.name not in self.committed]
        if missing:
            msg = (
                f"cannot plan: in the simulated boot {', '.join(missing)} never committed; a "
                f"wait recorded in the trace never ended"
            )
            raise ConfigError(msg, path=self.plan.path)
        last = max(self.times[n]["commit_ended"] for n in self.committed)
        return self.result(last + self.overheads["stop"])

    def step(self, now: float) -> None:
        """Give the parent its next job, then the workers theirs."""
        if not self.parent_busy:
            if self.main_ready:
                self.start(heapq.heappop(self.main_ready)[1], now, 0)
            else:
                self.commit_next(now)
        dispatcher = self.dispatcher
        asleep = {w for w, t in self.blocked_since.items() if now - t >= GROW_AFTER - 1e-9}
        while dispatcher.should_grow(self.max_workers, self.workers, asleep):
            dispatcher.add_worker(self.next_id)
            self.next_id += 1
        for worker, cookie in dispatcher.assign():
            self.start(self.by_cookie[cookie], now + self.overheads["dispatch"], worker)
        for worker in dispatcher.surplus(self.workers):
            dispatcher.remove_worker(worker)

    # -- inits -----------------------------------------------------------------------------------
    def make_ready(self, name: str, at: float) -> None:
        self.times[name]["ready"] = at
        p = self.by_name[name]
        if p.where == "main":
            heapq.heappush(self.main_ready, (p.cookie, name))
        else:
            self.dispatcher.add(p.cookie)

    def start(self, name: str, at: float, worker: int) -> None:
        self.running[name] = self.pids[name] = worker
        self.times[name]["started"] = at
        self.position[name] = 0
        self.push(at + self.segments[name][0].run, "segment", name)
        if worker == 0:
            self.parent_busy = True

    def segment_done(self, name: str, now: float) -> None:
        wait = self.segments[name][self.position[name]].wait
        if wait is None:
            self.init_done(name, now)
            return
        self.blocked[name] = wait
        if self.running[name] > 0:
            self.dispatcher.blocked(self.running[name])
            self.blocked_since[self.running[name]] = now
        self.waits[name].append(_moved(wait, now, now))
        self.push(now + GROW_AFTER, "asleep", name)  # the pool may grow then: step again
        self.release(now)

    def release(self, now: float) -> None:
        for name, wait in list(self.blocked.items()):
            if self.may_pass(name, wait):
                del self.blocked[name]
                if self.running[name] > 0:
                    self.dispatcher.unblocked(self.running[name])
                    del self.blocked_since[self.running[name]]
                self.waits[name][-1] = _moved(wait, self.waits[name][-1].started, now)
                self.position[name] += 1
                self.push(now + self.segments[name][self.position[name]].run, "segment", name)

    def may_pass(self, name: str, wait: TracedWait) -> bool:
        own = self.by_name[name]
        if wait.what == "after":
            held = [p for p in self.plan.plugins if p.cookie == wait.cookie]
        elif wait.what == "cookie":
            held = [p for p in self.plan.plugins if p.domain == wait.domain]
            held = [p for p in held if p.cookie < wait.cookie]
        elif wait.domain is not None:
            held = [p for p in self.plan.plugins if p.domain == wait.domain and p is not own]
        else:
            held = [p for p in self.plan.plugins if p.domain != own.domain]
        return all(p.name in self.ended for p in held)

    def init_done(self, name: str, now: float) -> None:
        self.times[name]["ended"] = now
        self.ended.add(name)
        worker = self.running.pop(name)
        self.release(now)
        if worker == 0:
            self.parent_busy = False
        else:
            self.dispatcher.complete(self.by_name[name].cookie)  # its worker is idle again
        self.times[name]["commit_ready"] = now + self.overheads["commit"]
        self.push(now + self.overheads["commit"], "commit", name)

    # -- commits ---------------------------------------------------------------------------------
    def commit_next(self, now: float) -> None:
        for queue in self.queues.values():
            if not queue:
                continue
            t = self.times[queue[0]]
            if "commit_started" not in t and t.get("commit_ready", float("inf")) <= now:
                t["commit_started"] = now
                self.parent_busy = True
                self.push(now + self.commit_times[queue[0]], "committed", queue[0])
                return

    def commit_done(self, name: str, now: float) -> None:
        self.times[name]["commit_ended"] = now
        self.committed.add(name)
        self.queues[self.by_name[name].domain].pop(0)
        self.parent_busy = False
        for p in self.plan.plugins:
            if (
                name in p.requires
                and "ready" not in self.times[p.name]
                and all(r in self.committed for r in p.requires)
            ):
                self.make_ready(p.name, now)

    def result(self, wall: float) -> TraceData:
        plugins = []
        for p in self.plan.plugins:
            t = self.times[p.name]
            plugins.append(
                TracedPlugin(
                    name=p.name,
                    cookie=p.cookie,
                    domain=p.domain,
                    requires=p.requires,
                    where=p.where,
                    status="ok",
                    scheduled=t["scheduled"],
                    ready=t["ready"],
                    started=t["started"],
                    ended=t["ended"],
                    commit_started=t["commit_started"],
                    commit_ended=t["commit_ended"],
                    pid=self.pids[p.name],
                    waits=tuple(self.waits[p.name]),
                )
            )
        return TraceData(
            plugins=tuple(plugins),
            wall=wall,
            parent_pid=0,
            workers=self.workers,
            start_method="simulated",
            config=self.plan.path,
        )


def _moved(wait: TracedWait, started: float, ended: float) -> TracedWait:
    return TracedWait(wait.what, wait.domain, wait.cookie, started, ended)
