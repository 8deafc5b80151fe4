"""Loading and validating ``init.toml`` (or a mapping of the same shape) into a frozen :class:`Config`.

Everything is checked here, before any worker starts: TOML syntax, unknown keys, types and values,
references between plugins and domains, dependency cycles and, unless told not to, that every
plugin's module or entry point can be found. Each mistake is a :class:`ConfigError` whose message
reads ``"{file}: {key}: {problem}"``: the file as the user named it (``<dict>`` for a mapping), the
TOML path of the key, and a lowercase problem that says what to do. Any input gives a
:class:`Config` or a :class:`ConfigError`, never another exception.

The result is deeply immutable and pickles, so the boot can hand a plugin's config to a worker.
"""

from __future__ import annotations

import contextlib
import datetime
import difflib
import importlib.metadata
import importlib.util
import math
import os
import re
import reprlib
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

from ._errors import ConfigError
from ._graph import key_path, plan_order, unknown_plugin

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

__all__ = [
    "Config",
    "DomainConfig",
    "FrozenMapping",
    "PluginConfig",
    "Settings",
    "load_config",
]

_K = TypeVar("_K")
_V = TypeVar("_V")

DEFAULT_DOMAIN = "default"
ENTRY_POINT_GROUP = "initgraph"

_TOP_KEYS = ("initgraph", "domains", "plugins")
_SETTINGS_KEYS = (
    "workers",
    "start_method",
    "max_pending",
    "timeout",
    "on_error",
    "paths",
    "entry_points",
)
_DOMAIN_KEYS = ("exclusive",)
_PLUGIN_KEYS = (
    "module",
    "entry_point",
    "requires",
    "domain",
    "where",
    "timeout",
    "optional",
    "config",
)
_START_METHODS = ("fork", "forkserver", "spawn")
_ON_ERROR = ("abort", "continue")
_WHERE = ("pool", "main")

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")
_NAME_RULE = "use letters, digits, '_', '.' and '-', starting with a letter or '_'"
# The core keeps domain names in shared memory with a bounded size.
_MAX_DOMAIN_NAME = 120
# Deeper than any sane config; also what stops a mapping that contains itself.
_MAX_DEPTH = 64

_TOML_SUFFIX = re.compile(r"\s*\(at line (\d+), column (\d+)\)\Z")
_TOML_END = re.compile(r"\s*\(at end of document\)\Z")

_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 5
_repr.maxlevel = 2


class FrozenMapping(Mapping[_K, _V]):
    """A read-only mapping that hashes and pickles: how tables of ``init.toml`` are handed out.

    ``types.MappingProxyType`` would be read-only too, but it cannot be pickled, and a plugin's
    config travels to a worker process.
    """

    __slots__ = ("_data",)
    _data: dict[_K, _V]

    def __init__(self, data: Mapping[_K, _V] | None = None) -> None:
        object.__setattr__(self, "_data", dict(data or {}))

    def __getitem__(self, key: _K) -> _V:
        return self._data[key]

    def __iter__(self) -> Iterator[_K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __repr__(self) -> str:
        return f"FrozenMapping({self._data!r})"

    def __setattr__(self, name: str, value: object) -> NoReturn:
        msg = f"{type(self).__name__} is read-only"
        raise AttributeError(msg)

    def __reduce__(self) -> tuple[type[FrozenMapping[_K, _V]], tuple[dict[_K, _V]]]:
        return (type(self), (self._data,))


_EMPTY: FrozenMapping[str, Any] = FrozenMapping()


@dataclass(frozen=True)
class Settings:
    """The ``[initgraph]`` table: how a boot runs.

    ``workers`` is ``None`` for "auto" (the CPU count); ``start_method`` ``None`` lets the scheduler
    choose; ``timeout`` is the default per-plugin timeout in seconds; ``on_error`` is ``"abort"``
    or ``"continue"``; ``paths`` are absolute directories put in front of ``sys.path``.
    """

    workers: int | None = None
    start_method: str | None = None
    max_pending: int = 32768
    timeout: float | None = 60.0
    on_error: str = "abort"
    paths: tuple[str, ...] = ()
    entry_points: bool = False


@dataclass(frozen=True)
class DomainConfig:
    """One ``[domains.<name>]`` table: an exclusive domain is left out of a full synchronize."""

    name: str
    exclusive: bool = False


@dataclass(frozen=True)
class PluginConfig:
    """One ``[plugins.<name>]`` table: where a plugin comes from, what it needs, where it runs.

    Exactly one of ``module`` and ``entry_point`` is set. ``timeout`` ``None`` means the
    settings' default. ``config`` is the plugin's own ``config`` table, deeply frozen: tables are
    :class:`FrozenMapping`, arrays are tuples.
    """

    name: str
    module: str | None = None
    entry_point: str | None = None
    requires: tuple[str, ...] = ()
    domain: str = DEFAULT_DOMAIN
    where: str = "pool"
    timeout: float | None = None
    optional: bool = False
    config: Mapping[str, Any] = _EMPTY


@dataclass(frozen=True)
class Config:
    """A validated ``init.toml``: settings, domains and plugins, in file order.

    ``path`` is the absolute path of the file (``None`` when built from a mapping). ``domains``
    always holds the registered ``default`` domain first, then the declared ones.
    """

    path: str | None
    settings: Settings
    domains: Mapping[str, DomainConfig]
    plugins: tuple[PluginConfig, ...]
    _by_name: Mapping[str, PluginConfig] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name = FrozenMapping({plugin.name: plugin for plugin in self.plugins})
        object.__setattr__(self, "_by_name", by_name)

    def plugin(self, name: str) -> PluginConfig:
        """The plugin called ``name``; ``KeyError`` if there is none."""
        return self._by_name[name]


def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    check_modules: bool = True,
    **overrides: Any,
) -> Config:
    """Read, validate and freeze a configuration; raise :class:`ConfigError` on any mistake.

    ``source`` is the path of a TOML file or a mapping of the same shape. ``overrides`` replace
    keys of the ``[initgraph]`` table and are validated like them; an override of ``None`` leaves
    the key as it is. Relative ``paths`` are taken from the file's folder (the current directory
    for a mapping). With ``check_modules``, every plugin's module must be findable with those
    paths in front of ``sys.path`` (parent packages get imported, as ``importlib.util.find_spec``
    must), and every entry point must exist in the ``"initgraph"`` group.

    A cyclic ``requires`` raises :class:`CycleError`, a subclass of :class:`ConfigError`.
    """
    if isinstance(source, Mapping):
        doc = _Document("<dict>", None, os.getcwd())
        content: object = source
    elif isinstance(source, (str, os.PathLike)):
        given = os.fspath(source)
        if not isinstance(given, str):
            msg = f"expected the path of an init.toml as str, got {_describe(given)}"
            raise ConfigError(msg)
        absolute = os.path.abspath(given)
        doc = _Document(given, given, os.path.dirname(absolute))
        content = _read_toml(doc)
    else:
        msg = f"expected the path of an init.toml or a mapping, got {_describe(source)}"
        raise ConfigError(msg)

    top = doc.table(content, ())
    doc.check_keys(top, (), _TOP_KEYS)
    settings = _settings(doc, top.get("initgraph", _EMPTY), overrides)
    domains = _domains(doc, top.get("domains", _EMPTY))
    plugins = _plugins(doc, top.get("plugins", _EMPTY), domains)
    plan_order(plugins, path=doc.path)
    if check_modules:
        _check_sources(doc, plugins, settings.paths)
    path = None if doc.path is None else os.path.abspath(doc.path)
    return Config(path=path, settings=settings, domains=domains, plugins=plugins)


class _Document:
    """The source being validated: how to name it in errors, and where relative paths start."""

    def __init__(self, file: str, path: str | None, base: str) -> None:
        self.file = file
        self.path = path
        self.base = base

    def error(self, key: tuple[str | int, ...], problem: str) -> ConfigError:
        """The error for ``problem`` at ``key``, in the ``"{file}: {key}: {problem}"`` shape."""
        where = key_path(*key)
        msg = f"{self.file}: {where}: {problem}" if where else f"{self.file}: {problem}"
        return ConfigError(msg, path=self.path, key=where or None)

    def expected(self, key: tuple[str | int, ...], what: str, value: object) -> ConfigError:
        """The error for a value of the wrong type or range."""
        return self.error(key, f"expected {what}, got {_describe(value)}")

    def table(self, value: object, key: tuple[str | int, ...]) -> Mapping[str, Any]:
        """``value`` as a table: a mapping whose keys are all strings."""
        if not isinstance(value, Mapping):
            raise self.expected(key, "a table", value)
        for name in value:
            if not isinstance(name, str):
                raise self.error(key, f"expected string keys, got {_describe(name)}")
        return value

    def check_keys(
        self, table: Mapping[str, Any], key: tuple[str | int, ...], valid: Sequence[str]
    ) -> None:
        """Refuse the first key of ``table`` that is not in ``valid``, naming the closest one."""
        for name in table:
            if name not in valid:
                raise self.error((*key, name), _unknown("key", name, valid))


def _unknown(kind: str, name: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1)
    if close:
        return f"unknown {kind}; did you mean {close[0]!r}?"
    return f"unknown {kind}; valid keys: {', '.join(sorted(valid))}"


def _describe(value: object) -> str:
    """``repr (type)`` of a value for messages: short, and safe whatever the value is."""
    try:
        text = _repr.repr(value)
    except Exception:
        text = f"<{type(value).__name__} object>"
    return f"{text} ({type(value).__name__})"


def _read_toml(doc: _Document) -> object:
    """Parse the file, turning every way it can fail into a ConfigError naming the file."""
    try:
        with open(doc.file, "rb") as stream:
            data = stream.read()
    except (FileNotFoundError, NotADirectoryError):
        raise doc.error((), "no such file; pass the path of an init.toml") from None
    except IsADirectoryError:
        raise doc.error((), "is a directory; pass the path of an init.toml") from None
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise doc.error((), f"cannot read it: {_lower_first(reason)}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _line_col(data[: exc.start].decode("utf-8"))
        problem = f"byte {data[exc.start]:#04x} is not UTF-8; save the file as UTF-8"
        raise ConfigError(
            f"{doc.file}:{line}:{col}: invalid TOML: {problem}", path=doc.path
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        problem, line, col = _toml_position(exc, text)
        msg = f"{doc.file}:{line}:{col}: invalid TOML: {problem}"
        raise ConfigError(msg, path=doc.path) from None
    except RecursionError:
        msg = f"{doc.file}: invalid TOML: arrays or tables nested too deeply"
        raise ConfigError(msg, path=doc.path) from None
    except ValueError as exc:
        # tomllib lets some errors from int() through, such as an integer with too many digits.
        msg = f"{doc.file}: invalid TOML: {_lower_first(str(exc))}"
        raise ConfigError(msg, path=doc.path) from None


def _toml_position(exc: tomllib.TOMLDecodeError, text: str) -> tuple[str, int, int]:
    """The message, line and column of a TOML error (before 3.14 they are only in the text)."""
    message = str(exc)
    lineno = getattr(exc, "lineno", None)
    colno = getattr(exc, "colno", None)
    if isinstance(lineno, int) and isinstance(colno, int):
        problem = getattr(exc, "msg", message)
        return _lower_first(_TOML_SUFFIX.sub("", str(problem))), lineno, colno
    found = _TOML_SUFFIX.search(message)
    if found:
        line, col = int(found[1]), int(found[2])
    else:
        line, col = _line_col(text)
    problem = _TOML_END.sub("", _TOML_SUFFIX.sub("", message))
    return _lower_first(problem), line, col


def _line_col(text: str) -> tuple[int, int]:
    """1-based line and column of the position just after ``text``."""
    line = text.count("\n") + 1
    return line, len(text) - (text.rfind("\n") + 1) + 1


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


