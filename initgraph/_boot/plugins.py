"""Plugins: loading them into pluggy, the contexts hooks get, and the initcall that runs a plugin.

The initcall :func:`run_init` is what a worker runs for a plugin. It rebuilds the boot's plugin
manager in the worker once (with ``fork`` it is inherited ready-made) so that hook wrappers of
every plugin wrap the init of each one, exactly as in the parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import importlib
import inspect
import logging
import pickle
import sys
import threading
import time
from collections.abc import (
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
    MutableMapping,
    Sequence,
)
from dataclasses import dataclass
from typing import Any

import pluggy

from .. import hookspecs
from .._core import runtime as _runtime
from .._core.store import Handle, Store
from .._defs import ENTRY_POINT_GROUP
from .._errors import (
    ConfigError,
    HookError,
    InitgraphError,
    NotReady,
    OrderingError,
    PluginError,
)
from .state import Attempt, describe_error

__all__ = [
    "NOT_IMPLEMENTED",
    "CommitContext",
    "InitContext",
    "InitResult",
    "InitSpec",
    "Input",
    "LazyResults",
    "PluginSource",
    "Results",
    "Retry",
    "aretrying",
    "arun_init",
    "call_one",
    "implements",
    "is_async_init",
    "load_plugins",
    "retry_types",
    "retrying",
    "run_in_own_loop",
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
    """A plugin manager with one registered object per plugin, checked for misspellings.

    A module (or entry point) may back several plugins: each is registered as an
    :class:`_Instance` of its own, under its own name, so pluggy sees one object per plugin and
    two instances never share a registration. Raises PluginError naming the plugin whose module
    fails to import, forbids a second instance, has no hook implementation, whose hook
    implementation does not match the contract, or which implements an unknown hook.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    first_of: dict[int, str] = {}  # id of a loaded module -> the first plugin it backs
    with on_path(paths):
        for source in sources:
            loaded = _load(source)
            first = first_of.setdefault(id(loaded), source.name)
            if first != source.name and getattr(loaded, SINGLE_INSTANCE, False) is True:
                msg = (
                    f"plugin {source.name!r}: {source.describe()} allows only one instance "
                    f"({SINGLE_INSTANCE} = True) and already backs plugin {first!r}; "
                    f"remove one of them"
                )
                raise PluginError(msg, plugin=source.name)
            instance = _Instance(source.name, loaded)
            try:
                pm.register(instance, name=source.name)
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
    for source in sources:
        _check_marked(pm, source, pm.get_plugin(source.name))
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        plugin_name = pm.get_name(exc.plugin) or "?"
        msg = f"plugin {plugin_name!r}: {exc}"
        raise PluginError(msg, plugin=plugin_name) from exc
    return pm


SINGLE_INSTANCE = "initgraph_single_instance"
"""A module attribute: ``initgraph_single_instance = True`` lets the module back one plugin only."""


class _Instance:
    """What pluggy registers for one plugin: the ``initgraph_*`` attributes of its module.

    A module backing several plugins is wrapped once per plugin, so each plugin has its own
    registration (and its own name on every hook implementation) while the functions, and the
    module's globals, stay the module's.
    """

    def __init__(self, name: str, loaded: object) -> None:
        self._initgraph_name = name
        self._initgraph_loaded = loaded
        for attr in dir(loaded):
            if attr.startswith("initgraph_"):
                with contextlib.suppress(Exception):
                    setattr(self, attr, getattr(loaded, attr))

    def __repr__(self) -> str:
        return f"<plugin {self._initgraph_name!r} of {self._initgraph_loaded!r}>"


def _check_marked(pm: pluggy.PluginManager, source: PluginSource, instance: object) -> None:
    """Refuse a plugin with a hook function not marked ``@hookimpl``, or with no hook at all.

    pluggy ignores an unmarked function silently, so such a plugin would run nothing.
    """
    registered = {caller.name for caller in pm.get_hookcallers(instance) or ()}
    unmarked = [h for h in HOOKS if h not in registered and callable(getattr(instance, h, None))]
    if unmarked:
        msg = (
            f"plugin {source.name!r}: {unmarked[0]} in {source.describe()} is not marked "
            f"@initgraph.hookimpl; add the decorator"
        )
        raise PluginError(msg, plugin=source.name)
    if not registered:
        msg = (
            f"plugin {source.name!r}: {source.describe()} has no hook implementation; "
            f"mark its hooks with @initgraph.hookimpl"
        )
        raise PluginError(msg, plugin=source.name)


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

    def __init__(
        self,
        *,
        sync: Callable[[int, str, float | None], None],
        async_sync: Callable[[int, str, float | None], Awaitable[None]] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self._sync = sync
        self._async_sync = async_sync
        self._synchronized = False
        self.publications: list[tuple[str, Any]] = []

    def synchronize(self, timeout: float | None = None) -> None:
        """Wait until every lower cookie of this plugin's domain is done: its turn to publish."""
        self._sync(self.cookie, self.domain, timeout)
        self._synchronized = True

    async def asynchronize(self, timeout: float | None = None) -> None:
        """``await ctx.asynchronize()``: :meth:`synchronize` for an ``async def`` init.

        The wait runs in a thread (``asyncio.to_thread``), so the init's event loop goes on
        running its other tasks meanwhile.
        """
        if self._async_sync is None:
            await asyncio.to_thread(self._sync, self.cookie, self.domain, timeout)
        else:
            await self._async_sync(self.cookie, self.domain, timeout)
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
class Retry:
    """How a plugin's init is tried again: the plugin's retry keys, defaults applied.

    ``retries`` more attempts at most; ``delay`` before the first retry, doubling after each,
    never above ``delay_max``; ``on``: exception types retried besides :class:`NotReady`.
    """

    retries: int = 0
    delay: float = 1.0
    delay_max: float = 60.0
    on: tuple[str, ...] = ()

    def delay_before(self, retry: int) -> float:
        """The delay before retry number ``retry`` (1 for the first)."""
        return min(self.delay * 2.0 ** min(retry - 1, 64), self.delay_max)

    def delays(self) -> tuple[float, ...]:
        """The delay before each retry, in order."""
        return tuple(self.delay_before(n) for n in range(1, self.retries + 1))


def retry_types(
    names: Sequence[str], paths: Sequence[str] = (), *, where: str = "retry_on"
) -> tuple[type[BaseException], ...]:
    """:class:`NotReady` and the exception types ``names`` (``"module.Name"``), imported.

    Raises ConfigError naming ``where`` (the key, as ``plugins.db.retry_on``) and the entry that
    does not import or is not an exception type.
    """
    found: list[type[BaseException]] = [NotReady]
    with on_path(paths):
        for index, dotted in enumerate(names):
            module, _, attr = dotted.rpartition(".")
            try:
                value = getattr(importlib.import_module(module), attr)
            except Exception as exc:
                problem = f"cannot import {dotted!r}: {describe_error(exc)}"
            else:
                if isinstance(value, type) and issubclass(value, BaseException):
                    found.append(value)
                    continue
                problem = f"{dotted!r} is {value!r}, not an exception type"
            msg = f'{where}[{index}]: {problem}; name an exception type as "module.Name"'
            raise ConfigError(msg, key=f"{where}[{index}]")
    return tuple(found)


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
    retry: Retry = Retry()


@dataclass(frozen=True)
class Input:
    """A required result that reached a worker's init as a store handle: how it got there.

    ``of``: the plugin whose result it is; ``size``: its bytes; ``transfer_s``: from the parent's
    send to the worker's receipt; ``loaded``/``load_ended``: ``time.monotonic()`` readings around
    its load, when the init read it (None if it did not).
    """

    of: str
    size: int
    transfer_s: float
    loaded: float | None = None
    load_ended: float | None = None


# What InitResult.preload reads of a stream at a time: unpickling 4 KiB of a dense object graph
# takes about 0.07 ms (the example's search index: 2.1 ms for 120 KB), well under the 0.5 ms GIL
# switch interval a boot under aboot sets.
PRELOAD_STEP = 4096


class InitResult:
    """What a plugin's init produced: its value and what it published, in order.

    ``attempts``: each attempt (``time.monotonic()`` readings) when it was retried, else empty.
    ``inputs``: the required results it was handed as store handles (in a worker), for the trace.

    Sent to another process, the value travels apart from the rest (:meth:`Store.pickle_apart
    <initgraph._core.store.Store.pickle_apart>`) and is loaded there when :attr:`value` is
    first read: the parent reads ``publications`` and ``attempts`` to commit a plugin, and loads
    its value only for a commit hook, a main plugin or a caller that asks. A value that cannot
    be loaded here raises :class:`HookError` naming the plugin, when read.
    """

    __slots__ = ("_lock", "_value", "attempts", "cookie", "inputs", "plugin", "publications")

    def __init__(
        self,
        value: Any,
        publications: tuple[tuple[str, Any], ...] = (),
        attempts: tuple[Attempt, ...] = (),
        inputs: tuple[Input, ...] = (),
        *,
        plugin: str = "",
        cookie: int = 0,
    ) -> None:
        self._value = value
        self._lock: threading.Lock | None = None  # set while the value is apart, not loaded
        self.publications = publications
        self.attempts = attempts
        self.inputs = inputs
        self.plugin = plugin
        self.cookie = cookie

    @property
    def value(self) -> Any:
        """The value, loaded on first read when it came from another process."""
        return self._load(None)

    def preload(self) -> None:
        """Load the value now, on this thread, :data:`PRELOAD_STEP` bytes of its stream at a time.

        For the thread that coordinates a boot: a value that the owner's thread (an event
        loop's, under ``aboot``) is about to read is loaded here first, and between steps the
        GIL can pass to the loop. A value that cannot be loaded stays as it came: reading
        :attr:`value` raises, where the reader reports it.
        """
        if self._lock is None:
            return
        with contextlib.suppress(HookError):
            self._load(PRELOAD_STEP)

    def _load(self, step: int | None) -> Any:
        lock = self._lock
        if lock is None:
            return self._value
        with lock:
            if self._lock is not None:
                pieces, buffers = self._value
                try:
                    self._value = Store.load_apart(pieces, buffers, step=step)
                except Exception as exc:
                    msg = f"the result of plugin {self.plugin!r} cannot be loaded here: {exc}"
                    raise HookError(msg, cookie=self.cookie, name=self.plugin) from exc
                self._lock = None
            return self._value

    @property
    def loaded(self) -> bool:
        """Whether :attr:`value` is here (False: it came apart and nothing read it yet)."""
        return self._lock is None

    def __reduce__(self) -> Any:
        head = (self.publications, self.attempts, self.inputs, self.plugin, self.cookie)
        lock = self._lock or contextlib.nullcontext()
        with lock:
            if self._lock is not None:  # came apart, never read: it goes on as it came
                pieces, buffers = self._value
            else:
                value = self._value
                if type(value) in _SMALL and (
                    not isinstance(value, (str, bytes)) or len(value) < 4096
                ):
                    return (_whole, (value, *head))  # nothing to save by not loading it
                store = _active_store()
                pieces, buffers = store.pickle_apart(value, owner=f"plugin {self.plugin!r}")
        views = [pickle.PickleBuffer(p) for p in (*pieces, *buffers)]
        return (_apart, (*head, len(pieces), *views))

    def __repr__(self) -> str:
        value = repr(self._value) if self._lock is None else "<not loaded>"
        return f"InitResult({value}, publications={self.publications!r})"


def _active_store() -> Store:
    """The store of this process's runtime (its bound on values), else a default one."""
    try:
        return _runtime.active_runtime().store
    except InitgraphError:
        return Store()


# Types whose value is as cheap to load as to keep apart (when short).
_SMALL = frozenset({type(None), bool, int, float, str, bytes})


def _whole(
    value: Any, publications: Any, attempts: Any, inputs: Any, plugin: str, cookie: int
) -> InitResult:
    return InitResult(value, publications, attempts, inputs, plugin=plugin, cookie=cookie)


def _apart(
    publications: Any, attempts: Any, inputs: Any, plugin: str, cookie: int, n: int, *views: Any
) -> InitResult:
    result = InitResult((list(views[:n]), list(views[n:])), publications, attempts, inputs)
    result.plugin, result.cookie = plugin, cookie
    result._lock = threading.Lock()
    return result


class LazyResults(Mapping[str, Any]):
    """``ctx.results``: a required plugin's result is loaded when first read.

    In a worker, the boot puts the store handles of required results into the init's data,
    forwarded without being loaded in the parent; a plugin that never reads ``ctx.results["x"]``
    never maps it. Arrays read here are read-only views of shared memory (``arr.copy()`` to
    write). In the parent (a commit, a main init), it holds the :class:`InitResult` of each,
    whose value is loaded when read.
    """

    def __init__(self, given: Mapping[str, Any]) -> None:
        self._given = given
        self._loaded: dict[str, Any] = {}
        self._load_times: dict[str, tuple[float, float]] = {}  # name -> monotonic, around it

    def __getitem__(self, name: str) -> Any:
        if name in self._loaded:
            return self._loaded[name]
        value = self._given[name]
        if isinstance(value, Handle):
            began = time.monotonic()
            value = value.value()
            self._load_times[name] = (began, time.monotonic())
        if isinstance(value, InitResult):  # a plugin's initcall returns its InitResult
            value = value.value
        self._loaded[name] = value
        return value

    def inputs(self) -> tuple[Input, ...]:
        """Each result given as a handle: its size, its way here, and its load if it was read."""
        out = []
        for name, value in self._given.items():
            if isinstance(value, Handle):
                loaded, ended = self._load_times.get(name, (None, None))
                out.append(Input(name, value.nbytes, value.transfer_s, loaded, ended))
        return tuple(out)

    def __iter__(self) -> Iterator[str]:
        return iter(self._given)

    def __len__(self) -> int:
        return len(self._given)

    def __repr__(self) -> str:
        return f"<results {sorted(self._given)!r}>"


class Results(MutableMapping[str, Any]):
    """``Boot.results``: each committed plugin's result, loaded here when first read.

    A result made in a worker reaches the parent apart from what the plugin published (see
    :class:`InitResult`): the boot keeps it unloaded, and a key read here loads it (once).
    Comparisons, ``items()`` and ``repr`` read every key, so they load every result.
    """

    def __init__(self, results: Mapping[str, Any] | None = None) -> None:
        self._results: dict[str, Any] = dict(results or {})

    def __getitem__(self, name: str) -> Any:
        value = self._results[name]
        return value.value if isinstance(value, InitResult) else value

    def __setitem__(self, name: str, value: Any) -> None:
        self._results[name] = value

    def __delitem__(self, name: str) -> None:
        del self._results[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._results)

    def __len__(self) -> int:
        return len(self._results)

    def __contains__(self, name: object) -> bool:
        return name in self._results

    def __repr__(self) -> str:
        return repr(dict(self.items()))

    def lazy(self, names: Sequence[str]) -> LazyResults:
        """The results of ``names`` (None for one that did not commit), each loaded when read."""
        return LazyResults({name: self._results.get(name) for name in names})


def release(pm: pluggy.PluginManager) -> None:
    """Break pluggy's own reference cycle in ``pm``, which is not called again.

    Each hook caller on ``pm.hook`` holds the manager's bound ``_hookexec``: a cycle through
    the manager, its hook callers and implementations (the plugins' wrappers with them) that
    only the cyclic garbage collector would free. With the hook callers gone from the relay,
    dropping the manager frees all of it by reference counting.
    """
    vars(pm.hook).clear()


_managers: dict[str, pluggy.PluginManager] = {}


def remember(boot_id: str, pm: pluggy.PluginManager) -> None:
    """Keep the boot's plugin manager so forked workers inherit it instead of rebuilding it."""
    _managers.clear()
    _managers[boot_id] = pm


def forget(boot_id: str) -> None:
    _managers.pop(boot_id, None)


_RETRY_LOG = logging.getLogger("initgraph.retry")
# A library's records are for the application's logging configuration to show: none, none
# printed by logging's last resort (``initgraph run --log-level WARNING`` shows them).
_RETRY_LOG.addHandler(logging.NullHandler())


def run_init(spec: InitSpec, cookie: int) -> InitResult:
    """The initcall of a plugin: run its ``initgraph_init`` with every wrapper around it.

    An ``async def`` init runs to completion in an event loop of its own, made for it and
    closed when it returns (``asyncio.run`` style): in a worker, or under a blocking boot.

    An init that raises :class:`NotReady` (or a type of ``retry_on``) is tried again here, in
    the same initcall, up to ``spec.retry.retries`` times, after a delay slept here: the cookie
    stays in progress throughout, so the plugin keeps its place in its domain's order and
    whoever synchronizes on it waits for its last attempt. Each attempt gets a fresh context
    (and, for an ``async def`` init, a fresh loop): what a failed attempt published is dropped.
    """
    retryable = retry_types(spec.retry.on, spec.paths)

    def attempt() -> tuple[Any, InitContext]:
        ctx, value = _start_init(spec, cookie)
        if inspect.isawaitable(value):
            value = run_in_own_loop(value)
        return value, ctx

    value, ctx, attempts = retrying(spec.plugin, cookie, spec.retry, retryable, attempt)
    return _init_result(ctx, value, attempts)


async def arun_init(spec: InitSpec, cookie: int) -> InitResult:
    """:func:`run_init` on a running event loop (a ``where = "main"`` init under ``aboot``).

    An ``async def`` init is awaited on that loop; its retries are too, the delays slept with
    ``asyncio.sleep`` so the loop goes on meanwhile.
    """
    retryable = retry_types(spec.retry.on, spec.paths)

    async def attempt() -> tuple[Any, InitContext]:
        ctx, value = _start_init(spec, cookie)
        if inspect.isawaitable(value):
            value = await value
        return value, ctx

    value, ctx, attempts = await aretrying(spec.plugin, cookie, spec.retry, retryable, attempt)
    return _init_result(ctx, value, attempts)


def is_async_init(pm: pluggy.PluginManager, plugin: str) -> bool:
    """Whether ``plugin``'s own ``initgraph_init`` is ``async def``."""
    impls = pm.hook.initgraph_init.get_hookimpls()
    return any(
        i.plugin_name == plugin
        and not (i.wrapper or i.hookwrapper)
        and inspect.iscoroutinefunction(i.function)
        for i in impls
    )


def run_in_own_loop(pending: Awaitable[Any]) -> Any:
    """Run ``pending`` in a new event loop on this thread, closed once it is done."""

    async def wrapped() -> Any:
        return await pending

    return asyncio.run(wrapped())


def _start_init(spec: InitSpec, cookie: int) -> tuple[InitContext, Any]:
    """One attempt at a plugin's init, with a fresh context: its value, maybe still awaitable."""
    pm = _managers.get(spec.boot_id)
    if pm is None:
        pm = load_plugins(spec.sources, spec.paths)
        remember(spec.boot_id, pm)
    runtime = _runtime.active_runtime()

    def sync(c: int, domain: str, timeout: float | None) -> None:
        runtime.synchronize_cookie(c, domain=domain, timeout=timeout)

    ctx = InitContext(
        sync=sync,
        async_sync=_sync_in_thread(runtime),
        name=spec.plugin,
        cookie=cookie,
        domain=spec.domain,
        config=spec.config,
        results=LazyResults(spec.results),
    )
    with on_path(spec.paths):
        value = call_one(pm, "initgraph_init", spec.plugin, ctx=ctx)
    return ctx, value


def _init_result(ctx: InitContext, value: Any, attempts: tuple[Attempt, ...] = ()) -> InitResult:
    if value is NOT_IMPLEMENTED:
        value = None
    results = ctx.results
    inputs = results.inputs() if isinstance(results, LazyResults) else ()
    publications = tuple(ctx.publications)
    return InitResult(value, publications, attempts, inputs, plugin=ctx.name, cookie=ctx.cookie)


def _sync_in_thread(
    runtime: _runtime.Runtime,
) -> Callable[[int, str, float | None], Coroutine[Any, Any, None]]:
    """``ctx.asynchronize()`` of an initcall: the blocking wait, run in a thread of its own.

    The runtime keeps the running initcalls and the waits per thread: the thread takes over the
    caller's running stack (so a wait that would deadlock is refused as in ``synchronize()``)
    and hands its recorded waits back (so the trace shows them).
    """

    async def asynchronize(c: int, domain: str, timeout: float | None) -> None:
        running = list(runtime.running())
        waits: list[Any] = []

        def wait() -> None:
            runtime.running()[:] = running
            try:
                runtime.synchronize_cookie(c, domain=domain, timeout=timeout)
            finally:
                waits.extend(runtime.take_waits())
                runtime.running().clear()

        try:
            await asyncio.to_thread(wait)
        finally:
            if runtime.running():
                runtime.waits().extend(waits)

    return asynchronize


def retrying(
    plugin: str,
    cookie: int,
    retry: Retry,
    retryable: tuple[type[BaseException], ...],
    attempt: Callable[[], tuple[Any, InitContext]],
) -> tuple[Any, InitContext, tuple[Attempt, ...]]:
    """Call ``attempt`` (one try at a plugin's init, with a fresh context) until it succeeds.

    An exception of ``retryable`` is retried after the next delay of ``retry``, slept here
    (``time.sleep``), while retries are left; the attempts are returned when there was more than
    one. An init with nothing returned gives ``None``.
    """
    tries = _Tries(plugin, cookie, retry, retryable)
    while True:
        tries.start()
        try:
            value, ctx = attempt()
        except Exception as exc:
            delay = tries.failed(exc)
            if delay is None:
                raise
        else:
            return tries.succeeded(value, ctx)
        time.sleep(delay)


async def aretrying(
    plugin: str,
    cookie: int,
    retry: Retry,
    retryable: tuple[type[BaseException], ...],
    attempt: Callable[[], Awaitable[tuple[Any, InitContext]]],
) -> tuple[Any, InitContext, tuple[Attempt, ...]]:
    """:func:`retrying` on a running event loop: ``attempt`` is awaited, the delays too
    (``asyncio.sleep``), so the loop runs its other tasks while the plugin waits."""
    tries = _Tries(plugin, cookie, retry, retryable)
    while True:
        tries.start()
        try:
            value, ctx = await attempt()
        except Exception as exc:
            delay = tries.failed(exc)
            if delay is None:
                raise
        else:
            return tries.succeeded(value, ctx)
        await asyncio.sleep(delay)


class _Tries:
    """The bookkeeping :func:`retrying` and :func:`aretrying` share: attempts, delays, errors."""

    def __init__(
        self,
        plugin: str,
        cookie: int,
        retry: Retry,
        retryable: tuple[type[BaseException], ...],
    ) -> None:
        self.plugin = plugin
        self.cookie = cookie
        self.retry = retry
        self.retryable = retryable
        self.attempts: list[Attempt] = []
        self.number = 0
        self.started = 0.0

    def start(self) -> None:
        self.number += 1
        self.started = time.monotonic()

    def failed(self, exc: Exception) -> float | None:
        """The delay before the next attempt after ``exc``.

        ``None``: ``exc`` goes on as it is (not retryable, on the first attempt). Raises the
        plugin's HookError when it is out of retries, or a retried init failed otherwise.
        """
        ended = time.monotonic()
        number, plugin, retry = self.number, self.plugin, self.retry
        again = isinstance(exc, self.retryable)
        if not again and number == 1:
            return None
        if again and number <= retry.retries:
            delay = retry.delay_before(number)
            self.attempts.append(Attempt(number, self.started, ended, describe_error(exc), delay))
            _RETRY_LOG.warning(
                "plugin %r was not ready: %s; retry %d of %d in %g s",
                plugin,
                describe_error(exc),
                number,
                retry.retries,
                delay,
                extra={"initgraph_plugin": plugin, "initgraph_attempt": number + 1},
            )
            return delay
        self.attempts.append(Attempt(number, self.started, ended, describe_error(exc)))
        raise _gave_up(plugin, retry, self.cookie, exc, again, tuple(self.attempts)) from exc

    def succeeded(
        self, value: Any, ctx: InitContext
    ) -> tuple[Any, InitContext, tuple[Attempt, ...]]:
        if value is NOT_IMPLEMENTED:
            value = None
        if self.attempts:
            self.attempts.append(Attempt(self.number, self.started, time.monotonic()))
        return value, ctx, tuple(self.attempts)


def _gave_up(
    plugin: str,
    retry: Retry,
    cookie: int,
    exc: Exception,
    retryable: bool,
    attempts: tuple[Attempt, ...],
) -> HookError:
    """The error of a plugin whose last attempt failed: out of retries, or not retryable."""
    n = len(attempts)
    if not retryable:
        msg = f"plugin {plugin!r} failed on attempt {n}: {describe_error(exc)}"
    elif retry.retries == 0:
        msg = (
            f"plugin {plugin!r} was not ready after 1 attempt: {describe_error(exc)}; "
            f"set its retries to try again"
        )
    else:
        msg = f"plugin {plugin!r} was not ready after {n} attempts: {describe_error(exc)}"
    err = HookError(msg, cookie=cookie, name=plugin)
    if n > 1:
        err.attempts = attempts
    return err
