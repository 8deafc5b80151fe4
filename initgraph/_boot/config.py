"""Loading and validating ``init.toml``, or a mapping of the same shape, into a frozen Config.

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
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from .._defs import DEFAULT_DOMAIN, ENTRY_POINT_GROUP, MAX_NICE, MOST, START_METHODS, WHY
from .._errors import ConfigError
from .graph import plan_order
from .keys import key_path, unknown_plugin

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
    "When",
    "load_config",
]

_K = TypeVar("_K")
_V = TypeVar("_V")
_T = TypeVar("_T")

# A key path inside the document: table names, keys and list indexes.
_Key = tuple[str | int, ...]

_TOP_KEYS = ("initgraph", "domains", "plugins")
_SETTINGS_KEYS = (
    "workers",
    "start_method",
    "max_pending",
    "max_result_bytes",
    "worker_threads",
    "worker_nice",
    "timeout",
    "on_error",
    "paths",
    "entry_points",
    "retries",
    "retry_delay",
    "retry_delay_max",
    "shutdown_timeout",
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
    "enabled",
    "when",
    "retries",
    "retry_delay",
    "retry_on",
    "retry_crashes",
    "shutdown_timeout",
    "config",
)
_WHEN_KEYS = ("env", "env_equals", "platform", "path_exists")
_ON_ERROR = ("abort", "continue")
_WHERE = ("pool", "main")

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")
_EXCEPTION_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+\Z")
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
_repr.maxlong = 60
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
    ``retries`` and ``retry_delay`` are the plugins' defaults; a retry's delay doubles after each
    attempt up to ``retry_delay_max``. ``shutdown_timeout`` caps the whole shutdown, in seconds.
    ``max_result_bytes`` bounds each value that crosses between processes (a plugin's result, the
    results a pool plugin requires); ``None``, no bound but the memory. ``worker_threads``: the
    threads each worker's native pools (BLAS, OpenMP) may use; ``None``, its share of the cores.
    ``worker_nice``: how much lower than the parent's the workers' CPU priority is (``nice``,
    0-19): with the cores busy, the parent's threads (an embedding service's event loop, the
    boot's coordination) then get a CPU first.
    """

    workers: int | None = None
    start_method: str | None = None
    max_pending: int = 32768
    timeout: float | None = 60.0
    on_error: str = "abort"
    paths: tuple[str, ...] = ()
    entry_points: bool = False
    retries: int = 0
    retry_delay: float = 1.0
    retry_delay_max: float = 60.0
    shutdown_timeout: float = 30.0
    max_result_bytes: int | None = None
    worker_threads: int | None = None
    worker_nice: int = 0


@dataclass(frozen=True)
class DomainConfig:
    """One ``[domains.<name>]`` table: an exclusive domain is left out of a full synchronize."""

    name: str
    exclusive: bool = False


@dataclass(frozen=True)
class When:
    """A plugin's ``when`` table: conditions, all of which must hold at plan time for it to run.

    ``env``: an environment variable that must be set; ``env_equals``: variables that must have
    these values; ``platform``: ``sys.platform`` must equal or start with one of these;
    ``path_exists``: an absolute path (written relative to the file's folder) that must exist.
    """

    env: str | None = None
    env_equals: Mapping[str, str] = _EMPTY
    platform: tuple[str, ...] = ()
    path_exists: str | None = None


@dataclass(frozen=True)
class PluginConfig:
    """One ``[plugins.<name>]`` table: where a plugin comes from, what it needs, where it runs.

    Exactly one of ``module`` and ``entry_point`` is set. ``timeout`` ``None`` means the
    settings' default. ``config`` is the plugin's own ``config`` table, deeply frozen: tables are
    :class:`FrozenMapping`, arrays are tuples. ``enabled`` and ``when`` decide at plan time whether
    it runs (a plugin left out is skipped, not failed). ``retries`` and ``retry_delay`` ``None``
    mean the settings' defaults; ``retry_on`` names exception types (``"module.Name"``) retried
    besides ``initgraph.NotReady``; ``retry_crashes`` retries crashes and timeouts too;
    ``shutdown_timeout`` bounds its shutdown hook, in seconds.
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
    enabled: bool = True
    when: When = When()
    retries: int | None = None
    retry_delay: float | None = None
    retry_on: tuple[str, ...] = ()
    retry_crashes: bool = False
    shutdown_timeout: float = 10.0


@dataclass(frozen=True)
class Config:
    """A validated ``init.toml``: settings, domains and plugins, in file order.

    ``path`` is the absolute path of the file (``None`` when built from a mapping). ``domains``
    always holds the registered ``default`` domain first, then the declared ones. ``enable`` and
    ``disable`` name plugins turned on or off for one run, whatever ``enabled`` and ``when`` say.
    """

    path: str | None
    settings: Settings
    domains: Mapping[str, DomainConfig]
    plugins: tuple[PluginConfig, ...]
    enable: tuple[str, ...] = ()
    disable: tuple[str, ...] = ()

    def plugin(self, name: str) -> PluginConfig:
        """The plugin called ``name``; ``KeyError`` if there is none."""
        for plugin in self.plugins:
            if plugin.name == name:
                return plugin
        raise KeyError(name)


def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    check_modules: bool = True,
    enable: Sequence[str] | None = None,
    disable: Sequence[str] | None = None,
    **overrides: Any,
) -> Config:
    """Read, validate and freeze a configuration; raise :class:`ConfigError` on any mistake.

    ``source`` is the path of a TOML file or a mapping of the same shape. ``overrides`` replace
    keys of the ``[initgraph]`` table and are validated like them; an override of ``None`` leaves
    the key as it is. Relative ``paths`` are taken from the file's folder (the current directory
    for a mapping). With ``check_modules``, every plugin's module must be findable with those
    paths in front of ``sys.path`` (parent packages get imported, as ``importlib.util.find_spec``
    must), and every entry point must exist in the ``"initgraph"`` group. ``enable`` and
    ``disable`` name plugins to run or skip this time, overriding their ``enabled`` and ``when``
    (``initgraph run --enable/--disable``).

    A cyclic ``requires`` raises :class:`CycleError`, a subclass of :class:`ConfigError`.
    """
    # Typed as object here because callers may pass anything, and anything must be a ConfigError.
    given: object = source
    if isinstance(given, Mapping):
        doc = _Document("<dict>", None, os.getcwd())
        content: object = given
    elif isinstance(given, (str, os.PathLike)):
        try:
            given = os.fspath(given)
        except TypeError as exc:  # an __fspath__ that returns neither str nor bytes
            raise ConfigError(f"expected the path of an init.toml, got {_describe(given)}") from exc
        if not isinstance(given, str):
            msg = f"expected the path of an init.toml as str, got {_describe(given)}"
            raise ConfigError(msg)
        absolute = os.path.abspath(given)
        doc = _Document(given, given, os.path.dirname(absolute))
        content = _read_toml(doc)
    else:
        msg = f"expected the path of an init.toml or a mapping, got {_describe(given)}"
        raise ConfigError(msg)

    top = doc.table(content, ())
    doc.check_keys(top, (), _TOP_KEYS)
    settings = _settings(doc, top.get("initgraph", _EMPTY), overrides)
    domains = _domains(doc, top.get("domains", _EMPTY))
    plugins = _plugins(doc, top.get("plugins", _EMPTY), domains)
    plan_order(plugins, path=doc.path)
    names = [plugin.name for plugin in plugins]
    turned_on = _switched(doc, "enable", enable, names)
    turned_off = _switched(doc, "disable", disable, names)
    for name in turned_on:
        if name in turned_off:
            raise doc.error(("enable",), f"{name!r} is both enabled and disabled; pick one")
    if check_modules:
        _check_sources(doc, plugins, settings.paths)
    path = None if doc.path is None else os.path.abspath(doc.path)
    return Config(path, settings, domains, plugins, turned_on, turned_off)


class _Document:
    """The source being validated: how to name it in errors, and where relative paths start."""

    def __init__(self, file: str, path: str | None, base: str) -> None:
        self.file = file
        self.path = path
        self.base = base

    def error(self, key: _Key, problem: str) -> ConfigError:
        """The error for ``problem`` at ``key``, in the ``"{file}: {key}: {problem}"`` shape."""
        where = key_path(*key)
        msg = f"{self.file}: {where}: {problem}" if where else f"{self.file}: {problem}"
        return ConfigError(msg, path=self.path, key=where or None)

    def expected(self, key: _Key, what: str, value: object) -> ConfigError:
        """The error for a value of the wrong type or range."""
        return self.error(key, f"expected {what}, got {_describe(value)}")

    def table(self, value: object, key: _Key) -> Mapping[str, Any]:
        """``value`` as a table: a mapping whose keys are all strings."""
        if not isinstance(value, Mapping):
            raise self.expected(key, "a table", value)
        for name in value:
            if not isinstance(name, str):
                raise self.error(key, f"expected string keys, got {_describe(name)}")
        return value

    def check_keys(self, table: Mapping[str, Any], key: _Key, valid: Sequence[str]) -> None:
        """Refuse the first key of ``table`` that is not in ``valid``, naming the closest one."""
        for name in table:
            if name not in valid:
                raise self.error((*key, name), _unknown("key", name, valid))


# Checks a value at a key and returns it as it is kept, or raises the ConfigError that says why not.
_Check = Callable[[_Document, object, _Key], _T]


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


def _field(
    doc: _Document,
    table: Mapping[str, Any],
    key: _Key,
    name: str,
    check: _Check[_T],
    default: _T,
) -> _T:
    """The value of ``name`` in ``table`` checked by ``check``, or ``default`` when it is absent."""
    if name not in table:
        return default
    return check(doc, table[name], (*key, name))


def _settings(doc: _Document, value: object, overrides: Mapping[str, Any]) -> Settings:
    key: _Key = ("initgraph",)
    table = doc.table(value, key)
    doc.check_keys(table, key, _SETTINGS_KEYS)
    for name in overrides:
        if name not in _SETTINGS_KEYS:
            raise doc.error((*key, name), _unknown("override", name, _SETTINGS_KEYS))
    merged = {**table, **{name: v for name, v in overrides.items() if v is not None}}
    here: tuple[str, ...] = (".",)
    paths = _field(doc, merged, key, "paths", _directories, here)
    return Settings(
        workers=_field(doc, merged, key, "workers", _workers, None),
        start_method=_field(doc, merged, key, "start_method", _choice(*START_METHODS), None),
        max_pending=_field(doc, merged, key, "max_pending", _positive_int, 32768),
        timeout=_field(doc, merged, key, "timeout", _finite_seconds, 60.0),
        on_error=_field(doc, merged, key, "on_error", _choice(*_ON_ERROR), "abort"),
        paths=tuple(os.path.abspath(os.path.join(doc.base, path)) for path in paths),
        entry_points=_field(doc, merged, key, "entry_points", _bool, False),
        retries=_field(doc, merged, key, "retries", _retries, 0),
        retry_delay=_field(doc, merged, key, "retry_delay", _finite_seconds, 1.0),
        retry_delay_max=_field(doc, merged, key, "retry_delay_max", _finite_seconds, 60.0),
        shutdown_timeout=_field(doc, merged, key, "shutdown_timeout", _finite_seconds, 30.0),
        max_result_bytes=_field(doc, merged, key, "max_result_bytes", _byte_count, None),
        worker_threads=_field(doc, merged, key, "worker_threads", _positive_int, None),
        worker_nice=_field(doc, merged, key, "worker_nice", _nice, 0),
    )


def _domains(doc: _Document, value: object) -> FrozenMapping[str, DomainConfig]:
    key: _Key = ("domains",)
    table = doc.table(value, key)
    domains = {DEFAULT_DOMAIN: DomainConfig(DEFAULT_DOMAIN)}
    for name, spec in table.items():
        at = (*key, name)
        if not _NAME.match(name) or len(name) > _MAX_DOMAIN_NAME:
            problem = f"invalid domain name; {_NAME_RULE}, at most {_MAX_DOMAIN_NAME} characters"
            raise doc.error(at, problem)
        body = doc.table(spec, at)
        doc.check_keys(body, at, _DOMAIN_KEYS)
        exclusive = _field(doc, body, at, "exclusive", _bool, False)
        if name == DEFAULT_DOMAIN and exclusive:
            problem = "the default domain is always registered; give the exclusive domain a name"
            raise doc.error((*at, "exclusive"), problem)
        domains[name] = DomainConfig(name, exclusive)
    return FrozenMapping(domains)


def _plugins(
    doc: _Document, value: object, domains: Mapping[str, DomainConfig]
) -> tuple[PluginConfig, ...]:
    table = doc.table(value, ("plugins",))
    return tuple(_plugin(doc, name, spec, list(table), domains) for name, spec in table.items())


def _plugin(
    doc: _Document,
    name: str,
    value: object,
    names: Sequence[str],
    domains: Mapping[str, DomainConfig],
) -> PluginConfig:
    at: _Key = ("plugins", name)
    if not _NAME.match(name):
        raise doc.error(at, f"invalid plugin name; {_NAME_RULE}")
    body = doc.table(value, at)
    doc.check_keys(body, at, _PLUGIN_KEYS)
    module = _field(doc, body, at, "module", _module_name, None)
    entry_point = _field(doc, body, at, "entry_point", _entry_point_name, None)
    if module is not None and entry_point is not None:
        raise doc.error(at, "both module and entry_point are set; keep one")
    if module is None and entry_point is None:
        problem = 'neither module nor entry_point is set; add module = "package.module"'
        raise doc.error(at, f'{problem} or entry_point = "name"')
    nothing: tuple[str, ...] = ()
    requires = _field(doc, body, at, "requires", _plugin_names, nothing)
    _check_requires(doc, name, requires, names)
    domain = _field(doc, body, at, "domain", _domain_name, DEFAULT_DOMAIN)
    if domain not in domains:
        raise doc.error((*at, "domain"), _unknown_domain(domain, list(domains)))
    return PluginConfig(
        name=name,
        module=module,
        entry_point=entry_point,
        requires=requires,
        domain=domain,
        where=_field(doc, body, at, "where", _choice(*_WHERE), "pool"),
        timeout=_field(doc, body, at, "timeout", _finite_seconds, None),
        optional=_field(doc, body, at, "optional", _bool, False),
        config=_field(doc, body, at, "config", _config_table, _EMPTY),
        enabled=_field(doc, body, at, "enabled", _bool, True),
        when=_field(doc, body, at, "when", _when, When()),
        retries=_field(doc, body, at, "retries", _retries, None),
        retry_delay=_field(doc, body, at, "retry_delay", _finite_seconds, None),
        retry_on=_field(doc, body, at, "retry_on", _exception_names, ()),
        retry_crashes=_field(doc, body, at, "retry_crashes", _bool, False),
        shutdown_timeout=_field(doc, body, at, "shutdown_timeout", _finite_seconds, 10.0),
    )


def _check_requires(
    doc: _Document, name: str, requires: tuple[str, ...], names: Sequence[str]
) -> None:
    key = ("plugins", name, "requires")
    seen: set[str] = set()
    for required in requires:
        if required == name:
            raise doc.error(key, f"plugin {name!r} cannot require itself; remove it")
        if required in seen:
            raise doc.error(key, f"{required!r} is listed twice; list each plugin once")
        if required not in names:
            raise doc.error(key, unknown_plugin(required, names))
        seen.add(required)


def _switched(doc: _Document, what: str, value: object, names: Sequence[str]) -> tuple[str, ...]:
    """The plugins named by an ``enable`` or ``disable`` override: each must exist."""
    if value is None:
        return ()
    if isinstance(value, str):  # one name, not its letters
        value = [value]
    listed = _strings(doc, value, (what,), "plugin name")
    for name in listed:
        if name not in names:
            raise doc.error((what,), unknown_plugin(name, names))
    return tuple(dict.fromkeys(listed))


def _unknown_domain(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"unknown domain {name!r}; did you mean {close[0]!r}?"
    return f"unknown domain {name!r}; declare it as [{key_path('domains', name)}]"


# Checkers: each takes the document, a value and its key, and returns the value as it is kept.


def _positive_int(doc: _Document, value: object, key: _Key) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return _at_most(doc, value, key)
    raise doc.expected(key, "a positive integer", value)


def _nice(doc: _Document, value: object, key: _Key) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_NICE:
        return value
    raise doc.expected(
        key, f"an integer from 0 to {MAX_NICE} (how much nicer than the parent)", value
    )


def _byte_count(doc: _Document, value: object, key: _Key) -> int:
    """A size in bytes: a positive integer, bounded by nothing but the machine's memory."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise doc.expected(key, "a positive integer (bytes)", value)


def _retries(doc: _Document, value: object, key: _Key) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise doc.expected(key, "0 or more retries", value)


def _exception_names(doc: _Document, value: object, key: _Key) -> tuple[str, ...]:
    names = _strings(doc, value, key, "exception name")
    for index, name in enumerate(names):
        if not _EXCEPTION_NAME.match(name):
            what = 'an exception as "module.Name" (builtins.OSError for a builtin)'
            raise doc.expected((*key, index), what, name)
    return names


def _workers(doc: _Document, value: object, key: _Key) -> int | None:
    if isinstance(value, str) and value == "auto":
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return _at_most(doc, value, key)
    raise doc.expected(key, 'a positive integer or "auto"', value)


def _at_most(doc: _Document, value: int, key: _Key) -> int:
    """The scheduler's own bound (``_limits``), found here rather than at start-up."""
    name = str(key[-1])
    most = MOST.get(name)
    if most is not None and value > most:
        raise doc.error(key, f"must be at most {most:,} ({WHY[name]}), got {value:,}")
    return value


def _finite_seconds(doc: _Document, value: object, key: _Key) -> float:
    """A timeout in init.toml: a positive, finite number of seconds; ``inf`` is refused.

    Unlike a ``timeout`` argument of the API, where ``inf`` means "no limit", a timeout written
    in init.toml is always a real bound: leaving the key out is how a plugin takes the default.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
        if 0 < seconds < math.inf:
            return seconds
    raise doc.expected(key, "a positive number of seconds", value)


def _bool(doc: _Document, value: object, key: _Key) -> bool:
    if isinstance(value, bool):
        return value
    raise doc.expected(key, "true or false", value)


def _choice(*options: str) -> _Check[str]:
    """A checker accepting exactly one of ``options``."""
    listed = ", ".join(f'"{option}"' for option in options)

    def check(doc: _Document, value: object, key: _Key) -> str:
        if isinstance(value, str):
            if value in options:
                return value
            # The type is right, only the value is not: naming the type would be noise.
            raise doc.error(key, f"expected one of {listed}, got {_repr.repr(value)}")
        raise doc.expected(key, f"one of {listed}", value)

    return check


def _strings(doc: _Document, value: object, key: _Key, what: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        raise doc.expected(key, f"a list of {what}s", value)
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise doc.expected((*key, index), f"a {what}", item)
    return tuple(value)


def _plugin_names(doc: _Document, value: object, key: _Key) -> tuple[str, ...]:
    return _strings(doc, value, key, "plugin name")


def _directories(doc: _Document, value: object, key: _Key) -> tuple[str, ...]:
    paths = _strings(doc, value, key, "directory path")
    for index, path in enumerate(paths):
        if "\0" in path:
            raise doc.expected((*key, index), "a directory path", path)
    return paths


def _module_name(doc: _Document, value: object, key: _Key) -> str:
    if isinstance(value, str) and all(part.isidentifier() for part in value.split(".")):
        return value
    raise doc.expected(key, "a dotted module name", value)


def _entry_point_name(doc: _Document, value: object, key: _Key) -> str:
    if isinstance(value, str) and value.strip():
        return value
    raise doc.expected(key, "an entry point name", value)


def _domain_name(doc: _Document, value: object, key: _Key) -> str:
    if isinstance(value, str):
        return value
    raise doc.expected(key, "a domain name", value)


def _when(doc: _Document, value: object, key: _Key) -> When:
    table = doc.table(value, key)
    doc.check_keys(table, key, _WHEN_KEYS)
    path = _field(doc, table, key, "path_exists", _path, None)
    return When(
        env=_field(doc, table, key, "env", _variable, None),
        env_equals=_field(doc, table, key, "env_equals", _variable_values, _EMPTY),
        platform=_field(doc, table, key, "platform", _platforms, ()),
        path_exists=None if path is None else os.path.abspath(os.path.join(doc.base, path)),
    )


def _variable(doc: _Document, value: object, key: _Key) -> str:
    if isinstance(value, str) and value and "=" not in value and "\0" not in value:
        return value
    raise doc.expected(key, "an environment variable name", value)


def _variable_values(doc: _Document, value: object, key: _Key) -> FrozenMapping[str, str]:
    table = doc.table(value, key)
    for name, wanted in table.items():
        _variable(doc, name, (*key, name))
        if not isinstance(wanted, str):
            raise doc.expected((*key, name), "a string", wanted)
    return FrozenMapping(table)


def _platforms(doc: _Document, value: object, key: _Key) -> tuple[str, ...]:
    what = 'a platform name such as "linux", or a list of them'
    listed = [value] if isinstance(value, str) else value
    if (
        isinstance(listed, (list, tuple))
        and listed
        and all(isinstance(item, str) and item for item in listed)
    ):
        return tuple(listed)
    raise doc.expected(key, what, value)


def _path(doc: _Document, value: object, key: _Key) -> str:
    if isinstance(value, str) and value and "\0" not in value:
        return value
    raise doc.expected(key, "a path", value)


def _config_table(doc: _Document, value: object, key: _Key) -> FrozenMapping[str, Any]:
    frozen = _frozen(doc, doc.table(value, key), key)
    assert isinstance(frozen, FrozenMapping)
    return frozen


def _frozen(doc: _Document, value: object, key: _Key) -> Any:
    """``value`` checked to be a TOML value and made immutable: tables become FrozenMapping."""
    if len(key) > _MAX_DEPTH:
        raise doc.error(key, f"nested more than {_MAX_DEPTH} levels deep; flatten it")
    if isinstance(value, (str, bool, int, float, datetime.date, datetime.time)):
        return value
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(doc, item, (*key, index)) for index, item in enumerate(value))
    if isinstance(value, Mapping):
        table = doc.table(value, key)
        return FrozenMapping(
            {name: _frozen(doc, item, (*key, name)) for name, item in table.items()}
        )
    what = "a TOML value (string, number, boolean, date, time, array or table)"
    raise doc.expected(key, what, value)


def _check_sources(doc: _Document, plugins: Sequence[PluginConfig], paths: Sequence[str]) -> None:
    """Check that every plugin's module or entry point exists, with ``paths`` on ``sys.path``."""
    # A module written since the interpreter started may hide behind a finder's stale cache.
    importlib.invalidate_caches()
    group: list[str] | None = None
    with _prepended_sys_path(paths):
        for plugin in plugins:
            at: _Key = ("plugins", plugin.name)
            if plugin.module is not None:
                _find_module(doc, plugin.module, (*at, "module"))
            elif plugin.entry_point is not None:
                if group is None:
                    group = _entry_point_names(doc, (*at, "entry_point"))
                if plugin.entry_point not in group:
                    problem = _unknown_entry_point(plugin.entry_point, group)
                    raise doc.error((*at, "entry_point"), problem)


@contextlib.contextmanager
def _prepended_sys_path(paths: Sequence[str]) -> Iterator[None]:
    """Put ``paths`` in front of ``sys.path`` for the duration, then restore it exactly."""
    saved = list(sys.path)
    sys.path[:0] = paths
    try:
        yield
    finally:
        sys.path[:] = saved


def _find_module(doc: _Document, module: str, key: _Key) -> None:
    missing = f"no module named {module!r}; check the name and [initgraph] paths"
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError as exc:
        # Only a missing parent package means the module is missing; a package that fails to
        # import something of its own is a different mistake, reported below.
        if not _is_parent(exc.name, module):
            raise doc.error(key, _finding_failed(module, exc)) from exc
        raise doc.error(key, missing) from None
    except Exception as exc:
        raise doc.error(key, _finding_failed(module, exc)) from exc
    if spec is None:
        raise doc.error(key, missing)


def _is_parent(name: str | None, module: str) -> bool:
    return name is not None and (module == name or module.startswith(f"{name}."))


def _finding_failed(module: str, exc: BaseException) -> str:
    try:
        text = f"{type(exc).__name__}: {exc}"
    except Exception:
        text = type(exc).__name__
    return f"looking for module {module!r} failed: {text}; fix its package or [initgraph] paths"


def _entry_point_names(doc: _Document, key: _Key) -> list[str]:
    try:
        return [entry.name for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)]
    except Exception as exc:
        raise doc.error(key, f"cannot read the installed entry points: {exc}") from exc


def _unknown_entry_point(name: str, known: Sequence[str]) -> str:
    problem = f"no entry point named {name!r} in the {ENTRY_POINT_GROUP!r} group"
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"{problem}; did you mean {close[0]!r}?"
    return f'{problem}; install the package that provides it or use module = "..." instead'
