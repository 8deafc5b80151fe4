"""Every timer of the pool in one heap: timeouts, grace periods, the growth delay, mirror pushes.

A :class:`Deadlines` maps keys to the moment they are due, on an injectable clock, so the pool
loop sleeps until the nearest one and handles what expired, and tests step the clock instead of
sleeping. Re-adding a key moves it; removing one is lazy (the heap drops stale entries as they
surface), so both cost ``O(log n)``.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable, Hashable

__all__ = ["Deadlines"]


class Deadlines:
    """Keys with the moment each is due, soonest first."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._heap: list[tuple[float, int, Hashable]] = []
        self._entries: dict[Hashable, tuple[float, int]] = {}  # key -> its live heap entry
        self._serial = itertools.count()

    def add(self, key: Hashable, when: float) -> None:
        """Make ``key`` due at ``when`` (a reading of the clock), replacing any earlier time."""
        entry = (when, next(self._serial))
        self._entries[key] = entry
        heapq.heappush(self._heap, (*entry, key))

    def remove(self, key: Hashable) -> None:
        """Forget ``key``; nothing happens if it is not there."""
        self._entries.pop(key, None)

    def when(self, key: Hashable) -> float | None:
        """When ``key`` is due, or None."""
        entry = self._entries.get(key)
        return None if entry is None else entry[0]

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def next_deadline(self) -> float | None:
        """The soonest moment a key is due, or None when there is none."""
        heap = self._heap
        while heap and self._entries.get(heap[0][2]) != heap[0][:2]:
            heapq.heappop(heap)  # removed or moved since
        return heap[0][0] if heap else None

    def timeout(self) -> float | None:
        """Seconds from now until the soonest key is due (0 if overdue), or None."""
        deadline = self.next_deadline()
        return None if deadline is None else max(0.0, deadline - self.clock())

    def expire(self) -> list[Hashable]:
        """Remove and return the keys due by now, soonest first."""
        now = self.clock()
        out: list[Hashable] = []
        while True:
            deadline = self.next_deadline()
            if deadline is None or deadline > now:
                return out
            key = heapq.heappop(self._heap)[2]
            del self._entries[key]
            out.append(key)
