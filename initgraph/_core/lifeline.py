"""End a helper process when the scheduler's process ends, however it ended.

A worker or the manager normally stops when the scheduler tells it to, or when its pipe to the
scheduler closes. Neither happens when the scheduler's process is killed with SIGKILL (the OOM
killer, ``kill -9``, a CI time limit) while other processes still hold that pipe: forked workers
inherit each other's pipe ends, and the manager serves anyone who connects. So each of them runs
a small daemon thread that sleeps until the scheduler's process is gone and then ends its own.

On Linux it sleeps on a pidfd (readable once the process exited; no polling); elsewhere it checks
every half second.
"""

from __future__ import annotations

import os
import select
import signal
import threading
import time

__all__ = ["EXIT_ORPHANED", "alive", "helper_start", "watch"]

EXIT_ORPHANED = 75  # the exit code of a helper whose scheduler died (EX_TEMPFAIL)
_POLL = 0.5


def watch(pid: int) -> None:
    """Start the thread that ends this process once process ``pid`` has ended."""
    thread = threading.Thread(target=_watch, args=(pid,), name="initgraph-lifeline", daemon=True)
    thread.start()


def helper_start(pid: int) -> None:
    """First thing in a helper process (the manager): watch ``pid`` and take SIGTERM again.

    A process forked from a thread that held SIGINT and SIGTERM (see ``Workers.start``) would keep
    them blocked for life, and a terminate would then wait out its grace period. (The manager
    itself ignores SIGINT, as the standard library's does.)
    """
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    watch(pid)


def _watch(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(EXIT_ORPHANED)  # it died before we looked
    except (AttributeError, OSError):  # no pidfd here (not Linux, or a kernel before 5.3)
        while alive(pid):
            time.sleep(_POLL)
        os._exit(EXIT_ORPHANED)
    select.select([fd], [], [])
    os._exit(EXIT_ORPHANED)


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs.

    A zombie (exited, not yet reaped by its parent) counts as ended: it runs no code, holds no
    lock it could release, and will never act again. Read from ``/proc`` where there is one,
    else asked of the kernel (``kill(pid, 0)``, which cannot tell a zombie apart).
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel instead
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # it exists, owned by another user
        return True
    return state not in (b"Z", b"X")
