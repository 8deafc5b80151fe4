"""Traces: the Chrome trace of a boot, reading it back, and the kernel-style debug lines."""

from __future__ import annotations

import gc
import itertools
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import forget_app, observe_args, write_app

import initgraph
from initgraph._boot.run import Timing
from initgraph._observe.analysis import (
    blame,
    chain_between,
    chain_length,
    chain_time,
    critical_chain,
)
from initgraph._observe.trace import (
    TraceData,
    TracedPlugin,
    TracedWait,
    TraceError,
    debug_lines,
    load_trace,
    parse_trace,
    to_chrome_trace,
    trace_of,
    write_trace,
)


@pytest.fixture(scope="module")
def booted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[initgraph.Boot]:
    """One boot with a wait, a plugin in the parent, a failure and a plugin skipped for it."""
    root = tmp_path_factory.mktemp("app")
    config = write_app(
        root,
        {
            "first": {"config": {"duration": 0.06}},
            "waiter": {"config": {"synchronize": True}},  # waits for first, a lower cookie
            "dep": {"requires": ["first"], "config": {"duration": 0.02}},
            "local": {"requires": ["first"], "where": "main", "config": {"duration": 0.01}},
            "broken": {"optional": True, "config": {"fail": True}},
            "after_broken": {"requires": ["broken"]},
        },
        workers=3,
    )
    yield initgraph.boot(config)
    forget_app(root)


@pytest.fixture(scope="module")
def doc(booted: initgraph.Boot) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(to_chrome_trace(booted)))
    return data


def events(doc: dict[str, Any], ph: str, cat: str | None = None) -> list[dict[str, Any]]:
    return [e for e in doc["traceEvents"] if e["ph"] == ph and (cat is None or e.get("cat") == cat)]


def us(seconds: float | None) -> int:
    assert seconds is not None
    return round(seconds * 1_000_000)


# -- the trace matches the boot ------------------------------------------------------------------
def test_the_boot_went_as_planned(booted: initgraph.Boot) -> None:
    assert booted.ok
    assert booted.status("broken") == "failed"
    assert booted.status("after_broken") == "skipped"
    (wait,) = booted.timings["waiter"].waits
    assert wait.what == "cookie"


def test_document_shape(doc: dict[str, Any], booted: initgraph.Boot) -> None:
    assert doc["displayTimeUnit"] == "ms"
    other = doc["otherData"]
    assert other["initgraph_trace"] == 1
    assert other["parent_pid"] == os.getpid()
    assert other["plugins"] == 6
    assert other["workers"] == 3
    assert other["wall_us"] == us(booted.wall)
    assert {e["ph"] for e in doc["traceEvents"]} <= {"M", "X", "b", "e", "s", "f", "i"}


def test_every_initcall_once_on_the_process_that_ran_it(
    doc: dict[str, Any], booted: initgraph.Boot
) -> None:
    inits = events(doc, "X", "init")
    ran = [p.name for p in booted.plan if booted.timings[p.name].pid is not None]
    assert sorted(e["name"] for e in inits) == sorted(ran)
    assert "after_broken" not in ran
    for e in inits:
        timing = booted.timings[e["name"]]
        assert e["pid"] == e["tid"] == timing.pid
        assert e["ts"] == us(timing.started)
        assert e["ts"] + e["dur"] == us(timing.ended)
        planned = booted.plan.plugin(e["name"])
        assert e["args"]["cookie"] == planned.cookie
        assert e["args"]["domain"] == planned.domain
        assert e["args"]["requires"] == list(planned.requires)
        assert e["args"]["status"] == booted.status(e["name"])
    by_name = {e["name"]: e for e in inits}
    assert by_name["local"]["pid"] == os.getpid()  # where = "main": in the parent
    assert by_name["first"]["pid"] != os.getpid()
    assert by_name["broken"]["args"]["error"].endswith("raised RuntimeError: broken on purpose")


def test_a_track_per_process(doc: dict[str, Any], booted: initgraph.Boot) -> None:
    names = {e["pid"]: e["args"]["name"] for e in events(doc, "M") if e["name"] == "process_name"}
    threads = {
        (e["pid"], e["tid"]): e["args"]["name"]
        for e in events(doc, "M")
        if e["name"] == "thread_name"
    }
    workers = {t.pid for t in booted.timings.values() if t.pid not in (None, os.getpid())}
    main = {(pid, tid): name for (pid, tid), name in threads.items() if pid == tid}
    assert names == {pid: name for (pid, _), name in main.items()}
    assert names == {os.getpid(): "initgraph parent"} | {pid: f"worker {pid}" for pid in workers}
    # and in the parent, the thread that loads the results workers send
    assert set(threads) - set(main) == {(os.getpid(), 1)}
    assert threads[os.getpid(), 1] == "results"


def test_init_spans_split_into_running_and_waits(doc: dict[str, Any]) -> None:
    children = events(doc, "X", "running") + events(doc, "X", "wait")
    for init in events(doc, "X", "init"):
        start, end = init["ts"], init["ts"] + init["dur"]
        inside = sorted(
            (c for c in children if c["pid"] == init["pid"] and start <= c["ts"] < end),
            key=lambda c: c["ts"],
        ) or [c for c in children if c["pid"] == init["pid"] and c["ts"] == start]
        assert inside, init["name"]
        at = start
        for child in inside:  # back to back, nested inside the init
            assert child["ts"] == at
            assert child["ts"] + child["dur"] <= end
            at = child["ts"] + child["dur"]
        assert at == end
    waits = {(e["pid"], e["name"]) for e in events(doc, "X", "wait")}
    waiter = next(e for e in events(doc, "X", "init") if e["name"] == "waiter")
    assert (waiter["pid"], "synchronize(2)") in waits


def test_events_come_in_time_order(doc: dict[str, Any]) -> None:
    timed = [e for e in doc["traceEvents"] if e["ph"] != "M"]
    assert [e["ts"] for e in timed] == sorted(e["ts"] for e in timed)
    first = doc["traceEvents"].index(timed[0])
    assert all(e["ph"] == "M" for e in doc["traceEvents"][:first])


def test_commits_on_the_parent_in_order(doc: dict[str, Any], booted: initgraph.Boot) -> None:
    commits = events(doc, "X", "commit")
    assert {e["pid"] for e in commits} == {os.getpid()}
    committed = [p.name for p in booted.plan if p.name in booted.results]
    assert sorted(e["args"]["plugin"] for e in commits) == sorted(committed)
    (boot_span,) = [e for e in events(doc, "X", "boot") if e["name"] == "boot"]
    for e in commits:  # inside the boot span, never overlapping each other
        assert boot_span["ts"] <= e["ts"] <= e["ts"] + e["dur"] <= boot_span["dur"]
    spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in commits)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))


def test_flow_arrows_from_a_requirement_s_init_to_its_dependent(
    doc: dict[str, Any], booted: initgraph.Boot
) -> None:
    starts = {e["id"]: e for e in events(doc, "s")}
    ends = {e["id"]: e for e in events(doc, "f")}
    assert starts.keys() == ends.keys()
    assert len(starts) == 2  # dep and local require first; after_broken never ran
    first = next(e for e in events(doc, "X", "init") if e["name"] == "first")
    for flow, s in starts.items():
        f = ends[flow]
        assert s["pid"] == first["pid"] == booted.timings["first"].pid
        assert first["ts"] <= s["ts"] <= first["ts"] + first["dur"]  # inside first's init
        assert f["bp"] == "e"
        init = next(e for e in events(doc, "X", "init") if e["ts"] == f["ts"])
        assert init["name"] in ("dep", "local")
        assert init["pid"] == f["pid"]


def test_queued_spans_from_ready_to_started(doc: dict[str, Any], booted: initgraph.Boot) -> None:
    begins = {e["id"]: e for e in events(doc, "b", "queued")}
    ends = {e["id"]: e for e in events(doc, "e", "queued")}
    assert begins.keys() == ends.keys()
    for cookie, b in begins.items():
        name = b["args"]["plugin"]
        timing = booted.timings[name]
        assert booted.plan.plugin(name).cookie == cookie
        assert b["ts"] == us(timing.ready)
        assert ends[cookie]["ts"] == us(timing.started)


def test_a_plugin_that_never_ran(doc: dict[str, Any]) -> None:
    (instant,) = events(doc, "i")
    assert instant["name"] == "after_broken"
    assert instant["args"]["status"] == "skipped"
    assert "which did not commit" in instant["args"]["error"]


# -- reading it back -----------------------------------------------------------------------------
def test_written_trace_loads_back(booted: initgraph.Boot, tmp_path: Path) -> None:
    path = tmp_path / "boot.json"
    written = write_trace(booted, path)
    assert json.loads(path.read_text()) == written
    trace = load_trace(path)
    assert trace == trace_of(booted)
    assert [p.name for p in trace] == [p.name for p in booted.plan]
    for p in trace:
        timing = booted.timings[p.name]
        assert p.status == booted.status(p.name)
        if p.name == "after_broken":
            assert not p.ran
            continue
        assert p.pid == timing.pid
        assert p.started == pytest.approx(timing.started, abs=1e-6)
        assert p.ended == pytest.approx(timing.ended, abs=1e-6)
        assert p.ready == pytest.approx(timing.ready, abs=1e-6)
        assert p.scheduled == pytest.approx(timing.scheduled, abs=1e-6)
        if timing.commit_ended is not None:
            assert p.commit_ended == pytest.approx(timing.commit_ended, abs=1e-6)
        assert len(p.waits) == len(timing.waits)
        # each step of its result's way to the parent, as the boot recorded it
        assert [(t.name, t.pid, t.size, t.of) for t in p.transfers] == [
            (t.name, t.pid, t.size, t.of) for t in sorted(timing.transfers, key=lambda t: t.started)
        ]
    assert trace.pool_started == pytest.approx(booted.pool_started, abs=1e-6)
    assert trace.pool_stopping == pytest.approx(booted.pool_stopping, abs=1e-6)
    waiter = trace.plugin("waiter")
    assert waiter.waiting == pytest.approx(sum(w.ended - w.started for w in waiter.waits))
    assert trace.pids[0] == os.getpid()
    assert trace.wall == pytest.approx(booted.wall, abs=1e-6)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.json"
    path.write_text(text)
    return path


TRUNCATED = {
    "traceEvents": [],
    "otherData": {
        "initgraph_trace": 1,
        "parent_pid": 1,
        "workers": 1,
        "start_method": "fork",
        "wall_us": 5,
        "plugins": 3,
    },
}
BAD_TRACES = {
    "not json": ("{", r"not JSON: Expecting property name enclosed in double quotes"),
    "not a trace": ("[1, 2]", r"not a Chrome trace: expected an object with a 'traceEvents' list"),
    "foreign trace": (
        '{"traceEvents": []}',
        r"not an initgraph trace: otherData.initgraph_trace is missing",
    ),
    "newer format": (
        '{"traceEvents": [], "otherData": {"initgraph_trace": 99}}',
        r"trace format 99 is not the one this initgraph reads \(1\); record it again",
    ),
    "truncated": (
        json.dumps(TRUNCATED),
        r"it announces 3 plugins but holds 0; is it truncated\?",
    ),
    "malformed event": (
        json.dumps({**TRUNCATED, "traceEvents": [{"ph": "X", "cat": "init", "name": "a"}]}),
        r"malformed initgraph trace: KeyError: 'args'",
    ),
}


@pytest.mark.parametrize("case", BAD_TRACES)
def test_bad_trace_files_are_one_clear_error(case: str, tmp_path: Path) -> None:
    text, message = BAD_TRACES[case]
    path = _write(tmp_path, text)
    with pytest.raises(TraceError, match=rf"^trace '{re.escape(str(path))}': {message}"):
        load_trace(path)


def test_a_missing_trace_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(TraceError) as info:
        load_trace(path)
    assert str(info.value) == (
        f"trace '{path}': no such file (record one with 'initgraph run --trace {path}')"
    )
    assert isinstance(info.value, initgraph.ConfigError)
    assert info.value.path == str(path)


@pytest.mark.parametrize("command", ["blame", "critical-chain", "plot", "plan"])
def test_commands_report_a_bad_trace_in_one_line(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "gone.json")
    argv = [command, missing] if command != "plan" else ["plan", "init.toml", "--from", missing]
    args = observe_args(argv)
    assert args.command(args) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"initgraph: error: trace '{missing}': no such file (record one with 'initgraph run "
        f"--trace {missing}')\n"
    )
    bad = _write(tmp_path, "{}")
    args = observe_args([*argv[:-1], str(bad)])
    assert args.command(args) == 2
    assert capsys.readouterr().err.startswith(f"initgraph: error: trace '{bad}': not a Chrome")


# -- debug lines ---------------------------------------------------------------------------------
# The patterns scripts/bootgraph.pl reads dmesg with: a call, its return, a wait and its end.
BOOTGRAPH_CALLING = re.compile(r"([0-9\.]+)\] calling  ([a-zA-Z0-9\_\.]+)\+")
BOOTGRAPH_RETURNED = re.compile(r"([0-9\.]+)\] initcall ([a-zA-Z0-9\_\.]+)\+.*returned")
BOOTGRAPH_WAITING = re.compile(r"([0-9\.]+)\] async_waiting @ ([0-9]+)")
BOOTGRAPH_CONTINUING = re.compile(r"([0-9\.]+)\] async_continuing @ ([0-9]+)")
PID = re.compile(r"@ ([0-9]+)")


def test_debug_lines_are_kernel_lines(booted: initgraph.Boot) -> None:
    lines = debug_lines(booted)
    stamps = [float(line[1:13]) for line in lines]
    assert stamps == sorted(stamps)
    for line in lines:
        assert re.fullmatch(
            r"\[ *\d+\.\d{6}\] (calling  \d+_\w+\+0x0/0x0 @ \d+"
            r"|initcall \d+_\w+\+0x0/0x0 returned after \d+ usecs"
            r"|async_waiting @ \d+|async_continuing @ \d+ after \d+ usec)",
            line,
        ), line
        assert len(line.split("]")[0]) + 1 == 14  # "[%5lu.%06lu]", as printk prints it
    ran = [p for p in booted.plan if booted.timings[p.name].pid is not None]
    waiter = booted.timings["waiter"]
    started, ended = us(waiter.started), us(waiter.ended)  # the trace's microseconds
    first = next(line for line in lines if "2_waiter" in line)
    assert (
        first
        == f"[{started // 10**6:5d}.{started % 10**6:06d}] calling  2_waiter+0x0/0x0 @ {waiter.pid}"
    )
    returned = f"initcall 2_waiter+0x0/0x0 returned after {ended - started} usecs"
    assert any(line.endswith(returned) for line in lines)
    assert len(lines) == 2 * len(ran) + 2 * sum(len(t.waits) for t in booted.timings.values())


def test_bootgraph_reads_the_debug_lines(booted: initgraph.Boot) -> None:
    """What bootgraph.pl would take from them: every call with its pid, return and waits."""
    start: dict[str, float] = {}
    end: dict[str, float] = {}
    pids: dict[str, int] = {}
    open_waits: dict[int, float] = {}
    waits = 0
    for line in debug_lines(booted):
        if m := BOOTGRAPH_CALLING.search(line):
            start[m[2]] = float(m[1])
            pid = PID.search(line)
            assert pid is not None
            pids[m[2]] = int(pid[1])
        if m := BOOTGRAPH_RETURNED.search(line):
            end[m[2]] = float(m[1])
        if m := BOOTGRAPH_WAITING.search(line):
            open_waits[int(m[2])] = float(m[1])
        if m := BOOTGRAPH_CONTINUING.search(line):
            assert float(m[1]) >= open_waits.pop(int(m[2]))
            waits += 1
    ran = {p.name: p for p in booted.plan if booted.timings[p.name].pid is not None}
    expected = {f"{p.cookie}_{p.name}" for p in ran.values()}
    assert set(start) == set(end) == expected
    for func, at in start.items():
        name = func.split("_", 1)[1]
        assert pids[func] == booted.timings[name].pid
        assert end[func] >= at
    assert open_waits == {}
    assert waits == sum(len(t.waits) for t in booted.timings.values())


def test_debug_lines_keep_names_bootgraph_can_read() -> None:
    plugin = TracedPlugin(
        name="api-routes v2",
        cookie=12,
        domain="http",
        requires=(),
        where="pool",
        status="ok",
        scheduled=0.0,
        ready=0.001,
        started=0.25,
        ended=1.5,
        pid=4242,
        waits=(TracedWait("cookie", "http", 12, 0.5, 0.75),),
    )
    trace = TraceData((plugin,), wall=2.0, parent_pid=1, workers=1, start_method="fork")
    assert debug_lines(trace) == [
        "[    0.250000] calling  12_api_routes_v2+0x0/0x0 @ 4242",
        "[    0.500000] async_waiting @ 4242",
        "[    0.750000] async_continuing @ 4242 after 250000 usec",
        "[    1.500000] initcall 12_api_routes_v2+0x0/0x0 returned after 1250000 usecs",
    ]


# -- transfer spans: what a boot that records them writes, and what the reports make of them ----
def with_transfers() -> dict[str, Any]:
    """``data`` (worker 10) serializes a 50 MB result the parent loads; ``user`` (worker 11)
    requires it and loads it as its input. Times in microseconds."""

    def span(cat: str, name: str, pid: int, ts: int, dur: int, **args: Any) -> dict[str, Any]:
        return {"ph": "X", "cat": cat, "name": name, "pid": pid, "tid": pid, "ts": ts, "dur": dur,
                "args": args}  # fmt: skip

    def init(name: str, cookie: int, pid: int, ts: int, dur: int, *requires: str) -> Any:
        args = {"cookie": cookie, "domain": "default", "requires": list(requires)}
        return span("init", name, pid, ts, dur, **args, where="pool", status="ok", scheduled_us=0)

    events = [
        init("data", 1, 10, 10_000, 100_000),
        span("transfer", "serialize", 10, 110_000, 20_000, plugin="data", bytes=50_000_000),
        span("transfer", "load", 1, 130_000, 30_000, plugin="data", bytes=50_000_000),
        span("commit", "commit data", 1, 160_000, 1_000, plugin="data"),
        {"ph": "b", "cat": "queued", "name": "queued", "id": 2, "pid": 1, "tid": 1, "ts": 161_000},
        span("transfer", "load", 11, 162_000, 10_000, plugin="user", bytes=50_000_000),
        init("user", 2, 11, 172_000, 50_000, "data"),
        span("commit", "commit user", 1, 223_000, 1_000, plugin="user"),
    ]
    return {
        "traceEvents": events,
        "otherData": {
            "initgraph_trace": 1,
            "parent_pid": 1,
            "workers": 2,
            "start_method": "fork",
            "wall_us": 230_000,
            "plugins": 2,
        },
    }


# A result big enough for a shared-memory segment, read by a dependent in a worker, handed to one
# that never reads it, and read by one in the parent.
PRODUCER = """
import numpy as np
from initgraph import hookimpl

@hookimpl
def initgraph_init(ctx):
    return np.ones(ctx.config["floats"])
"""

READER = """
from initgraph import hookimpl

@hookimpl
def initgraph_init(ctx):
    if ctx.config.get("read"):
        return float(ctx.results["producer"].sum())
    return sorted(ctx.results)
"""

FLOATS = 1 << 19  # 4 MiB of float64


@dataclass(frozen=True)
class Moved:
    """A boot that moved a 4 MiB array: its trace and timings (not its results: they map
    shared memory, which must be gone when each test ends)."""

    doc: dict[str, Any]
    timings: dict[str, Timing]
    ok: bool


@pytest.fixture(scope="module")
def moved(tmp_path_factory: pytest.TempPathFactory) -> Moved:
    root = tmp_path_factory.mktemp("moved")
    config = write_app(
        root,
        {
            "producer": {"source": PRODUCER, "config": {"floats": FLOATS}},
            "reader": {"source": READER, "requires": ["producer"], "config": {"read": True}},
            "ignorer": {"source": READER, "requires": ["producer"]},
            "local": {
                "source": READER,
                "requires": ["producer"],
                "where": "main",
                "config": {"read": True},
            },
        },
        workers=2,
    )
    booted = initgraph.boot(config)
    booted.close()
    forget_app(root)
    done = Moved(json.loads(json.dumps(to_chrome_trace(booted))), booted.timings, booted.ok)
    del booted
    gc.collect()
    return done


def test_a_result_s_way_to_the_parent_is_in_the_trace(moved: Moved) -> None:
    """Pickled by its worker after its init, in flight to the parent, loaded there."""
    assert moved.ok
    doc = moved.doc
    producer = moved.timings["producer"]
    assert producer.pid is not None
    assert producer.ended is not None
    spans = [e for e in doc["traceEvents"] if e.get("cat") == "transfer"]
    mine = [e for e in spans if e["ph"] != "e" and e["args"]["plugin"] == "producer"]
    assert [(e["ph"], e["name"], e["pid"], e["tid"]) for e in mine] == [
        ("X", "serialize", producer.pid, producer.pid),  # on the worker's track
        ("b", "transfer", os.getpid(), os.getpid()),  # in flight, received by the parent
        ("X", "load", os.getpid(), 1),  # on the parent's results thread
    ]
    size = mine[0]["args"]["bytes"]
    assert FLOATS * 8 <= size < FLOATS * 8 + 4096  # the array, and a little pickle around it
    assert {e["args"]["bytes"] for e in mine} == {size}
    assert mine[0]["ts"] == us(producer.ended)  # pickled once its init ended
    serialized = mine[0]["ts"] + mine[0]["dur"]
    (end,) = [e for e in spans if e["ph"] == "e" and e["id"] == mine[1]["id"]]
    assert serialized == mine[1]["ts"] <= end["ts"] <= mine[2]["ts"]  # sent, received, loaded
    assert mine[2]["ts"] + mine[2]["dur"] <= us(moved.timings["reader"].ready)


def test_a_dependent_s_inputs_are_in_the_trace(moved: Moved) -> None:
    """In flight to its worker before its init; loaded inside its init when it reads them."""
    doc = moved.doc
    size = moved.timings["producer"].transfers[0].size
    inits = {e["name"]: e for e in events(doc, "X", "init")}
    for name in ("reader", "ignorer"):
        init = inits[name]
        inputs = [
            e
            for e in doc["traceEvents"]
            if e.get("cat") == "transfer" and e.get("args", {}).get("of") == "producer"
            if e["args"]["plugin"] == name
        ]
        names = [e["name"] for e in inputs]
        assert names == (["transfer", "load"] if name == "reader" else ["transfer"])
        assert all(e["pid"] == init["pid"] and e["args"]["bytes"] == size for e in inputs)
        flight = inputs[0]
        assert flight["ph"] == "b"
        (end,) = [e for e in events(doc, "e", "transfer") if e["id"] == flight["id"]]
        assert flight["ts"] <= end["ts"] == init["ts"]  # received, then its init started
        if name == "reader":  # loaded inside its init, when it read ctx.results["producer"]
            load = inputs[1]
            assert init["ts"] <= load["ts"] <= load["ts"] + load["dur"] <= init["ts"] + init["dur"]
    # in the parent, a where = "main" plugin reads the result the parent loaded: nothing moves
    assert moved.timings["local"].transfers == ()


def test_moved_data_reads_back_into_the_reports(moved: Moved, tmp_path: Path) -> None:
    path = tmp_path / "boot.json"
    path.write_text(json.dumps(moved.doc))
    trace = load_trace(path)
    assert trace == parse_trace(moved.doc)
    for p in trace:
        assert len(p.transfers) == len(moved.timings[p.name].transfers)
    reader = trace.plugin("reader")
    assert [(t.name, t.of) for t in reader.transfers] == [
        ("transfer", "producer"),
        ("load", "producer"),
        ("serialize", None),
        ("transfer", None),  # its small result is read from its message: no load of its own
    ]
    rows = {r.name: r for r in blame(trace)}
    producer = trace.plugin("producer")
    # its result's way is its transfer column; the reader's load is out of its running column
    assert rows["producer"].transfer == pytest.approx(sum(t.duration for t in producer.transfers))
    load = reader.transfers[1].duration
    assert rows["reader"].running == pytest.approx(
        reader.init_time - load - reader.waiting, abs=1e-6
    )
    assert rows["local"].transfer == 0.0
    assert trace.pool_started is not None
    assert trace.pool_stopping is not None
    assert 0 < trace.pool_started < producer.started < trace.pool_stopping < trace.wall  # type: ignore[operator]


def test_transfer_spans_are_read_back() -> None:
    t = parse_trace(with_transfers())
    assert t.transfers_recorded
    data = t.plugin("data")
    assert [(x.name, x.pid, x.size) for x in data.transfers] == [
        ("serialize", 10, 50_000_000),
        ("load", 1, 50_000_000),
    ]
    assert data.transfers[0].duration == pytest.approx(0.020)
    assert not trace_of_nothing().transfers_recorded


def trace_of_nothing() -> TraceData:
    doc = with_transfers()
    doc["traceEvents"] = [e for e in doc["traceEvents"] if e.get("cat") != "transfer"]
    return parse_trace(doc)


def test_blame_puts_transfers_in_their_own_column() -> None:
    rows = {r.name: r for r in blame(parse_trace(with_transfers()))}
    data, user = rows["data"], rows["user"]
    # data's result: 20 ms serialized, 30 ms loaded by the parent, then committed at once
    assert (data.running, data.transfer, data.parent_busy, data.in_order) == pytest.approx(
        (0.100, 0.050, 0.0, 0.0)
    )
    # user's input: loaded in 10 of the 11 ms between ready and started
    assert (user.queued, user.transfer, user.running) == pytest.approx((0.001, 0.010, 0.050))
    # without the spans the same time is parent-busy and queued: the columns still add up
    plain = {r.name: r for r in blame(trace_of_nothing())}
    assert plain["data"].parent_busy == pytest.approx(0.050)
    assert plain["data"].total == pytest.approx(data.total)


def test_the_chain_shows_transfers_between_steps() -> None:
    t = parse_trace(with_transfers())
    chain = critical_chain(t)
    assert [(link.kind, link.label) for link in chain if link.kind != "gap"] == [
        ("init", "data"),
        ("transfer", "data serialize 50.0 MB"),
        ("transfer", "data load 50.0 MB"),
        ("commit", "data commit"),
        ("transfer", "user load 50.0 MB"),
        ("init", "user"),
        ("commit", "user commit"),
    ]
    # between the steps: 60 ms moving data, and 18 ms no recorded span explains
    assert chain_time(chain, "transfer") == pytest.approx(0.020 + 0.030 + 0.010)
    assert chain_between(chain) == pytest.approx(0.010 + 0.001 + 0.001 + 0.006 + 0.0)
    assert chain_length(chain) == pytest.approx(t.wall)


def test_blame_command_shows_transfers_when_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps(with_transfers()), encoding="utf-8")
    args = observe_args(["blame", str(path), "--sort", "transfer"])
    assert args.command(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-3:] == ["transfer", "commit", "shutdown"]
    assert [line.split()[1] for line in lines[1:3]] == ["data", "user"]
    assert [line.split()[-3] for line in lines[1:3]] == ["50.0", "10.0"]
