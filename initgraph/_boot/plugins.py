"""Plugins: loading them into pluggy, the contexts hooks get, and the initcall that runs a plugin.

The initcall :func:`run_init` is what a worker runs for a plugin. It rebuilds the boot's plugin
manager in the worker once (with ``fork`` it is inherited ready-made) so that hook wrappers of
every plugin wrap the init of each one, exactly as in the parent.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import logging
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pluggy

from .. import hookspecs
from .._core import runtime as _runtime
from .._core.store import Handle
from .._defs import ENTRY_POINT_GROUP
from .._errors import OrderingError, PluginError

__all__ = [
    "NOT_IMPLEMENTED",
    "CommitContext",
    "InitContext",
    "InitResult",
    "InitSpec",
    "LazyResults",
    "PluginSource",
    "call_one",
    "implements",
    "load_plugins",
    "run_init",
]

HOOKS = sorted(n for n in dir(hookspecs) if n.startswith("initgraph_"))


class _NotImplemented:
    def __repr__(self) -> str:
        return "NOT_IMPLEMENTED"


NOT_IMPLEMENTED: Any = _NotImplemented()


@dataclass(frozen=True)
class PluginSource:
    """Where a plugin's code comes from: a module name or an entry point of group initgraph."""

    name: str
    module: str | None = None
    entry_point: str | None = None

    def describe(self) -> str:
        return f"module {self.module}" if self.module else f"entry point {self.entry_point}"


@contextlib.contextmanager
def on_path(paths: Sequence[str]) -> Iterator[None]:
    added = [p for p in paths if p not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for p in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(p)


def load_plugins(sources: Sequence[PluginSource], paths: Sequence[str]) -> pluggy.PluginManager:
    """A plugin manager with every plugin registered under its name, checked for misspellings.

    Raises PluginError naming the plugin whose module fails to import, whose hook
    implementation does not match the contract, or which implements an unknown hook.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    owners: dict[int, str] = {}
    with on_path(paths):
        for source in sources:
            obj = _load(source)
            other = owners.get(id(obj))
            if other is not None:
                msg = (
                    f"plugin {source.name!r}: {source.describe()} already backs plugin "
                    f"{other!r}; each plugin needs a module of its own"
                )
                raise PluginError(msg, plugin=source.name)
            owners[id(obj)] = source.name
            try:
                pm.register(obj, name=source.name)
            except (pluggy.PluginValidationError, ValueError) as exc:
                msg = f"plugin {source.name!r} breaks the hook contract: {exc}"
                raise PluginError(msg, plugin=source.name) from exc
    for name, plugin in pm.list_name_plugin():
        for attr in dir(plugin):
            if attr.startswith("initgraph_") and attr not in HOOKS:
                if not callable(getattr(plugin, attr, None)):
                    continue
                close = difflib.get_close_matches(attr, HOOKS, n=1)
                hint = (
                    f"; did you mean {close[0]!r}?" if close else f"; hooks are {', '.join(HOOKS)}"
                )
                msg = f"plugin {name!r} implements unknown hook {attr!r}{hint}"
                raise PluginError(msg, plugin=str(name))
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        plugin_name = pm.get_name(exc.plugin) or "?"
        msg = f"plugin {plugin_name!r}: {exc}"
        raise PluginError(msg, plugin=plugin_name) from exc
    return pm


def _load(source: PluginSource) -> Any:
    try:
        if source.module is not None:
            return importlib.import_module(source.module)
        from importlib import metadata

        eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
        matches = [ep for ep in eps if ep.name == source.entry_point]
        if not matches:
            msg = (
                f"plugin {source.name!r}: no entry point {source.entry_point!r} in group "
                f"{ENTRY_POINT_GROUP!r}; is its distribution installed?"
            )
            raise PluginError(msg, plugin=source.name)
        return matches[0].load()
    except PluginError:
        raise
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        msg = (
            f"plugin {source.name!r}: importing {source.describe()} failed: "
            f"{type(exc).__name__}: {exc}"
        )
        raise PluginError(msg, plugin=source.name) from exc


def implements(pm: pluggy.PluginManager, hook_name: str, plugin: str) -> bool:
    """Whether ``plugin`` has an implementation of the hook of its own, not just a wrapper.

    Wrappers (``wrapper=True`` or ``hookwrapper=True``, of any plugin) wrap only the plugins
    that implement the hook: :func:`call_one` calls nothing for the others.
    """
    impls = getattr(pm.hook, hook_name).get_hookimpls()
    return any(i.plugin_name == plugin and not (i.wrapper or i.hookwrapper) for i in impls)


def call_one(pm: pluggy.PluginManager, hook_name: str, plugin: str, **kwargs: Any) -> Any:
    """Call ``plugin``'s implementation of a hook, wrapped by every plugin's wrappers.

    Returns NOT_IMPLEMENTED, calling no wrapper, when the plugin does not implement the hook.
    """
    if not implements(pm, hook_name, plugin):
        return NOT_IMPLEMENTED
    hook = getattr(pm.hook, hook_name)
    impls = hook.get_hookimpls()
    chosen = [i for i in impls if i.wrapper or i.hookwrapper or i.plugin_name == plugin]
    firstresult = bool(hook.spec and hook.spec.opts.get("firstresult"))
    return pm._hookexec(hook.name, chosen, kwargs, firstresult)


# -- the contexts ---------------------------------------------------------------------------------
class _Context:
    """What every hook of a plugin sees."""

    def __init__(
        self,
        *,
        name: str,
        cookie: int,
        domain: str,
        config: Mapping[str, Any],
        results: Mapping[str, Any],
    ) -> None:
        self.name = name
        self.cookie = cookie
        self.domain = domain
        self.config = config
        self.results = results
        self.log = logging.getLogger(f"initgraph.plugin.{name}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.cookie}_{self.name} domain={self.domain!r}>"


class InitContext(_Context):
    """The context of ``initgraph_init``: ``synchronize()`` then ``publish()``, kernel style."""

    __module__ = "initgraph"

    def __init__(self, *, sync: Callable[[int, str, float | None], None], **kw: Any) -> None:
        super().__init__(**kw)
        self._sync = sync
        self._synchronized = False
        self.publications: list[tuple[str, Any]] = []

    def synchronize(self, timeout: float | None = None) -> None:
        """Wait until every lower cookie of this plugin's domain is done: its turn to publish."""
        self._sync(self.cookie, self.domain, timeout)
        self._synchronized = True

    def publish(self, key: str, value: Any) -> None:
        """Publish ``key`` after every earlier plugin's publications in this domain."""
        if not self._synchronized:
            msg = (
                f"plugin {self.name!r} published {key!r} in initgraph_init before "
                f"ctx.synchronize(); call ctx.synchronize() first, or publish from "
                f"initgraph_commit"
            )
            raise OrderingError(msg)
        _check_key(self.name, key)
        self.publications.append((key, value))


class CommitContext(_Context):
    """The context of ``initgraph_commit``, in the parent, in cookie order within the domain."""

    __module__ = "initgraph"

    def __init__(self, *, registry: Any, publish: Callable[[str, Any], None], **kw: Any) -> None:
        super().__init__(**kw)
        self.registry = registry
        self._publish = publish

    def synchronize(self, timeout: float | None = None) -> None:
        """Nothing to wait for: a commit runs only after every lower cookie of its domain."""

    def publish(self, key: str, value: Any) -> None:
        """Publish ``key`` to the registry now."""
        _check_key(self.name, key)
        self._publish(key, value)


def _check_key(plugin: str, key: Any) -> None:
    if not isinstance(key, str) or not key:
        msg = f"plugin {plugin!r} published key {key!r}; keys are non-empty str"
        raise PluginError(msg, plugin=plugin)


# -- the initcall of a plugin ---------------------------------------------------------------------
@dataclass(frozen=True)
class InitSpec:
    """Everything a worker needs to run one plugin's init."""

    boot_id: str
    plugin: str
    domain: str
    config: Mapping[str, Any]
    results: Mapping[str, Any]
    sources: tuple[PluginSource, ...]
    paths: tuple[str, ...]


@dataclass(frozen=True)
class InitResult:
    """What a plugin's init produced: its value and what it published, in order."""

    value: Any
    publications: tuple[tuple[str, Any], ...] = field(default=())


class LazyResults(Mapping[str, Any]):
    """``ctx.results`` in a worker: a required plugin's result is loaded when first read.

    The boot puts the store handles of required results into the init's data, forwarded
    without being loaded in the parent; a plugin that never reads ``ctx.results["x"]`` never
    maps it. Arrays read here are read-only views of shared memory (``arr.copy()`` to write).
    """

    def __init__(self, given: Mapping[str, Any]) -> None:
        self._given = given
        self._loaded: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name in self._loaded:
            return self._loaded[name]
        value = self._given[name]
        if isinstance(value, Handle):
            value = value.value()
            if isinstance(value, InitResult):  # a plugin's initcall returns its InitResult
                value = value.value
        self._loaded[name] = value
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._given)

    def __len__(self) -> int:
        return len(self._given)

    def __repr__(self) -> str:
        return f"<results {sorted(self._given)!r}>"


_managers: dict[str, pluggy.PluginManager] = {}


def remember(boot_id: str, pm: pluggy.PluginManager) -> None:
    """Keep the boot's plugin manager so forked workers inherit it instead of rebuilding it."""
    _managers.clear()
    _managers[boot_id] = pm


def forget(boot_id: str) -> None:
    _managers.pop(boot_id, None)


def run_init(spec: InitSpec, cookie: int) -> InitResult:
    """The initcall of a plugin: run its ``initgraph_init`` with every wrapper around it."""
    pm = _managers.get(spec.boot_id)
    if pm is None:
        pm = load_plugins(spec.sources, spec.paths)
        remember(spec.boot_id, pm)
    runtime = _runtime.active_runtime()

    def sync(c: int, domain: str, timeout: float | None) -> None:
        runtime.synchronize_cookie(c, domain=domain, timeout=timeout)

    ctx = InitContext(
        sync=sync,
        name=spec.plugin,
        cookie=cookie,
        domain=spec.domain,
        config=spec.config,
        results=LazyResults(spec.results),
    )
    with on_path(spec.paths):
        value = call_one(pm, "initgraph_init", spec.plugin, ctx=ctx)
    if value is NOT_IMPLEMENTED:
        value = None
    return InitResult(value, tuple(ctx.publications))
