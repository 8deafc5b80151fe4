"""The pure decisions of the core: what runs next, and whether a waiter may pass.

Nothing here touches a process, a clock, a pipe or a file, so every rule is tested step by step
in ``tests/test_state.py``. The pool (``_scheduler.py``) feeds events in and carries the decisions
out.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from .._errors import DeadlockError

__all__ = ["GROW_AFTER", "Dispatcher", "WorkerState", "check_full_wait", "check_wait", "may_pass"]


def may_pass(low: int, cookie: int) -> bool:
    """Whether a waiter for ``cookie`` may pass, given its domain's lowest in-progress cookie.

    ``low`` is 0 when nothing is in progress in the domain. The waiter never waits for ``cookie``
    itself, only for lower ones (the kernel's ``async_synchronize_cookie_domain``).
    """
    return low == 0 or low >= cookie


def check_wait(
    running: Sequence[tuple[int, str]], cookie: int, domain: str, *, describe: str = ""
) -> None:
    """Raise DeadlockError if an initcall waiting for ``cookie`` in ``domain`` waits on itself.

    ``running`` is the stack of initcalls this thread is running, innermost last, as
    ``(cookie, domain)``. A wait covers every lower cookie of its domain, so it can never end when
    it covers a cookie that is running here, below the waiting frame.
    """
    for own, own_domain in running:
        if own_domain == domain and cookie > own:
            what = describe or f"synchronize_cookie({cookie}, domain={domain!r})"
            msg = (
                f"{what} inside initcall {own} of domain {domain!r} waits for that initcall "
                f"itself and can never return; wait for cookie {own} at most "
                f"(synchronize_cookie(ctx_cookie)), or wait outside the initcall"
            )
            raise DeadlockError(msg)


def check_full_wait(
    running: Sequence[tuple[int, str]], domain: str | None, exclusive: frozenset[str]
) -> None:
    """Raise DeadlockError if a full synchronize here covers a running initcall's own domain."""
    for own, own_domain in running:
        covered = own_domain == domain if domain is not None else own_domain not in exclusive
        if covered:
            target = f"domain={domain!r}" if domain is not None else "every registered domain"
            msg = (
                f"synchronize_full() over {target} inside initcall {own} of domain "
                f"{own_domain!r} waits for that initcall itself and can never return; use "
                f"synchronize_cookie({own}) to wait for the initcalls before it"
            )
            raise DeadlockError(msg)


# A worker asleep in a synchronize this long no longer counts as running: the pool may start
# another for work that waits (see Dispatcher.should_grow). Shorter sleeps, the many brief
# waits of a busy boot, would only make the pool start and retire workers: 126 starts for 16
# workers in the stress without it, 24-39 with it.
GROW_AFTER = 0.010


class WorkerState(Enum):
    """What the dispatcher knows of a worker."""

    IDLE = "idle"
    BUSY = "busy"
    BLOCKED = "blocked"


@dataclass
class _Initcall:
    cookie: int
    waiting_on: set[int]
    dependents: list[int] = field(default_factory=list)
    worker: int | None = None


class Dispatcher:
    """Decides which ready initcall runs next, on which worker, and when the pool must grow.

    Initcalls enter with :meth:`add` (with the cookies they must run after that are still in
    progress) and leave with :meth:`complete`. Ready initcalls are handed out lowest cookie first
    (invariant 3). A cookie may be completed before it was added: work scheduled and finished
    inside a worker reaches the parent that way.

    A worker may hold a short queue: the initcall it runs (the head) and, with ``depth`` above 1,
    the next ones, so it never waits for the parent between two initcalls. Only initcalls added
    as ``queueable`` wait in a queue (one with a timeout must start when it is sent). Queued
    initcalls that have not started can be taken back (:meth:`requeue`) when their worker
    blocks, dies or runs long, so a queue never holds back work that others wait for.
    """

    def __init__(self) -> None:
        self._initcalls: dict[int, _Initcall] = {}
        self._ready: list[int] = []
        self._done: set[int] = set()
        self._queueable: set[int] = set()
        self._workers: dict[int, WorkerState] = {}
        self._queues: dict[int, list[int]] = {}  # worker -> its cookies; the head runs
        self._waiting_for_unknown: dict[int, list[int]] = {}  # cookie not yet added -> dependents
        self._hints: list[tuple[int, int]] = []  # (cookie, a cookie it still waits for, or 0)

    # -- initcalls -----------------------------------------------------------------------------
    def add(self, cookie: int, after: Iterable[int] = (), *, queueable: bool = False) -> None:
        """Add an initcall that may start once every cookie of ``after`` has completed."""
        if cookie in self._initcalls or cookie in self._done:
            msg = f"cookie {cookie} was added twice"
            raise ValueError(msg)
        pending = {c for c in after if c not in self._done and c != cookie}
        call = _Initcall(cookie, pending)
        self._initcalls[cookie] = call
        if queueable:
            self._queueable.add(cookie)
        for dep in pending:
            dep_call = self._initcalls.get(dep)
            if dep_call is not None:
                dep_call.dependents.append(cookie)
            else:
                self._waiting_for_unknown.setdefault(dep, []).append(cookie)
        call.dependents.extend(self._waiting_for_unknown.pop(cookie, ()))
        if not pending:
            heapq.heappush(self._ready, cookie)
        elif cookie > 0:
            self._hint(cookie, pending)

    def complete(self, cookie: int) -> list[int]:
        """Record that ``cookie`` returned, failed or crashed; return the cookies it made ready."""
        if cookie in self._done:
            return []
        self._done.add(cookie)
        self._queueable.discard(cookie)
        call = self._initcalls.pop(cookie, None)
        dependents = call.dependents if call is not None else []
        dependents = dependents + self._waiting_for_unknown.pop(cookie, [])
        if call is not None and call.worker is not None:
            queue = self._queues.get(call.worker)
            if queue is not None and cookie in queue:
                queue.remove(cookie)
                if not queue and call.worker in self._workers:
                    self._workers[call.worker] = WorkerState.IDLE
        elif call is not None and cookie in self._ready:
            self._ready.remove(cookie)
            heapq.heapify(self._ready)
        newly: list[int] = []
        for dep in dependents:
            dep_call = self._initcalls.get(dep)
            if dep_call is None:
                continue
            dep_call.waiting_on.discard(cookie)
            if not dep_call.waiting_on and dep_call.worker is None:
                heapq.heappush(self._ready, dep)
                newly.append(dep)
            elif dep_call.waiting_on and cookie > 0 and dep > 0:
                self._hint(dep, dep_call.waiting_on)
        return newly

    def _hint(self, cookie: int, pending: set[int]) -> None:
        waits = [c for c in pending if c > 0]
        self._hints.append((cookie, max(waits) if waits else 0))

    def take_hints(self) -> list[tuple[int, int]]:
        """``(cookie, dep)`` for initcalls that wait, each for one cookie ``dep`` it waits for.

        The pool writes them to the shared ring, where a worker about to start a queued
        initcall can tell a lower cookie that surely cannot start yet (``dep`` is still in
        progress) from one that may be ready. ``dep`` 0: no known cookie to name.
        """
        hints, self._hints = self._hints, []
        return hints

    def is_done(self, cookie: int) -> bool:
        """Whether ``cookie`` has completed."""
        return cookie in self._done

    def running(self, worker: int) -> int | None:
        """The cookie ``worker`` is running (the head of its queue), if any."""
        queue = self._queues.get(worker)
        return queue[0] if queue else None

    def queued(self, worker: int) -> list[int]:
        """The cookies waiting behind the one ``worker`` runs."""
        return list(self._queues.get(worker, [])[1:])

    @property
    def ready(self) -> list[int]:
        """Ready cookies, lowest first."""
        return sorted(self._ready)

    @property
    def pending(self) -> int:
        """How many added initcalls have not completed."""
        return len(self._initcalls)

    # -- workers -------------------------------------------------------------------------------
    def add_worker(self, worker: int) -> None:
        """A worker joined the pool, idle."""
        self._workers[worker] = WorkerState.IDLE
        self._queues[worker] = []

    def remove_worker(self, worker: int) -> tuple[int | None, list[int]]:
        """A worker left the pool (died or retired).

        Returns the cookie it was running and the queued ones, which go back to the ready set:
        they never started.
        """
        self._workers.pop(worker, None)
        queue = self._queues.pop(worker, [])
        for cookie in queue[1:]:
            self._back_to_ready(cookie)
        return (queue[0] if queue else None), queue[1:]

    def requeue(self, worker: int, cookie: int) -> None:
        """Take back ``cookie``, queued on ``worker`` and not started: it is ready again."""
        queue = self._queues.get(worker)
        if queue is None or cookie not in queue[1:]:
            msg = f"cookie {cookie} is not queued behind another on worker {worker}"
            raise ValueError(msg)
        queue.remove(cookie)
        self._back_to_ready(cookie)

    def give_back(self, worker: int, cookie: int) -> None:
        """``worker`` handed back ``cookie`` without starting it: it is ready again.

        Unlike :meth:`requeue`, ``cookie`` may have become the head of the queue (the initcall
        before it completed): the worker declined to start it while a lower cookie waited. It
        may not wait in a queue again, so the next worker that gets it starts it.
        """
        self._queueable.discard(cookie)  # from now on it goes to an idle worker only
        self.take_out(worker, cookie)

    def not_ready(self, worker: int) -> list[int]:
        """Cookies in ``worker``'s queue that wait for something (followers of one handed back)."""
        return [c for c in self._queues.get(worker, []) if self._initcalls[c].waiting_on]

    def take_out(self, worker: int, cookie: int) -> None:
        """Take ``cookie``, not started, out of ``worker``'s queue, wherever it is in it."""
        queue = self._queues.get(worker)
        if queue is None or cookie not in queue:
            msg = f"cookie {cookie} is not in the queue of worker {worker}"
            raise ValueError(msg)
        queue.remove(cookie)
        if not queue:
            self._workers[worker] = WorkerState.IDLE
        self._back_to_ready(cookie)

    def _back_to_ready(self, cookie: int) -> None:
        call = self._initcalls.get(cookie)
        if call is not None:
            call.worker = None
            if not call.waiting_on:  # a follower taken back waits for what it followed
                heapq.heappush(self._ready, cookie)

    def blocked(self, worker: int) -> None:
        """A worker went to sleep in a synchronize."""
        if worker in self._workers and self._queues.get(worker):
            self._workers[worker] = WorkerState.BLOCKED

    def unblocked(self, worker: int) -> None:
        """A worker woke from a synchronize and runs again."""
        if self._workers.get(worker) is WorkerState.BLOCKED:
            self._workers[worker] = WorkerState.BUSY

    def state(self, worker: int) -> WorkerState:
        """What ``worker`` is doing."""
        return self._workers[worker]

    @property
    def workers(self) -> dict[int, WorkerState]:
        """Every worker and its state."""
        return dict(self._workers)

    def assign(self, depth: int = 1) -> list[tuple[int, int]]:
        """Hand ready initcalls to workers, lowest cookie first.

        Idle workers are served first, lowest worker id first; then, up to ``depth`` initcalls
        per worker, queues of busy (not blocked) workers, with queueable initcalls only. An
        initcall that may not wait in a queue stops the second round, so a higher cookie never
        overtakes it.

        A queue may also take a *follower*: an initcall that waits only for the last one in
        that queue, and so becomes ready exactly when the worker gets to it (a continuation:
        no round trip to the pool in between). It is taken when it is lower than the lowest
        ready cookie, so the order stays lowest first.
        """
        out: list[tuple[int, int]] = []
        for level in range(depth):
            candidates = sorted(
                w
                for w, s in self._workers.items()
                if s is not WorkerState.BLOCKED and len(self._queues[w]) == level
            )
            for worker in candidates:
                follower = self._follower(worker) if level > 0 else None
                ready = self._ready[0] if self._ready else None
                if ready is not None and level > 0 and ready not in self._queueable:
                    # It must start when sent; nothing higher may overtake it in a queue.
                    if follower is None or follower > ready:
                        return out
                    ready = None
                if follower is not None and (ready is None or follower < ready):
                    cookie = follower
                elif ready is not None:
                    cookie = heapq.heappop(self._ready)
                else:
                    continue
                self._initcalls[cookie].worker = worker
                self._workers[worker] = WorkerState.BUSY
                self._queues[worker].append(cookie)
                out.append((worker, cookie))
        return out

    def _follower(self, worker: int) -> int | None:
        """The lowest queueable initcall that waits only for the last one queued on ``worker``."""
        queue = self._queues[worker]
        if not queue:
            return None
        tail = queue[-1]
        call = self._initcalls.get(tail)
        if call is None:
            return None
        best = None
        for dep in call.dependents:
            dep_call = self._initcalls.get(dep)
            if (
                dep_call is not None
                and dep_call.worker is None
                and dep_call.waiting_on == {tail}
                and dep in self._queueable
                and (best is None or dep < best)
            ):
                best = dep
        return best

    def stealable(self) -> list[int]:
        """Busy workers with initcalls queued behind the one they run, while another is idle.

        Nothing is ready, so the idle worker has nothing else to do: what waits in a queue
        could start there at once (the pool decides whether the queue has waited long enough).
        """
        if self._ready or WorkerState.IDLE not in self._workers.values():
            return []
        return sorted(
            w for w, s in self._workers.items() if s is WorkerState.BUSY and self.queued_ready(w)
        )

    def queued_ready(self, worker: int) -> list[int]:
        """The ready cookies queued behind the one ``worker`` runs (not its followers)."""
        return [c for c in self._queues.get(worker, [])[1:] if not self._initcalls[c].waiting_on]

    def should_grow(self, max_workers: int, target: int = 1, asleep: Collection[int] = ()) -> bool:
        """Whether to start one more worker, up to ``max_workers``, for work that waits.

        At once when every worker is blocked and work is ready (invariant 5). And when the
        workers ``asleep`` (blocked in a synchronize for a while; the pool decides how long)
        leave fewer than ``target`` running while work waits (ready, or ready and queued
        behind a running initcall) and no worker is idle: a sleeping worker uses no CPU, so
        the pool starts another, as a ForkJoinPool compensates for a managed block.
        """
        if len(self._workers) >= max_workers:
            return False
        states = self._workers.values()
        if self._ready and all(s is WorkerState.BLOCKED for s in states):
            return True
        if not asleep or WorkerState.IDLE in states:
            return False
        running = sum(
            s is WorkerState.BUSY or (s is WorkerState.BLOCKED and w not in asleep)
            for w, s in self._workers.items()
        )
        if running >= target:
            return False
        busy = [w for w, s in self._workers.items() if s is WorkerState.BUSY]
        return bool(self._ready) or any(self.queued_ready(w) for w in busy)

    def stalled(self, max_workers: int) -> int | None:
        """The lowest ready cookie, when every worker is blocked and the pool may not grow.

        Nothing can run then until a blocked initcall gives up: the pool must fail that
        initcall rather than hang (see ``Scheduler``).
        """
        if not self._ready or len(self._workers) < max_workers or not self._workers:
            return None
        if all(s is WorkerState.BLOCKED for s in self._workers.values()):
            return self._ready[0]
        return None

    def surplus(self, target: int) -> list[int]:
        """Idle workers beyond ``target`` that may retire, once no worker is blocked."""
        if len(self._workers) <= target:
            return []
        if any(s is WorkerState.BLOCKED for s in self._workers.values()) or self._ready:
            return []
        idle = sorted((w for w, s in self._workers.items() if s is WorkerState.IDLE), reverse=True)
        return idle[: len(self._workers) - target]
