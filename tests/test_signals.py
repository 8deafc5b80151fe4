"""SIGINT and SIGTERM sent to ``initgraph run`` in the middle of a boot (issue 5).

The promise: the command ends within 2 s of the signal with 130 (SIGINT) or 143 (SIGTERM), says
on stderr what the boot had done, and leaves no process behind; a repeated signal changes none of
that; and a plugin's publications are all visible or none, even when the signal lands in the
middle of its commit.

Each boot here blocks in a plugin that writes a marker file, then opens a FIFO nobody writes to:
the test sends the signal once the marker is there, so it lands while the plugin runs, without
sleeping for synchronization. Every process the command starts carries the test's marker in its
environment (``Cli``), so what is left of the boot is found even after it was re-parented to
init.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from conftest import Cli, needs_main_thread, write_config, write_plugin

from initgraph._cli import signals as _signals
from initgraph._cli.signals import Terminated, signals_raise

# Seconds from the signal to the end of the command. What has to happen in them: the handler
# raises in the main thread, the scheduler terminates its workers (SIGTERM, which they do not
# handle), joins them, its pool thread, the manager and, for forkserver and spawn, the fork server
# and resource tracker; the atexit functions run and the process exits. Over 228 runs of these
# tests under `pytest -n auto` on the project's 2-vCPU machine, shared with other work, that took
# 0.009-0.45 s with a load average of 6 to 8 (median 0.07 s: fork 0.03 s, forkserver 0.14 s,
# spawn 0.17 s), and up to 1.5 s (spawn) at 12, six runnable processes per CPU, when each test
# took 5x its usual time. 2 s keeps a margin over that. What it leaves out on purpose is the
# scheduler's own 2 s grace for a worker that does not die of SIGTERM: reaching it means a worker
# ignored the signal, which is the bug these tests are here to catch, not load.
# (The signal is sent once every process of the pool has started: one still starting can use
# that grace today, see _settle.)
BOUND = 2.0

SIGNALS = {
    signal.SIGINT: (130, "interrupted"),
    signal.SIGTERM: (143, "terminated"),
}
START_METHODS = ["fork", "forkserver", "spawn"]
TIME = r"\d+\.\d\d"


@pytest.fixture(autouse=True)
def sigint_not_ignored() -> Iterator[None]:
    """A child inherits an ignored SIGINT (as under some runners); let it see Ctrl-C."""
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    """Wait, within a bound, for the blocking plugin to say it started."""
    deadline = time.monotonic() + 60
    while not (path.exists() and path.read_text()):
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"initgraph ended early with {proc.returncode}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.communicate()
            pytest.fail("the blocking plugin never started")
        time.sleep(0.01)


def _settle(proc: subprocess.Popen[str]) -> None:
    """Wait, within a bound, until no process of the command is still starting.

    A forkserver or spawn worker, and the manager forked by a fork server, start with SIGTERM
    blocked (the scheduler holds it while it starts them, and they inherit that), so one still
    importing when the signal comes cannot be terminated: the cleanup waits the scheduler's 2 s
    grace (the manager's 1 s) for it, then kills it. That is a bug of the scheduler, reported
    with issue 5, not what these tests time; so they signal once every process has started:
    starting is importing, on the CPU, so that is when each one is seen asleep three times in a
    row.
    """
    deadline = time.monotonic() + 60
    calm = 0
    while calm < 3 and time.monotonic() < deadline:
        try:
            kids = psutil.Process(proc.pid).children(recursive=True)
            busy = [k for k in kids if k.status() not in _RESTING]
        except psutil.Error:  # one ended while we looked: look again
            busy = [None]
        calm = 0 if busy else calm + 1
        time.sleep(0.02)


_RESTING = (psutil.STATUS_SLEEPING, psutil.STATUS_ZOMBIE)


def _end(proc: subprocess.Popen[str], cli: Cli) -> tuple[str, str]:
    """Wait for the command to end (or kill it after 30 s), and check it left no process."""
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert cli.kill_leftovers() == [], "processes of the boot outlived initgraph"
    return out, err


def _end_within_bound(
    proc: subprocess.Popen[str],
    cli: Cli,
    sent: float,
    record_property: Callable[[str, object], None],
) -> tuple[str, str]:
    """``_end``, checking that the command ended within BOUND of the signal ``sent`` then."""
    try:
        proc.wait(timeout=30)
    finally:
        took = time.monotonic() - sent
        out, err = _end(proc, cli)
    record_property("seconds_to_exit", round(took, 4))
    assert took < BOUND, f"took {took:.2f} s"
    return out, err


def _blocking_app(folder: Path, *, where: str = "pool", start_method: str | None = None) -> Path:
    """quick commits; blocker (which requires it) blocks; after requires blocker. The marker."""
    write_plugin(folder, "quick", "ok")
    write_plugin(folder, "blocker", "block")
    write_plugin(folder, "after", "ok")
    os.mkfifo(folder / "fifo")
    marker = folder / "marker"
    method = f'start_method = "{start_method}"' if start_method else ""
    write_config(
        folder,
        f"""\
        [initgraph]
        workers = 2
        {method}
        [plugins.quick]
        module = "quick"
        [plugins.blocker]
        module = "blocker"
        requires = ["quick"]
        where = "{where}"
        config = {{ fifo = "{folder / "fifo"}", marker = "{marker}" }}
        [plugins.after]
        module = "after"
        requires = ["blocker"]
        """,
    )
    return marker


# When blocker's marker is there, blocker runs and after (which requires it) has not started.
# blocker starts once quick's init has finished, not once quick has committed: quick's commit is
# handed to the boot's thread right after blocker is launched. A where = "main" blocker runs on
# that thread too, after quick's commit, so the state is known: quick committed. A pool blocker
# runs in a worker meanwhile, so the signal may find quick committed, or finished and its commit
# not yet run (or cut short: an interrupted commit publishes nothing).
BLOCKED_SUMMARY = (
    rf"initgraph: boot stopped after {TIME} s: 1 of 3 plugins committed \(quick\); "
    r"cancelled while running: 1 \(blocker\); not started: 1 \(after\)"
)
BLOCKED_IN_POOL_SUMMARY = (
    rf"initgraph: boot stopped after {TIME} s: (1 of 3 plugins committed \(quick\)|"
    r"0 of 3 plugins committed; finished but not committed: 1 \(quick\)); "
    r"cancelled while running: 1 \(blocker\); not started: 1 \(after\)"
)


def blocked_summary(where: str) -> str:
    """The summary of a boot stopped while blocker (``where``) blocks; see BLOCKED_SUMMARY."""
    return BLOCKED_SUMMARY if where == "main" else BLOCKED_IN_POOL_SUMMARY


def _assert_stopped(err: str, signum: int, summary: str) -> None:
    lines = err.splitlines()
    assert lines[:1] == [f"initgraph: {SIGNALS[signum][1]}"], err  # line 1 is what it always was
    assert len(lines) == 2, err
    assert re.fullmatch(summary, lines[1]), err


@pytest.mark.parametrize("start_method", START_METHODS)
@pytest.mark.parametrize("where", ["pool", "main"])
@pytest.mark.parametrize("signum", list(SIGNALS), ids=lambda s: signal.Signals(s).name)
def test_signal_ends_the_boot_with_a_summary(
    cli: Cli,
    signum: int,
    where: str,
    start_method: str,
    record_property: Callable[[str, object], None],
) -> None:
    marker = _blocking_app(cli.cwd, where=where, start_method=start_method)
    proc = cli.start("run")
    _wait_for(marker, proc)
    _settle(proc)
    sent = time.monotonic()
    proc.send_signal(signum)
    out, err = _end_within_bound(proc, cli, sent, record_property)
    assert proc.returncode == SIGNALS[signum][0], err
    assert out == ""  # the table is for a boot that ended; this one was stopped
    _assert_stopped(err, signum, blocked_summary(where))


def test_json_carries_the_interruption(cli: Cli) -> None:
    # A where = "main" blocker: when its marker is there, quick has committed (BLOCKED_SUMMARY),
    # so each group of the interruption holds one known plugin.
    marker = _blocking_app(cli.cwd, where="main")
    proc = cli.start("run", "--json")
    _wait_for(marker, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = _end(proc, cli)
    assert proc.returncode == 143, err
    _assert_stopped(err, signal.SIGTERM, BLOCKED_SUMMARY)
    data = json.loads(out)
    assert data["ok"] is False
    stopped = data["interrupted"]
    assert stopped.pop("after_ms") > 0
    assert stopped == {
        "signal": "SIGTERM",
        "committed": ["quick"],
        "finished_not_committed": [],
        "running": ["blocker"],
        "did_not_commit": [],
        "not_started": ["after"],
    }
    statuses = [(p["name"], p["status"], p["error"]) for p in data["plugins"]]
    assert statuses == [
        ("quick", "ok", None),
        ("blocker", "cancelled", "cancelled while running: the boot was interrupted"),
        ("after", "cancelled", "cancelled: the boot was interrupted before it started"),
    ]
    blocker = data["plugins"][1]
    assert blocker["init_ms"] is None  # it never ended
    assert blocker["waited_ms"] is None


def test_earlier_failures_are_listed_with_their_status(cli: Cli) -> None:
    marker = _blocking_app(cli.cwd)
    write_plugin(cli.cwd, "bad", "raise")
    with (cli.cwd / "init.toml").open("a") as config:
        config.write('[plugins.bad]\nmodule = "bad"\noptional = true\n')
    proc = cli.start("run")
    _wait_for(marker, proc)
    proc.send_signal(signal.SIGINT)
    _, err = _end(proc, cli)
    assert proc.returncode == 130, err
    # bad (cookie 4) fails at once; it is optional, so the boot goes on into blocker. Whether
    # its outcome reached the parent before the signal is a race, so both are right; so is
    # whether quick's commit ran (see BLOCKED_SUMMARY).
    _assert_stopped(
        err,
        signal.SIGINT,
        rf"initgraph: boot stopped after {TIME} s: (1 of 4 plugins committed \(quick\)|"
        r"0 of 4 plugins committed; finished but not committed: 1 \(quick\)); "
        r"cancelled while running: (1 \(blocker\)|2 \(blocker, bad\)); "
        r"(did not commit: 1 \(bad failed\); )?not started: 1 \(after\)",
    )


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize(
    ("first", "second", "when"),
    [
        (signal.SIGINT, signal.SIGINT, "at once"),
        (signal.SIGINT, signal.SIGINT, "during the cleanup"),
        (signal.SIGTERM, signal.SIGTERM, "during the cleanup"),
        (signal.SIGINT, signal.SIGTERM, "during the cleanup"),
        (signal.SIGINT, signal.SIGINT, "until it ends"),
        (signal.SIGTERM, signal.SIGTERM, "until it ends"),
        # Not from the start: two different signals pending at once are handled lowest number
        # first (SIGINT), whichever was sent first.
        (signal.SIGTERM, signal.SIGINT, "from the cleanup until it ends"),
    ],
    ids=lambda v: signal.Signals(v).name if isinstance(v, int) else v.replace(" ", "-"),
)
def test_a_repeated_signal_still_ends_cleanly(
    cli: Cli, first: int, second: int, when: str, record_property: Callable[[str, object], None]
) -> None:
    marker = _blocking_app(cli.cwd)
    proc = cli.start("run")
    _wait_for(marker, proc)
    worker = int(marker.read_text())  # the worker running blocker
    _settle(proc)
    sent = time.monotonic()
    proc.send_signal(first)
    if when == "at once":  # the impatient double Ctrl-C
        proc.send_signal(second)
    if "cleanup" in when:
        # The scheduler's cleanup stops the workers first: once blocker's is gone, the rest of
        # the cleanup (other workers, pool thread, manager) and the report are under way.
        while not _gone(worker) and proc.poll() is None:
            time.sleep(0.001)
    if when == "during the cleanup":
        proc.send_signal(second)
    if "until it ends" in when:  # hammering: the cleanup, the report and the exit all get some
        while proc.poll() is None:
            proc.send_signal(second)
            time.sleep(0.002)
    out, err = _end_within_bound(proc, cli, sent, record_property)
    assert proc.returncode == SIGNALS[first][0], err  # the first signal decides
    assert out == ""
    _assert_stopped(err, first, BLOCKED_IN_POOL_SUMMARY)


# A plugin whose commit publishes four keys, and sends SIGINT to its own process (the parent:
# commits run there) at a chosen point: once `fire_at` of its keys are visible in the registry.
# The keys are a str subclass whose hash says when: the registry hashes a key to store it, so
# `fire_at` = 1..4 lands the signal between two of the plugin's publications (or inside one:
# its value stored, its owner not yet), and 0 lands it while the commit hook is still staging.
COMMIT_PLUGIN = """\
import os
import pathlib
import signal

from initgraph import hookimpl


class Key(str):
    registry = None
    base = 0
    fire_at = 0
    fired_with = None

    def __hash__(self):
        cls = type(self)
        if cls.registry is not None and cls.fired_with is None:
            visible = len(cls.registry) - cls.base
            if visible >= cls.fire_at:
                cls.fired_with = visible
                pathlib.Path(cls.report).write_text(str(visible))
                os.kill(os.getpid(), signal.SIGINT)
        return str.__hash__(self)


@hookimpl
def initgraph_init(ctx):
    return "inited"


@hookimpl
def initgraph_commit(ctx, result):
    Key.registry = ctx.registry
    Key.base = len(ctx.registry)
    Key.fire_at = ctx.config["fire_at"]
    Key.report = ctx.config["report"]
    for i in range(4):
        ctx.publish(Key(f"many.{i}"), i)
"""


@pytest.mark.parametrize("fire_at", [0, 1, 2, 3, 4])
def test_a_signal_during_a_commit_publishes_all_or_nothing(cli: Cli, fire_at: int) -> None:
    write_plugin(cli.cwd, "first", "ok")
    (cli.cwd / "many.py").write_text(COMMIT_PLUGIN)
    write_plugin(cli.cwd, "after", "ok")
    report = cli.cwd / "fired_with"
    write_config(
        cli.cwd,
        f"""\
        [initgraph]
        workers = 1
        [plugins.first]
        module = "first"
        [plugins.many]
        module = "many"
        config = {{ fire_at = {fire_at}, report = "{report}" }}
        [plugins.after]
        module = "after"
        requires = ["many"]
        """,
    )
    done = cli.run("run", "--json")
    assert done.returncode == 130, done.stderr
    # Where the signal landed: with `fire_at` of many's keys already in the registry.
    assert int(report.read_text()) == fire_at
    data = json.loads(done.stdout)
    published = [e["key"] for e in data["registry"] if e["plugin"] == "many"]
    status = {p["name"]: p["status"] for p in data["plugins"]}
    # after requires many: it started when many's init finished, before many's commit, and
    # may have finished while many committed on the boot's thread.
    if fire_at == 0:  # in the hook, before anything of its was visible: nothing
        assert published == []
        assert status == {"first": "ok", "many": "cancelled", "after": "cancelled"}
        summary = (
            rf"initgraph: boot stopped after {TIME} s: 1 of 3 plugins committed \(first\); "
            r"(finished but not committed: 1 \(many\); cancelled while running: 1 \(after\)"
            r"|finished but not committed: 2 \(many, after\))"
        )
    else:  # half-way through its publications: they are completed, and it committed
        assert published == ["many.0", "many.1", "many.2", "many.3"]
        assert status == {"first": "ok", "many": "ok", "after": "cancelled"}
        # after's init may have ended while many committed on the boot's thread.
        summary = (
            rf"initgraph: boot stopped after {TIME} s: 2 of 3 plugins committed "
            r"\(first, many\); (cancelled while running|finished but not committed): 1 "
            r"\(after\)"
        )
    assert data["interrupted"]["signal"] == "SIGINT"
    _assert_stopped(done.stderr, signal.SIGINT, summary)


def test_a_signal_before_the_boot_starts_prints_the_first_line_only(cli: Cli) -> None:
    # Importing the plugin modules comes before any process starts: the boot has nothing to say.
    marker = cli.cwd / "marker"
    fifo = cli.cwd / "fifo"
    os.mkfifo(fifo)
    (cli.cwd / "slow_import.py").write_text(
        textwrap.dedent(
            f"""\
            import os
            import pathlib

            pathlib.Path({str(marker)!r}).write_text(str(os.getpid()))
            with open({str(fifo)!r}) as fifo:
                fifo.read()
            """
        )
    )
    write_config(cli.cwd, '[plugins.slow_import]\nmodule = "slow_import"\n')
    proc = cli.start("run", "--json")
    _wait_for(marker, proc)
    proc.send_signal(signal.SIGINT)
    out, err = _end(proc, cli)
    assert proc.returncode == 130, err
    assert (out, err) == ("", "initgraph: interrupted\n")


@needs_main_thread
def test_a_repeat_is_ignored_for_the_grace_then_raises_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with signals_raise():
        with pytest.raises(Terminated):
            _signal_self(signal.SIGTERM)
        # Within the grace, either signal is ignored: nothing is raised here.
        _signal_self(signal.SIGTERM)
        if isinstance(signal.getsignal(signal.SIGINT), _signals.Raise):  # taken over: ours
            _signal_self(signal.SIGINT)
        # Once the grace is over, a signal raises again (a cleanup that hangs, a swallowed one).
        monkeypatch.setattr(_signals, "_REPEAT_GRACE", 0.0)
        with pytest.raises(Terminated):
            _signal_self(signal.SIGTERM)


def _signal_self(signum: int) -> None:
    """Send ``signum`` to this thread; its Python handler has run when this returns."""
    signal.raise_signal(signum)
