"""The worker processes of one pool: start, stop, retire, and reap the lost.

Only the pool loop calls these (and ``Scheduler.__init__``, for the first workers, before the
loop runs), so nothing here takes a lock: no lock is ever held while a process is forked or
joined.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from . import worker as _worker
from .messages import Stop
from .shared import SharedState

__all__ = ["PARENT_SLOTS", "Worker", "Workers"]

PARENT_SLOTS = 16  # wait slots of the parent's threads; worker slot w waits on PARENT_SLOTS + w
STOP_GRACE = 2.0  # seconds a worker gets to leave on Stop before it is killed


@dataclass(eq=False)
class Worker:
    """One worker process and the parent's end of its pipe."""

    slot: int
    proc: Any
    conn: Any
    timed_out: tuple[int, float] | None = None  # (cookie, timeout) it was stopped for
    pid: int = field(init=False)  # kept: a closed process no longer says its pid

    def __post_init__(self) -> None:
        self.pid = int(self.proc.pid)


class Workers:
    """The live workers by slot, and the slots free for new ones (lowest reused first)."""

    def __init__(
        self,
        ctx: Any,
        shared: SharedState,
        max_workers: int,
        max_pending: int,
        threads: int = 1,
        max_result_bytes: int | None = None,
        nice: int = 0,
    ) -> None:
        self._ctx = ctx
        self._shared = shared
        self._max_pending = max_pending
        self._threads = threads  # each worker's native thread pools (worker.limit_threads)
        self._max_result_bytes = max_result_bytes
        self._nice = nice  # added to each worker's nice value (worker.main)
        self._free = list(range(max_workers - 1, -1, -1))
        self.by_slot: dict[int, Worker] = {}
        self.pids: tuple[int, ...] = ()  # published for other threads; replaced, never mutated

    def __len__(self) -> int:
        return len(self.by_slot)

    def start(self) -> Worker:
        """Start a worker in the lowest free slot."""
        slot = self._free.pop()
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=_worker.main,
            args=(
                child_conn,
                self._shared,
                PARENT_SLOTS + slot,
                self._max_pending,
                logging.getLogger().getEffectiveLevel(),
                os.getpid(),
                self._threads,
                self._max_result_bytes,
                self._nice,
            ),
            name=f"initgraph-worker-{slot}",
            daemon=True,
        )
        # An interrupt between the fork and the line that records the worker would leave a
        # worker nobody stops: in the main thread, where Python raises it, hold SIGINT and
        # SIGTERM until the worker is recorded (the worker lets them through again).
        held = _hold_signals()
        try:
            try:
                proc.start()
            except BaseException:
                self._free.append(slot)
                raise
            worker = self.by_slot[slot] = Worker(slot, proc, parent_conn)
            self._publish()
        finally:
            _release_signals(held)
            child_conn.close()
        return worker

    def retire(self, slot: int) -> None:
        """Stop the idle worker of ``slot`` and wait for it to leave."""
        worker = self._forget(slot)
        with contextlib.suppress(OSError):
            worker.conn.send_bytes(pickle.dumps(Stop()))
        _join(worker.proc, STOP_GRACE)
        _release(worker)

    def reap(self, worker: Worker) -> int | None:
        """A worker's process ended: reap it, free its slot; return its exit code."""
        worker.proc.join()  # first: the shared lock's recovery needs it gone
        self._forget(worker.slot)
        exitcode: int | None = worker.proc.exitcode
        _release(worker)
        return exitcode

    def stop_all(self, *, now: bool) -> None:
        """Stop every worker: Stop and a grace period, or SIGKILL at once (``now``)."""
        workers = list(self.by_slot.values())
        try:
            for worker in workers:
                if now:
                    # What an initcall was doing is abandoned either way, and a worker still
                    # starting has SIGTERM blocked (see start).
                    worker.proc.kill()
                    continue
                with contextlib.suppress(OSError):
                    worker.conn.send_bytes(pickle.dumps(Stop()))
            deadline = time.monotonic() + STOP_GRACE
            for worker in workers:
                _join(worker.proc, max(0.0, deadline - time.monotonic()))
        except BaseException:
            for worker in workers:  # stop the rest at once, so no process is left behind
                with contextlib.suppress(Exception):
                    worker.proc.kill()
                    worker.proc.join()
            raise
        finally:
            for worker in workers:
                if self.by_slot.get(worker.slot) is worker:
                    self._forget(worker.slot)
                _release(worker)

    def _forget(self, slot: int) -> Worker:
        worker = self.by_slot.pop(slot)
        self._free.append(slot)
        self._free.sort(reverse=True)
        self._publish()
        return worker

    def _publish(self) -> None:
        self.pids = tuple(w.pid for w in self.by_slot.values())


def _release(worker: Worker) -> None:
    """Close the parent's end of a worker's pipe and, once it ended, its process's sentinel."""
    worker.conn.close()
    with contextlib.suppress(ValueError):  # still running: an interrupt cut its join short
        worker.proc.close()


def _join(proc: Any, grace: float) -> None:
    proc.join(grace)
    if proc.is_alive():
        proc.kill()
        proc.join()


_HELD = {signal.SIGINT, signal.SIGTERM}


def _hold_signals() -> set[int | signal.Signals] | None:
    if threading.current_thread() is not threading.main_thread():
        return None  # Python delivers signals to the main thread only
    return signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)


def _release_signals(previous: set[int | signal.Signals] | None) -> None:
    if previous is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
