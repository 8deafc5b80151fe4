"""The shared block's bookkeeping, in one process: cookies, low-water marks, the ring, claims."""

from __future__ import annotations

import random

import multiprocess
import pytest

from initgraph import ConfigError, InitgraphError
from initgraph._core.shared import (
    CLAIMED,
    DECLINED,
    PARENT,
    TAKEN_BACK,
    W_ALL,
    W_COOKIE,
    W_DONE,
    W_FULL_ALL,
    W_FULL_DOMAIN,
    SharedState,
    ticket,
)


@pytest.fixture
def shared() -> SharedState:
    return SharedState(multiprocess.get_context("fork"), slots=4, capacity=8)


def test_cookies_start_at_one_and_low_water_marks_follow(shared: SharedState) -> None:
    a = shared.domain_index("a", False)
    b = shared.domain_index("b", True)
    c1, _, _ = shared.allocate(a, PARENT, (), 100)
    c2, _, _ = shared.allocate(b, PARENT, (), 100)
    c3, _, _ = shared.allocate(a, PARENT, (), 100)
    assert (c1, c2, c3) == (1, 2, 3)
    assert (shared.low(a), shared.count(a), shared.low(b)) == (1, 2, 2)
    shared.finish([c3])  # a higher cookie finishing first leaves the mark where it is
    assert shared.low(a) == 1
    shared.finish([c1])
    assert (shared.low(a), shared.count(a)) == (0, 0)
    assert shared.in_progress() == [(2, b)]


def test_after_keeps_only_cookies_still_in_progress(shared: SharedState) -> None:
    d = shared.domain_index("default", False)
    c1, _, _ = shared.allocate(d, PARENT, (), 100)
    c2, _, _ = shared.allocate(d, PARENT, (), 100)
    shared.finish([c1])
    _, pending, _ = shared.allocate(d, PARENT, (c1, c2), 100)
    assert pending == (c2,)


def test_inline_when_more_than_max_pending(shared: SharedState) -> None:
    d = shared.domain_index("default", False)
    assert not shared.allocate(d, PARENT, (), 1)[2]
    assert not shared.allocate(d, PARENT, (), 1)[2]  # one in progress: not more than 1
    assert shared.allocate(d, PARENT, (), 1)[2]


def test_ring_compacts_and_refuses_when_full(shared: SharedState) -> None:
    d = shared.domain_index("default", False)
    rng = random.Random(3)
    live: list[int] = []
    for _ in range(200):  # far more than the capacity of 8: the ring must compact
        if len(live) < 6 and rng.random() < 0.6:
            live.append(shared.allocate(d, PARENT, (), 100)[0])
        elif live:
            shared.finish([live.pop(rng.randrange(len(live)))])
        assert [c for c, _ in shared.in_progress()] == sorted(live)
        assert shared.low(d) == (min(live) if live else 0)
    while len(live) < 8:
        live.append(shared.allocate(d, PARENT, (), 100)[0])
    with pytest.raises(InitgraphError, match="more than 8 initcalls in progress at once"):
        shared.allocate(d, PARENT, (), 100)


def test_waits_that_hold_return_at_once(shared: SharedState) -> None:
    a = shared.domain_index("a", False)
    x = shared.domain_index("x", True)
    c1, _, _ = shared.allocate(a, PARENT, (), 100)
    c2, _, _ = shared.allocate(x, PARENT, (), 100)
    assert shared.wait(0, W_COOKIE, a, c1, None)  # never waits for the cookie itself
    assert not shared.wait(0, W_COOKIE, a, c1 + 1, 0.0)
    assert not shared.wait(0, W_FULL_ALL, 0, 0, 0.0)
    shared.finish([c1])
    assert shared.wait(0, W_FULL_ALL, 0, 0, None)  # the exclusive domain is not covered
    assert not shared.wait(0, W_FULL_DOMAIN, x, 0, 0.0)
    assert not shared.wait(0, W_ALL, 0, 0, 0.0)
    assert not shared.wait(0, W_DONE, 0, c2, 0.0)
    shared.finish([c2])
    assert shared.wait(0, W_ALL, 0, 0, None)
    assert shared.wait(0, W_DONE, 0, c2, None)


def test_claims_make_an_initcall_run_once(shared: SharedState) -> None:
    d = shared.domain_index("default", False)
    c, _, _ = shared.allocate(d, PARENT, (), 100)
    first = ticket(2, False, 1)
    shared.assign_runners([(c, first)])
    assert shared.claim(c, ticket(3, False, 1)) == TAKEN_BACK  # not sent to that worker
    assert shared.reclaim(c, first)  # taken back before it started
    assert shared.claim(c, first) == TAKEN_BACK  # the stale copy in worker 2's pipe is skipped
    again = ticket(2, False, 2)  # sent to the same worker again: only the new copy runs
    shared.assign_runners([(c, again)])
    assert shared.claim(c, first) == TAKEN_BACK
    assert shared.claim(c, again) == CLAIMED
    assert not shared.reclaim(c, again)  # started: too late to take back
    assert shared.claim(c, again) == TAKEN_BACK  # and never twice


def test_a_queued_initcall_waits_for_a_lower_one_without_a_runner(shared: SharedState) -> None:
    """Invariant 3 across the pipe: a queued cookie is handed back while a lower one waits."""
    d = shared.domain_index("default", False)
    head, _, _ = shared.allocate(d, PARENT, (), 100)
    lower, _, _ = shared.allocate(d, PARENT, (), 100)  # not ready yet: no runner
    queued, _, _ = shared.allocate(d, PARENT, (), 100)
    t = {head: ticket(2, False, 1), queued: ticket(2, True, 2)}
    shared.assign_runners(list(t.items()))
    assert shared.claim(head, t[head]) == CLAIMED  # a head starts whatever waits below it
    shared.finish([head])
    assert shared.claim(queued, t[queued]) == DECLINED
    assert not shared.reclaim(queued, t[queued])  # handed back: the parent has nothing to take
    # The parent, seeing 'queued' as the head, sent 'lower' to wait behind it: still declined.
    t = {queued: ticket(2, True, 3), lower: ticket(2, True, 4)}
    shared.assign_runners(list(t.items()))
    assert shared.claim(queued, t[queued]) == DECLINED
    assert shared.claim(lower, t[lower]) == CLAIMED
    # Queued on another worker, the lower one does not hold this one back.
    above, _, _ = shared.allocate(d, PARENT, (), 100)
    t = {queued: ticket(3, True, 5), above: ticket(2, True, 6)}
    shared.assign_runners(list(t.items()))
    assert shared.claim(above, t[above]) == CLAIMED
    assert shared.claim(queued, t[queued]) == CLAIMED
    # Finished entries and initcalls run outside the pool never hold a queue back.
    shared.finish([lower, above])
    inline, _, _ = shared.allocate(d, PARENT, (), 0)  # over max_pending: runs in the caller
    main, _, _ = shared.allocate(d, PARENT, (), 100)
    shared.run_elsewhere(main)
    last, _, _ = shared.allocate(d, PARENT, (), 100)
    shared.assign_runners([(last, ticket(2, True, 7))])
    assert shared.claim(last, ticket(2, True, 7)) == CLAIMED
    assert shared.in_progress() == [(queued, d), (inline, d), (main, d), (last, d)]


def test_release_owner_frees_what_a_dead_worker_held(shared: SharedState) -> None:
    d = shared.domain_index("default", False)
    mine, _, _ = shared.allocate(d, 3, (), 100)  # scheduled by worker 3, not yet reported
    adopted, _, _ = shared.allocate(d, 3, (), 100)
    shared.adopt([adopted])  # the parent heard of this one
    assert shared.release_owner(3) == [(mine, d)]
    assert [c for c, _ in shared.in_progress()] == [adopted]


def test_domains(shared: SharedState) -> None:
    assert shared.domain_index("net", None) == shared.domain_index("net", False)
    with pytest.raises(ConfigError, match="already declared registered"):
        shared.domain_index("net", True)
    assert shared.exclusive_names() == frozenset()
    shared.domain_index("probe", True)
    assert shared.exclusive_names() == {"probe"}


def test_a_lower_cookie_waiting_for_work_in_progress_does_not_hold_a_queue_back(
    shared: SharedState,
) -> None:
    """It cannot start before the queued one anyway; once what it waits for ends, it may."""
    d = shared.domain_index("default", False)
    running, _, _ = shared.allocate(d, PARENT, (), 100)
    waiting, _, _ = shared.allocate(d, PARENT, (), 100)  # after=[running]
    queued, _, _ = shared.allocate(d, PARENT, (), 100)
    shared.wait_for([(waiting, running)])
    shared.assign_runners([(running, ticket(3, False, 1))])
    assert shared.claim(running, ticket(3, False, 1)) == CLAIMED
    shared.assign_runners([(queued, ticket(2, True, 2))])
    assert shared.claim(queued, ticket(2, True, 2)) == CLAIMED
    # The same with the dependency over: 'waiting' may be ready, the parent may not know yet.
    running, _, _ = shared.allocate(d, PARENT, (), 100)
    waiting, _, _ = shared.allocate(d, PARENT, (), 100)
    queued, _, _ = shared.allocate(d, PARENT, (), 100)
    shared.wait_for([(waiting, running)])
    shared.finish([running])
    shared.assign_runners([(queued, ticket(2, True, 3))])
    assert shared.claim(queued, ticket(2, True, 3)) == DECLINED
    # A note never overwrites a runner, and 0 clears it.
    shared.assign_runners([(waiting, ticket(2, False, 4))])
    shared.wait_for([(waiting, queued)])
    assert shared.claim(waiting, ticket(2, False, 4)) == CLAIMED
