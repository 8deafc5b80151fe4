"""Tests of initgraph._boot.conditions: which plugins a plan leaves out, and why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from initgraph._boot.conditions import skipped_plugins
from initgraph._boot.config import load_config


def skipped(
    plugins: dict[str, dict[str, Any]],
    *,
    environ: dict[str, str] | None = None,
    platform: str = "linux",
    **switches: Any,
) -> dict[str, str]:
    config = load_config(
        {"plugins": {name: {"module": "m", **spec} for name, spec in plugins.items()}},
        check_modules=False,
        **switches,
    )
    return skipped_plugins(config, environ=environ or {}, platform=platform)


def test_nothing_is_skipped_without_conditions() -> None:
    assert skipped({"a": {}, "b": {"requires": ["a"]}}) == {}


def test_disabled_plugins_and_their_dependents_are_skipped_in_plan_order() -> None:
    plugins = {
        "c": {"requires": ["b"]},
        "b": {"requires": ["a"]},
        "a": {"enabled": False},
        "d": {},
    }
    assert skipped(plugins) == {
        "a": "disabled in init.toml",
        "b": "it requires 'a', which is disabled",
        "c": "it requires 'b', which is skipped",
    }


@pytest.mark.parametrize(
    ("when", "environ", "reason"),
    [
        ({"env": "DSN"}, {}, "when.env 'DSN' is not set"),
        ({"env": "DSN"}, {"DSN": ""}, None),  # set, even to nothing
        ({"env_equals": {"MODE": "prod"}}, {}, "when.env_equals 'MODE' is not set"),
        ({"env_equals": {"MODE": "prod"}}, {"MODE": "dev"}, "when.env_equals 'MODE' is not 'prod'"),
        ({"env_equals": {"MODE": "prod"}}, {"MODE": "prod"}, None),
        ({"platform": "win32"}, {}, "when.platform 'win32' does not match 'linux'"),
        (
            {"platform": ["darwin", "win32"]},
            {},
            "when.platform ['darwin', 'win32'] does not match 'linux'",
        ),
        ({"platform": ["darwin", "linux"]}, {}, None),
        ({"env": "A", "platform": "win32"}, {}, "when.env 'A' is not set"),  # the first that fails
    ],
)
def test_when(when: dict[str, Any], environ: dict[str, str], reason: str | None) -> None:
    expected = {} if reason is None else {"a": reason}
    assert skipped({"a": {"when": when}}, environ=environ) == expected


def test_platform_matches_its_start() -> None:
    assert skipped({"a": {"when": {"platform": "freebsd"}}}, platform="freebsd14") == {}


def test_path_exists_is_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "here").mkdir()
    path = tmp_path / "init.toml"
    path.write_text(
        '[plugins.a]\nmodule = "m"\nwhen = {path_exists = "here"}\n'
        '[plugins.b]\nmodule = "m"\nwhen = {path_exists = "gone/x"}\n'
    )
    config = load_config(path, check_modules=False)
    assert skipped_plugins(config, environ={}) == {
        "b": f"when.path_exists {str(tmp_path / 'gone' / 'x')!r} does not exist"
    }


def test_a_skipped_requirement_is_named_skipped() -> None:
    plugins = {"a": {"when": {"env": "X"}}, "b": {"requires": ["a"]}}
    assert skipped(plugins)["b"] == "it requires 'a', which is skipped"


def test_disable_and_enable_for_one_run() -> None:
    plugins = {
        "a": {},
        "b": {"requires": ["a"]},
        "c": {"enabled": False},
        "d": {"when": {"env": "X"}},
    }
    assert skipped(plugins, disable=["a"], enable=["c", "d"]) == {
        "a": "disabled for this run",
        "b": "it requires 'a', which is disabled",
    }
    # One name given as a string is that plugin, not its letters.
    assert skipped(plugins, disable="c") == {
        "c": "disabled for this run",
        "d": "when.env 'X' is not set",
    }
