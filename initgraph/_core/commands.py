"""What the pool loop does with each command another thread hands it (``Pool.submit``).

Step 2 of the loop (see ``pool.py``): ``pool.submit("add", ...)`` runs :func:`add` in the loop's
thread. Plain functions of the pool, called only in that thread, and a table of them by name:
bound methods kept on the pool would refer back to it, a cycle that only the cyclic garbage
collector frees.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .calls import Call, Outcome, Work

if TYPE_CHECKING:
    from .pool import Pool

__all__ = ["COMMANDS", "add"]


def add(pool: Pool, work: Work, after: tuple[int, ...], timeout: float | None) -> None:
    """An initcall scheduled in the parent (or, via a worker's Scheduled, in a worker)."""
    run = work.run
    _new_call(pool, run.cookie, run.name, run.domain, timeout, work=work)
    pool.dispatcher.add(run.cookie, after)


def reserve(
    pool: Pool,
    cookie: int,
    name: str,
    domain: str,
    timeout: float | None,
    after: tuple[int, ...] = (),
) -> None:
    """A cookie issued now whose work comes later (held until provided), after ``after``."""
    _new_call(pool, cookie, name, domain, timeout)
    pool.calls[cookie].after = after
    pool.dispatcher.add(cookie, after, held=True)
    for awaited in after:
        if not pool.ended(awaited):
            pool.awaited.setdefault(awaited, []).append(cookie)


def provide(pool: Pool, cookie: int, work: Work, retry_delays: tuple[float, ...] = ()) -> None:
    """Work for a reserved cookie; ``retry_delays``: one run more per delay after a crash."""
    call = pool.calls[cookie]
    pool.not_due(cookie)
    if call.outcome is None:
        call.work = work
        call.retry_delays = retry_delays
        pool.dispatcher.release(cookie)
    else:
        work.close()


def note(pool: Pool, cookie: int, name: str, domain: str) -> None:
    """An initcall runs inline in the parent: known by name, never dispatched."""
    if cookie not in pool.calls:
        pool.calls[cookie] = Call(cookie, name, None)


def record(pool: Pool, cookie: int, outcome: Outcome) -> None:
    """An initcall that ran (or was cancelled) in the parent ended."""
    pool.record(cookie, outcome)


def snapshot(pool: Pool, reply: queue.SimpleQueue[Any]) -> None:
    """Push the in-progress lists to the manager, and reply with what it holds."""
    try:
        pool.start_mirror()
        pool.mirror.flush()
        reply.put(pool.mirror.snapshot())
    except BaseException as exc:
        reply.put(exc)
        raise


def stop(pool: Pool, now: bool) -> None:
    pool.stopping = now


COMMANDS: dict[str, Callable[..., None]] = {
    "add": add,
    "reserve": reserve,
    "provide": provide,
    "note": note,
    "record": record,
    "snapshot": snapshot,
    "stop": stop,
}


def _new_call(
    pool: Pool, cookie: int, name: str, domain: str, timeout: float | None, work: Work | None = None
) -> None:
    pool.calls[cookie] = Call(cookie, name, domain, work, timeout)
    pool.unfinished += 1
    pool.mirror.add(domain, cookie, name)
