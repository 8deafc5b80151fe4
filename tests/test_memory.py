"""What a boot takes of the machine: memory across the process tree, native threads per worker.

The issue's budget: a 200 MiB result held by the parent and three dependents costs about 200 MiB
of the tree's PSS (proportional set size: a shared page counts once, split between the processes
that map it), not 800; and a worker gives back what its init allocated. Measured as the
difference between two boots of the same plugins, one with a large result and one with a small
one, so the interpreters' own memory (split between forked processes) cancels out.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from conftest import AppWriter as Writer

import initgraph

MIB = 1 << 20

PRODUCER = """
import numpy as np
from initgraph import hookimpl


@hookimpl
def initgraph_init(ctx):
    array = np.empty(ctx.config["nbytes"] // 8)
    array[:] = 1.0  # written: every page is real memory in this worker
    return array
"""

READER = """
from initgraph import hookimpl

HELD = []  # the worker keeps every array it read, mapped, until the boot ends


@hookimpl
def initgraph_init(ctx):
    array = ctx.results["producer"]
    HELD.append(array)
    return float(array[::512].sum())  # one float per 4 KiB page: every page mapped here
"""

MEASURE = """
import psutil
from initgraph import hookimpl


@hookimpl
def initgraph_init(ctx):
    array = ctx.results["producer"]  # mapped in the parent too
    float(array[::512].sum())
    me = psutil.Process()
    return sum(p.memory_full_info().pss for p in [me, *me.children(recursive=True)])
"""


def tree_pss_at_peak(app: Writer, nbytes: int, method: str) -> int:
    """The tree's PSS while the parent and three readers hold a result of ``nbytes``."""
    readers = [f"reader_{i}" for i in range(3)]
    plugins: dict[str, dict[str, Any]] = {
        "producer": {"source": PRODUCER, "config": {"nbytes": nbytes}},
        **{r: {"source": READER, "requires": ["producer"]} for r in readers},
        "measure": {"source": MEASURE, "requires": ["producer", *readers], "where": "main"},
    }
    with initgraph.boot(app(plugins, workers=3, start_method=method)) as boot:
        pss = boot.results["measure"]
        assert isinstance(pss, int)
        assert boot.results["reader_0"] == nbytes // 8 // 512  # they read the real thing
        return pss


@pytest.mark.parametrize("method", ["fork", pytest.param("spawn", marks=pytest.mark.slow)])
def test_a_result_read_by_the_parent_and_three_workers_costs_its_size_once(
    app: Writer, method: str
) -> None:
    small, large = 1 * MIB, 96 * MIB
    tree_pss_at_peak(app, small, method)  # warm: imports, the pool's first pages
    base = tree_pss_at_peak(app, small, method)
    peak = tree_pss_at_peak(app, large, method)
    cost = (peak - base) / (large - small)
    # 1.0 when the segment is mapped by all and the producer freed its own copy; a copy per
    # reader would be 4 to 5, the producer keeping its array 2.
    assert 0.8 < cost < 1.5, f"the tree holds {cost:.2f} times the result"


THREADS = """
import os
from initgraph import hookimpl


@hookimpl
def initgraph_init(ctx):
    return os.environ.get("OPENBLAS_NUM_THREADS"), os.environ.get("OMP_NUM_THREADS")
"""


NICE = """
import os
from initgraph import hookimpl


@hookimpl
def initgraph_init(ctx):
    return os.getpriority(os.PRIO_PROCESS, 0)
"""


@pytest.mark.parametrize("start_method", ["fork", "forkserver"])
def test_worker_nice_lowers_the_workers_priority_not_the_parents(
    app: Writer, start_method: str
) -> None:
    parent = os.getpriority(os.PRIO_PROCESS, 0)
    config = app({"probe": {"source": NICE}}, worker_nice=7, start_method=start_method)
    with initgraph.boot(config) as boot:
        assert boot.results["probe"] == min(parent + 7, 19)
    assert os.getpriority(os.PRIO_PROCESS, 0) == parent
    with initgraph.boot(app({"probe": {"source": NICE}}, start_method=start_method)) as boot:
        assert boot.results["probe"] == parent  # 0 by default: the parent's own


def test_worker_threads_in_the_config_reaches_the_workers(
    app: Writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    with initgraph.boot(app({"probe": {"source": THREADS}}, worker_threads=3)) as boot:
        assert boot.results["probe"] == ("3", "3")
    with initgraph.boot(app({"probe": {"source": THREADS}}, workers=2)) as boot:
        share = str(max(1, (os.cpu_count() or 1) // 2))
        assert boot.results["probe"] == (share, share)  # not set: its share of the cores
