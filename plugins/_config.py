"""Reading a plugin's config table: typed values with defaults, and errors that name the key.

initgraph hands each plugin its ``[plugins.<name>.config]`` table as a read-only mapping in which
TOML arrays arrive as tuples. A wrong value is a :class:`ValueError` naming the plugin, the key,
what was expected and what was found, raised before the plugin does any work.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from typing import Any

__all__ = [
    "check_keys",
    "get_float",
    "get_floats",
    "get_int",
    "get_str",
    "get_str_table",
    "get_strs",
]


def check_keys(config: Mapping[str, Any], allowed: Collection[str], *, plugin: str) -> None:
    """Refuse a key the plugin does not know, suggesting the closest one it does."""
    for key in sorted(set(config) - set(allowed)):
        close = difflib.get_close_matches(key, sorted(allowed), n=1)
        valid = ", ".join(sorted(allowed))
        if close:
            hint = f"did you mean {close[0]!r}?"
        else:
            hint = f"valid keys: {valid}" if valid else "it takes no config; remove the table"
        msg = f"plugin {plugin!r}: unknown config key {key!r}; {hint}"
        raise ValueError(msg)


def _wrong(plugin: str, key: str, expected: str, value: object) -> ValueError:
    return ValueError(f"plugin {plugin!r}: config key {key!r} must be {expected}, got {value!r}")


def get_str(config: Mapping[str, Any], key: str, default: str, *, plugin: str) -> str:
    """The string at ``key``, or ``default``; an empty string is refused."""
    value = config.get(key, default)
    if not isinstance(value, str) or not value:
        raise _wrong(plugin, key, "a non-empty string", value)
    return value


def get_int(
    config: Mapping[str, Any],
    key: str,
    default: int,
    *,
    plugin: str,
    minimum: int,
    maximum: int | None = None,
) -> int:
    """The integer at ``key``, or ``default``, within ``minimum..maximum`` (booleans refused)."""
    value = config.get(key, default)
    in_range = (
        isinstance(value, int)
        and not isinstance(value, bool)
        and value >= minimum
        and (maximum is None or value <= maximum)
    )
    if not in_range:
        bound = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise _wrong(plugin, key, f"an integer {bound}", value)
    return int(value)


def get_float(
    config: Mapping[str, Any],
    key: str,
    default: float,
    *,
    plugin: str,
    minimum: float,
    maximum: float,
) -> float:
    """The number at ``key``, or ``default``, within ``minimum..maximum`` (booleans refused)."""
    value = config.get(key, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise _wrong(plugin, key, f"a number in {minimum}..{maximum}", value)
    if not minimum <= value <= maximum:
        raise _wrong(plugin, key, f"a number in {minimum}..{maximum}", value)
    return float(value)


def get_floats(
    config: Mapping[str, Any],
    key: str,
    default: tuple[float, ...],
    *,
    plugin: str,
    minimum: float,
    maximum: float,
) -> tuple[float, ...]:
    """The non-empty array of numbers at ``key``, or ``default``, each in ``minimum..maximum``."""
    value = config.get(key, default)
    expected = f"a non-empty array of numbers in {minimum}..{maximum}"
    if not isinstance(value, (list, tuple)) or not value:
        raise _wrong(plugin, key, expected, value)
    for item in value:
        if not isinstance(item, (int, float)) or isinstance(item, bool):
            raise _wrong(plugin, key, expected, value)
        if not minimum <= item <= maximum:
            raise _wrong(plugin, key, expected, value)
    return tuple(float(item) for item in value)


def get_strs(
    config: Mapping[str, Any], key: str, default: tuple[str, ...], *, plugin: str
) -> tuple[str, ...]:
    """The array of non-empty strings at ``key``, or ``default``, as a tuple."""
    value = config.get(key, default)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise _wrong(plugin, key, "an array of non-empty strings", value)
    return tuple(value)


def get_str_table(config: Mapping[str, Any], key: str, *, plugin: str) -> dict[str, str]:
    """The table of strings at ``key`` (empty if absent), in the order the file gives it."""
    value = config.get(key, {})
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in value.items()
    ):
        raise _wrong(plugin, key, "a table of non-empty strings", value)
    return dict(value)
