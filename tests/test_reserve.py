"""Reservations: a cookie now, its work later; ``after`` keeps a finishing worker for it."""

from __future__ import annotations

import time
from typing import Any

import pytest

from initgraph import HookError, Scheduler
from initgraph._core import pool as pool_mod

WAIT = 30.0


def stamp_after_gate(gate: Any, cookie: int) -> float:
    assert gate.wait(WAIT), "gate never opened"
    return time.monotonic()


def stamp(data: Any, cookie: int) -> float:
    return time.monotonic()


def test_a_worker_that_ends_what_a_reservation_awaits_runs_it_before_queued_work(
    gates: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One worker runs x; d is reserved after x; q waits in the queue. When x ends, the worker
    waits for d's work, which this thread provides on hearing of x, instead of taking q."""
    # Generous, so that the order does not depend on how soon this thread hears of x (about a
    # millisecond on a quiet machine); the default is 20 ms.
    monkeypatch.setattr(pool_mod, "SETTLE", WAIT)
    gate = gates.new()
    with Scheduler(1) as s:
        heard = s.listen()
        x = s.schedule(stamp_after_gate, gate)
        d = s.reserve(domain="default", name="d", after=[x])
        q = s.schedule(stamp)
        assert x < d.cookie < q
        gate.set()
        assert heard.get(timeout=WAIT) == x
        d.provide(stamp, None)
        assert s.result(d.cookie, timeout=WAIT) < s.result(q, timeout=WAIT)


def test_a_reservation_never_provided_holds_the_worker_only_for_the_settle_window(
    gates: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool_mod, "SETTLE", 0.05)
    gate = gates.new()
    with Scheduler(1) as s:
        x = s.schedule(stamp_after_gate, gate)
        d = s.reserve(domain="default", name="d", after=[x])
        q = s.schedule(stamp)
        gate.set()
        ended_x = s.result(x, timeout=WAIT)
        assert s.result(q, timeout=WAIT) >= ended_x  # it ran, d still not provided
        d.cancel(HookError("not needed", cookie=d.cookie, name="d"))
        with pytest.raises(HookError, match="not needed"):
            s.result(d.cookie, timeout=WAIT)


def test_a_reservation_does_not_start_before_what_it_is_after(gates: Any) -> None:
    gate = gates.new()
    with Scheduler(2) as s:
        x = s.schedule(stamp_after_gate, gate)
        d = s.reserve(domain="default", name="d", after=[x])
        d.provide(stamp, None)  # early: it waits for x although a worker is idle
        with pytest.raises(TimeoutError):
            s.result(d.cookie, timeout=0.2)
        gate.set()
        assert s.result(d.cookie, timeout=WAIT) >= s.result(x, timeout=WAIT)
