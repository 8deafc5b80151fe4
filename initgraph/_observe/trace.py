"""A boot's timings as a Chrome trace (Perfetto, chrome://tracing) and as kernel debug lines.

::

    Boot.timings ─► to_chrome_trace(boot) ─► {"traceEvents": [...], ...} ─► write_trace(boot, path)
                                               │
                    load_trace(path) ◄─ JSON ◄─┘   parse_trace(data) ─► TraceData (frozen)
                                                          │
                              _analysis (blame, critical chain, planner), _plot ◄─┘

The trace file is the record: :func:`parse_trace` rebuilds a :class:`TraceData` from its events
alone, and the in-process analysis goes through the same path (:func:`trace_of`), so what a file
holds and what the analysis uses cannot drift apart.

Events, all in microseconds since the boot started (integers, so that nested spans stay nested
exactly when a viewer converts them):

- one process track per process: ``initgraph parent`` and ``worker <pid>`` (``ph: "M"``), and
  in the parent a ``results`` thread (tid 1), where the boot loads what workers send;
- the parent's ``boot`` span, inside it ``pool start`` (until the worker pool was up) and ``pool
  stop`` (from the boot's last event until the pool had stopped), with ``cat: "boot"``; its
  ``commit <name>`` and ``shutdown <name>`` spans and the inits of ``where = "main"`` plugins;
  each init, on the track of the process that ran it (``cat: "init"``), with nested ``running``
  and wait spans (``synchronize(<cookie>)``, ``synchronize_full()``, ``after(<cookie>)``);
- a ``queued`` async span (``ph: "b"``/``"e"``) on the parent from ready to started;
- a flow arrow (``ph: "s"``/``"f"``) from the end of each requirement's init to its dependent's
  init;
- an instant event (``ph: "i"``) for each plugin that never ran (skipped or cancelled);
- moving results between processes, with ``cat: "transfer"`` and ``args: {"plugin": <name>,
  "bytes": <size>}``, and ``"of": <producer>`` for a plugin's input: ``serialize`` (pickling a
  result and writing it to shared memory, on the worker's track, after its init), ``load``
  (mapping and unpickling it: in the parent's ``results`` thread for a result; inside the init,
  on the worker's track, for an input its init read) as complete spans (``ph: "X"``), and
  ``transfer`` (in flight, from the send to the receipt, on the receiving process) as an async
  span (``ph: "b"``/``"e"``), since several may overlap. Readers take ``"X"`` spans of any of
  the three names too (:data:`TRANSFER_SPANS`).

The init span's ``args`` carry what the analysis needs besides the spans: cookie, domain,
requires, where, status and when it was scheduled.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._boot.debuglog import debug_lines as _debug_lines
from .._boot.state import Attempt, Transfer, Wait
from .._errors import ConfigError

if TYPE_CHECKING:
    from .._boot.run import Boot

__all__ = [
    "TRACE_FORMAT",
    "TRANSFER_SPANS",
    "TraceData",
    "TraceError",
    "TracedPlugin",
    "TracedTransfer",
    "TracedWait",
    "debug_lines",
    "load_trace",
    "ms_text",
    "parse_trace",
    "to_chrome_trace",
    "trace_of",
    "write_trace",
]

TRACE_FORMAT = 1  # otherData.initgraph_trace: bumped when the events change meaning

_US = 1_000_000
_RESULTS_TID = 1  # the parent's thread that receives and loads results (the boot's coordinator)


class TraceError(ConfigError):
    """A trace file that cannot be read or is not an initgraph trace: a bad argument."""


# -- what a trace holds --------------------------------------------------------------------------
# A wait inside an init, in seconds since the boot started: what the boot recorded.
TracedWait = Wait


TRANSFER_SPANS = ("serialize", "transfer", "load")
"""The names of the spans that move a plugin's inputs or result between processes."""


@dataclass(frozen=True)
class TracedTransfer:
    """Moving a plugin's inputs or result between processes: one span, in seconds.

    ``name``: one of :data:`TRANSFER_SPANS`; ``pid``: the process that did it; ``size``: the bytes
    moved, if recorded; ``of``: for a plugin's input, whose result it is (None: its own).
    """

    name: str
    pid: int
    started: float
    ended: float
    size: int | None = None
    of: str | None = None

    @property
    def duration(self) -> float:
        return max(0.0, self.ended - self.started)


@dataclass(frozen=True)
class TracedPlugin:
    """One plugin of a traced boot: its plan entry and when things happened to it (seconds).

    ``pid`` is None, and the init times too, for a plugin that never ran.
    """

    name: str
    cookie: int
    domain: str
    requires: tuple[str, ...]
    where: str
    status: str
    scheduled: float
    ready: float | None = None
    started: float | None = None
    ended: float | None = None
    commit_started: float | None = None
    commit_ended: float | None = None
    pid: int | None = None
    waits: tuple[TracedWait, ...] = ()
    transfers: tuple[TracedTransfer, ...] = ()
    shutdown_started: float | None = None  # its initgraph_shutdown, after the boot
    shutdown_ended: float | None = None

    @property
    def ran(self) -> bool:
        """True when its init ran (in a worker, or in the parent)."""
        return self.pid is not None and self.started is not None and self.ended is not None

    @property
    def init_time(self) -> float:
        """How long its init ran, waits included (0 if it never ran)."""
        if self.started is None or self.ended is None:
            return 0.0
        return self.ended - self.started

    @property
    def waiting(self) -> float:
        """How long its init waited in synchronize calls."""
        return sum(w.duration for w in self.waits)

    @property
    def running(self) -> float:
        """How long its init ran, waits left out."""
        return max(0.0, self.init_time - self.waiting)

    @property
    def commit_time(self) -> float:
        if self.commit_started is None or self.commit_ended is None:
            return 0.0
        return self.commit_ended - self.commit_started

    @property
    def shutdown_time(self) -> float | None:
        """How long its shutdown hook ran (None if it had none, or it did not commit)."""
        if self.shutdown_started is None or self.shutdown_ended is None:
            return None
        return self.shutdown_ended - self.shutdown_started

    @property
    def finished(self) -> float | None:
        """When it was last busy: its commit's end, else its init's end."""
        return self.commit_ended if self.commit_ended is not None else self.ended


@dataclass(frozen=True)
class TraceData:
    """A traced boot: every plugin in cookie order, and how the boot ran."""

    plugins: tuple[TracedPlugin, ...]
    wall: float
    parent_pid: int
    workers: int
    start_method: str
    config: str | None = None
    pool_started: float | None = None  # when the worker pool was up
    pool_stopping: float | None = None  # when the boot's work was done and the pool began to stop

    def __iter__(self) -> Iterator[TracedPlugin]:
        return iter(self.plugins)

    @property
    def transfers_recorded(self) -> bool:
        """True when the trace holds transfer spans (older boots recorded none)."""
        return any(p.transfers for p in self.plugins)

    def plugin(self, name: str) -> TracedPlugin:
        """The traced plugin called ``name``."""
        for p in self.plugins:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def pids(self) -> tuple[int, ...]:
        """The parent, then each worker that ran an init, in order of its first init."""
        workers = sorted(
            (p for p in self.plugins if p.ran and p.pid != self.parent_pid),
            key=lambda p: (p.started, p.cookie),
        )
        return (self.parent_pid, *dict.fromkeys(p.pid for p in workers if p.pid is not None))


# -- building the events -------------------------------------------------------------------------
def ms_text(seconds: float | None, unit: str = "") -> str:
    """A time in milliseconds with one decimal and ``unit`` (``"12.3 ms"``); ``"-"`` for None."""
    return "-" if seconds is None else f"{seconds * 1000:.1f}{unit}"


def _us(seconds: float) -> int:
    return round(seconds * _US)


def _s(us: int | float) -> float:
    return us / _US


def to_chrome_trace(boot: Boot, *, parent_pid: int | None = None) -> dict[str, Any]:
    """The boot as a Chrome trace-event document, ready for ``json.dump``.

    ``parent_pid``: the process that ran the boot (default: this one, where ``boot()`` ran).
    """
    parent = os.getpid() if parent_pid is None else parent_pid
    events: list[dict[str, Any]] = []
    pids = [parent]
    for p in boot.plan.plugins:
        pid = boot.timings[p.name].pid if p.name in boot.timings else None
        if pid is not None and pid not in pids:
            pids.append(pid)
    for index, pid in enumerate(pids):
        title = "initgraph parent" if pid == parent else f"worker {pid}"
        events += [
            _meta(pid, "process_name", {"name": title}),
            _meta(pid, "process_sort_index", {"sort_index": index}),
            _meta(pid, "thread_name", {"name": title}),
        ]
    if any(t.transfers for t in boot.timings.values()):
        events.append({**_meta(parent, "thread_name", {"name": "results"}), "tid": _RESULTS_TID})
    wall = _us(boot.wall)
    events.append(_span(parent, "boot", "boot", 0, wall, {"plugins": len(boot.plan.plugins)}))
    if boot.pool_started is not None:
        events.append(_span(parent, "pool start", "boot", 0, _us(boot.pool_started), {}))
    if boot.pool_stopping is not None:
        stopping = min(_us(boot.pool_stopping), wall)
        events.append(_span(parent, "pool stop", "boot", stopping, wall - stopping, {}))

    flow = moved = 0
    for p in boot.plan.plugins:
        timing = boot.timings.get(p.name)
        args: dict[str, Any] = {
            "cookie": p.cookie,
            "domain": p.domain,
            "requires": list(p.requires),
            "where": p.where,
            "status": boot.status(p.name),
            "scheduled_us": _us(timing.scheduled) if timing is not None else 0,
        }
        failure = boot.failures.get(p.name)
        if failure is not None:
            args["error"] = failure.message
        if timing is None or timing.pid is None or timing.started is None or timing.ended is None:
            when = 0.0 if timing is None else (timing.ready or timing.scheduled)
            instant = {"ph": "i", "s": "p", "cat": "not run", "name": p.name, "ts": _us(when)}
            events.append({**instant, "pid": parent, "tid": parent, "args": args})
            continue
        pid = timing.pid
        start, end = _us(timing.started), _us(timing.ended)
        if timing.ready is not None:
            ready = min(_us(timing.ready), start)
            queued = {"cat": "queued", "name": "queued", "id": p.cookie, "pid": parent}
            queued.update(tid=parent, args={"plugin": p.name})
            events += [{"ph": "b", "ts": ready, **queued}, {"ph": "e", "ts": start, **queued}]
        events.append(_span(pid, p.name, "init", start, end - start, args))
        events += _init_children(pid, start, end, timing.waits)
        events += _attempt_spans(p.name, pid, parent, start, timing.attempts)
        for t in timing.transfers:
            moved += 1
            events += _transfer_events(p.name, t, parent, moved)
        for required in p.requires:
            r = boot.timings.get(required)
            if r is None or r.started is None or r.ended is None or r.pid is None:
                continue
            flow += 1
            r_start, r_end = _us(r.started), _us(r.ended)
            source = r_start + max(0, r_end - r_start - 1)  # inside the required init's span
            common = {"cat": "requires", "name": "requires", "id": flow}
            events += [
                {"ph": "s", "pid": r.pid, "tid": r.pid, "ts": source, **common},
                {"ph": "f", "bp": "e", "pid": pid, "tid": pid, "ts": start, **common},
            ]
    for p in boot.plan.plugins:
        timing = boot.timings.get(p.name)
        if timing is None or timing.commit_started is None or timing.commit_ended is None:
            continue
        c_start, c_end = _us(timing.commit_started), _us(timing.commit_ended)
        args = {"plugin": p.name, "cookie": p.cookie, "domain": p.domain}
        events.append(_span(parent, f"commit {p.name}", "commit", c_start, c_end - c_start, args))
    for p in boot.plan.plugins:
        timing = boot.timings.get(p.name)
        if timing is None or timing.shutdown_started is None or timing.shutdown_ended is None:
            continue
        s_start, s_end = _us(timing.shutdown_started), _us(timing.shutdown_ended)
        args = {"plugin": p.name, "cookie": p.cookie, "domain": p.domain}
        span = _span(parent, f"shutdown {p.name}", "shutdown", s_start, s_end - s_start, args)
        events.append(span)
    events.sort(key=_order)
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "initgraph_trace": TRACE_FORMAT,
            "config": boot.plan.path,
            "parent_pid": parent,
            "workers": boot.plan.workers,
            "start_method": boot.plan.start_method,
            "wall_us": _us(boot.wall),
            "plugins": len(boot.plan.plugins),
            "ok": boot.ok,
        },
    }


def _meta(pid: int, name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"ph": "M", "name": name, "pid": pid, "tid": pid, "args": args}


def _span(
    pid: int, name: str, cat: str, ts: int, dur: int, args: Mapping[str, Any]
) -> dict[str, Any]:
    span = {"ph": "X", "name": name, "cat": cat, "pid": pid, "tid": pid, "ts": ts, "dur": dur}
    return {**span, "args": dict(args)}


def _init_children(pid: int, start: int, end: int, waits: Iterable[Wait]) -> list[dict[str, Any]]:
    """The init's ``running`` and wait spans, back to back, clamped inside ``[start, end]``."""
    spans: list[dict[str, Any]] = []
    at = start
    for w in sorted(waits, key=lambda w: w.started):
        w_start = min(max(_us(w.started), at), end)
        w_end = min(max(_us(w.ended), w_start), end)
        if w_start > at:
            spans.append(_span(pid, "running", "running", at, w_start - at, {}))
        args = {"what": w.what, "domain": w.domain, "cookie": w.cookie}
        spans.append(_span(pid, w.label, "wait", w_start, w_end - w_start, args))
        at = w_end
    if end > at or not spans:
        spans.append(_span(pid, "running", "running", at, end - at, {}))
    return spans


def _attempt_spans(
    name: str, pid: int, parent: int, start: int, attempts: Iterable[Attempt]
) -> list[dict[str, Any]]:
    """An ``attempt N`` span per attempt of a retried init, and a ``retry delay`` after each.

    Attempts of the last run are drawn in its process; runs lost to a crash or a timeout came
    before it, in processes that are gone, so they are drawn in the parent's.
    """
    spans: list[dict[str, Any]] = []
    for a in attempts:
        a_start, a_end = _us(a.started), _us(a.ended)
        where = pid if a_start >= start else parent
        args = {"plugin": name, "attempt": a.number, "reason": a.reason}
        spans.append(_span(where, f"attempt {a.number}", "attempt", a_start, a_end - a_start, args))
        if a.delay > 0:
            delay = {"plugin": name, "attempt": a.number, "delay_ms": round(a.delay * 1e3, 3)}
            spans.append(_span(where, "retry delay", "retry", a_end, _us(a.delay), delay))
    return spans


def _transfer_events(name: str, t: Transfer, parent: int, n: int) -> list[dict[str, Any]]:
    """One step of moving ``name``'s result or input: a span, or an async span in flight."""
    args: dict[str, Any] = {"plugin": name, "bytes": t.size}
    if t.of is not None:
        args["of"] = t.of
    start, end = _us(t.started), _us(t.ended)
    if t.name == "transfer":
        common = {"cat": "transfer", "name": "transfer", "id": n, "pid": t.pid, "tid": t.pid}
        return [
            {"ph": "b", "ts": start, **common, "args": args},
            {"ph": "e", "ts": max(start, end), **common},
        ]
    span = _span(t.pid, t.name, "transfer", start, max(0, end - start), args)
    if t.pid == parent:
        span["tid"] = _RESULTS_TID
    return [span]


_PHASE_ORDER = {"M": 0, "b": 1, "X": 2, "i": 3, "s": 4, "f": 5, "e": 6}


def _order(event: Mapping[str, Any]) -> tuple[int, int, int, int]:
    # Metadata first; then by time, an enclosing span before what it encloses.
    if event["ph"] == "M":
        return (0, 0, 0, 0)
    return (1, event["ts"], _PHASE_ORDER[event["ph"]], -int(event.get("dur", 0)))


def write_trace(boot: Boot, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Write the boot's Chrome trace to ``path``; return the document written."""
    doc = to_chrome_trace(boot)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    return doc


# -- reading it back -----------------------------------------------------------------------------
def load_trace(path: str | os.PathLike[str]) -> TraceData:
    """Read a trace written by :func:`write_trace`; :class:`TraceError` names what is wrong."""
    name = os.fspath(path)
    try:
        text = Path(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        msg = f"trace {name!r}: no such file (record one with 'initgraph run --trace {name}')"
        raise TraceError(msg, path=name) from None
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"trace {name!r}: cannot read it: {exc}"
        raise TraceError(msg, path=name) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"trace {name!r}: not JSON: {exc}"
        raise TraceError(msg, path=name) from None
    return parse_trace(data, source=name)


def parse_trace(data: Any, *, source: str = "<trace>") -> TraceData:
    """Rebuild a :class:`TraceData` from a trace document (as ``json.load`` returns it)."""
    try:
        return _parse(data)
    except TraceError as exc:
        msg = f"trace {source!r}: {exc}"
        raise TraceError(msg, path=source) from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        msg = f"trace {source!r}: malformed initgraph trace: {type(exc).__name__}: {exc}"
        raise TraceError(msg, path=source) from None


def _parse(data: Any) -> TraceData:
    if not isinstance(data, dict) or not isinstance(data.get("traceEvents"), list):
        msg = "not a Chrome trace: expected an object with a 'traceEvents' list"
        raise TraceError(msg)
    other = data.get("otherData")
    if not isinstance(other, dict) or "initgraph_trace" not in other:
        msg = "not an initgraph trace: otherData.initgraph_trace is missing"
        raise TraceError(msg)
    if other["initgraph_trace"] != TRACE_FORMAT:
        msg = (
            f"trace format {other['initgraph_trace']!r} is not the one this initgraph reads "
            f"({TRACE_FORMAT}); record it again"
        )
        raise TraceError(msg)
    parent = int(other["parent_pid"])
    inits: dict[str, dict[str, Any]] = {}  # name -> init span or "not run" instant
    ready: dict[int, int] = {}  # cookie -> ready (us)
    commits: dict[str, tuple[int, int]] = {}
    shutdowns: dict[str, tuple[int, int]] = {}
    waits: dict[int, list[dict[str, Any]]] = {}  # pid -> wait spans
    transfers: dict[str, list[TracedTransfer]] = {}  # plugin -> its transfer spans
    in_flight: dict[Any, dict[str, Any]] = {}  # id -> the "b" of a transfer not yet ended
    boot_spans: dict[str, tuple[int, int]] = {}
    for event in data["traceEvents"]:
        ph, cat = event["ph"], event.get("cat")
        if (ph, cat) in (("X", "init"), ("i", "not run")):
            inits[event["name"]] = event
        elif ph == "X" and cat == "commit":
            commits[event["args"]["plugin"]] = (event["ts"], event["ts"] + event["dur"])
        elif ph == "X" and cat == "shutdown":
            shutdowns[event["args"]["plugin"]] = (event["ts"], event["ts"] + event["dur"])
        elif ph == "X" and cat == "wait":
            waits.setdefault(int(event["pid"]), []).append(event)
        elif ph == "b" and cat == "queued":
            ready[int(event["id"])] = event["ts"]
        elif ph == "X" and cat == "transfer" and event["name"] in TRANSFER_SPANS:
            _add_transfer(transfers, event, event["ts"] + event["dur"])
        elif ph == "b" and cat == "transfer":
            in_flight[event["id"]] = event
        elif ph == "e" and cat == "transfer" and event["id"] in in_flight:
            _add_transfer(transfers, in_flight.pop(event["id"]), event["ts"])
        elif ph == "X" and cat == "boot":
            boot_spans[str(event["name"])] = (event["ts"], event["ts"] + event["dur"])
    plugins = []
    for name, event in inits.items():
        args = event["args"]
        cookie = int(args["cookie"])
        c, s = commits.get(name), shutdowns.get(name)
        common: dict[str, Any] = {
            "name": name,
            "cookie": cookie,
            "domain": str(args["domain"]),
            "requires": tuple(str(r) for r in args["requires"]),
            "where": str(args["where"]),
            "status": str(args["status"]),
            "scheduled": _s(args["scheduled_us"]),
            "commit_started": None if c is None else _s(c[0]),
            "commit_ended": None if c is None else _s(c[1]),
            "shutdown_started": None if s is None else _s(s[0]),
            "shutdown_ended": None if s is None else _s(s[1]),
            "transfers": tuple(sorted(transfers.get(name, ()), key=lambda t: t.started)),
        }
        if event["ph"] == "i":
            plugins.append(TracedPlugin(**common))
            continue
        pid, start, end = int(event["pid"]), event["ts"], event["ts"] + event["dur"]
        inner = tuple(
            TracedWait(
                str(w["args"]["what"]),
                w["args"]["domain"],
                int(w["args"]["cookie"]),
                _s(w["ts"]),
                _s(w["ts"] + w["dur"]),
            )
            for w in sorted(waits.get(pid, ()), key=lambda w: w["ts"])
            if start <= w["ts"] and w["ts"] + w["dur"] <= end
        )
        plugins.append(
            TracedPlugin(
                **common,
                ready=_s(ready[cookie]) if cookie in ready else None,
                started=_s(start),
                ended=_s(end),
                pid=pid,
                waits=inner,
            )
        )
    plugins.sort(key=lambda p: p.cookie)
    expected = other.get("plugins")
    if expected is not None and expected != len(plugins):
        msg = f"it announces {expected} plugins but holds {len(plugins)}; is it truncated?"
        raise TraceError(msg)
    return TraceData(
        plugins=tuple(plugins),
        wall=_s(other["wall_us"]),
        parent_pid=parent,
        workers=int(other["workers"]),
        start_method=str(other["start_method"]),
        config=other.get("config"),
        pool_started=_s(boot_spans["pool start"][1]) if "pool start" in boot_spans else None,
        pool_stopping=_s(boot_spans["pool stop"][0]) if "pool stop" in boot_spans else None,
    )


def _add_transfer(found: dict[str, list[TracedTransfer]], event: Any, end: int) -> None:
    args = event["args"]
    size, of = args.get("bytes"), args.get("of")
    span = TracedTransfer(
        str(event["name"]),
        int(event["pid"]),
        _s(event["ts"]),
        _s(max(end, event["ts"])),
        None if size is None else int(size),
        None if of is None else str(of),
    )
    found.setdefault(str(args["plugin"]), []).append(span)


def trace_of(boot: Boot) -> TraceData:
    """The boot's :class:`TraceData`, built the way :func:`load_trace` builds it from a file."""
    return parse_trace(to_chrome_trace(boot), source="<boot>")


def debug_lines(source: Boot | TraceData) -> list[str]:
    """The boot as the kernel's async initcall debug lines, sorted by time (see ``debuglog``)."""
    trace = source if isinstance(source, TraceData) else trace_of(source)
    return _debug_lines(
        (p.cookie, p.name, p.pid, p.started, p.ended, p.waits)
        for p in trace.plugins
        if p.ran and p.pid is not None and p.started is not None and p.ended is not None
    )
