"""The pure decisions of the core: what runs next, and whether a waiter may pass.

Nothing here touches a process, a clock, a pipe or a file, so every rule is tested step by step
in ``tests/test_state.py``. The pool loop (``pool.py``) feeds events in and carries the decisions
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
    held: bool = False
    dependents: list[int] = field(default_factory=list)
    worker: int | None = None

    @property
    def ready(self) -> bool:
        return not self.waiting_on and not self.held and self.worker is None


class Dispatcher:
    """Decides which ready initcall runs next, on which worker, and when the pool must grow.

    Initcalls enter with :meth:`add` (with the cookies they must run after that are still in
    progress) and leave with :meth:`complete`. Ready initcalls are handed out lowest cookie first
    (invariant 3), each to an idle worker: a worker holds only the initcall it runs. A cookie may
    be completed before it was added: work scheduled and finished inside a worker reaches the
    parent that way.
    """

    def __init__(self) -> None:
        self._initcalls: dict[int, _Initcall] = {}
        self._ready: list[int] = []
        self._done: set[int] = set()
        self._workers: dict[int, WorkerState] = {}
        self._running: dict[int, int] = {}  # worker -> the cookie it runs
        self._waiting_for_unknown: dict[int, list[int]] = {}  # cookie not yet added -> dependents

    # -- initcalls -----------------------------------------------------------------------------
    def add(self, cookie: int, after: Iterable[int] = (), *, held: bool = False) -> None:
        """Add an initcall that may start once every cookie of ``after`` has completed.

        ``held``: it may not start before :meth:`release` either (its work is not known yet).
        """
        if cookie in self._initcalls or cookie in self._done:
            msg = f"cookie {cookie} was added twice"
            raise ValueError(msg)
        pending = {c for c in after if c not in self._done and c != cookie}
        call = _Initcall(cookie, pending, held)
        self._initcalls[cookie] = call
        for dep in pending:
            dep_call = self._initcalls.get(dep)
            if dep_call is not None:
                dep_call.dependents.append(cookie)
            else:
                self._waiting_for_unknown.setdefault(dep, []).append(cookie)
        call.dependents.extend(self._waiting_for_unknown.pop(cookie, ()))
        if call.ready:
            heapq.heappush(self._ready, cookie)

    def release(self, cookie: int) -> bool:
        """Let ``cookie``, added ``held``, start; return whether it is ready now."""
        call = self._initcalls.get(cookie)
        if call is None or not call.held:
            msg = f"cookie {cookie} is not held"
            raise ValueError(msg)
        call.held = False
        if call.ready:
            heapq.heappush(self._ready, cookie)
            return True
        return False

    def requeue(self, cookie: int) -> None:
        """Run ``cookie`` again, held until :meth:`release`: its worker was lost, it is retried.

        Called after :meth:`remove_worker` took the worker away. It stays added (in progress)
        meanwhile, and what waits for it goes on waiting.
        """
        call = self._initcalls.get(cookie)
        if call is None or call.worker is None or self._running.get(call.worker) == cookie:
            msg = f"cookie {cookie} is not running on a worker that left"
            raise ValueError(msg)
        call.worker = None
        call.held = True

    def complete(self, cookie: int) -> list[int]:
        """Record that ``cookie`` returned, failed or crashed; return the cookies it made ready."""
        if cookie in self._done:
            return []
        self._done.add(cookie)
        call = self._initcalls.pop(cookie, None)
        dependents = call.dependents if call is not None else []
        dependents = dependents + self._waiting_for_unknown.pop(cookie, [])
        if call is not None and call.worker is not None:
            if self._running.get(call.worker) == cookie:
                del self._running[call.worker]
                if call.worker in self._workers:
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
            if dep_call.ready:
                heapq.heappush(self._ready, dep)
                newly.append(dep)
        return newly

    def is_done(self, cookie: int) -> bool:
        """Whether ``cookie`` has completed."""
        return cookie in self._done

    def running(self, worker: int) -> int | None:
        """The cookie ``worker`` is running, if any."""
        return self._running.get(worker)

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

    def remove_worker(self, worker: int) -> int | None:
        """A worker left the pool (died or retired); return the cookie it was running."""
        self._workers.pop(worker, None)
        return self._running.pop(worker, None)

    def blocked(self, worker: int) -> None:
        """A worker went to sleep in a synchronize."""
        if worker in self._running and worker in self._workers:
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

    def assign(self, keep_idle: int = 0) -> list[tuple[int, int]]:
        """Hand ready initcalls to idle workers: lowest cookie first, lowest worker id first.

        ``keep_idle``: leave that many idle workers without work (the pool keeps them for held
        initcalls about to be released).
        """
        out: list[tuple[int, int]] = []
        if not self._ready:
            return out
        idle = sorted(w for w, s in self._workers.items() if s is WorkerState.IDLE)
        for worker in idle[: max(0, len(idle) - keep_idle)]:
            if not self._ready:
                break
            cookie = heapq.heappop(self._ready)
            self._initcalls[cookie].worker = worker
            self._workers[worker] = WorkerState.BUSY
            self._running[worker] = cookie
            out.append((worker, cookie))
        return out

    def should_grow(self, max_workers: int, target: int = 1, asleep: Collection[int] = ()) -> bool:
        """Whether to start one more worker, up to ``max_workers``, for work that waits.

        At once when every worker is blocked and work is ready (invariant 5). And when the
        workers ``asleep`` (blocked in a synchronize for a while; the pool decides how long)
        leave fewer than ``target`` running while work is ready and no worker is idle: a
        sleeping worker uses no CPU, so the pool starts another, as a ForkJoinPool compensates
        for a managed block.
        """
        if len(self._workers) >= max_workers or not self._ready:
            return False
        states = self._workers.values()
        if all(s is WorkerState.BLOCKED for s in states):
            return True
        if not asleep or WorkerState.IDLE in states:
            return False
        running = sum(
            s is WorkerState.BUSY or (s is WorkerState.BLOCKED and w not in asleep)
            for w, s in self._workers.items()
        )
        return running < target

    def stalled(self, max_workers: int) -> int | None:
        """The lowest ready cookie, when every worker is blocked and the pool may not grow.

        Nothing can run then until a blocked initcall gives up: the pool must fail that
        initcall rather than hang (see ``Pool._expired_stall``).
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
