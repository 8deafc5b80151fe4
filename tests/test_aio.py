"""``aboot`` and ``lifespan``: the same boot, with the event loop's thread as its owner."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import initgraph
from initgraph import BootError
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
