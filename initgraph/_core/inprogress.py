"""The in-progress table: the domains, the cookie counter and every cookie in progress.

A pure layout over a zeroed buffer of :meth:`InProgressTable.nbytes` bytes: nothing here takes a
lock or touches a process or a clock, so ``tests/test_inprogress.py`` checks it against a plain
Python model. :class:`~initgraph._core.shared.SharedState` lays it over its shared block and
calls it with the block's lock held, so every process of a scheduler sees the same table::

    header   counter (last cookie issued), total in progress, ring head and tail, registered in
             progress (in domains that are not exclusive)
    domains  per domain: lowest in-progress cookie (0: none), count in progress, flags
    ring     every in-progress cookie in increasing order: (cookie, domain, owner); a finished
             entry becomes a tombstone (domain -1), and the ring is compacted when it fills up
    names    per domain: its name, NUL-padded (the table is append-only: an index never changes)

Cookies are appended in increasing order, so the ring stays sorted (a lookup is a bisection)
and a domain's lowest in-progress cookie only moves forward. Each method leaves the table
consistent at every store that matters, so a process killed in the middle of one leaves a table
the next holder of the lock can go on with (the lock is taken over: ``_BlockLock`` in
``shared.py``).

The owner of an entry is the wait slot of the worker that allocated it until the parent has
heard of it (:data:`PARENT`), or the slot of the worker running it inline; if that worker dies,
the parent removes the entries it owned (:meth:`InProgressTable.owned_by`).
"""

from __future__ import annotations

import bisect
from typing import Any

from .._errors import ConfigError, InitgraphError

__all__ = [
    "MAX_DOMAINS",
    "NAME_LEN",
    "PARENT",
    "W_ALL",
    "W_COOKIE",
    "W_DONE",
    "W_FULL_ALL",
    "W_FULL_DOMAIN",
    "W_NONE",
    "InProgressTable",
    "int64_arrays",
]

MAX_DOMAINS = 64
NAME_LEN = 128  # bytes per name; Domain() allows at most 120
PARENT = -1  # owner of entries the parent knows about

# What a waiter waits for (InProgressTable.satisfied); W_NONE marks an empty wait slot.
W_NONE, W_COOKIE, W_FULL_DOMAIN, W_FULL_ALL, W_DONE, W_ALL = range(6)

# header fields
_COUNTER, _TOTAL, _HEAD, _TAIL, _REGISTERED = range(5)
_HEADER = 5
# domain fields
_LOW, _COUNT, _FLAGS = range(3)
_DOMAIN_FIELDS = 3
_USED, _EXCLUSIVE = 1, 2


def int64_arrays(buffer: Any, offset: int, *lengths: int) -> list[memoryview]:
    """Consecutive arrays of ``lengths`` int64 each, laid over ``buffer`` from byte ``offset``."""
    whole = memoryview(buffer)
    arrays = []
    for length in lengths:
        arrays.append(whole[offset : offset + 8 * length].cast("q"))
        offset += 8 * length
    return arrays


class InProgressTable:
    """Domains and in-progress cookies laid over a buffer; the caller serializes every call."""

    __slots__ = ("_cookie", "_domain", "_domains", "_header", "_names", "_owner", "capacity")

    @staticmethod
    def nbytes(capacity: int) -> int:
        """The size of a table of ``capacity`` ring entries (a multiple of 8)."""
        return 8 * (_HEADER + MAX_DOMAINS * _DOMAIN_FIELDS + 3 * capacity) + MAX_DOMAINS * NAME_LEN

    def __init__(self, buffer: Any, capacity: int, offset: int = 0) -> None:
        self.capacity = capacity
        self._header, self._domains, self._cookie, self._domain, self._owner = int64_arrays(
            buffer, offset, _HEADER, MAX_DOMAINS * _DOMAIN_FIELDS, capacity, capacity, capacity
        )
        start = offset + self.nbytes(capacity) - MAX_DOMAINS * NAME_LEN
        self._names = memoryview(buffer)[start : start + MAX_DOMAINS * NAME_LEN]

    # -- domains ---------------------------------------------------------------------------------
    def find_domain(self, name: str) -> int | None:
        """The index of domain ``name``, None if it is not declared."""
        raw = name.encode()
        for index in range(MAX_DOMAINS):
            if not self._domains[index * _DOMAIN_FIELDS + _FLAGS] & _USED:
                return None
            start = index * NAME_LEN
            if bytes(self._names[start : start + NAME_LEN]).rstrip(b"\0") == raw:
                return index
        return None

    def declare(self, name: str, exclusive: bool) -> int:
        """Enter domain ``name`` (not declared yet) and return its index."""
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

    def is_exclusive(self, domain: int) -> bool:
        """Whether the domain at index ``domain`` was declared exclusive."""
        return bool(self._domains[domain * _DOMAIN_FIELDS + _FLAGS] & _EXCLUSIVE)

    def domain_names(self) -> dict[int, tuple[str, bool]]:
        """Every declared domain: index -> (name, exclusive)."""
        out: dict[int, tuple[str, bool]] = {}
        for index in range(MAX_DOMAINS):
            flags = self._domains[index * _DOMAIN_FIELDS + _FLAGS]
            if not flags & _USED:
                break
            start = index * NAME_LEN
            name = bytes(self._names[start : start + NAME_LEN]).rstrip(b"\0").decode()
            out[index] = (name, bool(flags & _EXCLUSIVE))
        return out

    # -- cookies ---------------------------------------------------------------------------------
    def allocate(
        self, domain: int, owner: int, after: tuple[int, ...], max_pending: int
    ) -> tuple[int, tuple[int, ...], bool]:
        """Issue the next cookie and enter it in ``domain``, owned by ``owner``.

        Returns the cookie, the cookies of ``after`` still in progress, and whether more than
        ``max_pending`` were in progress before it (the caller then runs the initcall inline).
        Raises InitgraphError, issuing nothing, when ``capacity`` cookies are in progress.
        """
        header = self._header
        inline = header[_TOTAL] > max_pending
        pending = tuple(c for c in after if self.find(c) is not None)
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
        self._cookie[tail] = cookie
        self._domain[tail] = domain
        self._owner[tail] = owner
        header[_TAIL] = tail + 1
        header[_TOTAL] += 1
        base = domain * _DOMAIN_FIELDS
        domains = self._domains
        if domains[base + _COUNT] == 0:
            domains[base + _LOW] = cookie
        domains[base + _COUNT] += 1
        if not domains[base + _FLAGS] & _EXCLUSIVE:
            header[_REGISTERED] += 1
        return cookie, pending, inline

    def remove(self, cookie: int) -> bool:
        """Mark ``cookie`` complete; False if it was not in progress."""
        i = self.find(cookie)
        if i is None:
            return False
        header = self._header
        domains = self._domains
        domain = self._domain[i]
        self._domain[i] = -1
        base = domain * _DOMAIN_FIELDS
        domains[base + _COUNT] -= 1
        header[_TOTAL] -= 1
        if not domains[base + _FLAGS] & _EXCLUSIVE:
            header[_REGISTERED] -= 1
        tail = header[_TAIL]
        if domains[base + _LOW] == cookie:
            low = 0
            if domains[base + _COUNT]:
                for j in range(i + 1, tail):
                    if self._domain[j] == domain:
                        low = self._cookie[j]
                        break
            domains[base + _LOW] = low
        head = header[_HEAD]
        while head < tail and self._domain[head] < 0:
            head += 1
        if head == tail:
            head = tail = 0
            header[_TAIL] = 0
        header[_HEAD] = head
        return True

    def set_owner(self, cookie: int, owner: int) -> None:
        """Make ``owner`` the owner of ``cookie``'s entry, if it is in progress."""
        i = self.find(cookie)
        if i is not None:
            self._owner[i] = owner

    def owned_by(self, owner: int) -> list[tuple[int, int]]:
        """The in-progress ``(cookie, domain index)`` pairs ``owner`` owns, in cookie order."""
        header = self._header
        return [
            (self._cookie[i], self._domain[i])
            for i in range(header[_HEAD], header[_TAIL])
            if self._domain[i] >= 0 and self._owner[i] == owner
        ]

    def find(self, cookie: int) -> int | None:
        """The ring index of ``cookie``'s entry, None if it is not in progress."""
        header = self._header
        head, tail = header[_HEAD], header[_TAIL]
        ring = self._cookie
        i = bisect.bisect_left(ring, cookie, head, tail)
        if i < tail and ring[i] == cookie and self._domain[i] >= 0:
            return i
        return None

    def in_progress(self, domain: int | None = None) -> list[tuple[int, int]]:
        """In-progress ``(cookie, domain index)`` pairs, in cookie order (all domains if None)."""
        header = self._header
        out = []
        for i in range(header[_HEAD], header[_TAIL]):
            d = self._domain[i]
            if d >= 0 and (domain is None or d == domain):
                out.append((self._cookie[i], d))
        return out

    @property
    def last_cookie(self) -> int:
        """The last cookie issued (0 before the first)."""
        return self._header[_COUNTER]

    def low(self, domain: int) -> int:
        """The lowest in-progress cookie of ``domain``, 0 when none."""
        return self._domains[domain * _DOMAIN_FIELDS + _LOW]

    def count(self, domain: int) -> int:
        """How many initcalls of ``domain`` are in progress."""
        return self._domains[domain * _DOMAIN_FIELDS + _COUNT]

    def satisfied(self, kind: int, domain: int, cookie: int) -> bool:
        """Whether a waiter of ``kind`` (a ``W_*``) for ``domain`` and ``cookie`` may pass."""
        if kind == W_COOKIE:  # every lower cookie of the domain is complete
            low = self._domains[domain * _DOMAIN_FIELDS + _LOW]
            return low == 0 or low >= cookie
        if kind == W_FULL_DOMAIN:
            return self._domains[domain * _DOMAIN_FIELDS + _COUNT] == 0
        if kind == W_FULL_ALL:
            return self._header[_REGISTERED] == 0
        if kind == W_DONE:
            return self.find(cookie) is None
        if kind == W_ALL:
            return self._header[_TOTAL] == 0
        msg = f"unknown wait kind {kind}"
        raise AssertionError(msg)

    def _compact(self) -> None:
        header = self._header
        out = 0
        for i in range(header[_HEAD], header[_TAIL]):
            if self._domain[i] >= 0:
                self._cookie[out] = self._cookie[i]
                self._domain[out] = self._domain[i]
                self._owner[out] = self._owner[i]
                out += 1
        header[_HEAD] = 0
        header[_TAIL] = out
