"""Shutdown: ``initgraph_shutdown`` for what committed, last committed first, once.

Shutdown hooks run in the parent, so the plugins here write what they saw to a file named in
their config (``log``): one line per hook, ``<plugin> <thread id>``.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli, write_config

import initgraph
from initgraph import BootError, HookError, HookTimeout
from initgraph._boot import run as _boot

Writer = Callable[..., dict[str, Any]]

# Like the shared SLEEPER plugin, with a shutdown hook that logs and, told so, raises or sleeps.
CLOSER = """
import asyncio, os, threading, time
from initgraph import hookimpl

def log(ctx, what):
    with open(ctx.config["log"], "a") as f:
        f.write(f"{what} {ctx.name} {threading.get_ident()}\\n")

@hookimpl
def initgraph_init(ctx):
    if ctx.config.get("gate"):  # wait until the plugin before it committed
        with open(ctx.config["gate"]) as fifo:
            fifo.read()
    if ctx.config.get("fail"):
        raise RuntimeError("broken on purpose")
    return ctx.name

@hookimpl
def initgraph_commit(ctx, result):
    ctx.publish("commit." + ctx.name, result)
    if ctx.config.get("open_gate"):
        with open(ctx.config["open_gate"], "w") as fifo:
            fifo.write("go")

@hookimpl
def initgraph_shutdown(ctx, result):
    log(ctx, "shutdown")
    time.sleep(ctx.config.get("shutdown_work", 0))  # the hook's work, past its time
    if ctx.config.get("shutdown_fails"):
        raise OSError("disk gone")
"""

ASYNC_CLOSER = """
import asyncio, threading
from initgraph import hookimpl

def log(ctx, what):
    with open(ctx.config["log"], "a") as f:
        f.write(f"{what} {ctx.name} {threading.get_ident()}\\n")

@hookimpl
def initgraph_init(ctx):
    return ctx.name

@hookimpl
async def initgraph_commit(ctx, result):
    await asyncio.sleep(0)
    ctx.publish("commit." + ctx.name, result)
    log(ctx, "commit")

@hookimpl
async def initgraph_shutdown(ctx, result):
    log(ctx, "shutdown")
    if ctx.config.get("hang"):
        await asyncio.Event().wait()  # never set: abandoned at its timeout
    await asyncio.sleep(0)
    log(ctx, "closed")
"""


def lines(log: Path) -> list[tuple[str, str]]:
    """``(what, plugin)`` per line of the log, and check every hook ran on this thread."""
    if not log.exists():
        return []
    found = []
    for line in log.read_text().splitlines():
        what, name, thread = line.split()
        assert int(thread) == threading.get_ident(), line
        found.append((what, name))
    return found


def closers(log: Path, *names: str, **each: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Plugin specs for ``write_app``: each a CLOSER logging to ``log``."""
    specs: dict[str, dict[str, Any]] = {}
    for name in names:
        spec = dict(each.get(name, {}))
        spec["config"] = {"log": str(log), **spec.get("config", {})}
        specs[name] = {"source": CLOSER, **spec}
    return specs


def test_shutdown_runs_in_reverse_commit_order_once(app: Writer, tmp_path: Path) -> None:
    log = tmp_path / "log"
    plugins = closers(log, "a", "b", "c", "d", b={"domain": "net"}, d={"domain": "net"})
    config = app(plugins)
    config["domains"] = {"net": {}}
    with initgraph.boot(config) as boot:
        assert lines(log) == []  # not before close
        committed = [pub.plugin for pub in boot.registry.log]
    expected = [("shutdown", name) for name in reversed(committed)]
    assert lines(log) == expected
    assert [n for _, n in expected if n in ("a", "c")] == ["c", "a"]  # within a domain: reversed
    boot.close()  # a second time: nothing
    assert lines(log) == expected
    t = boot.timings
    assert all(t[n].shutdown_time is not None for n in "abcd")
    assert boot.shutdown_failures == {}
    assert boot.shutdown_wall is not None


@pytest.mark.parametrize("start_method", ["fork", "forkserver", "spawn"])
def test_an_aborted_boot_shuts_down_what_committed_and_raises_the_original_error(
    app: Writer, tmp_path: Path, start_method: str
) -> None:
    """a and b commit, then c fails and the boot aborts: b then a shut down, d never ran.

    c's init waits for b's commit (a FIFO b's commit writes), so the abort comes after both
    commits, whatever the timing. b's shutdown fails; a's still runs, and the error raised is
    c's, with b's failure attached.
    """
    log = tmp_path / "log"
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    plugins = closers(
        log,
        "a",
        "b",
        "c",
        "d",
        b={"config": {"open_gate": str(gate), "shutdown_fails": True}},
        c={"requires": ["b"], "config": {"gate": str(gate), "fail": True}},
        d={"requires": ["c"]},
    )
    config = app(plugins, on_error="abort", start_method=start_method)
    with pytest.raises(BootError) as info:
        initgraph.boot(config)
    err = info.value
    assert str(err).startswith("boot failed: plugin 'c': ")
    assert "RuntimeError: broken on purpose" in str(err)
    assert lines(log) == [("shutdown", "b"), ("shutdown", "a")]
    boot = err.boot
    assert [p.plugin for p in boot.registry.log] == ["a", "b"]
    assert (boot.status("c"), boot.status("d")) == ("failed", "cancelled")
    (failure,) = boot.shutdown_failures.values()
    assert failure.plugin == "b"
    assert failure.message == "initgraph_shutdown of plugin 'b' raised OSError: disk gone"
    assert isinstance(failure.error, HookError)
    assert err.__notes__ == [f"during the shutdown that followed: {failure.message}"]
    boot.close()  # shut down already
    assert len(lines(log)) == 2


def test_a_boot_with_check_false_is_shut_down_by_its_caller(app: Writer, tmp_path: Path) -> None:
    log = tmp_path / "log"
    config = app(closers(log, "a", "bad", bad={"config": {"fail": True}}), on_error="continue")
    boot = initgraph.boot(config, check=False)
    assert not boot.ok
    assert lines(log) == []
    boot.close()
    assert lines(log) == [("shutdown", "a")]  # bad did not commit


def test_a_plain_hook_past_its_time_is_waited_for_and_reported(
    app: Writer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """On the calling thread it cannot be stopped: it is reported as it overruns, and after."""
    log = tmp_path / "log"
    slow = {"config": {"shutdown_work": 0.3}, "shutdown_timeout": 0.05}
    config = app(closers(log, "a", "slow", slow=slow))
    with initgraph.boot(config) as boot:
        pass
    assert lines(log) == [("shutdown", "slow"), ("shutdown", "a")]
    failure = boot.shutdown_failures["slow"]
    assert failure.kind == "timeout"
    assert failure.message.startswith("initgraph_shutdown of plugin 'slow' ran ")
    assert failure.message.endswith(
        "past its shutdown_timeout of 0.05 s (on the thread that called boot() it cannot be "
        "stopped)"
    )
    assert "cannot be stopped there: waiting for it" in caplog.text
    assert list(boot.shutdown_failures) == ["slow"]


def test_hooks_after_the_total_cap_are_not_run(app: Writer, tmp_path: Path) -> None:
    log = tmp_path / "log"
    config = app(
        closers(log, "a", "slow", slow={"config": {"shutdown_work": 0.2}}), shutdown_timeout=0.1
    )
    with initgraph.boot(config) as boot:
        pass
    assert lines(log) == [("shutdown", "slow")]
    failure = boot.shutdown_failures["a"]
    assert isinstance(failure.error, HookTimeout)
    assert failure.message == (
        "initgraph_shutdown of plugin 'a' was not run: the shutdown's total time "
        "([initgraph] shutdown_timeout, 0.1 s) was spent"
    )


def test_async_hooks_run_to_completion_under_a_blocking_boot(app: Writer, tmp_path: Path) -> None:
    """``async def`` commit and shutdown hooks: awaited in a loop of their own, this thread."""
    log = tmp_path / "log"
    plugins = {
        name: {
            "source": ASYNC_CLOSER,
            "config": {"log": str(log), "hang": name == "hangs"},
            "shutdown_timeout": 0.2,
        }
        for name in ("a", "hangs")
    }
    with initgraph.boot(app(plugins)) as boot:
        assert [p.key for p in boot.registry.log] == ["commit.a", "commit.hangs"]
    assert lines(log) == [
        ("commit", "a"),
        ("commit", "hangs"),
        ("shutdown", "hangs"),  # abandoned: cancelled at its timeout
        ("shutdown", "a"),
        ("closed", "a"),
    ]
    assert boot.shutdown_failures["hangs"].message == (
        "initgraph_shutdown of plugin 'hangs' ran past its shutdown_timeout of 0.2 s and was "
        "abandoned (cancelled)"
    )


def test_an_interrupted_boot_shuts_down_what_committed(
    app: Writer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interrupt on the calling thread, in b's commit: a shuts down, then it goes on."""
    log = tmp_path / "log"
    config = app(closers(log, "a", "b", b={"requires": ["a"]}))
    commit = _boot._Run.commit

    def interrupting(self: Any, p: Any, init: Any, required: Any) -> Any:
        if p.name == "b":

            def job() -> None:
                raise KeyboardInterrupt

            return job
        return commit(self, p, init, required)

    monkeypatch.setattr(_boot._Run, "commit", interrupting)
    with pytest.raises(KeyboardInterrupt) as info:
        initgraph.boot(config)
    stopped = _boot.interruption(info.value)
    assert stopped is not None
    assert stopped.committed == ("a",)
    assert lines(log) == [("shutdown", "a")]
    assert stopped.boot.timings["a"].shutdown_time is not None


# -- the command line --------------------------------------------------------------------------
CLI_CLOSER = """\
from initgraph import hookimpl

@hookimpl
def initgraph_init(ctx):
    return ctx.name

@hookimpl
def initgraph_shutdown(ctx, result):
    if ctx.config.get("fails"):
        raise OSError("disk gone")
"""


def test_run_shuts_down_before_it_exits(cli: Cli) -> None:
    (cli.cwd / "first.py").write_text(CLI_CLOSER)
    (cli.cwd / "second.py").write_text(CLI_CLOSER)
    write_config(
        cli.cwd,
        """\
        [initgraph]
        workers = 1
        [plugins.first]
        module = "first"
        [plugins.second]
        module = "second"
        requires = ["first"]
        config = { fails = true }
        """,
    )
    done = cli.run("run", "--trace", "boot.json")
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    (head,) = [line for line in out if line.startswith("shut down ")]
    assert head.startswith("shut down 2 plugins in ")
    assert ", last committed first: second " in head
    assert "  second: initgraph_shutdown of plugin 'second' raised OSError: disk gone" in out
    trace = json.loads((cli.cwd / "boot.json").read_text())
    spans = [e["name"] for e in trace["traceEvents"] if e.get("cat") == "shutdown"]
    assert sorted(spans) == ["shutdown first", "shutdown second"]
    done = cli.run("run", "--json")
    data = json.loads(done.stdout)
    assert data["shutdown_ms"] >= 0
    errors = {p["name"]: p["shutdown_error"] for p in data["plugins"]}
    assert errors == {
        "first": None,
        "second": "initgraph_shutdown of plugin 'second' raised OSError: disk gone",
    }
