"""The scheduler: a pool of worker processes around the dispatcher and the shared state.

::

    parent process                                              worker processes
    ───────────────────────────────────────────────────         ──────────────────────────
    schedule() ──► SharedState.allocate ──┐                      ┌─► run func(data, cookie)
      (cookie + domain entry, one step)   │                      │   SharedState.finish
                                          ▼                      │   (low-water mark moves,
    Dispatcher (pure) ── assign ──► Run ──pipe──────────────────►┘    sleepers' semaphores
      ▲  lowest ready cookie first                                     are posted)
      │                                                          ┌── Done / Scheduled /
    pool thread ◄──────── pipe ◄─────────────────────────────────┘   Blocked / Unblocked
      │  results, nested work, crashes (process sentinels),
      │  timeouts, pool growth, mirror of in-progress lists ──► manager process (lists)
      ▼
    result() ◄── outcomes                synchronize_*() ──► SharedState.wait (any process)

The shared block holds cookies and every domain's in-progress set, so scheduling and
synchronizing work the same from the parent and from inside an initcall, and a waiter is woken by
the process that finished the initcall it waited for, without the parent in between. The
manager holds each domain's in-progress list with names, kept up to date by the pool thread in
batches (it is read only to explain a timeout), off every hot path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pickle
import queue
import selectors
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import multiprocess
import multiprocess.connection

from .._defs import MOST, WHY
from .._errors import (
    ConfigError,
    DeadlockError,
    HookError,
    HookTimeout,
    InitgraphError,
    RemoteTraceback,
    WorkerCrashed,
    describe_exitcode,
)
from . import lifeline as _lifeline
from . import runtime as _runtime
from . import worker as _worker
from .dispatch import GROW_AFTER, Dispatcher
from .domain import Domain
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
from .runtime import InitcallFunc, seconds
from .shared import PARENT, W_ALL, SharedState

__all__ = ["Outcome", "Reservation", "Scheduler", "default_start_method"]

START_METHODS = ("fork", "forkserver", "spawn")
PARENT_SLOTS = 16  # parent threads that may wait at once
_KILL_GRACE = 1.0  # seconds between SIGTERM and SIGKILL for a timed-out initcall
_STOP_GRACE = 2.0  # seconds a worker gets to leave on Stop before it is killed
# The manager-held lists are pushed when the pool thread has been idle this long (seconds), and
# at most once per _MIRROR_EVERY: each push is a manager round trip that pickles the lists with
# dill, which cost over half the parent's CPU in a 200-initcall boot when done at every pause
# (benchmarks, docs/performance.md). in_progress_lists() always pushes first.
_MIRROR_IDLE = 0.005
_MIRROR_EVERY = 0.1
_LOAD_GRACE = 60.0  # seconds a timed initcall may take to start (worker start, imports)
_STALL_GRACE = 1.0  # seconds every worker may stay blocked, at max_workers, with work ready


def default_start_method() -> str:
    """The fastest start method that is safe here.

    ``fork`` starts a worker in about a millisecond but copies the locks of every thread of the
    parent; CPython 3.12 warns about forking a multi-threaded process and 3.14 no longer uses it
    by default. So: ``fork`` on Linux before 3.12 when the parent has no other thread,
    ``forkserver`` elsewhere on Linux, ``spawn`` on other systems.
    """
    if not sys.platform.startswith("linux"):
        return "spawn"
    if sys.version_info < (3, 12) and threading.active_count() == 1:
        return "fork"
    return "forkserver"


@dataclass(frozen=True)
class Outcome:
    """How an initcall ended: its value (``ok``) or error, when and where it ran, its waits.

    ``started``/``ended`` are ``time.monotonic()`` readings (0.0 when it never ran).
    """

    name: str
    ok: bool
    value: Any = None
    error: BaseException | None = None
    started: float = 0.0
    ended: float = 0.0
    pid: int = 0
    waits: tuple[WaitRecord, ...] = ()


@dataclass(eq=False)
class _Worker:
    slot: int
    proc: Any
    conn: Any
    fds: tuple[int, int] = (-1, -1)  # pipe and sentinel, as the pool thread watches them
    kill_at: float | None = None  # set once it was asked to stop for a timeout
    timed_out: tuple[int, float] | None = None  # (cookie, timeout) it was stopped for


class _ParentRuntime(_runtime.Runtime):
    """The scheduler's runtime in the parent process."""

    def __init__(self, sched: Scheduler, shared: SharedState, max_pending: int) -> None:
        super().__init__(shared, max_pending, owner=PARENT)
        self._sched = sched
        self._free_slots: queue.SimpleQueue[int] = queue.SimpleQueue()
        for slot in range(PARENT_SLOTS):  # low slots first: the waker scans from slot 0
            self._free_slots.put(slot)

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
        self._sched._add(Run(cookie, domain, name, func, data), after, timeout)

    def _record_inline(
        self, cookie: int, name: str, ok: bool, value: Any, exc: BaseException | None
    ) -> None:
        now = time.monotonic()
        self._sched._record(cookie, Outcome(name, ok, value, exc, now, now, os.getpid()))

    @contextlib.contextmanager
    def _wait_slot(self) -> Iterator[int]:
        slot = self._free_slots.get()  # more than PARENT_SLOTS waiting threads take turns
        try:
            yield slot
        finally:
            self._free_slots.put(slot)

    def _names(self, cookies: Iterable[int]) -> dict[int, str]:
        return self._sched._names_of(cookies)

    def _note(self, cookie: int, name: str, domain: str) -> None:
        with self._sched._lock:
            self._sched._names[cookie] = name
            self._sched._domains_of[cookie] = domain


class Scheduler:
    """A pool of worker processes that runs initcalls with the kernel's async semantics.

    ``Scheduler(workers=None, *, start_method=None, max_pending=32768, max_workers=None)``

    - ``workers``: worker processes kept ready (default: the CPU count). A worker asleep in a
      synchronize for 10 ms or more (``GROW_AFTER``) no longer counts: while work waits, the
      pool starts another so that ``workers`` initcalls still run.
    - ``max_workers``: the most the pool may grow to while workers are blocked waiting
      (default: four times ``workers``, at least 16).
    - ``start_method``: ``"fork"``, ``"forkserver"`` or ``"spawn"``; the default is
      :func:`default_start_method`.
    - ``max_pending``: above this many initcalls in progress, ``schedule`` runs the initcall
      inline in the caller (still in progress while it runs, so others synchronize with it).

    Leaving the ``with`` block (or :meth:`close`) waits for every domain, exclusive ones included,
    then stops every process the scheduler started. On ``KeyboardInterrupt`` it stops at once.
    """

    __module__ = "initgraph"

    def __init__(
        self,
        workers: int | None = None,
        *,
        start_method: str | None = None,
        max_pending: int = 32768,
        max_workers: int | None = None,
    ) -> None:
        self._closed = True  # until fully started, so a failed start tears down cleanly
        if workers is None:
            workers = os.cpu_count() or 1
        _positive_int(workers, "workers", MOST["workers"])
        _positive_int(max_pending, "max_pending", MOST["max_pending"])
        if max_workers is None:
            max_workers = min(max(4 * workers, 16), MOST["max_workers"])
        _positive_int(max_workers, "max_workers", MOST["max_workers"])
        if max_workers < workers:
            msg = f"max_workers ({max_workers}) must be at least workers ({workers})"
            raise ConfigError(msg, key="max_workers")
        method = start_method if start_method is not None else default_start_method()
        if method not in START_METHODS:
            msg = f"start_method must be one of {', '.join(START_METHODS)}, got {method!r}"
            raise ConfigError(msg, key="start_method")
        self.workers = workers
        self.max_workers = max_workers
        self.max_pending = max_pending
        self.start_method = method
        self._ctx = multiprocess.get_context(method)
        self._helpers_before = _helper_processes()
        self._shared = SharedState(
            self._ctx, slots=PARENT_SLOTS + max_workers, capacity=max_pending + 4096
        )
        self._runtime = _ParentRuntime(self, self._shared, max_pending)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._dispatcher = Dispatcher()
        self._pool: dict[int, _Worker] = {}
        self._free_worker_slots = list(range(max_workers - 1, -1, -1))
        self._runs: dict[int, Run] = {}  # ready or waiting, not sent
        self._sent: dict[int, Run] = {}  # sent to a worker, not finished
        self._sent_at: dict[int, float] = {}  # when, for the outcome of a crash
        self._timeouts: dict[int, float] = {}
        # cookie -> (deadline, worker slot, timeout)
        self._deadlines: dict[int, tuple[float, int, float]] = {}
        self._names: dict[int, str] = {}
        self._outcomes: dict[int, Outcome] = {}
        self._domains_of: dict[int, str] = {}
        self._mirror = _Mirror(self._ctx, on_start=self._poke)
        self._listeners: list[queue.SimpleQueue[int]] = []
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = False
        self._stalled: tuple[int, float] | None = None  # (cookie, since when)
        self._blocked_at: dict[int, float] = {}  # slot -> when its worker went to sleep
        self._grow_at: float | None = None  # when a sleeping worker may count as asleep
        self._fatal: BaseException | None = None
        self._closed = False
        try:
            self._shared.domain_index("default", False)
            if method == "forkserver":
                # Start the fork server now, not inside the first worker's start, where SIGINT
                # and SIGTERM are held: it would keep them blocked for life, and so would each
                # worker until it unblocks them, so a SIGTERM to a starting one would be lost.
                multiprocess.forkserver.ensure_running()
            for _ in range(workers):
                self._start_worker()
            self._thread = threading.Thread(target=self._loop, name="initgraph-pool", daemon=True)
            self._thread.start()
        except BaseException:
            self._shutdown(wait=False)
            raise
        _runtime.push_runtime(self._runtime)

    # -- the public API --------------------------------------------------------------------------
    def schedule(
        self,
        func: InitcallFunc,
        data: Any = None,
        *,
        domain: Domain | str | None = None,
        after: Iterable[int] = (),
        timeout: float | None = None,
        name: str | None = None,
    ) -> int:
        """Schedule ``func(data, cookie)`` to run in a worker; return its cookie at once.

        ``domain``: a :class:`Domain` or a name (None: the default domain). ``after``: cookies
        that must complete before it starts. ``timeout``: seconds it may run before its worker is
        stopped (:class:`HookTimeout`). ``name``: for errors, logs and traces. Something that
        cannot be sent to a worker is refused here with a :class:`ConfigError` naming it.
        """
        self._check_open()
        return self._runtime.schedule(
            func, data, domain=domain, after=after, timeout=timeout, name=name
        )

    def synchronize_cookie(
        self, cookie: int, *, domain: Domain | str | None = None, timeout: float | None = None
    ) -> None:
        """Return once no initcall below ``cookie`` is in progress in ``domain``.

        ``cookie`` itself is not waited for (pass ``cookie + 1`` for that). Raises
        ``TimeoutError`` naming what is still in progress if ``timeout`` seconds pass.
        """
        self._check_open()
        try:
            self._runtime.synchronize_cookie(cookie, domain=domain, timeout=timeout)
        finally:
            self._check_fatal()

    def synchronize_full(
        self, *, domain: Domain | str | None = None, timeout: float | None = None
    ) -> None:
        """Return once nothing is in progress in ``domain`` (None: every registered domain).

        Initcalls scheduled while it waits are waited for too.
        """
        self._check_open()
        try:
            self._runtime.synchronize_full(domain=domain, timeout=timeout)
        finally:
            self._check_fatal()

    def result(self, cookie: int, *, timeout: float | None = None) -> Any:
        """Wait for initcall ``cookie`` and return its value, or raise its :class:`HookError`."""
        if isinstance(cookie, bool) or not isinstance(cookie, int) or cookie < 1:
            msg = f"cookie must be a positive int, got {cookie!r}"
            raise ConfigError(msg, key="cookie")
        if cookie > self._shared.last_cookie:
            msg = f"no initcall has cookie {cookie}: the last cookie issued is "
            msg += f"{self._shared.last_cookie}"
            raise ConfigError(msg, key="cookie")
        timeout = seconds(timeout, f"result({cookie})", zero=True)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while cookie not in self._outcomes:
                if self._fatal is not None:
                    raise self._fatal_error()
                if self._closed and not self._thread_alive():
                    msg = f"the scheduler was closed before initcall {cookie} reported"
                    raise InitgraphError(msg)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    name = self._names.get(cookie, "?")
                    msg = f"result({cookie}) timed out after {timeout} s; initcall {cookie} "
                    msg += f"{name!r} is still in progress"
                    raise TimeoutError(msg)
                self._changed.wait(remaining)
            outcome = self._outcomes[cookie]
        if outcome.ok:
            return outcome.value
        assert outcome.error is not None
        raise as_hook_error(cookie, outcome)

    def close(self) -> None:
        """Wait for every domain (exclusive ones too), then stop every process started."""
        self._shutdown(wait=True)

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # An interrupt means stop now; an ordinary error still lets running work finish.
        self._shutdown(wait=exc is None or isinstance(exc, Exception))

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            self._shutdown(wait=False)

    # -- what the boot and the tests look at -----------------------------------------------------
    def worker_pids(self) -> list[int]:
        """Pids of the live workers."""
        with self._lock:
            return [w.proc.pid for w in self._pool.values()]

    def in_progress_lists(self) -> dict[str, list[tuple[int, str]]]:
        """Each domain's in-progress ``(cookie, name)`` list as the manager process holds it.

        The pool thread pushes changes to the manager in batches when it is idle (at most every
        100 ms), and this call pushes what is pending before it reads, so what it returns is up
        to date; other readers of the manager's lists may see them lag by up to 100 ms.
        """
        self._check_open()
        return self._mirror.snapshot()

    # -- internals: adding work ------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed or self._stopping:
            msg = "this scheduler is closed; create a new Scheduler to schedule more work"
            raise InitgraphError(msg)
        self._check_fatal()

    def _check_fatal(self) -> None:
        if self._fatal is not None:
            raise self._fatal_error()

    def _fatal_error(self) -> InitgraphError:
        err = InitgraphError(f"the scheduler's pool failed: {self._fatal}")
        err.__cause__ = self._fatal
        return err

    def _add(self, run: Run, after: tuple[int, ...], timeout: float | None) -> None:
        with self._lock:
            self._names[run.cookie] = run.name
            self._domains_of[run.cookie] = run.domain
            self._runs[run.cookie] = run
            if timeout is not None:
                self._timeouts[run.cookie] = timeout
            self._mirror.add(run.domain, run.cookie, run.name)
            self._dispatcher.add(run.cookie, after)
            self._pump()

    def _record(self, cookie: int, outcome: Outcome) -> None:
        with self._lock:
            self._outcomes[cookie] = outcome
            self._names.setdefault(cookie, outcome.name)
            self._runs.pop(cookie, None)
            self._sent.pop(cookie, None)
            self._sent_at.pop(cookie, None)
            self._timeouts.pop(cookie, None)
            self._deadlines.pop(cookie, None)
            domain = self._domains_of.get(cookie)
            if domain is not None:
                self._mirror.remove(domain, cookie)
            self._dispatcher.complete(cookie)
            self._pump()
            self._changed.notify_all()
            for listener in self._listeners:
                listener.put(cookie)

    # -- the seam for work whose payload comes later (the boot) ----------------------------------
    def listen(self) -> queue.SimpleQueue[int]:
        """A queue that receives every cookie whose outcome is recorded from now on.

        It receives 0 if the pool cannot go on (its manager died...): call
        :meth:`raise_if_failed`.
        """
        listener: queue.SimpleQueue[int] = queue.SimpleQueue()
        with self._lock:
            self._listeners.append(listener)
        return listener

    def raise_if_failed(self) -> None:
        """Raise the error that stopped the pool, if it stopped (see :meth:`listen`)."""
        self._check_fatal()

    def reserve(self, *, domain: str, name: str, timeout: float | None = None) -> Reservation:
        """Issue a cookie now for an initcall whose function and data come later.

        It is in progress from now on, like any scheduled initcall; it starts once
        :meth:`Reservation.provide` gives it work (or runs in the caller with
        :meth:`Reservation.run_here`), or never if :meth:`Reservation.cancel` ends it.
        """
        self._check_open()
        didx = self._shared.domain_index(domain, None)
        cookie, _, _ = self._shared.allocate(didx, PARENT, (), sys.maxsize)
        with self._lock:
            self._names[cookie] = name
            self._domains_of[cookie] = domain
            if timeout is not None:
                self._timeouts[cookie] = timeout
            self._mirror.add(domain, cookie, name)
            self._dispatcher.add(cookie, held=True)  # until its payload arrives
        return Reservation(self, cookie)

    def outcome(self, cookie: int) -> Outcome | None:
        """The recorded outcome of ``cookie`` so far (None while it runs)."""
        with self._lock:
            return self._outcomes.get(cookie)

    def _provide(self, cookie: int, func: InitcallFunc, data: Any) -> None:
        name = self._names[cookie]
        run = Run(cookie, self._domains_of[cookie], name, _dump(func, name), _dump(data, name))
        with self._lock:
            self._runs[cookie] = run
            self._dispatcher.release(cookie)
            self._pump()

    def _run_here(self, cookie: int, func: InitcallFunc, data: Any) -> None:
        name, domain = self._names[cookie], self._domains_of[cookie]
        runtime = self._runtime
        runtime.take_waits()
        started = time.monotonic()
        pid = os.getpid()
        try:
            with runtime.running_initcall(cookie, domain):
                value = func(data, cookie)
        except BaseException as exc:
            # KeyboardInterrupt or SystemExit raised by the plugin itself (a real Ctrl-C goes
            # to the main thread): a failure like any other, as in a worker. Uncaught, it would
            # end this thread with no outcome, and the boot would wait for it for ever.
            ended = time.monotonic()
            outcome = Outcome(name, False, None, exc, started, ended, pid, runtime.take_waits())
        else:
            ended = time.monotonic()
            outcome = Outcome(name, True, value, None, started, ended, pid, runtime.take_waits())
        finally:
            self._shared.finish([cookie])
        self._record(cookie, outcome)

    def _cancel(self, cookie: int, error: HookError) -> None:
        self._shared.finish([cookie])
        self._record(cookie, Outcome(self._names[cookie], False, None, error))  # never ran

    def _names_of(self, cookies: Iterable[int]) -> dict[int, str]:
        with self._lock:
            return {c: self._names[c] for c in cookies if c in self._names}

    def _pump(self) -> None:
        """Carry out the dispatcher's decisions: send ready work, grow or shrink the pool."""
        if self._stopping:
            return
        asleep = self._asleep()
        while self._dispatcher.should_grow(self.max_workers, self.workers, asleep):
            self._start_worker()
        assigned = self._dispatcher.assign()
        now = time.monotonic()
        for slot, cookie in assigned:
            run = self._sent[cookie] = self._runs.pop(cookie)
            self._sent_at[cookie] = now
            worker = self._pool[slot]
            timeout = self._timeouts.pop(cookie, None)
            if timeout is not None:
                # Its clock starts when the worker says Started, once the code is loaded (a
                # spawned worker's start and the import of the initcall's module are not its
                # run); until then a generous bound catches a worker stuck before it.
                bound = now + timeout + _LOAD_GRACE
                self._deadlines[cookie] = (bound, slot, timeout)
                self._poke()  # the pool thread may be asleep with no deadline to wake for
                run = self._sent[cookie] = dataclasses.replace(run, timed=True)
            # If it died, its sentinel reports the crash of this initcall.
            with contextlib.suppress(OSError):
                worker.conn.send_bytes(pickle.dumps(run, protocol=pickle.HIGHEST_PROTOCOL))
        for slot in self._dispatcher.surplus(self.workers):
            self._retire(slot)

    # -- internals: workers ----------------------------------------------------------------------
    def _start_worker(self) -> None:
        slot = self._free_worker_slots.pop()
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=_worker.main,
            args=(
                child_conn,
                self._shared,
                PARENT_SLOTS + slot,
                self.max_pending,
                logging.getLogger().getEffectiveLevel(),
                os.getpid(),
            ),
            name=f"initgraph-worker-{slot}",
            daemon=True,
        )
        # An interrupt between the fork and the line that records the worker would leave a
        # worker nobody stops: in the main thread, where Python raises it, hold SIGINT and
        # SIGTERM until the worker is recorded (the worker lets them through again).
        held = _hold_signals()
        try:
            proc.start()
            self._pool[slot] = _Worker(slot, proc, parent_conn)
            self._dispatcher.add_worker(slot)
        finally:
            _release_signals(held)
            child_conn.close()
        self._poke()

    def _retire(self, slot: int) -> None:
        worker = self._pool.pop(slot)
        self._blocked_at.pop(slot, None)
        self._dispatcher.remove_worker(slot)  # idle: it runs nothing
        with contextlib.suppress(OSError):
            worker.conn.send_bytes(pickle.dumps(Stop()))
        worker.proc.join(_STOP_GRACE)
        if worker.proc.is_alive():
            worker.proc.kill()
            worker.proc.join()
        worker.conn.close()
        self._free_worker_slots.append(slot)

    def _poke(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _thread_alive(self) -> bool:
        thread = getattr(self, "_thread", None)
        return thread is not None and thread.is_alive()

    # -- the pool thread -------------------------------------------------------------------------
    def _loop(self) -> None:
        # One selector for the life of the pool (building one per wait cost more than the rest
        # of a dispatch); only this thread touches it, re-registering when the pool changed.
        # poll, not epoll: epoll watches open file descriptions, and workers forked later hold
        # copies of a departed worker's pipe, so epoll would keep reporting that old pipe under
        # a number that now belongs to another.
        selector = selectors.PollSelector()
        selector.register(self._wake_r, selectors.EVENT_READ, None)
        watched: dict[int, _Worker] = {}
        manager_sentinel: int | None = None
        try:
            while True:
                with self._lock:
                    if self._stopping and not self._pool:
                        return
                    if watched != self._pool:  # a worker started, left or was replaced
                        _rewatch(selector, watched, self._pool)
                    timeout = self._next_deadline()
                if manager_sentinel is None and self._mirror.sentinel is not None:
                    manager_sentinel = self._mirror.sentinel
                    selector.register(manager_sentinel, selectors.EVENT_READ, "manager")
                events = selector.select(timeout)
                with self._lock:
                    lost = []
                    for key, _ in events:
                        if key.data is None:
                            os.read(self._wake_r, 4096)
                            continue
                        if key.data == "manager":
                            self._mirror.lost()
                        kind, worker = key.data
                        if worker.slot not in self._pool or self._pool[worker.slot] is not worker:
                            continue
                        if kind == "conn":
                            self._receive(worker)
                        else:
                            lost.append(worker)
                    for worker in lost:
                        self._lost(worker)
                    self._expire()
                    self._unstall()
                    if self._grow_at is not None and time.monotonic() >= self._grow_at:
                        self._grow_at = None  # _pump re-arms it (not while stopping: no spin)
                        self._pump()
                    if self._stopping and not self._pool:
                        return
                if not events and time.monotonic() >= self._mirror.due:
                    # idle: the moment for the manager, off every hot path
                    self._mirror.start()
                    self._mirror.flush()
        except BaseException as exc:  # the pool cannot go on: fail every waiter loudly
            with self._lock:
                self._fatal = exc
                self._changed.notify_all()
                for listener in self._listeners:
                    listener.put(0)  # no cookie: the listener checks _check_fatal()
            self._shared.wake_all()
        finally:
            selector.close()
            self._mirror.stop()

    def _receive(self, worker: _Worker) -> None:
        """Handle one message (the selector reports the worker again while more are there)."""
        try:
            message = pickle.loads(worker.conn.recv_bytes())
        except (EOFError, OSError):
            return  # it died; its sentinel handles the rest
        self._handle(worker, message)

    def _next_deadline(self) -> float | None:
        now = time.monotonic()
        times = [d for d, _, _ in self._deadlines.values()]
        times += [w.kill_at for w in self._pool.values() if w.kill_at is not None]
        if self._stalled is not None:
            times.append(self._stalled[1] + _STALL_GRACE)
        if self._grow_at is not None:
            times.append(self._grow_at)
        if self._mirror.dirty:
            times.append(max(now + _MIRROR_IDLE, self._mirror.due))
        if not times:
            return None
        return max(0.0, min(times) - now)

    def _drain(self, worker: _Worker) -> None:
        while True:
            try:
                if not worker.conn.poll():
                    return
                message = pickle.loads(worker.conn.recv_bytes())
            except (EOFError, OSError):
                return  # it died; the sentinel handles the rest
            self._handle(worker, message)

    def _handle(self, worker: _Worker, message: Any) -> None:
        if isinstance(message, Done):
            self._on_done(message)
        elif isinstance(message, Scheduled):
            self._shared.adopt([message.cookie])
            run = Run(message.cookie, message.domain, message.name, message.func, message.data)
            self._add(run, message.after, message.timeout)
        elif isinstance(message, Blocked):
            self._blocked_at[worker.slot] = time.monotonic()
            self._dispatcher.blocked(worker.slot)
            self._pump()
        elif isinstance(message, Unblocked):
            self._blocked_at.pop(worker.slot, None)
            self._dispatcher.unblocked(worker.slot)
        elif isinstance(message, Started):
            entry = self._deadlines.get(message.cookie)
            if entry is not None:
                _, slot, timeout = entry
                self._deadlines[message.cookie] = (time.monotonic() + timeout, slot, timeout)
        elif isinstance(message, Log):
            record = logging.makeLogRecord(message.record)
            logging.getLogger(record.name).handle(record)
        else:
            msg = f"unknown message from worker {worker.proc.pid}: {message!r}"
            raise AssertionError(msg)

    def _on_done(self, done: Done) -> None:
        if done.ok:
            assert done.value is not None
            try:
                outcome = Outcome(
                    done.name,
                    True,
                    loads(done.value),
                    None,
                    done.started,
                    done.ended,
                    done.pid,
                    done.waits,
                )
            except Exception as exc:
                exc.__cause__ = None
                err = TypeError(f"the result of initcall {done.cookie} cannot be loaded: {exc}")
                outcome = Outcome(done.name, False, None, err, done.started, done.ended)
        else:
            error: BaseException
            try:
                error = loads(done.error) if done.error is not None else RemoteTraceback("")
            except Exception:
                error = RemoteTraceback("")
            if done.tb:
                error.__cause__ = RemoteTraceback(done.tb)
            outcome = Outcome(
                done.name, False, None, error, done.started, done.ended, done.pid, done.waits
            )
        self._record(done.cookie, outcome)

    def _asleep(self) -> set[int]:
        """Workers asleep in a synchronize for GROW_AFTER; arm the timer for the next one."""
        self._grow_at = None
        now = time.monotonic()
        asleep = set()
        for slot, since in self._blocked_at.items():
            if now - since >= GROW_AFTER:
                asleep.add(slot)
            elif self._grow_at is None or since + GROW_AFTER < self._grow_at:
                self._grow_at = since + GROW_AFTER
        return asleep

    def _lost(self, worker: _Worker) -> None:
        """A worker's process ended: report what it ran, release its cookies, replace it."""
        self._drain(worker)
        worker.proc.join()  # reap it first: the shared lock's recovery needs it gone
        exitcode = worker.proc.exitcode
        del self._pool[worker.slot]
        self._blocked_at.pop(worker.slot, None)
        cookie = self._dispatcher.remove_worker(worker.slot)
        worker.conn.close()
        self._free_worker_slots.append(worker.slot)
        released = self._shared.release_owner(PARENT_SLOTS + worker.slot)
        lost = {c for c, _ in released}
        if cookie is not None:
            self._shared.finish([cookie])
            lost.add(cookie)
        for c in sorted(lost):
            name = self._names.get(c, "?")
            if worker.timed_out is not None and worker.timed_out[0] == c:
                limit = worker.timed_out[1]
                msg = (
                    f"initcall {c} {name!r} ran past its timeout of {limit:g} s and was "
                    f"stopped; its worker was replaced"
                )
                err: HookError = HookTimeout(msg, cookie=c, name=name, timeout=limit)
            else:
                how = describe_exitcode(exitcode)
                msg = (
                    f"worker {worker.proc.pid} crashed with {how} while running initcall {c} "
                    f"{name!r}; the worker was replaced"
                )
                err = WorkerCrashed(msg, cookie=c, name=name, exitcode=exitcode)
            # It ran from about when it was sent: a worker starts what it gets on arrival.
            now = time.monotonic()
            started = self._sent_at.get(c, now)
            self._record(c, Outcome(name, False, None, err, started, now, worker.proc.pid))
        if not self._stopping and len(self._pool) < self.workers:
            self._start_worker()
        self._pump()

    def _unstall(self) -> None:
        """Fail the lowest ready initcall when the pool, full and blocked, cannot run it.

        Every worker is blocked in a synchronize and the pool is at max_workers: the kernel's
        bounded-workqueue hang (KERNEL-NOTES, hazard 4). After a grace period the initcall that
        cannot start fails with DeadlockError, which releases whoever waits for it.
        """
        cookie = self._dispatcher.stalled(self.max_workers)
        now = time.monotonic()
        if cookie is None:
            self._stalled = None
            return
        if self._stalled is None or self._stalled[0] != cookie:
            self._stalled = (cookie, now)
            return
        if now - self._stalled[1] < _STALL_GRACE:
            return
        self._stalled = None
        name = self._names.get(cookie, "?")
        msg = (
            f"initcall {cookie} {name!r} could not start: all {self.max_workers} workers "
            f"(max_workers) are blocked in a synchronize waiting on work that cannot run; "
            f"raise max_workers"
        )
        err = DeadlockError(msg)
        self._shared.finish([cookie])
        self._record(cookie, Outcome(name, False, None, err))
        # If the pool is still stuck, the next initcall that cannot start gets its own grace
        # period from now; without this the pool thread slept with no deadline, for ever.
        stuck = self._dispatcher.stalled(self.max_workers)
        self._stalled = None if stuck is None else (stuck, time.monotonic())

    def _expire(self) -> None:
        now = time.monotonic()
        for cookie, (deadline, slot, limit) in list(self._deadlines.items()):
            if deadline > now:
                continue
            del self._deadlines[cookie]
            worker = self._pool.get(slot)
            if worker is None or self._dispatcher.running(slot) != cookie:
                continue
            worker.timed_out = (cookie, limit)
            worker.proc.terminate()
            worker.kill_at = now + _KILL_GRACE
        for worker in self._pool.values():
            if worker.kill_at is not None and worker.kill_at <= now:
                worker.proc.kill()
                worker.kill_at = None

    # -- shutting down ---------------------------------------------------------------------------
    def _shutdown(self, *, wait: bool) -> None:
        if self._closed:
            return
        try:
            if wait and self._fatal is None:
                with self._runtime._wait_slot() as slot:
                    self._shared.wait(slot, W_ALL, 0, 0, None)
                with self._changed:  # and for their outcomes to reach the parent
                    self._changed.wait_for(
                        lambda: self._dispatcher.pending == 0 or self._fatal is not None
                    )
        finally:
            self._closed = True
            _runtime.pop_runtime(self._runtime)
            self._stop_pool(now=not wait)

    def _stop_pool(self, *, now: bool) -> None:
        with self._lock:
            self._stopping = True
            workers = list(self._pool.values())
        try:
            for worker in workers:
                if now:
                    # SIGKILL: what an initcall was doing is abandoned either way, and a worker
                    # still starting has SIGTERM blocked (see _start_worker).
                    worker.proc.kill()
                    continue
                with contextlib.suppress(OSError):
                    worker.conn.send_bytes(pickle.dumps(Stop()))
            deadline = time.monotonic() + _STOP_GRACE
            for worker in workers:
                worker.proc.join(max(0.0, deadline - time.monotonic()))
                if worker.proc.is_alive():
                    worker.proc.kill()
                    worker.proc.join()
        except BaseException:
            # An interrupt while waiting for workers to stop: stop the rest at once and finish
            # the shutdown below, so no process is left behind; then the interrupt goes on.
            for worker in workers:
                with contextlib.suppress(Exception):
                    worker.proc.kill()
                    worker.proc.join()
            self._finish_stop(workers)
            raise
        self._finish_stop(workers)

    def _finish_stop(self, workers: list[_Worker]) -> None:
        """The rest of a stop once ``workers`` are gone: the pool thread, manager, helpers."""
        with self._lock:
            for worker in workers:
                self._pool.pop(worker.slot, None)
                worker.conn.close()
            self._changed.notify_all()
        self._poke()
        thread = getattr(self, "_thread", None)
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        else:
            self._mirror.stop()
        self._shared.wake_all()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        _stop_helpers(self._helpers_before, self._shared.semaphore_names())


class Reservation:
    """A cookie issued by :meth:`Scheduler.reserve` whose work comes later; give it exactly once.

    ``provide(func, data)`` sends ``func(data, cookie)`` to a worker; ``run_here(func, data)`` runs
    it in the calling thread (still in progress for everyone who synchronizes, and covered by
    the deadlock checks); ``cancel(error)`` ends it without running it, with ``error`` as its
    outcome. Whichever way, its outcome reaches :meth:`Scheduler.outcome` and the listeners.
    """

    __slots__ = ("_sched", "cookie")

    def __init__(self, sched: Scheduler, cookie: int) -> None:
        self._sched = sched
        self.cookie = cookie

    def __repr__(self) -> str:
        return f"<Reservation cookie={self.cookie}>"

    def provide(self, func: InitcallFunc, data: Any) -> None:
        """Make it ready to run in a worker; refuses (ConfigError) what cannot be sent."""
        self._sched._provide(self.cookie, func, data)

    def run_here(self, func: InitcallFunc, data: Any) -> None:
        """Run it now in this thread of the parent (a ``where = "main"`` plugin)."""
        self._sched._run_here(self.cookie, func, data)

    def cancel(self, error: HookError) -> None:
        """End it without running it; ``error`` is its outcome."""
        self._sched._cancel(self.cookie, error)


class _Mirror:
    """Each domain's in-progress list, with names, held by a manager process.

    The pool thread records changes as they happen and pushes them in batches when it is idle,
    so no initcall or wake-up waits on the manager.
    """

    def __init__(self, ctx: Any, *, on_start: Callable[[], None]) -> None:
        self._ctx = ctx
        self._on_start = on_start
        self._view: dict[str, dict[int, str]] = {}
        self._dirty: set[str] = set()
        self._manager: Any = None
        self._lists: dict[str, Any] = {}
        self._lock = threading.Lock()  # guards the view
        self._io = threading.Lock()  # one thread at a time talks to the manager
        self._stopped = False
        self._pushed = 0.0  # when the lists were last pushed

    @property
    def dirty(self) -> bool:
        return bool(self._dirty)

    @property
    def due(self) -> float:
        """When the pool thread may push again (see _MIRROR_EVERY)."""
        return self._pushed + _MIRROR_EVERY

    def add(self, domain: str, cookie: int, name: str) -> None:
        with self._lock:
            self._view.setdefault(domain, {})[cookie] = name
            self._dirty.add(domain)

    def remove(self, domain: str, cookie: int) -> None:
        with self._lock:
            self._view.get(domain, {}).pop(cookie, None)
            self._dirty.add(domain)

    def start(self) -> None:
        """Start the manager process, once; a scheduler that is never idle never needs it."""
        with self._io:
            if self._manager is None and not self._stopped:
                from multiprocess.managers import SyncManager  # 7 ms: only once it is needed

                manager = SyncManager(ctx=self._ctx)
                # It must not outlive this process, even one killed with SIGKILL.
                manager.start(initializer=_lifeline.helper_start, initargs=(os.getpid(),))
                self._manager = manager
                self._on_start()  # the pool thread watches its process from now on

    @property
    def sentinel(self) -> int | None:
        """The manager process's sentinel, once it runs."""
        process = getattr(self._manager, "_process", None)
        return None if process is None else int(process.sentinel)

    def lost_from(self, exc: BaseException) -> None:
        try:
            self.lost()
        except InitgraphError as err:
            raise err from exc

    def lost(self) -> None:
        """The manager process died: raise the error that stops the scheduler."""
        process = getattr(self._manager, "_process", None)
        if process is not None:
            process.join(1.0)
        pid = getattr(process, "pid", "?")
        code = describe_exitcode(process.exitcode) if process is not None else "unknown"
        msg = (
            f"initgraph's manager process (pid {pid}) is gone ({code}); the scheduler lost "
            f"its shared in-progress lists and stopped"
        )
        raise InitgraphError(msg)

    def flush(self) -> None:
        """Push what changed since the last flush to the manager."""
        with self._io:
            if self._manager is None:
                return
            with self._lock:
                batch = {d: sorted(self._view.get(d, {}).items()) for d in self._dirty}
                self._dirty.clear()
            self._pushed = time.monotonic()
            try:
                for domain, items in batch.items():
                    lst = self._lists.get(domain)
                    if lst is None:
                        lst = self._lists[domain] = self._manager.list()
                    lst[:] = [list(item) for item in items]
            except (OSError, EOFError) as exc:
                self.lost_from(exc)

    def snapshot(self) -> dict[str, list[tuple[int, str]]]:
        """Each domain's in-progress ``(cookie, name)`` list, as the manager holds it now."""
        self.start()
        self.flush()
        with self._io:
            return {d: [(int(c), str(n)) for c, n in lst] for d, lst in self._lists.items()}

    def stop(self) -> None:
        with self._io:
            self._stopped = True
            manager, self._manager = self._manager, None
            self._lists.clear()
        if manager is not None:
            with contextlib.suppress(Exception):  # it may be gone already
                manager.shutdown()


def _rewatch(selector: Any, watched: dict[int, _Worker], pool: dict[int, _Worker]) -> None:
    # By fd number, taken when registering: a worker that left has closed its pipe, and the
    # number may already belong to the pipe of the worker that replaced it.
    for slot, worker in list(watched.items()):
        if pool.get(slot) is not worker:
            for fd in worker.fds:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    selector.unregister(fd)
            del watched[slot]
    for slot, worker in pool.items():
        if slot not in watched:
            worker.fds = (worker.conn.fileno(), worker.proc.sentinel)
            selector.register(worker.fds[0], selectors.EVENT_READ, ("conn", worker))
            selector.register(worker.fds[1], selectors.EVENT_READ, ("sentinel", worker))
            watched[slot] = worker


def as_hook_error(cookie: int, outcome: Outcome) -> HookError:
    """The HookError ``result()`` raises for a failed outcome."""
    error = outcome.error
    assert error is not None
    if isinstance(error, HookError):
        return error
    text = str(error)
    what = f"{type(error).__name__}: {text}" if text else type(error).__name__
    msg = f"initcall {cookie} {outcome.name!r} raised {what}"
    err = HookError(msg, cookie=cookie, name=outcome.name)
    err.__cause__ = error
    return err


_HELD = {signal.SIGINT, signal.SIGTERM}


def _hold_signals() -> set[int | signal.Signals] | None:
    if threading.current_thread() is not threading.main_thread():
        return None  # Python delivers signals to the main thread only
    return signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)


def _release_signals(previous: set[int | signal.Signals] | None) -> None:
    if previous is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _dump(obj: Any, name: str) -> bytes:
    try:
        return dumps(obj)
    except Exception as exc:
        msg = f"cannot send the work of {name!r} to a worker: {type(exc).__name__}: {exc}"
        raise ConfigError(msg, key="data") from exc


def _positive_int(value: Any, key: str, most: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"{key} must be a positive int, got {value!r} ({type(value).__name__})"
        raise ConfigError(msg, key=key)
    if value > most:
        msg = f"{key} must be at most {most:,}, got {value:,}: {WHY[key]}"
        raise ConfigError(msg, key=key)


def _helper_processes() -> tuple[bool, bool]:
    """Whether multiprocess's resource tracker and fork server run already."""
    from multiprocess import forkserver, resource_tracker

    tracker = resource_tracker._resource_tracker
    server = forkserver._forkserver
    return (
        getattr(tracker, "_pid", None) is not None,
        getattr(server, "_forkserver_pid", None) is not None,
    )


def _stop_helpers(before: tuple[bool, bool], names: set[str]) -> None:
    """Stop the resource tracker and fork server if this scheduler brought them up."""
    from multiprocess import forkserver, resource_tracker, util

    # Unlink our named semaphores now, while we know they are unused: a tracker that stops
    # unlinks whatever is still registered, and their own finalizers would then fail later.
    for fin in list(util._finalizer_registry.values()):
        args = getattr(fin, "_args", None)
        if args and args[0] in names:
            with contextlib.suppress(Exception):
                fin()
    if _runtime._parent_stack:
        return  # another scheduler of this process may still use the helpers
    tracker_before, server_before = before
    if not server_before and getattr(forkserver._forkserver, "_forkserver_pid", None):
        with contextlib.suppress(Exception):
            forkserver._forkserver._stop()
    if not tracker_before and getattr(resource_tracker._resource_tracker, "_pid", None):
        with contextlib.suppress(Exception):
            _stop_tracker(resource_tracker._resource_tracker)


def _stop_tracker(tracker: Any) -> None:
    """Stop multiprocess's resource tracker, killing it if it does not leave within 2 s.

    Its own ``_stop`` waits without a limit, and a child that died while starting can keep the
    tracker's pipe open, so that wait would never end.
    """
    with tracker._lock:
        if tracker._fd is None:
            return
        os.close(tracker._fd)
        tracker._fd = None
        pid, tracker._pid = tracker._pid, None
        deadline = time.monotonic() + _STOP_GRACE
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return
            time.sleep(0.005)  # polling a process that is leaving, bounded above
