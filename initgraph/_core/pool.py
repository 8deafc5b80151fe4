"""The pool loop: the one thread that decides what runs where, and the only writer of its state.

::

    caller threads (schedule, reserve,            pool loop (one thread)
    provide, run_here, in_progress_lists)         ──────────────────────────────────────────
    ───────────────────────────────────           ┌─► 1. wait: wake pipe, worker pipes and
      SharedState.allocate (cookie + domain)      │      sentinels, the manager's sentinel,
      │                                           │      the nearest deadline
      └─► commands ──► SimpleQueue + wake pipe ───┤   2. commands: add, reserve, provide, ...
                                                  │   3. worker messages: on_<message>()
    result() / outcome() / listeners ◄── records ─┤      lost workers (sentinels)
      (Call.outcome, under `changed`)             │   4. expire deadlines: timeouts, kill and
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

Everything the loop decides from (the dispatcher, one :class:`Call` record per cookie, the
deadline heap, the workers) is written by the loop alone, so none of it needs a lock; other
threads hand it commands and read the published records. A worker holds only the initcall it
runs. The shared block (``shared.py``) carries what every process needs at once: cookies and
every domain's in-progress set, so a waiter is woken by the process that finished what it waited
for, without the parent in between.

This module holds the loop (:class:`Pool`: steps 1 and 5, and what other threads call); the
other steps are plain functions of the pool in modules of their own, called in the loop's
thread only: ``commands.py`` (2), ``worker_messages.py`` (3), ``timers.py`` (4). The records
they keep and publish (:class:`Work`, :class:`Call`, :class:`Outcome`) are in ``calls.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import selectors
import signal
import threading
from collections.abc import Callable, Iterable
from typing import Any

from .._errors import InitgraphError
from .calls import Call, Outcome, Retried, Work, inline_of
from .commands import COMMANDS
from .deadlines import Deadlines
from .dispatch import Dispatcher
from .mirror import Mirror
from .shared import SharedState
from .store import Store
from .timers import MIRROR_EVERY, arm_mirror, expire
from .worker_messages import lost, receive
from .workers import Worker, Workers

# Outcome, Retried, Work and inline_of live in calls.py; the scheduler takes them from here.
__all__ = ["Outcome", "Pool", "Retried", "Work", "inline_of", "names_of"]

LOAD_GRACE = 60.0  # seconds a timed initcall may take to start (worker start, imports)
STALL_GRACE = 1.0  # seconds every worker may stay blocked, at max_workers, with work ready
# Seconds a worker that just finished may be kept idle for a held initcall that was waiting for
# it (reserved ``after`` it), while the caller hands over its work: without this, work already
# queued takes the worker in the sub-millisecond between the Done and the caller's provide(), and
# the dependent, often the next step of the critical path, waits for a whole unrelated initcall
# (the realistic benchmark boot: tfidf waited 190 ms behind regex_scan). The boot's hand-over
# takes about a millisecond; past the window, the worker takes other work as before.
SETTLE = 0.02


class Pool:
    """The worker processes, the dispatcher and the loop that is the only one to touch them.

    Built and given its first workers by ``Scheduler``, then run by :meth:`run` in the pool
    thread. Other threads call only :meth:`submit`, :meth:`snapshot`, :meth:`kill_now` and
    read :attr:`calls`, :attr:`fatal` and :attr:`unfinished` (under :attr:`changed`).

    The loop's steps 2 to 4 are functions of the pool in ``commands.py``,
    ``worker_messages.py`` and ``timers.py``: they read and write its public attributes and
    call :meth:`record`, :meth:`ended`, :meth:`not_due`, :meth:`start_mirror` and
    :meth:`start_worker`, in the loop's thread only.
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
        self.calls: dict[int, Call] = {}
        self.changed = threading.Condition()
        self.listeners: list[queue.SimpleQueue[int]] = []
        self.fatal: BaseException | None = None
        self.unfinished = 0  # calls in the pool without an outcome
        self._commands: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        self._watch: _Watch | None = None  # made by run(), in the loop's thread
        self._waiting = False  # the loop waits, or is about to: submit() must wake it
        # The loop's own state, shared with its steps in commands, worker_messages and timers.
        self.asleep: set[int] = set()  # slots blocked in a synchronize for GROW_AFTER
        self.stalled: int | None = None  # the cookie failed when the stall grace ends
        self.busy_at = 0.0  # when the loop last had something to do
        self.busy = False  # this round of the loop has messages or commands to handle
        self.pushed_at = -MIRROR_EVERY  # when the mirror was last pushed
        self.stopping: bool | None = None  # set by the stop command: stop the workers now?
        self.awaited: dict[int, list[int]] = {}  # cookie -> reservations reserved after it
        self.due: set[int] = set()  # reservations whose cookies all ended, work not yet given

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
            while self.stopping is None:
                watch.update(self.workers.by_slot)
                self._waiting = True
                timeout = 0.0 if not self._commands.empty() else self.deadlines.timeout()
                events = watch.selector.select(timeout)
                self._waiting = False
                departed: list[Worker] = []
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
                            receive(self, worker)
                        else:
                            departed.append(worker)
                self.busy = self._run_commands() or bool(events)
                for worker in departed:
                    lost(self, worker)
                expire(self)
                self._pump()
                if self.busy:
                    self.busy_at = self.deadlines.clock()
                arm_mirror(self)
        except BaseException as exc:  # the pool cannot go on: fail every waiter loudly
            self._fail(exc)
        finally:
            watch.selector.close()
            self.close_now(now=self.stopping is not False)

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

    def _run_commands(self) -> bool:
        """Run the commands handed over so far; whether there were any."""
        commands = self._commands
        if commands.empty():
            return False
        while not commands.empty():  # the loop is the only one to take from it
            name, *args = commands.get_nowait()
            COMMANDS[name](self, *args)
        return True

    # -- for the loop's steps ---------------------------------------------------------------------
    def start_mirror(self) -> None:
        """Start the manager if it is not running yet, and watch its process from then on."""
        if self.mirror.start():  # watch the manager's process from now on
            sentinel = self.mirror.sentinel
            assert self._watch is not None
            assert sentinel is not None
            self._watch.selector.register(sentinel, selectors.EVENT_READ, "manager")

    # -- 5. carrying out the dispatcher's decisions ----------------------------------------------
    def _pump(self) -> None:
        """Grow the pool, send ready work to idle workers, retire surplus ones."""
        if self.stopping is not None:
            return
        dispatcher, workers = self.dispatcher, self.workers
        while dispatcher.should_grow(self.max_workers, self.target, self.asleep):
            self.start_worker()
        now = self.deadlines.clock()
        for slot, cookie in dispatcher.assign(keep_idle=len(self.due)):
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
        if stalled != self.stalled:
            self.deadlines.remove(("stall", self.stalled))
            self.stalled = stalled
            if stalled is not None:
                self.deadlines.add(("stall", stalled), now + STALL_GRACE)

    def record(self, cookie: int, outcome: Outcome) -> None:
        """``cookie`` ended with ``outcome``: let go of its work and timers, and publish it.

        The first outcome recorded stands: a later one for the same cookie is closed.
        """
        call = self.calls.get(cookie)
        if call is None:
            call = self.calls[cookie] = Call(cookie, outcome.name, None)
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
        self.not_due(cookie)
        self._settle_for(cookie)
        if call.retried:  # it has run before, and may wait for its next run
            self.deadlines.remove(("retry", cookie))
            outcome.retried = tuple(call.retried)
        with self.changed:
            call.outcome = outcome
            if call.domain is not None:  # it was in the pool (see commands._new_call)
                self.unfinished -= 1
            self.changed.notify_all()
            for listener in self.listeners:
                listener.put(cookie)

    def ended(self, cookie: int) -> bool:
        """Whether ``cookie`` has its outcome."""
        call = self.calls.get(cookie)
        return call is not None and call.outcome is not None

    def _settle_for(self, cookie: int) -> None:
        """``cookie`` ended: keep a worker for each reservation now waiting only for its work."""
        for waiting in self.awaited.pop(cookie, ()):
            call = self.calls[waiting]
            if (
                call.outcome is None
                and call.work is None
                and all(a == cookie or self.ended(a) for a in call.after)
            ):
                self.due.add(waiting)
                self.deadlines.add(("settle", waiting), self.deadlines.clock() + SETTLE)

    def not_due(self, cookie: int) -> None:
        """``cookie`` got its work (or ended): no worker is kept for it any longer."""
        if cookie in self.due:
            self.due.discard(cookie)
            self.deadlines.remove(("settle", cookie))


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


def names_of(pool: Pool, cookies: Iterable[int]) -> dict[int, str]:
    """Names of ``cookies`` the pool knows (read from any thread)."""
    out = {}
    for c in cookies:
        name = pool.name_of(c)
        if name is not None:
            out[c] = name
    return out
