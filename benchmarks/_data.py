"""Sections 7-9 of the comparison suite: data at memory speed.

7. transfer: ``Scheduler.result()`` of a float64 numpy array (1, 50 and 200 MiB at full size),
   and the hand-over to one dependent in a boot (producer plugin -> a plugin requiring it that
   reads one element), against making it locally plus one copy, ``ProcessPoolExecutor`` (result
   to the parent; parent -> a second task) and Ray when it is importable. The same at the
   largest size for ``bytes`` and for a dict of small objects.
8. data boot: one producer of a 200 MiB array, three pool plugins and one ``where = "main"``
   plugin reading it, 2 workers; initgraph against sequential, threads, PPE + graphlib,
   ``multiprocess.Pool`` + graphlib and Ray.
9. realistic boot: synthetic corpus -> hashed term counts -> TF-IDF -> TruncatedSVD embeddings
   -> k-means, a classifier, an inverted index, MinHash near-duplicates, a regex scan, SQLite
   migrations, commit-only checks; the same executors, plus the peak PSS of the process tree.

The work is in ``_datatasks`` (``run_step``), which every executor calls the same way; initgraph
runs it from plugin modules written to a temporary directory and booted with
``initgraph.boot(config)``. Native thread pools are limited to one thread per process for every
executor (``_datatasks.set_threads``); one extra initgraph run of the realistic boot without the
limit shows its effect.
"""

from __future__ import annotations

import concurrent.futures
import functools
import graphlib
import importlib.util
import multiprocessing
import pickle
import queue
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import multiprocess
import psutil

import initgraph

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _datatasks  # noqa: E402  (pools pickle its functions by reference)
from core import fmt, ratio, rotated, settle, stats  # noqa: E402

SEQ, TPE, PPE, POOL, IG, RAY = (
    "sequential",
    "ThreadPoolExecutor",
    "PPE+graphlib",
    "multiprocess.Pool",
    "initgraph",
    "ray",
)
LOCAL = "local + copy"
BOOT_EXECUTORS = (SEQ, TPE, PPE, POOL, IG, RAY)
XFER_EXECUTORS = (LOCAL, PPE, IG, RAY)
WORKERS = 2
MIB = 1 << 20
THREADS_NOTE = (
    "native thread pools (OpenBLAS, OpenMP) limited to 1 thread in every process that runs a "
    "step, for every executor (threadpoolctl, _datatasks.set_threads)"
)

# Targets (issue "Data at memory speed"), on the medians of one run.
TO_PARENT_MAX = 1.5  # x local + copy, largest array
TO_DEPENDENT_MS = 5.0
BYTES_MAX = 3.0  # x local + copy
DATABOOT_VS_THREADS = 1.3
DATABOOT_VS_PPE = 5.0
REAL_SPEEDUP = 1.6
PSS_MAX = 1.5


@dataclass(frozen=True)
class DataPlan:
    """How much to move and compute."""

    name: str
    repeats: int
    array_mib: tuple[float, ...]
    dict_items: int
    boot_mib: float
    docs: int
    vocab: int
    words: int
    components: int
    clusters: int


DATA_FULL = DataPlan("full", 3, (1, 50, 200), 1_000_000, 200, 36_000, 20_000, 80, 64, 50)
DATA_QUICK = DataPlan("quick", 2, (1, 8, 32), 100_000, 32, 8_000, 8_000, 60, 32, 20)
DATA_SMOKE = DataPlan("smoke", 1, (0.0625, 0.25, 1), 2_000, 1, 600, 2_000, 30, 8, 4)


# -- helpers ----------------------------------------------------------------------------------


def ray_available() -> bool:
    return importlib.util.find_spec("ray") is not None


RAY_ABSENT = "Ray is not installed (optional; the suite never installs it): rows skipped"


@contextmanager
def ray_session() -> Iterator[Any]:
    import ray  # optional

    ray.init(
        num_cpus=WORKERS,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(HERE), "OMP_NUM_THREADS": "1"}},
    )
    try:
        yield ray
    finally:
        ray.shutdown()


def mib(nbytes: float) -> str:
    return f"{nbytes / MIB:g} MiB"


# -- boots: nodes, plugin modules, runners -------------------------------------------------------
@dataclass(frozen=True)
class Node:
    """A plugin: ``_datatasks.run_step(step, config, results of requires)``.

    ``where``: "pool" (a worker), "main" (initgraph: ``where = "main"``; others: in the driver)
    or "commit" (initgraph: a commit-only plugin; others: in the driver).
    """

    name: str
    step: str
    requires: tuple[str, ...] = ()
    where: str = "pool"
    domain: str = "default"
    config: dict[str, Any] = field(default_factory=dict)


_INIT = '''\
"""initgraph benchmark plugin {name!r}: step {step!r}."""
import initgraph
import _datatasks


@initgraph.hookimpl
def initgraph_init(ctx):
    return _datatasks.run_step({step!r}, ctx.config, ctx.results)
'''
_COMMIT = '''\
"""initgraph benchmark plugin {name!r}: commit-only step {step!r}."""
import initgraph
import _datatasks


@initgraph.hookimpl
def initgraph_commit(ctx):
    _datatasks.run_step({step!r}, ctx.config, ctx.results)
'''


def write_plugins(folder: Path, prefix: str, nodes: Sequence[Node]) -> dict[str, str]:
    """One module per plugin in ``folder``; {plugin: module name}."""
    modules = {}
    for n in nodes:
        mod = f"igbench_{prefix}_{n.name}"
        src = (_COMMIT if n.where == "commit" else _INIT).format(name=n.name, step=n.step)
        (folder / f"{mod}.py").write_text(src)
        modules[n.name] = mod
    return modules


def boot_config(
    nodes: Sequence[Node], modules: dict[str, str], folder: Path, method: str
) -> dict[str, Any]:
    domains = sorted({n.domain for n in nodes} - {"default"})
    return {
        "initgraph": {"workers": WORKERS, "start_method": method, "paths": [str(folder)]},
        "domains": {d: {} for d in domains},
        "plugins": {
            n.name: {
                "module": modules[n.name],
                "requires": list(n.requires),
                "domain": n.domain,
                "where": "main" if n.where == "main" else "pool",
                "config": n.config,
            }
            for n in nodes
        },
    }


def run_sequential(nodes: Sequence[Node], timed: dict[str, float] | None = None) -> dict[str, Any]:
    """Every step in this process, in plan order (the list is in plan order)."""
    results: dict[str, Any] = {}
    for n in nodes:
        t0 = time.perf_counter()
        results[n.name] = _datatasks.run_step(n.step, n.config, {r: results[r] for r in n.requires})
        if timed is not None:
            timed[n.name] = time.perf_counter() - t0
    return results


class _Futures:
    def __init__(self, ex: concurrent.futures.Executor) -> None:
        self.ex = ex
        self.pending: dict[concurrent.futures.Future[Any], str] = {}

    def submit(self, n: Node, deps: dict[str, Any]) -> None:
        self.pending[self.ex.submit(_datatasks.run_step, n.step, n.config, deps)] = n.name

    def wait_one(self) -> list[tuple[str, Any]]:
        done, _ = concurrent.futures.wait(
            self.pending, return_when=concurrent.futures.FIRST_COMPLETED
        )
        return [(self.pending.pop(f), f.result()) for f in done]


class _Pool:
    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.outcomes: queue.SimpleQueue[tuple[str, Any, BaseException | None]] = (
            queue.SimpleQueue()
        )

    def submit(self, n: Node, deps: dict[str, Any]) -> None:
        self.pool.apply_async(
            _datatasks.run_step,
            (n.step, n.config, deps),
            callback=functools.partial(_ok, self.outcomes, n.name),
            error_callback=functools.partial(_err, self.outcomes, n.name),
        )

    def wait_one(self) -> list[tuple[str, Any]]:
        name, value, exc = self.outcomes.get()
        if exc is not None:
            raise exc
        return [(name, value)]


def _ok(q: queue.SimpleQueue[tuple[str, Any, BaseException | None]], name: str, v: Any) -> None:
    q.put((name, v, None))


def _err(
    q: queue.SimpleQueue[tuple[str, Any, BaseException | None]], name: str, e: BaseException
) -> None:
    q.put((name, None, e))


class _Ray:
    """Results stay in Ray's object store as refs; a task gets its requirements as refs."""

    def __init__(self, ray: Any) -> None:
        self.ray = ray
        self.remote = ray.remote(num_cpus=1)(_datatasks.ray_step)
        self.pending: dict[Any, str] = {}

    def submit(self, n: Node, deps: dict[str, Any]) -> None:
        ref = self.remote.remote(n.step, n.config, tuple(deps), *deps.values())
        self.pending[ref] = n.name

    def wait_one(self) -> list[tuple[str, Any]]:
        done, _ = self.ray.wait(list(self.pending), num_returns=1)
        return [(self.pending.pop(r), r) for r in done]

    def value(self, v: Any) -> Any:
        return self.ray.get(v) if isinstance(v, self.ray.ObjectRef) else v


def run_graph(runner: Any, nodes: Sequence[Node]) -> dict[str, Any]:
    """graphlib drives ``runner``: submit every ready pool node, run "main"/"commit" nodes in
    the driver when ready, mark each finished node done, repeat."""
    by = {n.name: n for n in nodes}
    ts: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter(
        {n.name: n.requires for n in nodes}
    )
    ts.prepare()
    results: dict[str, Any] = {}
    value = getattr(runner, "value", None)
    while ts.is_active():
        inline = []
        for k in ts.get_ready():
            n = by[k]
            deps = {r: results[r] for r in n.requires}
            if n.where == "pool":
                runner.submit(n, deps)
            else:
                inline.append((n, deps))
        for n, deps in inline:
            if value is not None:
                deps = {r: value(v) for r, v in deps.items()}
            results[n.name] = _datatasks.run_step(n.step, n.config, deps)
            ts.done(n.name)
        if inline:
            continue
        for name, v in runner.wait_one():
            results[name] = v
            ts.done(name)
    return results


def run_boot(
    name: str, nodes: Sequence[Node], config: dict[str, Any], method: str, ray: Any = None
) -> dict[str, Any]:
    """One whole boot on executor ``name``, cold (the pool is started and closed inside)."""
    if name == SEQ:
        return run_sequential(nodes)
    if name == IG:
        return dict(initgraph.boot(config).results)
    if name == RAY:
        return run_graph(_Ray(ray), nodes)
    if name == TPE:
        with concurrent.futures.ThreadPoolExecutor(WORKERS) as tpe:
            return run_graph(_Futures(tpe), nodes)
    if name == PPE:
        ctx = multiprocessing.get_context(method)
        with concurrent.futures.ProcessPoolExecutor(WORKERS, mp_context=ctx) as ppe:
            return run_graph(_Futures(ppe), nodes)
    pool = multiprocess.get_context(method).Pool(WORKERS)
    try:
        return run_graph(_Pool(pool), nodes)
    finally:
        pool.close()
        pool.join()


# -- peak PSS of the process tree -----------------------------------------------------------------
class PssSampler:
    """Sums ``memory_full_info().pss`` over this process and all its descendants every ~20 ms
    in a thread; ``peak`` and ``start`` in bytes."""

    def __init__(self, every: float = 0.02) -> None:
        self.every = every
        self.me = psutil.Process()
        self.start = self.sample()
        self.peak = self.start
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pss-sampler", daemon=True)

    def sample(self) -> int:
        total = 0
        for p in [self.me, *self.me.children(recursive=True)]:
            with suppress(psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                total += int(p.memory_full_info().pss)
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, self.sample())
            self.samples += 1

    def __enter__(self) -> PssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# -- 7. transfer ----------------------------------------------------------------------------------
def transfer_nodes(kind: str, size: int) -> list[Node]:
    return [
        Node("producer", "produce_step", config={"kind": kind, "size": size}),
        Node("reader", "read_one", ("producer",)),
    ]


def bench_transfer(dp: DataPlan, method: str) -> dict[str, Any]:
    """Per case: to the parent (ms, all executors) and parent -> one dependent (ms)."""
    cases = [("array", int(m * MIB)) for m in dp.array_mib]
    big = int(dp.array_mib[-1] * MIB)
    cases += [("bytes", big), ("dict", dp.dict_items)]
    has_ray = ray_available()
    names = [n for n in XFER_EXECUTORS if n != RAY or has_ray]
    out: dict[str, Any] = {"ray": None if has_ray else RAY_ABSENT, "cases": []}
    folder = Path(tempfile.mkdtemp(prefix="initgraph-bench-xfer-"))
    ctx = multiprocessing.get_context(method)
    with contextmanager_stack(has_ray) as ray:
        sched = initgraph.Scheduler(WORKERS, start_method=method)
        ppe = concurrent.futures.ProcessPoolExecutor(WORKERS, mp_context=ctx)
        try:
            sched.result(sched.schedule(_datatasks.produce_task, ("array", 8)))
            ppe.submit(_datatasks.produce_task, ("array", 8)).result()
            for kind, size in cases:
                nodes = transfer_nodes(kind, size)
                mods = write_plugins(folder, f"xfer_{kind}_{size}", nodes)
                config = boot_config(nodes, mods, folder, method)
                parent: dict[str, list[float]] = {n: [] for n in names}
                dep: dict[str, list[float]] = {n: [] for n in names if n != LOCAL}
                for rep in range(dp.repeats):
                    for name in rotated(names, rep):
                        settle(0.05)
                        p, d = transfer_once(name, kind, size, sched, ppe, ray, config)
                        parent[name].append(p * 1e3)
                        if d is not None:
                            dep[name].append(d * 1e3)
                out["cases"].append(
                    {
                        "kind": kind,
                        "size": size,
                        "label": f"{kind} {mib(size)}" if kind != "dict" else f"dict {size:,}",
                        "to_parent": {k: stats(v) for k, v in parent.items()},
                        "to_dependent": {k: stats(v) for k, v in dep.items()},
                    }
                )
        finally:
            ppe.shutdown(wait=True)
            sched.close()
            shutil.rmtree(folder, ignore_errors=True)
    return out


@contextmanager
def contextmanager_stack(with_ray: bool) -> Iterator[Any]:
    if not with_ray:
        yield None
        return
    with ray_session() as ray:
        yield ray


def transfer_once(
    name: str,
    kind: str,
    size: int,
    sched: initgraph.Scheduler,
    ppe: concurrent.futures.ProcessPoolExecutor,
    ray: Any,
    config: dict[str, Any],
) -> tuple[float, float | None]:
    """(seconds to have the value in the parent, seconds parent -> a dependent has read it)."""
    spec = (kind, size)
    if name == LOCAL:
        t0 = time.perf_counter()
        v = _datatasks.copy_of(_datatasks.produce(kind, size))
        t1 = time.perf_counter()
        _datatasks.touch(v)
        return t1 - t0, None
    if name == IG:
        t0 = time.perf_counter()
        v = sched.result(sched.schedule(_datatasks.produce_task, spec))
        t1 = time.perf_counter()
        _datatasks.touch(v)
        del v
        # the dependent: a boot, producer plugin -> reader plugin; from the parent holding the
        # producer's result (the reader is ready: its requirement's init ended) to the end of
        # the reader's init, which reads one element and returns
        b = initgraph.boot(config)
        reader = b.timings["reader"]
        assert reader.ready is not None
        assert reader.ended is not None
        return t1 - t0, reader.ended - reader.ready
    if name == PPE:
        t0 = time.perf_counter()
        v = ppe.submit(_datatasks.produce_task, spec).result()
        t1 = time.perf_counter()
        handed = time.monotonic()
        read_at, _ = ppe.submit(_datatasks.read_after, v).result()
        return t1 - t0, read_at - handed
    t0 = time.perf_counter()
    ref = ray.remote(_datatasks.produce_task).remote(spec)
    v = ray.get(ref)
    t1 = time.perf_counter()
    _datatasks.touch(v)
    handed = time.monotonic()
    read_at, _ = ray.get(ray.remote(_datatasks.read_after).remote(ref))
    return t1 - t0, read_at - handed


# -- 8. the data boot ---------------------------------------------------------------------------
def databoot_nodes(nbytes: int) -> list[Node]:
    return [
        Node("producer", "make_array", config={"nbytes": nbytes}),
        Node("reader_a", "read_pages", ("producer",)),
        Node("reader_b", "read_pages", ("producer",)),
        Node("reader_c", "read_pages", ("producer",)),
        Node("reader_main", "read_pages", ("producer",), where="main"),
    ]


def bench_boots(
    nodes: Sequence[Node], prefix: str, method: str, repeats: int
) -> tuple[dict[str, list[float]], dict[str, Any], Path]:
    """Each executor runs the whole boot ``repeats`` times, taking turns; walls in ms."""
    has_ray = ray_available()
    names = [n for n in BOOT_EXECUTORS if n != RAY or has_ray]
    folder = Path(tempfile.mkdtemp(prefix=f"initgraph-bench-{prefix}-"))
    mods = write_plugins(folder, prefix, nodes)
    config = boot_config(nodes, mods, folder, method)
    walls: dict[str, list[float]] = {n: [] for n in names}
    checks: dict[str, Any] = {}
    with contextmanager_stack(has_ray) as ray:
        for rep in range(repeats):
            for name in rotated(names, rep):
                settle(0.05)
                t0 = time.perf_counter()
                res = run_boot(name, nodes, config, method, ray)
                walls[name].append((time.perf_counter() - t0) * 1e3)
                missing = [n.name for n in nodes if n.name not in res]
                if missing:
                    msg = f"{name}: no result for {missing}"
                    raise RuntimeError(msg)
                if rep == 0 and name != RAY:
                    checks[name] = summarize(res)
                del res
    return walls, {"config": config, "checks": checks}, folder


def summarize(res: dict[str, Any]) -> dict[str, Any]:
    """Small, comparable facts of a boot's results (every executor must agree)."""
    out: dict[str, Any] = {}
    for k, v in res.items():
        if isinstance(v, float):
            out[k] = round(v, 6)
        elif isinstance(v, dict) and "accuracy" in v:
            out[k] = round(float(v["accuracy"]), 6)
        elif isinstance(v, dict) and "version" in v:
            out[k] = v["version"]
    return out


def bench_databoot(dp: DataPlan, method: str) -> dict[str, Any]:
    nbytes = int(dp.boot_mib * MIB)
    nodes = databoot_nodes(nbytes)
    walls, info, folder = bench_boots(nodes, "databoot", method, dp.repeats)
    shutil.rmtree(folder, ignore_errors=True)
    agree = len({tuple(sorted(c.items())) for c in info["checks"].values()}) == 1
    return {
        "nbytes": nbytes,
        "plugins": len(nodes),
        "workers": WORKERS,
        "ray": None if ray_available() else RAY_ABSENT,
        "wall": {k: stats(v) for k, v in walls.items()},
        "results_agree": agree,
    }


# -- 9. the realistic boot ------------------------------------------------------------------------
def realboot_nodes(dp: DataPlan, folder: Path, threads: int = 1) -> list[Node]:
    """The graph, in plan (file) order. ``threads``: the native thread limit (0: none)."""
    t = {"threads": threads}
    base = {
        "docs": dp.docs,
        "vocab": dp.vocab,
        "topics": 20,
        "words": dp.words,
        "components": dp.components,
        "clusters": dp.clusters,
    }
    return [
        Node("settings", "settings", config=base | t),
        Node(
            "sqlite",
            "sqlite_migrations",
            ("settings",),
            config={"rows": dp.docs, "dir": str(folder)} | t,
        ),
        Node("corpus_0", "corpus", ("settings",), config={"shard": 0, "shards": 2} | t),
        Node("corpus_1", "corpus", ("settings",), config={"shard": 1, "shards": 2} | t),
        Node("vectorize_0", "vectorize", ("corpus_0",), domain="ml", config=t),
        Node("vectorize_1", "vectorize", ("corpus_1",), domain="ml", config=t),
        Node("tfidf", "tfidf", ("vectorize_0", "vectorize_1"), domain="ml", config=t),
        Node("svd", "svd", ("tfidf",), domain="ml", config={"components": dp.components} | t),
        Node("kmeans", "kmeans", ("svd",), domain="ml", config={"clusters": dp.clusters} | t),
        Node(
            "classifier",
            "classifier",
            ("svd", "corpus_0", "corpus_1"),
            domain="ml",
            config={"iterations": 100} | t,
        ),
        Node("dedup_0", "near_duplicates", ("corpus_0",), config={"hashes": 16} | t),
        Node("dedup_1", "near_duplicates", ("corpus_1",), config={"hashes": 16} | t),
        Node("regex_scan", "regex_scan", ("corpus_0", "corpus_1"), config=t),
        Node("inverted_index", "inverted_index", ("tfidf",), domain="search", config=t),
        Node("config_check", "config_check", ("settings", "regex_scan"), where="commit", config=t),
        Node("ann_index", "ann_index", ("svd", "kmeans"), where="main", domain="ml", config=t),
        Node(
            "search_ready",
            "search_ready",
            ("ann_index", "inverted_index", "classifier"),
            where="commit",
            domain="search",
            config=t,
        ),
    ]


def critical_path(nodes: Sequence[Node], work: dict[str, float]) -> tuple[float, list[str]]:
    finish: dict[str, float] = {}
    via: dict[str, str | None] = {}
    for n in nodes:
        before = max(n.requires, key=lambda r: finish[r], default=None)
        finish[n.name] = work[n.name] + (finish[before] if before else 0.0)
        via[n.name] = before
    end: str | None = max(finish, key=lambda k: finish[k])
    path = []
    while end is not None:
        path.append(end)
        end = via[end]
    return max(finish.values()), path[::-1]


def pickled_mib(value: Any) -> float:
    return len(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)) / MIB


def bench_realboot(dp: DataPlan, method: str) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="initgraph-bench-realboot-db-"))
    try:
        nodes = realboot_nodes(dp, folder)
        # untimed: each step's own time and result size, sequentially (also warms every import)
        work: dict[str, float] = {}
        res = run_sequential(nodes, work)
        sizes = {k: pickled_mib(v) for k, v in res.items()}
        del res
        walls, info, plugins = bench_boots(nodes, "realboot", method, dp.repeats)
        # peak PSS of the process tree, one untimed-by-the-table run each
        pss: dict[str, dict[str, float]] = {}
        for name in (SEQ, PPE, IG):
            settle(0.05)
            with PssSampler() as s:
                t0 = time.perf_counter()
                run_boot(name, nodes, info["config"], method)
                wall = time.perf_counter() - t0
            pss[name] = {
                "peak_mib": s.peak / MIB,
                "before_mib": s.start / MIB,
                "samples": s.samples,
                "wall_ms": wall * 1e3,
            }
        # initgraph without the native thread limit: its own default today (information)
        free = realboot_nodes(dp, folder, threads=0)
        mods = write_plugins(plugins, "realfree", free)
        unlimited = []
        for _ in range(max(1, dp.repeats - 1)):
            settle(0.05)
            t0 = time.perf_counter()
            initgraph.boot(boot_config(free, mods, plugins, method))
            unlimited.append((time.perf_counter() - t0) * 1e3)
        shutil.rmtree(plugins, ignore_errors=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    cp, path = critical_path(nodes, work)
    total = sum(work.values())
    agree = len({tuple(sorted(c.items())) for c in info["checks"].values()}) == 1
    return {
        "plugins": len(nodes),
        "workers": WORKERS,
        "graph": [
            {
                "name": n.name,
                "requires": list(n.requires),
                "where": n.where,
                "domain": n.domain,
                "work_ms": work[n.name] * 1e3,
                "result_mib": sizes[n.name],
            }
            for n in nodes
        ],
        "total_work_ms": total * 1e3,
        "critical_path_ms": cp * 1e3,
        "critical_path": path,
        "ideal_ms": max(cp, total / WORKERS) * 1e3,
        "ray": None if ray_available() else RAY_ABSENT,
        "wall": {k: stats(v) for k, v in walls.items()},
        "initgraph_threads_unlimited": stats(unlimited),
        "pss": pss,
        "results_agree": agree,
        "checks": info["checks"],
    }


# -- report and targets ---------------------------------------------------------------------------
def _table(head: Sequence[str], lines: Sequence[Sequence[str]]) -> list[str]:
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


def report(res: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if "transfer" in res:
        tr = res["transfer"]
        lines += [
            "",
            "7. transfer: a result to the parent, and parent -> one dependent (ms; "
            f"{tr['data_plan']['repeats']} repeats, executors interleaved)",
        ]
        rows = []
        for c in tr["cases"]:
            base = c["to_parent"][LOCAL]["median"]
            for k, (name, s) in enumerate(c["to_parent"].items()):
                d = c["to_dependent"].get(name)
                rows.append(
                    [
                        c["label"] if k == 0 else "",
                        name,
                        fmt(s["median"]),
                        fmt(s["min"]),
                        fmt(s["max"]),
                        ratio(s["median"], base),
                        fmt(d["median"]) if d else "-",
                        fmt(d["max"]) if d else "-",
                    ]
                )
        head = ["case", "executor", "parent med", "min", "max", "/ local", "dep med", "dep max"]
        lines += _table(head, rows)
        lines += [
            "   to the parent: initgraph Scheduler.result(schedule(produce)), PPE "
            "submit(produce).result(), local: produce + one copy (array.copy(), bytearray(b), "
            "dict(d)).",
            "   dependent: from the moment the parent holds the result (initgraph: the producer "
            "plugin's commit in a boot producer -> reader; PPE: after result()) to the reader "
            "having read one element.",
        ]
        if tr["ray"]:
            lines.append(f"   {tr['ray']}")
    if "databoot" in res:
        db = res["databoot"]
        lines += [
            "",
            f"8. data boot: 1 producer of a {mib(db['nbytes'])} float64 array -> 3 pool plugins "
            f"+ 1 where=main plugin reading every page, {db['workers']} workers, cold (ms; "
            f"{db['data_plan']['repeats']} repeats)",
        ]
        lines += _boot_table(db["wall"])
        lines.append(f"   every executor's results agree: {db['results_agree']}")
        if db["ray"]:
            lines.append(f"   {db['ray']}")
    if "realboot" in res:
        rb = res["realboot"]
        lines += [
            "",
            f"9. realistic boot: {rb['plugins']} plugins, {rb['workers']} workers, cold (ms; "
            f"{rb['data_plan']['repeats']} repeats); "
            f"work {fmt(rb['total_work_ms'])} ms, critical path {fmt(rb['critical_path_ms'])} "
            f"ms ({' -> '.join(rb['critical_path'])}), ideal {fmt(rb['ideal_ms'])} ms",
        ]
        lines += _boot_table(rb["wall"], rb["ideal_ms"])
        un = rb["initgraph_threads_unlimited"]
        ig = rb["wall"][IG]["median"]
        lines.append(
            "   initgraph with every step setting its native pools to one thread per CPU "
            "(oversubscribed, what the workers' default limit prevents): median "
            f"{fmt(un['median'])} ms ({ratio(un['median'], ig)} x the limited run)"
        )
        pss = rb["pss"]
        lines.append(
            "   peak PSS of the process tree (psutil, every 20 ms; one run each): "
            + ", ".join(
                f"{k} {fmt(v['peak_mib'])} MiB (before {fmt(v['before_mib'])}, "
                f"+{fmt(v['peak_mib'] - v['before_mib'])})"
                for k, v in pss.items()
            )
        )
        lines.append("   graph (work from the untimed sequential run; result size pickled):")
        for g in rb["graph"]:
            where = "" if g["where"] == "pool" else f" [{g['where']}]"
            req = ", ".join(g["requires"]) or "-"
            lines.append(
                f"     {g['name']:15} {g['domain']:7} {fmt(g['work_ms']):>7} ms "
                f"{g['result_mib']:7.2f} MiB  <- {req}{where}"
            )
        lines.append(f"   every executor's results agree: {rb['results_agree']}")
        if rb["ray"]:
            lines.append(f"   {rb['ray']}")
    if any(k in res for k in ("databoot", "realboot")):
        lines.append(f"   {THREADS_NOTE}")
    return lines


def _boot_table(wall: dict[str, dict[str, Any]], ideal: float | None = None) -> list[str]:
    ig = wall[IG]["median"]
    rows = [
        [
            "",
            name,
            fmt(s["median"]),
            fmt(s["min"]),
            fmt(s["max"]),
            ratio(s["median"], ideal) if ideal else "-",
            ratio(s["median"], ig),
        ]
        for name, s in wall.items()
    ]
    return _table(["", "executor", "median", "min", "max", "x ideal", "/ initgraph"], rows)


def targets(res: dict[str, Any]) -> list[tuple[str, float, float, float, str]]:
    """(target, value on medians, value on best repeats, limit, "<=", "<" or ">=") each."""
    out: list[tuple[str, float, float, float, str]] = []
    if "transfer" in res:
        cases = res["transfer"]["cases"]
        arrays = [c for c in cases if c["kind"] == "array"]
        big = arrays[-1]
        ig, loc = big["to_parent"][IG], big["to_parent"][LOCAL]
        out.append(
            (
                f"{mib(big['size'])} numpy to the parent <= 1.5x local (+copy)",
                ig["median"] / loc["median"],
                ig["min"] / loc["min"],
                TO_PARENT_MAX,
                "<=",
            )
        )
        for c in arrays:
            d = c["to_dependent"][IG]
            out.append(
                (
                    f"{mib(c['size'])} numpy to a dependent <= 5 ms",
                    d["median"],
                    d["min"],
                    TO_DEPENDENT_MS,
                    "<=",
                )
            )
        (b,) = [c for c in cases if c["kind"] == "bytes"]
        ig, loc = b["to_parent"][IG], b["to_parent"][LOCAL]
        out.append(
            (
                f"{mib(b['size'])} of bytes to the parent <= 3x local (+copy)",
                ig["median"] / loc["median"],
                ig["min"] / loc["min"],
                BYTES_MAX,
                "<=",
            )
        )
    if "databoot" in res:
        w = res["databoot"]["wall"]
        out.append(
            (
                "data boot within 1.3x of threads (ig/threads)",
                w[IG]["median"] / w[TPE]["median"],
                w[IG]["min"] / w[TPE]["min"],
                DATABOOT_VS_THREADS,
                "<=",
            )
        )
        out.append(
            (
                "data boot >= 5x faster than PPE+graphlib (PPE/ig)",
                w[PPE]["median"] / w[IG]["median"],
                w[PPE]["min"] / w[IG]["min"],
                DATABOOT_VS_PPE,
                ">=",
            )
        )
    if "realboot" in res:
        rb = res["realboot"]
        w = rb["wall"]
        out.append(
            (
                "realistic boot >= 1.6x faster than sequential, 2 workers (seq/ig)",
                w[SEQ]["median"] / w[IG]["median"],
                w[SEQ]["min"] / w[IG]["min"],
                REAL_SPEEDUP,
                ">=",
            )
        )
        out.append(
            (
                "realistic boot faster than PPE+graphlib (ig/PPE < 1)",
                w[IG]["median"] / w[PPE]["median"],
                w[IG]["min"] / w[PPE]["min"],
                1.0,
                "<",
            )
        )
        pss = rb["pss"]
        r = pss[IG]["peak_mib"] / pss[SEQ]["peak_mib"]
        out.append(("realistic boot peak PSS <= 1.5x sequential", r, r, PSS_MAX, "<="))
    return out
