"""The code that runs inside a worker process: receive an initcall, run it, report it.

Kept small and free of the parent's machinery: it imports the shared state, the messages and
the runtime, nothing of the pool, plugins or config.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
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
    dump_error,
    loads,
)
from .shared import SharedState
from .store import Encoded, Handle, Ref, Store, StoreError

__all__ = ["THREAD_VARS", "main"]

# The thread pools of native libraries (OpenMP, OpenBLAS, MKL, Accelerate, numexpr), each of which
# would otherwise start one thread per core in every worker: N workers, N x cores threads.
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


class WorkerRuntime(_runtime.Runtime):
    """The runtime of a worker: new work and inline results travel to the parent by pipe."""

    def __init__(
        self, shared: SharedState, max_pending: int, slot: int, conn: Any, store: Store
    ) -> None:
        super().__init__(shared, max_pending, owner=slot, store=store)
        self.slot = slot
        self.conn = conn
        self.pid = os.getpid()  # for each Done: getpid() is a system call
        self._send_lock = threading.Lock()
        self._wait_lock = threading.Lock()

    def send(
        self, message: object, value: Encoded | None = None, refs: Sequence[Handle] = ()
    ) -> None:
        """Send ``message``, then the frames of ``refs`` and ``value``, none in between."""
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self._send_lock:
            self.conn.send_bytes(data)
            for handle in refs:
                handle.forward(self.conn)
            if value is not None:
                self.store.send(self.conn, value)

    def _submit(
        self,
        cookie: int,
        domain: str,
        name: str,
        after: tuple[int, ...],
        timeout: float | None,
        func: bytes,
        data: Encoded,
        refs: tuple[Handle, ...],
    ) -> None:
        with data:
            inline = data.ref.packed() if data.inline else None  # small: inside the message
            message = Scheduled(cookie, domain, name, after, timeout, func, len(refs), inline)
            self.send(message, None if inline else data, refs)

    def _record_inline(
        self, cookie: int, name: str, ok: bool, value: Any, exc: BaseException | None
    ) -> None:
        now = time.monotonic()
        done, encoded = _done(self, cookie, name, None, ok, value, exc, now, now)
        self.send_done(done, encoded)

    def send_done(self, done: Done, encoded: Encoded | None) -> None:
        try:
            self.send(done, encoded)
        finally:
            if encoded is not None:
                encoded.close()

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
    runtime: WorkerRuntime,
    cookie: int,
    name: str,
    owner: str | None,
    ok: bool,
    value: Any,
    exc: BaseException | None,
    started: float,
    ended: float,
    waits: tuple[WaitRecord, ...] = (),
) -> tuple[Done, Encoded | None]:
    """The Done of an initcall, and its result encoded for the store frame that follows it
    (None: a small result, inside the Done).

    A result the store refuses (pickle cannot send it, over ``max_result_bytes``, no room in
    shared memory) fails the initcall with the store's error, which names it.
    """
    pid = runtime.pid
    unsent = False
    if ok:
        try:
            encoded = runtime.store.encode(value, owner=owner or f"initcall {cookie} {name!r}")
        except StoreError as err:
            exc, unsent = err, True
        else:
            small = encoded.fd is None  # inside the Done: no frame follows, nothing to close
            done = Done(
                cookie,
                name,
                True,
                None,
                None,
                started,
                ended,
                pid,
                waits,
                encoded.serialize_s,
                inline=encoded.ref.packed() if small else None,
            )
            return done, None if small else encoded
    assert exc is not None
    tb = format_remote(exc)
    error, info = dump_error(exc)  # pickle alone: a file or a lock in it is not re-opened here
    done = Done(
        cookie, name, False, error, tb, started, ended, pid, waits, 0.0, unsent, error_info=info
    )
    return done, None


def limit_threads(threads: int) -> None:
    """Limit native thread pools to ``threads`` each, unless the user set the variables.

    The variables are read when a library loads: set here, before the initcalls import
    anything. A library already loaded (inherited through ``fork``, or imported by the main
    module a spawned worker re-imports) is limited through threadpoolctl, when it is installed.
    """
    for var in THREAD_VARS:
        os.environ.setdefault(var, str(threads))
    if "numpy" not in sys.modules:
        return
    try:
        import threadpoolctl
    except ImportError:
        return
    global _limits
    _limits = threadpoolctl.threadpool_limits(limits=threads)


_limits: Any = None  # threadpoolctl's limits, kept for the worker's life

# After an initcall that ran this long, the worker returns the heap's free memory to the system
# (a dict of a million small objects built and sent: 16 MiB kept, 8 after; measured with a
# Scheduler(1) init). Shorter ones skip it: a call costs ~1 ms on a large heap, and a no-op
# initcall ~100 µs in all.
_TRIM_AFTER = 0.05


def _give_back() -> None:
    """``malloc_trim(0)``: glibc keeps freed memory for the process unless told; others lack it."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes  # once, in a worker that ran a long initcall

            _malloc_trim = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim: Any = None  # the C function, False where there is none


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
    conn: Any,
    shared: SharedState,
    slot: int,
    max_pending: int,
    log_level: int,
    parent: int,
    threads: int = 1,
    max_result_bytes: int | None = None,
    nice: int = 0,
) -> None:
    """The worker loop: run each :class:`Run` until :class:`Stop` or the parent goes away.

    ``parent`` is the scheduler's pid: if that process dies, so does this one (even in the
    middle of an initcall, and even while other processes hold the pipe open). ``threads``:
    what native thread pools may use (:func:`limit_threads`). ``max_result_bytes``: the largest
    value this worker may send. ``nice``: added to this process's nice value, so that the
    parent's threads get a CPU before the workers when the cores are busy.
    """
    limit_threads(threads)
    if nice:
        os.nice(nice)
    # Forked by the pool thread or by the caller, every worker runs on a plain main thread, so
    # the threads an initcall starts are alike in every worker, whatever the start method.
    as_main_thread()
    _lifeline.watch(parent)
    # Ctrl-C reaches the whole process group; the parent decides what an interrupt means.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The parent held these while it forked us (see Workers.start).
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    store = Store(max_result_bytes=max_result_bytes)
    runtime = WorkerRuntime(shared, max_pending, slot, conn, store)
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
        try:
            refs = [store.receive(conn) for _ in range(message.handles)] if message.handles else []
            # small data came inside the Run: no frame, and no handle (it is loaded at once)
            inline = message.inline
            source = Ref(*inline) if inline is not None else store.receive(conn, refs=refs)
        except (EOFError, OSError):
            return
        started = time.monotonic()
        ok, value, exc = True, None, None
        try:
            func = funcs.get(message.func)
            if func is None:
                func = loads(message.func)
                if len(funcs) > 256:
                    funcs.clear()
                funcs[message.func] = func
            data = source.value() if isinstance(source, Handle) else source.load(refs)
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
        done, encoded = _done(
            runtime,
            message.cookie,
            message.name,
            message.owner,
            ok,
            value,
            exc,
            started,
            ended,
            waits,
        )
        exc = value = None
        try:
            runtime.send_done(done, encoded)
        except (EOFError, OSError):
            return
        # Then its data and the results it was handed go: what it kept of them (views of their
        # segments) stays valid, the descriptors do not linger until the next initcall. After
        # the send, as unmapping 100 MiB it read takes 20-30 ms the parent need not wait for.
        data = None
        for handle in refs:
            handle.close()
        if isinstance(source, Handle):
            source.close()
        refs = []
        if ended - started > _TRIM_AFTER:
            _give_back()
