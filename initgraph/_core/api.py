"""Module-level functions for code running inside an initcall, kernel style.

Inside a worker they act on the worker's scheduler; in the parent, on the innermost active
:class:`~initgraph.Scheduler`. Same signatures as the methods.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from . import runtime as _runtime
from .domain import Domain
from .runtime import InitcallFunc

__all__ = ["current_is_async", "schedule", "synchronize_cookie", "synchronize_full"]


def schedule(
    func: InitcallFunc,
    data: Any = None,
    *,
    domain: Domain | str | None = None,
    after: Iterable[int] = (),
    timeout: float | None = None,
    name: str | None = None,
    nocall: bool = False,
) -> int:
    """Schedule ``func(data, cookie)`` on the current scheduler; see ``Scheduler.schedule``."""
    runtime = _runtime.active_runtime()
    return runtime.schedule(
        func, data, domain=domain, after=after, timeout=timeout, name=name, nocall=nocall
    )


def synchronize_cookie(
    cookie: int, *, domain: Domain | str | None = None, timeout: float | None = None
) -> None:
    """Wait until nothing below ``cookie`` is in progress in ``domain`` (None: the default)."""
    _runtime.active_runtime().synchronize_cookie(cookie, domain=domain, timeout=timeout)


def synchronize_full(*, domain: Domain | str | None = None, timeout: float | None = None) -> None:
    """Wait until nothing is in progress in ``domain`` (None: every registered domain)."""
    _runtime.active_runtime().synchronize_full(domain=domain, timeout=timeout)


def current_is_async() -> bool:
    """True only inside a worker process running an initcall (the kernel's current_is_async)."""
    runtime = _runtime._process_runtime
    return runtime is not None and runtime.is_async()
