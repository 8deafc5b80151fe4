"""Shared state every process of a scheduler reads and writes: cookies, domains, waiters.

Everything the hot paths need lives in one block of shared memory behind one lock, so that
allocating a cookie, entering or leaving a domain and deciding whether a waiter may pass never
wait on a manager round trip (a manager call costs about as much as dispatching a whole
initcall). :class:`SharedState` maps the block and holds the lock and the wait slots'
semaphores; the block's two tables are pure layouts over it, each in a module of its own::

    lock word     the lock's holder pid, and whether the state is closed        (here)
    wait slots    per wait slot: what its sleeper waits for                     (waitslots.py)
    in progress   the cookie counter, each domain's lowest in-progress cookie   (inprogress.py)
                  and count, every in-progress cookie in order, domain names

A finishing process updates the domain's low-water mark and posts the semaphore of each sleeper
whose condition now holds: one ``sem_post`` per woken waiter, no polling and no ``notify_all``
that blocks the notifier. If a worker dies, the parent removes the entries it owned and empties
its wait slot (:meth:`SharedState.release_owner`), so a crash can never leave a cookie in
progress forever.
"""

from __future__ import annotations

import mmap
import os
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from .._errors import ConfigError, InitgraphError
from . import backend as _backend
from .inprogress import (
    PARENT,
    W_ALL,
    W_COOKIE,
    W_DONE,
    W_FULL_ALL,
    W_FULL_DOMAIN,
    W_NONE,
    InProgressTable,
    int64_arrays,
)
from .lifeline import alive
from .waitslots import WaitSlots

__all__ = [
    "PARENT",
    "W_ALL",
    "W_COOKIE",
    "W_DONE",
    "W_FULL_ALL",
    "W_FULL_DOMAIN",
    "W_NONE",
    "SharedState",
]

# the lock word
_HOLDER, _CLOSED = range(2)
_LOCK_WORD = 2

_LOCK_PATIENCE = 2.0  # seconds before a waiter for the lock checks that its holder is alive


def _layout(slots: int, capacity: int) -> tuple[int, int, int]:
    """The byte offsets of the wait slots and of the in-progress table, and the block's size."""
    waits = 8 * _LOCK_WORD
    table = waits + WaitSlots.nbytes(slots)  # both sizes are multiples of 8: int64s aligned
    end = table + InProgressTable.nbytes(capacity)
    page = os.sysconf("SC_PAGE_SIZE")
    return waits, table, -(-end // page) * page


class SharedState:
    """The shared block, its lock and the wait slots' semaphores; picklable to workers."""

    # laid over the block by _map()
    _word: memoryview
    _guard: _BlockLock
    _waits: WaitSlots
    _table: InProgressTable

    def __init__(self, ctx: Any, *, slots: int, capacity: int) -> None:
        from multiprocess.heap import Arena  # here: import initgraph stays light

        self.slots = slots
        self.capacity = capacity
        self._lock: Any = ctx.Lock()
        # One mapping of its own rather than ctx.RawArray: the multiprocess heap keeps the arenas
        # it grew (up to 4 MiB each, an fd and a /dev/shm mapping apiece) for the rest of the
        # process, and how many depends on how earlier blocks were freed. Ours goes with close()
        # (or the last reference to this object), and a spawned worker gets it by its fd.
        self._arena: Any = Arena(_layout(slots, capacity)[2])
        self._index: dict[str, int] = {}
        self._map(self._arena.buffer)
        try:
            self._sems: list[Any] = [ctx.Semaphore(0) for _ in range(slots)]
        except BaseException:
            self.close()  # out of semaphores (or interrupted): give back the block now
            raise
        self._sem_names = {
            n for n in (getattr(s._semlock, "name", None) for s in (self._lock, *self._sems)) if n
        }

    def _map(self, buffer: Any) -> None:
        """Lay the lock word and the two tables over ``buffer``."""
        waits, table, _ = _layout(self.slots, self.capacity)
        self._word = int64_arrays(buffer, 0, _LOCK_WORD)[0]
        self._guard = _BlockLock(self._lock, self._word)
        self._waits = WaitSlots(buffer, self.slots, waits)
        self._table = InProgressTable(buffer, self.capacity, table)

    def __getstate__(self) -> dict[str, Any]:
        if self._arena is None:
            msg = "this shared state is closed and cannot be sent to a process"
            raise InitgraphError(msg)
        state = self.__dict__.copy()
        state["_index"] = {}
        for name in ("_word", "_guard", "_waits", "_table"):
            del state[name]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._map(self._arena.buffer)

    def close(self) -> None:
        """Unmap the block, close its file and drop the semaphores, now; idempotent.

        The scheduler calls it once every other process of it has ended. Every sleeper is woken
        first, as by :meth:`wake_all`. From then on the tables lie over a private copy of the
        block, marked closed, and the lock and wait slots are this process's own: a thread that
        still reads (``last_cookie`` after close) sees the final state, and one that still
        waits is told the state is closed, instead of touching memory that is gone.
        """
        arena = self._arena
        if arena is None:
            return
        lock = self._lock
        lock.acquire()  # no thread of this process is inside a critical section from here
        try:
            self._wake_closed()
            self._word[_HOLDER] = 0
            # An anonymous private mapping, not a heap block: it goes back to the system with
            # the object, whatever state the allocator's heap is in.
            copy = mmap.mmap(-1, arena.size, flags=mmap.MAP_PRIVATE)
            copy.write(arena.buffer)
            self._lock = threading.Lock()
            self._map(copy)  # drops the views of the arena
            # A sleeper just posted holds its own reference: its semaphore is closed once it
            # wakes, the others' now.
            self._sems = [threading.Semaphore(0) for _ in range(self.slots)]
            self._arena = None
        finally:
            lock.release()
        del lock
        _backend.close_arena(arena)

    def semaphore_names(self) -> set[str]:
        """Names of the named semaphores behind the lock and the wait slots (spawn, forkserver)."""
        return set(self._sem_names)

    def locked(self) -> _BlockLock:
        """The shared lock, to hold in a ``with``; a holder that died with it is recovered."""
        return self._guard

    # -- domains ---------------------------------------------------------------------------------
    def domain_index(self, name: str, exclusive: bool | None) -> int:
        """The index of domain ``name``, declaring it if new (registered unless ``exclusive``)."""
        index = self._index.get(name)
        if index is not None and exclusive is None:
            return index
        with self._guard:
            table = self._table
            index = table.find_domain(name)
            if index is None:
                index = table.declare(name, bool(exclusive))
            was_exclusive = table.is_exclusive(index)
            if exclusive is not None and was_exclusive != exclusive:
                was = "exclusive" if was_exclusive else "registered"
                now = "exclusive" if exclusive else "registered"
                msg = (
                    f"domain {name!r} is already declared {was} and cannot also be {now}; "
                    f"use one Domain({name!r}, exclusive={not exclusive}) everywhere"
                )
                raise ConfigError(msg, key="domain")
        self._index[name] = index
        return index

    def domain_names(self) -> dict[int, tuple[str, bool]]:
        """Every declared domain: index -> (name, exclusive)."""
        return self._table.domain_names()

    def exclusive_names(self) -> frozenset[str]:
        """Names of the exclusive domains."""
        return frozenset(name for name, excl in self.domain_names().values() if excl)

    # -- cookies ---------------------------------------------------------------------------------
    def allocate(
        self, domain: int, owner: int, after: tuple[int, ...], max_pending: int
    ) -> tuple[int, tuple[int, ...], bool]:
        """Issue the next cookie and enter it in ``domain``, in one step under the lock.

        Returns the cookie, the cookies of ``after`` still in progress, and whether the caller
        must run the initcall inline because more than ``max_pending`` are in progress.
        """
        with self._guard:
            return self._table.allocate(domain, owner, after, max_pending)

    def finish(self, cookies: tuple[int, ...] | list[int]) -> None:
        """Mark ``cookies`` complete and wake the waiters they were holding back."""
        guard = self._guard
        guard.acquire()
        try:
            remove = self._table.remove
            touched = False
            for cookie in cookies:
                touched |= remove(cookie)
            if touched:
                self._wake()
        finally:
            guard.release()

    def adopt(self, cookies: tuple[int, ...] | list[int]) -> None:
        """The parent has heard of ``cookies``: a worker's death no longer removes them."""
        with self._guard:
            for cookie in cookies:
                self._table.set_owner(cookie, PARENT)

    def set_owner(self, cookie: int, owner: int) -> None:
        """Record which worker slot runs ``cookie`` inline, so its death releases it."""
        with self._guard:
            self._table.set_owner(cookie, owner)

    def release_owner(self, owner: int) -> list[tuple[int, int]]:
        """Remove every entry ``owner`` held (it died) and clear its wait slot.

        Returns the removed ``(cookie, domain index)`` pairs.
        """
        with self._guard:
            table = self._table
            removed = table.owned_by(owner)
            for cookie, _ in removed:
                table.remove(cookie)
            if 0 <= owner < self.slots:
                self._waits.cancel(owner)
            if removed:
                self._wake()
            return removed

    def is_in_progress(self, cookie: int) -> bool:
        """Whether ``cookie`` has been issued and not yet completed."""
        with self._guard:
            return self._table.find(cookie) is not None

    def in_progress(self, domain: int | None = None) -> list[tuple[int, int]]:
        """In-progress ``(cookie, domain index)`` pairs, in cookie order (all domains if None)."""
        with self._guard:
            return self._table.in_progress(domain)

    @property
    def last_cookie(self) -> int:
        """The last cookie issued (0 before the first)."""
        return self._table.last_cookie

    def low(self, domain: int) -> int:
        """The lowest in-progress cookie of ``domain``, 0 when none."""
        return self._table.low(domain)

    def count(self, domain: int) -> int:
        """How many initcalls of ``domain`` are in progress."""
        return self._table.count(domain)

    # -- waiting ---------------------------------------------------------------------------------
    def wait(
        self,
        slot: int,
        kind: int,
        domain: int,
        cookie: int,
        deadline: float | None,
        on_sleep: Callable[[bool], None] | None = None,
    ) -> bool:
        """Sleep on wait slot ``slot`` until the condition holds; False if ``deadline`` passed.

        ``kind`` is a ``W_*`` (see ``InProgressTable.satisfied``). ``on_sleep(True)`` is called
        before the first sleep and ``on_sleep(False)`` after the last, so a worker can tell the
        parent it is blocked (invariant 5).
        """
        sem = self._sems[slot]
        slept = False
        try:
            while True:
                with self._guard:
                    if self._table.satisfied(kind, domain, cookie):
                        return True
                    if self._word[_CLOSED]:
                        msg = "the scheduler was closed while this process waited on it"
                        raise InitgraphError(msg)
                    self._waits.register(slot, kind, domain, cookie)
                if not slept and on_sleep is not None:
                    on_sleep(True)
                slept = True
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                if sem.acquire(True, timeout):
                    # The waker posts only once the condition holds, and what a waiter waits
                    # for, once true, has been true: return without taking the lock again.
                    if self._word[_CLOSED]:
                        continue  # woken by close(): the check above raises
                    return True
                with self._guard:
                    # Still registered: the time ran out. Emptied already: woken just as the
                    # time ran out, so take the post.
                    timed_out = self._waits.cancel(slot)
                if not timed_out:
                    sem.acquire()
                    continue
                with self._guard:
                    if self._table.satisfied(kind, domain, cookie):
                        return True
                return False
        finally:
            if slept and on_sleep is not None:
                on_sleep(False)

    def wake_all(self) -> None:
        """Wake every sleeper to re-check (used when closing)."""
        with self._guard:
            self._wake_closed()

    # -- internals (lock held) -------------------------------------------------------------------
    def _wake(self) -> None:
        """Post the semaphore of each sleeper whose condition now holds."""
        if self._waits.asleep:
            for slot in self._waits.take_satisfied(self._table.satisfied):
                self._sems[slot].release()

    def _wake_closed(self) -> None:
        self._word[_CLOSED] = 1
        for slot in self._waits.take_all():
            self._sems[slot].release()


class _BlockLock:
    """The block's lock: a process lock, with its holder's pid in the lock word.

    A process killed inside a critical section leaves the lock held; the next process that has
    waited :data:`_LOCK_PATIENCE` for it finds the holder dead and takes the lock over. Each
    critical section leaves the block consistent at every store that matters, so that is safe.
    """

    __slots__ = ("_lock", "_word")

    def __init__(self, lock: Any, word: memoryview) -> None:
        self._lock = lock
        self._word = word

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock, taking it over from a dead holder."""
        if not self._lock.acquire(timeout=_LOCK_PATIENCE):
            self._acquire_slow()
        self._word[_HOLDER] = _PID.pid

    def release(self) -> None:
        """Give the lock back."""
        self._word[_HOLDER] = 0
        self._lock.release()

    def _acquire_slow(self) -> None:
        while True:
            holder = self._word[_HOLDER]
            if holder and not alive(holder):
                self._word[_HOLDER] = 0
                with suppress(ValueError):
                    self._lock.release()
            if self._lock.acquire(timeout=_LOCK_PATIENCE):
                return
            if self._word[_CLOSED]:
                msg = "the scheduler's shared state was closed while waiting for it"
                raise InitgraphError(msg)


class _Pid:
    """This process's pid, read once per process (not once per lock)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self.pid = os.getpid()


_PID = _Pid()
