"""A worker's exception in the parent: pickled alone (never dill), else a stand-in that says what.

An exception crosses by pickle, like a value. One that cannot (it holds a lock or a file, its
``__init__`` takes an argument of its own, its class lives where only the worker can import it)
arrives as a ``RemoteError`` with the original type's name, its message and its traceback: the
``HookError``, ``Failure.message``, the summary and ``--json`` read as they would for the original.
"""

from __future__ import annotations

import json
import pickle
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli, write_config

import initgraph
from initgraph import HookError, Scheduler
from initgraph._core.messages import dump_error, load_error
from initgraph._errors import RemoteError, RemoteTraceback, remote_error

WAIT = 30


class NeedsTwo(Exception):
    """An ``__init__`` with a required argument of its own: pickles, but cannot be rebuilt."""

    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"{what}: {why}")
        self.why = why


class Holding(Exception):
    """Holds whatever it is given: a lock or an open file will not pickle."""

    def __init__(self, message: str, held: Any = None) -> None:
        super().__init__(message)
        self.held = held


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no words")


def raises_needs_two(data: Any, cookie: int) -> None:
    raise NeedsTwo("database", "down")


def raises_holding_a_lock(data: Any, cookie: int) -> None:
    raise Holding("locked out", threading.Lock())


def raises_holding_a_file(path: str, cookie: int) -> None:
    report = open(path, "w")  # noqa: SIM115 - the point: an open file cannot be sent
    report.write("written by the initcall")
    report.flush()
    raise Holding("with a file", report)


def raises_with_a_lock_in_args(data: Any, cookie: int) -> None:
    raise ValueError("bad", threading.Lock())


def raises_a_local_class(data: Any, cookie: int) -> None:
    class Local(Exception):
        pass

    raise Local("defined in a function")


def raises_unprintable(data: Any, cookie: int) -> None:
    raise Unprintable


def raises_from_a_hidden_module(folder: str, cookie: int) -> None:
    """Raise an exception whose class only this worker can import."""
    sys.path.insert(0, folder)
    import hidden_errors  # type: ignore[import-not-found]

    hidden_errors.fail()


def raises_plainly(data: Any, cookie: int) -> None:
    raise KeyError("url")


HIDDEN = "class Hidden(Exception):\n    pass\n\ndef fail():\n    raise Hidden('from hidden')\n"


def qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# -- the scheduler ---------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_an_exception_that_cannot_cross_arrives_as_a_stand_in(tmp_path: Path, method: str) -> None:
    folder = tmp_path / "only_the_worker"
    folder.mkdir()
    (folder / "hidden_errors.py").write_text(HIDDEN)
    report = tmp_path / "report.txt"
    local = f"{__name__}.raises_a_local_class.<locals>.Local"
    cases = [
        # func, data, the type's qualified name, the message
        (raises_needs_two, None, qualified(NeedsTwo), "database: down"),
        (raises_holding_a_lock, None, qualified(Holding), "locked out"),
        (raises_holding_a_file, str(report), qualified(Holding), "with a file"),
        (raises_with_a_lock_in_args, None, "ValueError", "('bad', <unlocked _thread.lock"),
        (raises_a_local_class, None, local, "defined in a function"),
        (raises_unprintable, None, qualified(Unprintable), "<exception str() failed>"),
        (raises_from_a_hidden_module, str(folder), "hidden_errors.Hidden", "from hidden"),
    ]
    errors = []
    with Scheduler(1, start_method=method) as sched:
        for func, data, _, _ in cases:
            cookie = sched.schedule(func, data)
            with pytest.raises(HookError) as info:
                sched.result(cookie, timeout=WAIT)
            errors.append((cookie, info.value))
    assert "hidden_errors" not in sys.modules
    assert report.read_text() == "written by the initcall"  # not re-opened here in mode "w"
    for (func, _, type_name, text), (cookie, err) in zip(cases, errors, strict=True):
        cause = err.__cause__
        assert isinstance(cause, RemoteError), (func, cause)
        assert cause.type_name == type_name
        name = type_name.rpartition(".")[2]
        assert type(cause).__name__ == name
        assert str(cause).startswith(text)
        assert str(err).startswith(f"initcall {cookie} {func.__name__!r} raised {name}: {text}")
        # the traceback the worker formatted: where it was raised, and its own last line
        assert f"in {func.__name__}\n" in cause.tb
        assert isinstance(cause.__cause__, RemoteTraceback)
        assert cause.__cause__.tb == cause.tb


def test_an_exception_that_crosses_is_the_original() -> None:
    with Scheduler(1) as sched:
        cookie = sched.schedule(raises_plainly)
        with pytest.raises(HookError) as info:
            sched.result(cookie, timeout=WAIT)
    cause = info.value.__cause__
    assert type(cause) is KeyError
    assert cause.args == ("url",)
    assert str(info.value) == f"initcall {cookie} 'raises_plainly' raised KeyError: 'url'"
    assert isinstance(cause.__cause__, RemoteTraceback)


def test_dump_error_uses_pickle_alone_and_checks_it_comes_back(tmp_path: Path) -> None:
    data, info = dump_error(KeyError("url"))
    assert data is not None
    assert type(load_error(data, info, "tb")) is KeyError
    with open(tmp_path / "f", "w") as held:
        data, info = dump_error(Holding("x", held))
    assert data is None  # dill would have sent it, to be re-opened in mode "w"
    assert (info.module, info.qualname, info.text) == (__name__, "Holding", "x")
    data, info = dump_error(NeedsTwo("a", "b"))
    assert data is None  # pickles, but NeedsTwo(*args) is a TypeError
    stand_in = load_error(data, info, "the traceback")
    assert isinstance(stand_in, RemoteError)
    assert (stand_in.type_name, str(stand_in), stand_in.tb) == (
        qualified(NeedsTwo),
        "a: b",
        "the traceback",
    )
    # bytes that do not load here (a class this process cannot import) give the stand-in too
    broken = pickle.dumps(KeyError("k")).replace(b"KeyError", b"KeyErrXr")
    assert type(load_error(broken, info, "")) is type(stand_in)


def test_a_stand_in_pickles_and_stays_itself() -> None:
    err = remote_error("somewhere.only", "Outer.Inner", "what happened", "tb text")
    assert isinstance(err, RemoteError)
    assert not isinstance(err, initgraph.InitgraphError)  # not raised by initgraph: a cause
    assert (type(err).__name__, type(err).__qualname__, type(err).__module__) == (
        "Inner",
        "Outer.Inner",
        "somewhere.only",
    )
    assert err.type_name == "somewhere.only.Outer.Inner"
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is type(err)  # one class per remote type, not one per instance
    assert (str(again), again.tb, again.type_name) == ("what happened", "tb text", err.type_name)
    assert remote_error("builtins", "ValueError", "v").type_name == "ValueError"


# -- a boot and the command line -------------------------------------------------------------------
PLUGIN = """\
import sys

from initgraph import hookimpl


class NeedsTwo(Exception):
    def __init__(self, what, why):
        super().__init__(f"{what}: {why}")


@hookimpl
def initgraph_init(ctx):
    if ctx.config.get("hidden"):
        sys.path.insert(0, ctx.config["hidden"])
        import hidden_errors

        hidden_errors.fail()
    raise NeedsTwo("database", "down")
"""


def test_a_boot_reports_a_stand_in_like_any_failure(tmp_path: Path) -> None:
    (tmp_path / "needs_two_plugin.py").write_text(PLUGIN)
    config = {
        "initgraph": {"workers": 1, "paths": [str(tmp_path)], "on_error": "continue"},
        "plugins": {"db": {"module": "needs_two_plugin"}},
    }
    try:
        boot = initgraph.boot(config, check=False)
    finally:
        sys.modules.pop("needs_two_plugin", None)
    failure = boot.failures["db"]
    assert failure.kind == "error"
    assert failure.message == "initcall 1 'db' raised NeedsTwo: database: down"
    cause = failure.error.__cause__
    assert isinstance(cause, RemoteError)
    assert cause.type_name == "needs_two_plugin.NeedsTwo"
    assert boot.summary() == f"boot failed: plugin 'db': {failure.message}"


def test_run_and_json_show_the_type_and_message(cli: Cli) -> None:
    hidden = cli.cwd / "only_the_worker"
    hidden.mkdir()
    (hidden / "hidden_errors.py").write_text(HIDDEN)
    (cli.cwd / "needs_two_plugin.py").write_text(PLUGIN)
    write_config(
        cli.cwd,
        f"""\
        [initgraph]
        workers = 1
        on_error = "continue"
        [plugins.db]
        module = "needs_two_plugin"
        [plugins.hidden]
        module = "needs_two_plugin"
        config = {{ hidden = "{hidden}" }}
        """,
    )
    done = cli.run("run")
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert "  db: failed: initcall 1 'db' raised NeedsTwo: database: down" in lines
    assert "  hidden: failed: initcall 2 'hidden' raised Hidden: from hidden" in lines
    done = cli.run("run", "--json")
    errors = {p["name"]: p["error"] for p in json.loads(done.stdout)["plugins"]}
    assert errors == {
        "db": "initcall 1 'db' raised NeedsTwo: database: down",
        "hidden": "initcall 2 'hidden' raised Hidden: from hidden",
    }
