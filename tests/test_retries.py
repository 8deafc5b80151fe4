"""Retries: NotReady and retry_on inside the initcall, crashes and timeouts on a fresh worker.

Each attempt of the plugins here appends a line to a log file, so an attempt knows its number
whatever process runs it. The retry delays are the feature under test: they are kept small,
and the times are checked with bounds that hold on a loaded machine (a delay is at least what
was asked, never a fixed upper bound).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import re
import sys
import time
import types
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest
from conftest import AppWriter as Writer
from conftest import Cli, write_config
from hypothesis import given, settings
from hypothesis import strategies as st

import initgraph
from initgraph import BootError, ConfigError, HookError, InitContext, NotReady, WorkerCrashed
from initgraph._boot.plugins import Retry, retry_types, retrying
from initgraph._boot.state import Attempt
from initgraph._cli.progress import progress
from initgraph._core.dispatch import Dispatcher
from initgraph._observe.trace import to_chrome_trace

# Attempt n (counted in config "log") crashes while n <= "crash", raises NotReady while
# n < "ready_after" (or config "error", a builtin's name, instead), then returns n. Each
# attempt publishes "attempt<n>" after synchronizing: only the last one's may be committed.
FLAKY = """
import builtins, os, pathlib, time
from initgraph import hookimpl, NotReady

@hookimpl
def initgraph_init(ctx):
    log = pathlib.Path(ctx.config["log"])
    with log.open("a") as f:
        f.write("x\\n")
    n = len(log.read_text().splitlines())
    if n <= ctx.config.get("crash", 0):
        os._exit(3)
    if n <= ctx.config.get("hang", 0):
        time.sleep(60)
    ctx.synchronize()
    ctx.publish(f"attempt{n}", n)
    if n < ctx.config.get("ready_after", 1):
        error = getattr(builtins, ctx.config.get("error", ""), NotReady)
        raise error(f"not up (attempt {n})")
    if ctx.config.get("fail_at") == n:
        raise ValueError("boom")
    return n
"""


def flaky(tmp_path: Path, name: str, **spec: object) -> dict[str, object]:
    config = dict(spec.pop("config", {}))  # type: ignore[call-overload]
    return {"source": FLAKY, "config": {"log": str(tmp_path / f"{name}.log"), **config}, **spec}


def test_not_ready_is_retried_in_the_same_initcall_and_keeps_its_cookie(
    app: Writer, tmp_path: Path
) -> None:
    config = app(
        {
            "db": flaky(tmp_path, "db", retries=3, retry_delay=0.02, config={"ready_after": 3}),
            "after": {"config": {"synchronize": True}},
        }
    )
    boot = initgraph.boot(config)
    assert boot.results["db"] == 3
    assert boot.plan.plugin("db").cookie == 1
    # Only the last attempt's publication is kept, and the commit order did not change.
    assert [p.key for p in boot.registry.log] == ["attempt3", "init.after", "commit.after"]
    db = boot.timings["db"]
    assert [(a.number, a.reason) for a in db.attempts] == [
        (1, "NotReady: not up (attempt 1)"),
        (2, "NotReady: not up (attempt 2)"),
        (3, None),
    ]
    assert [a.delay for a in db.attempts] == [0.02, 0.04, 0.0]
    for before, after in zip(db.attempts, db.attempts[1:], strict=False):
        assert after.started - before.ended >= before.delay  # slept at least the delay
    # db stayed in progress across its attempts: the next cookie's synchronize waited for all.
    (wait,) = boot.timings["after"].waits
    assert wait.ended >= db.attempts[-1].ended


def test_delays_double_up_to_the_cap(app: Writer, tmp_path: Path) -> None:
    spec = flaky(tmp_path, "db", retries=4, retry_delay=0.01, config={"ready_after": 5})
    boot = initgraph.boot(app({"db": spec}, retry_delay_max=0.03))
    assert [a.delay for a in boot.timings["db"].attempts] == [0.01, 0.02, 0.03, 0.03, 0.0]


def test_out_of_retries_fails_with_every_attempt_recorded(app: Writer, tmp_path: Path) -> None:
    config = app(
        {"db": flaky(tmp_path, "db", retries=2, retry_delay=0.01, config={"ready_after": 9})}
    )
    with pytest.raises(BootError) as info:
        initgraph.boot(config)
    boot = info.value.boot
    message = "plugin 'db' was not ready after 3 attempts: NotReady: not up (attempt 3)"
    assert boot.failures["db"].message == message
    assert boot.failures["db"].kind == "error"
    assert str(info.value) == f"boot failed: plugin 'db': {message}"
    assert [a.number for a in boot.timings["db"].attempts] == [1, 2, 3]
    assert boot.registry.log == ()


def test_not_ready_without_retries_says_so(app: Writer, tmp_path: Path) -> None:
    boot = initgraph.boot(
        app({"db": flaky(tmp_path, "db", config={"ready_after": 2})}), check=False
    )
    assert boot.failures["db"].message == (
        "plugin 'db' was not ready after 1 attempt: NotReady: not up (attempt 1); "
        "set its retries to try again"
    )
    assert boot.timings["db"].attempts == ()


def test_other_exceptions_are_not_retried(app: Writer, tmp_path: Path) -> None:
    first = flaky(tmp_path, "a", retries=3, retry_delay=0.01, config={"fail_at": 1})
    later = flaky(
        tmp_path, "b", retries=3, retry_delay=0.01, config={"ready_after": 2, "fail_at": 2}
    )
    boot = initgraph.boot(app({"a": first, "b": later}, on_error="continue"), check=False)
    assert boot.failures["a"].message == "initcall 1 'a' raised ValueError: boom"
    assert boot.timings["a"].attempts == ()
    assert boot.failures["b"].message == "plugin 'b' failed on attempt 2: ValueError: boom"
    assert [a.reason for a in boot.timings["b"].attempts] == [
        "NotReady: not up (attempt 1)",
        "ValueError: boom",
    ]
    assert isinstance(boot.failures["b"].error, HookError)


def test_retry_on_names_more_exception_types(app: Writer, tmp_path: Path) -> None:
    spec = flaky(
        tmp_path,
        "db",
        retries=2,
        retry_delay=0.01,
        retry_on=["builtins.ConnectionRefusedError"],
        config={"ready_after": 2, "error": "ConnectionRefusedError"},
    )
    boot = initgraph.boot(app({"db": spec}))
    assert [a.reason for a in boot.timings["db"].attempts] == [
        "ConnectionRefusedError: not up (attempt 1)",
        None,
    ]


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        (
            "nosuchmodule.Error",
            "cannot import 'nosuchmodule.Error': ModuleNotFoundError: No module named "
            "'nosuchmodule'",
        ),
        ("os.sep", "'os.sep' is '/', not an exception type"),
    ],
)
def test_retry_on_must_name_an_exception_type(app: Writer, name: str, problem: str) -> None:
    config = app({"db": {"retry_on": [name]}})
    expected = f'config: plugins.db.retry_on[0]: {problem}; name an exception type as "module.Name"'
    for call in (initgraph._boot.run.check, initgraph.boot):
        with pytest.raises(ConfigError, match=f"^{re.escape(expected)}$") as info:
            call(config)
        assert info.value.key == "plugins.db.retry_on[0]"


def test_a_where_main_plugin_is_retried_on_the_boots_thread(app: Writer, tmp_path: Path) -> None:
    spec = flaky(
        tmp_path, "db", where="main", retries=1, retry_delay=0.01, config={"ready_after": 2}
    )
    boot = initgraph.boot(app({"db": spec}))
    assert boot.results["db"] == 2
    assert [a.number for a in boot.timings["db"].attempts] == [1, 2]


# -- crashes and timeouts: the same cookie again, on a fresh worker --------------------------------
@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_a_crash_is_retried_on_a_fresh_worker_with_retry_crashes(
    app: Writer, tmp_path: Path, method: str
) -> None:
    spec = flaky(
        tmp_path,
        "db",
        retries=2,
        retry_delay=0.01,
        retry_crashes=True,
        config={"crash": 1, "ready_after": 3},
    )
    boot = initgraph.boot(
        app({"db": spec, "after": {"config": {"synchronize": True}}}, start_method=method)
    )
    assert boot.results["db"] == 3
    attempts = boot.timings["db"].attempts
    assert [a.number for a in attempts] == [1, 2, 3]
    assert re.fullmatch(
        r"worker \d+ crashed with EXIT\(3\) while running initcall 1 'db'; "
        r"the worker was replaced",
        attempts[0].reason or "",
    )
    assert attempts[0].delay == 0.01
    # The run after the crash has its own NotReady retries (counted apart), and its first
    # delay is the first one again.
    assert attempts[1:][0].reason == "NotReady: not up (attempt 2)"
    assert attempts[1].delay == 0.01
    (wait,) = boot.timings["after"].waits
    assert wait.ended >= attempts[-1].ended
    assert [p.key for p in boot.registry.log] == ["attempt3", "init.after", "commit.after"]


def test_a_crash_is_not_retried_without_retry_crashes(app: Writer, tmp_path: Path) -> None:
    spec = flaky(tmp_path, "db", retries=2, retry_delay=0.01, config={"crash": 1})
    boot = initgraph.boot(app({"db": spec}), check=False)
    assert boot.failures["db"].kind == "crash"
    assert boot.timings["db"].attempts == ()
    assert (tmp_path / "db.log").read_text() == "x\n"


def test_crash_retries_run_out(app: Writer, tmp_path: Path) -> None:
    spec = flaky(
        tmp_path, "db", retries=1, retry_delay=0.01, retry_crashes=True, config={"crash": 9}
    )
    boot = initgraph.boot(app({"db": spec}), check=False)
    failure = boot.failures["db"]
    assert isinstance(failure.error, WorkerCrashed)
    assert re.fullmatch(
        r"worker \d+ crashed with EXIT\(3\) while running initcall 1 'db'; the worker was "
        r"replaced; it crashed or timed out on each of its 2 runs",
        failure.message,
    )
    assert [a.number for a in boot.timings["db"].attempts] == [1, 2]


def test_a_timeout_is_retried_with_retry_crashes(app: Writer, tmp_path: Path) -> None:
    spec = flaky(
        tmp_path,
        "db",
        timeout=0.5,
        retries=1,
        retry_delay=0.01,
        retry_crashes=True,
        config={"hang": 1},
    )
    boot = initgraph.boot(app({"db": spec}))
    assert boot.results["db"] == 2
    first = boot.timings["db"].attempts[0]
    assert first.reason == (
        "initcall 1 'db' ran past its timeout of 0.5 s and was stopped; its worker was replaced"
    )


def test_dispatcher_requeue_holds_a_lost_cookie_until_released() -> None:
    d = Dispatcher()
    d.add_worker(0)
    d.add(1)
    d.add(2, after=[1])
    assert d.assign() == [(0, 1)]
    assert d.remove_worker(0) == 1
    d.requeue(1)
    d.add_worker(1)
    assert d.assign() == []  # held: its retry delay runs
    assert d.pending == 2
    assert d.release(1)
    assert d.assign() == [(1, 1)]
    assert d.complete(1) == [2]
    with pytest.raises(ValueError, match=r"^cookie 2 is not running on a worker that left$"):
        d.requeue(2)


# -- the command line ------------------------------------------------------------------------------
def test_run_shows_attempts_in_the_table_and_json(cli: Cli) -> None:
    (cli.cwd / "flaky.py").write_text(FLAKY)
    write_config(
        cli.cwd,
        f"""
        [initgraph]
        paths = ["."]
        workers = 1

        [plugins.db]
        module = "flaky"
        retries = 2
        retry_delay = 0.01

        [plugins.db.config]
        log = "{cli.cwd / "db.log"}"
        ready_after = 2
        """,
    )
    done = cli.run("run", "init.toml", "--log-level", "WARNING")
    assert done.returncode == 0, done.stderr
    assert (
        "plugin 'db' was not ready: NotReady: not up (attempt 1); retry 1 of 2 in 0.01 s"
        in done.stderr
    )
    (row,) = [line for line in done.stdout.splitlines() if " db " in line]
    assert row.endswith("2 attempts"), done.stdout
    (cli.cwd / "db.log").unlink()
    done = cli.run("run", "init.toml", "--json")
    data = json.loads(done.stdout)
    (db,) = [p for p in data["plugins"] if p["name"] == "db"]
    assert [a["reason"] for a in db["attempts"]] == ["NotReady: not up (attempt 1)", None]


def test_run_reports_a_plugin_out_of_retries(cli: Cli) -> None:
    (cli.cwd / "flaky.py").write_text(FLAKY)
    write_config(
        cli.cwd,
        f"""
        [initgraph]
        paths = ["."]
        workers = 1

        [plugins.db]
        module = "flaky"
        retries = 1
        retry_delay = 0.01

        [plugins.db.config]
        log = "{cli.cwd / "db.log"}"
        ready_after = 5
        """,
    )
    done = cli.run("run", "init.toml")
    assert done.returncode == 1
    assert "plugin 'db' was not ready after 2 attempts: NotReady: not up (attempt 2)" in (
        done.stdout + done.stderr
    )


def test_not_ready_is_public() -> None:
    assert issubclass(NotReady, initgraph.InitgraphError)
    assert NotReady.__module__ == "initgraph"


def test_the_trace_has_a_span_per_attempt_and_per_delay(app: Writer, tmp_path: Path) -> None:
    spec = flaky(tmp_path, "db", retries=2, retry_delay=0.01, config={"ready_after": 3})
    boot = initgraph.boot(app({"db": spec}))
    events = to_chrome_trace(boot)["traceEvents"]
    spans = [(e["name"], e["cat"]) for e in events if e.get("cat") in ("attempt", "retry")]
    assert spans == [
        ("attempt 1", "attempt"),
        ("retry delay", "retry"),
        ("attempt 2", "attempt"),
        ("retry delay", "retry"),
        ("attempt 3", "attempt"),
    ]
    (init,) = [e for e in events if e.get("cat") == "init"]
    for e in events:
        if e.get("cat") in ("attempt", "retry"):  # inside the init: one initcall throughout
            assert e["pid"] == init["pid"]
            assert init["ts"] <= e["ts"] <= e["ts"] + e["dur"] <= init["ts"] + init["dur"] + 1


def test_progress_shows_the_attempt_a_retried_plugin_is_on() -> None:
    with progress(None, stream=io.StringIO()) as shown:
        shown.update({"db": time.monotonic()}, {})
        logging.getLogger("initgraph.retry").warning(
            "retrying", extra={"initgraph_plugin": "db", "initgraph_attempt": 2}
        )
        assert re.fullmatch(r"  db running \d+\.\d s, attempt 2", shown.lines()[1])


# -- async def inits: the await is part of each attempt -------------------------------------------
# Like FLAKY, async def: attempt n raises NotReady (when awaited) while n < "ready_after". Each
# attempt records the id of the loop it ran on and when it started.
ASYNC_FLAKY = """
import asyncio, pathlib, time
from initgraph import hookimpl, NotReady

@hookimpl
async def initgraph_init(ctx):
    log = pathlib.Path(ctx.config["log"])
    await asyncio.sleep(0)
    with log.open("a") as f:
        f.write(f"{id(asyncio.get_running_loop())} {time.monotonic()}\\n")
    n = len(log.read_text().splitlines())
    await ctx.asynchronize()
    ctx.publish(f"attempt{n}", n)
    if n < ctx.config["ready_after"]:
        raise NotReady(f"not up (attempt {n})")
    return n
"""


def async_flaky(tmp_path: Path, name: str, **spec: object) -> dict[str, object]:
    return {
        "source": ASYNC_FLAKY,
        "config": {"log": str(tmp_path / f"{name}.log"), "ready_after": 3},
        **spec,
    }


@pytest.mark.parametrize("where", ["pool", "main"])
def test_an_async_init_is_retried_under_a_blocking_boot(
    app: Writer, tmp_path: Path, where: str
) -> None:
    config = app({"db": async_flaky(tmp_path, "db", where=where, retries=3, retry_delay=0.01)})
    boot = initgraph.boot(config)
    assert boot.results["db"] == 3
    assert [(a.number, a.reason) for a in boot.timings["db"].attempts] == [
        (1, "NotReady: not up (attempt 1)"),
        (2, "NotReady: not up (attempt 2)"),
        (3, None),
    ]
    assert [p.key for p in boot.registry.log] == ["attempt3"]


def test_an_async_main_init_is_retried_on_the_running_loop(app: Writer, tmp_path: Path) -> None:
    """Under aboot every attempt runs on the boot's loop, which goes on during the delays."""
    config = app({"db": async_flaky(tmp_path, "db", where="main", retries=3, retry_delay=0.1)})

    async def main() -> tuple[int, list[float]]:
        ticks: list[float] = []

        async def tick() -> None:
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)

        ticking = asyncio.create_task(tick())
        try:
            boot = await initgraph.aboot(config)
        finally:
            ticking.cancel()
        try:
            assert boot.results["db"] == 3
            delays = [a.delay for a in boot.timings["db"].attempts]
            assert delays[:2] == [0.1, 0.2]
        finally:
            await boot.aclose()
        return id(asyncio.get_running_loop()), ticks

    loop, ticks = asyncio.run(main())
    attempts = [line.split() for line in (tmp_path / "db.log").read_text().splitlines()]
    assert [a[0] for a in attempts] == [str(loop)] * 3
    # The loop ran its other task while the init waited out its 0.1 s and 0.2 s of delays.
    first, last = float(attempts[0][1]), float(attempts[2][1])
    assert last - first >= 0.3
    assert sum(first < t < last for t in ticks) >= 10, ticks


# -- how retry_on resolves and matches: properties over random exception hierarchies --------------
# A module of exception classes made for each example: E<i> derives from Exception, NotReady or
# a lower E<j>; A<i> is another name of one of them; "twin" modules hold classes of the same
# names that are other classes; "value" is no type at all.
@dataclass(frozen=True)
class Hierarchy:
    module: str
    classes: tuple[type[Exception], ...]
    aliases: dict[str, type[Exception]]  # A<i> -> the class it names
    twins: tuple[type[Exception], ...]  # same names, other classes, in module + "_twin"

    def named(self, name: str) -> type[Exception]:
        return self.aliases.get(name) or self.classes[int(name[1:])]


@contextlib.contextmanager
def hierarchy(parents: list[int], aliases: list[int]) -> Iterator[Hierarchy]:
    """``parents[i]``: -2 NotReady, -1 Exception, else the index of a lower class."""
    module = f"retry_on_{uuid.uuid4().hex}"
    mod, twin = types.ModuleType(module), types.ModuleType(module + "_twin")
    classes: list[type[Exception]] = []
    for i, parent in enumerate(parents):
        base = {-2: NotReady, -1: Exception}.get(parent) or classes[parent]
        classes.append(type(f"E{i}", (base,), {"__module__": module}))
        setattr(mod, f"E{i}", classes[-1])
        setattr(twin, f"E{i}", type(f"E{i}", (Exception,), {"__module__": twin.__name__}))
    named = {f"A{i}": classes[target % len(classes)] for i, target in enumerate(aliases)}
    for name, cls in named.items():
        setattr(mod, name, cls)
    mod.value = 3  # type: ignore[attr-defined]
    sys.modules[module], sys.modules[twin.__name__] = mod, twin
    try:
        twins = tuple(getattr(twin, f"E{i}") for i in range(len(parents)))
        yield Hierarchy(module, tuple(classes), named, twins)
    finally:
        del sys.modules[module], sys.modules[twin.__name__]


def _parents() -> st.SearchStrategy[list[int]]:
    return st.integers(1, 8).flatmap(
        lambda n: st.tuples(*(st.integers(-2, i - 1) for i in range(n))).map(list)
    )


def _tried(
    raised: type[Exception], names: list[str]
) -> tuple[str, tuple[Attempt, ...]] | Exception:
    """Run an init through ``retrying`` (1 retry, no delay) whose first attempt raises ``raised``:
    what it returned and its attempts, or what it raised."""
    calls = iter([raised("first"), None])
    retry = Retry(retries=1, delay=0.0, on=tuple(names))

    def attempt() -> tuple[str, InitContext]:
        error = next(calls)
        if error is not None:
            raise error
        return "ok", cast("InitContext", None)

    try:
        value, _, attempts = retrying("db", 1, retry, retry_types(names), attempt)
    except Exception as exc:
        return exc
    return value, attempts


@settings(max_examples=150, deadline=None)
@given(parents=_parents(), aliases=st.lists(st.integers(0, 7), max_size=3), data=st.data())
def test_retry_on_resolves_each_name_to_the_type_its_module_binds(
    parents: list[int], aliases: list[int], data: st.DataObject
) -> None:
    with hierarchy(parents, aliases) as h:
        pool = [f"E{i}" for i in range(len(parents))] + list(h.aliases)
        names = data.draw(st.lists(st.sampled_from(pool), max_size=5))
        dotted = [f"{h.module}.{n}" for n in names]
        # NotReady first, then each name's type in order, repeats and aliases included
        assert retry_types(dotted) == (NotReady, *map(h.named, names))
        # an entry that is no exception type, or names nothing, is refused by its index
        bad = data.draw(st.sampled_from([f"{h.module}.value", f"{h.module}.Nope", "nosuch.E0"]))
        at = data.draw(st.integers(0, len(dotted)))
        with pytest.raises(ConfigError) as info:
            retry_types([*dotted[:at], bad, *dotted[at:]], where="plugins.db.retry_on")
        assert info.value.key == f"plugins.db.retry_on[{at}]"
        assert str(info.value).startswith(f"plugins.db.retry_on[{at}]: ")


@settings(max_examples=150, deadline=None)
@given(parents=_parents(), aliases=st.lists(st.integers(0, 7), max_size=3), data=st.data())
def test_an_exception_is_retried_when_its_mro_holds_not_ready_or_a_named_type(
    parents: list[int], aliases: list[int], data: st.DataObject
) -> None:
    with hierarchy(parents, aliases) as h:
        pool = [f"E{i}" for i in range(len(parents))] + list(h.aliases)
        names = data.draw(st.lists(st.sampled_from(pool), max_size=4))
        named = {h.named(n) for n in names}
        raised = data.draw(st.sampled_from([*h.classes, *h.twins]))
        got = _tried(raised, [f"{h.module}.{n}" for n in names])
        # by identity along the MRO: a subclass of a named type is retried, a base class or a
        # class that merely has a named type's name (a twin) is not
        if any(c is NotReady or c in named for c in raised.__mro__):
            assert not isinstance(got, Exception), got
            value, attempts = got
            assert value == "ok"
            assert [(a.number, a.reason) for a in attempts] == [
                (1, f"{raised.__name__}: first"),
                (2, None),
            ]
        else:  # not retryable on the first attempt: it goes on as it is
            assert type(got) is raised


@settings(max_examples=100, deadline=None)
@given(parents=_parents(), data=st.data())
def test_a_later_attempt_that_raises_what_is_not_retried_fails_the_plugin(
    parents: list[int], data: st.DataObject
) -> None:
    """After a retry, any exception ends the init: retried ones while retries are left."""
    with hierarchy(parents, []) as h:
        names = data.draw(st.lists(st.sampled_from([f"E{i}" for i in range(len(parents))])))
        named = (NotReady, *(h.named(n) for n in names))
        second = data.draw(st.sampled_from([*h.classes, *h.twins]))
        calls = iter([NotReady("first"), second("second")])

        def attempt() -> tuple[str, InitContext]:
            raise next(calls)

        retry = Retry(retries=1, delay=0.0, on=tuple(f"{h.module}.{n}" for n in names))
        with pytest.raises(HookError) as info:
            retrying("db", 7, retry, retry_types(retry.on), attempt)
        retried = issubclass(second, named)
        what = "was not ready after 2 attempts" if retried else "failed on attempt 2"
        assert str(info.value) == f"plugin 'db' {what}: {second.__name__}: second"
        assert type(info.value.__cause__) is second
        assert [a.number for a in info.value.attempts] == [1, 2]
