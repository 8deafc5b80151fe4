"""The work the benchmarks send to worker processes.

A module of its own, so that a fresh interpreter (``python -c``) can import it and every pool
pickles these functions by reference. It imports only ``time``: its import cost must not show
in the start-up numbers. Every function takes ``(data, cookie)`` positionally with defaults, so
one function serves initgraph (``func(data, cookie)``), ``Pool.apply_async`` and
``ProcessPoolExecutor.submit`` alike.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any


def noop(data: Any = None, cookie: int = 0) -> None:
    """Nothing at all: what is measured around it is the executor's own cost."""


def spin(seconds: float) -> None:
    """Keep a CPU busy for ``seconds`` (a busy loop, not a sleep)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def stamp_after(seconds: float, cookie: int = 0) -> float:
    """Work for ``seconds``, then return ``time.monotonic()`` read just before returning.

    CLOCK_MONOTONIC is one clock for the whole machine on Linux, so the caller can subtract
    this reading from its own to get the wake-up latency across processes.
    """
    spin(seconds)
    return time.monotonic()


def semaphore_echo(go: Any, done: Any, stamp: Any) -> None:
    """The floor for a wake-up: a raw semaphore post between two processes.

    ``stamp`` is a shared double. Each round waits for ``go``, reads from ``stamp`` how long to
    work (negative: stop), works that long, writes ``time.monotonic()`` to ``stamp`` and posts
    ``done``.
    """
    while True:
        go.acquire()
        seconds = stamp.value
        if seconds < 0:
            return
        spin(seconds)
        stamp.value = time.monotonic()
        done.release()


def burn(iterations: int) -> int:
    """Pure-Python busy work: ``iterations`` turns of a small arithmetic loop (holds the GIL).

    Unlike :func:`spin`, its cost is a fixed amount of work, not a fixed wall time: on a CPU
    shared with other processes it takes longer, as real start-up work does.
    """
    x = 0
    for i in range(iterations):
        x = (x * 31 + i) & 0xFFFF
    return x


def work(data: tuple[int, float, int], cookie: int = 0) -> int:
    """One initcall of the suite's boots: ``data = (node, sleep_seconds, burn_iterations)``.

    Sleeps, then burns, and returns ``node`` so the caller can check every node ran once.
    """
    node, seconds, iterations = data
    if seconds > 0:
        time.sleep(seconds)
    if iterations > 0:
        burn(iterations)
    return node
