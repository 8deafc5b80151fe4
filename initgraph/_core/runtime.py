"""What every process of a scheduler can do: schedule, synchronize, and tell whether it is async.

A :class:`Runtime` wraps the shared state for one process. The parent's runtime belongs to its
:class:`~initgraph.Scheduler`; a worker's is made by the worker loop. Both schedule and wait the
same way, through the shared block; they differ only in how new work reaches the dispatcher and
how an inline (fallback) result is recorded.
"""

from __future__ import annotations

import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from .._errors import ConfigError, InitgraphError
from .dispatch import check_full_wait, check_wait
from .domain import Domain, domain_name
from .messages import WaitRecord, dumps
from .shared import W_COOKIE, W_DONE, W_FULL_ALL, W_FULL_DOMAIN, SharedState
from .store import Encoded, Handle, Store, StoreError

__all__ = ["Runtime", "active_runtime", "describe_func"]

InitcallFunc = Callable[[Any, int], Any]

_local = threading.local()
_process_runtime: Runtime | None = None  # set in a worker process
_parent_stack: list[Runtime] = []  # active schedulers of the parent, innermost last
_stack_lock = threading.Lock()


FOREVER = 1e9  # seconds (about 32 years): a longer timeout, inf included, means "no limit"
MAX_COOKIE = 2**62  # no scheduler issues so many: a wait beyond it waits as for this one


def seconds(value: object, what: str, *, zero: bool) -> float | None:
    """Check a ``timeout`` argument: None (no limit), or seconds; ``zero``: 0 is allowed.

    A bool, a non-number, nan or a negative number is refused with ConfigError; inf or a value
    beyond FOREVER means no limit (None), which no platform call overflows on.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = f"timeout of {what} must be a number of seconds or None, got {value!r}"
        msg += f" ({type(value).__name__})"
        raise ConfigError(msg, key="timeout")
    if math.isnan(value) or value < 0 or (value == 0 and not zero):
        least = "non-negative" if zero else "positive"
        msg = f"timeout of {what} must be a {least} number of seconds or None, got {value!r}"
        raise ConfigError(msg, key="timeout")
    return None if value > FOREVER else float(value)


def describe_func(func: Any) -> str:
    """The default name of an initcall: the function's qualified name."""
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    return str(name) if name else repr(func)


def active_runtime() -> Runtime:
    """The runtime module-level calls act on: the worker's, else the innermost scheduler's."""
    if _process_runtime is not None:
        return _process_runtime
    with _stack_lock:
        if _parent_stack:
            return _parent_stack[-1]
    msg = (
        "no active initgraph scheduler: call this inside an initcall, or inside "
        "'with initgraph.Scheduler() as sched:' in the parent"
    )
    raise InitgraphError(msg)


def set_process_runtime(runtime: Runtime | None) -> None:
    """Make ``runtime`` the one module-level calls use in this (worker) process."""
    global _process_runtime
    _process_runtime = runtime


def push_runtime(runtime: Runtime) -> None:
    with _stack_lock:
        _parent_stack.append(runtime)


def pop_runtime(runtime: Runtime) -> None:
    with _stack_lock:
        if runtime in _parent_stack:
            _parent_stack.remove(runtime)


class Runtime(ABC):
    """Schedule and synchronize against one scheduler's shared state, from this process."""

    def __init__(self, shared: SharedState, max_pending: int, owner: int, store: Store) -> None:
        self.shared = shared
        self.max_pending = max_pending
        self.owner = owner
        self.store = store

    # -- what the two sides do differently -------------------------------------------------------
    @abstractmethod
    def _submit(
        self,
        cookie: int,
        domain: str,
        name: str,
        after: tuple[int, ...],
        timeout: float | None,
        func: bytes,
        data: Encoded,
        refs: tuple[Handle, ...],
    ) -> None:
        """Hand a newly issued initcall to the dispatcher: ``data`` is its own to close,
        ``refs`` (the handles ``data`` holds) are borrowed."""

    @abstractmethod
    def _record_inline(
        self, cookie: int, name: str, ok: bool, value: Any, exc: BaseException | None
    ) -> None:
        """Keep the outcome of an initcall that ran inline (the max_pending fallback)."""

    @abstractmethod
    @contextmanager
    def _wait_slot(self) -> Iterator[int]:
        """A wait slot this thread may sleep on."""
        yield 0  # pragma: no cover

    def _note(self, cookie: int, name: str, domain: str) -> None:  # noqa: B027 - optional hook
        """Remember the name of an initcall this process runs inline."""

    def _on_sleep(self, sleeping: bool) -> None:  # noqa: B027 - optional hook
        """Called when this thread goes to sleep in a wait, and when it wakes."""

    def _names(self, cookies: Iterable[int]) -> dict[int, str]:
        """Names of ``cookies``, as far as this process knows them."""
        return {}

    # -- the running stack (for DeadlockError) ---------------------------------------------------
    def running(self) -> list[tuple[int, str]]:
        """The initcalls this thread is running, innermost last: ``(cookie, domain)``."""
        stack: list[tuple[int, str]] | None = getattr(_local, "running", None)
        if stack is None:
            stack = []
            _local.running = stack
        return stack

    @contextmanager
    def running_initcall(self, cookie: int, domain: str) -> Iterator[None]:
        """Mark this thread as running initcall ``cookie`` of ``domain``."""
        stack = self.running()
        stack.append((cookie, domain))
        try:
            yield
        finally:
            stack.pop()

    def is_async(self) -> bool:
        """True inside a worker running an initcall."""
        return False

    # -- scheduling ------------------------------------------------------------------------------
    def schedule(
        self,
        func: InitcallFunc,
        data: Any = None,
        *,
        domain: Domain | str | None = None,
        after: Iterable[int] = (),
        timeout: float | None = None,
        name: str | None = None,
        nocall: bool = False,
    ) -> int:
        """Issue a cookie for ``func(data, cookie)`` and queue it (see Scheduler.schedule)."""
        target: object = func
        if not callable(target):
            msg = f"func must be callable, got {target!r} ({type(target).__name__})"
            raise ConfigError(msg, key="func")
        label: object = name if name is not None else describe_func(func)
        if not isinstance(label, str) or not label:
            msg = f"name must be a non-empty str, got {name!r}"
            raise ConfigError(msg, key="name")
        timeout = seconds(timeout, repr(label), zero=False)
        deps = _cookies(after, label)
        dname, exclusive = domain_name(domain)
        didx = self.shared.domain_index(dname, exclusive)
        func_b = _dump(func, f"func {label!r}")
        for dep in deps:
            if dep > self.shared.last_cookie:
                msg = f"after= of {label!r} names cookie {dep}, which was never issued"
                raise ConfigError(msg, key="after")
        refs: list[Handle] = []
        encoded = encode_data(self.store, data, f"data of {label!r}", refs)
        try:
            cookie, pending, inline = self.shared.allocate(didx, self.owner, deps, self.max_pending)
        except BaseException:
            encoded.close()
            raise
        if inline and nocall:
            # The kernel's async_schedule_dev_nocall(): never run it here, where the caller may
            # hold a lock it needs. The cookie just issued ends at once, never run.
            encoded.close()
            self.shared.finish([cookie])
            msg = (
                f"{label!r} was not scheduled: more than max_pending ({self.max_pending}) "
                f"initcalls are in progress and nocall=True forbids running it here; run it "
                f"yourself (outside any lock it needs), or raise max_pending"
            )
            raise InitgraphError(msg)
        if inline:
            encoded.close()
            self._run_inline(cookie, dname, label, func, data, pending)
        else:
            self._submit(cookie, dname, label, pending, timeout, func_b, encoded, tuple(refs))
        return cookie

    def _run_inline(
        self,
        cookie: int,
        domain: str,
        name: str,
        func: InitcallFunc,
        data: Any,
        after: tuple[int, ...],
    ) -> None:
        self._note(cookie, name, domain)
        try:
            for dep in after:
                self._wait(W_DONE, 0, dep, None, f"waiting for cookie {dep} (after=) of {name!r}")
            with self.running_initcall(cookie, domain):
                value = func(data, cookie)
        except BaseException as exc:
            self.shared.finish([cookie])
            self._record_inline(cookie, name, False, None, exc)
            if not isinstance(exc, Exception):
                raise
        else:
            self.shared.finish([cookie])
            self._record_inline(cookie, name, True, value, None)

    # -- synchronizing ---------------------------------------------------------------------------
    def synchronize_cookie(
        self, cookie: int, *, domain: Domain | str | None = None, timeout: float | None = None
    ) -> None:
        """Return once nothing below ``cookie`` is in progress in ``domain``."""
        if isinstance(cookie, bool) or not isinstance(cookie, int):
            msg = f"cookie must be an int, got {cookie!r} ({type(cookie).__name__})"
            raise ConfigError(msg, key="cookie")
        dname, exclusive = domain_name(domain)
        what = f"synchronize_cookie({cookie}, domain={dname!r})"
        timeout = seconds(timeout, what, zero=True)
        didx = self.shared.domain_index(dname, exclusive)
        check_wait(self.running(), cookie, dname, describe=what)
        # The shared wait slot holds 63 bits; every cookie there will ever be is below this.
        self._wait(W_COOKIE, didx, min(cookie, MAX_COOKIE), timeout, what)

    def synchronize_full(
        self, *, domain: Domain | str | None = None, timeout: float | None = None
    ) -> None:
        """Return once nothing is in progress in ``domain`` (None: every registered domain)."""
        if domain is None:
            timeout = seconds(timeout, "synchronize_full()", zero=True)
            check_full_wait(self.running(), None, self.shared.exclusive_names())
            self._wait(W_FULL_ALL, 0, 0, timeout, "synchronize_full()")
            return
        dname, exclusive = domain_name(domain)
        what = f"synchronize_full(domain={dname!r})"
        timeout = seconds(timeout, what, zero=True)
        didx = self.shared.domain_index(dname, exclusive)
        check_full_wait(self.running(), dname, frozenset())
        self._wait(W_FULL_DOMAIN, didx, 0, timeout, what)

    def _wait(self, kind: int, didx: int, cookie: int, timeout: float | None, what: str) -> None:
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        try:
            with self._wait_slot() as slot:
                if self.shared.wait(slot, kind, didx, cookie, deadline, self._on_sleep):
                    return
            raise TimeoutError(self._timeout_message(kind, didx, cookie, timeout, what))
        finally:
            if self.running():  # inside an initcall: its trace shows the wait
                self.waits().append(self._record(kind, didx, cookie, started))

    def _record(self, kind: int, didx: int, cookie: int, started: float) -> WaitRecord:
        if kind == W_FULL_ALL:
            return WaitRecord("full", None, 0, started, time.monotonic())
        domain = self.shared.domain_names()[didx][0] if kind != W_DONE else None
        what = {W_COOKIE: "cookie", W_FULL_DOMAIN: "full", W_DONE: "after"}[kind]
        return WaitRecord(what, domain, cookie, started, time.monotonic())

    def waits(self) -> list[WaitRecord]:
        """The waits recorded in this thread since :meth:`take_waits` last emptied them."""
        waits: list[WaitRecord] | None = getattr(_local, "waits", None)
        if waits is None:
            waits = []
            _local.waits = waits
        return waits

    def take_waits(self) -> tuple[WaitRecord, ...]:
        """The waits recorded in this thread, emptied."""
        waits = self.waits()
        out = tuple(waits)
        waits.clear()
        return out

    def _timeout_message(
        self, kind: int, didx: int, cookie: int, timeout: float | None, what: str
    ) -> str:
        names = self.shared.domain_names()
        pending = self.shared.in_progress(None if kind == W_FULL_ALL else didx)
        if kind == W_COOKIE:
            pending = [(c, d) for c, d in pending if c < cookie]
        elif kind == W_FULL_ALL:
            pending = [(c, d) for c, d in pending if not names[d][1]]
        elif kind == W_DONE:
            pending = [(c, d) for c, d in pending if c == cookie]
        known = self._names(c for c, _ in pending)
        shown = ", ".join(
            f"{c} {known[c]!r} ({names[d][0]})" if c in known else f"{c} ({names[d][0]})"
            for c, d in pending[:10]
        )
        more = f" and {len(pending) - 10} more" if len(pending) > 10 else ""
        return f"{what} timed out after {timeout} s; still in progress: {shown or 'none'}{more}"


def _cookies(after: object, label: str) -> tuple[int, ...]:
    if isinstance(after, int) and not isinstance(after, bool):
        after = (after,)
    try:
        deps: tuple[object, ...] = tuple(after)  # type: ignore[arg-type]
    except TypeError:
        msg = f"after= of {label!r} must be an iterable of cookies, got {after!r}"
        raise ConfigError(msg, key="after") from None
    cookies: list[int] = []
    for dep in deps:
        if isinstance(dep, bool) or not isinstance(dep, int) or dep < 1:
            msg = f"after= of {label!r} must hold cookies (positive ints), got {dep!r}"
            raise ConfigError(msg, key="after")
        cookies.append(dep)
    return tuple(cookies)


def encode_data(store: Store, data: Any, owner: str, refs: list[Handle]) -> Encoded:
    """``data`` for a worker, through the store; refused with a ConfigError naming ``owner``.

    Each :class:`~initgraph._core.store.Handle` in ``data`` (a result not loaded here) is left
    out and appended to ``refs``, to be forwarded as it is: written once, never re-pickled.
    """
    try:
        return store.encode(data, owner=owner, refs=refs)
    except StoreError as exc:
        raise ConfigError(str(exc), key="data") from exc


def _dump(obj: Any, what: str) -> bytes:
    try:
        return dumps(obj)
    except Exception as exc:
        msg = (
            f"cannot send {what} to a worker: {type(exc).__name__}: {exc}; pass something "
            f"picklable (a module-level function, plain data), or build it inside the initcall"
        )
        raise ConfigError(msg, key="func" if what.startswith("func") else "data") from exc
