#!/usr/bin/env python
"""Benchmark of initgraph's core against multiprocess.Pool and ProcessPoolExecutor.

Usage: ``python benchmarks/core.py [--quick] [--json FILE] [--profile DIR]``

Everything is measured in one run, on this machine, with 2 workers and the same start method
for every pool (initgraph's default here). See ``benchmarks/README.md`` for what each number
means. The four measurements:

1. per-initcall overhead: 2,000 no-op tasks submitted one by one, then wait for all; µs per task
   (wall / 2,000), best of several repeats, pools warm.
2. round trip: schedule one no-op and wait for its result; median, µs.
3. wake-up latency with one waiter: the parent sleeps in ``synchronize_cookie(c + 1)`` while
   initcall ``c`` works ~20 ms and then returns ``time.monotonic()``; latency = the parent's
   ``time.monotonic()`` once awake minus that stamp. The same for ``AsyncResult.wait()``,
   ``Future.result()`` and a raw semaphore post (the floor). Median and p90, µs.
4. import + start + first result in a fresh interpreter (``python -c``), and the close; median
   of several fresh runs, ms.

``--profile DIR`` instead profiles initgraph's 2,000-task loop with cProfile, in the parent's main
thread, its pool thread and the workers, writes the ``.prof`` files to DIR and prints the top
entries of each.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gc
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import multiprocess

import initgraph
from initgraph._core.scheduler import default_start_method

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _tasks  # noqa: E402  (needs HERE on sys.path, as in the fresh interpreters)

WORKERS = 2
TASKS = 2000
WORK_S = 0.020  # what a wake-up initcall does before it returns: the waiter is asleep by then
WORK_SHORT_S = 0.002  # the same with 2 ms of work, for comparison (info only)

IG, POOL, PPE = "initgraph", "multiprocess.Pool", "ProcessPoolExecutor"
CONTENDERS = (IG, POOL, PPE)

# Targets: overhead <= multiprocess.Pool's in the same run; a wake-up within a few times the
# 6-25 µs a semaphore wake-up costs on the project's 2-vCPU machines; start-up near a fork pool's.
WAKE_MEDIAN_US = 30.0
WAKE_P90_US = 250.0
START_MS = 60.0


@dataclass(frozen=True)
class Plan:
    """How much to measure."""

    overhead_repeats: int
    roundtrips: int
    wakeups: int
    fresh_runs: int


FULL = Plan(overhead_repeats=7, roundtrips=200, wakeups=200, fresh_runs=7)
QUICK = Plan(overhead_repeats=2, roundtrips=40, wakeups=30, fresh_runs=3)


# -- statistics -----------------------------------------------------------------------------------
def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def p90(xs: Sequence[float]) -> float:
    if len(xs) < 2:
        return float(xs[0])
    return float(statistics.quantiles(xs, n=10, method="inclusive")[8])


def summary(xs: Sequence[float]) -> dict[str, float]:
    return {
        "median": median(xs),
        "p90": p90(xs),
        "min": float(min(xs)),
        "max": float(max(xs)),
        "n": float(len(xs)),
    }


# -- the executors, warm ---------------------------------------------------------------------
class Executors:
    """initgraph, multiprocess.Pool and ProcessPoolExecutor side by side, plus a semaphore echo.

    initgraph is started first, while this process has a single thread, so its default start
    method is the one it picks for a plain application; the others then use the same one.
    """

    def __init__(self) -> None:
        self.default_method = default_start_method()
        self.sched = initgraph.Scheduler(WORKERS)
        self.method = self.sched.start_method
        try:
            self.pool: Any = multiprocess.get_context(self.method).Pool(WORKERS)
        except BaseException:
            self.sched.close()
            raise
        self.ppe = concurrent.futures.ProcessPoolExecutor(
            WORKERS, mp_context=multiprocessing.get_context(self.method)
        )
        ctx = multiprocess.get_context(self.method)
        self.go: Any = ctx.Semaphore(0)
        self.done: Any = ctx.Semaphore(0)
        self.stamp: Any = ctx.RawValue("d", 0.0)
        self.echo: Any = ctx.Process(
            target=_tasks.semaphore_echo,
            args=(self.go, self.done, self.stamp),
            name="bench-semaphore-echo",
            daemon=True,
        )
        self.echo.start()

    def warm(self) -> None:
        """Start every worker and load the task module everywhere."""
        for _ in range(3):
            overhead_once(self, IG, 200)
            overhead_once(self, POOL, 200)
            overhead_once(self, PPE, 200)

    def close(self) -> None:
        self.stamp.value = -1.0
        self.go.release()
        self.echo.join(5)
        if self.echo.is_alive():
            self.echo.kill()
            self.echo.join()
        self.pool.close()
        self.pool.join()
        self.ppe.shutdown(wait=True)
        self.sched.close()


def settle(seconds: float = 0.02) -> None:
    """Let a pool's background work (result threads, initgraph's pool thread) go idle.

    Run untimed after each measurement, so that one executor's leftovers are not charged to
    the next one measured (the whole-boot sections give it 0.05 s: more to wind down).
    """
    time.sleep(seconds)
    gc.collect()


# -- 1. per-initcall overhead ---------------------------------------------------------------------
@dataclass(frozen=True)
class Batch:
    wall: float  # seconds: the first submit to the end of the wait for all
    submit: float  # seconds: the submit loop alone
    cpu: float  # CPU seconds of this process (every thread) until every result is in the parent


def overhead_once(ex: Executors, name: str, n: int) -> Batch:
    """n no-ops submitted one by one, then all waited for (the executor's usual way)."""
    noop = _tasks.noop
    if name == IG:
        sched = ex.sched
        sched.result(sched.schedule(noop))
        c0, t0 = time.process_time(), time.perf_counter()
        cookies = [sched.schedule(noop) for _ in range(n)]
        t1 = time.perf_counter()
        sched.synchronize_full()
        t2 = time.perf_counter()
        for c in cookies:  # untimed, but in the CPU time: the results reach the parent
            sched.result(c)
    elif name == POOL:
        pool = ex.pool
        pool.apply_async(noop).get()
        c0, t0 = time.process_time(), time.perf_counter()
        rs = [pool.apply_async(noop) for _ in range(n)]
        t1 = time.perf_counter()
        for r in rs:
            r.get()
        t2 = time.perf_counter()
    else:
        ppe = ex.ppe
        ppe.submit(noop).result()
        c0, t0 = time.process_time(), time.perf_counter()
        fs = [ppe.submit(noop) for _ in range(n)]
        t1 = time.perf_counter()
        for f in fs:
            f.result()
        t2 = time.perf_counter()
    c1 = time.process_time()
    settle()
    return Batch(t2 - t0, t1 - t0, c1 - c0)


def overhead_with_results(ex: Executors, n: int) -> float:
    """initgraph, waiting on ``result()`` of each initcall instead of ``synchronize_full()``."""
    sched = ex.sched
    noop = _tasks.noop
    t0 = time.perf_counter()
    cookies = [sched.schedule(noop) for _ in range(n)]
    for c in cookies:
        sched.result(c)
    t1 = time.perf_counter()
    settle()
    return t1 - t0


def bench_overhead(ex: Executors, plan: Plan) -> dict[str, Any]:
    walls: dict[str, list[float]] = {k: [] for k in CONTENDERS}
    submits: dict[str, list[float]] = {k: [] for k in CONTENDERS}
    cpus: dict[str, list[float]] = {k: [] for k in CONTENDERS}
    with_results: list[float] = []
    for rep in range(plan.overhead_repeats):
        # rotate the order, so no executor always runs right after the same other one
        order = CONTENDERS[rep % 3 :] + CONTENDERS[: rep % 3]
        for name in order:
            batch = overhead_once(ex, name, TASKS)
            walls[name].append(batch.wall / TASKS * 1e6)
            submits[name].append(batch.submit / TASKS * 1e6)
            cpus[name].append(batch.cpu / TASKS * 1e6)
        with_results.append(overhead_with_results(ex, TASKS) / TASKS * 1e6)
    out: dict[str, Any] = {}
    for name in CONTENDERS:
        out[name] = {
            "best_us": min(walls[name]),
            "median_us": median(walls[name]),
            "submit_best_us": min(submits[name]),
            "parent_cpu_median_us": median(cpus[name]),
            "runs_us": walls[name],
            "submit_runs_us": submits[name],
            "parent_cpu_runs_us": cpus[name],
        }
    out["initgraph_result_each"] = {
        "best_us": min(with_results),
        "median_us": median(with_results),
        "runs_us": with_results,
    }
    return out


# -- 2. one initcall's round trip -----------------------------------------------------------------
def bench_roundtrip(ex: Executors, plan: Plan) -> dict[str, Any]:
    noop = _tasks.noop
    sched, pool, ppe = ex.sched, ex.pool, ex.ppe

    def ig() -> None:
        sched.result(sched.schedule(noop))

    def mp() -> None:
        pool.apply_async(noop).get()

    def pe() -> None:
        ppe.submit(noop).result()

    calls: dict[str, Callable[[], None]] = {IG: ig, POOL: mp, PPE: pe}
    samples: dict[str, list[float]] = {k: [] for k in CONTENDERS}
    gc.collect()
    for _ in range(plan.roundtrips):
        for name in CONTENDERS:
            call = calls[name]
            t0 = time.perf_counter()
            call()
            samples[name].append((time.perf_counter() - t0) * 1e6)
        time.sleep(0.001)  # let result threads and pool threads go idle between samples
    return {name: summary(samples[name]) | {"samples_us": samples[name]} for name in CONTENDERS}


# -- 3. wake-up latency ---------------------------------------------------------------------------
SEM = "raw Semaphore"


def wake_ig(ex: Executors, work: float) -> float:
    sched = ex.sched
    c = sched.schedule(_tasks.stamp_after, work)
    sched.synchronize_cookie(c + 1)
    woke = time.monotonic()
    stamped: float = sched.result(c)
    return woke - stamped


def wake_pool(ex: Executors, work: float) -> float:
    r = ex.pool.apply_async(_tasks.stamp_after, (work,))
    r.wait()
    woke = time.monotonic()
    return woke - float(r.get())


def wake_ppe(ex: Executors, work: float) -> float:
    f = ex.ppe.submit(_tasks.stamp_after, work)
    stamped = f.result()
    woke = time.monotonic()
    return woke - stamped


def wake_sem(ex: Executors, work: float) -> float:
    ex.stamp.value = work
    ex.go.release()
    ex.done.acquire()
    woke = time.monotonic()
    return woke - float(ex.stamp.value)


def bench_wakeup(ex: Executors, plan: Plan, work: float) -> dict[str, Any]:
    calls: dict[str, Callable[[Executors, float], float]] = {
        IG: wake_ig,
        POOL: wake_pool,
        PPE: wake_ppe,
        SEM: wake_sem,
    }
    samples: dict[str, list[float]] = {k: [] for k in calls}
    gc.collect()
    for _ in range(plan.wakeups):
        for name, call in calls.items():
            samples[name].append(call(ex, work) * 1e6)
            time.sleep(0.002)
    return {name: summary(s) | {"samples_us": s} for name, s in samples.items()}


# -- 4. import + start + first result, in fresh interpreters --------------------------------------
_PRELUDE = """\
import time; _t0 = time.perf_counter(); _m0 = time.monotonic()
import sys; sys.path.insert(0, @DIR@)
"""
_BODIES = {
    IG: """\
import initgraph, _tasks
_t1 = time.perf_counter()
with initgraph.Scheduler(2) as s:
    s.result(s.schedule(_tasks.noop))
    _t2 = time.perf_counter()
    _method = s.start_method
_t3 = time.perf_counter()
""",
    POOL: """\
import multiprocess, _tasks
_t1 = time.perf_counter()
with multiprocess.get_context(@METHOD@).Pool(2) as p:
    p.apply_async(_tasks.noop).get()
    _t2 = time.perf_counter()
    _method = @METHOD@
_t3 = time.perf_counter()
""",
    PPE: """\
import concurrent.futures, multiprocessing, _tasks
_t1 = time.perf_counter()
_ctx = multiprocessing.get_context(@METHOD@)
with concurrent.futures.ProcessPoolExecutor(2, mp_context=_ctx) as ex:
    ex.submit(_tasks.noop).result()
    _t2 = time.perf_counter()
    _method = @METHOD@
_t3 = time.perf_counter()
""",
}
_EPILOGUE = """\
import json
print(json.dumps({"t0": _t0, "t1": _t1, "t2": _t2, "t3": _t3, "m0": _m0, "method": _method}))
"""


def fresh_code(name: str, method: str) -> str:
    code = _PRELUDE + _BODIES[name] + _EPILOGUE
    return code.replace("@DIR@", repr(str(HERE))).replace("@METHOD@", repr(method))


def fresh_once(name: str, method: str, env: dict[str, str]) -> dict[str, Any]:
    code = fresh_code(name, method)
    launched = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    if proc.returncode != 0:
        msg = f"fresh {name} run failed ({proc.returncode}):\n{proc.stderr}"
        raise RuntimeError(msg)
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "import_ms": (r["t1"] - r["t0"]) * 1e3,
        "start_first_ms": (r["t2"] - r["t1"]) * 1e3,
        "total_ms": (r["t2"] - r["t0"]) * 1e3,
        "close_ms": (r["t3"] - r["t2"]) * 1e3,
        "interpreter_ms": (r["m0"] - launched) * 1e3,
        "method": r["method"],
    }


FRESH_KEYS = ("import_ms", "start_first_ms", "total_ms", "close_ms", "interpreter_ms")


def bench_fresh(method: str, plan: Plan) -> dict[str, Any]:
    """Fresh interpreters, with a bytecode cache (as an installed application runs) and, when
    this environment turns bytecode writing off (PYTHONDONTWRITEBYTECODE), also as it is: then
    initgraph, installed editable, is compiled from source at every start while the packages
    pip installed come with their bytecode.
    """
    envs: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="initgraph-bench-pyc-") as pyc:
        cached = dict(os.environ)
        cached.pop("PYTHONDONTWRITEBYTECODE", None)
        cached["PYTHONPYCACHEPREFIX"] = pyc  # not next to the sources: the tree stays as it is
        envs["cached"] = cached
        if os.environ.get("PYTHONDONTWRITEBYTECODE"):
            envs["no_bytecode_cache"] = dict(os.environ)
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {
            v: {k: [] for k in CONTENDERS} for v in envs
        }
        for env in envs.values():  # a first run each, not counted: fills the caches
            for name in CONTENDERS:
                fresh_once(name, method, env)
        for _ in range(plan.fresh_runs):
            for variant, env in envs.items():
                for name in CONTENDERS:
                    runs[variant][name].append(fresh_once(name, method, env))
    out: dict[str, Any] = {}
    for variant in envs:
        out[variant] = {}
        for name in CONTENDERS:
            these = runs[variant][name]
            entry: dict[str, Any] = {k: median([r[k] for r in these]) for k in FRESH_KEYS}
            entry["method"] = these[0]["method"]
            entry["runs"] = these
            out[variant][name] = entry
    return out


# -- the report -----------------------------------------------------------------------------------
@dataclass
class Row:
    label: str
    unit: str
    values: dict[str, float]  # by contender (and SEM for the floor)


def stats(xs: Sequence[float]) -> dict[str, Any]:
    """Median, min, max and every run of ``xs``."""
    return {
        "median": float(statistics.median(xs)),
        "min": float(min(xs)),
        "max": float(max(xs)),
        "runs": [float(x) for x in xs],
    }


def rotated(names: Sequence[str], rep: int) -> list[str]:
    """``names`` starting at a different one each repeat: nobody always follows the same one."""
    k = rep % len(names)
    return [*names[k:], *names[:k]]


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b <= 0:
        return "-"
    return f"{a / b:.2f}"


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def table(rows: list[Row]) -> str:
    head = ["", "unit", "initgraph", "mp.Pool", "PPE", "ig/Pool", "ig/PPE", "floor"]
    lines = [head]
    for row in rows:
        v = row.values
        ig, mp, pe = v.get(IG), v.get(POOL), v.get(PPE)
        lines.append(
            [
                row.label,
                row.unit,
                fmt(ig),
                fmt(mp),
                fmt(pe),
                ratio(ig, mp) if ig is not None and mp is not None else "-",
                ratio(ig, pe) if ig is not None and pe is not None else "-",
                fmt(v.get(SEM)),
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = []
    for k, line in enumerate(lines):
        cells = [line[0].ljust(widths[0]), line[1].ljust(widths[1])]
        cells += [c.rjust(w) for c, w in zip(line[2:], widths[2:], strict=True)]
        out.append("  ".join(cells).rstrip())
        if k == 0:
            out.append("-" * len(out[0]))
    return "\n".join(out)


def build_rows(res: dict[str, Any]) -> list[Row]:
    ov, rt, fr = res["overhead"], res["roundtrip"], res["fresh"]["cached"]
    wk, ws = res["wakeup"], res["wakeup_short"]
    every = (*CONTENDERS, SEM)
    cpu_rows = {k: ov[k]["parent_cpu_median_us"] for k in CONTENDERS}
    rows = [
        Row("1. overhead, best (wall/2000)", "µs", {k: ov[k]["best_us"] for k in CONTENDERS}),
        Row("   overhead, median of repeats", "µs", {k: ov[k]["median_us"] for k in CONTENDERS}),
        Row("   submit phase only, best", "µs", {k: ov[k]["submit_best_us"] for k in CONTENDERS}),
        Row("   parent CPU (all threads), median", "µs", cpu_rows),
        Row("   initgraph, result() of each", "µs", {IG: ov["initgraph_result_each"]["best_us"]}),
        Row("2. round trip, median", "µs", {k: rt[k]["median"] for k in CONTENDERS}),
        Row("   round trip, p90", "µs", {k: rt[k]["p90"] for k in CONTENDERS}),
        Row("3. wake-up after 20 ms, median", "µs", {k: wk[k]["median"] for k in every}),
        Row("   wake-up after 20 ms, p90", "µs", {k: wk[k]["p90"] for k in every}),
        Row("   wake-up after 20 ms, max", "µs", {k: wk[k]["max"] for k in every}),
        Row("   wake-up after 2 ms, median", "µs", {k: ws[k]["median"] for k in every}),
        Row("   wake-up after 2 ms, p90", "µs", {k: ws[k]["p90"] for k in every}),
        Row("4. import+start+first result", "ms", {k: fr[k]["total_ms"] for k in CONTENDERS}),
        Row("   import", "ms", {k: fr[k]["import_ms"] for k in CONTENDERS}),
        Row("   start + first result", "ms", {k: fr[k]["start_first_ms"] for k in CONTENDERS}),
        Row("   close (leaving the with)", "ms", {k: fr[k]["close_ms"] for k in CONTENDERS}),
        Row("   interpreter start (info)", "ms", {k: fr[k]["interpreter_ms"] for k in CONTENDERS}),
    ]
    nc = res["fresh"].get("no_bytecode_cache")
    if nc is not None:
        rows += [
            Row("   no bytecode cache: total", "ms", {k: nc[k]["total_ms"] for k in CONTENDERS}),
            Row("   no bytecode cache: import", "ms", {k: nc[k]["import_ms"] for k in CONTENDERS}),
        ]
    return rows


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    ov, wk, fr = res["overhead"], res["wakeup"], res["fresh"]["cached"]
    ig_ov, mp_ov = ov[IG]["best_us"], ov[POOL]["best_us"]
    checks = [
        ("per-initcall overhead <= multiprocess.Pool's (same run)", ig_ov, mp_ov, "µs"),
        ("wake-up median <= 30 µs", wk[IG]["median"], WAKE_MEDIAN_US, "µs"),
        ("wake-up p90 <= 250 µs", wk[IG]["p90"], WAKE_P90_US, "µs"),
        ("import + start + first result <= 60 ms", fr[IG]["total_ms"], START_MS, "ms"),
    ]
    out = []
    for what, value, limit, unit in checks:
        out.append(
            {
                "target": what,
                "value": value,
                "limit": limit,
                "unit": unit,
                "margin": limit - value,
                "pass": value <= limit,
            }
        )
    return out


def report(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        f"initgraph core benchmark — {m['python']} on {m['platform']}, {m['cpus']} CPUs, "
        f"{WORKERS} workers, start method {m['start_method']!r} for all "
        f"(initgraph's default here: {m['default_start_method']!r})",
        f"initgraph {m['initgraph']} at {m['initgraph_tree']}; multiprocess {m['multiprocess']}",
        f"load average before: {m['loadavg']}, after: {res['loadavg_after']}; {share(res)}",
        f"plan: {res['plan']}",
        "",
        table(build_rows(res)),
        "",
        "1: µs per task, 2,000 no-ops submitted one by one then all waited for; pools warm.",
        "3: waiter asleep while the task works 20 ms (2 ms: info), stamp to waiter awake;",
        "   floor = a raw multiprocess Semaphore post from another process (no executor).",
        "4: fresh `python -c`, median; bytecode cached (PYTHONPYCACHEPREFIX in a temp dir).",
        "",
        "targets:",
    ]
    for t in res["targets"]:
        verdict = "PASS" if t["pass"] else "MISS"
        margin = t["margin"]
        pct = f"{abs(margin) / t['limit'] * 100:.0f}%" if t["limit"] else "-"
        side = "under" if margin >= 0 else "over"
        lines.append(
            f"  {verdict}  {t['target']}: {fmt(t['value'])} {t['unit']} "
            f"(limit {fmt(t['limit'])} {t['unit']}; {fmt(abs(margin))} {t['unit']} = {pct} {side})"
        )
    nc = res["fresh"].get("no_bytecode_cache")
    if nc is not None:
        total = nc[IG]["total_ms"]
        lines.append(
            f"  info  the same without a bytecode cache (this environment sets "
            f"PYTHONDONTWRITEBYTECODE, so the editable initgraph compiles at every start): "
            f"{fmt(total)} ms ({'within' if total <= START_MS else 'over'} {START_MS:g} ms)"
        )
    lines.append(f"\nwall time of the whole run: {res['elapsed_s']:.1f} s")
    return "\n".join(lines)


def share(res: dict[str, Any]) -> str:
    c = res.get("cpu_share") or {}
    if not c:
        return "CPU share of other processes: n/a"
    return (
        f"machine CPU during the run: this benchmark {c['own_pct']:.0f}%, other processes "
        f"{c['others_pct']:.0f}%, hypervisor steal {c['steal_pct']:.0f}%"
    )


def machine(ex: Executors, loadavg: str) -> dict[str, Any]:
    return {
        "python": f"Python {platform.python_version()}",
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "start_method": ex.method,
        "default_start_method": ex.default_method,
        "multiprocess": getattr(multiprocess, "__version__", "?"),
        "initgraph": initgraph.__version__,
        "loadavg": loadavg,
        "initgraph_tree": source_tree(),
        "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE", ""),
    }


# -- profiling (--profile) ------------------------------------------------------------------------
def profile(out_dir: Path, batches: int) -> None:
    """cProfile initgraph's 2,000-task loop in the parent, its pool thread and its workers.

    Wraps (at run time, in this process only) the worker entry point and the pool thread's loop
    so that each runs under its own profiler; needs the fork start method.
    """
    import cProfile
    import pstats

    from initgraph._core import pool as _pool
    from initgraph._core import worker as _worker

    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.prof"):
        old.unlink()
    worker_main = _worker.main
    pool_loop = _pool.Pool.run

    def profiled_main(*args: Any) -> None:
        prof = cProfile.Profile()
        prof.enable()
        try:
            worker_main(*args)
        finally:
            prof.disable()
            prof.dump_stats(out_dir / f"worker-{os.getpid()}.prof")

    def profiled_loop(self: _pool.Pool) -> None:
        prof = cProfile.Profile()
        prof.enable()
        try:
            pool_loop(self)
        finally:
            prof.disable()
            prof.dump_stats(out_dir / "pool-thread.prof")

    setattr(_worker, "main", profiled_main)  # noqa: B010
    setattr(_pool.Pool, "run", profiled_loop)  # noqa: B010
    try:
        with initgraph.Scheduler(WORKERS, start_method="fork") as sched:
            for _ in range(200):
                sched.schedule(_tasks.noop)
            sched.synchronize_full()
            main_prof = cProfile.Profile()
            walls = []
            for _ in range(batches):
                t0 = time.perf_counter()
                main_prof.enable()
                for _ in range(TASKS):
                    sched.schedule(_tasks.noop)
                sched.synchronize_full()
                main_prof.disable()
                walls.append((time.perf_counter() - t0) / TASKS * 1e6)
                time.sleep(0.05)
            main_prof.dump_stats(out_dir / "parent-main.prof")
    finally:
        setattr(_worker, "main", worker_main)  # noqa: B010
        setattr(_pool.Pool, "run", pool_loop)  # noqa: B010
    print(f"under cProfile: {', '.join(f'{w:.0f}' for w in walls)} µs per initcall")
    files = sorted(out_dir.glob("*.prof"))
    for path in files:
        print(f"\n=== {path.name} (tottime, top 25; {batches}x{TASKS} initcalls + warm-up) ===")
        stats = pstats.Stats(str(path))
        stats.sort_stats("tottime").print_stats(25)


# -- main -----------------------------------------------------------------------------------------
def run(plan: Plan) -> dict[str, Any]:
    started = time.perf_counter()
    cpu_before = cpu_seconds()
    loadavg = machine_loadavg()
    ex = Executors()
    try:
        ex.warm()
        res: dict[str, Any] = {"machine": machine(ex, loadavg), "plan": plan.__dict__}
        log("1/4 per-initcall overhead")
        res["overhead"] = bench_overhead(ex, plan)
        log("2/4 round trip")
        res["roundtrip"] = bench_roundtrip(ex, plan)
        log("3/4 wake-up latency")
        res["wakeup"] = bench_wakeup(ex, plan, WORK_S)
        res["wakeup_short"] = bench_wakeup(ex, plan, WORK_SHORT_S)
    finally:
        ex.close()
    log("4/4 import + start + first result (fresh interpreters)")
    res["fresh"] = bench_fresh(ex.method, plan)
    res["targets"] = targets(res)
    res["loadavg_after"] = machine_loadavg()
    res["cpu_share"] = others_share(cpu_before, time.perf_counter() - started)
    res["elapsed_s"] = time.perf_counter() - started
    return res


def source_tree() -> str:
    """The commit initgraph was measured at, and whether its sources differ from it.

    Read-only git calls (``--no-optional-locks``: not even the index is refreshed).
    """
    root = Path(initgraph.__file__).resolve().parent.parent
    git = ["git", "--no-optional-locks", "-C", str(root)]
    try:
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        clean = subprocess.run(
            [*git, "diff", "--quiet", "HEAD", "--", "initgraph"], capture_output=True, check=False
        ).returncode
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    return head + ("" if clean == 0 else " + uncommitted changes in initgraph/")


def cpu_seconds() -> tuple[float, float, float] | None:
    """(CPU seconds busy machine-wide, stolen by the hypervisor, used by this process tree).

    From /proc/stat (Linux); None elsewhere. This process tree's share counts children once
    they are reaped, which every child of the run is by its end.
    """
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    hz = os.sysconf("SC_CLK_TCK")
    t = os.times()
    own = t.user + t.system + t.children_user + t.children_system
    return (user + nice + system + irq + softirq) / hz, steal / hz, own


def others_share(before: tuple[float, float, float] | None, wall: float) -> dict[str, float]:
    """How much of the machine other processes (and the hypervisor) took during the run."""
    after = cpu_seconds()
    if before is None or after is None or wall <= 0:
        return {}
    cpus = os.cpu_count() or 1
    busy, steal, own = (a - b for a, b in zip(after, before, strict=True))
    return {
        "others_pct": max(0.0, busy - own) / (wall * cpus) * 100,
        "steal_pct": steal / (wall * cpus) * 100,
        "own_pct": own / (wall * cpus) * 100,
    }


def machine_loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def log(msg: str) -> None:
    print(f"... {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke test)")
    parser.add_argument("--json", metavar="FILE", type=Path, help="write every number to FILE")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        type=Path,
        help="instead: cProfile initgraph's 2,000-task loop (parent, pool thread, workers)",
    )
    args = parser.parse_args(argv)
    if args.profile is not None:
        profile(args.profile, batches=2 if args.quick else 5)
        return 0
    res = run(QUICK if args.quick else FULL)
    print(report(res), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")
        print(f"numbers written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
