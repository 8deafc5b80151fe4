"""Each domain's in-progress list, with names, held by a manager process.

Only the pool loop uses a :class:`Mirror`: it records changes as they happen and pushes them in
batches when it is idle, so no initcall or wake-up waits on the manager (a manager round trip
costs about as much as dispatching a whole initcall, and pickling the lists with dill at every
pause cost over half the parent's CPU in a 200-initcall boot).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from .._errors import InitgraphError, describe_exitcode
from . import lifeline as _lifeline
from .backend import manager_process

__all__ = ["Mirror"]


class Mirror:
    """The manager-held lists and the pool's view of them, pushed when the pool is idle."""

    def __init__(self, ctx: Any) -> None:
        self._ctx = ctx
        self._view: dict[str, dict[int, str]] = {}
        self._dirty: set[str] = set()
        self._manager: Any = None
        self._lists: dict[str, Any] = {}

    @property
    def dirty(self) -> bool:
        """Whether the view changed since the last push."""
        return bool(self._dirty)

    def add(self, domain: str, cookie: int, name: str) -> None:
        self._view.setdefault(domain, {})[cookie] = name
        self._dirty.add(domain)

    def remove(self, domain: str, cookie: int) -> None:
        self._view.get(domain, {}).pop(cookie, None)
        self._dirty.add(domain)

    def start(self) -> bool:
        """Start the manager process unless it runs; True if it was started now.

        A scheduler that is never idle never needs it.
        """
        if self._manager is not None:
            return False
        from multiprocess.managers import SyncManager  # 7 ms: only once it is needed

        manager = SyncManager(ctx=self._ctx)
        # It must not outlive this process, even one killed with SIGKILL.
        manager.start(initializer=_lifeline.helper_start, initargs=(os.getpid(),))
        self._manager = manager
        return True

    @property
    def sentinel(self) -> int | None:
        """The manager process's sentinel, once it runs."""
        process = manager_process(self._manager)
        return None if process is None else int(process.sentinel)

    def lost(self) -> InitgraphError:
        """The error that stops the scheduler once the manager process died."""
        process = manager_process(self._manager)
        if process is not None:
            process.join(1.0)
        pid = getattr(process, "pid", "?")
        code = describe_exitcode(process.exitcode) if process is not None else "unknown"
        msg = (
            f"initgraph's manager process (pid {pid}) is gone ({code}); the scheduler lost "
            f"its shared in-progress lists and stopped"
        )
        return InitgraphError(msg)

    def flush(self) -> None:
        """Push what changed since the last push to the manager."""
        if self._manager is None:
            return
        batch = {d: sorted(self._view.get(d, {}).items()) for d in self._dirty}
        self._dirty.clear()
        try:
            for domain, items in batch.items():
                lst = self._lists.get(domain)
                if lst is None:
                    lst = self._lists[domain] = self._manager.list()
                lst[:] = [list(item) for item in items]
        except (OSError, EOFError) as exc:
            raise self.lost() from exc

    def snapshot(self) -> dict[str, list[tuple[int, str]]]:
        """Each domain's in-progress ``(cookie, name)`` list, as the manager holds it now."""
        try:
            return {d: [(int(c), str(n)) for c, n in lst] for d, lst in self._lists.items()}
        except (OSError, EOFError) as exc:
            raise self.lost() from exc

    def stop(self) -> None:
        """Stop the manager process and release what this process held of it (its sentinel)."""
        manager, self._manager = self._manager, None
        self._lists.clear()
        if manager is None:
            return
        with contextlib.suppress(Exception):  # it may be gone already
            manager.shutdown()
        process = manager_process(manager)
        if process is not None:
            if process.is_alive():  # its shutdown failed: it must not outlive the scheduler
                process.kill()
            process.join()
            process.close()
