"""initgraph: fast, deterministic application start-up, after the kernel's async initcalls."""

from ._api import current_is_async, schedule, synchronize_cookie, synchronize_full
from ._boot import Boot, boot
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

__version__ = "0.1.0"

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
