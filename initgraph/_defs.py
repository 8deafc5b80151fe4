"""Names, limits and validators every layer shares: checked by ``Scheduler`` and ``init.toml``."""

from __future__ import annotations

from typing import Any

__all__ = [
    "DEFAULT_DOMAIN",
    "ENTRY_POINT_GROUP",
    "MAX_NICE",
    "MOST",
    "START_METHODS",
    "WHY",
    "default_max_workers",
    "positive_int_problem",
]

START_METHODS = ("fork", "forkserver", "spawn")

# Shared memory and semaphores are allocated up front for the largest value.
MOST = {"workers": 1024, "max_workers": 1024, "max_pending": 1 << 20}
WHY = {
    "workers": "each is a process",
    "max_workers": "each has a wait slot and a named semaphore",
    "max_pending": "each costs 24 bytes of shared memory, all allocated at start",
}

# The most a worker's nice value may be raised above its parent's (Linux's range is 0-19).
MAX_NICE = 19

# The domain of a plugin or initcall that names none.
DEFAULT_DOMAIN = "default"
# The entry-point group plugins are published under (``entry_point = "name"`` in init.toml).
ENTRY_POINT_GROUP = "initgraph"


def default_max_workers(workers: int) -> int:
    """How far a pool of ``workers`` may grow while workers are blocked: 4x, at least 16."""
    return min(max(4 * workers, 16), MOST["max_workers"])


def positive_int_problem(value: Any, key: str) -> str | None:
    """What is wrong with ``value`` for ``key``, which takes an int from 1 to ``MOST[key]``.

    None when nothing is; the caller raises its own error with the message (this module sits
    below the errors).
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return f"{key} must be a positive int, got {value!r} ({type(value).__name__})"
    most = MOST[key]
    if value > most:
        return f"{key} must be at most {most:,}, got {value:,}: {WHY[key]}"
    return None
