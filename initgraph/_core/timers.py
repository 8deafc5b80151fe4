"""What the pool loop does when each of its deadlines comes, and when it arms the mirror push.

Step 4 of the loop (see ``pool.py``). Every timer of the pool is one key in its
:class:`~initgraph._core.deadlines.Deadlines`, ``(kind, what)``; :func:`expire` runs the function
of each ``kind`` whose deadline has passed. Plain functions of the pool, called only in the
loop's thread, and a table of them by kind: bound methods kept on the pool would refer back to
it, a cycle that only the cyclic garbage collector frees.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from .._errors import DeadlockError
from .calls import Outcome
from .workers import Worker

if TYPE_CHECKING:
    from .pool import Pool

__all__ = ["KILL_GRACE", "MIRROR_EVERY", "MIRROR_IDLE", "arm_mirror", "expire"]

KILL_GRACE = 1.0  # seconds between SIGTERM and SIGKILL for a timed-out initcall
# The manager-held lists are pushed once the loop has been idle this long (seconds), and at
# most once per MIRROR_EVERY: each push is a manager round trip that pickles the lists with
# dill. in_progress_lists() always pushes first.
MIRROR_IDLE = 0.005
MIRROR_EVERY = 0.1


def expire(pool: Pool) -> None:
    for key in pool.deadlines.expire():
        kind, what = cast("tuple[str, Any]", key)
        _EXPIRED[kind](pool, what)


def _timeout(pool: Pool, cookie: int) -> None:
    call = pool.calls[cookie]
    worker = call.worker
    if worker is None or pool.dispatcher.running(worker.slot) != cookie:
        return
    assert call.timeout is not None
    worker.timed_out = (cookie, call.timeout)
    worker.proc.terminate()
    pool.deadlines.add(("kill", worker), pool.deadlines.clock() + KILL_GRACE)


def _settle(pool: Pool, cookie: int) -> None:
    pool.due.discard(cookie)


def _kill(pool: Pool, worker: Worker) -> None:
    if pool.workers.by_slot.get(worker.slot) is worker:
        worker.proc.kill()


def _retry(pool: Pool, cookie: int) -> None:
    if pool.calls[cookie].outcome is None:
        pool.dispatcher.release(cookie)


def _grow(pool: Pool, slot: int) -> None:
    pool.asleep.add(slot)  # asleep long enough: it no longer counts as running


def _stall(pool: Pool, cookie: int) -> None:
    """Fail the lowest ready initcall when the pool, full and blocked, cannot run it.

    Every worker is blocked in a synchronize and the pool is at max_workers: the bounded
    workqueue hang the kernel met. After a grace period the initcall that cannot start
    fails with DeadlockError, which releases whoever waits for it; if the pool is still
    stuck, the next one gets its own grace period from then (see Pool._pump).
    """
    pool.stalled = None
    name = pool.calls[cookie].name
    msg = (
        f"initcall {cookie} {name!r} could not start: all {pool.max_workers} workers "
        f"(max_workers) are blocked in a synchronize waiting on work that cannot run; "
        f"raise max_workers"
    )
    pool.shared.finish([cookie])
    pool.record(cookie, Outcome(name, False, None, DeadlockError(msg), cookie=cookie))


def _mirror(pool: Pool, _: object) -> None:
    now = pool.deadlines.clock()
    # Idle: a round with nothing to do, MIRROR_IDLE after the last work. A loop that
    # waited for the GIL or a CPU (a caller scheduling, a loaded machine) is not idle:
    # taking that for idleness pushed thousands of in-progress entries through dill's
    # Python pickler once or twice per 2,000 no-op initcalls, 10-80 ms of the loop each.
    if pool.busy or now - pool.busy_at < MIRROR_IDLE:  # the manager can wait
        pool.deadlines.add(("mirror", None), (now if pool.busy else pool.busy_at) + MIRROR_IDLE)
        return
    pool.start_mirror()
    pool.mirror.flush()
    pool.pushed_at = now


_EXPIRED: dict[str, Callable[[Pool, Any], None]] = {
    "timeout": _timeout,
    "settle": _settle,
    "kill": _kill,
    "retry": _retry,
    "grow": _grow,
    "stall": _stall,
    "mirror": _mirror,
}


def arm_mirror(pool: Pool) -> None:
    """Set the mirror's push for when the loop is idle, if it has changes to push."""
    if pool.mirror.dirty and ("mirror", None) not in pool.deadlines:
        now = pool.deadlines.clock()
        due = max(now + MIRROR_IDLE, pool.pushed_at + MIRROR_EVERY)
        pool.deadlines.add(("mirror", None), due)
