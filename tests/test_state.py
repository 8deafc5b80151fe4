"""The pure decisions of the core, step by step, without processes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from initgraph import DeadlockError
from initgraph._core.dispatch import Dispatcher, WorkerState, check_full_wait, check_wait, may_pass


def test_may_pass_waits_only_for_lower_cookies() -> None:
    assert may_pass(0, 5)  # nothing in progress
    assert may_pass(5, 5)  # the waiter's own cookie is not waited for
    assert may_pass(7, 5)
    assert not may_pass(4, 5)


def test_check_wait_allows_own_cookie_and_other_domains() -> None:
    check_wait([(5, "default")], 5, "default")
    check_wait([(5, "default")], 3, "default")
    check_wait([(5, "default")], 99, "net")
    check_wait([], 99, "default")


def test_check_wait_refuses_waiting_on_itself() -> None:
    with pytest.raises(DeadlockError, match=r"^synchronize_cookie\(6, domain='default'\) inside "):
        check_wait([(5, "default")], 6, "default")
    # an outer frame counts too: the inner initcall runs inside initcall 2
    with pytest.raises(DeadlockError):
        check_wait([(2, "net"), (9, "default")], 3, "net")


def test_check_full_wait() -> None:
    check_full_wait([], None, frozenset())
    check_full_wait([(3, "x")], None, frozenset({"x"}))  # exclusive: not covered
    check_full_wait([(3, "a")], "b", frozenset())
    with pytest.raises(DeadlockError, match="every registered domain"):
        check_full_wait([(3, "a")], None, frozenset())
    with pytest.raises(DeadlockError, match=r"domain='a'"):
        check_full_wait([(3, "a")], "a", frozenset())


def test_dispatch_lowest_cookie_first_to_lowest_worker() -> None:
    d = Dispatcher()
    d.add_worker(0)
    d.add_worker(1)
    for c in (3, 1, 2):
        d.add(c)
    assert d.assign() == [(0, 1), (1, 2)]
    assert d.ready == [3]
    assert d.assign() == []
    assert d.complete(2) == []
    assert d.assign() == [(1, 3)]
    assert d.state(0) is WorkerState.BUSY


def test_after_holds_until_dependency_completes() -> None:
    d = Dispatcher()
    d.add_worker(0)
    d.add(1)
    d.add(2, after=[1])
    assert d.assign() == [(0, 1)]
    assert d.ready == []
    assert d.complete(1) == [2]
    assert d.assign() == [(0, 2)]


def test_dependency_on_cookie_not_yet_known() -> None:
    # cookie 5 was scheduled in a worker and its message is still on the way
    d = Dispatcher()
    d.add_worker(0)
    d.add(6, after=[5])
    assert d.ready == []
    d.add(5)
    assert d.assign() == [(0, 5)]
    assert d.complete(5) == [6]


def test_dependency_completed_before_it_was_added() -> None:
    # cookie 5 ran inline in a worker: its completion arrives without an add
    d = Dispatcher()
    d.add(6, after=[5])
    assert d.complete(5) == [6]
    assert d.is_done(5)
    assert d.ready == [6]


def test_a_held_initcall_starts_only_once_released() -> None:
    """The boot reserves cookies first and provides the work later."""
    d = Dispatcher()
    d.add_worker(0)
    d.add(1, held=True)
    d.add(2, after=[1])
    assert d.assign() == []
    assert d.release(1)
    assert d.assign() == [(0, 1)]
    with pytest.raises(ValueError, match=r"^cookie 1 is not held$"):
        d.release(1)


def test_a_held_initcall_released_before_its_dependencies_waits_for_them() -> None:
    d = Dispatcher()
    d.add_worker(0)
    d.add(1)
    d.add(2, after=[1], held=True)
    assert d.assign() == [(0, 1)]
    assert not d.release(2)  # still waits for 1
    assert d.complete(1) == [2]
    assert d.assign() == [(0, 2)]


def test_a_held_initcall_stays_held_when_its_dependencies_end() -> None:
    d = Dispatcher()
    d.add_worker(0)
    d.add(1)
    d.add(2, after=[1], held=True)
    d.add(3, after=[2])
    assert d.assign() == [(0, 1)]
    assert d.complete(1) == []  # 2 is held
    assert d.assign() == []


def test_a_held_initcall_may_complete_without_running() -> None:
    """Cancelled, or run in the parent: its dependents go on, it is never handed out."""
    d = Dispatcher()
    d.add_worker(0)
    d.add(1, held=True)
    d.add(2, after=[1])
    assert d.complete(1) == [2]
    assert d.assign() == [(0, 2)]
    assert d.pending == 1
    with pytest.raises(ValueError, match=r"^cookie 1 is not held$"):
        d.release(1)


def test_added_twice_is_a_bug() -> None:
    d = Dispatcher()
    d.add(1)
    with pytest.raises(ValueError, match="cookie 1 was added twice"):
        d.add(1)


def test_grow_only_when_every_worker_is_blocked_and_work_is_ready() -> None:
    d = Dispatcher()
    d.add_worker(0)
    d.add(1)
    d.add(2)
    assert d.assign() == [(0, 1)]
    assert not d.should_grow(4)  # worker 0 is busy, not blocked
    d.blocked(0)
    assert d.state(0) is WorkerState.BLOCKED
    assert d.should_grow(4)
    assert not d.should_grow(1)  # at max_workers
    d.add_worker(1)
    assert d.assign() == [(1, 2)]
    assert not d.should_grow(4)  # nothing ready
    d.unblocked(0)
    assert d.state(0) is WorkerState.BUSY


def test_grow_for_workers_asleep_that_leave_fewer_than_target_running() -> None:
    """Compensation: a worker asleep (for a while) in a synchronize does not count as running."""
    d = Dispatcher()
    d.add_worker(0)
    d.add_worker(1)
    for cookie in (1, 2, 3):
        d.add(cookie)
    assert d.assign() == [(0, 1), (1, 2)]
    d.blocked(1)
    assert not d.should_grow(8, 2)  # blocked, but not asleep for long enough yet
    assert d.should_grow(8, 2, asleep={1})  # one runs, one sleeps, 3 is ready
    assert not d.should_grow(8, 1, asleep={1})  # one running meets a target of 1
    assert not d.should_grow(2, 2, asleep={1})  # at max_workers
    d.add_worker(2)
    assert not d.should_grow(8, 2, asleep={1})  # the idle worker takes it
    assert d.assign() == [(2, 3)]
    assert not d.should_grow(8, 2, asleep={1})  # nothing waits


def test_surplus_workers_retire_when_nothing_is_blocked() -> None:
    d = Dispatcher()
    for w in range(3):
        d.add_worker(w)
    d.add(1)
    assert d.assign() == [(0, 1)]
    d.blocked(0)
    assert d.surplus(1) == []  # a blocked worker may still need them
    d.unblocked(0)
    assert d.surplus(1) == [2, 1]
    d.complete(1)
    assert d.state(0) is WorkerState.IDLE


def test_worker_loss_returns_the_initcall_it_ran() -> None:
    d = Dispatcher()
    d.add_worker(0)
    d.add(1)
    d.add(2)
    assert d.assign() == [(0, 1)]  # a worker holds only the initcall it runs
    assert d.running(0) == 1
    assert d.remove_worker(0) == 1
    assert d.ready == [2]
    assert d.complete(1) == []
    assert d.pending == 1
    assert d.remove_worker(0) is None


def test_a_lower_cookie_ready_late_goes_before_a_higher_one() -> None:
    """1 runs; 2 waits for 1; 3 is ready. When 1 ends, its worker takes 2, not 3."""
    d = Dispatcher()
    d.add_worker(0)
    d.add(1)
    d.add(2, after=[1])
    d.add(3)
    assert d.assign() == [(0, 1)]
    assert d.complete(1) == [2]
    assert d.state(0) is WorkerState.IDLE
    assert d.assign() == [(0, 2)]
    assert d.ready == [3]


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 25),
    workers=st.integers(1, 4),
    edges=st.lists(st.tuples(st.integers(1, 25), st.integers(1, 25)), max_size=40),
    order=st.randoms(use_true_random=False),
)
def test_every_initcall_runs_once_lowest_ready_first(
    n: int, workers: int, edges: list[tuple[int, int]], order: object
) -> None:
    """Random DAGs (edges only to lower cookies), random completion order."""
    import random

    assert isinstance(order, random.Random)
    deps: dict[int, set[int]] = {c: set() for c in range(1, n + 1)}
    for a, b in edges:
        lo, hi = sorted((a, b))
        if lo != hi and hi <= n:
            deps[hi].add(lo)
    d = Dispatcher()
    for w in range(workers):
        d.add_worker(w)
    for c in range(1, n + 1):
        d.add(c, after=deps[c])
    done: list[int] = []
    runs: dict[int, int] = {}  # worker -> the cookie it runs
    while len(done) < n:
        ready_before = d.ready
        for worker, cookie in d.assign():
            assert cookie == ready_before.pop(0), "lowest ready cookie first"
            assert worker not in runs, "a worker holds one initcall at a time"
            runs[worker] = cookie
        assert runs, "no progress: a deadlock"
        worker = order.choice(sorted(runs))
        cookie = runs.pop(worker)
        assert d.running(worker) == cookie
        assert deps[cookie] <= set(done), "started before what it runs after"
        d.complete(cookie)
        done.append(cookie)
    assert sorted(done) == list(range(1, n + 1))
    assert d.pending == 0


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(1, 20),
    workers=st.integers(1, 3),
    edges=st.lists(st.tuples(st.integers(1, 20), st.integers(1, 20)), max_size=30),
    held=st.sets(st.integers(1, 20), max_size=4),
    order=st.randoms(use_true_random=False),
)
def test_blocks_and_crashes_never_run_anything_twice_or_early(
    n: int, workers: int, edges: list[tuple[int, int]], held: set[int], order: object
) -> None:
    """Random DAGs with every event the pool feeds in, in random order.

    Workers run what they are given, block in a synchronize and wake, and die (what they ran
    fails, a new worker joins); initcalls added ``held`` are released at random moments.
    Checked: a worker holds one initcall at a time, nothing starts before what it runs after or
    while held, everything completes exactly once, and the lowest ready cookie goes first.
    """
    import random

    assert isinstance(order, random.Random)
    deps: dict[int, set[int]] = {c: set() for c in range(1, n + 1)}
    for a, b in edges:
        lo, hi = sorted((a, b))
        if lo != hi and hi <= n:
            deps[hi].add(lo)
    d = Dispatcher()
    runs: dict[int, int] = {}
    blocked: set[int] = set()
    done: list[int] = []
    next_worker = 0

    def add_worker() -> None:
        nonlocal next_worker
        d.add_worker(next_worker)
        next_worker += 1

    for _ in range(workers):
        add_worker()
    holding = {c for c in held if c <= n}
    for c in range(1, n + 1):
        d.add(c, after=deps[c], held=c in holding)
    for step in range(60 * n + 20):
        if len(done) == n:
            break
        ready_before = d.ready
        for worker, cookie in d.assign():
            assert cookie == ready_before.pop(0), "lowest ready cookie first"
            assert worker not in runs, "handed a second initcall"
            assert cookie not in done, "handed out after it completed"
            assert deps[cookie] <= set(done), "started before what it runs after"
            assert cookie not in holding, "started while held"
            runs[worker] = cookie
        busy = [w for w in runs if w not in blocked]
        # The random phase first; then (generated randomness may be adversarial) only
        # completions and wake-ups, so everything must end.
        event = order.random() if step < 20 * n else 1.0
        if holding and (0.4 <= event < 0.5 or not (busy or blocked)):  # its work arrives
            c = order.choice(sorted(holding))
            holding.discard(c)
            d.release(c)
        elif blocked and (event < 0.15 or not busy):  # a blocked worker wakes
            w = order.choice(sorted(blocked))
            blocked.discard(w)
            d.unblocked(w)
        elif not busy:
            raise AssertionError(f"no progress: ready {d.ready}, runs {runs}")
        elif event < 0.25:  # it blocks in a synchronize
            w = order.choice(busy)
            d.blocked(w)
            blocked.add(w)
            assert d.state(w) is WorkerState.BLOCKED
        elif event < 0.32:  # the worker dies: what it ran fails, a new worker joins
            w = order.choice(busy)
            cookie = runs.pop(w)
            assert d.remove_worker(w) == cookie
            d.complete(cookie)
            done.append(cookie)
            add_worker()
        else:  # it runs to the end
            w = order.choice(busy)
            cookie = runs.pop(w)
            assert d.running(w) == cookie
            d.complete(cookie)
            done.append(cookie)
    assert sorted(done) == list(range(1, n + 1)), (done, runs, d.ready)
    assert d.pending == 0
