"""The public face of the core: ``Scheduler``, a thin class around the pool loop.

A scheduler checks its arguments, owns the shared state and the pool (``pool.py``, where the
data flow is drawn), and turns each call into either a shared-state operation (allocate a
cookie, wait) done in the caller's thread, or a command for the pool loop, the only writer of
what runs where. Results come back as published records.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

import multiprocess

from .._defs import MAX_NICE, START_METHODS, default_max_workers, positive_int_problem
from .._errors import ConfigError, HookError, InitgraphError
from . import backend as _backend
from . import runtime as _runtime
from .domain import Domain
from .messages import Run, dumps
from .pool import Outcome, Pool, Retried, Work, inline_of, names_of
from .runtime import InitcallFunc, encode_data, seconds
from .shared import PARENT, W_ALL, SharedState
from .store import Encoded, Handle, Store
from .workers import PARENT_SLOTS

__all__ = [
    "Outcome",
    "Reservation",
    "Retried",
    "Scheduler",
    "as_hook_error",
    "default_start_method",
]


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


class _ParentRuntime(_runtime.Runtime):
    """The scheduler's runtime in the parent process: new work goes to the pool loop.

    It holds the pool, not the scheduler: the scheduler holds it, and a reference back would
    make a cycle that only the cyclic garbage collector frees.
    """

    def __init__(self, pool: Pool, shared: SharedState, max_pending: int, store: Store) -> None:
        super().__init__(shared, max_pending, owner=PARENT, store=store)
        self._pool = pool
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
        data: Encoded,
        refs: tuple[Handle, ...],
    ) -> None:
        run = Run(cookie, domain, name, func, len(refs), inline=inline_of(data))
        work = Work(run, data, refs)
        self._pool.submit("add", work, after, timeout)

    def _record_inline(
        self, cookie: int, name: str, ok: bool, value: Any, exc: BaseException | None
    ) -> None:
        now = time.monotonic()
        outcome = Outcome(name, ok, value, exc, now, now, os.getpid(), cookie=cookie)
        self._pool.submit("record", cookie, outcome)

    @contextlib.contextmanager
    def _wait_slot(self) -> Iterator[int]:
        slot = self._free_slots.get()  # more than PARENT_SLOTS waiting threads take turns
        try:
            yield slot
        finally:
            self._free_slots.put(slot)

    def _names(self, cookies: Iterable[int]) -> dict[int, str]:
        return names_of(self._pool, cookies)

    def _note(self, cookie: int, name: str, domain: str) -> None:
        self._pool.submit("note", cookie, name, domain)


class Scheduler:
    """A pool of worker processes that runs initcalls with the kernel's async semantics.

    ``Scheduler(workers=None, *, start_method=None, max_pending=32768, max_workers=None,
    max_result_bytes=None, worker_threads=None, worker_nice=0)``

    - ``workers``: worker processes kept ready (default: the CPU count). A worker asleep in a
      synchronize for 10 ms or more (``GROW_AFTER``) no longer counts: while work waits, the
      pool starts another so that ``workers`` initcalls still run.
    - ``max_workers``: the most the pool may grow to while workers are blocked waiting
      (default: four times ``workers``, at least 16).
    - ``start_method``: ``"fork"``, ``"forkserver"`` or ``"spawn"``; the default is
      :func:`default_start_method`.
    - ``max_pending``: above this many initcalls in progress, ``schedule`` runs the initcall
      inline in the caller (still in progress while it runs, so others synchronize with it),
      or, with ``nocall=True``, refuses it.
    - ``max_result_bytes``: the largest value (result or ``data``) that may cross to another
      process; a larger result fails its initcall with a :class:`HookError` naming both sizes
      (None: no limit but the memory available).
    - ``worker_threads``: the threads each worker's native pools (OpenMP, BLAS) may use, set
      through ``OMP_NUM_THREADS`` and its kin unless set already (default: the CPU count
      divided among ``workers``, at least 1), so workers do not oversubscribe the cores.
    - ``worker_nice``: added to each worker's nice value (0-19; default 0): with every core
      busy, the scheduler's own threads and the rest of the calling process (an event loop
      serving requests) then get a CPU before the workers do.

    Results and ``data`` travel by pickle only (dill serializes functions, never values):
    what pickle cannot send (a file, a socket, a lock, a generator...) is refused. Large ones
    cross through shared memory, written once; arrays arrive read-only (``arr.copy()`` for a
    writable one).

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
        max_result_bytes: int | None = None,
        worker_threads: int | None = None,
        worker_nice: int = 0,
    ) -> None:
        self._closed = True  # until fully started, so a failed start tears down cleanly
        if workers is None:
            workers = os.cpu_count() or 1
        _check_positive_int(workers, "workers")
        _check_positive_int(max_pending, "max_pending")
        if max_workers is None:
            max_workers = default_max_workers(workers)
        _check_positive_int(max_workers, "max_workers")
        if max_workers < workers:
            msg = f"max_workers ({max_workers}) must be at least workers ({workers})"
            raise ConfigError(msg, key="max_workers")
        if max_result_bytes is not None:
            _check_count(max_result_bytes, "max_result_bytes")
        if worker_threads is None:
            worker_threads = max(1, (os.cpu_count() or 1) // workers)
        _check_count(worker_threads, "worker_threads")
        if (
            not isinstance(worker_nice, int)
            or isinstance(worker_nice, bool)
            or not 0 <= worker_nice <= MAX_NICE
        ):
            msg = f"worker_nice must be an integer from 0 to {MAX_NICE}, got {worker_nice!r}"
            raise ConfigError(msg, key="worker_nice")
        method = start_method if start_method is not None else default_start_method()
        if method not in START_METHODS:
            msg = f"start_method must be one of {', '.join(START_METHODS)}, got {method!r}"
            raise ConfigError(msg, key="start_method")
        self.workers = workers
        self.max_workers = max_workers
        self.max_pending = max_pending
        self.max_result_bytes = max_result_bytes
        self.worker_threads = worker_threads
        self.worker_nice = worker_nice
        self.start_method = method
        ctx = multiprocess.get_context(method)
        self._helpers_before = _backend.helper_processes()
        self._shared = SharedState(
            ctx, slots=PARENT_SLOTS + max_workers, capacity=max_pending + 4096
        )
        self._store = Store(max_result_bytes=max_result_bytes)
        try:
            self._pool = Pool(
                ctx,
                self._shared,
                target=workers,
                max_workers=max_workers,
                max_pending=max_pending,
                store=self._store,
                threads=worker_threads,
                nice=worker_nice,
            )
        except BaseException:  # out of descriptors: the block goes back now
            self._shared.close()
            raise
        self._runtime = _ParentRuntime(self._pool, self._shared, max_pending, self._store)
        self._mirror = self._pool.mirror
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._closed = False
        try:
            self._shared.domain_index("default", False)
            if method == "forkserver":
                _backend.ensure_fork_server()
            for _ in range(workers):
                self._pool.start_worker()
            self._thread = threading.Thread(
                target=self._pool.run, name="initgraph-pool", daemon=True
            )
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
        nocall: bool = False,
    ) -> int:
        """Schedule ``func(data, cookie)`` to run in a worker; return its cookie at once.

        ``domain``: a :class:`Domain` or a name (None: the default domain). ``after``: cookies
        that must complete before it starts. ``timeout``: seconds it may run before its worker is
        stopped (:class:`HookTimeout`). ``name``: for errors, logs and traces. Something that
        cannot be sent to a worker is refused here with a :class:`ConfigError` naming it.
        ``nocall``: when more than ``max_pending`` initcalls are in progress, raise
        :class:`InitgraphError` instead of running ``func`` inline in the caller (which can
        deadlock if the caller holds a lock ``func`` needs); nothing was scheduled then.
        """
        self._check_open()
        return self._runtime.schedule(
            func, data, domain=domain, after=after, timeout=timeout, name=name, nocall=nocall
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
        """Wait for initcall ``cookie`` and return its value, or raise its :class:`HookError`.

        A result from a worker is loaded on the first call (a :class:`HookError` naming the
        initcall if it cannot be); its arrays are read-only views of shared memory.
        """
        if isinstance(cookie, bool) or not isinstance(cookie, int) or cookie < 1:
            msg = f"cookie must be a positive int, got {cookie!r}"
            raise ConfigError(msg, key="cookie")
        if cookie > self._shared.last_cookie:
            msg = f"no initcall has cookie {cookie}: the last cookie issued is "
            msg += f"{self._shared.last_cookie}"
            raise ConfigError(msg, key="cookie")
        timeout = seconds(timeout, f"result({cookie})", zero=True)
        deadline = None if timeout is None else time.monotonic() + timeout
        pool = self._pool
        with pool.changed:
            while (outcome := self.outcome(cookie)) is None:
                self._check_fatal()
                if self._closed and not self._thread_alive():
                    msg = f"the scheduler was closed before initcall {cookie} reported"
                    raise InitgraphError(msg)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    name = pool.name_of(cookie) or "?"
                    msg = f"result({cookie}) timed out after {timeout} s; initcall {cookie} "
                    msg += f"{name!r} is still in progress"
                    raise TimeoutError(msg)
                pool.changed.wait(remaining)
        if outcome.ok:
            return outcome.value
        raise as_hook_error(cookie, outcome)

    def close(self) -> None:
        """Wait for every domain (exclusive ones too), then stop every process started.

        When it returns, every process, descriptor and shared mapping the scheduler made is
        gone; outcomes already recorded can still be read (:meth:`result`, :meth:`outcome`).
        """
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
        return list(self._pool.workers.pids)

    def in_progress_lists(self) -> dict[str, list[tuple[int, str]]]:
        """Each domain's in-progress ``(cookie, name)`` list as the manager process holds it.

        The pool loop pushes changes to the manager in batches when it is idle (at most every
        100 ms), and this call has it push what is pending before it reads, so what it returns
        is up to date; other readers of the manager's lists may see them lag by up to 100 ms.
        """
        self._check_open()
        return self._pool.snapshot(self._thread_alive)

    def listen(self) -> queue.SimpleQueue[int]:
        """A queue that receives every cookie whose outcome is recorded from now on.

        It receives 0 if the pool cannot go on (its manager died...): call
        :meth:`raise_if_failed`.
        """
        listener: queue.SimpleQueue[int] = queue.SimpleQueue()
        with self._pool.changed:
            self._pool.listeners.append(listener)
        return listener

    def raise_if_failed(self) -> None:
        """Raise the error that stopped the pool, if it stopped (see :meth:`listen`)."""
        self._check_fatal()

    def outcome(self, cookie: int) -> Outcome | None:
        """The recorded outcome of ``cookie`` so far (None while it runs)."""
        call = self._pool.calls.get(cookie)
        return None if call is None else call.outcome

    # -- the seam for work whose payload comes later (the boot) ----------------------------------
    def reserve(
        self,
        *,
        domain: str,
        name: str,
        timeout: float | None = None,
        owner: str | None = None,
        after: Iterable[int] = (),
    ) -> Reservation:
        """Issue a cookie now for an initcall whose function and data come later.

        It is in progress from now on, like any scheduled initcall; it starts once
        :meth:`Reservation.provide` gives it work (or runs in the caller with
        :meth:`Reservation.run_here`), or never if :meth:`Reservation.cancel` ends it.
        ``owner`` names its values in errors (default ``"initcall <cookie> '<name>'"``; the
        boot says ``"plugin '<name>'"``, and errors then suggest ``where = "main"``).

        ``after``: cookies whose outcomes its work waits for (the caller provides it once they
        ended). It does not start before they end, and when the last of them ends in a worker,
        that worker is kept for it for a moment (``pool.SETTLE``) while the caller provides it,
        instead of taking other queued work: a dependent follows what it waited for at once.
        """
        self._check_open()
        after = tuple(after)
        didx = self._shared.domain_index(domain, None)
        cookie, _, _ = self._shared.allocate(didx, PARENT, (), sys.maxsize)
        self._pool.submit("reserve", cookie, name, domain, timeout, after)
        return Reservation(self, cookie, name, domain, owner)

    def _record_here(self, cookie: int, outcome: Outcome) -> None:
        """Record the outcome of an initcall that ended in this process."""
        self._shared.finish([cookie])
        self._pool.submit("record", cookie, outcome)

    # -- internals -------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed or self._stopping:
            msg = "this scheduler is closed; create a new Scheduler to schedule more work"
            raise InitgraphError(msg)
        self._check_fatal()

    def _check_fatal(self) -> None:
        fatal = self._pool.fatal
        if fatal is not None:
            # Not kept in a local: its traceback holds this frame, and that would be a cycle.
            raise InitgraphError(f"the scheduler's pool failed: {fatal}") from fatal

    def _thread_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _shutdown(self, *, wait: bool) -> None:
        if self._closed:
            return
        pool = self._pool
        try:
            if wait and pool.fatal is None:
                with self._runtime._wait_slot() as slot:
                    self._shared.wait(slot, W_ALL, 0, 0, None)
                with pool.changed:  # and for their outcomes to reach the parent
                    pool.changed.wait_for(lambda: pool.unfinished == 0 or pool.fatal is not None)
        finally:
            self._closed = self._stopping = True
            _runtime.pop_runtime(self._runtime)
            self._stop_pool(now=not wait)

    def _stop_pool(self, *, now: bool) -> None:
        """Have the pool loop stop its workers and end; then stop the helpers we started."""
        pool, thread = self._pool, self._thread
        try:
            if thread is None:  # the start failed before the loop ran
                pool.close_now(now=True)
            else:
                pool.submit("stop", now)
                try:
                    thread.join()
                except BaseException:
                    # An interrupt while the workers leave: stop them at once, then go on.
                    pool.kill_now()
                    thread.join()
                    raise
        finally:
            # Every process of ours has ended: what this one holds goes now, not when the
            # scheduler is collected. Closing the shared state wakes whoever still waits on it.
            self._shared.close()
            pool.close_fds()
            pool.release_values()
            _backend.stop_helpers(
                self._helpers_before,
                self._shared.semaphore_names(),
                others=bool(_runtime._parent_stack),
            )


class Reservation:
    """A cookie issued by :meth:`Scheduler.reserve` whose work comes later; give it exactly once.

    ``provide(func, data)`` sends ``func(data, cookie)`` to a worker; ``run_here(func, data)`` runs
    it in the calling thread (still in progress for everyone who synchronizes, and covered by
    the deadlock checks); ``cancel(error)`` ends it without running it, with ``error`` as its
    outcome. Whichever way, its outcome reaches :meth:`Scheduler.outcome` and the listeners.
    """

    __slots__ = ("_domain", "_name", "_owner", "_sched", "cookie")

    def __init__(
        self, sched: Scheduler, cookie: int, name: str, domain: str, owner: str | None = None
    ) -> None:
        self._sched = sched
        self._name = name
        self._domain = domain
        self._owner = owner
        self.cookie = cookie

    def __repr__(self) -> str:
        return f"<Reservation cookie={self.cookie}>"

    def provide(self, func: InitcallFunc, data: Any, *, retry_delays: Iterable[float] = ()) -> None:
        """Make it ready to run in a worker; refuses (ConfigError) what cannot be sent.

        A :class:`~initgraph._core.store.Handle` in ``data`` (``Outcome.handle``: a result not
        loaded here) is forwarded as it is, and the worker finds it there, still a handle.
        ``retry_delays``: if its worker crashes or it times out, run it again on a fresh worker
        after the first delay, once per delay, instead of ending it: it stays in progress (the
        same cookie) until a run ends, and its outcome lists the runs lost (``retried``).
        """
        name, owner = self._name, self._owner
        delays = tuple(retry_delays)
        for delay in delays:
            if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not delay >= 0:
                msg = f"retry_delays of {name!r} must be seconds (0 or more), got {delay!r}"
                raise ConfigError(msg, key="retry_delays")
        func_b = _dump(func, name)
        refs: list[Handle] = []
        what = f"data of {owner or repr(name)}"
        encoded = encode_data(self._sched._store, data, what, refs)
        run = Run(
            self.cookie,
            self._domain,
            name,
            func_b,
            len(refs),
            owner=owner,
            inline=inline_of(encoded),
        )
        work = Work(run, encoded, tuple(refs))
        self._sched._pool.submit("provide", self.cookie, work, tuple(map(float, delays)))

    def run_here(self, func: InitcallFunc, data: Any) -> Outcome:
        """Run it now in this thread of the parent (a ``where = "main"`` plugin); its outcome.

        The outcome reaches :meth:`Scheduler.outcome` and the listeners too, through the pool
        loop, so a little later.
        """
        cookie, name = self.cookie, self._name
        runtime = self._sched._runtime
        runtime.take_waits()
        started = time.monotonic()
        pid = os.getpid()
        try:
            with runtime.running_initcall(cookie, self._domain):
                value = func(data, cookie)
        except BaseException as exc:
            # KeyboardInterrupt or SystemExit raised by the plugin itself (a real Ctrl-C goes
            # to the main thread): a failure like any other, as in a worker. Uncaught, it would
            # end this thread with no outcome, and the boot would wait for it for ever.
            ended = time.monotonic()
            waits = runtime.take_waits()
            outcome = Outcome(name, False, None, exc, started, ended, pid, waits, cookie=cookie)
        else:
            ended = time.monotonic()
            waits = runtime.take_waits()
            outcome = Outcome(name, True, value, None, started, ended, pid, waits, cookie=cookie)
        self._sched._record_here(cookie, outcome)
        return outcome

    async def arun_here(self, func: Callable[[Any, int], Awaitable[Any]], data: Any) -> Outcome:
        """:meth:`run_here` for a coroutine function, awaited on the calling thread's loop.

        The loop's thread counts as running the initcall until ``func`` is done, so nothing
        else of this scheduler may run there meanwhile (a boot runs its main inits one by one).
        A cancellation is an outcome like any error: the caller decides to raise it again.
        """
        cookie, name = self.cookie, self._name
        runtime = self._sched._runtime
        runtime.take_waits()
        started = time.monotonic()
        pid = os.getpid()
        try:
            with runtime.running_initcall(cookie, self._domain):
                value = await func(data, cookie)
        except BaseException as exc:
            ended = time.monotonic()
            outcome = Outcome(name, False, None, exc, started, ended, pid, runtime.take_waits())
        else:
            ended = time.monotonic()
            outcome = Outcome(name, True, value, None, started, ended, pid, runtime.take_waits())
        self._sched._record_here(cookie, outcome)
        return outcome

    def cancel(self, error: HookError) -> None:
        """End it without running it; ``error`` is its outcome."""
        outcome = Outcome(self._name, False, None, error, cookie=self.cookie)
        self._sched._record_here(self.cookie, outcome)


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


def _check_positive_int(value: Any, key: str) -> None:
    problem = positive_int_problem(value, key)
    if problem is not None:
        raise ConfigError(problem, key=key)


def _check_count(value: Any, key: str) -> None:
    """A positive int with no upper bound but the machine's."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"{key} must be a positive int, got {value!r} ({type(value).__name__})"
        raise ConfigError(msg, key=key)


def _dump(obj: Any, name: str) -> bytes:
    try:
        return dumps(obj)
    except Exception as exc:
        msg = f"cannot send the work of {name!r} to a worker: {type(exc).__name__}: {exc}"
        raise ConfigError(msg, key="data") from exc
