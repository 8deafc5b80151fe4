"""Tests of initgraph._boot.config: loading init.toml, and every mistake it refuses."""

from __future__ import annotations

import contextlib
import datetime
import io
import math
import os
import pickle
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from initgraph._boot.conditions import skipped_plugins
from initgraph._boot.config import (
    Config,
    DomainConfig,
    FrozenMapping,
    PluginConfig,
    Settings,
    load_config,
)
from initgraph._boot.graph import plan_order
from initgraph._boot.keys import key_path
from initgraph._boot.run import plan
from initgraph._cli.main import main as cli_main
from initgraph._errors import ConfigError, CycleError

Load = Callable[..., Config]


def raises(message: str, error: type[ConfigError] = ConfigError) -> pytest.RaisesExc[ConfigError]:
    """Expect ``error`` with exactly ``message``."""
    return pytest.raises(error, match=rf"^{re.escape(message)}$")


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test in ``tmp_path``, so files can be named as a user would: ``init.toml``."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def load(here: Path) -> Load:
    """Write ``init.toml`` with the given text and load it (modules unchecked unless asked)."""

    def load(text: str, *, check_modules: bool = False, **overrides: Any) -> Config:
        (here / "init.toml").write_text(text, encoding="utf-8")
        return load_config("init.toml", check_modules=check_modules, **overrides)

    return load


@pytest.fixture
def fresh_modules() -> Iterator[Callable[[], str]]:
    """Unique package names for a test, and no module it imported left behind afterwards."""
    before = set(sys.modules)
    yield lambda: f"igtest_{uuid.uuid4().hex[:12]}"
    for name in set(sys.modules) - before:
        del sys.modules[name]


# --- what a valid file gives ------------------------------------------------------------------

FULL = """\
[initgraph]
workers = 4
start_method = "forkserver"
max_pending = 100
timeout = 30
on_error = "continue"
paths = [".", "src"]
entry_points = true

[domains.net]
exclusive = true

[domains.disk]

[plugins.corpus]
module = "plugins.corpus"
requires = ["settings"]
domain = "net"
where = "main"
timeout = 10
optional = true

[plugins.corpus.config]
root = "docs"
depth = [1, [2, {three = 3}]]
when = 2024-01-02

[plugins.settings]
entry_point = "settings"
"""


def test_full_file(load: Load, here: Path) -> None:
    config = load(FULL)
    assert config.path == str(here / "init.toml")
    assert config.settings == Settings(
        workers=4,
        start_method="forkserver",
        max_pending=100,
        timeout=30.0,
        on_error="continue",
        paths=(str(here), str(here / "src")),
        entry_points=True,
    )
    assert dict(config.domains) == {
        "default": DomainConfig("default", exclusive=False),
        "net": DomainConfig("net", exclusive=True),
        "disk": DomainConfig("disk", exclusive=False),
    }
    corpus, settings_ = config.plugins
    assert corpus == PluginConfig(
        name="corpus",
        module="plugins.corpus",
        entry_point=None,
        requires=("settings",),
        domain="net",
        where="main",
        timeout=10.0,
        optional=True,
        config=FrozenMapping(
            {
                "root": "docs",
                "depth": (1, (2, FrozenMapping({"three": 3}))),
                "when": datetime.date(2024, 1, 2),
            }
        ),
    )
    assert settings_ == PluginConfig(name="settings", entry_point="settings")
    assert config.plugin("settings") is settings_
    assert isinstance(corpus.timeout, float)


def test_defaults(load: Load, here: Path) -> None:
    config = load('[plugins.a]\nmodule = "a"\n')
    assert config.settings == Settings(
        workers=None,
        start_method=None,
        max_pending=32768,
        timeout=60.0,
        on_error="abort",
        paths=(str(here),),
        entry_points=False,
    )
    assert list(config.domains) == ["default"]
    (a,) = config.plugins
    assert (a.requires, a.domain, a.where, a.timeout, a.optional) == (
        (),
        "default",
        "pool",
        None,
        False,
    )
    assert a.entry_point is None
    assert dict(a.config) == {}


def test_retry_and_shutdown_keys(load: Load) -> None:
    config = load(
        "[initgraph]\nretries = 2\nretry_delay = 0.5\nretry_delay_max = 8\nshutdown_timeout = 20\n"
        '[plugins.a]\nmodule = "json"\n'
        '[plugins.b]\nmodule = "json"\nretries = 0\nretry_delay = 3\nshutdown_timeout = 2.5\n'
        'retry_on = ["sqlite3.OperationalError", "builtins.ConnectionError"]\n'
        "retry_crashes = true\n"
    )
    s = config.settings
    assert (s.retries, s.retry_delay, s.retry_delay_max, s.shutdown_timeout) == (2, 0.5, 8.0, 20.0)
    a, b = config.plugins
    assert (a.retries, a.retry_delay, a.retry_on, a.retry_crashes, a.shutdown_timeout) == (
        None,
        None,
        (),
        False,
        10.0,
    )
    assert (b.retries, b.retry_delay, b.retry_crashes, b.shutdown_timeout) == (0, 3.0, True, 2.5)
    assert b.retry_on == ("sqlite3.OperationalError", "builtins.ConnectionError")
    # The plan applies the [initgraph] defaults.
    planned_a, planned_b = plan(config_path(config))
    assert (planned_a.retries, planned_a.retry_delay, planned_a.retry_delay_max) == (2, 0.5, 8.0)
    assert (planned_b.retries, planned_b.retry_delay, planned_b.retry_crashes) == (0, 3.0, True)
    assert (planned_a.shutdown_timeout, planned_b.shutdown_timeout) == (10.0, 2.5)


def config_path(config: Config) -> str:
    assert config.path is not None
    return config.path


def test_retry_and_shutdown_defaults(load: Load) -> None:
    config = load('[plugins.a]\nmodule = "json"\n')
    s = config.settings
    assert (s.retries, s.retry_delay, s.retry_delay_max, s.shutdown_timeout) == (0, 1.0, 60.0, 30.0)
    (p,) = plan(config_path(config))
    assert (p.retries, p.retry_delay, p.retry_delay_max, p.retry_on) == (0, 1.0, 60.0, ())
    assert (p.retry_crashes, p.shutdown_timeout) == (False, 10.0)


def test_empty_mapping(here: Path) -> None:
    config = load_config({})
    assert config.path is None
    assert config.plugins == ()
    assert config.settings.paths == (str(here),)
    assert dict(config.domains) == {"default": DomainConfig("default")}


def test_workers_auto_is_none(load: Load) -> None:
    assert load('[initgraph]\nworkers = "auto"\n').settings.workers is None


def test_plugins_stay_in_file_order(load: Load) -> None:
    config = load('[plugins.b]\nmodule = "b"\nrequires = ["a"]\n[plugins.a]\nmodule = "a"\n')
    assert [p.name for p in config.plugins] == ["b", "a"]
    assert [p.name for p in plan_order(config.plugins)] == ["a", "b"]


def test_paths_are_relative_to_the_file(here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (here / "conf").mkdir()
    (here / "conf" / "init.toml").write_text('[initgraph]\npaths = ["..", "lib", "/abs"]\n')
    elsewhere = here / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(Path("..") / "conf" / "init.toml")
    assert config.path == str(here / "conf" / "init.toml")
    assert config.settings.paths == (str(here), str(here / "conf" / "lib"), "/abs")


def test_mapping_paths_are_relative_to_cwd(here: Path) -> None:
    config = load_config({"initgraph": {"paths": ["lib", "."]}})
    assert config.settings.paths == (str(here / "lib"), str(here))


def test_declaring_default_domain_as_registered_is_allowed(load: Load) -> None:
    config = load("[domains.net]\n[domains.default]\nexclusive = false\n")
    assert list(config.domains) == ["default", "net"]


def test_mapping_accepts_tuples_as_arrays(here: Path) -> None:
    config = load_config(
        {"plugins": {"a": {"module": "a", "requires": ("b",)}, "b": {"module": "b"}}},
        check_modules=False,
    )
    assert config.plugin("a").requires == ("b",)


def test_unknown_plugin_lookup_is_a_key_error(load: Load) -> None:
    config = load('[plugins.a]\nmodule = "a"\n')
    with pytest.raises(KeyError):
        config.plugin("b")


# --- the frozen result ------------------------------------------------------------------------


def test_config_is_deeply_frozen_and_pickles(load: Load) -> None:
    config = load(FULL)
    table = config.plugin("corpus").config
    assert isinstance(table, FrozenMapping)
    with pytest.raises(TypeError):
        table["root"] = "x"  # type: ignore[index]
    with pytest.raises(AttributeError):
        table._data = {}
    with pytest.raises(AttributeError):
        config.plugin("corpus").name = "x"  # type: ignore[misc]
    assert isinstance(table["depth"], tuple)
    assert isinstance(config.domains, FrozenMapping)
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        copy = pickle.loads(pickle.dumps(config, protocol=protocol))
        assert copy == config
        assert type(copy.plugin("corpus").config["depth"][1][1]) is FrozenMapping
    assert hash(copy) == hash(config)


def test_frozen_mapping_behaves_as_a_mapping() -> None:
    table = FrozenMapping({"a": 1, "b": (2,)})
    assert table == {"a": 1, "b": (2,)}
    assert list(table) == ["a", "b"]
    assert len(table) == 2
    assert table.get("c") is None
    assert repr(table) == "FrozenMapping({'a': 1, 'b': (2,)})"
    assert hash(table) == hash(FrozenMapping({"b": (2,), "a": 1}))
    assert FrozenMapping() == {}


def test_mapping_source_is_copied(here: Path) -> None:
    inner = {"root": "docs"}
    source = {"plugins": {"a": {"module": "a", "config": inner}}}
    config = load_config(source, check_modules=False)
    inner["root"] = "changed"
    assert config.plugin("a").config["root"] == "docs"


# --- overrides --------------------------------------------------------------------------------


def test_overrides_replace_settings(load: Load) -> None:
    config = load(
        '[initgraph]\nworkers = 2\non_error = "abort"\n',
        workers=8,
        on_error="continue",
        paths=["lib"],
        start_method=None,
    )
    assert config.settings.workers == 8
    assert config.settings.on_error == "continue"
    assert config.settings.paths == (str(Path.cwd() / "lib"),)


def test_max_result_bytes_is_a_byte_count_with_no_bound_by_default(load: Load) -> None:
    assert load('[plugins.a]\nmodule = "a"\n').settings.max_result_bytes is None
    config = load("[initgraph]\nmax_result_bytes = 67_108_864\n")
    assert config.settings.max_result_bytes == 64 << 20
    assert load("", max_result_bytes=1).settings.max_result_bytes == 1
    with raises(
        "init.toml: initgraph.max_result_bytes: expected a positive integer (bytes), got -1 (int)"
    ):
        load("", max_result_bytes=-1)


def test_worker_threads_is_a_positive_count_and_unset_by_default(load: Load) -> None:
    assert load("").settings.worker_threads is None  # the scheduler's share of the cores
    assert load("[initgraph]\nworker_threads = 3\n").settings.worker_threads == 3
    assert load("", worker_threads=2).settings.worker_threads == 2
    with raises("init.toml: initgraph.worker_threads: expected a positive integer, got 0 (int)"):
        load("[initgraph]\nworker_threads = 0\n")


def test_worker_nice_is_0_to_19_and_0_by_default(load: Load) -> None:
    assert load("").settings.worker_nice == 0
    assert load("[initgraph]\nworker_nice = 19\n").settings.worker_nice == 19
    assert load("", worker_nice=5).settings.worker_nice == 5
    expected = "expected an integer from 0 to 19 (how much nicer than the parent)"
    for bad, got in (("-1", "-1 (int)"), ("20", "20 (int)"), ("true", "True (bool)")):
        with raises(f"init.toml: initgraph.worker_nice: {expected}, got {got}"):
            load(f"[initgraph]\nworker_nice = {bad}\n")


def test_none_override_leaves_the_file_value(load: Load) -> None:
    config = load(
        '[initgraph]\nworkers = 2\nstart_method = "spawn"\n', workers=None, start_method=None
    )
    assert config.settings.workers == 2
    assert config.settings.start_method == "spawn"


def test_override_replaces_a_bad_file_value(load: Load) -> None:
    assert load('[initgraph]\nworkers = "many"\n', workers="auto").settings.workers is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"wrokers": 8}, "init.toml: initgraph.wrokers: unknown override; did you mean 'workers'?"),
        (
            {"zzz": 1},
            "init.toml: initgraph.zzz: unknown override; valid keys: entry_points, max_pending, "
            "max_result_bytes, on_error, paths, retries, retry_delay, retry_delay_max, "
            "shutdown_timeout, start_method, timeout, worker_nice, worker_threads, workers",
        ),
        (
            {"workers": 0},
            'init.toml: initgraph.workers: expected a positive integer or "auto", got 0 (int)',
        ),
        (
            {"on_error": "stop"},
            'init.toml: initgraph.on_error: expected one of "abort", "continue", got \'stop\'',
        ),
        (
            {"timeout": "1"},
            "init.toml: initgraph.timeout: expected a positive number of seconds, got '1' (str)",
        ),
    ],
)
def test_bad_overrides(load: Load, overrides: dict[str, Any], message: str) -> None:
    with raises(message):
        load("", **overrides)


# --- enable and disable for one run ------------------------------------------------------------


def test_enable_and_disable_are_kept(load: Load) -> None:
    config = load(
        '[plugins.a]\nmodule = "a"\n[plugins.b]\nmodule = "b"\nenabled = false\n',
        enable=["b", "b"],
        disable=("a",),
    )
    assert (config.enable, config.disable) == (("b",), ("a",))
    assert config.plugin("b").enabled is False


@pytest.mark.parametrize(
    ("switches", "message"),
    [
        (
            {"disable": ["dbmain"]},
            "init.toml: disable: unknown plugin 'dbmain'; did you mean 'db_main'?",
        ),
        (
            {"enable": ["zzz"]},
            "init.toml: enable: unknown plugin 'zzz'; declare it as [plugins.zzz] or remove it",
        ),
        ({"enable": [1]}, "init.toml: enable[0]: expected a plugin name, got 1 (int)"),
        (
            {"enable": ["db_main"], "disable": ["db_main"]},
            "init.toml: enable: 'db_main' is both enabled and disabled; pick one",
        ),
    ],
)
def test_bad_enable_and_disable(load: Load, switches: dict[str, Any], message: str) -> None:
    with raises(message):
        load('[plugins.db_main]\nmodule = "a"\n', **switches)


# --- every mistake, with its exact message ----------------------------------------------------

TYPE_AND_VALUE_ERRORS = [
    # [initgraph]
    (
        '[initgraph]\nworkers = "many"',
        "init.toml: initgraph.workers: expected a positive integer or \"auto\", got 'many' (str)",
    ),
    (
        "[initgraph]\nworkers = 0",
        'init.toml: initgraph.workers: expected a positive integer or "auto", got 0 (int)',
    ),
    (
        "[initgraph]\nworkers = true",
        'init.toml: initgraph.workers: expected a positive integer or "auto", got True (bool)',
    ),
    (
        "[initgraph]\nworkers = 2.0",
        'init.toml: initgraph.workers: expected a positive integer or "auto", got 2.0 (float)',
    ),
    (
        '[initgraph]\nstart_method = "vfork"',
        'init.toml: initgraph.start_method: expected one of "fork", "forkserver", "spawn", '
        "got 'vfork'",
    ),
    (
        "[initgraph]\nstart_method = 1",
        'init.toml: initgraph.start_method: expected one of "fork", "forkserver", "spawn", '
        "got 1 (int)",
    ),
    (
        "[initgraph]\nmax_pending = 0",
        "init.toml: initgraph.max_pending: expected a positive integer, got 0 (int)",
    ),
    (
        "[initgraph]\nmax_pending = false",
        "init.toml: initgraph.max_pending: expected a positive integer, got False (bool)",
    ),
    (
        "[initgraph]\nmax_result_bytes = 0",
        "init.toml: initgraph.max_result_bytes: expected a positive integer (bytes), got 0 (int)",
    ),
    (
        "[initgraph]\nmax_result_bytes = 1.5e6",
        "init.toml: initgraph.max_result_bytes: expected a positive integer (bytes), "
        "got 1500000.0 (float)",
    ),
    (
        '[initgraph]\nmax_result_bytes = "64 MiB"',
        "init.toml: initgraph.max_result_bytes: expected a positive integer (bytes), "
        "got '64 MiB' (str)",
    ),
    (
        "[initgraph]\nmax_result_bytes = true",
        "init.toml: initgraph.max_result_bytes: expected a positive integer (bytes), "
        "got True (bool)",
    ),
    (
        "[initgraph]\ntimeout = 0",
        "init.toml: initgraph.timeout: expected a positive number of seconds, got 0 (int)",
    ),
    (
        "[initgraph]\ntimeout = -1.5",
        "init.toml: initgraph.timeout: expected a positive number of seconds, got -1.5 (float)",
    ),
    (
        "[initgraph]\ntimeout = nan",
        "init.toml: initgraph.timeout: expected a positive number of seconds, got nan (float)",
    ),
    (
        "[initgraph]\ntimeout = inf",
        "init.toml: initgraph.timeout: expected a positive number of seconds, got inf (float)",
    ),
    (
        '[initgraph]\ntimeout = "60"',
        "init.toml: initgraph.timeout: expected a positive number of seconds, got '60' (str)",
    ),
    (
        '[initgraph]\non_error = "stop"',
        'init.toml: initgraph.on_error: expected one of "abort", "continue", got \'stop\'',
    ),
    (
        '[initgraph]\npaths = "."',
        "init.toml: initgraph.paths: expected a list of directory paths, got '.' (str)",
    ),
    (
        '[initgraph]\npaths = [".", 1]',
        "init.toml: initgraph.paths[1]: expected a directory path, got 1 (int)",
    ),
    (
        '[initgraph]\nentry_points = "yes"',
        "init.toml: initgraph.entry_points: expected true or false, got 'yes' (str)",
    ),
    ("initgraph = 3", "init.toml: initgraph: expected a table, got 3 (int)"),
    # [domains]
    ("domains = 1", "init.toml: domains: expected a table, got 1 (int)"),
    ("[domains]\nnet = 1", "init.toml: domains.net: expected a table, got 1 (int)"),
    (
        "[domains.net]\nexclusive = 1",
        "init.toml: domains.net.exclusive: expected true or false, got 1 (int)",
    ),
    (
        '[domains."a b"]',
        "init.toml: domains.\"a b\": invalid domain name; use letters, digits, '_', '.' and '-', "
        "starting with a letter or '_', at most 120 characters",
    ),
    (
        f"[domains.{'d' * 121}]",
        f"init.toml: domains.{'d' * 121}: invalid domain name; use letters, digits, '_', '.' "
        "and '-', starting with a letter or '_', at most 120 characters",
    ),
    (
        "[domains.default]\nexclusive = true",
        "init.toml: domains.default.exclusive: the default domain is always registered; "
        "give the exclusive domain a name",
    ),
    # [plugins]
    ("plugins = []", "init.toml: plugins: expected a table, got [] (list)"),
    ("[plugins]\na = 1", "init.toml: plugins.a: expected a table, got 1 (int)"),
    (
        '[plugins.9lives]\nmodule = "x"',
        "init.toml: plugins.9lives: invalid plugin name; use letters, digits, '_', '.' and '-', "
        "starting with a letter or '_'",
    ),
    (
        "[plugins.a]\nmodule = 1",
        "init.toml: plugins.a.module: expected a dotted module name, got 1 (int)",
    ),
    (
        '[plugins.a]\nmodule = "plugins..a"',
        "init.toml: plugins.a.module: expected a dotted module name, got 'plugins..a' (str)",
    ),
    (
        '[plugins.a]\nmodule = "my plugin"',
        "init.toml: plugins.a.module: expected a dotted module name, got 'my plugin' (str)",
    ),
    (
        '[plugins.a]\nentry_point = ""',
        "init.toml: plugins.a.entry_point: expected an entry point name, got '' (str)",
    ),
    (
        '[plugins.a]\nmodule = "a"\nentry_point = "a"',
        "init.toml: plugins.a: both module and entry_point are set; keep one",
    ),
    (
        "[plugins.a]\noptional = true",
        "init.toml: plugins.a: neither module nor entry_point is set; "
        'add module = "package.module" or entry_point = "name"',
    ),
    (
        '[plugins.a]\nmodule = "a"\nrequires = "b"',
        "init.toml: plugins.a.requires: expected a list of plugin names, got 'b' (str)",
    ),
    (
        '[plugins.a]\nmodule = "a"\nrequires = [1]',
        "init.toml: plugins.a.requires[0]: expected a plugin name, got 1 (int)",
    ),
    (
        '[plugins.a]\nmodule = "a"\nrequires = ["a"]',
        "init.toml: plugins.a.requires: plugin 'a' cannot require itself; remove it",
    ),
    (
        '[plugins.a]\nmodule = "a"\nrequires = ["b", "b"]\n[plugins.b]\nmodule = "b"',
        "init.toml: plugins.a.requires: 'b' is listed twice; list each plugin once",
    ),
    (
        '[plugins.settings]\nmodule = "s"\n[plugins.corpus]\nmodule = "c"\nrequires = ["setings"]',
        "init.toml: plugins.corpus.requires: unknown plugin 'setings'; did you mean 'settings'?",
    ),
    (
        '[plugins.corpus]\nmodule = "c"\nrequires = ["zzz"]',
        "init.toml: plugins.corpus.requires: unknown plugin 'zzz'; declare it as [plugins.zzz] "
        "or remove it",
    ),
    (
        '[plugins.a]\nmodule = "a"\ndomain = 1',
        "init.toml: plugins.a.domain: expected a domain name, got 1 (int)",
    ),
    (
        '[domains.net]\n[plugins.a]\nmodule = "a"\ndomain = "nett"',
        "init.toml: plugins.a.domain: unknown domain 'nett'; did you mean 'net'?",
    ),
    (
        '[plugins.a]\nmodule = "a"\ndomain = "gpu"',
        "init.toml: plugins.a.domain: unknown domain 'gpu'; declare it as [domains.gpu]",
    ),
    (
        '[plugins.a]\nmodule = "a"\nwhere = "thread"',
        'init.toml: plugins.a.where: expected one of "pool", "main", got \'thread\'',
    ),
    (
        '[plugins.a]\nmodule = "a"\ntimeout = 0',
        "init.toml: plugins.a.timeout: expected a positive number of seconds, got 0 (int)",
    ),
    (
        '[plugins.a]\nmodule = "a"\noptional = "no"',
        "init.toml: plugins.a.optional: expected true or false, got 'no' (str)",
    ),
    (
        '[plugins.a]\nmodule = "a"\nconfig = 1',
        "init.toml: plugins.a.config: expected a table, got 1 (int)",
    ),
    (
        '[plugins.a]\nmodule = "a"\nconfig = [1]',
        "init.toml: plugins.a.config: expected a table, got [1] (list)",
    ),
    # retries and shutdown
    (
        '[plugins.a]\nmodule = "a"\nretries = -1',
        "init.toml: plugins.a.retries: expected 0 or more retries, got -1 (int)",
    ),
    (
        "[initgraph]\nretries = -2",
        "init.toml: initgraph.retries: expected 0 or more retries, got -2 (int)",
    ),
    (
        '[plugins.a]\nmodule = "a"\nretries = true',
        "init.toml: plugins.a.retries: expected 0 or more retries, got True (bool)",
    ),
    (
        '[plugins.a]\nmodule = "a"\nretry_delay = 0',
        "init.toml: plugins.a.retry_delay: expected a positive number of seconds, got 0 (int)",
    ),
    (
        "[initgraph]\nretry_delay_max = -1",
        "init.toml: initgraph.retry_delay_max: expected a positive number of seconds, got -1 (int)",
    ),
    (
        '[plugins.a]\nmodule = "a"\nretry_on = "builtins.OSError"',
        "init.toml: plugins.a.retry_on: expected a list of exception names, "
        "got 'builtins.OSError' (str)",
    ),
    (
        '[plugins.a]\nmodule = "a"\nretry_on = ["OSError"]',
        'init.toml: plugins.a.retry_on[0]: expected an exception as "module.Name" '
        "(builtins.OSError for a builtin), got 'OSError' (str)",
    ),
    (
        '[plugins.a]\nmodule = "a"\nretry_crashes = 1',
        "init.toml: plugins.a.retry_crashes: expected true or false, got 1 (int)",
    ),
    (
        '[plugins.a]\nmodule = "a"\nshutdown_timeout = inf',
        "init.toml: plugins.a.shutdown_timeout: expected a positive number of seconds, "
        "got inf (float)",
    ),
    (
        "[initgraph]\nshutdown_timeout = 0",
        "init.toml: initgraph.shutdown_timeout: expected a positive number of seconds, got 0 (int)",
    ),
    # conditions
    (
        '[plugins.a]\nmodule = "a"\nenabled = "no"',
        "init.toml: plugins.a.enabled: expected true or false, got 'no' (str)",
    ),
    (
        '[plugins.a]\nmodule = "a"\nwhen = "linux"',
        "init.toml: plugins.a.when: expected a table, got 'linux' (str)",
    ),
    (
        '[plugins.a]\nmodule = "a"\nwhen = {env = ""}',
        "init.toml: plugins.a.when.env: expected an environment variable name, got '' (str)",
    ),
    (
        '[plugins.a]\nmodule = "a"\nwhen = {env = "A=1"}',
        "init.toml: plugins.a.when.env: expected an environment variable name, got 'A=1' (str)",
    ),
    (
        '[plugins.a]\nmodule = "a"\nwhen = {env_equals = {MODE = 1}}',
        "init.toml: plugins.a.when.env_equals.MODE: expected a string, got 1 (int)",
    ),
    (
        '[plugins.a]\nmodule = "a"\nwhen = {env_equals = ["MODE"]}',
        "init.toml: plugins.a.when.env_equals: expected a table, got ['MODE'] (list)",
    ),
    (
        '[plugins.a]\nmodule = "a"\nwhen = {platform = []}',
        'init.toml: plugins.a.when.platform: expected a platform name such as "linux", or a list '
        "of them, got [] (list)",
    ),
    (
        '[plugins.a]\nmodule = "a"\nwhen = {path_exists = 1}',
        "init.toml: plugins.a.when.path_exists: expected a path, got 1 (int)",
    ),
]


@pytest.mark.parametrize(("text", "message"), TYPE_AND_VALUE_ERRORS)
def test_type_and_value_errors(load: Load, text: str, message: str) -> None:
    with raises(message) as info:
        load(text)
    assert info.value.path == "init.toml"
    assert info.value.key == message.split(": ")[1]


UNKNOWN_KEYS = [
    (
        '[plugins.corpus]\nmodule = "c"\nreqires = []',
        "init.toml: plugins.corpus.reqires: unknown key; did you mean 'requires'?",
    ),
    (
        '[plugins.corpus]\nmodule = "c"\nzzz = 1',
        "init.toml: plugins.corpus.zzz: unknown key; valid keys: config, domain, enabled, "
        "entry_point, module, optional, requires, retries, retry_crashes, retry_delay, retry_on, "
        "shutdown_timeout, timeout, when, where",
    ),
    (
        "[initgraph]\nworker = 4",
        "init.toml: initgraph.worker: unknown key; did you mean 'workers'?",
    ),
    (
        "[domains.net]\nexclusiv = true",
        "init.toml: domains.net.exclusiv: unknown key; did you mean 'exclusive'?",
    ),
    ("[plugin.corpus]", "init.toml: plugin: unknown key; did you mean 'plugins'?"),
    (
        '[plugins.a]\nmodule = "a"\nwhen = {evn = "X"}',
        "init.toml: plugins.a.when.evn: unknown key; did you mean 'env'?",
    ),
    (
        '[plugins.a]\nmodule = "a"\nwhen = {os = "linux"}',
        "init.toml: plugins.a.when.os: unknown key; valid keys: env, env_equals, path_exists, "
        "platform",
    ),
    ("foo = 1", "init.toml: foo: unknown key; valid keys: domains, initgraph, plugins"),
    ('"a b" = 1', 'init.toml: "a b": unknown key; valid keys: domains, initgraph, plugins'),
]


@pytest.mark.parametrize(("text", "message"), UNKNOWN_KEYS)
def test_unknown_keys(load: Load, text: str, message: str) -> None:
    with raises(message):
        load(text)


def test_plugin_named_with_a_dot_is_quoted(load: Load) -> None:
    with raises(
        'init.toml: plugins."search.index".where: expected one of "pool", "main", got \'x\''
    ):
        load('[plugins."search.index"]\nmodule = "a"\nwhere = "x"')


def test_cycle(load: Load) -> None:
    text = "".join(
        f'[plugins.{name}]\nmodule = "{name}"\nrequires = ["{required}"]\n'
        for name, required in [("x", "a"), ("a", "b"), ("b", "c"), ("c", "a")]
    )
    with raises(
        "init.toml: plugins.a.requires: dependency cycle: a -> b -> c -> a", CycleError
    ) as info:
        load(text)
    assert isinstance(info.value, CycleError)
    assert info.value.cycle == ["a", "b", "c", "a"]
    assert info.value.key == "plugins.a.requires"


def test_a_cycle_is_found_even_without_checking_modules(here: Path) -> None:
    source = {
        "plugins": {
            "a": {"module": "a", "requires": ["b"]},
            "b": {"module": "b", "requires": ["a"]},
        }
    }
    with raises("<dict>: plugins.a.requires: dependency cycle: a -> b -> a", CycleError):
        load_config(source, check_modules=False)


# --- reading the file -------------------------------------------------------------------------

TOML_ERRORS = [
    ("[initgraph]\nworkers = \n", "init.toml:2:11: invalid TOML: invalid value"),
    (
        "[initgraph]\nworkers = 3\nworkers = 4\n",
        "init.toml:3:12: invalid TOML: cannot overwrite a value",
    ),
    # tomllib says "at end of document": the position is the end.
    ("a = 1\na = 2", "init.toml:2:6: invalid TOML: cannot overwrite a value"),
    ('x = "abc', "init.toml:1:9: invalid TOML: unterminated string"),
    (
        '[plugins.a]\nmodule = "a"\n[plugins.a]\n',
        "init.toml:3:11: invalid TOML: cannot declare ('plugins', 'a') twice",
    ),
    (
        "a = " + "[" * 5000 + "]" * 5000,
        "init.toml: invalid TOML: arrays or tables nested too deeply",
    ),
]


@pytest.mark.parametrize(("text", "message"), TOML_ERRORS)
def test_toml_syntax(load: Load, text: str, message: str) -> None:
    with raises(message) as info:
        load(text)
    assert info.value.path == "init.toml"
    assert info.value.key is None


def test_toml_integer_too_long(load: Load) -> None:
    with pytest.raises(
        ConfigError, match=r"^init\.toml: invalid TOML: exceeds the limit \(4300 digits\)"
    ):
        load("a = " + "1" * 5000)


def test_not_utf8(here: Path) -> None:
    (here / "init.toml").write_bytes(b"[initgraph]\nwork\xffers = 1\n")
    with raises("init.toml:2:5: invalid TOML: byte 0xff is not UTF-8; save the file as UTF-8"):
        load_config("init.toml")


def test_missing_file(here: Path) -> None:
    with raises("conf/init.toml: no such file; pass the path of an init.toml") as info:
        load_config("conf/init.toml")
    assert info.value.path == "conf/init.toml"


def test_directory(here: Path) -> None:
    with raises(".: is a directory; pass the path of an init.toml"):
        load_config(".")


def test_nul_in_path(here: Path) -> None:
    with raises("in\0it.toml: cannot read it: embedded null byte"):
        load_config("in\0it.toml")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (3, "expected the path of an init.toml or a mapping, got 3 (int)"),
        (b"init.toml", "expected the path of an init.toml or a mapping, got b'init.toml' (bytes)"),
        (["init.toml"], "expected the path of an init.toml or a mapping, got ['init.toml'] (list)"),
    ],
)
def test_not_a_source(source: Any, message: str) -> None:
    with raises(message):
        load_config(source)


class FsPath:
    def __init__(self, value: Any) -> None:
        self.value = value

    def __fspath__(self) -> Any:
        return self.value

    def __repr__(self) -> str:
        return f"FsPath({self.value!r})"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            FsPath(b"init.toml"),
            "expected the path of an init.toml as str, got b'init.toml' (bytes)",
        ),
        (FsPath(3), "expected the path of an init.toml, got FsPath(3) (FsPath)"),
    ],
)
def test_path_like_that_is_not_text(source: Any, message: str) -> None:
    with raises(message):
        load_config(source)


# --- mappings hold any python value -----------------------------------------------------------


class Opaque:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def loop() -> dict[str, Any]:
    table: dict[str, Any] = {}
    table["again"] = table
    return table


def deep_config_message() -> str:
    key = "plugins.a.config" + ".again" * 62
    return f"<dict>: {key}: nested more than 64 levels deep; flatten it"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({1: {}}, "<dict>: expected string keys, got 1 (int)"),
        (
            {"initgraph": {"workers": None}},
            'initgraph.workers: expected a positive integer or "auto", got None (NoneType)',
        ),
        (
            {"initgraph": {"paths": ("a", b"b")}},
            "initgraph.paths[1]: expected a directory path, got b'b' (bytes)",
        ),
        (
            {"initgraph": {"paths": ["a\0b"]}},
            "initgraph.paths[0]: expected a directory path, got 'a\\x00b' (str)",
        ),
        (
            {"plugins": {"a": {"module": "a", "config": {2: 1}}}},
            "plugins.a.config: expected string keys, got 2 (int)",
        ),
        (
            {"plugins": {"a": {"module": "a", "config": {"x": {1, 2}}}}},
            "plugins.a.config.x: expected a TOML value "
            "(string, number, boolean, date, time, array or table), got {1, 2} (set)",
        ),
        (
            {"plugins": {"a": {"module": "a", "timeout": 10**400}}},
            "plugins.a.timeout: expected a positive number of seconds, "
            f"got 1{'0' * 27}...{'0' * 29} (int)",
        ),
        (
            {"plugins": {"a": {"module": "a", "config": loop()}}},
            deep_config_message().removeprefix("<dict>: "),
        ),
    ],
)
def test_mapping_values(here: Path, source: dict[Any, Any], message: str) -> None:
    if not message.startswith("<dict>"):
        message = f"<dict>: {message}"
    with raises(message) as info:
        load_config(source, check_modules=False)
    assert info.value.path is None


def test_value_whose_repr_fails(here: Path) -> None:
    source = {"plugins": {"a": {"module": "a", "config": {"x": [Opaque()]}}}}
    message = (
        "<dict>: plugins.a.config.x[0]: expected a TOML value "
        "(string, number, boolean, date, time, array or table), got "
    )
    pattern = rf"^{re.escape(message)}<Opaque instance at 0x[0-9a-f]+> \(Opaque\)$"
    with pytest.raises(ConfigError, match=pattern):
        load_config(source, check_modules=False)


# --- modules and entry points -----------------------------------------------------------------


def write_package(root: Path, package: str, init: str = "") -> None:
    (root / package).mkdir(parents=True)
    (root / package / "__init__.py").write_text(init)
    (root / package / "corpus.py").write_text(
        "raise RuntimeError('a module is not imported to check it')\n"
    )


def test_module_found_through_paths(
    load: Load, here: Path, fresh_modules: Callable[[], str]
) -> None:
    package = fresh_modules()
    write_package(here / "src", package)
    (here / "src" / f"{package}_solo.py").write_text("raise RuntimeError('not to be imported')\n")
    path_before = list(sys.path)
    config = load(
        f'[initgraph]\npaths = ["src"]\n[plugins.a]\nmodule = "{package}.corpus"\n'
        f'[plugins.b]\nmodule = "{package}_solo"\n',
        check_modules=True,
    )
    assert config.plugin("a").module == f"{package}.corpus"
    assert sys.path == path_before
    # find_spec imports the parent package, never the plugin's module itself.
    assert f"{package}.corpus" not in sys.modules
    assert f"{package}_solo" not in sys.modules


def test_module_missing_in_package(
    load: Load, here: Path, fresh_modules: Callable[[], str]
) -> None:
    package = fresh_modules()
    write_package(here, package)
    path_before = list(sys.path)
    message = (
        f"init.toml: plugins.corpus.module: no module named '{package}.corpsu'; "
        "check the name and [initgraph] paths"
    )
    with raises(message) as info:
        load(f'[plugins.corpus]\nmodule = "{package}.corpsu"\n', check_modules=True)
    assert info.value.key == "plugins.corpus.module"
    assert sys.path == path_before


def test_module_with_missing_parent(load: Load, fresh_modules: Callable[[], str]) -> None:
    package = fresh_modules()
    message = (
        f"init.toml: plugins.corpus.module: no module named '{package}.corpus'; "
        "check the name and [initgraph] paths"
    )
    with raises(message):
        load(f'[plugins.corpus]\nmodule = "{package}.corpus"\n', check_modules=True)


def test_module_missing_when_paths_do_not_point_at_it(
    load: Load, here: Path, fresh_modules: Callable[[], str]
) -> None:
    package = fresh_modules()
    write_package(here / "src", package)
    message = (
        f"init.toml: plugins.corpus.module: no module named '{package}.corpus'; "
        "check the name and [initgraph] paths"
    )
    with raises(message):
        load(f'[plugins.corpus]\nmodule = "{package}.corpus"\n', check_modules=True)


def test_parent_package_that_fails(
    load: Load, here: Path, fresh_modules: Callable[[], str]
) -> None:
    package = fresh_modules()
    write_package(here, package, init="raise RuntimeError('boom')\n")
    message = (
        f"init.toml: plugins.corpus.module: looking for module '{package}.corpus' failed: "
        "RuntimeError: boom; fix its package or [initgraph] paths"
    )
    with raises(message) as info:
        load(f'[plugins.corpus]\nmodule = "{package}.corpus"\n', check_modules=True)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_parent_package_missing_a_dependency(
    load: Load, here: Path, fresh_modules: Callable[[], str]
) -> None:
    # Not "no module named <the plugin>": the plugin is there, its package is what is broken.
    package = fresh_modules()
    write_package(here, package, init="import igtest_not_installed_anywhere\n")
    message = (
        f"init.toml: plugins.corpus.module: looking for module '{package}.corpus' failed: "
        "ModuleNotFoundError: No module named 'igtest_not_installed_anywhere'; "
        "fix its package or [initgraph] paths"
    )
    with raises(message):
        load(f'[plugins.corpus]\nmodule = "{package}.corpus"\n', check_modules=True)


def test_module_not_checked_when_told(load: Load) -> None:
    config = load('[plugins.a]\nmodule = "igtest_surely_missing.x"\n', check_modules=False)
    assert config.plugin("a").module == "igtest_surely_missing.x"


@pytest.fixture
def entry_points_dir(here: Path) -> Path:
    """A folder holding an installed distribution with two "initgraph" entry points."""
    folder = here / "site"
    info = folder / "igtest_dist-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: igtest-dist\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[initgraph]\nsearch_index = igtest_dist.search:plugin\nsettings = igtest_dist.settings\n"
    )
    return folder


def test_entry_point_found_through_paths(load: Load, entry_points_dir: Path) -> None:
    config = load(
        '[initgraph]\npaths = ["site"]\n[plugins.index]\nentry_point = "search_index"\n',
        check_modules=True,
    )
    assert config.plugin("index").entry_point == "search_index"


def test_entry_point_missing(load: Load, entry_points_dir: Path) -> None:
    message = (
        "init.toml: plugins.index.entry_point: no entry point named 'search-index' in the "
        "'initgraph' group; did you mean 'search_index'?"
    )
    with raises(message) as info:
        load(
            '[initgraph]\npaths = ["site"]\n[plugins.index]\nentry_point = "search-index"\n',
            check_modules=True,
        )
    assert info.value.key == "plugins.index.entry_point"


def test_entry_point_missing_without_close_match(load: Load) -> None:
    message = (
        "init.toml: plugins.index.entry_point: no entry point named 'igtest_zzz' in the "
        "'initgraph' group; install the package that provides it or use module = \"...\" instead"
    )
    with raises(message):
        load('[plugins.index]\nentry_point = "igtest_zzz"\n', check_modules=True)


# --- properties: any input gives a Config or a ConfigError ------------------------------------

SETTINGS_KEYS = [
    "workers",
    "start_method",
    "max_pending",
    "timeout",
    "on_error",
    "paths",
    "entry_points",
    "retries",
    "retry_delay",
    "retry_delay_max",
    "shutdown_timeout",
]
PLUGIN_KEYS = [
    "module",
    "entry_point",
    "requires",
    "domain",
    "where",
    "timeout",
    "optional",
    "enabled",
    "when",
    "retries",
    "retry_delay",
    "retry_on",
    "retry_crashes",
    "shutdown_timeout",
    "config",
]
NAMES = ["a", "b", "c", "net", "default", "a.b", "9x", ""]
WORDS = [
    "auto",
    "abort",
    "continue",
    "pool",
    "main",
    "fork",
    "spawn",
    "forkserver",
    "json",
    ".",
    "x y",
]

keys = st.sampled_from(
    ["initgraph", "domains", "plugins", "exclusive", *SETTINGS_KEYS, *PLUGIN_KEYS, *NAMES]
) | st.text(max_size=6)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(WORDS + NAMES)
    | st.dates()
    | st.binary(max_size=3)
)
anything = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(keys | st.integers(), inner, max_size=4)
    ),
    max_leaves=12,
)


def good_or_any(
    good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any] = anything
) -> st.SearchStrategy[Any]:
    """Usually a plausible value, sometimes anything at all: deep enough to reach every check."""
    # Not st.one_of(good, good, good, bad): it drops repeated strategies, so the odds would be even.
    return st.sampled_from([*[good] * 7, bad]).flatmap(lambda chosen: chosen)


GOOD_PLUGINS = ["a", "b", "c", "a.b"]


def merged(*tables: dict[str, Any]) -> dict[str, Any]:
    return {key: value for table in tables for key, value in table.items()}


EXCEPTION_NAMES = ["builtins.OSError", "sqlite3.OperationalError", "a.b.Error"]
when_tables = st.fixed_dictionaries(
    {},
    optional={
        "env": good_or_any(st.sampled_from(["HOME", "IGTEST_UNSET"]), st.just("A=1") | anything),
        "env_equals": good_or_any(
            st.dictionaries(st.sampled_from(["HOME", "X"]), st.text(max_size=3), max_size=2)
        ),
        "platform": good_or_any(st.sampled_from(["linux", "win32"]) | st.just(["darwin"])),
        "path_exists": good_or_any(st.sampled_from([".", "nope", "/tmp"])),
        "evn": anything,
    },
)


def documents(modules: st.SearchStrategy[str], loose: bool) -> st.SearchStrategy[Any]:
    """Documents shaped like init.toml, with every value plausibly right or anything at all.

    ``loose=False`` keeps module and entry point names to ``modules`` and the document a table.
    """
    source = good_or_any(modules) if loose else modules
    sources = st.one_of(
        st.fixed_dictionaries({"module": source}),
        st.fixed_dictionaries({"entry_point": source}),
        st.fixed_dictionaries({}, optional={"module": source, "entry_point": source}),
    )
    requires = st.lists(st.sampled_from(GOOD_PLUGINS), max_size=2, unique=True)
    details = st.fixed_dictionaries(
        {},
        optional={
            "requires": good_or_any(requires, st.lists(st.sampled_from(NAMES)) | anything),
            "domain": good_or_any(st.sampled_from(["default", "net"]), st.just("nett") | anything),
            "where": good_or_any(st.sampled_from(["pool", "main"])),
            "timeout": good_or_any(st.floats(min_value=0.01, max_value=100)),
            "optional": good_or_any(st.booleans()),
            "config": good_or_any(st.dictionaries(st.text(max_size=4), anything, max_size=3)),
            "enabled": good_or_any(st.booleans()),
            "when": good_or_any(when_tables),
            "retries": good_or_any(st.integers(0, 5), st.integers(-3, -1) | anything),
            "retry_delay": good_or_any(st.floats(min_value=0.01, max_value=10)),
            "retry_on": good_or_any(
                st.lists(st.sampled_from(EXCEPTION_NAMES), max_size=2),
                st.lists(st.sampled_from(["Error", "a.", ".b", "1.x", ""])) | anything,
            ),
            "retry_crashes": good_or_any(st.booleans()),
            "shutdown_timeout": good_or_any(st.floats(min_value=0.01, max_value=100)),
        },
    )
    plugin = st.builds(merged, sources, details)
    initgraph = st.fixed_dictionaries(
        {},
        optional={
            "workers": good_or_any(st.integers(1, 8) | st.just("auto")),
            "start_method": good_or_any(st.sampled_from(["fork", "forkserver", "spawn"])),
            "max_pending": good_or_any(st.integers(1, 10)),
            "timeout": good_or_any(st.integers(1, 100)),
            "on_error": good_or_any(st.sampled_from(["abort", "continue"])),
            "paths": good_or_any(st.lists(st.sampled_from([".", "lib", "/tmp"]), max_size=2)),
            "entry_points": good_or_any(st.booleans()),
            "retries": good_or_any(st.integers(0, 5), st.integers(-3, -1) | anything),
            "retry_delay": good_or_any(st.floats(min_value=0.01, max_value=10)),
            "retry_delay_max": good_or_any(st.integers(1, 120)),
            "shutdown_timeout": good_or_any(st.integers(1, 60)),
        },
    )
    domain = st.fixed_dictionaries({}, optional={"exclusive": good_or_any(st.booleans())})
    any_name = st.sampled_from(NAMES) | st.text(max_size=3)
    domain_names = good_or_any(st.sampled_from(["net", "disk"]), any_name)
    plugin_names = good_or_any(st.sampled_from(GOOD_PLUGINS), any_name)
    plugins = st.dictionaries(plugin_names, good_or_any(plugin), min_size=1, max_size=4)
    shaped = st.fixed_dictionaries(
        {"plugins": good_or_any(plugins)},
        optional={
            "initgraph": good_or_any(initgraph),
            "domains": good_or_any(st.dictionaries(domain_names, good_or_any(domain), max_size=2)),
        },
    )
    return good_or_any(shaped, anything if loose else shaped)


overrides = good_or_any(
    st.just({}),
    bad=st.dictionaries(
        st.sampled_from([*SETTINGS_KEYS, "bogus"]), anything | st.none(), max_size=2
    ),
)


def check_loaded(config: Config) -> None:
    """What every loaded Config promises."""
    assert "default" in config.domains
    assert len(plan_order(config.plugins)) == len(config.plugins)
    settings = config.settings
    assert settings.retries >= 0
    assert 0 < settings.retry_delay < math.inf
    assert 0 < settings.retry_delay_max < math.inf
    assert 0 < settings.shutdown_timeout < math.inf
    for p in config.plugins:
        assert (p.module is None) != (p.entry_point is None)
        assert p.domain in config.domains
        assert p.retries is None or p.retries >= 0
        assert p.retry_delay is None or 0 < p.retry_delay < math.inf
        assert all(re.fullmatch(r"\w+(\.\w+)+", name) for name in p.retry_on)
        assert isinstance(p.retry_crashes, bool)
        assert isinstance(p.enabled, bool)
        assert 0 < p.shutdown_timeout < math.inf
        assert p.when.path_exists is None or os.path.isabs(p.when.path_exists)
    pickle.loads(pickle.dumps(config))
    skipped_plugins(config)  # conditions evaluate on any loaded config


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents(st.sampled_from(["json", "a.b", "x"]), loose=True), overrides)
def test_any_mapping_gives_config_or_config_error(document: Any, extra: dict[str, Any]) -> None:
    try:
        config = load_config(document, check_modules=False, **extra)
    except ConfigError:
        return
    check_loaded(config)


# Modules that are safe to look for: find_spec imports the parents of a dotted name.
SAFE_MODULES = [
    "json",
    "json.decoder",
    "json.nope",
    "os.path",
    "igtest_nope",
    "igtest_nope.sub",
    "math.sub",
]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents(st.sampled_from(SAFE_MODULES), loose=False), overrides)
def test_any_mapping_with_module_checks_gives_config_or_config_error(
    document: Any, extra: dict[str, Any]
) -> None:
    path_before = list(sys.path)
    try:
        config = load_config(document, check_modules=True, **extra)
    except ConfigError:
        assert sys.path == path_before
        return
    assert sys.path == path_before
    check_loaded(config)


FRAGMENTS = [
    "[initgraph]",
    "workers = 4",
    'workers = "auto"',
    "workers = 0",
    'on_error = "continue"',
    "paths = ['.']",
    "timeout = 1.5",
    "timeout = nan",
    "timeout = inf",
    "timeout = -1",
    "workers = 99999999999",
    "max_pending = 10000000000",
    "max_workers = 1",
    "[domains.net]",
    "exclusive = true",
    "[plugins.a]",
    "[plugins.b]",
    '[plugins.c]\nmodule = "json"',
    '[plugins.d]\nentry_point = "x"\nrequires = ["c"]',
    '[plugins."a.b"]',
    'module = "json"',
    'entry_point = "x"',
    'requires = ["a"]',
    'requires = ["b"]',
    'domain = "net"',
    'where = "main"',
    "optional = true",
    "[plugins.a.config]",
    "x = [1, {y = 2}, 1979-05-27T07:32:00Z]",
    "[[plugins]]",
    "= =",
    "a.b.c = 1",
    "retries = 2",
    "retries = -1",
    "retry_delay = 0.5",
    "retry_delay_max = 0",
    "shutdown_timeout = 5",
    'retry_on = ["builtins.OSError"]',
    'retry_on = ["OSError"]',
    "retry_crashes = true",
    "enabled = false",
    'when = {env = "HOME"}',
    'when = {platform = ["linux"], path_exists = "."}',
    "when = {evn = 1}",
]
toml_texts = st.lists(st.sampled_from(FRAGMENTS), max_size=12).map("\n".join)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("toml") / "init.toml"


@settings(max_examples=200, deadline=None)
@given(st.text() | toml_texts | toml_texts)
def test_any_text_gives_config_or_config_error(scratch: Path, text: str) -> None:
    scratch.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        config = load_config(scratch, check_modules=False)
    except ConfigError as exc:
        error = exc
    else:
        check_loaded(config)
        return
    assert str(error).startswith(str(scratch))


@settings(max_examples=100, deadline=None)
@given(toml_texts)
def test_initgraph_check_on_any_document_exits_0_or_2_with_one_line(
    scratch: Path, text: str
) -> None:
    """What a user sees: `initgraph check` on any init.toml exits 0, or 2 with one error line
    that names the file (never a traceback from inside initgraph)."""
    scratch.write_text(text)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli_main(["check", str(scratch)])
    lines = err.getvalue().splitlines()
    if code == 0:
        assert lines == [], err.getvalue()
    else:
        assert code == 2, err.getvalue()
        assert len(lines) == 1, err.getvalue()
        # Standard modules stand in for plugins here: check imports them and finds no hook.
        no_hooks = re.compile(
            r"initgraph: error: plugin '[a-z.]+': module [a-z]+ has no hook implementation; "
            r"mark its hooks with @initgraph.hookimpl\Z"
        )
        assert lines[0].startswith(f"initgraph: error: {scratch}") or no_hooks.match(lines[0]), (
            lines[0]
        )
        assert "Traceback" not in err.getvalue()


@settings(max_examples=100, deadline=None)
@given(st.binary())
def test_any_bytes_give_config_or_config_error(scratch: Path, data: bytes) -> None:
    scratch.write_bytes(data)
    with contextlib.suppress(ConfigError):
        check_loaded(load_config(scratch, check_modules=False))


def test_nan_and_inf_in_plugin_config_are_kept(load: Load) -> None:
    config = load('[plugins.a]\nmodule = "a"\n[plugins.a.config]\nx = nan\ny = -inf\n')
    assert math.isnan(config.plugin("a").config["x"])
    assert config.plugin("a").config["y"] == -math.inf


def test_environment_is_left_alone(load: Load) -> None:
    cwd = os.getcwd()
    path_before = list(sys.path)
    load(FULL)
    assert os.getcwd() == cwd
    assert sys.path == path_before


# --- key_path: how errors name a key ------------------------------------------------------------


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (("plugins", "corpus", "requires"), "plugins.corpus.requires"),
        (("plugins", "a.b", "module"), 'plugins."a.b".module'),
        (("initgraph", "paths", 2), "initgraph.paths[2]"),
        (("plugins", "x", "config", "a b", 0, "c"), 'plugins.x.config."a b"[0].c'),
        (("domains", "net-1"), "domains.net-1"),
        (("plugins", ""), 'plugins.""'),
        ((), ""),
    ],
)
def test_key_path(parts: tuple[str | int, ...], expected: str) -> None:
    assert key_path(*parts) == expected
