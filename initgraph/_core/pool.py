"""The pool loop: the one thread that decides what runs where, and the only writer of its state.

::

    caller threads (schedule, reserve,            pool loop (one thread)
    provide, run_here, in_progress_lists)         ──────────────────────────────────────────
    ───────────────────────────────────           ┌─► 1. wait: wake pipe, worker pipes and
      SharedState.allocate (cookie + domain)      │      sentinels, the manager's sentinel,
      │                                           │      the nearest deadline
      └─► commands ──► SimpleQueue + wake pipe ───┤   2. commands: add, reserve, provide, ...
                                                  │   3. worker messages: worker_<message>()
    result() / outcome() / listeners ◄── records ─┤      lost workers (sentinels)
      (_Call.outcome, under `changed`)            │   4. expire deadlines: timeouts, kill and
                                                  │      stall graces, growth, mirror push
                                                  │   5. pump: Dispatcher (pure) grows the
                                                  │      pool, assigns ready work, retires
                                                  └──────┬────────────────────────────────┘
                                                         │ Run (one per idle worker)
                                  worker processes ◄─────┘
                                  run func(data, cookie); SharedState.finish wakes the
                                  waiters; Done / Scheduled / Blocked / Unblocked / Started /
                                  Log back through the pipe ─► 3.

    manager process (in-progress lists with names) ◄── Mirror pushes, when the loop is idle

Values go through the store (``store.py``). A small one (below the threshold) rides inside
its message as its ``Ref``, a plain tuple; a larger one follows its message on the worker's
socket as a frame whose sealed shared-memory segment's descriptor is passed. The loop keeps a
result unloaded in its :class:`Outcome` (the ``Ref``, or the frame's
:class:`~initgraph._core.store.Handle`); loading is left to whoever reads ``Outcome.value``. A
handle in ``data`` is forwarded (the same segment, its descriptor passed again), never loaded
and pickled again.

Everything the loop decides from (the dispatcher, one :class:`_Call` record per cookie, the
deadline heap, the workers) is written by the loop alone, so none of it needs a lock; other
threads hand it commands and read the published records. A worker holds only the initcall it
runs. The shared block (``shared.py``) carries what every process needs at once: cookies and
every domain's in-progress set, so a waiter is woken by the process that finished what it waited
for, without the parent in between.
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
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from .._errors import (
    DeadlockError,
    HookError,
    HookTimeout,
    InitgraphError,
    RemoteTraceback,
    WorkerCrashed,
    describe_exitcode,
)
from .deadlines import Deadlines
from .dispatch import GROW_AFTER, Dispatcher
from .messages import Blocked, Done, Log, Run, Scheduled, Started, Unblocked, WaitRecord, load_error
from .mirror import Mirror
from .shared import SharedState
from .store import Encoded, Handle, PackedRef, Ref, Store
from .workers import PARENT_SLOTS, Worker, Workers

__all__ = ["Outcome", "Pool", "Retried", "Work"]

_LOG = logging.getLogger("initgraph.retry")

KILL_GRACE = 1.0  # seconds between SIGTERM and SIGKILL for a timed-out initcall
LOAD_GRACE = 60.0  # seconds a timed initcall may take to start (worker start, imports)
STALL_GRACE = 1.0  # seconds every worker may stay blocked, at max_workers, with work ready
# Seconds a worker that just finished may be kept idle for a held initcall that was waiting for
# it (reserved ``after`` it), while the caller hands over its work: without this, work already
# queued takes the worker in the sub-millisecond between the Done and the caller's provide(), and
# the dependent, often the next step of the critical path, waits for a whole unrelated initcall
# (the realistic benchmark boot: tfidf waited 190 ms behind regex_scan). The boot's hand-over
# takes about a millisecond; past the window, the worker takes other work as before.
SETTLE = 0.02
# The manager-held lists are pushed once the loop has been idle this long (seconds), and at
# most once per MIRROR_EVERY: each push is a manager round trip that pickles the lists with
# dill. in_progress_lists() always pushes first.
MIRROR_IDLE = 0.005
MIRROR_EVERY = 0.1


class Outcome:
    """How an initcall ended: its value (``ok``) or error, when and where it ran, its waits.

    ``started``/``ended`` are ``time.monotonic()`` readings (0.0 when it never ran).

    A result from a worker stays as it came until :attr:`value` is first read, which loads it
    (once, whichever thread asks first; the parent imports the modules of its classes only
    then) or raises a :class:`HookError` naming the initcall when it cannot be loaded: a small
    result as the bytes that came inside its ``Done``, a larger one in its store frame.
    :attr:`handle` can be put into the ``data`` of other initcalls: it is forwarded to them,
    not loaded here. ``nbytes``, ``serialize_s``, ``transfer_s`` and ``load_s`` (None until
    loaded) time its way here; all zero for a value made in the parent.
    """

    __slots__ = (
        "_handle",
        "_inline",
        "_load_s",
        "_lock",
        "_store",
        "_value",
        "cookie",
        "ended",
        "error",
        "name",
        "ok",
        "pid",
        "retried",
        "serialize_s",
        "started",
        "waits",
    )

    def __init__(
        self,
        name: str,
        ok: bool,
        value: Any = None,
        error: BaseException | None = None,
        started: float = 0.0,
        ended: float = 0.0,
        pid: int = 0,
        waits: tuple[WaitRecord, ...] = (),
        *,
        cookie: int = 0,
        handle: Handle | None = None,
        inline: Ref | None = None,
        store: Store | None = None,
        serialize_s: float = 0.0,
        retried: tuple[Retried, ...] = (),
    ) -> None:
        """``handle``: a result in its store frame; ``inline``: a small one that came inside
        its message, and ``store`` the store to make its :attr:`handle` with if one is asked
        for."""
        self.name = name
        self.ok = ok
        self.error = error
        self.started = started
        self.ended = ended
        self.pid = pid
        self.waits = waits
        self.cookie = cookie
        self.serialize_s = serialize_s
        self.retried = retried  # its earlier runs, lost to a crash or a timeout
        self._value = value
        self._handle = handle
        self._inline = inline
        self._store = store
        self._load_s: float | None = None
        # No Handle for a small result (one less object per initcall); a lock until loaded.
        loaded = handle is None and inline is None
        self._lock = None if loaded else threading.Lock()

    @property
    def value(self) -> Any:
        """The initcall's value (None when it failed), loaded on first access."""
        lock = self._lock
        if lock is None:
            return self._value
        with lock:
            if self._lock is not None:
                self._value = self._load()
                self._lock = None
            return self._value

    def _load(self) -> Any:
        inline, handle = self._inline, self._handle
        try:
            if inline is not None:
                began = time.perf_counter()
                value = inline.load()
                self._load_s = time.perf_counter() - began
                return value
            assert handle is not None
            return handle.value()
        except Exception as exc:
            closed = inline is None and handle is not None and handle.closed
            text = "the scheduler was closed before it was read" if closed else exc
            msg = f"the result of initcall {self.cookie} {self.name!r} cannot be loaded: {text}"
            # Not kept in a local: its traceback holds this frame, and that would be a cycle.
            raise HookError(msg, cookie=self.cookie, name=self.name) from exc

    @property
    def handle(self) -> Handle | None:
        """The result as a store handle, to forward to other initcalls (None: no result)."""
        if self._handle is None and self._inline is not None:
            assert self._store is not None
            self._handle = self._store.inline_handle(self._inline)
        return self._handle

    def close(self) -> None:
        """Let go of the result's store frame: a result not read yet can no longer be (a small
        one, which holds no descriptor, still can)."""
        if self._handle is not None:
            self._handle.close()

    @property
    def nbytes(self) -> int:
        """Bytes of its result on the way here (0: made in the parent, or failed)."""
        if self._inline is not None:
            return self._inline.size
        return 0 if self._handle is None else self._handle.nbytes

    @property
    def transfer_s(self) -> float:
        """Seconds its store frame took to come (0.0: none; a small result came in its Done)."""
        return 0.0 if self._inline is not None or self._handle is None else self._handle.transfer_s

    @property
    def load_s(self) -> float | None:
        if self._inline is not None:
            return self._load_s
        return None if self._handle is None else self._handle.load_s

    def __repr__(self) -> str:
        state = "ok" if self.ok else f"failed: {self.error!r}"
        return f"<Outcome {self.cookie} {self.name!r} {state}>"


@dataclass(frozen=True)
class Retried:
    """A run of an initcall lost to a crash or a timeout, after which the pool ran it again.

    ``started``/``ended`` are ``time.monotonic()`` readings; ``delay``: seconds the pool waited
    before the next run.
    """

    started: float
    ended: float
    error: str
    delay: float


def inline_of(data: Encoded | Handle) -> PackedRef | None:
    """What a message carries of a small value instead of a frame of its own (None: a frame)."""
    return data.ref.packed() if data.inline else None


@dataclass(eq=False)
class Work:
    """An initcall's work on its way to a worker: the Run, then its values' frames.

    ``data`` (an encoding made here, or a frame received from a worker that scheduled it) is
    the work's own, closed once sent; ``refs``, the handles ``data`` holds, are forwarded before
    it, and closed with it only when ``owns_refs`` (received with it from a worker).
    """

    run: Run
    data: Encoded | Handle
    refs: tuple[Handle, ...] = ()
    owns_refs: bool = False

    def send(self, conn: Any, store: Store) -> None:
        run, data = self.run, self.data
        conn.send_bytes(pickle.dumps(run, protocol=pickle.HIGHEST_PROTOCOL))
        for handle in self.refs:
            handle.forward(conn)
        if run.inline is not None:  # small: it went inside the Run (see inline_of)
            return
        if isinstance(data, Handle):
            data.forward(conn)
        else:
            store.send(conn, data)

    def close(self) -> None:
        self.data.close()
        if self.owns_refs:
            for handle in self.refs:
                handle.close()


@dataclass(eq=False)
class _Call:
    """Everything the pool knows of one cookie, from the moment it hears of it."""

    cookie: int
    name: str
    domain: str | None  # None: it ran inline and never entered the pool
    work: Work | None = None  # its work, until sent (None while held)
    timeout: float | None = None
    sent_at: float = 0.0
    worker: Worker | None = None
    outcome: Outcome | None = None  # published under Pool.changed
    # Crash retries: the delay before each run left, the work to send again, the runs lost.
    retry_delays: tuple[float, ...] = ()
    sent: Work | None = None
    retried: list[Retried] = dataclasses.field(default_factory=list)
    after: tuple[int, ...] = ()  # a reservation's: the cookies it waits for


class Pool:
    """The worker processes, the dispatcher and the loop that is the only one to touch them.

    Built and given its first workers by ``Scheduler``, then run by :meth:`run` in the pool
    thread. Other threads call only :meth:`submit`, :meth:`snapshot`, :meth:`kill_now` and
    read :attr:`calls`, :attr:`fatal` and :attr:`unfinished` (under :attr:`changed`).
    """

    def __init__(
        self,
        ctx: Any,
        shared: SharedState,
        *,
        target: int,
        max_workers: int,
        max_pending: int,
        store: Store,
        threads: int = 1,
        nice: int = 0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.shared = shared
        self.target = target
        self.max_workers = max_workers
        self.store = store
        self.dispatcher = Dispatcher()
        self.workers = Workers(
            ctx, shared, max_workers, max_pending, threads, store.max_result_bytes, nice
        )
        self.mirror = Mirror(ctx)
        self.deadlines = Deadlines() if clock is None else Deadlines(clock)
        self.calls: dict[int, _Call] = {}
        self.changed = threading.Condition()
        self.listeners: list[queue.SimpleQueue[int]] = []
        self.fatal: BaseException | None = None
        self.unfinished = 0  # calls in the pool without an outcome
        self._commands: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        self._watch: _Watch | None = None  # made by run(), in the loop's thread
        self._asleep: set[int] = set()  # slots blocked in a synchronize for GROW_AFTER
        self._stalled: int | None = None  # the cookie failed when the stall grace ends
        self._busy_at = 0.0  # when the loop last had something to do
        self._busy = False  # this round of the loop has messages or commands to handle
        self._waiting = False  # the loop waits, or is about to: submit() must wake it
        self._pushed_at = -MIRROR_EVERY  # when the mirror was last pushed
        self._stop: bool | None = None  # set by the stop command: stop the workers now?
        self._awaited: dict[int, list[int]] = {}  # cookie -> reservations reserved after it
        self._due: set[int] = set()  # reservations whose cookies all ended, work not yet given

    # -- what other threads call -----------------------------------------------------------------
    def submit(self, *command: Any) -> None:
        """Hand the loop a command (``command_<name>``), and wake it if it waits."""
        self._commands.put(command)
        # A byte per wait, not per command: a loop on its way round finds the command (run()
        # says it waits before it looks at the queue, we look after the put), and a caller
        # scheduling a burst does not wake the loop, and hand it the GIL, at every schedule.
        if self._waiting:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")

    def snapshot(self, alive: Callable[[], bool]) -> dict[str, list[tuple[int, str]]]:
        """The manager's lists, after the loop started the manager and pushed every change."""
        reply: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.submit("snapshot", reply)
        while True:
            try:
                answer = reply.get(timeout=1.0)  # bounded only in case the loop died meanwhile
            except queue.Empty:
                if not alive():
                    msg = "the scheduler's pool stopped before it could answer"
                    raise InitgraphError(msg) from self.fatal
                continue
            if isinstance(answer, BaseException):
                raise answer
            return answer  # type: ignore[no-any-return]

    def kill_now(self) -> None:
        """SIGKILL every worker from any thread (an interrupt while the loop stops them)."""
        for pid in self.workers.pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def name_of(self, cookie: int) -> str | None:
        call = self.calls.get(cookie)
        return None if call is None else call.name

    def running_pid(self, cookie: int) -> int | None:
        """The pid of the worker running ``cookie``, if one does."""
        call = self.calls.get(cookie)
        worker = None if call is None or call.outcome is not None else call.worker
        return None if worker is None else worker.pid

    def start_worker(self) -> None:
        """Start a worker (the loop's thread, or the scheduler's before the loop runs)."""
        self.dispatcher.add_worker(self.workers.start().slot)

    def close_fds(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def release_values(self) -> None:
        """Close every store descriptor the parent holds: results not read, work not sent.

        For the close path, once the loop has ended. A result already read stays readable
        (its outcome keeps the value, its arrays keep their mapping); one never read can no
        longer be (``Outcome.value`` says the scheduler was closed).
        """
        for call in list(self.calls.values()):
            work, call.work = call.work, None
            if work is not None:
                work.close()
            while True:  # the loop's commands not taken: work never handed over
                try:
                    command = self._commands.get_nowait()
                except queue.Empty:
                    break
                for arg in command:
                    if isinstance(arg, Work):
                        arg.close()
            if call.outcome is not None:
                call.outcome.close()

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> None:
        """The pool thread: wait, take commands, handle messages, expire deadlines, pump."""
        self._watch = watch = _Watch(self._wake_r)
        try:
            while self._stop is None:
                watch.update(self.workers.by_slot)
                self._waiting = True
                timeout = 0.0 if not self._commands.empty() else self.deadlines.timeout()
                events = watch.selector.select(timeout)
                self._waiting = False
                lost: list[Worker] = []
                for key, _ in events:
                    if key.data is None:
                        os.read(self._wake_r, 4096)
                    elif key.data == "manager":
                        raise self.mirror.lost()
                    else:
                        kind, worker = key.data
                        assert isinstance(worker, Worker)
                        if self.workers.by_slot.get(worker.slot) is not worker:
                            continue  # it left in this same round
                        if kind == "conn":
                            self._receive(worker)
                        else:
                            lost.append(worker)
                self._busy = self._run_commands() or bool(events)
                for worker in lost:
                    self._lost(worker)
                self._expire()
                self._pump()
                if self._busy:
                    self._busy_at = self.deadlines.clock()
                self._arm_mirror()
        except BaseException as exc:  # the pool cannot go on: fail every waiter loudly
            self._fail(exc)
        finally:
            watch.selector.close()
            self.close_now(now=self._stop is not False)

    def close_now(self, *, now: bool) -> None:
        """Stop the workers and the manager (the loop's last step, or a start that failed)."""
        try:
            self.workers.stop_all(now=now)
        finally:
            self.mirror.stop()

    def _fail(self, exc: BaseException) -> None:
        with self.changed:
            self.fatal = exc
            self.changed.notify_all()
            for listener in self.listeners:
                listener.put(0)  # no cookie: the listener checks raise_if_failed()
        self.shared.wake_all()
        while True:  # answer whoever asked for a snapshot
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            if command[0] == "snapshot":
                command[1].put(InitgraphError(f"the scheduler's pool failed: {exc}"))

    # -- 2. commands from other threads ----------------------------------------------------------
    def _run_commands(self) -> bool:
        """Run the commands handed over so far; whether there were any."""
        commands = self._commands
        if commands.empty():
            return False
        while not commands.empty():  # the loop is the only one to take from it
            name, *args = commands.get_nowait()
            getattr(self, f"command_{name}")(*args)
        return True

    def command_add(self, work: Work, after: tuple[int, ...], timeout: float | None) -> None:
        """An initcall scheduled in the parent (or, via worker_scheduled, in a worker)."""
        run = work.run
        self._new_call(run.cookie, run.name, run.domain, timeout, work=work)
        self.dispatcher.add(run.cookie, after)

    def command_reserve(
        self,
        cookie: int,
        name: str,
        domain: str,
        timeout: float | None,
        after: tuple[int, ...] = (),
    ) -> None:
        """A cookie issued now whose work comes later (held until provided), after ``after``."""
        self._new_call(cookie, name, domain, timeout)
        self.calls[cookie].after = after
        self.dispatcher.add(cookie, after, held=True)
        for awaited in after:
            if not self._ended(awaited):
                self._awaited.setdefault(awaited, []).append(cookie)

    def command_provide(
        self, cookie: int, work: Work, retry_delays: tuple[float, ...] = ()
    ) -> None:
        """Work for a reserved cookie; ``retry_delays``: one run more per delay after a crash."""
        call = self.calls[cookie]
        self._not_due(cookie)
        if call.outcome is None:
            call.work = work
            call.retry_delays = retry_delays
            self.dispatcher.release(cookie)
        else:
            work.close()

    def command_note(self, cookie: int, name: str, domain: str) -> None:
        """An initcall runs inline in the parent: known by name, never dispatched."""
        if cookie not in self.calls:
            self.calls[cookie] = _Call(cookie, name, None)

    def command_record(self, cookie: int, outcome: Outcome) -> None:
        """An initcall that ran (or was cancelled) in the parent ended."""
        self._record(cookie, outcome)

    def command_snapshot(self, reply: queue.SimpleQueue[Any]) -> None:
        try:
            self._start_mirror()
            self.mirror.flush()
            reply.put(self.mirror.snapshot())
        except BaseException as exc:
            reply.put(exc)
            raise

    def command_stop(self, now: bool) -> None:
        self._stop = now

    def _new_call(
        self, cookie: int, name: str, domain: str, timeout: float | None, work: Work | None = None
    ) -> None:
        self.calls[cookie] = _Call(cookie, name, domain, work, timeout)
        self.unfinished += 1
        self.mirror.add(domain, cookie, name)

    # -- 3. worker messages ----------------------------------------------------------------------
    def _receive(self, worker: Worker) -> bool:
        """Handle one message; False once the pipe is closed (its sentinel handles the rest).

        The selector reports the worker again while more messages are there.
        """
        try:
            message = pickle.loads(worker.conn.recv_bytes())
        except (EOFError, OSError):
            return False
        handler = _HANDLERS.get(type(message))
        if handler is None:
            msg = f"unknown message from worker {worker.pid}: {message!r}"
            raise AssertionError(msg)
        handler(self, worker, message)
        return True

    def worker_done(self, worker: Worker, done: Done) -> None:
        handle = None
        if done.ok and done.inline is None:  # its result's frame follows, under the same lock
            try:
                handle = self.store.receive(worker.conn)
            except (EOFError, OSError):
                return  # killed between the two: its sentinel reports the crash
        self._record(done.cookie, _outcome_of(done, handle, self.store))

    def worker_scheduled(self, worker: Worker, message: Scheduled) -> None:
        refs: list[Handle] = []
        try:
            for _ in range(message.handles):
                refs.append(self.store.receive(worker.conn))
            if message.inline is not None:  # small: inside the message
                data = self.store.inline_handle(Ref(*message.inline))
            else:
                data = self.store.receive(worker.conn)
        except (EOFError, OSError):
            # Killed part way: the cookie is still the worker's, and is lost with it (_lost).
            for handle in refs:
                handle.close()
            return
        self.shared.adopt([message.cookie])
        run = Run(
            message.cookie,
            message.domain,
            message.name,
            message.func,
            len(refs),
            inline=inline_of(data),
        )
        self.command_add(
            Work(run, data, tuple(refs), owns_refs=True), message.after, message.timeout
        )

    def worker_blocked(self, worker: Worker, message: Blocked) -> None:
        self.dispatcher.blocked(worker.slot)
        self.deadlines.add(("grow", worker.slot), self.deadlines.clock() + GROW_AFTER)

    def worker_unblocked(self, worker: Worker, message: Unblocked) -> None:
        self.dispatcher.unblocked(worker.slot)
        self.deadlines.remove(("grow", worker.slot))
        self._asleep.discard(worker.slot)

    def worker_started(self, worker: Worker, message: Started) -> None:
        call = self.calls.get(message.cookie)
        key = ("timeout", message.cookie)
        if call is not None and call.timeout is not None and key in self.deadlines:
            self.deadlines.add(key, self.deadlines.clock() + call.timeout)

    def worker_log(self, worker: Worker, message: Log) -> None:
        record = logging.makeLogRecord(message.record)
        logging.getLogger(record.name).handle(record)

    def _lost(self, worker: Worker) -> None:
        """A worker's process ended: report what it ran, release its cookies, replace it."""
        self._drain(worker)
        exitcode = self.workers.reap(worker)
        slot = worker.slot
        self.deadlines.remove(("kill", worker))
        self.deadlines.remove(("grow", slot))
        self._asleep.discard(slot)
        cookie = self.dispatcher.remove_worker(slot)
        released = self.shared.release_owner(PARENT_SLOTS + slot)
        lost = {c for c, _ in released}
        now = self.deadlines.clock()
        if cookie is not None:
            call = self.calls.get(cookie)
            if call is not None and call.retry_delays and self._stop is None:
                self._run_again(call, _lost_error(worker, cookie, call.name, exitcode), now)
            else:
                self.shared.finish([cookie])
                lost.add(cookie)
        for c in sorted(lost):
            call = self.calls.get(c)
            name = call.name if call is not None else "?"
            err = _lost_error(worker, c, name, exitcode)
            if call is not None and call.retried:
                runs = len(call.retried) + 1
                err.args = (f"{err.args[0]}; it crashed or timed out on each of its {runs} runs",)
            # It ran from about when it was sent: a worker starts what it gets on arrival.
            started = call.sent_at if call is not None and call.sent_at else now
            self._record(c, Outcome(name, False, None, err, started, now, worker.pid, cookie=c))
        if self._stop is None and len(self.workers) < self.target:
            self.start_worker()

    def _run_again(self, call: _Call, error: HookError, now: float) -> None:
        """Run ``call`` again after its first retry delay; it stays in progress meanwhile."""
        delay, call.retry_delays = call.retry_delays[0], call.retry_delays[1:]
        call.retried.append(Retried(call.sent_at or now, now, str(error), delay))
        call.work, call.sent, call.worker = call.sent, None, None
        self.deadlines.remove(("timeout", call.cookie))
        self.dispatcher.requeue(call.cookie)
        self.deadlines.add(("retry", call.cookie), now + delay)
        retry = len(call.retried)
        _LOG.warning(
            "%s; crash retry %d of %d in %g s",
            error,
            retry,
            retry + len(call.retry_delays),
            delay,
            extra={"initgraph_plugin": call.name, "initgraph_attempt": len(call.retried) + 1},
        )

    def _drain(self, worker: Worker) -> None:
        """Handle what a lost worker sent before it ended."""
        while True:
            try:
                if not worker.conn.poll():
                    return
            except (EOFError, OSError):
                return
            if not self._receive(worker):
                return

    # -- 4. deadlines ----------------------------------------------------------------------------
    def _expire(self) -> None:
        for key in self.deadlines.expire():
            kind, what = cast("tuple[str, Any]", key)
            getattr(self, f"_expired_{kind}")(what)

    def _expired_timeout(self, cookie: int) -> None:
        call = self.calls[cookie]
        worker = call.worker
        if worker is None or self.dispatcher.running(worker.slot) != cookie:
            return
        assert call.timeout is not None
        worker.timed_out = (cookie, call.timeout)
        worker.proc.terminate()
        self.deadlines.add(("kill", worker), self.deadlines.clock() + KILL_GRACE)

    def _expired_settle(self, cookie: int) -> None:
        self._due.discard(cookie)

    def _expired_kill(self, worker: Worker) -> None:
        if self.workers.by_slot.get(worker.slot) is worker:
            worker.proc.kill()

    def _expired_retry(self, cookie: int) -> None:
        if self.calls[cookie].outcome is None:
            self.dispatcher.release(cookie)

    def _expired_grow(self, slot: int) -> None:
        self._asleep.add(slot)  # asleep long enough: it no longer counts as running

    def _expired_stall(self, cookie: int) -> None:
        """Fail the lowest ready initcall when the pool, full and blocked, cannot run it.

        Every worker is blocked in a synchronize and the pool is at max_workers: the bounded
        workqueue hang the kernel met. After a grace period the initcall that cannot start
        fails with DeadlockError, which releases whoever waits for it; if the pool is still
        stuck, the next one gets its own grace period from then (see _pump).
        """
        self._stalled = None
        name = self.calls[cookie].name
        msg = (
            f"initcall {cookie} {name!r} could not start: all {self.max_workers} workers "
            f"(max_workers) are blocked in a synchronize waiting on work that cannot run; "
            f"raise max_workers"
        )
        self.shared.finish([cookie])
        self._record(cookie, Outcome(name, False, None, DeadlockError(msg), cookie=cookie))

    def _expired_mirror(self, _: object) -> None:
        now = self.deadlines.clock()
        # Idle: a round with nothing to do, MIRROR_IDLE after the last work. A loop that
        # waited for the GIL or a CPU (a caller scheduling, a loaded machine) is not idle:
        # taking that for idleness pushed thousands of in-progress entries through dill's
        # Python pickler once or twice per 2,000 no-op initcalls, 10-80 ms of the loop each.
        if self._busy or now - self._busy_at < MIRROR_IDLE:  # the manager can wait
            self.deadlines.add(
                ("mirror", None), (now if self._busy else self._busy_at) + MIRROR_IDLE
            )
            return
        self._start_mirror()
        self.mirror.flush()
        self._pushed_at = now

    def _arm_mirror(self) -> None:
        if self.mirror.dirty and ("mirror", None) not in self.deadlines:
            now = self.deadlines.clock()
            due = max(now + MIRROR_IDLE, self._pushed_at + MIRROR_EVERY)
            self.deadlines.add(("mirror", None), due)

    def _start_mirror(self) -> None:
        if self.mirror.start():  # watch the manager's process from now on
            sentinel = self.mirror.sentinel
            assert self._watch is not None
            assert sentinel is not None
            self._watch.selector.register(sentinel, selectors.EVENT_READ, "manager")

    # -- 5. carrying out the dispatcher's decisions ----------------------------------------------
    def _pump(self) -> None:
        """Grow the pool, send ready work to idle workers, retire surplus ones."""
        if self._stop is not None:
            return
        dispatcher, workers = self.dispatcher, self.workers
        while dispatcher.should_grow(self.max_workers, self.target, self._asleep):
            self.start_worker()
        now = self.deadlines.clock()
        for slot, cookie in dispatcher.assign(keep_idle=len(self._due)):
            call = self.calls[cookie]
            work, call.work = call.work, None
            assert work is not None
            if call.retry_delays:
                call.sent = work  # to send again if its worker is lost: not closed until then
            call.worker = worker = workers.by_slot[slot]
            call.sent_at = now
            if call.timeout is not None:
                # Its clock starts when the worker says Started, once the code is loaded (a
                # spawned worker's start and the import of the initcall's module are not its
                # run); until then a generous bound catches a worker stuck before it.
                self.deadlines.add(("timeout", cookie), now + call.timeout + LOAD_GRACE)
                work.run = dataclasses.replace(work.run, timed=True)
            try:
                work.send(worker.conn, self.store)
            except OSError:
                pass  # the worker died: its sentinel reports the crash of this initcall
            finally:
                if call.sent is not work:
                    work.close()  # its segment lives on in the socket and the worker
        for slot in dispatcher.surplus(self.target):
            dispatcher.remove_worker(slot)  # idle: it runs nothing
            self.deadlines.remove(("grow", slot))
            workers.retire(slot)
        stalled = dispatcher.stalled(self.max_workers)
        if stalled != self._stalled:
            self.deadlines.remove(("stall", self._stalled))
            self._stalled = stalled
            if stalled is not None:
                self.deadlines.add(("stall", stalled), now + STALL_GRACE)

    def _record(self, cookie: int, outcome: Outcome) -> None:
        call = self.calls.get(cookie)
        if call is None:
            call = self.calls[cookie] = _Call(cookie, outcome.name, None)
        if call.outcome is not None:
            outcome.close()
            return
        if call.timeout is not None:
            self.deadlines.remove(("timeout", cookie))
        if call.domain is not None:
            self.mirror.remove(call.domain, cookie)
        for held in (call.work, call.sent):
            if held is not None:
                held.close()
        call.work = call.sent = None
        self.dispatcher.complete(cookie)
        self._not_due(cookie)
        self._settle_for(cookie)
        if call.retried:  # it has run before, and may wait for its next run
            self.deadlines.remove(("retry", cookie))
            outcome.retried = tuple(call.retried)
        with self.changed:
            call.outcome = outcome
            if call.domain is not None:  # it was in the pool (see _new_call)
                self.unfinished -= 1
            self.changed.notify_all()
            for listener in self.listeners:
                listener.put(cookie)

    def _ended(self, cookie: int) -> bool:
        call = self.calls.get(cookie)
        return call is not None and call.outcome is not None

    def _settle_for(self, cookie: int) -> None:
        """``cookie`` ended: keep a worker for each reservation now waiting only for its work."""
        for waiting in self._awaited.pop(cookie, ()):
            call = self.calls[waiting]
            if (
                call.outcome is None
                and call.work is None
                and all(a == cookie or self._ended(a) for a in call.after)
            ):
                self._due.add(waiting)
                self.deadlines.add(("settle", waiting), self.deadlines.clock() + SETTLE)

    def _not_due(self, cookie: int) -> None:
        if cookie in self._due:
            self._due.discard(cookie)
            self.deadlines.remove(("settle", cookie))


# What the loop does with each message from a worker. Functions, not bound methods kept on the
# pool: those would refer back to it, a cycle that only the cyclic garbage collector frees.
_HANDLERS: dict[type, Callable[[Pool, Worker, Any], None]] = {
    Done: Pool.worker_done,
    Scheduled: Pool.worker_scheduled,
    Blocked: Pool.worker_blocked,
    Unblocked: Pool.worker_unblocked,
    Started: Pool.worker_started,
    Log: Pool.worker_log,
}


class _Watch:
    """What the loop waits on: its wake pipe, each worker's pipe and sentinel, the manager.

    poll, not epoll: epoll watches open file descriptions, and workers forked later hold copies
    of a departed worker's pipe, so epoll would keep reporting that old pipe under a number that
    now belongs to another. One selector for the pool's life: building one per wait cost more
    than the rest of a dispatch.
    """

    def __init__(self, wake_fd: int) -> None:
        self.selector = selectors.PollSelector()
        self.selector.register(wake_fd, selectors.EVENT_READ, None)
        self._watched: dict[int, tuple[Worker, int, int]] = {}  # slot -> worker, pipe, sentinel

    def update(self, pool: dict[int, Worker]) -> None:
        """Watch exactly the workers of ``pool``."""
        selector, watched = self.selector, self._watched
        # By fd number, taken when registering: a worker that left has closed its pipe, and the
        # number may already belong to the pipe of the worker that replaced it.
        for slot, (worker, conn_fd, sentinel) in list(watched.items()):
            if pool.get(slot) is not worker:
                for fd in (conn_fd, sentinel):
                    with contextlib.suppress(KeyError, ValueError, OSError):
                        selector.unregister(fd)
                del watched[slot]
        for slot, worker in pool.items():
            if slot not in watched:
                fds = (worker.conn.fileno(), worker.proc.sentinel)
                selector.register(fds[0], selectors.EVENT_READ, ("conn", worker))
                selector.register(fds[1], selectors.EVENT_READ, ("sentinel", worker))
                watched[slot] = (worker, *fds)


def _lost_error(worker: Worker, cookie: int, name: str, exitcode: int | None) -> HookError:
    """The failure of initcall ``cookie``, lost with ``worker``: a timeout or a crash."""
    if worker.timed_out is not None and worker.timed_out[0] == cookie:
        limit = worker.timed_out[1]
        msg = (
            f"initcall {cookie} {name!r} ran past its timeout of {limit:g} s and was "
            f"stopped; its worker was replaced"
        )
        return HookTimeout(msg, cookie=cookie, name=name, timeout=limit)
    how = describe_exitcode(exitcode)
    msg = (
        f"worker {worker.pid} crashed with {how} while running initcall {cookie} "
        f"{name!r}; the worker was replaced"
    )
    return WorkerCrashed(msg, cookie=cookie, name=name, exitcode=exitcode)


def _outcome_of(done: Done, handle: Handle | None, store: Store) -> Outcome:
    times = (done.started, done.ended, done.pid, done.waits)
    if done.ok:
        return Outcome(
            done.name,
            True,
            None,
            None,
            *times,
            cookie=done.cookie,
            handle=handle,
            inline=None if done.inline is None else Ref(*done.inline),
            store=store,
            serialize_s=done.serialize_s,
        )
    error = load_error(done.error, done.error_info, done.tb)
    if done.tb:
        error.__cause__ = RemoteTraceback(done.tb)
    if done.unsent:  # the store refused the result: the initcall fails with its error
        refused = HookError(str(error), cookie=done.cookie, name=done.name)
        refused.__cause__ = error
        error = refused
    return Outcome(done.name, False, None, error, *times, cookie=done.cookie)


def names_of(pool: Pool, cookies: Iterable[int]) -> dict[int, str]:
    """Names of ``cookies`` the pool knows (read from any thread)."""
    out = {}
    for c in cookies:
        name = pool.name_of(c)
        if name is not None:
            out[c] = name
    return out
