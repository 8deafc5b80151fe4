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


def test_grow_for_work_queued_behind_a_running_initcall() -> None:
    d = Dispatcher()
    d.add_worker(0)
    d.add_worker(1)
    for cookie in (1, 2, 3):
        d.add(cookie, queueable=True)
    assert d.assign(2) == [(0, 1), (1, 2), (0, 3)]
    d.blocked(1)
    assert d.ready == []
    assert d.queued_ready(0) == [3]
    assert d.should_grow(8, 2, asleep={1})  # a new worker may take 3 from behind 1
    d.unblocked(1)
    assert not d.should_grow(8, 2, asleep={1})


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


def test_worker_loss_returns_its_initcall_and_requeues_the_rest() -> None:
    d = Dispatcher()
    d.add_worker(0)
    d.add(1, queueable=True)
    d.add(2, queueable=True)
    assert d.assign(2) == [(0, 1), (0, 2)]
    assert d.running(0) == 1
    assert d.remove_worker(0) == (1, [2])
    assert d.ready == [2]  # it never started: it runs elsewhere
    assert d.complete(1) == []
    assert d.pending == 1


def test_queues_fill_idle_workers_first_then_second_places() -> None:
    d = Dispatcher()
    d.add_worker(0)
    d.add_worker(1)
    for c in range(1, 6):
        d.add(c, queueable=True)
    assert d.assign(2) == [(0, 1), (1, 2), (0, 3), (1, 4)]
    assert d.ready == [5]
    assert d.queued(0) == [3]
    assert d.complete(1) == []
    assert d.running(0) == 3
    assert d.assign(2) == [(0, 5)]


def test_a_cookie_that_may_not_queue_stops_the_second_round() -> None:
    d = Dispatcher()
    d.add_worker(0)
    d.add_worker(1)
    d.add(1, queueable=True)
    d.add(2, queueable=True)
    d.add(3, queueable=False)  # has a timeout: must start when sent
    d.add(4, queueable=True)
    assert d.assign(2) == [(0, 1), (1, 2)]  # 4 may not overtake 3
    d.add_worker(2)
    assert d.assign(2) == [(2, 3), (0, 4)]


def test_not_queueable_waits_for_an_idle_worker() -> None:
    d = Dispatcher()
    d.add_worker(0)
    d.add(1, queueable=True)
    d.add(2, queueable=False)
    d.add(3, queueable=True)
    assert d.assign(2) == [(0, 1)]  # 3 may not overtake 2
    d.complete(1)
    assert d.assign(2) == [(0, 2), (0, 3)]


def test_blocked_worker_gets_nothing_queued_and_gives_back() -> None:
    d = Dispatcher()
    d.add_worker(0)
    d.add(1, queueable=True)
    d.add(2, queueable=True)
    assert d.assign(2) == [(0, 1), (0, 2)]
    d.blocked(0)
    d.requeue(0, 2)
    assert d.queued(0) == []
    assert d.ready == [2]
    assert d.assign(2) == []  # blocked: nothing new for it
    assert d.should_grow(2)
    with pytest.raises(ValueError, match="cookie 1 is not queued behind another on worker 0"):
        d.requeue(0, 1)


def test_a_declined_head_goes_back_and_the_lower_cookie_runs_first() -> None:
    """The worker hands back its queued 3 because 2 became ready when 1 ended (invariant 3)."""
    d = Dispatcher()
    d.add_worker(0)
    d.add(1, queueable=True)
    d.add(2, after=[1])  # has a timeout: it may not wait in a queue, even as a follower
    d.add(3, queueable=True)
    assert d.assign(2) == [(0, 1), (0, 3)]
    assert d.complete(1) == [2]
    assert d.running(0) == 3  # the queued one became the head...
    d.give_back(0, 3)  # ...and the worker declined it
    assert d.state(0) is WorkerState.IDLE
    assert d.assign(2) == [(0, 2)]  # 3 waits for an idle worker now: no queue can decline it
    d.complete(2)
    assert d.assign(2) == [(0, 3)]


def test_a_follower_waits_in_the_queue_of_what_it_follows() -> None:
    """2 waits only for 1: queued right behind it, it starts when 1 ends, with no round trip."""
    d = Dispatcher()
    d.add_worker(0)
    d.add(1, queueable=True)
    d.add(2, after=[1], queueable=True)
    d.add(3, queueable=True)
    assert d.assign(2) == [(0, 1), (0, 2)]  # 2 before 3: lowest first still
    assert d.ready == [3]
    assert d.complete(1) == []  # 2 is ready, and already where it runs
    assert d.running(0) == 2
    assert d.assign(2) == [(0, 3)]
    # Taken back (its worker blocked), a follower waits for what it followed, not in 'ready'.
    d.add(4, queueable=True)
    d.add(5, after=[4], queueable=True)
    d.complete(2)
    d.complete(3)
    assert d.assign(2) == [(0, 4), (0, 5)]
    assert d.stealable() == []  # nothing ready is queued: an idle worker could not run 5
    d.blocked(0)
    d.requeue(0, 5)
    assert d.ready == []
    assert d.complete(4) == [5]
    with pytest.raises(ValueError, match="cookie 4 is not in the queue of worker 0"):
        d.give_back(0, 4)


def test_hints_name_a_cookie_each_waiting_initcall_still_waits_for() -> None:
    d = Dispatcher()
    d.add(1)
    d.add(2)
    d.add(3, after=[1, 2])
    d.add(4, after=[9])  # not known yet: still a cookie it waits for
    d.add(5, after=[-5])  # a boot's held initcall: nothing real to name
    assert d.take_hints() == [(3, 2), (4, 9), (5, 0)]
    assert d.take_hints() == []
    d.complete(2)
    assert d.take_hints() == [(3, 1)]  # still waits for 1
    assert d.complete(1) == [3]
    assert d.take_hints() == []  # ready: the pool gives it a runner


def test_stealable_only_while_a_worker_idles_with_nothing_ready() -> None:
    d = Dispatcher()
    d.add_worker(0)
    d.add_worker(1)
    for c in range(1, 5):
        d.add(c, queueable=True)
    assert d.assign(2) == [(0, 1), (1, 2), (0, 3), (1, 4)]
    assert d.stealable() == []  # nobody idles
    d.complete(2)
    d.complete(4)
    assert d.stealable() == [0]  # 3 waits behind 1 while worker 1 idles
    d.add(5, queueable=True)
    assert d.stealable() == []  # the idle worker has work of its own
    assert d.assign(2) == [(1, 5)]
    d.complete(5)
    d.blocked(0)
    assert d.stealable() == []  # a blocked worker's queue is taken back on Blocked


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
        d.add(c, after=deps[c], queueable=True)
    done: list[int] = []
    queues: dict[int, list[int]] = {w: [] for w in range(workers)}
    while len(done) < n:
        ready_before = d.ready
        for worker, cookie in d.assign(2):
            if ready_before and cookie == ready_before[0]:
                ready_before.pop(0)  # lowest ready cookie first...
            else:  # ...or a follower of what the worker runs last, lower than any ready one
                assert queues[worker], "a follower needs something to follow"
                assert deps[cookie] - set(done) == {queues[worker][-1]}, "follows one only"
                assert not ready_before or cookie < ready_before[0], "lowest first"
            queues[worker].append(cookie)
        busy = sorted(w for w, q in queues.items() if q)
        assert busy, "no progress: a deadlock"
        worker = order.choice(busy)
        cookie = queues[worker].pop(0)  # a worker finishes its queue in order
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
    timed=st.sets(st.integers(1, 20), max_size=4),
    order=st.randoms(use_true_random=False),
)
def test_faults_and_hand_backs_never_run_anything_twice_or_early(
    n: int, workers: int, edges: list[tuple[int, int]], timed: set[int], order: object
) -> None:
    """Random DAGs with every event the pool feeds in, in random order.

    A model of each worker's pipe runs beside the dispatcher: a worker starts the initcalls
    of its queue in order; it may hand back one that was sent to wait in the queue (a lower
    cookie went first) and then, as the worker does, every queued one after it until one sent
    as a head arrives. Workers also block (what waits behind the head is taken back) and wake,
    and die (what they ran fails, what they held comes back, a new worker joins). Followers and
    initcalls that may not queue (``timed``) are mixed in. Checked: nothing is handed out
    while held, nothing starts before what it runs after, everything completes exactly once.
    """
    import random

    assert isinstance(order, random.Random)
    deps: dict[int, set[int]] = {c: set() for c in range(1, n + 1)}
    for a, b in edges:
        lo, hi = sorted((a, b))
        if lo != hi and hi <= n:
            deps[hi].add(lo)
    d = Dispatcher()
    queues: dict[int, list[int]] = {}
    sent_queued: dict[int, bool] = {}  # was it sent behind another (may it be handed back)?
    declining: dict[int, bool] = {}
    started: set[int] = set()
    blocked: set[int] = set()
    done: list[int] = []
    next_worker = 0

    def add_worker() -> None:
        nonlocal next_worker
        d.add_worker(next_worker)
        queues[next_worker], declining[next_worker] = [], False
        next_worker += 1

    def hand_back(w: int) -> None:
        head = queues[w].pop(0)
        d.give_back(w, head)
        declining[w] = True
        for c in d.not_ready(w):  # the pool takes its followers out before the worker sees them
            d.take_out(w, c)
            queues[w].remove(c)

    def begin(w: int) -> int | None:
        """The worker reaches its head: start it (returned) or hand it back (None)."""
        head = queues[w][0]
        if head in started:
            return head
        if declining[w] and sent_queued[head]:
            hand_back(w)
            return None
        declining[w] = False
        assert deps[head] <= set(done), "started before what it runs after"
        started.add(head)
        return head

    for _ in range(workers):
        add_worker()
    for c in range(1, n + 1):
        d.add(c, after=deps[c], queueable=c not in timed)
    for step in range(60 * n + 20):
        if len(done) == n:
            break
        for worker, cookie in d.assign(2):
            assert not any(cookie in q for q in queues.values()), "handed out while held"
            assert cookie not in done, "handed out after it completed"
            sent_queued[cookie] = bool(queues[worker])
            queues[worker].append(cookie)
        busy = [w for w, q in queues.items() if q and w not in blocked]
        # The random phase first; then (generated randomness may be adversarial) only
        # completions and wake-ups, so everything must end.
        event = order.random() if step < 20 * n else 1.0
        if blocked and (event < 0.15 or not busy):  # a blocked worker wakes
            w = order.choice(sorted(blocked))
            blocked.discard(w)
            d.unblocked(w)
        elif not busy:
            raise AssertionError(f"no progress: ready {d.ready}, queues {queues}")
        elif event < 0.25:  # the head blocks in a synchronize: what waits behind comes back
            w = order.choice(busy)
            if begin(w) is None:
                continue
            d.blocked(w)
            blocked.add(w)
            for c in d.queued(w):
                d.requeue(w, c)
                queues[w].remove(c)
        elif event < 0.32:  # the worker dies: its head fails, what it held comes back
            w = order.choice(busy)
            head, back = d.remove_worker(w)
            assert [head, *back] == queues.pop(w)
            # Even one it had not started yet is reported as crashed: it must have been ready.
            assert deps[head] <= set(done), "failed before what it runs after"
            d.complete(head)
            done.append(head)
            add_worker()
        elif event < 0.40:  # a head sent to wait in the queue is handed back
            w = order.choice(busy)
            head = queues[w][0]
            if head not in started and sent_queued[head]:
                hand_back(w)
        else:  # the worker runs its head to the end
            w = order.choice(busy)
            head = begin(w)
            if head is None:
                continue
            queues[w].pop(0)
            assert d.running(w) == head
            d.complete(head)
            done.append(head)
    assert sorted(done) == list(range(1, n + 1)), (done, queues, d.ready)
    assert d.pending == 0
