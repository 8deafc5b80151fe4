"""The wait slots: what each sleeping waiter waits for.

A pure layout over a zeroed buffer of :meth:`WaitSlots.nbytes` bytes, like the in-progress table
(``inprogress.py``) and beside it in the shared block; the caller holds the block's lock::

    asleep   how many slots hold a sleeper
    slots    per wait slot: kind (a ``W_*``; W_NONE: empty), domain index, cookie

Each process that can wait has a slot of its own (the parent's threads theirs, each worker its
own). A waiter whose condition does not hold yet registers it here and sleeps on the slot's
semaphore; whoever changes the table picks the sleepers whose condition now holds
(:meth:`WaitSlots.take_satisfied`) and posts their semaphores. The semaphores are process
objects, not memory: :class:`~initgraph._core.shared.SharedState` keeps them and posts them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .inprogress import W_NONE, int64_arrays

__all__ = ["WaitSlots"]

_FIELDS = 3  # kind, domain index, cookie


class WaitSlots:
    """``slots`` wait slots laid over a buffer; the caller serializes every call."""

    __slots__ = ("_asleep", "_waiters", "slots")

    @staticmethod
    def nbytes(slots: int) -> int:
        """The size of ``slots`` wait slots (a multiple of 8)."""
        return 8 * (1 + slots * _FIELDS)

    def __init__(self, buffer: Any, slots: int, offset: int = 0) -> None:
        self.slots = slots
        self._asleep, self._waiters = int64_arrays(buffer, offset, 1, slots * _FIELDS)

    @property
    def asleep(self) -> int:
        """How many slots hold a sleeper."""
        return self._asleep[0]

    def register(self, slot: int, kind: int, domain: int, cookie: int) -> None:
        """Record that the waiter of ``slot`` sleeps until ``kind`` holds for domain, cookie."""
        base = slot * _FIELDS
        self._waiters[base + 1] = domain
        self._waiters[base + 2] = cookie
        self._waiters[base] = kind  # last: a slot with a kind is complete
        self._asleep[0] += 1

    def cancel(self, slot: int) -> bool:
        """Empty ``slot``; False if it was empty already (its sleeper was taken to be woken)."""
        base = slot * _FIELDS
        if self._waiters[base] == W_NONE:
            return False
        self._waiters[base] = W_NONE
        self._asleep[0] -= 1
        return True

    def take_satisfied(self, satisfied: Callable[[int, int, int], bool]) -> list[int]:
        """Empty and return the slots whose ``satisfied(kind, domain, cookie)`` now holds."""
        taken: list[int] = []
        left = self._asleep[0]
        if not left:
            return taken
        waiters = self._waiters
        for slot in range(self.slots):
            base = slot * _FIELDS
            kind = waiters[base]
            if kind == W_NONE:
                continue
            if satisfied(kind, waiters[base + 1], waiters[base + 2]):
                waiters[base] = W_NONE
                self._asleep[0] -= 1
                taken.append(slot)
            left -= 1
            if not left:
                break
        return taken

    def take_all(self) -> list[int]:
        """Empty and return every slot that holds a sleeper.

        Each slot is looked at, whatever ``asleep`` says: a process killed inside
        :meth:`register` leaves it one short.
        """
        taken: list[int] = []
        for slot in range(self.slots):
            if self.cancel(slot):
                taken.append(slot)
        return taken
