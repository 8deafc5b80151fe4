"""The code that runs inside a worker process: receive an initcall, run it, report it.

Kept small and free of the parent's machinery: it imports the shared state, the messages and
the runtime, nothing of the pool, plugins or config.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .._errors import format_remote
from . import lifeline as _lifeline
from . import runtime as _runtime
from .backend import as_main_thread
from .messages import (
    Blocked,
    Done,
    Log,
    Run,
    Scheduled,
    Started,
    Stop,
    Unblocked,
    WaitRecord,
    dumps,
    loads,
)
from .shared import SharedState

__all__ = ["main"]


class WorkerRuntime(_runtime.Runtime):
    """The runtime of a worker: new work and inline results travel to the parent by pipe."""

    def __init__(self, shared: SharedState, max_pending: int, slot: int, conn: Any) -> None:
        super().__init__(shared, max_pending, owner=slot)
        self.slot = slot
        self.conn = conn
        self._send_lock = threading.Lock()
        self._wait_lock = threading.Lock()

    def send(self, message: object) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self._send_lock:
            self.conn.send_bytes(data)

    def _submit(
        self,
        cookie: int,
        domain: str,
        name: str,
        after: tuple[int, ...],
        timeout: float | None,
        func: bytes,
        data: bytes,
    ) -> None:
        self.send(Scheduled(cookie, domain, name, after, timeout, func, data))

    def _record_inline(
        self, cookie: int, name: str, ok: bool, value: Any, exc: BaseException | None
    ) -> None:
        now = time.monotonic()
        self.send(_done(cookie, name, ok, value, exc, now, now))

    @contextmanager
    def _wait_slot(self) -> Iterator[int]:
        # One slot per worker: threads an initcall starts take turns to sleep on it.
        with self._wait_lock:
            yield self.slot

    def _on_sleep(self, sleeping: bool) -> None:
        stack = self.running()
        cookie = stack[-1][0] if stack else 0
        self.send(Blocked(cookie) if sleeping else Unblocked(cookie))

    def is_async(self) -> bool:
        return bool(self.running())


def _done(
    cookie: int,
    name: str,
    ok: bool,
    value: Any,
    exc: BaseException | None,
    started: float,
    ended: float,
    waits: tuple[WaitRecord, ...] = (),
) -> Done:
    pid = os.getpid()
    if ok:
        try:
            return Done(cookie, name, True, dumps(value), None, None, started, ended, pid, waits)
        except Exception as err:
            exc = TypeError(
                f"the result of initcall {cookie} {name!r} cannot be sent to the parent: "
                f"{type(err).__name__}: {err}; return picklable data"
            )
            exc.__cause__ = err
    assert exc is not None
    tb = format_remote(exc)
    error: bytes | None
    try:
        error = dumps(exc)
        loads(error)
    except Exception:
        error = None
    return Done(cookie, name, False, None, error, tb, started, ended, pid, waits)


class _ForwardLogs(logging.Handler):
    """Send log records to the parent, whose logging configuration decides what to do."""

    def __init__(self, runtime: WorkerRuntime) -> None:
        super().__init__()
        self.runtime = runtime

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = dict(record.__dict__)
            fields["msg"] = record.getMessage()
            fields["args"] = None
            if record.exc_info:
                fields["exc_text"] = logging.Formatter().formatException(record.exc_info)
            fields["exc_info"] = None
            self.runtime.send(Log(fields))
        except Exception:
            self.handleError(record)


def main(
    conn: Any, shared: SharedState, slot: int, max_pending: int, log_level: int, parent: int
) -> None:
    """The worker loop: run each :class:`Run` until :class:`Stop` or the parent goes away.

    ``parent`` is the scheduler's pid: if that process dies, so does this one (even in the
    middle of an initcall, and even while other processes hold the pipe open).
    """
    # Forked by the pool thread or by the caller, every worker runs on a plain main thread, so
    # the threads an initcall starts are alike in every worker, whatever the start method.
    as_main_thread()
    _lifeline.watch(parent)
    # Ctrl-C reaches the whole process group; the parent decides what an interrupt means.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The parent held these while it forked us (see Workers.start).
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    runtime = WorkerRuntime(shared, max_pending, slot, conn)
    # What initcalls log goes to the parent's handlers, whatever the start method: a forked
    # worker would otherwise write through copies of the parent's handlers, a spawned one
    # through none.
    root = logging.getLogger()
    root.handlers[:] = [_ForwardLogs(runtime)]
    root.setLevel(log_level)
    _runtime.set_process_runtime(runtime)
    funcs: dict[bytes, Any] = {}
    running = runtime.running()
    while True:
        try:
            message = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        if isinstance(message, Stop):
            return
        assert isinstance(message, Run), message
        started = time.monotonic()
        ok, value, exc = True, None, None
        try:
            func = funcs.get(message.func)
            if func is None:
                func = loads(message.func)
                if len(funcs) > 256:
                    funcs.clear()
                funcs[message.func] = func
            data = loads(message.data)
            if message.timed:  # its timeout counts from here, not from our start or its import
                runtime.send(Started(message.cookie))
            running.append((message.cookie, message.domain))
            try:
                value = func(data, message.cookie)
            finally:
                running.pop()
        except BaseException as err:
            ok, exc = False, err
        ended = time.monotonic()
        shared.finish([message.cookie])  # first: waiters need not wait for the result's pickling
        waits = runtime.take_waits()
        done = _done(message.cookie, message.name, ok, value, exc, started, ended, waits)
        exc = value = None
        try:
            runtime.send(done)
        except (EOFError, OSError):
            return
