"""initgraph: fast, deterministic application start-up, after the kernel's async initcalls."""

from typing import TYPE_CHECKING, Any

from ._api import current_is_async, schedule, synchronize_cookie, synchronize_full
from ._domain import Domain
from ._errors import (
    BootError,
    ConfigError,
    CycleError,
    DeadlockError,
    HookError,
    HookTimeout,
    InitgraphError,
    OrderingError,
    PluginError,
    RegistryConflict,
    WorkerCrashed,
)
from ._scheduler import Scheduler
from .hookspecs import hookimpl, hookspec

if TYPE_CHECKING:
    from ._boot import Boot, boot

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The boot machinery (TOML, plugins, entry points) loads on first use, so that code using
    # only the Scheduler starts fast.
    if name in ("boot", "Boot"):
        from . import _boot

        return getattr(_boot, name)
    msg = f"module 'initgraph' has no attribute {name!r}"
    raise AttributeError(msg)


__all__ = [
    "Boot",
    "BootError",
    "ConfigError",
    "CycleError",
    "DeadlockError",
    "Domain",
    "HookError",
    "HookTimeout",
    "InitgraphError",
    "OrderingError",
    "PluginError",
    "RegistryConflict",
    "Scheduler",
    "WorkerCrashed",
    "boot",
    "current_is_async",
    "hookimpl",
    "hookspec",
    "schedule",
    "synchronize_cookie",
    "synchronize_full",
]
