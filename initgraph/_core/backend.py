"""Every reach into the internals of ``multiprocess`` (and one of ``threading``), and why.

The rest of the core uses only public APIs. These reaches are needed because a scheduler must
leave its process as it found it: nothing it started may outlive it (the contract of ``close``).

- **Resource tracker and fork server** (``resource_tracker._resource_tracker``,
  ``forkserver._forkserver``): ``multiprocess`` starts them on first use and keeps them for the
  life of the process, with no public way to ask whether they run or to stop them. A scheduler
  notes whether they ran before it started, and stops them if it brought them up.
- **The tracker's stop** (``_fd``, ``_pid``, ``_lock``): its own ``_stop`` waits without a
  limit, and a child that died while starting can hold the tracker's pipe open for ever.
- **The finalizer registry** (``util._finalizer_registry``): our named semaphores must be
  unlinked while we know nobody uses them; a tracker that stops unlinks whatever is still
  registered, and the semaphores' own finalizers would then fail later. The shared block's
  arena closes its descriptor only from a finalizer, which ``close`` must run, not bypass.
- **The manager's process** (``SyncManager._process``): the pool watches its sentinel, so a
  killed manager is reported instead of hanging the next call.
- **A forked worker's main thread** (``Thread._daemonic``): after ``fork`` the thread that
  forked becomes the child's main thread, name and daemon flag included. Workers forked by the
  pool thread would differ from the first ones (forked by the caller), and the threads an
  initcall starts inherit the daemon flag; ``daemon`` has no setter for a running thread.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from typing import Any

__all__ = [
    "as_main_thread",
    "close_arena",
    "ensure_fork_server",
    "helper_processes",
    "manager_process",
    "stop_helpers",
]

_STOP_GRACE = 2.0  # seconds the resource tracker gets to leave before it is killed


def as_main_thread() -> None:
    """Make this process's current thread look like a fresh main thread, whoever forked it."""
    thread = threading.current_thread()
    thread.name = "MainThread"
    thread._daemonic = False  # type: ignore[attr-defined]


def ensure_fork_server() -> None:
    """Start the fork server now, not inside the first worker's start.

    That start holds SIGINT and SIGTERM; a fork server started then would keep them blocked for
    life, and so would each worker until it unblocks them, so a SIGTERM to a starting one would
    be lost.
    """
    import multiprocess.forkserver

    multiprocess.forkserver.ensure_running()


def helper_processes() -> tuple[bool, bool]:
    """Whether multiprocess's resource tracker and fork server run already."""
    from multiprocess import forkserver, resource_tracker

    tracker = resource_tracker._resource_tracker
    server = forkserver._forkserver
    return (
        getattr(tracker, "_pid", None) is not None,
        getattr(server, "_forkserver_pid", None) is not None,
    )


def manager_process(manager: Any) -> Any:
    """The process of a started ``SyncManager`` (None before it starts)."""
    return getattr(manager, "_process", None)


def stop_helpers(before: tuple[bool, bool], names: set[str], *, others: bool) -> None:
    """Unlink our semaphores; stop the tracker and fork server if we brought them up.

    ``before`` is what :func:`helper_processes` said before the scheduler started; ``others``:
    another scheduler of this process is still open and may use the helpers.
    """
    from multiprocess import forkserver, resource_tracker, util

    for fin in list(util._finalizer_registry.values()):
        args = getattr(fin, "_args", None)
        if args and args[0] in names:
            with contextlib.suppress(Exception):
                fin()
    if others:
        return
    tracker_before, server_before = before
    if not server_before and getattr(forkserver._forkserver, "_forkserver_pid", None):
        with contextlib.suppress(Exception):
            forkserver._forkserver._stop()
    if not tracker_before and getattr(resource_tracker._resource_tracker, "_pid", None):
        with contextlib.suppress(Exception):
            _stop_tracker(resource_tracker._resource_tracker)


def _stop_tracker(tracker: Any) -> None:
    """Stop multiprocess's resource tracker, killing it if it does not leave within 2 s."""
    with tracker._lock:
        if tracker._fd is None:
            return
        os.close(tracker._fd)
        tracker._fd = None
        pid, tracker._pid = tracker._pid, None
        deadline = time.monotonic() + _STOP_GRACE
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return
            time.sleep(0.005)  # polling a process that is leaving, bounded above


def close_arena(arena: Any) -> None:
    """Unmap a ``multiprocess.heap.Arena`` and close its file now, not when it is collected.

    The arena closes its descriptor from a finalizer keyed on the arena: that finalizer is run
    (which also unregisters it) rather than the descriptor closed behind its back, or it would
    later close whatever descriptor reused the number. A rebuilt arena (a spawned worker's) has
    none: its descriptor is closed here.
    """
    from multiprocess import util

    with contextlib.suppress(BufferError):  # a view still exported: unmapped when it goes
        arena.buffer.close()
    for fin in list(util._finalizer_registry.values()):
        ref = getattr(fin, "_weakref", None)
        if ref is not None and ref() is arena:
            fin()
            return
    with contextlib.suppress(OSError):
        os.close(arena.fd)
