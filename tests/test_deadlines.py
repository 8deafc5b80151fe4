"""The pool's timers, step by step on a fake clock: nothing here sleeps."""

from __future__ import annotations

from initgraph._core.deadlines import Deadlines


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_keys_expire_soonest_first_and_only_once() -> None:
    clock = Clock()
    d = Deadlines(clock)
    assert d.next_deadline() is None
    assert d.timeout() is None
    d.add("kill", 102.0)
    d.add(("timeout", 7), 101.0)
    assert d.next_deadline() == 101.0
    assert d.timeout() == 1.0
    assert d.expire() == []
    clock.now = 102.5
    assert d.timeout() == 0.0  # overdue
    assert d.expire() == [("timeout", 7), "kill"]
    assert d.expire() == []
    assert len(d) == 0


def test_adding_again_moves_a_key() -> None:
    clock = Clock()
    d = Deadlines(clock)
    d.add(("timeout", 1), 160.0)  # the load grace, until the initcall says it started
    d.add(("timeout", 1), 105.0)  # started: its own timeout from now
    assert d.when(("timeout", 1)) == 105.0
    assert d.next_deadline() == 105.0
    d.add(("timeout", 1), 110.0)
    clock.now = 106.0
    assert d.expire() == []  # the earlier time no longer counts
    clock.now = 110.0
    assert d.expire() == [("timeout", 1)]


def test_removed_keys_never_expire() -> None:
    clock = Clock()
    d = Deadlines(clock)
    d.add("grow", 101.0)
    d.add("stall", 103.0)
    d.remove("grow")
    d.remove("absent")
    assert "grow" not in d
    assert "stall" in d
    assert d.next_deadline() == 103.0
    clock.now = 200.0
    assert d.expire() == ["stall"]


def test_a_key_removed_and_added_again_expires_at_its_new_time() -> None:
    clock = Clock()
    d = Deadlines(clock)
    d.add("mirror", 101.0)
    d.remove("mirror")
    d.add("mirror", 104.0)
    clock.now = 102.0
    assert d.expire() == []
    clock.now = 104.0
    assert d.expire() == ["mirror"]
