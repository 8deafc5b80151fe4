"""The largest sizes a scheduler accepts, and why: checked by ``Scheduler`` and ``init.toml``."""

from __future__ import annotations

__all__ = ["MOST", "WHY"]

# Shared memory and semaphores are allocated up front for the largest value.
MOST = {"workers": 1024, "max_workers": 1024, "max_pending": 1 << 20}
WHY = {
    "workers": "each is a process",
    "max_workers": "each has a wait slot and a named semaphore",
    "max_pending": "each costs 32 bytes of shared memory, all allocated at start",
}

# The domain of a plugin or initcall that names none.
DEFAULT_DOMAIN = "default"
# The entry-point group plugins are published under (``entry_point = "name"`` in init.toml).
ENTRY_POINT_GROUP = "initgraph"
