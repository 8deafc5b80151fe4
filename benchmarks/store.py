#!/usr/bin/env python
"""Benchmark of the result store: moving large values between processes.

Usage: ``python benchmarks/store.py [--repeats N] [--crossover | --small-arrays]``

For float64 arrays of 1, 50 and 200 MiB and 200 MiB of ``bytes``, in one run, the median of
``--repeats`` (3) of each path, in ms, and its ratio to the local baseline (then the same with
the minimum, as the local baseline's page faults are the noisiest part on a loaded machine):

- ``local``: make the value in this process, plus one copy (``arr.copy()``, ``bytearray(b)``);
  the better of two runs back to back.
- ``pipe``: today's path. A forked child makes it, ``pickle.dumps`` + ``conn.send_bytes``; the
  parent ``recv_bytes`` + ``pickle.loads``. From the parent's request to the value in hand.
- ``store``: the child makes it, ``Store.encode`` + ``send``; the parent ``receive`` +
  ``value()``. The same span.
- ``store own``: of that, the store's own time, without making the value: the child's
  ``encode`` (pickling and writing) + ``transfer_s`` + the parent's ``load_s``.
- ``forward``: the parent, holding the value as a handle it never loaded, ``forward``s it to a
  second forked child (a dependent), which ``receive``s it and calls ``value()``; from the
  forward to the dependent's ``time.monotonic()`` after ``value()``.
- ``pipe fwd``: today's hand-off to a dependent, for comparison: the parent re-pickles the
  loaded value, the dependent unpickles it.

Values are not touched after loading (a zero-copy view is as ready as a copy; reading it costs
page faults the local copy paid while copying).

``--crossover`` instead measures where a segment beats sending the value inline, 4 KiB to 4 MiB,
for arrays and ``bytes``: the same child-to-parent span with ``threshold`` set above and below
the value's size, median of 31. The store's ``THRESHOLD`` comes from this.

``--small-arrays`` measures where a numpy array is better in the pickle stream than as a buffer
of its own: a dict of 2,000 arrays of 1 to 64 KiB, encoded, sent over a socket and loaded, in
one process, with ``SMALL_ARRAY`` above the arrays' size (in the stream) and at 0 (a buffer
each), median of 7. The store's ``SMALL_ARRAY`` comes from this.
"""

from __future__ import annotations

import argparse
import os
import pickle
import socket
import statistics
import sys
import threading
import time
from typing import Any

import multiprocess
import numpy as np

from initgraph._core import store as store_module
from initgraph._core.store import SMALL_ARRAY, Handle, Store

MiB = 1 << 20
CASES = [("float64 1 MiB", "array", MiB), ("float64 50 MiB", "array", 50 * MiB)]
CASES += [("float64 200 MiB", "array", 200 * MiB), ("bytes 200 MiB", "bytes", 200 * MiB)]
PATHS = ["local", "pipe", "store", "store own", "forward", "pipe fwd"]


def make(kind: str, size: int) -> Any:
    """The value a plugin would compute: memory written, not lazily zeroed pages."""
    if kind == "array":
        return np.arange(size // 8, dtype=np.float64)
    return b"\x01" * size


def local_once(kind: str, size: int) -> float:
    began = time.perf_counter()
    value = make(kind, size)
    copy = value.copy() if kind == "array" else bytearray(value)
    elapsed = time.perf_counter() - began
    del value, copy
    return elapsed


# -- the processes -------------------------------------------------------------------------------
def producer(conn: Any) -> None:
    """Child: for each (path, kind, size, threshold) request, make the value and send it back."""
    while True:
        request = conn.recv()
        if request is None:
            return
        path, kind, size, threshold = request
        value = make(kind, size)
        if path == "pipe":
            conn.send_bytes(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        else:
            store = Store(threshold=threshold)
            with store.encode(value, owner="initcall 1 'bench'") as encoded:
                store.send(conn, encoded)
            conn.send(encoded.serialize_s)
        del value


def dependent(conn: Any) -> None:
    """Child: receive values (forwarded handles or pickled bytes); reply when each is loaded."""
    store = Store()
    while True:
        request = conn.recv()
        if request is None:
            return
        if request == "store":
            with store.receive(conn) as handle:
                handle.value()
                conn.send(time.monotonic())
        else:
            pickle.loads(conn.recv_bytes())
            conn.send(time.monotonic())


class Children:
    """A forked producer and a forked dependent, each on a duplex pipe like a worker's."""

    def __init__(self) -> None:
        ctx = multiprocess.get_context("fork")
        self.store = Store()
        self.prod, prod_child = ctx.Pipe(duplex=True)
        self.dep, dep_child = ctx.Pipe(duplex=True)
        self.parent_cpu = 0.0  # CPU time of the last store_once's receive and value(), s
        self.own = 0.0  # the last store_once's encode + transfer + load, without making it, s
        self.procs = [
            ctx.Process(target=producer, args=(prod_child,), daemon=True),
            ctx.Process(target=dependent, args=(dep_child,), daemon=True),
        ]
        for proc in self.procs:
            proc.start()
        prod_child.close()
        dep_child.close()

    def pipe(self, kind: str, size: int) -> tuple[float, Any]:
        began = time.perf_counter()
        self.prod.send(("pipe", kind, size, 0))
        value = pickle.loads(self.prod.recv_bytes())
        return time.perf_counter() - began, value

    def store_once(
        self, kind: str, size: int, threshold: int | None = None
    ) -> tuple[float, Handle]:
        store = self.store if threshold is None else Store(threshold=threshold)
        began = time.perf_counter()
        self.prod.send(("store", kind, size, store.threshold))
        cpu = time.thread_time()
        handle = store.receive(self.prod)
        handle.value()
        self.parent_cpu = time.thread_time() - cpu
        took = time.perf_counter() - began
        assert handle.load_s is not None
        self.own = self.prod.recv() + handle.transfer_s + handle.load_s
        return took, handle

    def forward(self, handle: Handle) -> float:
        self.dep.send("store")
        began = time.monotonic()
        handle.forward(self.dep)
        return float(self.dep.recv()) - began

    def pipe_forward(self, value: Any) -> float:
        self.dep.send("pipe")
        began = time.monotonic()
        self.dep.send_bytes(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        return float(self.dep.recv()) - began

    def close(self) -> None:
        self.prod.send(None)
        self.dep.send(None)
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self.prod.close()
        self.dep.close()


# -- the two measurements ------------------------------------------------------------------------
def sizes_table(children: Children, repeats: int) -> None:
    runs: dict[str, dict[str, list[float]]] = {}
    for label, kind, size in CASES:
        runs[label] = {p: [] for p in PATHS}
        for _ in range(repeats):
            # the better of two back to back: a fresh first touch of memory on a VM can cost
            # 5-10x (host faults), which would flatter every ratio to it
            runs[label]["local"].append(min(local_once(kind, size), local_once(kind, size)))
            took, value = children.pipe(kind, size)
            runs[label]["pipe"].append(took)
            runs[label]["pipe fwd"].append(children.pipe_forward(value))
            del value
            took, handle = children.store_once(kind, size)
            runs[label]["store"].append(took)
            runs[label]["store own"].append(children.own)
            handle.close()  # the parent drops its loaded copy; forward a fresh, unloaded handle
            children.prod.send(("store", kind, size, children.store.threshold))
            with children.store.receive(children.prod) as handle:
                children.prod.recv()
                runs[label]["forward"].append(children.forward(handle))
    for name, pick in (("median", statistics.median), ("min", min)):
        print(f"moving a value between processes: {name} of {repeats}, ms (ratio to local)")
        print(f"{'value':<16}" + "".join(f"{p:>18}" for p in PATHS))
        for label, by_path in runs.items():
            base = pick(by_path["local"])
            cells = [f"{pick(r) * 1e3:>9,.1f} ({pick(r) / base:>5.2f}x)" for r in by_path.values()]
            print(f"{label:<16}" + "".join(f"{c:>18}" for c in cells))
        print()


def crossover(children: Children) -> None:
    repeats = 31
    print(f"inline vs segment, child to parent, median of {repeats}, µs: wall (parent CPU)")
    heads = [f"{k} {w}" for k in ("array", "bytes") for w in ("inline", "segment")]
    print(f"{'size':>10}" + "".join(f"{h:>18}" for h in heads))
    size = 4096
    while size <= 4 * MiB:
        cells = []
        for kind in ("array", "bytes"):
            for threshold in (size * 4, 0):  # above the size: inline; 0: always a segment
                wall, cpu = _medians_us(children, kind, size, threshold, repeats)
                cells.append(f"{wall:,.0f} ({cpu:,.0f})")
        print(f"{size // 1024:>6} KiB" + "".join(f"{c:>18}" for c in cells))
        sys.stdout.flush()
        size *= 2


def small_arrays() -> None:
    repeats = 7
    print(f"2,000 arrays in a dict, encode + send + load, median of {repeats}, ms")
    print(f"{'array':>10}{'in the stream':>16}{'a buffer each':>16}")
    for size in (1024, 2048, 4096, 8192, 16384, 65536):
        value = {i: np.ones(size // 8) for i in range(2000)}
        cells = []
        for cut in (size + 1, 0):
            took = []
            for _ in range(repeats):
                store_module.SMALL_ARRAY = cut
                took.append(_round_trip(value))
            cells.append(statistics.median(took) * 1e3)
        print(f"{size // 1024:>6} KiB" + "".join(f"{c:>16.1f}" for c in cells))
        sys.stdout.flush()
    store_module.SMALL_ARRAY = SMALL_ARRAY


def _round_trip(value: object) -> float:
    store = Store()
    a, b = socket.socketpair()
    got: list[Handle] = []
    try:
        began = time.perf_counter()
        with store.encode(value, owner="bench") as enc:
            reader = threading.Thread(target=lambda: got.append(store.receive(b)))
            reader.start()
            store.send(a, enc)
            reader.join()
        got[0].value()
        return time.perf_counter() - began
    finally:
        for h in got:
            h.close()
        a.close()
        b.close()


def _medians_us(
    children: Children, kind: str, size: int, threshold: int, repeats: int
) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(repeats):
        took, handle = children.store_once(kind, size, threshold)
        handle.close()
        walls.append(took)
        cpus.append(children.parent_cpu)
    return statistics.median(walls) * 1e6, statistics.median(cpus) * 1e6


def warm_up(children: Children) -> None:
    """Run every path once, unmeasured: a VM's first touch of fresh memory costs several times
    what every later one does, and that is the host's cost, not the path's."""
    for _, kind, size in CASES:
        local_once(kind, size)
        children.pipe_forward(children.pipe(kind, size)[1])
        with children.store_once(kind, size)[1] as handle:
            children.forward(handle)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=3)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--crossover", action="store_true")
    which.add_argument("--small-arrays", action="store_true")
    args = parser.parse_args(argv)
    print(
        f"python {sys.version.split()[0]}, numpy {np.__version__}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    if args.small_arrays:
        small_arrays()
        return 0
    children = Children()
    try:
        warm_up(children)
        if args.crossover:
            crossover(children)
        else:
            sizes_table(children, args.repeats)
    finally:
        children.close()
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
