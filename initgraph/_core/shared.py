"""Shared state every process of a scheduler reads and writes: cookies, domains, waiters.

Everything the hot paths need lives in one block of shared memory behind one lock, so that
allocating a cookie, entering or leaving a domain and deciding whether a waiter may pass never
wait on a manager round trip (a manager call costs about as much as dispatching a whole
initcall)::

    header     counter (last cookie issued), total in progress, ring head/tail, waiters asleep,
               registered in progress, lock holder pid
    domains    per domain: lowest in-progress cookie (0: none), count in progress, flags
    names      per domain: its name (the table is append-only, so an index never changes)
    ring       every in-progress cookie in increasing order: (cookie, domain, owner); a finished
               entry becomes a tombstone and the ring is compacted when it fills up
    waiters    per wait slot: what a sleeping waiter waits for; each slot has its own semaphore

Cookies are appended in increasing order under the lock, so the ring stays sorted and a
domain's lowest in-progress cookie only moves forward. A finishing process updates the domain's
low-water mark and posts the semaphore of each sleeper whose condition now holds: one
``sem_post`` per woken waiter, no polling and no ``notify_all`` that blocks the notifier.

The owner of an entry is the wait slot of the worker that allocated it until the parent has
heard of it (or of the worker running it inline); if that worker dies, the parent removes the
entries it owned, so a crash can never leave a cookie in progress forever.
"""

from __future__ import annotations

import bisect
import ctypes
import functools
import mmap
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from .._errors import ConfigError, InitgraphError
from . import backend as _backend
from .lifeline import alive

__all__ = ["PARENT", "SharedState"]

MAX_DOMAINS = 64
NAME_LEN = 128
PARENT = -1  # owner of entries the parent knows about

# header fields
_COUNTER, _TOTAL, _HEAD, _TAIL, _SLEEPERS, _REGISTERED, _HOLDER, _CLOSED = range(8)
_HEADER = 8
# domain fields
_LOW, _COUNT, _FLAGS = range(3)
_DOMAIN_FIELDS = 3
_USED, _EXCLUSIVE = 1, 2
# waiter kinds
W_NONE, W_COOKIE, W_FULL_DOMAIN, W_FULL_ALL, W_DONE, W_ALL = range(6)
_WAITER_FIELDS = 3  # kind, domain index, cookie

_LOCK_PATIENCE = 2.0  # seconds before a waiter for the lock checks that its holder is alive


def _layout(slots: int, capacity: int) -> tuple[dict[str, tuple[Any, int, int]], int]:
    """Each field's (ctype, length, byte offset) in the shared block, and the block's size."""
    lengths: list[tuple[str, Any, int]] = [
        ("_header", ctypes.c_int64, _HEADER),
        ("_domains", ctypes.c_int64, MAX_DOMAINS * _DOMAIN_FIELDS),
        ("_ring_cookie", ctypes.c_int64, capacity),
        ("_ring_domain", ctypes.c_int64, capacity),
        ("_ring_owner", ctypes.c_int64, capacity),
        ("_waiters", ctypes.c_int64, slots * _WAITER_FIELDS),
        ("_names", ctypes.c_char, MAX_DOMAINS * NAME_LEN),  # last: every int64 stays aligned
    ]
    fields: dict[str, tuple[Any, int, int]] = {}
    offset = 0
    for name, ctype, length in lengths:
        fields[name] = (ctype, length, offset)
        offset += ctypes.sizeof(ctype) * length
    page = os.sysconf("SC_PAGE_SIZE")
    return fields, -(-offset // page) * page


@functools.lru_cache(maxsize=16)
def _array_type(ctype: Any, length: int) -> Any:
    """``ctype * length``, kept. ctypes caches array types only weakly, and a type is always in
    a reference cycle (its ``__mro__`` holds it): without this, each scheduler would leave five
    types behind for the cyclic garbage collector. Every scheduler of one configuration needs
    the same five."""
    return ctype * length


class _Wait:
    __slots__ = ("cookie", "domain", "kind")

    def __init__(self, kind: int, domain: int, cookie: int) -> None:
        self.kind = kind
        self.domain = domain
        self.cookie = cookie


class SharedState:
    """The shared block, its lock and the wait slots' semaphores; picklable to workers."""

    # laid over the arena by _map() (ctypes arrays; see _layout)
    _header: Any
    _domains: Any
    _ring_cookie: Any
    _ring_domain: Any
    _ring_owner: Any
    _waiters: Any
    _names: Any
    _cookies_view: memoryview

    def __init__(self, ctx: Any, *, slots: int, capacity: int) -> None:
        from multiprocess.heap import Arena  # here: import initgraph stays light

        self.slots = slots
        self.capacity = capacity
        self._lock: Any = ctx.Lock()
        # One mapping of its own rather than ctx.RawArray: the multiprocess heap keeps the arenas
        # it grew (up to 4 MiB each, an fd and a /dev/shm mapping apiece) for the rest of the
        # process, and how many depends on how earlier blocks were freed. Ours goes with close()
        # (or the last reference to this object), and a spawned worker gets it by its fd.
        self._arena: Any = Arena(_layout(slots, capacity)[1])
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
        """Lay the fields over ``buffer``: ctypes arrays, indexed and sliced like RawArrays."""
        fields, _ = _layout(self.slots, self.capacity)
        for name, (ctype, length, offset) in fields.items():
            setattr(self, name, _array_type(ctype, length).from_buffer(buffer, offset))
        self._cookies_view = memoryview(self._ring_cookie).cast("B").cast("q")

    def __getstate__(self) -> dict[str, Any]:
        if self._arena is None:
            msg = "this shared state is closed and cannot be sent to a process"
            raise InitgraphError(msg)
        state = self.__dict__.copy()
        state["_index"] = {}
        for name in (*_layout(self.slots, self.capacity)[0], "_cookies_view"):
            del state[name]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._map(self._arena.buffer)

    def close(self) -> None:
        """Unmap the block, close its file and drop the semaphores, now; idempotent.

        The scheduler calls it once every other process of it has ended. Every sleeper is woken
        first, as by :meth:`wake_all`. From then on the fields lie over a private copy of the
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
            self._header[_HOLDER] = 0
            # An anonymous private mapping, not a heap block: it goes back to the system with
            # the object, whatever state the allocator's heap is in.
            copy = mmap.mmap(-1, arena.size, flags=mmap.MAP_PRIVATE)
            copy.write(arena.buffer)
            self._cookies_view.release()
            self._map(copy)  # drops the arrays laid over the arena
            self._lock = threading.Lock()
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

    # -- the lock --------------------------------------------------------------------------------
    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the shared lock; if a holder died with it, take it back instead of hanging."""
        self._acquire()
        try:
            yield
        finally:
            self._release()

    def _acquire(self) -> None:
        if not self._lock.acquire(timeout=_LOCK_PATIENCE):
            self._acquire_slow()
        self._header[_HOLDER] = _PID.pid

    def _release(self) -> None:
        self._header[_HOLDER] = 0
        self._lock.release()

    def _acquire_slow(self) -> None:
        while True:
            holder = self._header[_HOLDER]
            if holder and not alive(holder):
                # The holder was killed inside a critical section. Each section leaves the block
                # consistent at every store that matters, so taking the lock over is safe.
                self._header[_HOLDER] = 0
                with suppress(ValueError):
                    self._lock.release()
            if self._lock.acquire(timeout=_LOCK_PATIENCE):
                return
            if self._header[_CLOSED]:
                msg = "the scheduler's shared state was closed while waiting for it"
                raise InitgraphError(msg)

    # -- domains ---------------------------------------------------------------------------------
    def domain_index(self, name: str, exclusive: bool | None) -> int:
        """The index of domain ``name``, declaring it if new (registered unless ``exclusive``)."""
        index = self._index.get(name)
        if index is not None and exclusive is None:
            return index
        with self.locked():
            index = self._find_domain(name)
            if index is None:
                index = self._declare(name, bool(exclusive))
            flags = self._domains[index * _DOMAIN_FIELDS + _FLAGS]
            if exclusive is not None and bool(flags & _EXCLUSIVE) != exclusive:
                was = "exclusive" if flags & _EXCLUSIVE else "registered"
                now = "exclusive" if exclusive else "registered"
                msg = (
                    f"domain {name!r} is already declared {was} and cannot also be {now}; "
                    f"use one Domain({name!r}, exclusive={not exclusive}) everywhere"
                )
                raise ConfigError(msg, key="domain")
        self._index[name] = index
        return index

    def _find_domain(self, name: str) -> int | None:
        raw = name.encode()
        for index in range(MAX_DOMAINS):
            if not self._domains[index * _DOMAIN_FIELDS + _FLAGS] & _USED:
                return None
            start = index * NAME_LEN
            if self._names[start : start + NAME_LEN].rstrip(b"\0") == raw:
                return index
        return None

    def _declare(self, name: str, exclusive: bool) -> int:
        for index in range(MAX_DOMAINS):
            base = index * _DOMAIN_FIELDS
            if not self._domains[base + _FLAGS] & _USED:
                raw = name.encode()
                start = index * NAME_LEN
                self._names[start : start + len(raw)] = raw
                self._domains[base + _LOW] = 0
                self._domains[base + _COUNT] = 0
                self._domains[base + _FLAGS] = _USED | (_EXCLUSIVE if exclusive else 0)
                return index
        msg = f"too many domains: at most {MAX_DOMAINS} per scheduler; cannot declare {name!r}"
        raise ConfigError(msg, key="domain")

    def domain_names(self) -> dict[int, tuple[str, bool]]:
        """Every declared domain: index -> (name, exclusive)."""
        out: dict[int, tuple[str, bool]] = {}
        for index in range(MAX_DOMAINS):
            flags = self._domains[index * _DOMAIN_FIELDS + _FLAGS]
            if not flags & _USED:
                break
            start = index * NAME_LEN
            name = self._names[start : start + NAME_LEN].rstrip(b"\0").decode()
            out[index] = (name, bool(flags & _EXCLUSIVE))
        return out

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
        with self.locked():
            header = self._header
            inline = header[_TOTAL] > max_pending
            pending = tuple(c for c in after if self._find(c) is not None)
            if header[_TAIL] >= self.capacity:
                self._compact()
                if header[_TAIL] >= self.capacity:
                    msg = (
                        f"more than {self.capacity} initcalls in progress at once; raise "
                        f"max_pending or schedule less at a time"
                    )
                    raise InitgraphError(msg)
            cookie = header[_COUNTER] + 1
            header[_COUNTER] = cookie
            tail = header[_TAIL]
            self._ring_cookie[tail] = cookie
            self._ring_domain[tail] = domain
            self._ring_owner[tail] = owner
            header[_TAIL] = tail + 1
            header[_TOTAL] += 1
            base = domain * _DOMAIN_FIELDS
            if self._domains[base + _COUNT] == 0:
                self._domains[base + _LOW] = cookie
            self._domains[base + _COUNT] += 1
            if not self._domains[base + _FLAGS] & _EXCLUSIVE:
                header[_REGISTERED] += 1
        return cookie, pending, inline

    def finish(self, cookies: tuple[int, ...] | list[int]) -> None:
        """Mark ``cookies`` complete and wake the waiters they were holding back."""
        self._acquire()
        try:
            touched = False
            for cookie in cookies:
                touched |= self._remove(cookie)
            if touched and self._header[_SLEEPERS]:
                self._wake()
        finally:
            self._release()

    def adopt(self, cookies: tuple[int, ...] | list[int]) -> None:
        """The parent has heard of ``cookies``: a worker's death no longer removes them."""
        with self.locked():
            for cookie in cookies:
                i = self._find(cookie)
                if i is not None:
                    self._ring_owner[i] = PARENT

    def set_owner(self, cookie: int, owner: int) -> None:
        """Record which worker slot runs ``cookie`` inline, so its death releases it."""
        with self.locked():
            i = self._find(cookie)
            if i is not None:
                self._ring_owner[i] = owner

    def release_owner(self, owner: int) -> list[tuple[int, int]]:
        """Remove every entry ``owner`` held (it died) and clear its wait slot.

        Returns the removed ``(cookie, domain index)`` pairs.
        """
        with self.locked():
            removed: list[tuple[int, int]] = []
            header = self._header
            for i in range(header[_HEAD], header[_TAIL]):
                if self._ring_domain[i] >= 0 and self._ring_owner[i] == owner:
                    removed.append((self._ring_cookie[i], self._ring_domain[i]))
            for cookie, _ in removed:
                self._remove(cookie)
            if 0 <= owner < self.slots:
                base = owner * _WAITER_FIELDS
                if self._waiters[base] != W_NONE:
                    self._waiters[base] = W_NONE
                    header[_SLEEPERS] -= 1
            if removed and header[_SLEEPERS]:
                self._wake()
            return removed

    def is_in_progress(self, cookie: int) -> bool:
        """Whether ``cookie`` has been issued and not yet completed."""
        with self.locked():
            return self._find(cookie) is not None

    def in_progress(self, domain: int | None = None) -> list[tuple[int, int]]:
        """In-progress ``(cookie, domain index)`` pairs, in cookie order (all domains if None)."""
        with self.locked():
            header = self._header
            out = []
            for i in range(header[_HEAD], header[_TAIL]):
                d = self._ring_domain[i]
                if d >= 0 and (domain is None or d == domain):
                    out.append((self._ring_cookie[i], d))
            return out

    @property
    def last_cookie(self) -> int:
        """The last cookie issued (0 before the first)."""
        return int(self._header[_COUNTER])

    def low(self, domain: int) -> int:
        """The lowest in-progress cookie of ``domain``, 0 when none."""
        return int(self._domains[domain * _DOMAIN_FIELDS + _LOW])

    def count(self, domain: int) -> int:
        """How many initcalls of ``domain`` are in progress."""
        return int(self._domains[domain * _DOMAIN_FIELDS + _COUNT])

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

        ``on_sleep(True)`` is called before the first sleep and ``on_sleep(False)`` after the
        last, so a worker can tell the parent it is blocked (invariant 5).
        """
        sem = self._sems[slot]
        base = slot * _WAITER_FIELDS
        slept = False
        try:
            while True:
                with self.locked():
                    if self._satisfied(_Wait(kind, domain, cookie)):
                        return True
                    if self._header[_CLOSED]:
                        msg = "the scheduler was closed while this process waited on it"
                        raise InitgraphError(msg)
                    self._waiters[base + 1] = domain
                    self._waiters[base + 2] = cookie
                    self._waiters[base] = kind
                    self._header[_SLEEPERS] += 1
                if not slept and on_sleep is not None:
                    on_sleep(True)
                slept = True
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                if sem.acquire(True, timeout):
                    # The waker posts only once the condition holds, and what a waiter waits
                    # for, once true, has been true: return without taking the lock again.
                    if self._header[_CLOSED]:
                        continue  # woken by close(): the check above raises
                    return True
                with self.locked():
                    if self._waiters[base] != W_NONE:
                        self._waiters[base] = W_NONE
                        self._header[_SLEEPERS] -= 1
                        timed_out = True
                    else:
                        timed_out = False  # woken just as the time ran out: take the post
                if not timed_out:
                    sem.acquire()
                    continue
                with self.locked():
                    if self._satisfied(_Wait(kind, domain, cookie)):
                        return True
                return False
        finally:
            if slept and on_sleep is not None:
                on_sleep(False)

    def wake_all(self) -> None:
        """Wake every sleeper to re-check (used when closing)."""
        with self.locked():
            self._wake_closed()

    def _wake_closed(self) -> None:
        self._header[_CLOSED] = 1
        for slot in range(self.slots):
            base = slot * _WAITER_FIELDS
            if self._waiters[base] != W_NONE:
                self._waiters[base] = W_NONE
                self._header[_SLEEPERS] -= 1
                self._sems[slot].release()

    # -- internals (lock held) -------------------------------------------------------------------
    def _satisfied(self, w: _Wait) -> bool:
        if w.kind == W_COOKIE:
            low = int(self._domains[w.domain * _DOMAIN_FIELDS + _LOW])
            return low == 0 or low >= w.cookie
        if w.kind == W_FULL_DOMAIN:
            return int(self._domains[w.domain * _DOMAIN_FIELDS + _COUNT]) == 0
        if w.kind == W_FULL_ALL:
            return int(self._header[_REGISTERED]) == 0
        if w.kind == W_DONE:
            return self._find(w.cookie) is None
        if w.kind == W_ALL:
            return int(self._header[_TOTAL]) == 0
        msg = f"unknown wait kind {w.kind}"
        raise AssertionError(msg)

    def _wake(self) -> None:
        waiters = self._waiters
        left = self._header[_SLEEPERS]
        for slot in range(self.slots):
            base = slot * _WAITER_FIELDS
            kind = waiters[base]
            if kind == W_NONE:
                continue
            if self._satisfied(_Wait(kind, waiters[base + 1], waiters[base + 2])):
                waiters[base] = W_NONE
                self._header[_SLEEPERS] -= 1
                self._sems[slot].release()
            left -= 1
            if not left:
                return

    def _find(self, cookie: int) -> int | None:
        header = self._header
        head, tail = header[_HEAD], header[_TAIL]
        view = self._cookies_view
        i = bisect.bisect_left(view, cookie, head, tail)
        if i < tail and view[i] == cookie and self._ring_domain[i] >= 0:
            return i
        return None

    def _remove(self, cookie: int) -> bool:
        i = self._find(cookie)
        if i is None:
            return False
        header = self._header
        domain = self._ring_domain[i]
        self._ring_domain[i] = -1
        base = domain * _DOMAIN_FIELDS
        self._domains[base + _COUNT] -= 1
        header[_TOTAL] -= 1
        if not self._domains[base + _FLAGS] & _EXCLUSIVE:
            header[_REGISTERED] -= 1
        tail = header[_TAIL]
        if self._domains[base + _LOW] == cookie:
            low = 0
            if self._domains[base + _COUNT]:
                for j in range(i + 1, tail):
                    if self._ring_domain[j] == domain:
                        low = self._ring_cookie[j]
                        break
            self._domains[base + _LOW] = low
        head = header[_HEAD]
        while head < tail and self._ring_domain[head] < 0:
            head += 1
        if head == tail:
            head = tail = 0
            header[_TAIL] = 0
        header[_HEAD] = head
        return True

    def _compact(self) -> None:
        header = self._header
        out = 0
        for i in range(header[_HEAD], header[_TAIL]):
            if self._ring_domain[i] >= 0:
                self._ring_cookie[out] = self._ring_cookie[i]
                self._ring_domain[out] = self._ring_domain[i]
                self._ring_owner[out] = self._ring_owner[i]
                out += 1
        header[_HEAD] = 0
        header[_TAIL] = out


class _Pid:
    """This process's pid, read once per process (not once per lock)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self.pid = os.getpid()


_PID = _Pid()
