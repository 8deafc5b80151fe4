"""``aboot`` and ``lifespan``: the same boot, with the event loop's thread as its owner."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import initgraph
from initgraph import BootError
from initgraph._boot import aio as _aio
from initgraph._boot import run as _boot

Writer = Callable[..., dict[str, Any]]

# Records, in its log file, each hook with the thread and whether it ran on the test's loop.
LOOP_PLUGIN = """
import asyncio, threading
from initgraph import hookimpl

def log(ctx, what):
    try:
        loop = id(asyncio.get_running_loop())
    except RuntimeError:
        loop = 0
    with open(ctx.config["log"], "a") as f:
        f.write(f"{what} {ctx.name} {threading.get_ident()} {loop}\\n")

@hookimpl
def initgraph_init(ctx):
    if ctx.config.get("fail"):
        raise RuntimeError("broken on purpose")
    if ctx.config.get("block"):  # wait for a writer that never comes
        with open(ctx.config["block"]) as fifo:
            fifo.read()
    return ctx.name

@hookimpl
async def initgraph_commit(ctx, result):
    await asyncio.sleep(0)
    if ctx.config.get("fail_commit"):
        raise RuntimeError("broken on purpose")
    log(ctx, "commit")
    ctx.publish("commit." + ctx.name, result)
    if ctx.config.get("cancel"):  # the boot's awaiting task is the one running this commit
        asyncio.current_task().cancel()

@hookimpl
async def initgraph_shutdown(ctx, result):
    await asyncio.sleep(0)
    log(ctx, "shutdown")
"""

MAIN_PLUGIN = """
import asyncio, threading
from initgraph import hookimpl

@hookimpl
def initgraph_init(ctx):
    with open(ctx.config["log"], "a") as f:
        f.write(f"init {ctx.name} {threading.get_ident()} 0\\n")
    return threading.Lock()  # cannot leave the process
"""


def lines(log: Path) -> list[tuple[str, str, int, int]]:
    if not log.exists():
        return []
    found = []
    for line in log.read_text().splitlines():
        what, name, thread, loop = line.split()
        found.append((what, name, int(thread), int(loop)))
    return found


def plugins(log: Path, **each: dict[str, Any]) -> dict[str, dict[str, Any]]:
    specs = {}
    for name, spec in each.items():
        spec = dict(spec)
        spec["config"] = {"log": str(log), **spec.get("config", {})}
        specs[name] = {"source": LOOP_PLUGIN, **spec}
    return specs


def test_lifespan_runs_commits_main_inits_and_shutdown_on_the_loop(
    app: Writer, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    specs = plugins(log, a={}, b={"domain": "net"}, c={"requires": ["a"]})
    specs["local"] = {"source": MAIN_PLUGIN, "where": "main", "config": {"log": str(log)}}
    config = app(specs)
    config["domains"] = {"net": {}}

    async def main() -> tuple[int, list[str]]:
        async with initgraph.lifespan(config) as boot:
            assert isinstance(boot.results["local"], type(threading.Lock()))
            committed = [p.plugin for p in boot.registry.log]
        return id(asyncio.get_running_loop()), committed

    loop, committed = asyncio.run(main())
    me = threading.get_ident()
    found = lines(log)
    assert all(thread == me for _, _, thread, _ in found)  # the loop's thread, this one
    assert [(w, n) for w, n, _, _ in found if w == "init"] == [("init", "local")]
    commits = [(n, lp) for w, n, _, lp in found if w == "commit"]
    assert commits == [(n, loop) for n in committed]  # awaited on the test's own loop
    shutdowns = [(n, lp) for w, n, _, lp in found if w == "shutdown"]
    assert shutdowns == [(n, loop) for n in reversed(committed)]


def test_a_failed_boot_raises_out_of_lifespan_before_the_block(app: Writer, tmp_path: Path) -> None:
    log = tmp_path / "log"
    # bad fails in its commit, which comes after a's (cookie order): a has committed by then,
    # whatever the timing, and is shut down.
    config = app(plugins(log, a={}, bad={"config": {"fail_commit": True}}))
    entered = []

    async def main() -> None:
        async with initgraph.lifespan(config):
            entered.append(True)

    with pytest.raises(BootError, match=r"^boot failed: plugin 'bad': "):
        asyncio.run(main())
    assert entered == []
    assert [(w, n) for w, n, _, _ in lines(log)] == [("commit", "a"), ("shutdown", "a")]


def test_cancelling_the_boot_stops_it_and_shuts_down_what_committed(
    app: Writer, tmp_path: Path
) -> None:
    """first's commit cancels the task awaiting the boot; blocker runs in a worker for ever.

    The worker is stopped (the autouse check finds no process left), first is shut down on
    the loop, and CancelledError goes on.
    """
    log = tmp_path / "log"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    specs = plugins(
        log,
        first={"config": {"cancel": True}},
        blocker={"requires": ["first"], "config": {"block": str(fifo)}},
    )
    config = app(specs)
    caught: list[BaseException] = []

    async def main() -> None:
        try:
            await initgraph.aboot(config)
        except asyncio.CancelledError as exc:
            caught.append(exc)
            raise

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())
    (exc,) = caught
    stopped = _boot.interruption(exc)
    assert stopped is not None
    assert stopped.committed == ("first",)
    assert stopped.running == ("blocker",)
    assert [(w, n) for w, n, _, _ in lines(log)] == [("commit", "first"), ("shutdown", "first")]


def test_aboot_leaves_the_boot_open_until_aclose(app: Writer, tmp_path: Path) -> None:
    log = tmp_path / "log"
    config = app(plugins(log, a={}))

    async def main() -> None:
        boot = await initgraph.aboot(config)
        assert [w for w, _, _, _ in lines(log)] == ["commit"]
        await boot.aclose()
        await boot.aclose()  # once

    asyncio.run(main())
    assert [w for w, _, _, _ in lines(log)] == ["commit", "shutdown"]


# -- what the loop is spared ------------------------------------------------------------------
def test_lifespan_imports_the_boot_machinery_off_the_loop() -> None:
    """``initgraph.lifespan`` loads no scheduler: the first boot imports it in a thread."""
    code = (
        "import sys, initgraph; initgraph.lifespan; initgraph.aboot; "
        "print(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = set(out.stdout.split())
    assert "initgraph._boot.aio" in loaded
    assert not loaded & {"initgraph._boot.run", "initgraph._core.scheduler", "multiprocess", "dill"}


# Plain hooks that note, in the log, when each ran.
TURN_PLUGIN = """
from initgraph import hookimpl

def log(ctx, what):
    with open(ctx.config["log"], "a") as f:
        f.write(f"{what} {ctx.name}\\n")

@hookimpl
def initgraph_commit(ctx, result):
    log(ctx, "commit")

@hookimpl
def initgraph_shutdown(ctx, result):
    log(ctx, "shutdown")
"""


def test_the_loop_gets_a_turn_between_two_commits_and_two_shutdown_hooks(
    app: Writer, tmp_path: Path
) -> None:
    # Plain hooks run on the loop's thread and block it while they run; between two of them,
    # the loop's other tasks run (here, one that notes each of its turns in the same log).
    log = tmp_path / "log"
    names = ["a", "b", "c", "d"]
    config = app({n: {"source": TURN_PLUGIN, "config": {"log": str(log)}} for n in names})

    async def main() -> None:
        done = asyncio.Event()

        async def other_task() -> None:
            while not done.is_set():
                with open(log, "a") as f:
                    f.write("turn -\n")
                await asyncio.sleep(0)

        task = asyncio.create_task(other_task())
        async with initgraph.lifespan(config):
            pass
        done.set()
        await task

    asyncio.run(main())
    events = [line.split() for line in log.read_text().splitlines()]
    hooks = [(what, name) for what, name in events if what != "turn"]
    assert hooks == [("commit", n) for n in names] + [("shutdown", n) for n in reversed(names)]
    at = [i for i, (what, _) in enumerate(events) if what != "turn"]
    assert all(b - a > 1 for a, b in itertools.pairwise(at)), events  # a turn between each two


# Records the GIL switch interval its commit and its shutdown hook run with.
SWITCH_PLUGIN = """
import sys
from initgraph import hookimpl

def log(ctx, what):
    with open(ctx.config["log"], "a") as f:
        f.write(f"{what} {ctx.name} {sys.getswitchinterval()!r}\\n")

@hookimpl
def initgraph_commit(ctx, result):
    log(ctx, "commit")
    if ctx.config.get("fail_commit"):
        raise RuntimeError("broken on purpose")

@hookimpl
def initgraph_shutdown(ctx, result):
    log(ctx, "shutdown")
"""


@pytest.fixture
def switch_interval() -> Iterator[float]:
    """A switch interval of the test's own, put back afterwards."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.004)
    yield sys.getswitchinterval()
    sys.setswitchinterval(before)


def switches(log: Path) -> list[tuple[str, str, float]]:
    found = []
    for line in log.read_text().splitlines():
        what, name, interval = line.split()
        found.append((what, name, float(interval)))
    return found


def test_the_switch_interval_is_lowered_while_booting_and_shutting_down(
    app: Writer, tmp_path: Path, switch_interval: float
) -> None:
    log = tmp_path / "log"
    config = app({"a": {"source": SWITCH_PLUGIN, "config": {"log": str(log)}}})
    inside: list[float] = []

    async def main() -> None:
        async with initgraph.lifespan(config):
            inside.append(sys.getswitchinterval())

    asyncio.run(main())
    lowered = _aio.SWITCH_INTERVAL
    assert lowered < switch_interval
    assert switches(log) == [("commit", "a", lowered), ("shutdown", "a", lowered)]
    assert inside == [switch_interval]  # the application's own code runs with its own
    assert sys.getswitchinterval() == switch_interval


def test_the_switch_interval_comes_back_after_a_failed_boot(
    app: Writer, tmp_path: Path, switch_interval: float
) -> None:
    log = tmp_path / "log"
    config = app({"b": {"source": SWITCH_PLUGIN, "config": {"log": str(log), "fail_commit": True}}})
    with pytest.raises(BootError):
        asyncio.run(initgraph.aboot(config))
    assert switches(log) == [("commit", "b", _aio.SWITCH_INTERVAL)]
    assert sys.getswitchinterval() == switch_interval


def test_overlapping_boots_put_the_switch_interval_back_once_the_last_is_over(
    switch_interval: float,
) -> None:
    switching = _aio._Switching()
    with switching.lowered():
        with switching.lowered():
            assert sys.getswitchinterval() == _aio.SWITCH_INTERVAL
        assert sys.getswitchinterval() == _aio.SWITCH_INTERVAL  # the first boot still runs
    assert sys.getswitchinterval() == switch_interval
    sys.setswitchinterval(0.0001)  # already below: left as it is
    below = sys.getswitchinterval()
    with switching.lowered():
        assert sys.getswitchinterval() == below
    assert sys.getswitchinterval() == below


def test_cancelled_while_the_coordinator_starts_the_boot_stops(
    app: Writer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The coordinator is started from a thread; a cancellation then waits the start out.

    The coordinator sees the stop: no plugin commits, no worker is left (the autouse check).
    """
    log = tmp_path / "log"
    config = app(plugins(log, a={}))
    entered, gate = threading.Event(), threading.Event()
    real_start = _boot._Run.start

    def held_start(run: _boot._Run) -> None:
        entered.set()
        gate.wait()
        real_start(run)

    monkeypatch.setattr(_boot._Run, "start", held_start)
    caught: list[BaseException] = []

    async def main() -> None:
        task = asyncio.create_task(initgraph.aboot(config))
        await asyncio.to_thread(entered.wait)
        task.cancel()
        await asyncio.sleep(0)  # one turn of the loop: the task takes the cancellation
        gate.set()
        try:
            await task
        except asyncio.CancelledError as exc:
            caught.append(exc)

    asyncio.run(main())
    (exc,) = caught
    stopped = _boot.interruption(exc)
    assert stopped is not None
    assert stopped.committed == ()
    assert lines(log) == []


# -- async def initgraph_init ----------------------------------------------------------------
# Two coroutines in one gather meet at an asyncio.Event only if they run concurrently on one loop.
ASYNC_INIT = """
import asyncio, os, threading
from initgraph import hookimpl

@hookimpl
async def initgraph_init(ctx):
    met = asyncio.Event()

    async def first():
        await met.wait()
        return "first"

    async def second():
        met.set()
        return "second"

    got = await asyncio.gather(first(), second())
    if ctx.config.get("publish"):
        await ctx.asynchronize()
        ctx.publish("order." + ctx.name, ctx.cookie)
    if ctx.config.get("fail"):
        raise RuntimeError("async broken on purpose")
    loop = id(asyncio.get_running_loop())
    return (ctx.name, got, os.getpid(), threading.get_ident(), loop)
"""


@pytest.mark.parametrize("start_method", ["fork", "forkserver", "spawn"])
def test_an_async_init_runs_in_its_workers_own_loop(app: Writer, start_method: str) -> None:
    specs = {name: {"source": ASYNC_INIT, "config": {"publish": True}} for name in ("a", "b", "c")}
    config = app(specs, start_method=start_method)
    with initgraph.boot(config) as boot:
        for name in ("a", "b", "c"):
            got_name, got, pid, _, loop = boot.results[name]
            assert (got_name, got) == (name, ["first", "second"])
            assert pid != os.getpid()
            assert loop != 0
        # asynchronize() kept publications in cookie order, whatever finished first
        assert [p.key for p in boot.registry.log] == ["order.a", "order.b", "order.c"]


def test_an_async_init_that_raises_fails_its_plugin(app: Writer) -> None:
    config = app({"bad": {"source": ASYNC_INIT, "config": {"fail": True}}})
    with pytest.raises(
        BootError,
        match=(
            r"^boot failed: plugin 'bad': "
            r"initcall 1 'bad' raised RuntimeError: async broken on purpose$"
        ),
    ):
        initgraph.boot(config)


def test_an_async_main_init_is_awaited_on_the_loop_under_lifespan(app: Writer) -> None:
    specs = {
        "low": {"source": ASYNC_INIT, "config": {"publish": True}},
        "here": {"source": ASYNC_INIT, "where": "main", "config": {"publish": True}},
    }
    config = app(specs)

    async def main() -> None:
        async with initgraph.lifespan(config) as boot:
            _, got, pid, thread, loop = boot.results["here"]
            assert got == ["first", "second"]
            assert (pid, thread) == (os.getpid(), threading.get_ident())
            assert loop == id(asyncio.get_running_loop())
            assert [p.key for p in boot.registry.log] == ["order.low", "order.here"]

    asyncio.run(main())


def test_an_async_main_init_gets_a_loop_of_its_own_under_boot(app: Writer) -> None:
    config = app({"here": {"source": ASYNC_INIT, "where": "main"}})
    with initgraph.boot(config) as boot:
        _, got, pid, thread, loop = boot.results["here"]
    assert (got, pid, thread) == (["first", "second"], os.getpid(), threading.get_ident())
    assert loop != 0
