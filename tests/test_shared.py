"""The shared block's bookkeeping, in one process: cookies, low-water marks, the ring, owners."""

from __future__ import annotations

import contextlib
import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import multiprocess
import pytest

from initgraph import ConfigError, InitgraphError
from initgraph._core.shared import (
    PARENT,
    W_ALL,
    W_COOKIE,
    W_DONE,
    W_FULL_ALL,
    W_FULL_DOMAIN,
    SharedState,
)


@pytest.fixture
def shared() -> Iterator[SharedState]:
    state = SharedState(multiprocess.get_context("fork"), slots=4, capacity=8)
    yield state
    state.close()


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


def test_a_zombie_counts_as_ended() -> None:
    """The lock's recovery and the lifeline both take a dead, unreaped process as gone."""
    import os

    from initgraph._core.lifeline import alive

    assert alive(os.getpid())
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # exited, left a zombie
        assert not alive(pid)
    finally:
        os.waitpid(pid, 0)
    assert not alive(pid)


def _arena_held() -> list[str]:
    """This process's descriptors and mappings of a multiprocess heap arena (``pym-*``)."""
    fds = []
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor is gone already
            fds.append(os.readlink(f"/proc/self/fd/{name}"))
    maps = Path("/proc/self/maps").read_text().splitlines()
    return [line for line in [*fds, *maps] if "/pym-" in line]


def test_close_releases_the_block_and_keeps_its_last_state() -> None:
    state = SharedState(multiprocess.get_context("fork"), slots=4, capacity=8)
    d = state.domain_index("default", False)
    cookie, _, _ = state.allocate(d, PARENT, (), 100)
    woken: list[BaseException] = []

    def waiter() -> None:
        try:
            state.wait(1, W_ALL, 0, 0, None)
        except InitgraphError as exc:
            woken.append(exc)

    thread = threading.Thread(target=waiter)
    thread.start()
    while not state._waits.asleep:  # until the waiter sleeps on its semaphore
        thread.join(0.001)
    held = _arena_held()
    assert held != []
    state.close()
    thread.join(10)
    assert not thread.is_alive()
    assert [str(e) for e in woken] == ["the scheduler was closed while this process waited on it"]
    assert [line for line in _arena_held() if line in held] == []
    # What a thread still reads after close is the final state, in private memory.
    assert state.last_cookie == cookie
    assert state.in_progress() == [(cookie, d)]
    with pytest.raises(InitgraphError, match=r"^the scheduler was closed while this process"):
        state.wait(0, W_ALL, 0, 0, None)
    state.close()  # again: nothing to do
