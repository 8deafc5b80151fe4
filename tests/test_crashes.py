"""The crash table: every way an initcall can fail, at both levels, under every start method.

One table (``CRASHES``, after loky's) drives two tests: the ``Scheduler`` (schedule + result) and
a whole boot (``initgraph.boot``, plugin modules written to ``tmp_path``), each under ``fork``,
``forkserver`` and ``spawn``. For each row they pin:

- the exact error the user gets: its type and its message;
- that waiters are released: ``synchronize_cookie(c + 1)`` returns (boot: a later plugin's
  ``ctx.synchronize()`` returns and it publishes);
- that the rest carries on: an initcall scheduled right behind the failing one — queued on the
  same worker — runs exactly once (boot: ``on_error="continue"`` commits the others, skips the
  dependents; ``"abort"`` raises ``BootError`` and cancels the rest);
- whether the worker was replaced: exactly when its process died;
- that nothing is left running (the leak check of ``conftest.py``, after every test).

Timeouts are 0.3 s to keep it fast; the rows under fork are the fast part (``-m 'not slow'``).
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import gc
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import PID, AppWriter, write_package
from multiprocess.synchronize import sem_unlink

import initgraph
from initgraph import (
    BootError,
    ConfigError,
    HookError,
    HookTimeout,
    InitgraphError,
    Scheduler,
    WorkerCrashed,
)
from initgraph._core.store import UnpicklableError

METHODS = ("fork", "forkserver", "spawn")
# The table under fork is the fast part; the other start methods start slower workers.
TABLE_METHODS = [
    "fork",
    pytest.param("forkserver", marks=pytest.mark.slow),
    pytest.param("spawn", marks=pytest.mark.slow),
]
WAIT = 30  # bound on what must happen, so a bug fails the test instead of hanging it
TIMEOUT = 0.3
KILL_GRACE = 1.0  # initgraph's SIGTERM-to-SIGKILL delay for a timed-out initcall


# -- the failing initcalls (module-level, so every start method can send them) ------------------
def raises(data: Any, cookie: int) -> None:
    raise ValueError("disk on fire")


def exits(data: Any, cookie: int) -> None:
    sys.exit(3)


def exits_at_once(data: Any, cookie: int) -> None:
    os._exit(0)


def exits_at_once_with_3(data: Any, cookie: int) -> None:
    os._exit(3)


def kills_itself(data: Any, cookie: int) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def segfaults(data: Any, cookie: int) -> None:
    faulthandler.disable()  # the worker inherited pytest's; its dump is noise here
    ctypes.string_at(0)


def runs_out_of_memory(data: Any, cookie: int) -> None:
    bytearray(1 << 62)  # a real MemoryError: malloc refuses at once, nothing is touched


def returns_a_generator(data: Any, cookie: int) -> Any:
    return (i for i in range(3))  # neither pickle nor dill can send it back


def _refuse_to_load(reason: str) -> None:
    raise ValueError(reason)


class LoadsOnlyInTheWorker:
    """Pickles fine in the worker; loading it in the parent raises (as an unimportable module)."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_refuse_to_load, ("this result cannot be loaded here",))


def returns_what_the_parent_cannot_load(data: Any, cookie: int) -> Any:
    return LoadsOnlyInTheWorker()


class KillsWhenPickled:
    """Pickled after a large part of a result: the worker dies while writing its segment."""

    def __reduce__(self) -> Any:
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")


class HangsWhenPickled:
    """Pickled after a large part of a result: the worker hangs while writing its segment."""

    def __reduce__(self) -> Any:
        time.sleep(60)
        raise AssertionError("unreachable")


def killed_while_writing(data: Any, cookie: int) -> Any:
    return [bytes(1 << 20), KillsWhenPickled()]  # 1 MiB in band: a segment exists by then


def times_out_while_writing(data: Any, cookie: int) -> Any:
    return [bytes(1 << 20), HangsWhenPickled()]


def hangs(data: Any, cookie: int) -> None:
    time.sleep(60)


def ignores_sigterm(data: Any, cookie: int) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(60)


def interrupted(data: Any, cookie: int) -> None:
    raise KeyboardInterrupt


def noop(data: Any, cookie: int) -> None:
    return None


def append_line(path: str, cookie: int) -> int:
    with open(path, "a") as f:
        f.write(f"{cookie}\n")
    return os.getpid()


# -- the table -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Crash:
    """One row: a way to fail, and what initgraph does about it, under every start method.

    ``message`` is a regular expression for ``str(error)``; ``{cookie}``, ``{name}`` and
    ``{worker}`` (the failed worker's pid; any pid at boot level) are filled in before matching.
    ``cause``: the type of ``error.__cause__``; ``remote_traceback``: whether that cause carries
    the worker's traceback. ``died``: the worker process ends, so it is replaced.
    """

    id: str
    func: Callable[[Any, int], Any]
    error: type[BaseException]
    message: str
    cause: type[BaseException] | None = None
    remote_traceback: bool = True
    died: bool = False
    exitcode: int | None = None
    timeout: float | None = None
    kind: str = "error"  # the boot's Failure.kind
    data_row: bool = False
    boot_message: str | None = None  # where a boot words it otherwise (plugin, not initcall)
    commit: bool = False  # at boot level, the failing plugin has a commit hook taking its result
    # the data cannot be sent: refused in schedule()

    def pattern(
        self, cookie: int, name: str, worker: int | None = None, *, boot: bool = False
    ) -> str:
        pid = r"\d+" if worker is None else str(worker)
        message = self.boot_message if boot and self.boot_message else self.message
        return message.format(cookie=cookie, name=re.escape(repr(name)), worker=pid)


def crashed(how: str) -> str:
    return (
        rf"^worker {{worker}} crashed with {how} while running initcall {{cookie}} {{name}}; "
        r"the worker was replaced$"
    )


TIMED_OUT = (
    r"^initcall {cookie} {name} ran past its timeout of 0\.3 s and was stopped; "
    r"its worker was replaced$"
)

ROWS = [
    Crash(
        "raise",
        raises,
        HookError,
        r"^initcall {cookie} {name} raised ValueError: disk on fire$",
        cause=ValueError,
    ),
    Crash(
        "sys.exit(3)",
        exits,
        HookError,
        r"^initcall {cookie} {name} raised SystemExit: 3$",
        cause=SystemExit,
    ),
    Crash(
        "os._exit(0)",
        exits_at_once,
        WorkerCrashed,
        crashed(r"EXIT\(0\)"),
        died=True,
        exitcode=0,
        kind="crash",
    ),
    Crash(
        "os._exit(3)",
        exits_at_once_with_3,
        WorkerCrashed,
        crashed(r"EXIT\(3\)"),
        died=True,
        exitcode=3,
        kind="crash",
    ),
    Crash(
        "SIGKILL",
        kills_itself,
        WorkerCrashed,
        crashed(r"SIGKILL\(-9\)"),
        died=True,
        exitcode=-9,
        kind="crash",
    ),
    Crash(
        "segfault",
        segfaults,
        WorkerCrashed,
        crashed(r"SIGSEGV\(-11\)"),
        died=True,
        exitcode=-11,
        kind="crash",
    ),
    Crash(
        # the empty message leaves no dangling ": " (test_empty_message_has_no_dangling_colon)
        "MemoryError",
        runs_out_of_memory,
        HookError,
        r"^initcall {cookie} {name} raised MemoryError$",
        cause=MemoryError,
    ),
    Crash(
        "unpicklable-result",
        returns_a_generator,
        HookError,
        r"^initcall {cookie} {name}: pickle cannot send a 'generator' object to another process "
        r"\(cannot pickle 'generator' object\); send plain data instead$",
        cause=UnpicklableError,
        boot_message=(
            r"^plugin {name}: pickle cannot send a 'generator' object to another process "
            r"\(cannot pickle 'generator' object\); return plain data, or set where = \"main\" "
            r"to run the plugin in the main process$"
        ),
    ),
    Crash(
        # the worker sends it; the parent fails to load it when it is read (result()): no
        # worker traceback to attach
        "result-fails-to-load",
        returns_what_the_parent_cannot_load,
        HookError,
        r"^the result of initcall {cookie} {name} cannot be loaded: this result cannot be "
        r"loaded here$",
        cause=ValueError,
        remote_traceback=False,
        # a boot loads it only for what needs it here: the plugin's commit hook
        boot_message=r"^the result of plugin {name} cannot be loaded here: this result cannot "
        r"be loaded here$",
        commit=True,
    ),
    Crash(
        "unpicklable-data",
        noop,
        ConfigError,
        r"^data of {name}: pickle cannot send a 'generator' object to another process "
        r"\(cannot pickle 'generator' object\); send plain data instead$",
        data_row=True,
    ),
    Crash(
        # its segment exists, half written: the kernel frees it with the worker
        "killed-while-writing",
        killed_while_writing,
        WorkerCrashed,
        crashed(r"SIGKILL\(-9\)"),
        died=True,
        exitcode=-9,
        kind="crash",
    ),
    Crash(
        "timeout-while-writing",
        times_out_while_writing,
        HookTimeout,
        TIMED_OUT,
        died=True,
        timeout=TIMEOUT,
        kind="timeout",
    ),
    Crash(
        "timeout",
        hangs,
        HookTimeout,
        TIMED_OUT,
        died=True,
        timeout=TIMEOUT,
        kind="timeout",
    ),
    Crash(
        "timeout-ignoring-SIGTERM",
        ignores_sigterm,
        HookTimeout,
        TIMED_OUT,
        died=True,
        timeout=TIMEOUT,
        kind="timeout",
    ),
    Crash(
        # caught in the worker like any exception: the worker lives on (the parent's own
        # KeyboardInterrupt is what stops a scheduler)
        "KeyboardInterrupt",
        interrupted,
        HookError,
        r"^initcall {cookie} {name} raised KeyboardInterrupt$",
        cause=KeyboardInterrupt,
    ),
]
# Rows the boot cannot pass until _boot/run.py catches the HookError of Outcome.value (loaded
# lazily now) in on_outcome and records it as the plugin's init failure.
# SIGKILL comes a second after the ignored SIGTERM: that row is slow under every start method.
SLOW_ROWS = {"timeout-ignoring-SIGTERM"}
CRASHES = [
    pytest.param(row, id=row.id, marks=[pytest.mark.slow] if row.id in SLOW_ROWS else [])
    for row in ROWS
]


def store_descriptors(pid: int | str = "self") -> list[str]:
    """The store's segments process ``pid`` holds, as descriptors or mappings."""
    held = []
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("/memfd:initgraph-store"):
                    held.append(f"fd {fd}")
    with contextlib.suppress(OSError), open(f"/proc/{pid}/maps") as maps:
        held += [line.strip() for line in maps if "memfd:initgraph-store" in line]
    return held


@pytest.fixture(autouse=True)
def no_store_left() -> Any:
    """Every row, under every start method: no segment held by this process once it is over."""
    yield
    gc.collect()
    assert store_descriptors() == []


# -- the scheduler level -------------------------------------------------------------------------
@pytest.mark.parametrize("method", TABLE_METHODS)
@pytest.mark.parametrize("crash", CRASHES)
def test_scheduler(crash: Crash, method: str, tmp_path: Path) -> None:
    runs = str(tmp_path / "runs.txt")
    with Scheduler(1, start_method=method) as sched:
        before = sched.worker_pids()
        if crash.data_row:
            issued = sched._shared.last_cookie
            with pytest.raises(crash.error) as refused:
                sched.schedule(crash.func, (i for i in range(3)))
            assert re.match(crash.pattern(issued + 1, crash.func.__name__), str(refused.value))
            assert sched._shared.last_cookie == issued  # no cookie issued: nothing to wait for
            later = sched.schedule(append_line, runs)
            assert sched.result(later, timeout=WAIT) in before
            assert sched.worker_pids() == before
            return
        warm = sched.schedule(
            noop
        )  # the worker is up: spawn imports this module, seconds under load
        sched.result(warm, timeout=WAIT)
        started = time.monotonic()
        cookie = sched.schedule(crash.func, timeout=crash.timeout)
        later = sched.schedule(append_line, runs)  # queued behind it on the one worker
        sched.synchronize_cookie(cookie + 1, timeout=WAIT)  # the waiter is released
        released = time.monotonic() - started
        with pytest.raises(HookError) as info:
            sched.result(cookie, timeout=WAIT)
        err = info.value
        pid_after = sched.result(later, timeout=WAIT)  # the rest carries on
        after = sched.worker_pids()
    assert type(err) is crash.error
    assert re.match(crash.pattern(cookie, crash.func.__name__, before[0]), str(err)), str(err)
    assert (err.cookie, err.name) == (cookie, crash.func.__name__)
    if crash.cause is None:
        assert err.__cause__ is None
    else:
        assert type(err.__cause__) is crash.cause
        remote = err.__cause__.__cause__  # the worker's traceback, as text
        assert ("Traceback" in str(remote)) if crash.remote_traceback else remote is None
    if isinstance(err, WorkerCrashed):
        assert err.exitcode == crash.exitcode
        assert crash.exitcode is not None
        signalled = crash.exitcode < 0
        assert err.signal == (signal.Signals(-crash.exitcode).name if signalled else None)
    if isinstance(err, HookTimeout):
        assert err.timeout == TIMEOUT
        # released once the worker is gone: SIGTERM at once, SIGKILL a second later if ignored
        assert released < TIMEOUT + KILL_GRACE + 5
    assert (tmp_path / "runs.txt").read_text() == f"{later}\n"  # exactly once
    assert (after != before) == crash.died, (before, after)
    assert (pid_after in before) != crash.died


# -- the boot level ------------------------------------------------------------------------------
BAD = """
from initgraph import hookimpl
from {module} import {func}

@hookimpl
def initgraph_init(ctx):
    return {func}(None, ctx.cookie)
"""

BAD_COMMIT = """
@hookimpl
def initgraph_commit(ctx, result):
    pass
"""

MAIN_GENERATOR = """
from initgraph import hookimpl

@hookimpl
def initgraph_init(ctx):
    return (i for i in range(3))  # fine in the parent; it cannot reach a worker
"""

WAITER = """
import os
from initgraph import hookimpl

@hookimpl
def initgraph_init(ctx):
    ctx.synchronize(timeout=30)
    ctx.publish("waiter.released", ctx.cookie)
    return os.getpid()
"""


def crash_app(app: AppWriter, crash: Crash, method: str, on_error: str) -> dict[str, Any]:
    """Plugins bad (fails as the row says), waiter, dep (requires bad) and ok, on one worker."""
    bad: dict[str, Any] = {
        "source": BAD.format(module=crash.func.__module__, func=crash.func.__name__)
        + (BAD_COMMIT if crash.commit else "")
    }
    if crash.timeout is not None:
        bad["timeout"] = crash.timeout
    if crash.data_row:
        bad = {"source": MAIN_GENERATOR, "where": "main"}
    plugins = {
        "bad": bad,
        "waiter": {"source": WAITER},
        "dep": {"source": PID, "requires": ["bad"]},
        "ok": {"source": PID},
    }
    # one worker: a later plugin's pid tells whether the worker was replaced
    return app(plugins, workers=1, start_method=method, on_error=on_error)


@pytest.mark.parametrize("on_error", ["continue", "abort"])
@pytest.mark.parametrize("method", TABLE_METHODS)
@pytest.mark.parametrize("crash", CRASHES)
def test_boot(crash: Crash, method: str, on_error: str, app: AppWriter) -> None:
    with pytest.raises(BootError) as info:
        initgraph.boot(crash_app(app, crash, method, on_error))
    boot = info.value.boot
    failed = "dep" if crash.data_row else "bad"  # the data row: bad commits, dep cannot start
    failure = boot.failures[failed]
    cookie = boot.plan.plugin(failed).cookie
    err = failure.error
    if crash.data_row:
        assert type(err) is HookError
        assert str(err) == (
            "data of plugin 'dep': pickle cannot send a 'generator' object to another process "
            "(cannot pickle 'generator' object); send plain data instead"
        )
        assert type(err.__cause__) is ConfigError
    else:
        assert type(err) is crash.error
        pattern = crash.pattern(cookie, "bad", boot=True)
        assert re.match(pattern, str(err)), str(err)
        assert type(err.__cause__) is (crash.cause or type(None))
    assert failure.kind == crash.kind
    assert failure.message == str(err)
    # continue: dep is skipped (the data row: nothing else fails); abort: the rest is cancelled,
    # except, in the data row, plugins that committed before dep failed (a race)
    others = len(boot.failures) - 1
    more = f"; {others} other plugin(s) did not commit" if others else ""
    assert str(info.value) == f"boot failed: plugin {failed!r}: {err}{more}"
    if not crash.data_row:
        assert others == (1 if on_error == "continue" else 3)

    waiter, bad = boot.timings["waiter"], boot.timings["bad"]
    assert waiter.ended is not None  # its ctx.synchronize() returned
    if not crash.data_row:  # one worker: a new pid for the waiter means a new worker
        assert (waiter.pid != bad.pid) == crash.died, (bad.pid, waiter.pid)
    statuses = {p.name: boot.status(p.name) for p in boot.plan}
    if on_error == "continue":
        assert boot.registry["waiter.released"] == boot.plan.plugin("waiter").cookie
        if crash.data_row:
            assert statuses == {"bad": "ok", "waiter": "ok", "dep": "failed", "ok": "ok"}
        else:
            status = {"error": "failed", "crash": "crashed", "timeout": "timeout"}[crash.kind]
            assert statuses == {"bad": status, "waiter": "ok", "dep": "skipped", "ok": "ok"}
            assert boot.failures["dep"].message == (
                "skipped: it requires 'bad', which did not commit"
            )
    else:
        unfinished = "finished but not committed: the boot was aborting"
        if crash.data_row:  # bad committed in the parent; waiter and ok raced dep's failure
            for name in ("waiter", "ok"):
                assert statuses[name] in ("ok", "cancelled")
                if statuses[name] == "cancelled":
                    assert boot.failures[name].message == unfinished
            return
        assert "waiter.released" not in boot.registry
        assert boot.failures["waiter"].message == unfinished
        assert boot.failures["ok"].message == unfinished
        # a failed commit: what requires it ran already, and is skipped
        assert statuses == {
            "bad": statuses["bad"],
            "waiter": "cancelled",
            "dep": "skipped" if crash.commit else "cancelled",
            "ok": "cancelled",
        }
        assert boot.failures["dep"].message == (
            "skipped: it requires 'bad', which did not commit"
            if crash.commit
            else "cancelled: plugin 'bad' failed"
        )


# -- faults around the table -----------------------------------------------------------------------
def wait_gate(gate: Any, cookie: int) -> int:
    assert gate.wait(WAIT), "gate never opened"
    return cookie


def in_order(domain: str, cookie: int) -> int:
    initgraph.synchronize_cookie(cookie, domain=domain, timeout=WAIT)
    return cookie


def schedule_then_die(args: tuple[str, int], cookie: int) -> None:
    path, children = args
    for _ in range(children):
        initgraph.schedule(append_line, path)
    os._exit(7)


def die_holding_the_lock(data: Any, cookie: int) -> None:
    from initgraph._core import runtime as _runtime

    _runtime.active_runtime().shared.locked().acquire()
    os._exit(5)


def test_work_scheduled_before_a_crash_still_runs_once(tmp_path: Path) -> None:
    runs = str(tmp_path / "runs.txt")
    with Scheduler(2) as sched:
        parent = sched.schedule(schedule_then_die, (runs, 5))
        sched.synchronize_full(timeout=WAIT)
        with pytest.raises(
            WorkerCrashed,
            match=r"^worker \d+ crashed with EXIT\(7\) while running initcall 1 "
            r"'schedule_then_die'; the worker was replaced$",
        ):
            sched.result(parent, timeout=WAIT)
        children = list(range(parent + 1, sched._shared.last_cookie + 1))
        assert len(children) == 5
        pids = [sched.result(c, timeout=WAIT) for c in children]
    assert sorted(int(x) for x in (tmp_path / "runs.txt").read_text().split()) == children
    assert all(isinstance(pid, int) for pid in pids)


@pytest.mark.slow  # the lock's holder is found dead after a 2 s wait
def test_death_holding_the_shared_lock_is_recovered() -> None:
    """The next process to wait 2 s for the lock finds its holder dead and takes it over."""
    with Scheduler(2) as sched:
        before = sched.worker_pids()
        cookie = sched.schedule(die_holding_the_lock)
        sched.synchronize_cookie(cookie + 1, timeout=WAIT)
        with pytest.raises(
            WorkerCrashed,
            match=r"^worker \d+ crashed with EXIT\(5\) while running initcall 1 "
            r"'die_holding_the_lock'; the worker was replaced$",
        ):
            sched.result(cookie, timeout=WAIT)
        later = sched.schedule(in_order, "default")
        assert sched.result(later, timeout=WAIT) == later
        assert sched.worker_pids() != before


def test_worker_killed_while_blocked_in_a_synchronize(gates: Any) -> None:
    """Its wait slot is freed, its initcall fails, the one it waited for still runs."""
    gate = gates.new()
    with Scheduler(2) as sched:
        first = sched.schedule(wait_gate, gate)
        blocked = sched.schedule(in_order, "default")  # waits for `first`
        with pytest.raises(TimeoutError):
            sched.synchronize_cookie(blocked + 1, timeout=0.3)
        victim = next(p for p in sched.worker_pids() if _runs(p, "in_order", sched, blocked))
        os.kill(victim, signal.SIGKILL)
        with pytest.raises(
            WorkerCrashed,
            match=rf"^worker {victim} crashed with SIGKILL\(-9\) while running initcall "
            rf"{blocked} 'in_order'; the worker was replaced$",
        ):
            sched.result(blocked, timeout=WAIT)
        gate.set()
        assert sched.result(first, timeout=WAIT) == first
        again = sched.schedule(in_order, "default")
        assert sched.result(again, timeout=WAIT) == again
        assert victim not in sched.worker_pids()


def _runs(pid: int, name: str, sched: Scheduler, cookie: int) -> bool:
    return sched._pool.running_pid(cookie) == pid


def test_idle_worker_killed_from_outside_is_replaced() -> None:
    with Scheduler(2) as sched:
        sched.result(sched.schedule(noop), timeout=WAIT)
        victim = sched.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + WAIT

        def replaced() -> bool:
            pids = sched.worker_pids()
            return victim not in pids and len(pids) == 2

        while not replaced() and time.monotonic() < deadline:
            time.sleep(0.01)  # polling what the pool thread does when the sentinel fires
        assert victim not in sched.worker_pids()
        assert len(sched.worker_pids()) == 2  # the replacement started
        cookies = [sched.schedule(noop) for _ in range(20)]
        assert [sched.result(c, timeout=WAIT) for c in cookies] == [None] * 20


# -- bugs these tests found, fixed; the tests that found them -------------------------------------
def runs_briefly(data: Any, cookie: int) -> int:
    return cookie


def _slow_restore(seconds: float) -> None:
    time.sleep(seconds)  # the worker loading the data (before it says Started), not a wait


class SlowToLoad:
    """Data that takes ``seconds`` to unpickle in the worker."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __reduce__(self) -> tuple[Any, tuple[float]]:
        return (_slow_restore, (self.seconds,))


@pytest.mark.slow
def test_timeout_counts_the_run_not_the_worker_start() -> None:
    """``timeout`` is the seconds an initcall may *run*, not counting its worker's start.

    This one returns at once.

    A spawned worker starts, then spends 1.5 s loading the data, before it runs for ~0 s under a
    1 s timeout: counted from the send, it would time out.
    """
    with Scheduler(1, start_method="spawn") as sched:
        cookie = sched.schedule(runs_briefly, SlowToLoad(1.5), timeout=1.0)
        assert sched.result(cookie, timeout=WAIT) == cookie


def test_empty_message_has_no_dangling_colon() -> None:
    with Scheduler(1) as sched:
        cookie = sched.schedule(interrupted)
        with pytest.raises(HookError) as info:
            sched.result(cookie, timeout=WAIT)
    assert str(info.value) == "initcall 1 'interrupted' raised KeyboardInterrupt"


def test_failed_load_keeps_the_pid() -> None:
    """A result the parent cannot load still ran in a worker: its outcome keeps the worker's pid."""
    with Scheduler(1) as sched:
        cookie = sched.schedule(returns_what_the_parent_cannot_load)
        with pytest.raises(HookError):
            sched.result(cookie, timeout=WAIT)
        outcome = sched.outcome(cookie)
        assert outcome is not None
        assert outcome.pid in sched.worker_pids()


PARENT_KILLED = """
import os, signal, sys
import psutil
from initgraph import Scheduler

def noop(data, cookie):
    return None

if __name__ == "__main__":
    sched = Scheduler(2, start_method=sys.argv[1])
    sched.result(sched.schedule(noop), timeout=30)
    sched.in_progress_lists()  # the manager process is up
    kids = psutil.Process().children(recursive=True)
    print(" ".join(str(p.pid) for p in kids), flush=True)
    print(" ".join(sched._shared.semaphore_names()), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # the OOM killer, kill -9, a CI timeout
"""


def _alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_parent_killed_leaves_no_process(method: str, tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT_KILLED)
    out = tmp_path / "pids.txt"
    with out.open("w") as f:  # not a pipe: orphans would hold it open
        subprocess.run(
            [sys.executable, str(script), method],
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
    lines = out.read_text().splitlines()
    pids = [int(p) for p in lines[0].split()]
    assert pids, "the parent printed no children"
    deadline = time.monotonic() + 2.0
    try:
        while _alive(pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = [" ".join(psutil.Process(p).cmdline())[:80] for p in _alive(pids)]
        assert left == []
    finally:
        _clean_up(pids, lines[1].split() if len(lines) > 1 else [])


MAPPED_WHEN_KILLED = """
import os, signal, sys
import numpy as np
import psutil
from initgraph import Scheduler

def produce(data, cookie):
    return np.ones(1 << 20)  # 8 MiB: a segment

def hold(data, cookie):
    kept = data["x"].value()  # mapped in this worker too
    print(os.getpid(), flush=True)
    import time
    time.sleep(60)
    return kept

if __name__ == "__main__":
    sched = Scheduler(2, start_method=sys.argv[1])
    read = sched.result(sched.schedule(produce), timeout=30)  # mapped in the parent
    unread = sched.schedule(produce)
    sched.result(sched.schedule(lambda d, c: None), timeout=30)
    sched.synchronize_cookie(unread + 1, timeout=30)
    outcome = None
    while outcome is None:
        outcome = sched.outcome(unread)  # held, not loaded
    sched.schedule(hold, {{"x": outcome.handle}})
    sys.stdin.readline()  # the test saw `hold` start
    kids = psutil.Process().children(recursive=True)
    print(" ".join(str(p.pid) for p in kids), flush=True)
    print(" ".join(sched._shared.semaphore_names()), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_parent_killed_while_results_are_mapped_leaves_nothing(method: str, tmp_path: Path) -> None:
    """SIGKILL to a parent holding results (mapped, and not loaded) while a worker maps one.

    Every process goes (their lifelines), and with them every descriptor and mapping: the
    segments have no name, nothing to sweep in /dev/shm.
    """
    script = tmp_path / "parent.py"
    script.write_text(MAPPED_WHEN_KILLED.format())
    out = tmp_path / "pids.txt"
    with out.open("w") as f:  # not a pipe: orphans would hold it open
        proc = subprocess.Popen(
            [sys.executable, str(script), method],
            stdin=subprocess.PIPE,
            stdout=f,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdin is not None
        deadline = time.monotonic() + WAIT
        while not out.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)  # a file, not a pipe: polled
        holder = int(out.read_text().split()[0])
        assert store_descriptors(holder), "the worker does not map the forwarded result"
        proc.stdin.write("go\n")
        proc.stdin.close()
        proc.wait(timeout=WAIT)
    lines = out.read_text().splitlines()
    pids = [int(p) for p in lines[1].split()]
    assert holder in pids
    deadline = time.monotonic() + 2.0
    try:
        while _alive(pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [p for p in pids if store_descriptors(p)] == []
        assert _alive(pids) == []
        assert [n for n in os.listdir("/dev/shm") if "initgraph" in n] == []
    finally:
        _clean_up(pids, lines[2].split() if len(lines) > 2 else [])


def _clean_up(pids: list[int], semaphores: list[str]) -> None:
    """Kill what the dead parent left (no longer our children: the fixture cannot see them).

    The resource tracker goes last, given a moment to unlink the parent's named semaphores
    itself; whatever is still in /dev/shm after that is unlinked here.
    """
    tracker = [
        p for p in _alive(pids) if "resource_tracker" in " ".join(psutil.Process(p).cmdline())
    ]
    for pid in _alive(pids):
        if pid not in tracker:
            psutil.Process(pid).kill()
    psutil.wait_procs([psutil.Process(p) for p in _alive(tracker)], timeout=2)
    for pid in _alive(tracker):
        psutil.Process(pid).kill()
    for name in semaphores:
        with contextlib.suppress(FileNotFoundError):
            sem_unlink(name)


MAIN_RAISES = """
import sys
import initgraph

config = {{
    "initgraph": {{"paths": [sys.argv[1]], "workers": 1}},
    "plugins": {{"bad": {{"module": "mainapp.bad", "where": "main"}},
                "ok": {{"module": "mainapp.ok"}}}},
}}
try:
    initgraph.boot(config)
except BaseException as exc:
    print(type(exc).__name__, flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("raised", "reported"),
    [("KeyboardInterrupt", "KeyboardInterrupt"), ("SystemExit(4)", "BootError")],
)
def test_main_plugin_raising_base_exception_does_not_hang(
    raised: str, reported: str, tmp_path: Path
) -> None:
    """SystemExit is the plugin's failure, as in a worker; KeyboardInterrupt stops the boot.

    A main init runs on the thread that called boot(), where a real Ctrl-C lands in the
    plugin's code: it cannot be told from one the plugin raised, and it is an interrupt.
    """
    raises = "from initgraph import hookimpl\n\n@hookimpl\ndef initgraph_init(ctx):\n"
    raises += f"    raise {raised}\n"
    write_package(tmp_path, "mainapp", {"bad": raises, "ok": PID})
    script = tmp_path / "boot.py"
    script.write_text(MAIN_RAISES.format())
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        out, _ = proc.communicate(timeout=60)  # the bug was a hang; 0.2-4.2 s measured under load
    finally:
        if proc.poll() is None:
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
            proc.kill()
            proc.communicate()
    assert out == f"{reported}\n"


KILLS_THE_MANAGER = """
import os, signal
from initgraph import hookimpl
from initgraph._core import runtime as _runtime

@hookimpl
def initgraph_init(ctx):
    pool = _runtime.active_runtime()._pool  # the boot's scheduler's pool (a test reaches inside)
    pool.snapshot(lambda: True)  # the manager is up (what Scheduler.in_progress_lists() does)
    manager = pool.mirror._manager._process
    os.kill(manager.pid, signal.SIGKILL)
    manager.join()
"""

BLOCKS = """
from initgraph import hookimpl

@hookimpl
def initgraph_init(ctx):
    with open(ctx.config["fifo"]) as fifo:  # nobody writes: it runs until stopped
        fifo.read()
"""


@pytest.mark.slow
def test_manager_killed_mid_boot_is_a_clear_error(tmp_path: Path) -> None:
    """The boot fails with InitgraphError naming the manager, stops every process, no hang.

    'held' keeps a worker busy, so the boot is still waiting when the manager dies (it hung
    on its outcome queue for ever before).
    """
    write_package(tmp_path, "mgrapp", {"killer": KILLS_THE_MANAGER, "held": BLOCKS})
    os.mkfifo(tmp_path / "fifo")
    config = {
        "initgraph": {"paths": [str(tmp_path)], "workers": 1},
        "plugins": {
            "held": {"module": "mgrapp.held", "config": {"fifo": str(tmp_path / "fifo")}},
            "killer": {"module": "mgrapp.killer", "where": "main"},
        },
    }
    box: list[BaseException] = []

    def run() -> None:
        try:
            initgraph.boot(config)
        except BaseException as exc:
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive(), "the boot hung after its manager was killed"
    (error,) = box
    assert isinstance(error, InitgraphError)
    assert re.fullmatch(
        r"the scheduler's pool failed: initgraph's manager process \(pid \d+\) is gone "
        r"\(SIGKILL\(-9\)\); the scheduler lost its shared in-progress lists and stopped",
        str(error),
    ), str(error)
