"""Where a boot's time went: blame, the critical chain, and a what-if planner.

All three read a :class:`~initgraph._observe.trace.TraceData` (from a trace file or a finished
boot) and do no I/O.

- :func:`blame`: one row per plugin, its life split into separate columns — waiting for its
  requirements, queued for a worker, running, waiting in synchronize, waiting for its turn to
  commit (in order), its turn come but the parent busy, moving its data between processes,
  committing. Unlike ``systemd-analyze blame`` the waits are not counted as work.
- :func:`critical_chain`: the steps that set the boot's total time, found by walking back from
  the last event through whatever each step waited for, across domains, with the time between
  steps as links of their own, so that the chain spans the boot's wall time.
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
from .trace import TraceData, TracedPlugin, TracedTransfer, TracedWait, ms_text

if TYPE_CHECKING:
    from .._boot.run import Plan

__all__ = [
    "BLAME_COLUMNS",
    "BlameRow",
    "ChainLink",
    "Prediction",
    "blame",
    "chain_between",
    "chain_length",
    "chain_steps",
    "chain_time",
    "critical_chain",
    "format_critical_chain",
    "plan_from",
]

# Two events closer than this are taken as simultaneous when deciding what one waited for: the
# parent learns that an init ended a little after it did, and hands out work a little after it
# could. A wait shorter than this is not a wait worth following.
_SLACK = 0.001

Interval = tuple[float, float]


# -- blame ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BlameRow:
    """Where one plugin's time went, in seconds; the columns add up to ``total``.

    ``requires``: scheduled until it was ready (what it requires had finished); ``queued``: then
    until a worker started it; ``running``: its init, waits left out; ``waiting``: its init's
    waits in synchronize; ``in_order``: from its init's end until its turn to commit came (lower
    cookies of its domain, and what it requires, committed first); ``parent_busy``: from its turn
    until its commit started, the parent busy with other plugins' commits and with receiving
    results (its own included, where the trace records no transfer); ``transfer``: the trace's
    ``serialize``, ``transfer`` and ``load`` spans of its inputs and result, taken out of the
    columns they fall in; ``commit``: its commit. ``shutdown``: its ``initgraph_shutdown``, when
    the boot was closed (None if it had none); it comes after the boot, so it is not in ``total``.
    """

    name: str
    cookie: int
    status: str
    requires: float
    queued: float
    running: float
    waiting: float
    in_order: float
    parent_busy: float
    transfer: float
    commit: float
    shutdown: float | None = None

    @property
    def total(self) -> float:
        """From its scheduling to the end of its commit."""
        return (
            self.requires
            + self.queued
            + self.running
            + self.waiting
            + self.in_order
            + self.parent_busy
            + self.transfer
            + self.commit
        )


def _gap(start: float | None, end: float | None) -> float:
    return 0.0 if start is None or end is None else max(0.0, end - start)


def _union(spans: Iterable[Interval]) -> list[Interval]:
    """``spans`` merged where they overlap, in time order."""
    merged: list[Interval] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _within(spans: Sequence[Interval], start: float | None, end: float | None) -> float:
    """How much of ``[start, end]`` the merged ``spans`` cover."""
    if start is None or end is None:
        return 0.0
    return sum(max(0.0, min(end, e) - max(start, s)) for s, e in spans)


def commit_turn(trace: TraceData, p: TracedPlugin) -> float | None:
    """When ``p`` was finished and it was its turn to commit: its init had ended, and so had
    the commits of the cookie before it in its domain and of what it requires."""
    if p.ended is None:
        return None
    before = [
        q.commit_ended
        for q in trace.plugins
        if q.commit_ended is not None
        and ((q.domain == p.domain and q.cookie < p.cookie) or q.name in p.requires)
    ]
    turn = max([p.ended, *before])
    return turn if p.commit_started is None else min(turn, max(p.ended, p.commit_started))


def blame(trace: TraceData) -> list[BlameRow]:
    """One row per plugin, longest total first (ties in cookie order)."""
    rows = []
    for p in trace.plugins:
        moving = _union((t.started, t.ended) for t in p.transfers)

        def gap(start: float | None, end: float | None, moving: list[Interval] = moving) -> float:
            return max(0.0, _gap(start, end) - _within(moving, start, end))

        ready = p.ready if p.ready is not None else p.started
        turn = commit_turn(trace, p)
        waiting = sum(max(0.0, w.duration - _within(moving, w.started, w.ended)) for w in p.waits)
        in_init = _within(moving, p.started, p.ended)
        rows.append(
            BlameRow(
                name=p.name,
                cookie=p.cookie,
                status=p.status,
                requires=gap(p.scheduled, ready),
                queued=gap(ready, p.started),
                running=max(0.0, p.init_time - in_init - waiting),
                waiting=waiting,
                in_order=gap(p.ended, turn),
                parent_busy=gap(turn, p.commit_started),
                transfer=sum(e - s for s, e in moving),
                commit=gap(p.commit_started, p.commit_ended),
                shutdown=p.shutdown_time,
            )
        )
    return sorted(rows, key=lambda r: (-r.total, r.cookie))


BLAME_COLUMNS = (
    "total",
    "requires",
    "queued",
    "running",
    "waiting",
    "in_order",
    "parent_busy",
    "transfer",
    "commit",
    "shutdown",
)
"""The columns of :class:`BlameRow`, in the order ``initgraph blame`` prints them."""


# -- the critical chain ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ChainLink:
    """One step of the critical chain, in seconds since the boot started.

    ``kind``: ``init`` (a plugin's init), ``wait`` (a wait inside it), ``commit``, ``transfer``
    (a traced ``serialize``, ``transfer`` or ``load`` of the next step's plugin) or ``gap`` (time
    between two steps that no traced span explains: starting and stopping the boot, handing an
    init to a worker, a result reaching the parent, the parent busy with something else).
    ``plugin`` is the plugin of the step (for a gap or transfer, of the step it leads to; empty
    for the boot's start and stop). ``via``: how the step after it waited for this one —
    ``requires`` (it required this plugin), ``worker`` (it was queued until this init freed the
    worker), ``in order`` (its commit came after this one's), ``own`` (this is its own init),
    ``parent`` (the parent was busy with this), ``synchronize`` (its wait ended when this init
    did) or ``inside`` (this wait is inside that init); empty for the last step and for gaps.
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
    """The chain of steps that set the boot's total time, first step first.

    It starts from the event that ended last — a commit, or an init that never committed — in
    any domain, and walks back through what each step waited for, whichever ended last before
    it: for an init, what made it ready (a requirement's init end or its commit end) or, if it
    was queued, the init that freed its worker; for a wait inside an init, the init whose end
    released it; for a commit, its own init, the commit before it in its domain, a requirement's
    commit, or what kept the parent busy (another commit, a ``where = "main"`` init). The time
    between steps is in the chain too, as ``transfer`` links where the trace records them and
    ``gap`` links otherwise, from the boot's start to its end: the chain spans the wall time
    (:func:`chain_length`). Like ``systemd-analyze critical-chain``.
    """
    return _Walk(trace).chain()


def chain_length(chain: Sequence[ChainLink]) -> float:
    """The time the chain covers: its links merged where they overlap (a wait is in its init)."""
    return sum(e - s for s, e in _union((link.started, link.ended) for link in chain))


def chain_between(chain: Sequence[ChainLink]) -> float:
    """The chain's time between steps that no recorded span explains: its ``gap`` links."""
    return chain_time(chain, "gap")


def chain_time(chain: Sequence[ChainLink], *kinds: str) -> float:
    """The time of the chain's links of ``kinds`` (``"transfer"``: moving data; ``"boot"``:
    starting and stopping the pool)."""
    return sum(link.duration for link in chain if link.kind in kinds)


Candidate = tuple[float, int, tuple[str, TracedPlugin], str]


class _Walk:
    """One walk back along a trace, from its last event; see :func:`critical_chain`."""

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
                assert p.commit_started is not None
                label = f"{p.name} commit"
                links.append(
                    ChainLink(p.name, "commit", label, p.commit_started, p.commit_time, via)
                )
                step, via = self.before_commit(p)
                continue
            links.append(ChainLink(p.name, "init", p.name, p.started or 0.0, p.init_time, via))
            wait = self.last_wait(p)
            if wait is not None:
                label = f"{p.name} {wait.label}"
                links.append(
                    ChainLink(p.name, "wait", label, wait.started, wait.duration, "inside")
                )
                releaser = self.releaser(p, wait)
                step, via = (("init", releaser), "synchronize") if releaser else (None, "")
            else:
                step, via = self.before_init(p)
        links.reverse()
        return self.between(links)

    # -- what each step waited for ---------------------------------------------------------------
    def before_commit(self, p: TracedPlugin) -> tuple[tuple[str, TracedPlugin] | None, str]:
        """What its commit waited for, whichever ended last: its own init, the commit before it
        in its domain, a requirement's commit, or what kept the parent busy."""
        assert p.commit_started is not None
        at = p.commit_started + _SLACK
        candidates: list[Candidate] = []
        if p.ended is not None:
            candidates.append((p.ended, 0, ("init", p), "own"))
        # Only commits the parent ran before this one: two within _SLACK must not point at
        # each other.
        mine = (p.commit_started, p.commit_ended, p.cookie)
        before = [
            q
            for q in self.trace.plugins
            if q.commit_started is not None
            and q.commit_ended is not None
            and (q.commit_started, q.commit_ended, q.cookie) < mine
        ]
        earlier = [q for q in before if q.domain == p.domain and q.cookie < p.cookie]
        if earlier:
            q = max(earlier, key=lambda q: q.cookie)
            assert q.commit_ended is not None
            candidates.append((q.commit_ended, 1, ("commit", q), "in order"))
        for q in before:
            assert q.commit_ended is not None
            if q.name in p.requires:
                candidates.append((q.commit_ended, 1, ("commit", q), "requires"))
            # The parent commits one plugin at a time: any other commit delays this one.
            candidates.append((q.commit_ended, 2, ("commit", q), "parent"))
        for q in self.ran:
            if q.where == "main" and q is not p and q.ended is not None:
                candidates.append((q.ended, 2, ("init", q), "parent"))
        return _latest(c for c in candidates if c[0] <= at)

    def before_init(self, p: TracedPlugin) -> tuple[tuple[str, TracedPlugin] | None, str]:
        """What its init waited for, whichever ended last: the requirement event that made it
        ready (an init's end or a commit's end, as the boot decides readiness), or a free
        worker."""
        if p.started is None:
            return None, ""
        ready = p.ready if p.ready is not None else p.started
        candidates: list[Candidate] = []
        for r in self.required(p):
            if r.ended is not None and r.ended <= ready + _SLACK:
                candidates.append((r.ended, 0, ("init", r), "requires"))
            if r.commit_ended is not None and r.commit_ended <= ready + _SLACK:
                candidates.append((r.commit_ended, 0, ("commit", r), "requires"))
        if p.started - ready > _SLACK:  # queued: the worker was busy
            at = p.started + _SLACK
            same = [
                q
                for q in self.ran
                if q.pid == p.pid and q is not p and q.ended is not None and q.ended <= at
            ]
            if same:
                q = max(same, key=lambda q: q.ended or 0.0)
                candidates.append((q.ended or 0.0, 1, ("init", q), "worker"))
        return _latest(candidates)

    def required(self, p: TracedPlugin) -> list[TracedPlugin]:
        return [self.by_name[r] for r in p.requires if r in self.by_name]

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

    # -- the time between steps ------------------------------------------------------------------
    def between(self, steps: list[ChainLink]) -> list[ChainLink]:
        """``steps`` with the time no step covers filled in, from 0 to the boot's wall time."""
        out: list[ChainLink] = []
        covered = 0.0
        for i, link in enumerate(steps):
            if link.started > covered:
                out += self.filled(covered, link.started, steps[i - 1] if i else None, link)
            out.append(link)
            covered = max(covered, link.ended)
        if steps and self.trace.wall > covered:
            out += self.filled(covered, self.trace.wall, steps[-1], None)
        return out

    def filled(
        self, start: float, end: float, before: ChainLink | None, after: ChainLink | None
    ) -> list[ChainLink]:
        """``[start, end)``: what the trace recorded in it, gaps around.

        Recorded: the transfer spans of the step before (its result on its way to the parent)
        and of the step after (its inputs on their way to it, its result before its commit),
        and the pool's start and stop.
        """
        plugin = after.plugin if after is not None else ""
        # start, end, plugin, kind, label, and whether it is a load of that plugin's own result
        spans: list[tuple[float, float, str, str, str, bool]] = []
        for link in (before, after):
            if link is None or link.plugin not in self.by_name:
                continue
            for t in self.by_name[link.plugin].transfers:
                size = "" if t.size is None else f" {_bytes_text(t.size)}"
                of = "" if t.of is None else f" of {t.of}"
                label = f"{link.plugin} {t.name}{of}{size}"
                own_load = t.name == "load" and t.of is None
                spans.append((t.started, t.ended, link.plugin, "transfer", label, own_load))
        trace = self.trace
        if before is None and trace.pool_started is not None:
            spans.append((0.0, trace.pool_started, "", "boot", "[pool start]", False))
        if after is None and trace.pool_stopping is not None:
            spans.append((trace.pool_stopping, trace.wall, "", "boot", "[pool stop]", False))
        out: list[ChainLink] = []
        at = start
        loaded = False  # a load of a plugin's own result came last: it is in the parent
        for s_start, s_end, owner, kind, label, own_load in sorted(set(spans)):
            s_start, s_end = max(at, s_start), min(end, s_end)
            if s_end <= s_start:
                continue
            if s_start > at:
                out.append(self.gap(plugin, at, s_start, before, after, loaded=loaded))
            out.append(ChainLink(owner, kind, label, s_start, s_end - s_start))
            loaded = own_load
            at = s_end
        if end > at:
            out.append(self.gap(plugin, at, end, before, after, loaded=loaded))
        return out

    def gap(
        self,
        plugin: str,
        start: float,
        end: float,
        before: ChainLink | None,
        after: ChainLink | None,
        *,
        loaded: bool = False,
    ) -> ChainLink:
        """Time between ``before`` and ``after`` no span explains, named for what happens in it.

        ``loaded``: a result's load in the parent ended where it starts.
        """
        if before is None and (start <= 0.0 or after is None):
            label = "[boot start]"  # (after the pool started: what follows names it)
        elif after is None:
            label = "[boot stop]"
        elif (
            after.kind == "commit"
            and before is not None
            and before.plugin == after.plugin
            and not loaded  # once loaded, the result is in the parent
        ):
            label = f"[{after.plugin}'s result to the parent]"
        elif after.kind == "commit":
            label = f"[parent, before {after.label}]"
        elif self.by_name[after.plugin].where == "main":
            label = f"[starting {after.plugin} on the parent]"
        elif after.kind == "init" and self.first_on_new_worker(self.by_name[after.plugin]):
            label = f"[worker {self.by_name[after.plugin].pid} starting]"
            return ChainLink(plugin, "boot", label, start, end - start)
        else:
            label = f"[handing {after.plugin} to a worker]"
        return ChainLink(plugin, "gap", label, start, end - start)

    def first_on_new_worker(self, p: TracedPlugin) -> bool:
        """Whether ``p`` was the first init of a worker the pool started with, ready at once.

        The pool forks its workers as it starts and hands them the plugins that are ready
        before they are up: such an init waits for its worker to start, nothing else. (Any
        other init is handed over about a millisecond after it is ready, or after the init that
        frees its worker; a worker the pool grows later is not one of these.)
        """
        trace = self.trace
        if trace.pool_started is None or p.ready is None or p.pid is None:
            return False
        at_once = not p.requires or p.ready <= trace.pool_started + _SLACK
        initial = trace.pids[1 : 1 + trace.workers]
        same = [q for q in self.ran if q.pid == p.pid]
        return at_once and p.pid in initial and p is min(same, key=lambda q: q.started or 0.0)


def _bytes_text(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _latest(candidates: Iterable[Candidate]) -> tuple[tuple[str, TracedPlugin] | None, str]:
    """The candidate that ended last; within ``_SLACK`` of it, the one of first rank (of those,
    the last to end)."""
    found = list(candidates)
    if not found:
        return None, ""
    latest = max(c[0] for c in found)
    best = min((c for c in found if c[0] >= latest - _SLACK), key=lambda c: (c[1], -c[0]))
    return best[2], best[3]


_STEPS = ("init", "wait", "commit")  # the other kinds are what lies between steps

_VIA_TEXT = {
    "requires": "required by {}",
    "worker": "{} was queued behind it",
    "in order": "{} commits after it",
    "parent": "{} waited for the parent",
    "synchronize": "{} waited for it",
}


def format_critical_chain(chain: Sequence[ChainLink], *, wall: float | None = None) -> list[str]:
    """The chain as ``systemd-analyze critical-chain`` prints one: last step first, indented.

    ``@`` is when a step started, ``+`` how long it took, both in milliseconds. What lies between
    steps (a gap, moving data, the pool starting or stopping) is left out of the lines (not out
    of the totals) when it is shorter than a millisecond or than 1% of the chain: handing work
    over, moving a small result and reporting back take about that long on every step.
    """
    lines = []
    if wall is not None:
        covers, between = chain_length(chain), chain_between(chain)
        moving, pool = chain_time(chain, "transfer"), chain_time(chain, "boot")
        steps = covers - between - moving - pool
        lines.append(
            f"boot took {ms_text(wall, 'ms')}; the chain covers {ms_text(covers, 'ms')}: "
            f"{ms_text(steps, 'ms')} in its steps, {ms_text(moving, 'ms')} moving data, "
            f"{ms_text(pool, 'ms')} starting and stopping the pool, {ms_text(between, 'ms')} "
            f"between steps"
        )
    above = ""
    least = max(_SLACK, chain_length(chain) / 100)
    shown = [link for link in chain if link.kind in _STEPS or link.duration >= least]
    for depth, link in enumerate(reversed(shown)):
        prefix = "" if depth == 0 else "  " * (depth - 1) + "└─"
        text = (
            f"{prefix}{link.label} @{ms_text(link.started, 'ms')} +{ms_text(link.duration, 'ms')}"
        )
        why = _VIA_TEXT.get(link.via)
        if why:
            text += f" ({why.format(above)})"
        lines.append(text)
        if link.kind in _STEPS:
            above = link.plugin
    return lines


def chain_steps(chain: Sequence[ChainLink]) -> list[str]:
    """The chain's inits and commits by name, first first, for a one-line summary.

    A commit right after its own init goes under the plugin's name; one shorter than a
    millisecond is left out unless it ends the chain (it set nothing but its place).
    """
    steps = [link for link in chain if link.kind in ("init", "commit")]
    names: list[str] = []
    for i, link in enumerate(steps):
        if link.kind == "init":
            names.append(link.plugin)
        elif not (names and names[-1] == link.plugin) and (
            link.duration >= _SLACK or i == len(steps) - 1
        ):
            names.append(link.label)
    return names


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
    synchronize calls wait again; it may start once everything it requires has finished its init
    and a worker is free, lowest cookie first; a waiting init holds its worker, and the pool grows
    and shrinks as the real one does (the simulation drives the pool's own ``Dispatcher``).
    ``where = "main"`` inits run on the parent. Each domain commits in cookie order on the parent,
    after what each plugin requires has committed, one commit at a time, each as long as measured.
    Moving data takes as long as the trace's transfer spans: a pool plugin's result is pickled
    by its worker (which takes no other init meanwhile), travels and is loaded by the parent
    before its commit can start and before what requires it is ready; its inputs travel to its
    worker before its init starts (their loads are inside its init). Measured from ``trace`` and
    added: the time until the first plugin was ready and after the last commit (starting and
    stopping the pool), how long a worker the pool started with took to take its first init,
    and the median delay to start a ready init and to commit a finished one, moving data left out.
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
    moves = {p.name: _Moves.of(traced[p.name]) for p in plan.plugins}
    sim = _Simulation(plan, count, segments, commits, overheads, moves)
    simulated = sim.run()
    return Prediction(
        wall=simulated.wall,
        workers=count,
        chain=tuple(critical_chain(simulated)),
        trace=simulated,
        overheads=overheads,
    )


@dataclass(frozen=True)
class _Moves:
    """How long a plugin's data took to move, from its trace's transfer spans (seconds)."""

    serialize: float = 0.0  # its result, pickled by its worker
    transfer: float = 0.0  # its result, in flight to the parent
    load: float = 0.0  # its result, loaded by the parent
    inputs: float = 0.0  # its inputs, in flight to its worker (together)
    size: int | None = None  # of its result

    @classmethod
    def of(cls, p: TracedPlugin) -> _Moves:
        own = [t for t in p.transfers if t.of is None]

        def total(name: str) -> float:
            return sum(t.duration for t in own if t.name == name)

        inputs = [t.duration for t in p.transfers if t.of is not None and t.name == "transfer"]
        sizes = [t.size for t in own if t.size is not None]
        return cls(
            serialize=total("serialize"),
            transfer=total("transfer"),
            load=total("load"),
            inputs=max(inputs, default=0.0),
            size=max(sizes) if sizes else None,
        )

    @property
    def freed(self) -> float:
        """From its init's end until its worker was free: its result pickled and sent."""
        return self.serialize + self.transfer

    @property
    def result(self) -> float:
        """From its init's end until its result was loaded in the parent."""
        return self.serialize + self.transfer + self.load


def _overheads(trace: TraceData) -> dict[str, float]:
    ran = [p for p in trace.plugins if p.ran]
    moves = {p.name: _Moves.of(p) for p in trace.plugins}
    readies = [p.ready for p in ran if p.ready is not None]
    last_commit = max((p.finished or 0.0 for p in trace.plugins), default=0.0)
    dispatch, worker_start = [], []
    walk = _Walk(trace)
    for p in ran:
        if p.where != "pool" or p.ready is None or p.started is None:
            continue
        if walk.first_on_new_worker(p):  # it waited for its worker to start
            worker_start.append(max(0.0, p.started - p.ready - moves[p.name].inputs))
            continue
        freed = [
            (q.ended or 0.0) + moves[q.name].freed
            for q in ran
            if q.pid == p.pid and q is not p and q.ended is not None and q.ended <= p.started
        ]
        waited = p.started - max([p.ready, *freed]) - moves[p.name].inputs
        dispatch.append(max(0.0, waited))
    report = []
    for p in ran:
        if p.commit_started is None or p.ended is None:
            continue
        earlier = [
            q.commit_ended
            for q in trace.plugins
            if q.domain == p.domain and q.cookie < p.cookie and q.commit_ended is not None
        ]
        # The parent's other work before it: commits of any domain and where = "main" inits.
        busy = [
            end
            for q in trace.plugins
            if q is not p
            for end in (q.commit_ended, q.ended if q.where == "main" else None)
            if end is not None and end <= p.commit_started
        ]
        arrived = p.ended + moves[p.name].result
        report.append(max(0.0, p.commit_started - max([arrived, *earlier, *busy])))
    return {
        "start": min(readies, default=0.0),
        "stop": max(0.0, trace.wall - last_commit),
        "dispatch": statistics.median(dispatch) if dispatch else 0.0,
        "commit": statistics.median(report) if report else 0.0,
        "worker_start": statistics.median(worker_start) if worker_start else 0.0,
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

    Worker 0 is the parent: it runs ``where = "main"`` inits (before any waiting commit) and
    commits, one thing at a time. The pool's workers are numbered from 1, and a
    :class:`Dispatcher` decides, as in the real pool, which ready init starts where, when the pool
    grows (invariant 5 and compensation for workers asleep in a synchronize) and when extra
    workers retire.
    """

    def __init__(
        self,
        plan: Plan,
        workers: int,
        segments: Mapping[str, tuple[_Segment, ...]],
        commits: Mapping[str, float],
        overheads: Mapping[str, float],
        moves: Mapping[str, _Moves] | None = None,
    ) -> None:
        self.plan = plan
        self.workers = workers
        self.segments = segments
        self.commit_times = commits
        self.overheads = overheads
        self.moves = {p.name: (moves or {}).get(p.name, _Moves()) for p in plan.plugins}
        # pool worker -> when it can take its first init (the pool started with it, or grew)
        self.up_at: dict[int, float] = {}
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
        self.arrived: set[str] = set()  # its result is in the parent
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
        for worker in range(1, self.workers + 1):
            self.up_at[worker] = start + self.overheads.get("worker_start", 0.0)
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
            elif kind == "freed":
                self.dispatcher.complete(self.by_name[name].cookie)  # its worker is idle again
            elif kind == "result":
                self.result_in(name, now)
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
        return self.result(last, last + self.overheads["stop"])

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
            self.up_at[self.next_id] = now + self.overheads.get("worker_start", 0.0)
            self.next_id += 1
        for worker, cookie in dispatcher.assign():
            name = self.by_cookie[cookie]
            # handed over once ready and its worker is up, then its inputs travel to it
            ready = max(now, self.times[name]["ready"]) + self.overheads["dispatch"]
            at = max(ready, self.up_at.get(worker, 0.0))
            self.start(name, at + self.moves[name].inputs, worker)
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
        self.release(now)  # waiters go on at once: a worker finishes an init before pickling
        if worker == 0:
            self.parent_busy = False
            self.result_in(name, now)
            return
        moves = self.moves[name]
        self.push(now + moves.freed, "freed", name)
        self.push(now + moves.result, "result", name)

    def result_in(self, name: str, now: float) -> None:
        """Its result is in the parent: it may commit, and what requires it may start."""
        self.arrived.add(name)
        self.times[name]["commit_ready"] = now + self.overheads["commit"]
        self.push(now + self.overheads["commit"], "commit", name)
        # A plugin may start once every plugin it requires has finished its init.
        for p in self.plan.plugins:
            if (
                name in p.requires
                and "ready" not in self.times[p.name]
                and all(r in self.arrived for r in p.requires)
            ):
                self.make_ready(p.name, now + self.overheads["commit"])

    # -- commits ---------------------------------------------------------------------------------
    def commit_next(self, now: float) -> None:
        for queue in self.queues.values():
            if not queue:
                continue
            t = self.times[queue[0]]
            requires = self.by_name[queue[0]].requires
            if (
                "commit_started" not in t
                and t.get("commit_ready", float("inf")) <= now
                and all(r in self.committed for r in requires)
            ):
                t["commit_started"] = now
                self.parent_busy = True
                self.push(now + self.commit_times[queue[0]], "committed", queue[0])
                return

    def commit_done(self, name: str, now: float) -> None:
        self.times[name]["commit_ended"] = now
        self.committed.add(name)
        self.queues[self.by_name[name].domain].pop(0)
        self.parent_busy = False

    def result(self, last: float, wall: float) -> TraceData:
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
                    transfers=self.transfers(p.name),
                )
            )
        return TraceData(
            plugins=tuple(plugins),
            wall=wall,
            parent_pid=0,
            workers=self.workers,
            start_method="simulated",
            config=self.plan.path,
            pool_started=self.overheads["start"],
            pool_stopping=last,
        )

    def transfers(self, name: str) -> tuple[TracedTransfer, ...]:
        """Its simulated transfer spans: its inputs before its init, its result after it."""
        t, m, pid = self.times[name], self.moves[name], self.pids[name]
        if pid == 0:
            return ()
        out = []
        if m.inputs > 0:
            of = ", ".join(self.by_name[name].requires)
            out.append(
                TracedTransfer("transfer", pid, t["started"] - m.inputs, t["started"], of=of)
            )
        at = t["ended"]
        for step, took, where in (
            ("serialize", m.serialize, pid),
            ("transfer", m.transfer, 0),
            ("load", m.load, 0),
        ):
            if took > 0:
                out.append(TracedTransfer(step, where, at, at + took, m.size))
                at += took
        return tuple(out)


def _moved(wait: TracedWait, started: float, ended: float) -> TracedWait:
    return TracedWait(wait.what, wait.domain, wait.cookie, started, ended)
