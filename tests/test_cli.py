"""End-to-end tests of the ``initgraph`` command line.

Most tests run ``python -m initgraph`` in a subprocess, as a user would, on small plugin modules
written into ``tmp_path``; quick ones call ``main(argv)`` in-process. Every child the CLI starts
carries ``INITGRAPH_TEST_MARKER=<uuid>`` in its environment, so a test can tell that no process of
the boot outlived the command, whatever became of its parent.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest
from conftest import ROOT, Cli, needs_main_thread, write_config, write_plugin

from initgraph._boot import run as _boot
from initgraph._cli.main import main
from initgraph._cli.signals import Raise, Terminated, forks, signals_raise

EXAMPLE = ROOT / "init.toml"
ERROR_LINE = re.compile(r"^initgraph: error: \S.*$")


@pytest.fixture
def repo_cli() -> Cli:
    return Cli(ROOT)


def assert_one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert ERROR_LINE.match(lines[0]), stderr
    return lines[0]


# -- usage --------------------------------------------------------------------------------------


def test_help_and_version_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "exit codes: 0 success, 1 a plugin failed" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == "initgraph 0.1.0\n"
    assert main(["run", "--help"]) == 0
    assert "--compare" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: COMMAND (see 'initgraph --help')"),
        (["boot"], "argument COMMAND: invalid choice: 'boot'"),
        (["run", "--workers", "0"], "argument --workers: expected a positive integer or 'auto'"),
        (["run", "--workers", "many"], "argument --workers: expected a positive integer or"),
        (["run", "--on-error", "ignore"], "argument --on-error: invalid choice: 'ignore'"),
        (["run", "--start-method", "thread"], "argument --start-method: invalid choice"),
        (["check", "--compare"], "unrecognized arguments: --compare"),
        (["run", "a.toml", "b.toml"], "unrecognized arguments: b.toml"),
    ],
)
def test_usage_error_is_one_line_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert message in assert_one_error_line(err)


def test_module_and_console_script_agree(cli: Cli) -> None:
    script = Path(sys.executable).with_name("initgraph")
    if not script.exists():
        pytest.skip("the console script is not installed next to this interpreter")
    by_module = cli.run("--version")
    by_script = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert (by_module.returncode, by_module.stdout) == (0, "initgraph 0.1.0\n")
    assert (by_script.returncode, by_script.stdout) == (0, "initgraph 0.1.0\n")


@pytest.mark.slow
def test_importing_the_cli_does_not_import_rich() -> None:
    code = "import sys, initgraph._cli.main; print('rich' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout == "False\n"


# -- configuration mistakes: exit 2, one line, no traceback ------------------------------------


def _missing_file(folder: Path) -> list[str]:
    del folder  # left empty: the default init.toml is not there
    return []


def _bad_toml(folder: Path) -> list[str]:
    write_config(folder, "[initgraph]\nworkers = \n")
    return ["init.toml"]


def _unknown_key(folder: Path) -> list[str]:
    write_plugin(folder, "a", "ok")
    write_config(folder, '[plugins.a]\nmodule = "a"\nrequiers = []\n')
    return ["init.toml"]


def _cycle(folder: Path) -> list[str]:
    write_plugin(folder, "a", "ok")
    write_plugin(folder, "b", "ok")
    write_config(
        folder,
        """\
        [plugins.a]
        module = "a"
        requires = ["b"]
        [plugins.b]
        module = "b"
        requires = ["a"]
        """,
    )
    return ["init.toml"]


def _missing_module(folder: Path) -> list[str]:
    write_config(folder, '[plugins.a]\nmodule = "no_such_module"\n')
    return ["init.toml"]


def _wrong_type(folder: Path) -> list[str]:
    write_config(folder, '[initgraph]\nworkers = "many"\n')
    return ["init.toml"]


def _unknown_dependency(folder: Path) -> list[str]:
    write_plugin(folder, "settings", "ok")
    write_plugin(folder, "a", "ok")
    write_config(
        folder,
        '[plugins.settings]\nmodule = "settings"\n[plugins.a]\nmodule = "a"\n'
        'requires = ["setings"]\n',
    )
    return ["init.toml"]


# Each mistake with the exact line it must give (after "initgraph: error: ").
CONFIG_MISTAKES = {
    "missing file": (_missing_file, "init.toml: no such file; pass the path of an init.toml"),
    "toml syntax": (_bad_toml, "init.toml:2:11: invalid TOML: invalid value"),
    "unknown key": (
        _unknown_key,
        "init.toml: plugins.a.requiers: unknown key; did you mean 'requires'?",
    ),
    "cycle": (_cycle, "init.toml: plugins.a.requires: dependency cycle: a -> b -> a"),
    "missing module": (
        _missing_module,
        "init.toml: plugins.a.module: no module named 'no_such_module'; check the name and "
        "[initgraph] paths",
    ),
    "wrong type": (
        _wrong_type,
        "init.toml: initgraph.workers: expected a positive integer or \"auto\", got 'many' (str)",
    ),
    "unknown dependency": (
        _unknown_dependency,
        "init.toml: plugins.a.requires: unknown plugin 'setings'; did you mean 'settings'?",
    ),
}


@pytest.mark.parametrize("command", ["run", "check"])
@pytest.mark.parametrize("mistake", list(CONFIG_MISTAKES))
def test_config_mistake_is_one_line_exit_2(cli: Cli, command: str, mistake: str) -> None:
    make, message = CONFIG_MISTAKES[mistake]
    done = cli.run(command, *make(cli.cwd))
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert assert_one_error_line(done.stderr) == f"initgraph: error: {message}"


def test_plugin_error_is_exit_2(cli: Cli) -> None:
    (cli.cwd / "a.py").write_text(
        "from initgraph import hookimpl\n\n@hookimpl\ndef initgraph_innit(ctx):\n    return 1\n"
    )
    write_config(cli.cwd, '[plugins.a]\nmodule = "a"\n')
    done = cli.run("run")
    assert done.returncode == 2
    line = assert_one_error_line(done.stderr)
    assert line == (
        "initgraph: error: plugin 'a' implements unknown hook 'initgraph_innit'; "
        "did you mean 'initgraph_init'?"
    )


def test_check_finds_what_a_run_would_refuse(cli: Cli) -> None:
    """Each mistake `run` would refuse after loading plugins, `check` refuses: exit 2, one line."""
    single = "from initgraph import hookimpl\ninitgraph_single_instance = True\n"
    single += "\n@hookimpl\ndef initgraph_init(ctx):\n    pass\n"
    (cli.cwd / "single.py").write_text(single)
    (cli.cwd / "typo.py").write_text(
        "from initgraph import hookimpl\n\n@hookimpl\ndef initgraph_innit(ctx):\n    pass\n"
    )
    (cli.cwd / "bare.py").write_text("def initgraph_init(ctx):\n    pass\n")
    (cli.cwd / "empty.py").write_text("VALUE = 1\n")
    cases = {
        '[plugins.one]\nmodule = "single"\n[plugins.two]\nmodule = "single"\n': (
            "plugin 'two': module single allows only one instance "
            "(initgraph_single_instance = True) and already backs plugin 'one'; remove one of them"
        ),
        '[plugins.a]\nmodule = "typo"\n': (
            "plugin 'a' implements unknown hook 'initgraph_innit'; did you mean 'initgraph_init'?"
        ),
        '[plugins.a]\nmodule = "bare"\n': (
            "plugin 'a': initgraph_init in module bare is not marked @initgraph.hookimpl; "
            "add the decorator"
        ),
        '[plugins.a]\nmodule = "empty"\n': (
            "plugin 'a': module empty has no hook implementation; mark its hooks with "
            "@initgraph.hookimpl"
        ),
    }
    for text, message in cases.items():
        write_config(cli.cwd, text)
        done = cli.run("check")
        assert (done.returncode, done.stdout) == (2, ""), done.stderr
        assert assert_one_error_line(done.stderr) == f"initgraph: error: {message}"


def test_check_and_run_print_each_skip_with_its_reason(cli: Cli) -> None:
    write_plugin(cli.cwd, "a", "ok")
    write_config(
        cli.cwd,
        """\
        [plugins.a]
        module = "a"
        [plugins.off]
        module = "a"
        enabled = false
        [plugins.needs_off]
        module = "a"
        requires = ["off"]
        [plugins.windows]
        module = "a"
        when = {platform = "win32"}
        """,
    )
    done = cli.run("check", "--workers", "1")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines()[-4:] == [
        "init.toml: ok, 1 plugin in 1 domain, 3 skipped; 1 worker, start method "
        + _boot.plan(cli.cwd / "init.toml").start_method
        + ", on_error abort",
        "  off: skipped: disabled in init.toml",
        "  needs_off: skipped: it requires 'off', which is disabled",
        f"  windows: skipped: when.platform 'win32' does not match {sys.platform!r}",
    ]
    done = cli.run("run", "--enable", "off", "--disable", "a", "--json")
    assert (done.returncode, done.stderr) == (0, "")
    data = json.loads(done.stdout)
    assert [(p["name"], p["status"]) for p in data["plugins"]] == [
        ("off", "ok"),
        ("needs_off", "ok"),
    ]
    assert data["skipped"] == [
        {"name": "a", "status": "skipped", "reason": "disabled for this run"},
        {
            "name": "windows",
            "status": "skipped",
            "reason": f"when.platform 'win32' does not match {sys.platform!r}",
        },
    ]
    done = cli.run("run", "--disable", "a")
    assert (done.returncode, done.stderr) == (0, "")
    assert "  a: skipped: disabled for this run" in done.stdout.splitlines()


def test_an_unknown_when_key_is_exit_2(cli: Cli) -> None:
    write_plugin(cli.cwd, "a", "ok")
    write_config(cli.cwd, '[plugins.a]\nmodule = "a"\nwhen = {evn = "HOME"}\n')
    done = cli.run("check")
    assert done.returncode == 2
    assert assert_one_error_line(done.stderr) == (
        "initgraph: error: init.toml: plugins.a.when.evn: unknown key; did you mean 'env'?"
    )


LOGGING_PLUGIN = """\
from initgraph import hookimpl

@hookimpl
def initgraph_init(ctx):
    ctx.log.debug("debug from %s", ctx.name)
    ctx.log.info("info from %s", ctx.name)

@hookimpl
def initgraph_commit(ctx, result):
    ctx.log.warning("committed %s", ctx.name)
"""


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_log_level_shows_the_plugins_records_from_workers(cli: Cli, method: str) -> None:
    (cli.cwd / "talk.py").write_text(LOGGING_PLUGIN)
    write_config(
        cli.cwd,
        '[plugins.pool]\nmodule = "talk"\n[plugins.main]\nmodule = "talk"\nwhere = "main"\n',
    )
    done = cli.run("run", "--start-method", method, "--log-level", "info", "--quiet")
    assert done.returncode == 0, done.stderr
    assert sorted(done.stderr.splitlines()) == [
        "INFO initgraph.plugin.main: info from main",
        "INFO initgraph.plugin.pool: info from pool",
        "WARNING initgraph.plugin.main: committed main",
        "WARNING initgraph.plugin.pool: committed pool",
    ]
    # Without it, Python's default: warnings and errors only, the message alone.
    done = cli.run("run", "--start-method", method, "--quiet")
    assert done.returncode == 0
    assert sorted(done.stderr.splitlines()) == ["committed main", "committed pool"]


def test_log_level_must_be_a_level(cli: Cli) -> None:
    done = cli.run("run", "--log-level", "loud")
    assert done.returncode == 2
    assert assert_one_error_line(done.stderr) == (
        "initgraph: error: argument --log-level: invalid choice: 'LOUD' (choose from 'DEBUG', "
        "'INFO', 'WARNING', 'ERROR', 'CRITICAL') (see 'initgraph run --help')"
    )


def test_verbose_adds_the_traceback(cli: Cli) -> None:
    _unknown_key(cli.cwd)
    done = cli.run("run", "--verbose")
    assert done.returncode == 2
    assert done.stderr.startswith("Traceback (most recent call last):")
    assert ERROR_LINE.match(done.stderr.splitlines()[-1])
    assert "ConfigError" in done.stderr


def test_internal_error_is_exit_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("oops")

    monkeypatch.setattr(_boot, "check", broken)
    assert main(["check", str(EXAMPLE)]) == 3
    line = assert_one_error_line(capsys.readouterr().err)
    assert line == (
        "initgraph: error: internal error, a bug in initgraph: RuntimeError: oops "
        "(rerun with --verbose for the traceback, and please report it)"
    )
    assert main(["check", str(EXAMPLE), "--verbose"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert "RuntimeError: oops" in err


def test_closed_stdout_is_exit_141_without_a_traceback(repo_cli: Cli) -> None:
    read, write = os.pipe()
    os.close(read)  # every write to stdout now fails with EPIPE
    try:
        done = subprocess.run(
            repo_cli.argv("check", "init.toml"),
            cwd=ROOT,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (141, "")


# -- check ----------------------------------------------------------------------------------------


def _rows(stdout: str) -> list[list[str]]:
    """The table's rows below its header, split on runs of two or more spaces."""
    lines = stdout.splitlines()
    assert lines[0].split() == ["cookie", "plugin", "domain", "requires", "where"]
    return [re.split(r"\s{2,}", line.strip()) for line in lines[1:-1]]


def test_check_prints_the_example_plan_in_cookie_order(repo_cli: Cli) -> None:
    done = repo_cli.run("check", "init.toml")
    assert (done.returncode, done.stderr) == (0, "")
    plan = _boot.plan(EXAMPLE)
    expected = [
        [str(p.cookie), p.name, p.domain, ", ".join(p.requires) or "-", p.where]
        for p in plan.plugins
    ]
    assert _rows(done.stdout) == expected
    assert [row[0] for row in expected] == [str(i) for i in range(1, len(plan.plugins) + 1)]
    assert done.stdout.splitlines()[-1] == (
        f"init.toml: ok, {len(plan.plugins)} plugins in 2 domains; {plan.workers} worker"
        f"{'s' if plan.workers != 1 else ''}, start method {plan.start_method}, on_error abort"
    )


def test_check_orders_by_dependency_then_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(
        tmp_path,
        """\
        [initgraph]
        workers = 3
        start_method = "spawn"
        [domains.aux]
        exclusive = true
        [plugins.web]
        module = "igtest_check_order"
        requires = ["db"]
        [plugins.db]
        module = "igtest_check_order"
        [plugins.log]
        module = "igtest_check_order"
        domain = "aux"
        """,
    )
    (tmp_path / "igtest_check_order.py").write_text(
        "from initgraph import hookimpl\n\n@hookimpl\ndef initgraph_init(ctx):\n    pass\n"
    )
    assert main(["check", str(path), "--on-error", "continue"]) == 0
    out = capsys.readouterr().out
    assert _rows(out) == [
        ["1", "db", "default", "-", "pool"],
        ["2", "web", "default", "db", "pool"],
        ["3", "log", "aux", "-", "pool"],
    ]
    assert out.splitlines()[-1] == (
        f"{path}: ok, 3 plugins in 2 domains; 3 workers, start method spawn, on_error continue"
    )


def test_check_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(EXAMPLE), "--json", "--workers", "3"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"config", "workers", "start_method", "on_error", "plugins", "skipped"}
    assert data["skipped"] == []
    assert data["config"] == str(EXAMPLE)
    assert data["workers"] == 3
    assert [p["cookie"] for p in data["plugins"]] == list(range(1, 13))
    assert data["plugins"][0] == {
        "cookie": 1,
        "name": "settings",
        "domain": "default",
        "requires": [],
        "where": "pool",
        "optional": False,
        "timeout": 60.0,
        "source": "module plugins.settings",
    }


# -- run ------------------------------------------------------------------------------------------

SUMMARY_HEADER = ["cookie", "plugin", "domain", "where", "status", "init", "ms", "commit", "ms"]
NUMBER = r"\d+\.\d"


def test_run_the_example_app(repo_cli: Cli) -> None:
    done = repo_cli.run("run", "init.toml", "--workers", "2")
    assert (done.returncode, done.stderr) == (0, "")
    lines = done.stdout.splitlines()
    # database waits for its server: retried, it has a note, and the table a note column.
    assert lines[0].split() == [*SUMMARY_HEADER, "note"]
    plan = _boot.plan(EXAMPLE)
    n = len(plan.plugins)
    rows = [line.split() for line in lines[1 : n + 1]]
    summary = lines[n + 1 :]
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [
        (str(p.cookie), p.name, p.domain, p.where, "ok") for p in plan.plugins
    ]
    assert all(re.fullmatch(NUMBER, r[5]) and re.fullmatch(NUMBER, r[6]) for r in rows)
    notes = {r[1]: " ".join(r[7:]) for r in rows}
    assert re.fullmatch(r"\d+ attempts", notes.pop("database"))  # at least 2: the first starts it
    assert set(notes.values()) == {""}
    assert re.fullmatch(rf"booted {n} plugins in {NUMBER} ms with 2 workers \(\w+\)", summary[0])
    step = r"[a-z_]+( commit)?"
    assert re.fullmatch(
        rf"critical chain {NUMBER} ms: {step}( -> {step})* \({NUMBER} ms moving data, {NUMBER} ms "
        rf"starting and stopping the pool, {NUMBER} ms between steps\)",
        summary[1],
    )
    assert re.fullmatch(
        rf"parallelism \d+\.\d\dx: {NUMBER} ms of init work ran in {NUMBER} ms "
        rf"\(--compare measures the speed-up\)",
        summary[2],
    )
    # The shutdown hooks of cache, database and web ran when the run closed the boot, last
    # committed first: which of them committed last depends on the machine.
    shutdown = re.fullmatch(
        rf"shut down 3 plugins in {NUMBER} ms, last committed first: "
        rf"(\w+) {NUMBER}, (\w+) {NUMBER}, (\w+) {NUMBER}",
        summary[3],
    )
    assert shutdown is not None, summary[3]
    assert sorted(shutdown.group(1, 2, 3)) == ["cache", "database", "web"]
    assert len(summary) == 4


def test_run_json_is_one_object_with_the_registry_log(repo_cli: Cli) -> None:
    done = repo_cli.run("run", "init.toml", "--json", "--workers", "2")
    assert (done.returncode, done.stderr) == (0, "")
    data = json.loads(done.stdout)
    assert set(data) == {
        "config",
        "ok",
        "wall_ms",
        "init_ms_total",
        "parallelism",
        "workers",
        "start_method",
        "on_error",
        "plugins",
        "skipped",
        "registry",
        "shutdown_ms",
    }
    assert data["ok"] is True
    assert data["workers"] == 2
    assert data["wall_ms"] > 0
    assert [p["status"] for p in data["plugins"]] == ["ok"] * len(_boot.plan(EXAMPLE).plugins)
    assert all(p["error"] is None and p["init_ms"] >= 0 for p in data["plugins"])
    keys = [entry["key"] for entry in data["registry"]]
    assert len(keys) == len(set(keys))
    assert {"app.settings", "corpus.paths", "search.index", "stats.summary"} <= set(keys)
    for domain in ("default", "http"):
        cookies = [e["cookie"] for e in data["registry"] if e["domain"] == domain]
        assert cookies == sorted(cookies), f"{domain} published out of cookie order"


def test_run_json_keeps_plugin_output_off_stdout(cli: Cli) -> None:
    write_plugin(cli.cwd, "in_pool", "print")
    write_plugin(cli.cwd, "in_main", "print")
    write_config(
        cli.cwd,
        """\
        [initgraph]
        workers = 1
        [plugins.in_pool]
        module = "in_pool"
        [plugins.in_main]
        module = "in_main"
        where = "main"
        """,
    )
    done = cli.run("run", "--json")
    assert done.returncode == 0
    assert json.loads(done.stdout)["ok"] is True
    assert sorted(done.stderr.splitlines()) == ["noise from in_main", "noise from in_pool"]


def _failing_app(folder: Path) -> None:
    for name, behaviour in [
        ("good", "ok"),
        ("bad", "raise"),
        ("after_bad", "ok"),
        ("crash", "crash"),
        ("slow", "block"),
        ("extra", "raise"),
    ]:
        write_plugin(folder, name, behaviour)
    os.mkfifo(folder / "fifo")
    write_config(
        folder,
        f"""\
        [initgraph]
        workers = 2
        on_error = "continue"
        [plugins.good]
        module = "good"
        [plugins.bad]
        module = "bad"
        [plugins.after_bad]
        module = "after_bad"
        requires = ["bad"]
        [plugins.crash]
        module = "crash"
        [plugins.slow]
        module = "slow"
        timeout = 0.5
        config = {{ fifo = "{folder / "fifo"}", marker = "{folder / "marker"}" }}
        [plugins.extra]
        module = "extra"
        optional = true
        """,
    )


STATUSES = [
    ("good", "ok"),
    ("bad", "failed"),
    ("after_bad", "skipped"),
    ("crash", "crashed"),
    ("slow", "timeout"),
    ("extra", "failed"),
]


def test_run_reports_every_kind_of_failure(cli: Cli) -> None:
    _failing_app(cli.cwd)
    done = cli.run("run")
    assert done.returncode == 1
    line = assert_one_error_line(done.stderr)
    assert line.startswith("initgraph: error: boot failed: plugin 'bad': ")
    lines = done.stdout.splitlines()
    assert [(r.split()[1], r.split()[4]) for r in lines[1:7]] == STATUSES
    assert re.fullmatch(rf"boot failed: 6 plugins in {NUMBER} ms with 2 workers \(\w+\)", lines[7])
    # One line per plugin that did not commit, in cookie order: "  name: status: why".
    failures = [
        r"  bad: failed: .*ValueError: boom",
        r"  after_bad: skipped: .*'bad'.*",
        r"  crash: crashed: .*EXIT\(3\).*",
        r"  slow: timeout: .*timeout of 0\.5 s.*",
        r"  extra \(optional\): failed: .*ValueError: boom",
    ]
    assert len(lines) == 8 + len(failures)
    for pattern, text in zip(failures, lines[8:], strict=True):
        assert re.fullmatch(pattern, text)


def test_run_json_reports_every_kind_of_failure(cli: Cli) -> None:
    _failing_app(cli.cwd)
    done = cli.run("run", "--json")
    assert done.returncode == 1
    assert_one_error_line(done.stderr)
    data = json.loads(done.stdout)
    assert data["ok"] is False
    assert [(p["name"], p["status"]) for p in data["plugins"]] == STATUSES
    errors = {p["name"]: p["error"] for p in data["plugins"]}
    assert errors["good"] is None
    assert errors["bad"].endswith("ValueError: boom")
    assert "ran past its timeout of 0.5 s" in errors["slow"]


def test_run_optional_failure_exits_0(cli: Cli) -> None:
    write_plugin(cli.cwd, "good", "ok")
    write_plugin(cli.cwd, "extra", "raise")
    write_config(
        cli.cwd,
        """\
        [initgraph]
        workers = 1
        [plugins.good]
        module = "good"
        [plugins.extra]
        module = "extra"
        optional = true
        """,
    )
    done = cli.run("run")
    assert (done.returncode, done.stderr) == (0, "")
    last = done.stdout.splitlines()[-1]
    assert re.fullmatch(r"  extra \(optional\): failed: .*ValueError: boom", last)


def _two_plugins(folder: Path) -> None:
    write_plugin(folder, "a", "ok")
    write_plugin(folder, "b", "ok")
    write_config(folder, '[plugins.a]\nmodule = "a"\n[plugins.b]\nmodule = "b"\n')


def test_quiet_prints_nothing_on_success_and_one_line_on_failure(cli: Cli) -> None:
    _two_plugins(cli.cwd)
    done = cli.run("run", "--quiet", "--workers", "2", "--compare")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    write_plugin(cli.cwd, "b", "raise")
    done = cli.run("run", "-q")
    assert (done.returncode, done.stdout) == (1, "")
    line = assert_one_error_line(done.stderr)
    assert line.startswith("initgraph: error: boot failed: plugin 'b'")


BASELINE = "running the plugins one after another in this process"


@pytest.mark.parametrize(
    ("wall", "baseline", "text"),
    [
        (0.5, 0.9, f"1.80x faster than {BASELINE} (500.0 ms vs 900.0 ms)"),
        (0.5, 0.5, f"1.00x faster than {BASELINE} (500.0 ms vs 500.0 ms)"),
        (0.5, 0.4, f"0.80x: 1.25x slower than {BASELINE} (500.0 ms vs 400.0 ms)"),
    ],
)
def test_speed_up_wording_either_way(wall: float, baseline: float, text: str) -> None:
    from initgraph._cli.render import speed_up_text

    assert speed_up_text(wall, baseline) == text


def test_compare_measures_the_speed_up_over_running_in_process(cli: Cli) -> None:
    _two_plugins(cli.cwd)
    done = cli.run("run", "--workers", "2", "--compare")
    assert (done.returncode, done.stderr) == (0, "")
    assert re.fullmatch(
        rf"(\d+\.\d\dx faster|\d+\.\d\dx: \d+\.\d\dx slower) than {BASELINE} "
        rf"\({NUMBER} ms vs {NUMBER} ms\)",
        done.stdout.splitlines()[-1],
    )
    data = json.loads(cli.run("run", "--workers", "2", "--compare", "--json").stdout)
    assert set(data["compare"]) == {"ok", "in_process_wall_ms", "speedup"}
    assert data["compare"]["ok"] is True


def test_in_process_run_calls_each_init_then_its_commit_in_plan_order(tmp_path: Path) -> None:
    from initgraph._boot.inprocess import run_in_process

    hooks = """
        import os
        from initgraph import hookimpl
        from inproc_log import CALLS

        @hookimpl
        def initgraph_init(ctx):
            ctx.synchronize()  # nothing to wait for: every lower cookie ran already
            ctx.publish(f"{ctx.name}.pid", os.getpid())
            CALLS.append(("init", ctx.name, sorted(ctx.results)))
            return ctx.name

        @hookimpl
        def initgraph_commit(ctx, result):
            CALLS.append(("commit", ctx.name, ctx.registry[f"{ctx.name}.pid"] == os.getpid()))
    """
    (tmp_path / "inproc_log.py").write_text("CALLS = []\n")
    for name in ("inproc_a", "inproc_b"):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(hooks))
    config = {
        "initgraph": {"paths": [str(tmp_path)]},
        "plugins": {
            "b": {"module": "inproc_b", "requires": ["a"]},
            "a": {"module": "inproc_a"},
        },
    }
    try:
        done = run_in_process(config, {})
        assert done.ok
        assert sys.modules["inproc_log"].CALLS == [
            ("init", "a", []),
            ("commit", "a", True),
            ("init", "b", ["a"]),
            ("commit", "b", True),
        ]
    finally:
        for name in ("inproc_log", "inproc_a", "inproc_b"):
            sys.modules.pop(name, None)


def test_one_worker_compares_too(cli: Cli) -> None:
    _two_plugins(cli.cwd)
    done = cli.run("run", "--workers", "1", "--compare")
    assert done.returncode == 0
    assert done.stdout.splitlines()[-1].endswith(" ms)")
    assert BASELINE in done.stdout.splitlines()[-1]


def test_rich_table_on_a_terminal() -> None:
    from initgraph._cli.render import print_table

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    rows = [["1", "settings", "ok"], ["2", "corpus", "failed"]]
    print_table(out, ["cookie", "plugin", "status"], rows, numeric={0}, status_column=2)
    text = out.getvalue()
    assert "\x1b[" in text  # styled
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    assert [line.split() for line in plain.splitlines()] == [
        ["cookie", "plugin", "status"],
        ["1", "settings", "ok"],
        ["2", "corpus", "failed"],
    ]


# -- signals: 130 and 143, the summary, and nothing left behind: see test_signals.py -------------


# -- signal handling in-process -------------------------------------------------------------------


@needs_main_thread
def test_a_signal_during_a_fork_is_delivered_after_it() -> None:
    # Raised inside os.register_at_fork callbacks, the exception would be dropped and a lock
    # left held; so while a fork is under way the handler waits, then the signal comes again.
    with signals_raise():
        forks.active = True
        # The re-delivery may come at any moment once the flag is down, so all of it is inside
        # the block that expects it (outside, the KeyboardInterrupt would stop the whole run).
        with pytest.raises(Terminated):
            _signal_during_fork_then_wait()


def _signal_during_fork_then_wait() -> None:
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(100):  # bytecodes enough for the handler to have run, and deferred
            pass
    except Terminated:  # pytest.fail raises Failed, which raises() does not catch
        pytest.fail("the handler raised during a fork")
    finally:
        forks.active = False
    _wait_for_signal()


def _wait_for_signal() -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.001)


@needs_main_thread
def test_a_forked_child_gets_the_handlers_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with signals_raise(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # forking with threads, 3.12+
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            ok = signal.getsignal(signal.SIGTERM) == before and not forks.active
            os._exit(0 if ok else 1)
        assert isinstance(signal.getsignal(signal.SIGTERM), Raise)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert signal.getsignal(signal.SIGTERM) == before


@pytest.mark.slow
def test_a_caught_interrupt_keeps_the_exit_code(tmp_path: Path) -> None:
    # CPython remembers a KeyboardInterrupt that left exec()'d code and, run with -m, exits by
    # SIGINT at the end even though it was caught; forget_interrupt makes it return 130.
    (tmp_path / "interrupted.py").write_text(
        textwrap.dedent(
            """\
            import sys
            from initgraph._cli.signals import forget_interrupt
            try:
                exec("raise KeyboardInterrupt")
            except KeyboardInterrupt:
                if sys.argv[1:] == ["forget"]:
                    forget_interrupt()
            raise SystemExit(130)
            """
        )
    )
    codes = [
        subprocess.run(
            [sys.executable, "-m", "interrupted", *args], cwd=tmp_path, timeout=60, check=False
        ).returncode
        for args in ([], ["forget"])
    ]
    without, with_forget = codes
    assert with_forget == 130
    assert without in (-signal.SIGINT, 130)  # -SIGINT wherever CPython has the quirk
