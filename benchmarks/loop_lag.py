"""How long the event loop stalls while ``initgraph.lifespan`` boots the example application.

A ticker task sleeps 1 ms at a time and records how late each wake-up is: its *lag*. Each tick
is also taken apart, so that a stall is blamed on what caused it:

- *plugin hooks*: the time the loop's thread spent in the plugins' own code (``initgraph_plan``,
  ``where = "main"`` inits, commits, ``initgraph_boot_finished``, shutdown hooks, and each step
  of their ``async def`` coroutines). A commit runs on the loop by design; its cost is the
  plugin's. Found by a profile function on the loop's thread only (``sys.setprofile``): entering
  pluggy's ``_multicall``, or resuming a plugin's ``initgraph_*`` coroutine.
- *waiting for a CPU* (Linux): how long the loop's thread was runnable but not running
  (``/proc/self/task/<tid>/schedstat``): the machine was busy with other processes, among them
  the boot's own workers.

*initgraph's own lag* is a tick's lag less both: initgraph's code on the loop, and the GIL held by
its threads (or by any thread, when a thread holding it waits for a CPU). Its worst over a boot is
judged against 5 ms. Run from the repository's root::

    python benchmarks/loop_lag.py [init.toml] [--fresh N] [--warm N]   # the table, PASS/MISS
    python benchmarks/loop_lag.py --profile [--warm N]                 # what each stall was
    python benchmarks/loop_lag.py --json [--warm N]                    # one process's figures

A *first* boot runs in a fresh process: it imports initgraph's scheduler and the plugins' modules
(in a thread). *Warm* boots follow it in the same process, each in a new event loop.
``--profile`` adds a watchdog thread that takes every thread's stack while the loop is late, and
prints the worst ticks of each boot with what each thread was doing. ``python -m benchmarks
--only looplag`` runs the table's boots and judges their medians.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import ctypes
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from core import cpu_seconds, machine_loadavg, others_share

import initgraph

# As an application's `from initgraph import lifespan` does, at import: its first access
# imports initgraph's asyncio module, which is not the boot's doing.
lifespan = initgraph.lifespan
TICK = 0.001
TARGET_MS = 5.0
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
_CO_COROUTINE = 0x80
_INITGRAPH_DIR = str(Path(initgraph.__file__).resolve().parent)


class _ThreadClocks:
    """Per-thread CPU and run-queue nanoseconds of this process, from ``/proc`` (Linux).

    Read on the loop at every tick, so without handing the GIL over: ``os.pread`` and
    ``os.listdir`` release it, and with a boot thread running Python each release costs the
    loop up to a switch interval to get it back (eight reads a tick doubled the median lag in
    a test with one busy thread). The reads go through ``ctypes.PyDLL``, which keeps the GIL
    (a few microseconds each), and the threads come from :func:`threading.enumerate`.
    """

    def __init__(self) -> None:
        self.fds: dict[str, int] = {}
        self.ok = os.path.isdir("/proc/self/task")
        if self.ok:
            libc = ctypes.PyDLL(None)
            self._pread = libc.pread
            self._pread.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_long]
            self._pread.restype = ctypes.c_ssize_t
            self._buffer = ctypes.create_string_buffer(128)

    def read(self) -> dict[str, tuple[int, int]]:
        if not self.ok:
            return {}
        found: dict[str, tuple[int, int]] = {}
        for thread in threading.enumerate():
            tid = str(thread.native_id)
            fd = self.fds.get(tid)
            try:
                if fd is None:  # once a thread: this one releases the GIL
                    fd = self.fds[tid] = os.open(f"/proc/self/task/{tid}/schedstat", os.O_RDONLY)
                n = self._pread(fd, self._buffer, 128, 0)
                if n <= 0:  # the thread has ended
                    os.close(self.fds.pop(tid))
                    continue
                cpu, runq, _ = self._buffer.raw[:n].split()
            except (OSError, ValueError):
                continue
            found[tid] = (int(cpu), int(runq))
        return found

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


class _PluginTime:
    """Intervals the current thread spends in plugin hooks, by ``sys.setprofile``."""

    def __init__(self) -> None:
        import pluggy._callers

        self.multicall = pluggy._callers._multicall.__code__
        self.inside: FrameType | None = None
        self.entered = 0.0
        self.spans: list[tuple[float, float]] = []

    def __call__(self, frame: FrameType, event: str, arg: object) -> None:
        if self.inside is None:
            if event == "call" and self.is_hook(frame):
                self.inside = frame
                self.entered = time.perf_counter()
        elif event == "return" and frame is self.inside:
            self.spans.append((self.entered, time.perf_counter()))
            self.inside = None

    def is_hook(self, frame: FrameType) -> bool:
        code = frame.f_code
        if code is self.multicall:
            return True
        return (
            bool(code.co_flags & _CO_COROUTINE)
            and code.co_name.startswith("initgraph_")
            and not code.co_filename.startswith(_INITGRAPH_DIR)
        )


@dataclass
class Tick:
    started: float
    lag: float  # how late the wake-up was, s
    plugin: float = 0.0  # of the tick, s in plugin hooks on the loop
    runq: float = 0.0  # of the tick, s the loop's thread waited for a CPU
    cpu: float = 0.0  # of the tick, s the loop's thread ran
    others: dict[str, tuple[float, float]] = field(default_factory=dict)  # their cpu, runq

    @property
    def less_plugins(self) -> float:
        return max(0.0, self.lag - self.plugin)

    @property
    def own(self) -> float:
        """The lag less plugin hooks and the loop's wait for a CPU: initgraph's, and the GIL's."""
        return max(0.0, self.lag - self.plugin - self.runq)


@dataclass
class BootLag:
    """The figures of one boot under the ticker, in ms."""

    max_lag_ms: float
    p99_lag_ms: float
    less_plugins_ms: float  # the worst lag less the plugin hooks' time in its tick
    own_max_lag_ms: float  # the worst lag less plugin hooks and the loop's wait for a CPU
    plugin_max_ms: float  # the longest time in plugin hooks within one tick
    wall_ms: float
    ticks: int
    idle_max_ms: float = 0.0  # the worst lag of the same ticker alone, just before the boot
    idle_p99_ms: float = 0.0
    above_idle_ms: float = 0.0  # the worst lag less the ticker alone's worst
    stalls: list[dict[str, Any]] = field(default_factory=list)  # --profile only


def _overlap(spans: Sequence[tuple[float, float]], a: float, b: float) -> float:
    return sum(max(0.0, min(e, b) - max(s, a)) for s, e in spans)


class _Stacks:
    """A watchdog thread: while the loop has not ticked for 2 ms, every thread's stack."""

    def __init__(self, loop_thread: int) -> None:
        self.loop_thread = loop_thread
        self.last = time.perf_counter()
        self.samples: list[tuple[float, float, dict[str, list[str]]]] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, name="lag-watchdog", daemon=True)

    def run(self) -> None:
        me = threading.get_ident()
        while not self.done.wait(0.0005):
            now, last = time.perf_counter(), self.last
            if now - last < 0.002:
                continue
            names = {t.ident: t.name for t in threading.enumerate()}
            frames = sys._current_frames()
            self.samples.append(
                (
                    now,
                    last,
                    {
                        ("LOOP" if tid == self.loop_thread else names.get(tid, str(tid))): _stack(f)
                        for tid, f in frames.items()
                        if tid != me
                    },
                )
            )

    def during(self, a: float, b: float) -> dict[str, list[tuple[int, str]]]:
        per: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        for now, last, stacks in self.samples:
            if last >= a - 1e-6 and now <= b + 2e-4:
                for name, stack in stacks.items():
                    if not _idle(stack):
                        per[name][" <- ".join(stack)] += 1
        return {name: [(n, s) for s, n in c.most_common(2)] for name, c in per.items()}


def _stack(frame: FrameType | None, depth: int = 12) -> list[str]:
    out: list[str] = []
    while frame is not None and len(out) < depth:
        name = frame.f_code.co_filename
        for cut in ("site-packages/", "/lib/python3.", str(ROOT) + "/"):
            if cut in name:
                name = name.split(cut, 1)[1]
        out.append(f"{name}:{frame.f_lineno}:{frame.f_code.co_name}")
        frame = frame.f_back
    return out


_IDLE = ("_worker", "_wait_for_tstate_lock", "wait", "select", "get", "accept", "recv")


def _idle(stack: list[str]) -> bool:
    return bool(stack) and stack[0].rsplit(":", 1)[1] in _IDLE and "asyncio" not in stack[0]


IDLE_S = 2.0  # how long the ticker runs alone before each boot: about a boot's wall time


async def alone(seconds: float = IDLE_S) -> list[float]:
    """The lags of a 1 ms ticker with nothing else in the process, for ``seconds``: the floor.

    On a virtual machine an idle vCPU woken by a timer, and the kernel's scheduler tick,
    delay a wake-up by themselves; a boot cannot be expected to do better than this.
    """
    lags = []
    end = time.perf_counter() + seconds
    before = time.perf_counter()
    while before < end:
        await asyncio.sleep(TICK)
        now = time.perf_counter()
        lags.append(now - before - TICK)
        before = now
    return sorted(lags)


async def one_boot(config: str, *, profile: bool = False) -> BootLag:
    """Boot ``config`` with ``initgraph.lifespan`` under the ticker; its figures."""
    idle = await alone()
    loop_tid = str(threading.get_native_id())
    clocks = _ThreadClocks()
    names: dict[str, str] = {}
    hooks = _PluginTime()
    stacks = _Stacks(threading.get_ident()) if profile else None
    raw: list[tuple[float, float, dict[str, tuple[int, int]]]] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        before, seen = time.perf_counter(), clocks.read()
        while not stop.is_set():
            await asyncio.sleep(TICK)
            now, now_seen = time.perf_counter(), clocks.read()
            raw.append(
                (
                    before,
                    now,
                    {
                        t: (v[0] - seen.get(t, (0, 0))[0], v[1] - seen.get(t, (0, 0))[1])
                        for t, v in now_seen.items()
                    },
                )
            )
            if stacks is not None:
                stacks.last = now
            if len(now_seen) != len(seen):
                names.update((str(t.native_id), t.name) for t in threading.enumerate())
            before, seen = now, now_seen

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.02)  # the ticker is running
    if stacks is not None:
        stacks.thread.start()
    sys.setprofile(hooks)
    try:
        started = time.perf_counter()
        async with lifespan(config):
            wall = time.perf_counter() - started
    finally:
        sys.setprofile(None)
        stop.set()
        await tick
        if stacks is not None:
            stacks.done.set()
            stacks.thread.join()
        clocks.close()
    ticks = []
    for a, b, delta in raw:
        if b < started:
            continue
        mine = delta.get(loop_tid, (0, 0))
        ticks.append(
            Tick(
                a,
                b - a - TICK,
                plugin=_overlap(hooks.spans, a, b),
                cpu=mine[0] / 1e9,
                runq=mine[1] / 1e9,
                others={
                    names.get(t, t): (c / 1e9, q / 1e9)
                    for t, (c, q) in delta.items()
                    if t != loop_tid
                },
            )
        )
    lags = sorted(t.lag for t in ticks)
    lag = BootLag(
        max_lag_ms=lags[-1] * 1e3,
        p99_lag_ms=lags[int(len(lags) * 0.99)] * 1e3,
        less_plugins_ms=max(t.less_plugins for t in ticks) * 1e3,
        own_max_lag_ms=max(t.own for t in ticks) * 1e3,
        plugin_max_ms=max(t.plugin for t in ticks) * 1e3,
        wall_ms=wall * 1e3,
        ticks=len(ticks),
        idle_max_ms=idle[-1] * 1e3,
        idle_p99_ms=idle[int(len(idle) * 0.99)] * 1e3,
        above_idle_ms=max(0.0, lags[-1] - idle[-1]) * 1e3,
    )
    if stacks is not None:
        for t in sorted(ticks, key=lambda t: -t.own)[:8]:
            if t.lag < 0.002:
                break
            lag.stalls.append(
                {
                    "at_ms": (t.started - started) * 1e3,
                    "lag_ms": t.lag * 1e3,
                    "own_ms": t.own * 1e3,
                    "plugin_ms": t.plugin * 1e3,
                    "loop_cpu_ms": t.cpu * 1e3,
                    "loop_runq_ms": t.runq * 1e3,
                    "others_ms": {
                        k: (c * 1e3, q * 1e3) for k, (c, q) in t.others.items() if c + q > 2e-4
                    },
                    "stacks": stacks.during(t.started, t.started + t.lag + TICK),
                }
            )
        lag.stalls.sort(key=lambda s: s["at_ms"])
    return lag


def boots(config: str, warm: int, *, profile: bool = False) -> list[BootLag]:
    """A first boot then ``warm`` more, in this process, each in a fresh event loop."""
    return [asyncio.run(one_boot(config, profile=profile)) for _ in range(1 + warm)]


def print_stalls(n: int, lag: BootLag) -> None:
    print(
        f"\n#### boot {n} ({'first' if n == 0 else 'warm'}): worst lag {lag.max_lag_ms:.1f} ms, "
        f"less plugin hooks {lag.less_plugins_ms:.1f} ms, initgraph's own "
        f"{lag.own_max_lag_ms:.1f} ms; boot {lag.wall_ms:.0f} ms"
    )
    for s in lag.stalls:
        others = ", ".join(
            f"{k} {c:.1f} (waited {q:.1f})" for k, (c, q) in sorted(s["others_ms"].items())
        )
        print(
            f"\n  +{s['at_ms']:.0f} ms: lag {s['lag_ms']:.1f} = plugin hooks "
            f"{s['plugin_ms']:.1f} + loop waited for a CPU {s['loop_runq_ms']:.1f} + own "
            f"{s['own_ms']:.1f}; the loop ran {s['loop_cpu_ms']:.1f}; other threads ran (ms): "
            f"{others or '-'}"
        )
        for name, found in s["stacks"].items():
            for count, stack in found:
                print(f"    [{name}] x{count}: {stack}")


def fresh(config: str, warm: int, runs: int) -> list[list[dict[str, Any]]]:
    """``runs`` fresh processes, each a first boot then ``warm`` boots: their figures.

    With a bytecode cache, as an installed application has: where ``PYTHONDONTWRITEBYTECODE``
    is set (this project's machines), every first boot would otherwise compile initgraph, the
    plugins and their libraries from source, single C calls that hold the GIL for milliseconds.
    The cache lives in a temporary folder (``PYTHONPYCACHEPREFIX``), filled by one unmeasured
    process first.
    """
    found = []
    with tempfile.TemporaryDirectory(prefix="initgraph-looplag-pycache-") as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = cache
        argv = [sys.executable, str(Path(__file__).resolve()), config, "--json"]
        for n in range(runs + 1):
            out = subprocess.run(
                [*argv, "--warm", str(warm if n else 0)],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                check=True,
                timeout=300,
            ).stdout
            if n:  # the first one filled the cache
                found.append(json.loads(out.splitlines()[-1]))
    return found


ROWS = (
    ("worst lag of a 1 ms ticker", "max_lag_ms"),
    ("  less plugin hooks on the loop", "less_plugins_ms"),
    ("  less those and waiting for a CPU: own", "own_max_lag_ms"),
    ("longest plugin hooks within one tick", "plugin_max_ms"),
    ("99th percentile lag", "p99_lag_ms"),
    ("the same ticker alone, no boot: worst lag", "idle_max_ms"),
    ("  99th percentile", "idle_p99_ms"),
    ("worst lag less the ticker alone's worst", "above_idle_ms"),
    ("boot wall time", "wall_ms"),
)
KINDS = ("first", "warm")


def summary(processes: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """Median, min, max and runs of each figure: over the first boots, over the warm ones."""
    runs = {"first": [p[0] for p in processes], "warm": [b for p in processes for b in p[1:]]}
    out: dict[str, Any] = {}
    for kind in KINDS:
        out[kind] = {}
        for _, key in ROWS:
            xs = [r[key] for r in runs[kind]]
            if xs:
                out[kind][key] = {
                    "median": statistics.median(xs),
                    "min": min(xs),
                    "max": max(xs),
                    "runs": xs,
                }
    return out


def verdicts(res: dict[str, Any]) -> list[tuple[str, float, bool]]:
    """(what, median, passed) against the 5 ms target.

    The raw worst lag; the same less the worst of the ticker alone just before (what the boot
    added to the machine's floor); and initgraph's own.
    """
    found = []
    for kind in KINDS:
        for what, key in (
            ("worst lag", "max_lag_ms"),
            ("worst lag above the ticker alone's", "above_idle_ms"),
            ("initgraph's own worst lag", "own_max_lag_ms"),
        ):
            if key in res[kind]:
                v = res[kind][key]["median"]
                found.append((f"{what}, {kind} boots <= {TARGET_MS:g} ms", v, v <= TARGET_MS))
    return found


def table(res: dict[str, Any]) -> list[str]:
    """The figures as rows: median (min-max) of the first boots, and of the warm ones."""
    n = {kind: len(next(iter(res[kind].values()), {"runs": []})["runs"]) for kind in KINDS}
    head = f"{'event loop under lifespan(init.toml), ms':42}"
    first, warm = f"first boots ({n['first']})", f"warm boots ({n['warm']})"
    lines = [f"{head}{first:>24}{warm:>24}"]
    for label, key in ROWS:
        cells = []
        for kind in KINDS:
            s = res[kind].get(key)
            cells.append("-" if s is None else f"{s['median']:.1f} ({s['min']:.1f}-{s['max']:.1f})")
        lines.append(f"{label:42}{cells[0]:>24}{cells[1]:>24}")
    for what, value, ok in verdicts(res):
        lines.append(f"  {'PASS' if ok else 'MISS'}  {what}: {value:.2f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("config", nargs="?", default="init.toml")
    parser.add_argument("--fresh", type=int, default=5, help="fresh processes: first boots (5)")
    parser.add_argument("--warm", type=int, default=3, help="warm boots after each first (3)")
    parser.add_argument("--json", action="store_true", help="one process's boots, as JSON")
    parser.add_argument("--profile", action="store_true", help="what each stall was")
    args = parser.parse_args()
    if args.json:
        print(json.dumps([asdict(b) for b in boots(args.config, args.warm)]))
        return
    if args.profile:
        for n, lag in enumerate(boots(args.config, args.warm, profile=True)):
            print_stalls(n, lag)
        return
    before, started = cpu_seconds(), time.perf_counter()
    res = summary(fresh(args.config, args.warm, args.fresh))
    share = others_share(before, time.perf_counter() - started)
    print("\n".join(table(res)))
    if share:
        print(
            f"other processes took {share['others_pct']:.0f}% of the machine's CPUs meanwhile "
            f"(load average now {machine_loadavg()})"
        )


if __name__ == "__main__":
    main()
