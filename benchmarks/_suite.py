"""The comparison suite: initgraph against the executors a user would otherwise reach for.

``python -m benchmarks`` (or ``python benchmarks/run.py``) runs it; ``benchmarks/README.md`` says
what each row measures. Workloads, each measured side by side in one run, the executors taking
turns inside every repeat (the order rotates) so that a slow stretch of the machine hits all alike:

1. sleep boot: independent initcalls that sleep, many workers; cold (pool construction
   included) and warm (pool started, one task run before).
2. CPU boot: independent initcalls of calibrated pure-Python work, 2 workers; cold and warm.
3. dependency boot: a seeded random DAG of initcalls with mixed sleeps and CPU work.
4. scaling: 100, 1,000 and 10,000 no-op initcalls through a warm initgraph (and
   ``multiprocess.Pool``), per-initcall µs.
5. the example application: ``initgraph.boot(init.toml)`` against the same boot with one
   worker (what ``initgraph run --compare`` does).
6. ``import initgraph`` in fresh interpreters, and what it imports.
7-9. data at memory speed (``_data.py``): moving large results (transfer), a boot around one
   200 MiB array (data boot), and a realistic numpy/scikit-learn boot with its peak PSS.

``--only SECTION`` (repeatable, or comma-separated) runs a subset: sleep, cpu, dag, scaling,
example, import, looplag, transfer, databoot, realboot.

The executors: sequential in this process, ``ThreadPoolExecutor``, ``ProcessPoolExecutor`` driven
by ``graphlib.TopologicalSorter`` (submit the ready nodes; on each completion mark it done and
submit what became ready), ``multiprocess.Pool`` driven the same way, and ``initgraph.Scheduler``
with ``after=`` edges. Every process pool uses one start method: initgraph's default here, found by
starting a ``Scheduler`` first while this process has a single thread.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import graphlib
import hashlib
import json
import multiprocessing
import os
import platform
import queue
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import multiprocess

import initgraph

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _tasks  # noqa: E402  (needs HERE on sys.path: pools pickle its functions by reference)
from core import (  # noqa: E402
    cpu_seconds,
    fmt,
    log,
    machine_loadavg,
    others_share,
    ratio,
    rotated,
    settle,
    stats,
)

SEQ, TPE, PPE, POOL, IG = (
    "sequential",
    "ThreadPoolExecutor",
    "PPE+graphlib",
    "multiprocess.Pool",
    "initgraph",
)
EXECUTORS = (SEQ, TPE, PPE, POOL, IG)
POOLS = (TPE, PPE, POOL, IG)

# Targets (issue 6), each judged on medians of the same run.
WARM_MAX = 1.08  # warm boots, x ideal
COLD_SLEEP_MAX = 1.25
COLD_CPU_MAX = 1.12
DAG_MAX = 1.15
SCALING_MAX = 1.5  # per-initcall cost at the largest size / at the smallest
IMPORT_MS = 50.0


@dataclass(frozen=True)
class Plan:
    """How much to measure."""

    name: str
    repeats: int
    sleep_tasks: int
    sleep_s: float
    sleep_workers: int
    cpu_tasks: int
    cpu_s: float
    cpu_workers: int
    dag_nodes: int
    dag_workers: int
    dag_sleep_ms: tuple[float, float]
    scaling_sizes: tuple[int, ...]
    example_repeats: int
    import_runs: int


FULL = Plan("full", 5, 64, 0.050, 16, 16, 0.100, 2, 200, 2, (1.0, 20.0), (100, 1000, 10000), 3, 9)
QUICK = Plan("quick", 2, 32, 0.020, 8, 8, 0.030, 2, 60, 2, (1.0, 5.0), (100, 1000), 1, 3)
SMOKE = Plan("smoke", 1, 4, 0.002, 2, 2, 0.005, 2, 12, 2, (0.0, 2.0), (10, 30), 1, 1)
DAG_SEED = 6
DAG_WINDOW = 16  # a node's requirements are drawn from the 16 nodes before it
DAG_CPU_SHARE = 0.25  # a quarter of the nodes burn CPU instead of sleeping


# -- statistics and the machine -------------------------------------------------------------------


def with_cpu(walls: Sequence[float], cpus: Sequence[float]) -> dict[str, Any]:
    """``stats`` of wall times (s -> ms), plus the median CPU time this process used (ms).

    The parent's CPU covers every thread of this process (initgraph's pool thread, a pool's
    result threads); for the sequential run it is the work itself.
    """
    return stats([x * 1e3 for x in walls]) | {"parent_cpu_ms": float(statistics.median(cpus)) * 1e3}


def source_digest() -> str:
    """A short hash of initgraph's sources as measured (the tree changes under the suite)."""
    h = hashlib.sha256()
    pkg = Path(initgraph.__file__).resolve().parent
    for path in sorted(pkg.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def head_commit() -> str:
    """The checked-out commit, read from ``.git`` directly (no git command is run)."""
    git = ROOT / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:7]
        ref = head[5:]
        path = git / ref
        if path.exists():
            return path.read_text().strip()[:7]
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line[:7]
    except OSError:
        pass
    return "unknown"


# -- the executors --------------------------------------------------------------------------------
def open_executor(name: str, workers: int, method: str) -> Any:
    if name == SEQ:
        return None
    if name == TPE:
        return concurrent.futures.ThreadPoolExecutor(workers)
    if name == PPE:
        ctx = multiprocessing.get_context(method)
        return concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx)
    if name == POOL:
        return multiprocess.get_context(method).Pool(workers)
    return initgraph.Scheduler(workers, start_method=method)


def close_executor(name: str, ex: Any) -> None:
    if name in (TPE, PPE):
        ex.shutdown(wait=True)
    elif name == POOL:
        ex.close()
        ex.join()
    elif name == IG:
        ex.close()


@contextmanager
def executor(name: str, workers: int, method: str) -> Iterator[Any]:
    ex = open_executor(name, workers, method)
    try:
        yield ex
    finally:
        close_executor(name, ex)


def one_task(name: str, ex: Any) -> None:
    """Run one no-op through ``ex`` and wait for it: after this the executor is warm."""
    if name in (TPE, PPE):
        ex.submit(_tasks.noop).result()
    elif name == POOL:
        ex.apply_async(_tasks.noop).get()
    elif name == IG:
        ex.result(ex.schedule(_tasks.noop))


Task = tuple[int, float, int]  # (node, sleep seconds, burn iterations): _tasks.work's data


@dataclass(frozen=True)
class Graph:
    """A boot: one task per node; ``deps[i]`` are nodes below ``i`` that must finish first."""

    tasks: tuple[Task, ...]
    deps: tuple[tuple[int, ...], ...]

    def sorter(self) -> graphlib.TopologicalSorter[int]:
        ts: graphlib.TopologicalSorter[int] = graphlib.TopologicalSorter()
        for i, d in enumerate(self.deps):
            ts.add(i, *d)
        ts.prepare()
        return ts


def run_graph(name: str, ex: Any, g: Graph) -> list[Any]:
    """Run every node of ``g`` on ``ex`` the way a user of that executor would; the node ids."""
    if name == SEQ:
        return [_tasks.work(t) for t in g.tasks]  # node order is a topological order
    if name in (TPE, PPE):
        return _run_futures(ex, g)
    if name == POOL:
        return _run_pool(ex, g)
    return _run_initgraph(ex, g)


def _run_futures(ex: concurrent.futures.Executor, g: Graph) -> list[Any]:
    ts = g.sorter()
    results: list[Any] = []
    pending: dict[concurrent.futures.Future[Any], int] = {}
    while True:
        for i in ts.get_ready():
            pending[ex.submit(_tasks.work, g.tasks[i])] = i
        if not pending:
            return results
        finished, _ = concurrent.futures.wait(
            pending, return_when=concurrent.futures.FIRST_COMPLETED
        )
        for f in finished:
            i = pending.pop(f)
            results.append(f.result())
            ts.done(i)


def _run_pool(pool: Any, g: Graph) -> list[Any]:
    ts = g.sorter()
    outcomes: queue.SimpleQueue[tuple[int, Any, BaseException | None]] = queue.SimpleQueue()
    results: list[Any] = []
    outstanding = 0
    while True:
        for i in ts.get_ready():
            pool.apply_async(
                _tasks.work,
                (g.tasks[i],),
                callback=functools.partial(_put_result, outcomes, i),
                error_callback=functools.partial(_put_error, outcomes, i),
            )
            outstanding += 1
        if not outstanding:
            return results
        i, value, exc = outcomes.get()
        outstanding -= 1
        if exc is not None:
            raise exc
        results.append(value)
        ts.done(i)


def _put_result(
    q: queue.SimpleQueue[tuple[int, Any, BaseException | None]], i: int, v: Any
) -> None:
    q.put((i, v, None))


def _put_error(
    q: queue.SimpleQueue[tuple[int, Any, BaseException | None]], i: int, exc: BaseException
) -> None:
    q.put((i, None, exc))


def _run_initgraph(sched: initgraph.Scheduler, g: Graph) -> list[Any]:
    cookies: list[int] = []
    for task, deps in zip(g.tasks, g.deps, strict=True):
        cookies.append(sched.schedule(_tasks.work, task, after=[cookies[d] for d in deps]))
    sched.synchronize_full()
    return cookies


def check_done(name: str, ex: Any, g: Graph, out: list[Any]) -> None:
    """Untimed: every node ran exactly once (initgraph: read each cookie's result)."""
    if name == IG:
        out = [ex.result(c) for c in out]
    if sorted(out) != list(range(len(g.tasks))):
        msg = f"{name}: the boot did not run every node exactly once"
        raise RuntimeError(msg)


# -- calibration ----------------------------------------------------------------------------------
def calibrate(seconds: float) -> dict[str, Any]:
    """Burn iterations that take ``seconds`` in this process, and how long they then take.

    On a shared machine a run can only be slowed down, never sped up, by other processes, so
    the fastest run is the best estimate of the work itself: the rate is the fastest of several
    short runs, the count is corrected once from the fastest of 5 runs of full length, and
    ``best_ms`` (the fastest of 5 more) is what the ideals are computed from. The median and the
    slowest are reported to show how noisy the machine was.
    """
    _tasks.burn(20_000)
    rates = []
    for _ in range(7):
        n = 200_000
        t0 = time.perf_counter()
        _tasks.burn(n)
        rates.append(n / (time.perf_counter() - t0))
    iterations = max(1, round(max(rates) * seconds))

    def fastest(n: int) -> list[float]:
        runs = []
        for _ in range(5):
            t0 = time.perf_counter()
            _tasks.burn(n)
            runs.append(time.perf_counter() - t0)
        return runs

    iterations = max(1, round(iterations * seconds / min(fastest(iterations))))
    checks = fastest(iterations)
    return {
        "target_ms": seconds * 1e3,
        "iterations": iterations,
        "iterations_per_s": iterations / min(checks),
        "best_ms": min(checks) * 1e3,
        "measured_ms": stats([x * 1e3 for x in checks]),
    }


# -- 1 and 2: independent boots, cold and warm -----------------------------------------------------
def bench_flat(
    tasks: int,
    sleep_s: float,
    iterations: int,
    workers: int,
    ideal_s: float,
    method: str,
    reps: int,
) -> dict[str, Any]:
    """``tasks`` independent initcalls, each executor cold then warm, taking turns each repeat."""
    g = Graph(
        tuple((i, sleep_s, iterations) for i in range(tasks)), tuple(() for _ in range(tasks))
    )
    cold: dict[str, list[float]] = {n: [] for n in EXECUTORS}
    warm: dict[str, list[float]] = {n: [] for n in POOLS}
    cold_cpu: dict[str, list[float]] = {n: [] for n in EXECUTORS}
    warm_cpu: dict[str, list[float]] = {n: [] for n in POOLS}
    for rep in range(reps):
        for name in rotated(EXECUTORS, rep):
            settle(0.05)
            c0, t0 = time.process_time(), time.perf_counter()
            ex = open_executor(name, workers, method)
            try:
                out = run_graph(name, ex, g)
                cold[name].append(time.perf_counter() - t0)
                cold_cpu[name].append(time.process_time() - c0)
                check_done(name, ex, g, out)
                if name == SEQ:
                    continue
                settle(0.05)
                one_task(name, ex)
                c0, t0 = time.process_time(), time.perf_counter()
                out = run_graph(name, ex, g)
                warm[name].append(time.perf_counter() - t0)
                warm_cpu[name].append(time.process_time() - c0)
                check_done(name, ex, g, out)
            finally:
                close_executor(name, ex)
    return {
        "ideal_ms": ideal_s * 1e3,
        "cold": {n: with_cpu(v, cold_cpu[n]) for n, v in cold.items()},
        "warm": {n: with_cpu(v, warm_cpu[n]) for n, v in warm.items()},
    }


# -- 3. the dependency boot ------------------------------------------------------------------------
def random_dag(n: int, sleep_ms: tuple[float, float], iterations_per_s: float) -> Graph:
    """A seeded random DAG: each node requires 0-3 of the 16 before it; a quarter burn CPU."""
    rng = random.Random(DAG_SEED)
    tasks: list[Task] = []
    deps: list[tuple[int, ...]] = []
    for i in range(n):
        ms = rng.uniform(*sleep_ms)
        if rng.random() < DAG_CPU_SHARE:
            tasks.append((i, 0.0, max(1, round(ms / 1e3 * iterations_per_s))))
        else:
            tasks.append((i, ms / 1e3, 0))
        k = min(i, rng.choice((0, 1, 1, 2, 2, 3)))
        deps.append(tuple(sorted(rng.sample(range(max(0, i - DAG_WINDOW), i), k))))
    return Graph(tuple(tasks), tuple(deps))


def nominal(g: Graph, iterations_per_s: float) -> list[float]:
    """Each node's duration in seconds, as designed (sleep + calibrated CPU)."""
    return [s + it / iterations_per_s for _, s, it in g.tasks]


def critical_path(durations: Sequence[float], deps: Sequence[Sequence[int]]) -> float:
    finish: list[float] = []
    for d, before in zip(durations, deps, strict=True):
        finish.append(d + max((finish[b] for b in before), default=0.0))
    return max(finish, default=0.0)


def bench_dag(plan: Plan, iterations_per_s: float, method: str) -> dict[str, Any]:
    g = random_dag(plan.dag_nodes, plan.dag_sleep_ms, iterations_per_s)
    durations = nominal(g, iterations_per_s)
    cp = critical_path(durations, g.deps)
    total = sum(durations)
    cpu_total = sum(it / iterations_per_s for _, _, it in g.tasks)
    ideal = max(cp, total / plan.dag_workers)
    walls: dict[str, list[float]] = {n: [] for n in EXECUTORS}
    cpus: dict[str, list[float]] = {n: [] for n in EXECUTORS}
    opened = {n: open_executor(n, plan.dag_workers, method) for n in EXECUTORS}
    try:
        for name, ex in opened.items():
            one_task(name, ex)
        for rep in range(plan.repeats):
            for name in rotated(EXECUTORS, rep):
                ex = opened[name]
                settle(0.05)
                c0, t0 = time.process_time(), time.perf_counter()
                out = run_graph(name, ex, g)
                walls[name].append(time.perf_counter() - t0)
                cpus[name].append(time.process_time() - c0)
                check_done(name, ex, g, out)
    finally:
        for name, ex in opened.items():
            close_executor(name, ex)
    return {
        "nodes": len(g.tasks),
        "edges": sum(len(d) for d in g.deps),
        "cpu_nodes": sum(1 for _, _, it in g.tasks if it),
        "workers": plan.dag_workers,
        "seed": DAG_SEED,
        "total_work_ms": total * 1e3,
        "cpu_work_ms": cpu_total * 1e3,
        "critical_path_ms": cp * 1e3,
        "ideal_ms": ideal * 1e3,
        "warm": {n: with_cpu(v, cpus[n]) for n, v in walls.items()},
    }


# -- 4. scaling -----------------------------------------------------------------------------------
SCALED = (IG, POOL)


def noops(name: str, ex: Any, n: int) -> float:
    """Seconds to push ``n`` no-ops through ``ex`` one by one and wait for all."""
    noop = _tasks.noop
    t0 = time.perf_counter()
    if name == IG:
        for _ in range(n):
            ex.schedule(noop)
        ex.synchronize_full()
    else:
        for r in [ex.apply_async(noop) for _ in range(n)]:
            r.get()
    return time.perf_counter() - t0


def bench_scaling(plan: Plan, method: str) -> dict[str, Any]:
    per: dict[int, dict[str, list[float]]] = {
        n: {k: [] for k in SCALED} for n in plan.scaling_sizes
    }
    with executor(IG, 2, method) as sched, executor(POOL, 2, method) as pool:
        opened = {IG: sched, POOL: pool}
        for name, ex in opened.items():
            for _ in range(2):
                noops(name, ex, 200)
        for rep in range(plan.repeats):
            for n in plan.scaling_sizes:
                for name in rotated(SCALED, rep):
                    settle(0.05)
                    one_task(name, opened[name])
                    per[n][name].append(noops(name, opened[name], n) / n * 1e6)
    return {
        "workers": 2,
        "sizes": {str(n): {k: stats(v) for k, v in d.items()} for n, d in per.items()},
    }


# -- 5. the example application ------------------------------------------------------------------
def bench_example(plan: Plan) -> dict[str, Any]:
    """``initgraph.boot(init.toml)`` (workers "auto") against the same boot with one worker.

    Both run in this process, from the repository root (the corpus path is relative to it), when
    no other thread runs, so the boot picks its default start method as ``initgraph run`` would.
    """
    config = ROOT / "init.toml"
    variants: dict[str, dict[str, Any]] = {"initgraph": {}, "workers=1": {"workers": 1}}
    walls: dict[str, list[float]] = {k: [] for k in variants}
    boot_walls: dict[str, list[float]] = {k: [] for k in variants}
    work: dict[str, list[float]] = {}
    requires: dict[str, tuple[str, ...]] = {}
    where: dict[str, str] = {}
    info: dict[str, Any] = {}
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        if plan.name != "smoke":
            initgraph.boot(config)  # untimed: imports the plugins, fills the caches
        for rep in range(plan.example_repeats):
            for name in rotated(list(variants), rep):
                settle(0.05)
                t0 = time.perf_counter()
                b = initgraph.boot(config, **variants[name])
                walls[name].append(time.perf_counter() - t0)
                boot_walls[name].append(b.wall)
                if name == "initgraph":
                    info = {"workers": b.plan.workers, "start_method": b.plan.start_method}
                    continue
                for p in b.plan.plugins:
                    t = b.timings[p.name]
                    busy = (t.init_time or 0.0) + (t.commit_time or 0.0)
                    busy -= sum(w.ended - w.started for w in t.waits)
                    work.setdefault(p.name, []).append(busy)
                    requires[p.name] = p.requires
                    where[p.name] = p.where
    finally:
        os.chdir(cwd)
    names = list(work)
    each = {n: statistics.median(v) for n, v in work.items()}
    index = {n: i for i, n in enumerate(names)}
    cp = critical_path([each[n] for n in names], [[index[r] for r in requires[n]] for n in names])
    total = sum(each.values())
    cores = min(os.cpu_count() or 1, info["workers"] + (1 if "main" in where.values() else 0))
    ideal = max(cp, total / cores)
    return {
        **info,
        "plugins": len(names),
        "work_ms": {n: v * 1e3 for n, v in each.items()},
        "total_work_ms": total * 1e3,
        "critical_path_ms": cp * 1e3,
        "cores": cores,
        "ideal_ms": ideal * 1e3,
        "wall": {k: stats([x * 1e3 for x in v]) for k, v in walls.items()},
        "boot_wall": {k: stats([x * 1e3 for x in v]) for k, v in boot_walls.items()},
    }


# -- 6. import initgraph --------------------------------------------------------------------------
HEAVY = ("multiprocess", "dill", "pluggy", "rich", "tomli", "tomllib", "importlib.metadata")
# What is timed in a fresh interpreter. initgraph's names may load on first use (a module
# __getattr__), so the import alone and the import plus the first use of the Scheduler are two
# rows; multiprocess alone is the floor initgraph sits on.
IMPORTS = {
    "import initgraph": "import initgraph",
    "import initgraph; initgraph.Scheduler": "import initgraph; initgraph.Scheduler",
    "import multiprocess": "import multiprocess",
}
IG_IMPORT, IG_FIRST_USE = "import initgraph", "import initgraph; initgraph.Scheduler"
_IMPORT_CODE = """\
import time; _t0 = time.perf_counter()
{code}
_t1 = time.perf_counter()
import json, sys
print(json.dumps({{"ms": (_t1 - _t0) * 1e3, "loaded": [m for m in {heavy!r} if m in sys.modules]}}))
"""


def fresh_import(code: str, env: dict[str, str]) -> dict[str, Any]:
    script = _IMPORT_CODE.format(code=code, heavy=HEAVY)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        msg = f"{code!r} in a fresh interpreter failed:\n{proc.stderr}"
        raise RuntimeError(msg)
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


_IMPORTTIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)\s*$")


def import_profile(code: str, env: dict[str, str], runs: int) -> dict[str, Any]:
    """``python -X importtime -c CODE``: what it imports, in ms; the fastest of ``runs`` runs.

    A busy machine only adds time, so the fastest run is kept. Only the imports of ``CODE``
    count: everything after the interpreter's own start (which ends with ``site`` and, here,
    the editable-install finder). Each module's own time is summed by top-level package, so
    ``multiprocess`` and ``dill`` show apart from initgraph's own modules.
    """
    profiles = [_import_profile_once(code, env) for _ in range(runs)]
    return min(profiles, key=lambda p: float(p["total_ms"]))


def _import_profile_once(code: str, env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    rows = []
    for line in proc.stderr.splitlines():
        m = _IMPORTTIME.match(line)
        if m:
            own, cumulative, indent, name = m.groups()
            rows.append((name, len(indent) // 2, int(own) / 1e3, int(cumulative) / 1e3))
    site = max((i for i, r in enumerate(rows) if r[0] == "site" and r[1] == 0), default=-1)
    mine = rows[site + 1 :]
    by_package: dict[str, float] = {}
    for name, _, own, _ in mine:
        top = name.split(".")[0]
        by_package[top] = by_package.get(top, 0.0) + own
    ranked = sorted(by_package.items(), key=lambda kv: -kv[1])
    return {
        "total_ms": sum(r[3] for r in mine if r[1] == 0),
        "modules": len(mine),
        "by_package_ms": dict(ranked),
        "top_self": [
            {"module": r[0], "self_ms": r[2]} for r in sorted(mine, key=lambda r: -r[2])[:10]
        ],
    }


def bench_import(plan: Plan) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="initgraph-bench-pyc-") as pyc:
        cached = dict(os.environ)
        cached.pop("PYTHONDONTWRITEBYTECODE", None)
        cached["PYTHONPYCACHEPREFIX"] = pyc  # nothing is written next to the sources
        envs = {"cached": cached}
        if os.environ.get("PYTHONDONTWRITEBYTECODE"):
            envs["no_bytecode_cache"] = dict(os.environ)
        runs: dict[str, dict[str, list[float]]] = {v: {k: [] for k in IMPORTS} for v in envs}
        loaded: dict[str, list[str]] = {}
        for env in envs.values():
            for code in IMPORTS.values():
                fresh_import(code, env)  # untimed: fills the bytecode cache
        for rep in range(plan.import_runs):
            for variant, env in envs.items():
                for key in rotated(list(IMPORTS), rep):
                    r = fresh_import(IMPORTS[key], env)
                    runs[variant][key].append(r["ms"])
                    loaded[key] = r["loaded"]
        for variant in envs:
            out[variant] = {k: stats(v) for k, v in runs[variant].items()}
        out["loaded"] = loaded
        profile_runs = max(1, plan.import_runs // 3)
        out["profile_runs"] = profile_runs
        out["profile"] = {
            k: import_profile(IMPORTS[k], cached, profile_runs) for k in (IG_IMPORT, IG_FIRST_USE)
        }
    return out


# -- the report ----------------------------------------------------------------------------------
def table(head: Sequence[str], lines: Sequence[Sequence[str]]) -> list[str]:
    rows = [list(head), *[list(x) for x in lines]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    out = []
    for k, r in enumerate(rows):
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1])]
        cells += [c.rjust(w) for c, w in zip(r[2:], widths[2:], strict=True)]
        out.append("  ".join(cells).rstrip())
        if k == 0:
            out.append("-" * len(out[0]))
    return out


def boot_rows(res: dict[str, Any]) -> list[list[str]]:
    """Workloads 1-3 and 5: one line per executor, ms, with its ratio to ideal and to initgraph."""
    lines: list[list[str]] = []

    def add(label: str, entries: dict[str, dict[str, Any]], ideal: float, ig_key: str) -> None:
        ig = entries[ig_key]["median"]
        for k, (name, s) in enumerate(entries.items()):
            lines.append(
                [
                    label if k == 0 else "",
                    name,
                    fmt(s["median"]),
                    fmt(s["min"]),
                    fmt(s["max"]),
                    fmt(ideal),
                    ratio(s["median"], ideal),
                    ratio(s["median"], ig),
                    fmt(s.get("parent_cpu_ms")),
                ]
            )

    p = res["plan"]
    if "sleep" in res:
        sl = res["sleep"]
        sleep_what = f"{p['sleep_tasks']}x{p['sleep_s'] * 1e3:g}ms sleep, {p['sleep_workers']}w"
        add(f"1. sleep boot cold ({sleep_what})", sl["cold"], sl["ideal_ms"], IG)
        add("   sleep boot warm", sl["warm"], sl["ideal_ms"], IG)
    if "cpu" in res:
        cpu = res["cpu"]
        cpu_what = f"{p['cpu_tasks']}x{p['cpu_s'] * 1e3:g}ms CPU, {p['cpu_workers']}w"
        add(f"2. CPU boot cold ({cpu_what})", cpu["cold"], cpu["ideal_ms"], IG)
        add("   CPU boot warm", cpu["warm"], cpu["ideal_ms"], IG)
    if "dag" in res:
        dag = res["dag"]
        add(
            f"3. dependency boot ({dag['nodes']} nodes, {dag['edges']} edges, {dag['workers']}w)",
            dag["warm"],
            dag["ideal_ms"],
            IG,
        )
    if "example" in res:
        ex = res["example"]
        add(
            f"5. example boot (init.toml, {ex['workers']}w)",
            ex["wall"],
            ex["ideal_ms"],
            "initgraph",
        )
    return lines


def scaling_rows(res: dict[str, Any]) -> list[list[str]]:
    sc = res["scaling"]["sizes"]
    lines = []
    for n, d in sc.items():
        for k, name in enumerate(SCALED):
            s = d[name]
            lines.append(
                [
                    f"4. {int(n):,} no-ops (µs/initcall)" if k == 0 else "",
                    name,
                    fmt(s["median"]),
                    fmt(s["min"]),
                    fmt(s["max"]),
                    ratio(s["median"], d[IG]["median"]),
                ]
            )
    return lines


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target on the medians of this run, and (for information) on the best repeats.

    Only the targets of the sections that ran (``--only``). ``op`` says how value and limit
    compare for a PASS: "<=", "<" or ">=".
    """

    def on(stat: str) -> list[tuple[str, float, float]]:
        out: list[tuple[str, float, float]] = []
        if "sleep" in res:
            sl = res["sleep"]
            out.append(
                ("warm sleep boot <= 1.08x ideal", sl["warm"][IG][stat] / sl["ideal_ms"], WARM_MAX)
            )
        if "cpu" in res:
            cpu = res["cpu"]
            out.append(
                ("warm CPU boot <= 1.08x ideal", cpu["warm"][IG][stat] / cpu["ideal_ms"], WARM_MAX)
            )
        if "sleep" in res:
            sl = res["sleep"]
            out.append(
                (
                    "cold sleep boot <= 1.25x ideal",
                    sl["cold"][IG][stat] / sl["ideal_ms"],
                    COLD_SLEEP_MAX,
                )
            )
        if "cpu" in res:
            cpu = res["cpu"]
            out.append(
                (
                    "cold CPU boot <= 1.12x ideal",
                    cpu["cold"][IG][stat] / cpu["ideal_ms"],
                    COLD_CPU_MAX,
                )
            )
        if "dag" in res:
            dag = res["dag"]
            ppe, ig_dag = dag["warm"][PPE], dag["warm"][IG]
            out.append(("dependency boot <= 1.15x ideal", ig_dag[stat] / dag["ideal_ms"], DAG_MAX))
            out.append(
                (
                    "dependency boot faster than PPE+graphlib (ig/PPE < 1)",
                    ig_dag[stat] / ppe[stat],
                    1.0,
                )
            )
        if "scaling" in res:
            sc = res["scaling"]
            sizes = list(sc["sizes"])
            small, large = sc["sizes"][sizes[0]][IG], sc["sizes"][sizes[-1]][IG]
            out.append(
                (
                    f"per-initcall cost at {int(sizes[-1]):,} <= 1.5x at {int(sizes[0]):,}",
                    large[stat] / small[stat],
                    SCALING_MAX,
                )
            )
        if "import" in res:
            ig_import = res["import"]["cached"][IG_IMPORT]
            out.append(("import initgraph <= 50 ms (bytecode cached)", ig_import[stat], IMPORT_MS))
        if "looplag" in res:
            for kind in ("first", "warm"):
                own = res["looplag"][kind]["own_max_lag_ms"]
                what = f"event loop, initgraph's own worst lag, {kind} boots <= 5 ms"
                out.append((what, own[stat], LOOP_LAG_MS))
            for kind in ("first", "warm"):
                # the raw worst lag less the ticker's alone just before: what the boot added
                above = res["looplag"][kind]["above_idle_ms"]
                what = f"event loop, worst lag above the ticker alone's, {kind} boots <= 5 ms"
                out.append((what, above[stat], LOOP_LAG_MS))
        return out

    out = []
    for (what, value, limit), (_, best, _) in zip(on("median"), on("min"), strict=True):
        op = "<" if "faster" in what else "<="
        out.append(judged(what, value, best, limit, op))
    if any(k in res for k in DATA_SECTIONS):
        import _data

        for what, value, best, limit, op in _data.targets(res):
            out.append(judged(what, value, best, limit, op))
    return out


def judged(what: str, value: float, best: float, limit: float, op: str) -> dict[str, Any]:
    ok = value < limit if op == "<" else value >= limit if op == ">=" else value <= limit
    return {"target": what, "value": value, "best": best, "limit": limit, "op": op, "pass": ok}


def report(res: dict[str, Any]) -> str:
    m, p = res["machine"], res["plan"]
    lines = [
        f"initgraph comparison suite ({p['name']}) — {m['python']}, {m['cpus']} CPUs, "
        f"start method {m['start_method']!r} for every process pool (initgraph's default here)",
        f"initgraph at {m['commit']} (sources {m['sources']}); multiprocess {m['multiprocess']}; "
        f"{p['repeats']} repeats, executors interleaved",
        *(
            [f"WARNING: initgraph's sources changed during the run (now {m['sources_after']})"]
            if m["sources_after"] != m["sources"]
            else []
        ),
        *([f"sections: {', '.join(res['sections'])} (--only)"] if res.get("only") else []),
        f"load average before: {m['loadavg']}, after: {res['loadavg_after']}; {share(res)}",
    ]
    if "calibration" in res:
        cal = res["calibration"]
        lines.append(
            f"CPU calibration: {cal['iterations']:,} iterations of _tasks.burn for "
            f"{cal['target_ms']:g} ms; 5 runs in-process: fastest {fmt(cal['best_ms'])} ms (the "
            f"ideals use it), median {fmt(cal['measured_ms']['median'])}, slowest "
            f"{fmt(cal['measured_ms']['max'])}"
        )
    if "cpu" in res:
        per_task = res["cpu"]["per_task_ms"]
        lines.append(
            f"   info: the same loop in the sequential CPU boot, fastest per task: "
            f"{fmt(per_task['sequential'])} ms (CPU boot ideal from it: "
            f"{fmt(res['cpu']['ideal_from_sequential_ms'])} ms; initgraph warm would be "
            f"{ratio(res['cpu']['warm'][IG]['median'], res['cpu']['ideal_from_sequential_ms'])} x)"
        )
    lines.append("")
    rows = boot_rows(res)
    if rows:
        head = [
            "workload (ms)",
            *("executor", "median", "min", "max", "ideal", "x ideal", "/ initgraph", "parent CPU"),
        ]
        lines += table(head, rows)
    busy = ", ".join(
        f"{k} {res[k]['cpu_share']['others_pct']:.0f}%"
        for k in (*BASE_SECTIONS, *DATA_SECTIONS)
        if k in res and res[k].get("cpu_share")
    )
    lines.append(f"CPU taken by other processes during each workload: {busy}")
    notes = []
    if "dag" in res:
        dag = res["dag"]
        notes.append(
            f"3: ideal = max(critical path {fmt(dag['critical_path_ms'])} ms, total work "
            f"{fmt(dag['total_work_ms'])} ms / {dag['workers']} workers); {dag['cpu_nodes']} "
            f"nodes burn CPU ({fmt(dag['cpu_work_ms'])} ms), the rest sleep; seed {dag['seed']}."
        )
    if "example" in res:
        ex = res["example"]
        bw = ex["boot_wall"]
        notes.append(
            f"5: ideal = max(critical path {fmt(ex['critical_path_ms'])} ms, work "
            f"{fmt(ex['total_work_ms'])} ms / {ex['cores']} cores), per-plugin work from the "
            f"workers=1 boots; boot.wall median: initgraph {fmt(bw['initgraph']['median'])} ms, "
            f"workers=1 {fmt(bw['workers=1']['median'])} ms."
        )
    if notes:
        lines += ["", *notes]
    if "scaling" in res:
        lines.append("")
        head = ["workload", "executor", "median", "min", "max", "/ initgraph"]
        lines += table(head, scaling_rows(res))
        sizes = list(res["scaling"]["sizes"])
        small = res["scaling"]["sizes"][sizes[0]]
        large = res["scaling"]["sizes"][sizes[-1]]
        for name in SCALED:
            r = ratio(large[name]["median"], small[name]["median"])
            lines.append(
                f"   {name}: per-initcall cost at {int(sizes[-1]):,} / at {int(sizes[0]):,} = {r}"
            )
    if "import" in res:
        lines += import_lines(res["import"])
    if "looplag" in res:
        lines += looplag_lines(res["looplag"])
    if any(k in res for k in DATA_SECTIONS):
        import _data

        lines += _data.report(res)
    lines += ["", "targets (judged on the medians of this run; best repeats for information):"]
    for t in res["targets"]:
        verdict = "PASS" if t["pass"] else "MISS"
        margin = t["value"] - t["limit"] if t["op"] == ">=" else t["limit"] - t["value"]
        pct = abs(margin) / t["limit"] * 100
        side = (
            ("above" if margin >= 0 else "below")
            if t["op"] == ">="
            else ("under" if margin >= 0 else "over")
        )
        value, best = (f"{t[k]:.3f}" if t["limit"] < 10 else fmt(t[k]) for k in ("value", "best"))
        lines.append(
            f"  {verdict}  {t['target']}: {value} (limit {fmt(t['limit'])}; "
            f"{pct:.1f}% {side}; best repeats: {best})"
        )
    lines.append(f"\nwall time of the whole run: {res['elapsed_s']:.1f} s")
    return "\n".join(lines)


LOOP_LAG_MS = 5.0  # an event loop that boots the example must keep serving: no stall over 5 ms


def bench_looplag(plan: Plan) -> dict[str, Any]:
    """The example booted by ``initgraph.lifespan`` under a 1 ms ticker (``loop_lag.py``).

    Fresh processes, each a first boot (it imports the scheduler and the plugins) then warm
    ones; each tick's lag less plugin hooks on the loop and the loop's wait for a CPU is
    initgraph's own.
    """
    import loop_lag

    runs = max(1, min(plan.repeats, 5))
    return dict(loop_lag.summary(loop_lag.fresh(str(ROOT / "init.toml"), 2, runs)))


def looplag_lines(lag: dict[str, Any]) -> list[str]:
    import loop_lag

    return ["", "10. " + loop_lag.table(lag)[0], *loop_lag.table(lag)[1 : 1 + len(loop_lag.ROWS)]]


def import_lines(imp: dict[str, Any]) -> list[str]:
    lines = ["", "6. import in a fresh interpreter (ms)"]
    rows = []
    for variant in ("cached", "no_bytecode_cache"):
        if variant not in imp:
            continue
        for key in IMPORTS:
            s = imp[variant][key]
            label = "bytecode cached" if variant == "cached" else "no bytecode cache (env as is)"
            rows.append([key, label, fmt(s["median"]), fmt(s["min"]), fmt(s["max"])])
    lines += table(["", "", "median", "min", "max"], rows)
    for key in (IG_IMPORT, IG_FIRST_USE):
        prof, loaded = imp["profile"][key], imp["loaded"][key]
        top = ", ".join(f"{k} {fmt(v)}" for k, v in list(prof["by_package_ms"].items())[:8])
        lines += [
            f"   -X importtime -c {key!r} (fastest of {imp['profile_runs']}): "
            f"{fmt(prof['total_ms'])} ms, {prof['modules']} modules; loaded: "
            f"{', '.join(loaded) or '-'}; not loaded: "
            f"{', '.join(x for x in HEAVY if x not in loaded) or '-'}",
            f"      own import time by package (ms): {top}",
        ]
    return lines


def share(res: dict[str, Any]) -> str:
    c = res.get("cpu_share") or {}
    if not c:
        return "CPU share of other processes: n/a"
    return (
        f"machine CPU during the run: this suite {c['own_pct']:.0f}%, other processes "
        f"{c['others_pct']:.0f}%, steal {c['steal_pct']:.0f}%"
    )


# -- main -----------------------------------------------------------------------------------------
def start_method() -> str:
    """initgraph's default start method, found by starting a Scheduler while single-threaded."""
    if threading.active_count() != 1:
        msg = "the suite must start with a single thread, as an application would"
        raise RuntimeError(msg)
    with initgraph.Scheduler(2) as sched:
        sched.result(sched.schedule(_tasks.noop))
        return sched.start_method


BASE_SECTIONS = ("sleep", "cpu", "dag", "scaling", "example", "import", "looplag")
DATA_SECTIONS = ("transfer", "databoot", "realboot")
SECTIONS = (*BASE_SECTIONS, *DATA_SECTIONS)


def data_step(key: str, plan_name: str, method: str) -> dict[str, Any]:
    """Sections 7-9, imported only when run: numpy and scikit-learn load here, after 1-6."""
    import _data

    dp = {"full": _data.DATA_FULL, "quick": _data.DATA_QUICK}.get(plan_name, _data.DATA_SMOKE)
    res: dict[str, Any] = {"transfer": _data.bench_transfer, "databoot": _data.bench_databoot}.get(
        key, _data.bench_realboot
    )(dp, method)
    res["data_plan"] = asdict(dp)
    return res


def run(plan: Plan, only: Sequence[str] = ()) -> dict[str, Any]:
    started = time.perf_counter()
    before = cpu_seconds()
    loadavg = machine_loadavg()
    method = start_method()
    res: dict[str, Any] = {
        "plan": asdict(plan),
        "machine": {
            "python": f"Python {platform.python_version()}",
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "start_method": method,
            "multiprocess": getattr(multiprocess, "__version__", "?"),
            "commit": head_commit(),
            "sources": source_digest(),
            "loadavg": loadavg,
        },
    }
    sections = [k for k in SECTIONS if not only or k in only]
    res["sections"], res["only"] = sections, bool(only)
    cal: dict[str, Any] = {"iterations": 0, "iterations_per_s": 1.0, "best_ms": 0.0}
    if "cpu" in sections or "dag" in sections:
        log("calibrating the CPU work")
        cal = calibrate(plan.cpu_s)
        res["calibration"] = cal
    rate = cal["iterations_per_s"]
    per_task = cal["best_ms"] / 1e3

    steps: list[tuple[str, str, Callable[[], dict[str, Any]]]] = [
        (
            "sleep",
            "sleep boot, cold and warm",
            lambda: bench_flat(
                plan.sleep_tasks,
                plan.sleep_s,
                0,
                plan.sleep_workers,
                plan.sleep_tasks * plan.sleep_s / plan.sleep_workers,
                method,
                plan.repeats,
            ),
        ),
        (
            "cpu",
            "CPU boot, cold and warm",
            lambda: bench_flat(
                plan.cpu_tasks,
                0.0,
                cal["iterations"],
                plan.cpu_workers,
                plan.cpu_tasks * per_task / plan.cpu_workers,
                method,
                plan.repeats,
            ),
        ),
        ("dag", "dependency boot", lambda: bench_dag(plan, rate, method)),
        ("scaling", "scaling", lambda: bench_scaling(plan, method)),
        ("example", "example application", lambda: bench_example(plan)),
        ("import", "import initgraph", lambda: bench_import(plan)),
        ("looplag", "event-loop lag during the example boot", lambda: bench_looplag(plan)),
        ("transfer", "transfer of large results", lambda: data_step("transfer", plan.name, method)),
        ("databoot", "data boot", lambda: data_step("databoot", plan.name, method)),
        ("realboot", "realistic data boot", lambda: data_step("realboot", plan.name, method)),
    ]
    steps = [s for s in steps if s[0] in sections]
    for k, (key, what, step) in enumerate(steps, start=1):
        log(f"{k}/{len(steps)} {what}")
        t0, cpu0 = time.perf_counter(), cpu_seconds()
        res[key] = step()
        res[key]["cpu_share"] = others_share(cpu0, time.perf_counter() - t0)
        if key == "cpu":  # the same loop, 16 times per repeat in this process: information
            seq_ms = res["cpu"]["cold"][SEQ]["min"] / plan.cpu_tasks
            res["cpu"]["per_task_ms"] = {"calibration": cal["best_ms"], "sequential": seq_ms}
            res["cpu"]["ideal_from_sequential_ms"] = seq_ms * plan.cpu_tasks / plan.cpu_workers
    res["machine"]["sources_after"] = source_digest()
    res["targets"] = targets(res)
    res["loadavg_after"] = machine_loadavg()
    res["cpu_share"] = others_share(before, time.perf_counter() - started)
    res["elapsed_s"] = time.perf_counter() - started
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="initgraph against sequential, threads, ProcessPoolExecutor+graphlib and "
        "multiprocess.Pool; prints a table and PASS/MISS per target, exits 0 either way.",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="few repeats, small sizes (seconds)")
    size.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat (the tests)")
    parser.add_argument("--json", metavar="FILE", type=Path, help="write every number to FILE")
    parser.add_argument(
        "--only",
        metavar="SECTION",
        action="append",
        default=[],
        help=f"run only these sections (repeat, or comma-separate): {', '.join(SECTIONS)}",
    )
    args = parser.parse_args(argv)
    only = [x.strip() for arg in args.only for x in arg.split(",") if x.strip()]
    unknown = [x for x in only if x not in SECTIONS]
    if unknown:
        parser.error(f"unknown section {unknown[0]!r}; choose from {', '.join(SECTIONS)}")
    plan = SMOKE if args.smoke else QUICK if args.quick else FULL
    res = run(plan, only)
    print(report(res), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")
        print(f"numbers written to {args.json}")
    return 0
