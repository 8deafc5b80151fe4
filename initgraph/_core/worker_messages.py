"""What the pool loop does with each message from a worker, and with a worker that is lost.

Step 3 of the loop (see ``pool.py``). Plain functions of the pool, called only in the loop's
thread, and a table of them by message type: bound methods kept in a table on the pool would
refer back to it, a cycle that only the cyclic garbage collector frees.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._errors import HookError, HookTimeout, WorkerCrashed, describe_exitcode
from .calls import Call, Outcome, Retried, Work, inline_of, outcome_of
from .commands import add
from .dispatch import GROW_AFTER
from .messages import Blocked, Done, Log, Run, Scheduled, Started, Unblocked
from .store import Handle, Ref
from .workers import PARENT_SLOTS, Worker

if TYPE_CHECKING:
    from .pool import Pool

__all__ = ["lost", "receive"]

_LOG = logging.getLogger("initgraph.retry")


def receive(pool: Pool, worker: Worker) -> bool:
    """Handle one message; False once the pipe is closed (its sentinel handles the rest).

    The selector reports the worker again while more messages are there.
    """
    try:
        message = pickle.loads(worker.conn.recv_bytes())
    except (EOFError, OSError):
        return False
    handler = _HANDLERS.get(type(message))
    if handler is None:
        msg = f"unknown message from worker {worker.pid}: {message!r}"
        raise AssertionError(msg)
    handler(pool, worker, message)
    return True


def on_done(pool: Pool, worker: Worker, done: Done) -> None:
    handle = None
    if done.ok and done.inline is None:  # its result's frame follows, under the same lock
        try:
            handle = pool.store.receive(worker.conn)
        except (EOFError, OSError):
            return  # killed between the two: its sentinel reports the crash
    pool.record(done.cookie, outcome_of(done, handle, pool.store))


def on_scheduled(pool: Pool, worker: Worker, message: Scheduled) -> None:
    store = pool.store
    refs: list[Handle] = []
    try:
        for _ in range(message.handles):
            refs.append(store.receive(worker.conn))
        if message.inline is not None:  # small: inside the message
            data = store.inline_handle(Ref(*message.inline))
        else:
            data = store.receive(worker.conn)
    except (EOFError, OSError):
        # Killed part way: the cookie is still the worker's, and is lost with it (lost()).
        for handle in refs:
            handle.close()
        return
    pool.shared.adopt([message.cookie])
    run = Run(
        message.cookie,
        message.domain,
        message.name,
        message.func,
        len(refs),
        inline=inline_of(data),
    )
    add(pool, Work(run, data, tuple(refs), owns_refs=True), message.after, message.timeout)


def on_blocked(pool: Pool, worker: Worker, message: Blocked) -> None:
    pool.dispatcher.blocked(worker.slot)
    pool.deadlines.add(("grow", worker.slot), pool.deadlines.clock() + GROW_AFTER)


def on_unblocked(pool: Pool, worker: Worker, message: Unblocked) -> None:
    pool.dispatcher.unblocked(worker.slot)
    pool.deadlines.remove(("grow", worker.slot))
    pool.asleep.discard(worker.slot)


def on_started(pool: Pool, worker: Worker, message: Started) -> None:
    call = pool.calls.get(message.cookie)
    key = ("timeout", message.cookie)
    if call is not None and call.timeout is not None and key in pool.deadlines:
        pool.deadlines.add(key, pool.deadlines.clock() + call.timeout)


def on_log(pool: Pool, worker: Worker, message: Log) -> None:
    record = logging.makeLogRecord(message.record)
    logging.getLogger(record.name).handle(record)


_HANDLERS: dict[type, Callable[[Pool, Worker, Any], None]] = {
    Done: on_done,
    Scheduled: on_scheduled,
    Blocked: on_blocked,
    Unblocked: on_unblocked,
    Started: on_started,
    Log: on_log,
}


def lost(pool: Pool, worker: Worker) -> None:
    """A worker's process ended: report what it ran, release its cookies, replace it."""
    _drain(pool, worker)
    exitcode = pool.workers.reap(worker)
    slot = worker.slot
    pool.deadlines.remove(("kill", worker))
    pool.deadlines.remove(("grow", slot))
    pool.asleep.discard(slot)
    cookie = pool.dispatcher.remove_worker(slot)
    released = pool.shared.release_owner(PARENT_SLOTS + slot)
    gone = {c for c, _ in released}
    now = pool.deadlines.clock()
    if cookie is not None:
        call = pool.calls.get(cookie)
        if call is not None and call.retry_delays and pool.stopping is None:
            _run_again(pool, call, _lost_error(worker, cookie, call.name, exitcode), now)
        else:
            pool.shared.finish([cookie])
            gone.add(cookie)
    for c in sorted(gone):
        call = pool.calls.get(c)
        name = call.name if call is not None else "?"
        err = _lost_error(worker, c, name, exitcode)
        if call is not None and call.retried:
            runs = len(call.retried) + 1
            err.args = (f"{err.args[0]}; it crashed or timed out on each of its {runs} runs",)
        # It ran from about when it was sent: a worker starts what it gets on arrival.
        started = call.sent_at if call is not None and call.sent_at else now
        pool.record(c, Outcome(name, False, None, err, started, now, worker.pid, cookie=c))
    if pool.stopping is None and len(pool.workers) < pool.target:
        pool.start_worker()


def _run_again(pool: Pool, call: Call, error: HookError, now: float) -> None:
    """Run ``call`` again after its first retry delay; it stays in progress meanwhile."""
    delay, call.retry_delays = call.retry_delays[0], call.retry_delays[1:]
    call.retried.append(Retried(call.sent_at or now, now, str(error), delay))
    call.work, call.sent, call.worker = call.sent, None, None
    pool.deadlines.remove(("timeout", call.cookie))
    pool.dispatcher.requeue(call.cookie)
    pool.deadlines.add(("retry", call.cookie), now + delay)
    retry = len(call.retried)
    _LOG.warning(
        "%s; crash retry %d of %d in %g s",
        error,
        retry,
        retry + len(call.retry_delays),
        delay,
        extra={"initgraph_plugin": call.name, "initgraph_attempt": len(call.retried) + 1},
    )


def _drain(pool: Pool, worker: Worker) -> None:
    """Handle what a lost worker sent before it ended."""
    while True:
        try:
            if not worker.conn.poll():
                return
        except (EOFError, OSError):
            return
        if not receive(pool, worker):
            return


def _lost_error(worker: Worker, cookie: int, name: str, exitcode: int | None) -> HookError:
    """The failure of initcall ``cookie``, lost with ``worker``: a timeout or a crash."""
    if worker.timed_out is not None and worker.timed_out[0] == cookie:
        limit = worker.timed_out[1]
        msg = (
            f"initcall {cookie} {name!r} ran past its timeout of {limit:g} s and was "
            f"stopped; its worker was replaced"
        )
        return HookTimeout(msg, cookie=cookie, name=name, timeout=limit)
    how = describe_exitcode(exitcode)
    msg = (
        f"worker {worker.pid} crashed with {how} while running initcall {cookie} "
        f"{name!r}; the worker was replaced"
    )
    return WorkerCrashed(msg, cookie=cookie, name=name, exitcode=exitcode)
