"""The core with real worker processes: kernel semantics, faults, no hangs, no leaks.

Initcalls are module-level functions so that every start method can send them. Tests never sleep
to synchronize: initcalls wait on manager-held events (the ``gates`` fixture), and "still
waiting" is asserted with a short ``timeout=`` whose TimeoutError names what is in progress.
"""

from __future__ import annotations

import os
import random
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import multiprocess
import pytest
from conftest import Holdings

import initgraph
from initgraph import (
    ConfigError,
    DeadlockError,
    Domain,
    HookError,
    HookTimeout,
    InitgraphError,
    Scheduler,
    WorkerCrashed,
)

METHODS = ["fork", "forkserver", "spawn"]
WAIT = 30  # generous bound for things that must happen, so a bug fails instead of hanging


# -- initcalls -----------------------------------------------------------------------------------
def noop(data: Any, cookie: int) -> None:
    return None


def echo(data: Any, cookie: int) -> tuple[Any, int, int]:
    return data, cookie, os.getpid()


def wait_gate(gate: Any, cookie: int) -> int:
    assert gate.wait(WAIT), "gate never opened"
    return cookie


def nested(depth: int, cookie: int) -> list[int]:
    """Schedule children from inside an initcall, in two domains, and wait for them."""
    cookies = [cookie]
    if depth > 0:
        for dom in ("default", "other"):
            child = initgraph.schedule(nested, depth - 1, domain=dom)
            cookies.append(child)
        initgraph.synchronize_full(domain="other")
    return cookies


def in_order(args: tuple[str, float], cookie: int) -> int:
    path, duration = args
    time.sleep(duration)  # the work being parallelised, not synchronization
    initgraph.synchronize_cookie(cookie)
    with open(path, "a") as f:
        f.write(f"{cookie}\n")
    return cookie


def timed_in_order(args: tuple[str, float], cookie: int) -> int:
    """``in_order``, noting in ``<path>.spans`` the process and the span of its work."""
    path, duration = args
    started = time.monotonic()
    time.sleep(duration)  # the work being parallelised, not synchronization
    with open(f"{path}.spans", "a") as f:  # one short append: lines of two processes never mix
        f.write(f"{os.getpid()} {started} {time.monotonic()}\n")
    initgraph.synchronize_cookie(cookie)
    with open(path, "a") as f:
        f.write(f"{cookie}\n")
    return cookie


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most spans that were open at the same moment."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = now = 0
    for _, step in edges:  # at a tie an end (-1) sorts first: touching spans do not overlap
        now += step
        most = max(most, now)
    return most


def raiser(message: str, cookie: int) -> None:
    raise ValueError(message)


def spin(seconds: float, cookie: int) -> None:
    time.sleep(seconds)


def unpicklable_result(data: Any, cookie: int) -> Any:
    return (i for i in range(3))  # neither pickle nor dill can send a generator


def wait_self(data: Any, cookie: int) -> None:
    initgraph.synchronize_cookie(cookie + 1)


def full_sync_inside(domain: str | None, cookie: int) -> None:
    initgraph.synchronize_full(domain=domain)


def gate_then_full_sync(args: tuple[Any, str], cookie: int) -> int:
    """Wait until the test has scheduled the domain's work, then wait for that work.

    Without the gate the worker can reach ``synchronize_full`` before the test schedules the
    domain's initcalls, find the domain empty and return, and the test then checks nothing.
    """
    gate, domain = args
    assert gate.wait(WAIT), "gate never opened"
    initgraph.synchronize_full(domain=domain)
    return os.getpid()


def is_async(data: Any, cookie: int) -> bool:
    return initgraph.current_is_async()


def stamp(data: Any, cookie: int) -> float:
    return time.monotonic()


def stamp_after_gate(gate: Any, cookie: int) -> float:
    assert gate.wait(WAIT)
    return time.monotonic()


# -- basics --------------------------------------------------------------------------------------
def test_schedule_returns_increasing_cookies_and_results() -> None:
    with Scheduler(2) as s:
        cookies = [s.schedule(echo, i) for i in range(10)]
        assert cookies == list(range(1, 11))
        results = [s.result(c, timeout=WAIT) for c in cookies]
    assert [r[:2] for r in results] == [(i, i + 1) for i in range(10)]
    assert all(pid != os.getpid() for _, _, pid in results)


@pytest.mark.parametrize("method", METHODS)
def test_start_methods_run_nested_work(method: str) -> None:
    with Scheduler(2, start_method=method) as s:
        assert s.start_method == method
        c = s.schedule(nested, 2)
        s.synchronize_full(timeout=WAIT)
        tree = s.result(c, timeout=WAIT)
        lam = s.schedule(lambda d, c: d * 2, 21)  # pickled by value
        assert s.result(lam, timeout=WAIT) == 42
    assert tree[0] == c
    assert len(tree) == 3


def test_cookies_unique_and_increasing_across_domains_and_processes() -> None:
    with Scheduler(2) as s:
        roots = [s.schedule(nested, 3, domain=random.choice(["default", "x"])) for _ in range(3)]
        s.synchronize_full(timeout=WAIT)
        s.synchronize_full(domain="other", timeout=WAIT)
        trees = [s.result(c, timeout=WAIT) for c in roots]
        last = s._shared.last_cookie
    # each initcall of the tree reports its own cookie first: 3 roots, each 1 + 2 + 4 + 8 calls
    assert last == 3 * 15
    assert roots == sorted(roots)
    own = [t[0] for t in trees]
    assert own == roots
    for t in trees:
        assert t[1:] == sorted(t[1:]), "children issued in increasing order"
        assert all(child > t[0] for child in t[1:])


def test_current_is_async() -> None:
    with Scheduler(1) as s:
        assert not initgraph.current_is_async()
        assert s.result(s.schedule(is_async), timeout=WAIT) is True


def test_module_functions_use_innermost_scheduler() -> None:
    with Scheduler(1) as outer:
        with Scheduler(1) as inner:
            c = initgraph.schedule(echo, "x")
            assert inner.result(c, timeout=WAIT)[0] == "x"
        c = initgraph.schedule(echo, "y")
        initgraph.synchronize_cookie(c + 1, timeout=WAIT)
        assert outer.result(c, timeout=WAIT)[0] == "y"
    with pytest.raises(InitgraphError, match="no active initgraph scheduler"):
        initgraph.schedule(noop)


# -- synchronize ---------------------------------------------------------------------------------
def test_synchronize_cookie_waits_for_lower_only(gates: Any) -> None:
    g1, g2 = gates.new(), gates.new()
    with Scheduler(3) as s:
        c1 = s.schedule(wait_gate, g1)
        c2 = s.schedule(wait_gate, g2)
        c3 = s.schedule(noop)
        with pytest.raises(TimeoutError, match=rf"still in progress: {c1} 'wait_gate'"):
            s.synchronize_cookie(c2, timeout=0.2)
        # a higher cookie finishing first never releases the wait
        s.result(c3, timeout=WAIT)
        with pytest.raises(TimeoutError):
            s.synchronize_cookie(c2, timeout=0.2)
        g1.set()
        s.synchronize_cookie(c2, timeout=WAIT)  # returns although c2 itself still runs
        assert s.outcome(c2) is None
        g2.set()
        s.synchronize_cookie(c2 + 1, timeout=WAIT)
        assert s.result(c2, timeout=WAIT) == c2


def test_synchronize_full_waits_for_work_scheduled_while_waiting(gates: Any) -> None:
    g1, g2 = gates.new(), gates.new()
    with Scheduler(2) as s:
        s.schedule(chain_then_gate, (g1, g2))
        errors: list[BaseException] = []

        def waiter() -> None:
            try:
                s.synchronize_full(timeout=WAIT)
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=waiter)
        t.start()
        g1.set()  # the first initcall now schedules a second one, gated by g2
        assert s.result(1, timeout=WAIT) == 2  # 2 is scheduled (and named), 1 is over
        with pytest.raises(TimeoutError, match=r"still in progress: 2 'wait_gate'"):
            s.synchronize_full(timeout=0.5)
        assert t.is_alive()
        g2.set()
        t.join(WAIT)
        assert not t.is_alive()
        assert errors == []


def chain_then_gate(gates_: tuple[Any, Any], cookie: int) -> int:
    first, second = gates_
    assert first.wait(WAIT)
    return initgraph.schedule(wait_gate, second)


def test_synchronize_full_skips_exclusive_and_can_target_a_domain(gates: Any) -> None:
    g = gates.new()
    with Scheduler(2) as s:
        excl = s.schedule(wait_gate, g, domain=Domain("probe", exclusive=True))
        s.synchronize_full(timeout=WAIT)  # exclusive domains are never part of the global wait
        with pytest.raises(TimeoutError, match=rf"still in progress: {excl} 'wait_gate' \(probe\)"):
            s.synchronize_full(domain="probe", timeout=0.2)
        net = s.schedule(noop, domain="net")
        s.synchronize_full(domain="net", timeout=WAIT)
        assert s.result(net, timeout=WAIT) is None
        assert s.outcome(excl) is None
        g.set()
    # leaving the block waited for the exclusive domain too


def test_domain_declared_both_ways_is_an_error() -> None:
    with Scheduler(1) as s:
        s.schedule(noop, domain=Domain("d", exclusive=True))
        s.schedule(noop, domain="d")  # by name: whatever it was declared as
        with pytest.raises(ConfigError, match=r"^domain 'd' is already declared exclusive"):
            s.schedule(noop, domain=Domain("d"))


def test_in_order_idiom_sorted_file_and_parallel(tmp_path: Path) -> None:
    """50 initcalls of random durations publish in cookie order, their work done in parallel."""
    path = tmp_path / "order.txt"
    rng = random.Random(1234)
    durations = [rng.uniform(0.0, 0.08) for _ in range(50)]
    with Scheduler(8) as s:
        warm = [s.schedule(noop) for _ in range(8)]  # one to each idle worker: all have started
        for c in warm:
            s.result(c, timeout=WAIT)
        cookies = [s.schedule(timed_in_order, (str(path), d)) for d in durations]
        s.synchronize_full(timeout=WAIT)
    lines = [int(x) for x in path.read_text().split()]
    assert lines == cookies
    # In parallel: their work (the sleeps) ran in several workers, at the same time. Checked on
    # the spans the initcalls noted, not on the wall time, which a loaded machine stretches
    # (2 CPUs at a load of 15: 1.73 s for 50 sleeps of 1.79 s in all, once).
    noted = [line.split() for line in Path(f"{path}.spans").read_text().splitlines()]
    assert len(noted) == len(durations)
    assert len({pid for pid, _, _ in noted}) > 1
    assert most_at_once([(float(a), float(b)) for _, a, b in noted]) > 1


def test_in_order_idiom_with_one_worker(tmp_path: Path) -> None:
    path = tmp_path / "order.txt"
    with Scheduler(1) as s:
        cookies = [s.schedule(in_order, (str(path), 0.0)) for _ in range(10)]
    assert [int(x) for x in path.read_text().split()] == cookies


# -- after, fallback -----------------------------------------------------------------------------
def test_after_waits_for_dependencies(gates: Any) -> None:
    g = gates.new()
    with Scheduler(2) as s:
        first = s.schedule(stamp_after_gate, g)
        second = s.schedule(stamp, after=[first])
        with pytest.raises(TimeoutError):
            s.result(second, timeout=0.2)  # a worker is idle, yet it does not start
        g.set()
        assert s.result(second, timeout=WAIT) >= s.result(first, timeout=WAIT)


def test_after_unknown_cookie_is_refused() -> None:
    with Scheduler(1) as s, pytest.raises(ConfigError, match="names cookie 99, which was never"):
        s.schedule(noop, after=[99])


def test_max_pending_fallback_runs_inline_and_is_in_progress(gates: Any) -> None:
    g = gates.new()
    with Scheduler(2, max_pending=1) as s:
        s.schedule(wait_gate, g)
        s.schedule(wait_gate, g)
        c = s.schedule(inline_probe)  # more than max_pending in progress: runs here, now
        pid, cookie, other = s.result(c)
        assert (pid, cookie) == (os.getpid(), c)
        assert c == 3
        # another thread synchronizing with it while it ran had to wait for it
        assert other.startswith("synchronize_cookie(4, domain='default') timed out after 0.2 s")
        assert "3 'inline_probe'" in other
        g.set()


def test_nocall_refuses_instead_of_running_inline(gates: Any) -> None:
    """The kernel's async_schedule_dev_nocall(): the caller may hold a lock the func needs."""
    g = gates.new()
    with Scheduler(2, max_pending=1) as s:
        s.schedule(wait_gate, g)
        s.schedule(wait_gate, g)
        message = (
            "'noop' was not scheduled: more than max_pending (1) initcalls are in progress "
            "and nocall=True forbids running it here; run it yourself (outside any lock it "
            "needs), or raise max_pending"
        )
        with pytest.raises(InitgraphError, match=f"^{re.escape(message)}$"):
            s.schedule(noop, nocall=True)
        # Nothing of it stays in progress: a full synchronize ends once the two gated ones do.
        g.set()
        s.synchronize_full(timeout=WAIT)
        assert s.schedule(stamp, nocall=True) == 4  # under max_pending: scheduled as usual
        assert s.result(4, timeout=WAIT) is not None


def test_module_level_schedule_takes_nocall_inside_an_initcall() -> None:
    with Scheduler(1, max_pending=1) as s:
        c = s.schedule(schedule_nocall_inside)
        assert s.result(c, timeout=WAIT) == "refused"


def schedule_nocall_inside(data: Any, cookie: int) -> str:
    # This initcall and noop are in progress (the only worker runs this): over max_pending.
    initgraph.schedule(noop)
    try:
        initgraph.schedule(noop, nocall=True)
    except initgraph.InitgraphError:
        return "refused"
    return "scheduled"


def inline_probe(data: Any, cookie: int) -> tuple[int, int, str]:
    out: list[str] = []

    def probe() -> None:
        try:
            initgraph.synchronize_cookie(cookie + 1, timeout=0.2)
            out.append("passed")
        except TimeoutError as exc:
            out.append(str(exc))

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return os.getpid(), cookie, out[0]


# -- faults --------------------------------------------------------------------------------------
def test_exception_becomes_hook_error_with_cause() -> None:
    with Scheduler(1) as s:
        c = s.schedule(raiser, "bad input")
        s.synchronize_cookie(c + 1, timeout=WAIT)
        with pytest.raises(HookError, match=r"^initcall 1 'raiser' raised ValueError: bad input$"):
            s.result(c)
        with pytest.raises(HookError) as info:
            s.result(c)  # again: the failure is kept
        err = info.value
        assert err.cookie == c
        assert err.name == "raiser"
        assert isinstance(err.__cause__, ValueError)
        assert "in raiser" in str(err.__cause__.__cause__)  # the worker's traceback
        assert s.result(s.schedule(echo, 1), timeout=WAIT)[0] == 1  # the rest carries on


# Worker crashes (exits, signals, segfaults) are rows of the crash table in test_crashes.py.
def test_timeout_stops_and_replaces_the_worker() -> None:
    with Scheduler(1) as s:
        before = s.worker_pids()
        c = s.schedule(spin, 60, timeout=0.3)
        s.synchronize_cookie(c + 1, timeout=WAIT)
        with pytest.raises(
            HookTimeout,
            match=r"^initcall 1 'spin' ran past its timeout of 0.3 s and was stopped; its "
            r"worker was replaced$",
        ):
            s.result(c)
        assert s.result(s.schedule(echo, 2), timeout=WAIT)[0] == 2
        assert s.worker_pids() != before


def test_unpicklable_result_is_a_hook_error() -> None:
    with Scheduler(1) as s:
        c = s.schedule(unpicklable_result)
        with pytest.raises(HookError) as info:
            s.result(c, timeout=WAIT)
    assert str(info.value) == (
        "initcall 1 'unpicklable_result': pickle cannot send a 'generator' object to another "
        "process (cannot pickle 'generator' object); send plain data instead"
    )
    assert type(info.value.__cause__).__name__ == "UnpicklableError"


def test_unpicklable_func_or_data_refused_in_schedule() -> None:
    with Scheduler(1) as s:
        with pytest.raises(
            ConfigError, match=r"^data of 'noop': pickle cannot send a 'generator' "
        ):
            s.schedule(noop, (i for i in range(3)))
        with pytest.raises(ConfigError, match=r"^cannot send func 'lockfunc' to a worker: "):
            s.schedule(_lock_holder().method, name="lockfunc")
        assert s._shared.last_cookie == 0  # nothing was issued


class _lock_holder:  # a bound method of an object that will not pickle
    def __init__(self) -> None:
        self.lock = multiprocess.get_context("fork").Lock()

    def method(self, data: Any, cookie: int) -> None:
        return None


# -- no hangs ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("func", "arg", "pattern"),
    [
        (wait_self, None, r"^synchronize_cookie\(2, domain='default'\) inside initcall 1 "),
        (full_sync_inside, None, r"^synchronize_full\(\) over every registered domain inside"),
        (full_sync_inside, "default", r"^synchronize_full\(\) over domain='default' inside"),
    ],
)
def test_self_wait_raises_deadlock_error(func: Any, arg: Any, pattern: str) -> None:
    with Scheduler(1) as s:
        c = s.schedule(func, arg)
        with pytest.raises(HookError) as info:
            s.result(c, timeout=WAIT)
    assert isinstance(info.value.__cause__, DeadlockError)
    assert re.match(pattern, str(info.value.__cause__))


def test_full_sync_of_another_domain_is_allowed() -> None:
    with Scheduler(2) as s:
        s.schedule(noop, domain="other")
        c = s.schedule(full_sync_inside, "other")
        assert s.result(c, timeout=WAIT) is None


def test_pool_grows_while_every_worker_is_blocked(gates: Any) -> None:
    """One worker blocks on a domain whose work waits for a worker: the pool must grow."""
    gate = gates.new()
    with Scheduler(1, max_workers=3) as s:
        waiter = s.schedule(gate_then_full_sync, (gate, "late"))
        late = s.schedule(echo, "late", domain="late")
        gate.set()
        assert s.result(late, timeout=WAIT)[0] == "late"
        # the late initcall ran in a second worker, started while the first one was blocked
        assert s.result(waiter, timeout=WAIT) != s.result(late)[2]


def gate_then_pid(gate: Any, cookie: int) -> int:
    assert gate.wait(WAIT), "gate never opened"
    return os.getpid()


def test_pool_keeps_workers_running_while_one_is_blocked(gates: Any) -> None:
    """Scheduler(2): one worker busy, one asleep on work not started yet: a third runs it.

    The busy initcall holds its worker until the end (its gate opens last), so the late one can
    only finish before it if the pool grew although not every worker was blocked (once the
    sleeper had slept GROW_AFTER).
    """
    busy_gate, sync_gate = gates.new(), gates.new()
    with Scheduler(2, max_workers=4) as s:
        busy = s.schedule(gate_then_pid, busy_gate)
        waiter = s.schedule(gate_then_full_sync, (sync_gate, "late"))
        late = s.schedule(echo, "late", domain="late")
        sync_gate.set()
        assert s.result(late, timeout=WAIT)[0] == "late"
        waiter_pid = s.result(waiter, timeout=WAIT)
        busy_gate.set()
        busy_pid = s.result(busy, timeout=WAIT)
        assert len({busy_pid, waiter_pid, s.result(late)[2]}) == 3


def test_close_waits_for_exclusive_domains() -> None:
    with Scheduler(1) as s:
        c = s.schedule(spin, 0.05, domain=Domain("slow", exclusive=True))
    assert s.outcome(c) is not None


def started_then_spin(args: tuple[Any, float], cookie: int) -> None:
    started, seconds = args
    started.set()
    time.sleep(seconds)  # the long work an interrupt must not wait for


def test_keyboard_interrupt_stops_everything(gates: Any) -> None:
    """An interrupt stops running initcalls instead of waiting for them to finish."""
    running = [gates.new(), gates.new()]
    raised: list[float] = []

    def interrupted_boot() -> None:
        with Scheduler(2) as s:
            for started in running:
                s.schedule(started_then_spin, (started, 30))
            s.schedule(spin, 30)  # and one queued behind them
            assert all(started.wait(WAIT) for started in running)
            raised.append(time.monotonic())
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted_boot()
    took = time.monotonic() - raised[0]
    # Stopping is a SIGKILL and a join per process (well under a second, a few seconds on a
    # loaded machine); a close that waited for the initcalls would take their 30 s. 10 s tells
    # the two apart with room for load.
    assert took < 10, f"the interrupt took {took:.1f} s: close() waited for running work"
    # the leak check of conftest.py checks that workers and helpers are gone


def test_closed_scheduler_refuses_work() -> None:
    s = Scheduler(1)
    s.close()
    s.close()  # idempotent
    with pytest.raises(InitgraphError, match="this scheduler is closed"):
        s.schedule(noop)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"workers": 0}, r"^workers must be a positive int, got 0 \(int\)$"),
        ({"workers": 2, "max_workers": 1}, r"^max_workers \(1\) must be at least workers \(2\)$"),
        ({"start_method": "thread"}, r"^start_method must be one of fork, forkserver, spawn"),
        ({"max_pending": True}, r"^max_pending must be a positive int, got True \(bool\)$"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        Scheduler(**kwargs)


def test_result_of_unknown_cookie() -> None:
    with Scheduler(1) as s, pytest.raises(ConfigError, match="no initcall has cookie 5"):
        s.result(5)


def test_manager_holds_each_domains_in_progress_list(gates: Any) -> None:
    g = gates.new()
    with Scheduler(1) as s:
        c = s.schedule(wait_gate, g, domain="net", name="probe_net")
        lists = s.in_progress_lists()
        assert lists["net"] == [(c, "probe_net")]
        g.set()
        s.synchronize_full(domain="net", timeout=WAIT)
        s.result(c, timeout=WAIT)
        assert s.in_progress_lists()["net"] == []


def test_manager_killed_gives_a_clear_error(gates: Any) -> None:
    g = gates.new()
    with Scheduler(1) as s:
        s.in_progress_lists()  # the manager is up
        manager = s._mirror._manager._process
        c = s.schedule(wait_gate, g)
        os.kill(manager.pid, signal.SIGKILL)
        manager.join()
        with pytest.raises(InitgraphError, match=r"manager process \(pid \d+\) is gone"):
            s.synchronize_cookie(c + 1, timeout=WAIT)
        g.set()


def log_something(level: int, cookie: int) -> None:
    import logging

    logging.getLogger("myapp.probe").log(level, "probed %s in %d", "disk", cookie)


@pytest.mark.parametrize("method", METHODS)
def test_worker_logs_reach_the_parents_handlers(
    method: str, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.INFO)
    with Scheduler(1, start_method=method) as s:
        c = s.schedule(log_something, logging.INFO)
        s.result(c, timeout=WAIT)
        s.synchronize_full(timeout=WAIT)
    records = [r for r in caplog.records if r.name == "myapp.probe"]
    assert [r.getMessage() for r in records] == [f"probed disk in {c}"]
    assert records[0].process != os.getpid()  # it happened in the worker


def test_full_and_blocked_pool_fails_what_cannot_start_instead_of_hanging(gates: Any) -> None:
    """At max_workers with every worker blocked, the initcall that cannot start fails."""
    gate = gates.new()
    with Scheduler(1, max_workers=1) as s:
        waiter = s.schedule(gate_then_full_sync, (gate, "late"))
        late = s.schedule(echo, "late", domain="late")
        gate.set()
        with pytest.raises(HookError) as info:
            s.result(late, timeout=WAIT)
        assert isinstance(info.value.__cause__, DeadlockError)
        assert str(info.value.__cause__) == (
            "initcall 2 'echo' could not start: all 1 workers (max_workers) are blocked in a "
            "synchronize waiting on work that cannot run; raise max_workers"
        )
        assert s.result(waiter, timeout=WAIT) > 0  # released by that failure: its pid


@pytest.mark.slow
def test_full_and_blocked_pool_fails_each_initcall_that_cannot_start(gates: Any) -> None:
    """One after the other: the fallback re-arms after each failure (it once fired only once).

    The waiter stays blocked until both initcalls of its domain are over, so the pool is still
    full and blocked after the first failure.
    """
    gate = gates.new()
    with Scheduler(1, max_workers=1) as s:
        waiter = s.schedule(gate_then_full_sync, (gate, "late"))
        late = [s.schedule(echo, "late", domain="late") for _ in range(2)]
        gate.set()
        for cookie in late:
            with pytest.raises(HookError) as info:
                s.result(cookie, timeout=WAIT)
            assert isinstance(info.value.__cause__, DeadlockError)
        assert s.result(waiter, timeout=WAIT) > 0


def exit_with(code: int, cookie: int) -> None:
    os._exit(code)


def thread_identity(data: Any, cookie: int) -> tuple[str, bool, bool]:
    """How this worker's main thread looks, and what a thread an initcall starts inherits."""
    here = threading.current_thread()
    started = threading.Thread(target=lambda: None)
    return here.name, here.daemon, started.daemon


def test_replacement_workers_start_like_the_first_ones() -> None:
    """Under fork, a worker forked by the pool thread used to inherit that thread's identity.

    CPython makes the forking thread the child's main thread: 'initgraph-pool', a daemon, so the
    threads an initcall started in a replacement worker were daemons, and in a first worker not.
    """
    with Scheduler(1, start_method="fork") as s:
        first = s.result(s.schedule(thread_identity))
        with pytest.raises(WorkerCrashed):
            s.result(s.schedule(exit_with, 3))
        replaced = s.result(s.schedule(thread_identity))
    assert first == ("MainThread", False, False)
    assert replaced == first


def sleep_long(data: Any, cookie: int) -> None:
    time.sleep(WAIT)  # until the worker is killed


def crash(data: Any, cookie: int) -> None:
    os._exit(3)


def _close_after_work(s: Scheduler) -> None:
    cookie = s.schedule(noop)
    assert s.result(cookie, timeout=WAIT) is None
    s.in_progress_lists()  # the manager process is up too
    s.close()
    assert s.result(cookie) is None  # what it recorded can still be read


def _close_on_interrupt(s: Scheduler) -> None:
    s.in_progress_lists()

    def interrupted() -> None:
        with s:
            s.schedule(sleep_long)
            s.schedule(sleep_long)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()


def _close_after_a_crash(s: Scheduler) -> None:
    with pytest.raises(WorkerCrashed):
        s.result(s.schedule(crash), timeout=WAIT)
    assert s.result(s.schedule(echo, 1), timeout=WAIT)[0] == 1  # its replacement runs work
    s.in_progress_lists()
    s.close()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("stop", [_close_after_work, _close_on_interrupt, _close_after_a_crash])
def test_close_releases_everything_before_it_returns(method: str, stop: Any) -> None:
    """Processes, descriptors and shared mappings go with close(), not when it is collected."""
    before = Holdings.take()
    s = Scheduler(2, start_method=method)
    stop(s)
    assert Holdings.take(collect=False).leaks_since(before) == []  # while `s` is referenced
    assert s.worker_pids() == []
