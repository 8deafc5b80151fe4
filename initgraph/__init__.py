"""initgraph: fast, deterministic application start-up, after the kernel's async initcalls."""

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from ._api import current_is_async, schedule, synchronize_cookie, synchronize_full
    from ._boot import Boot, boot
    from ._domain import Domain
    from ._scheduler import Scheduler
    from .hookspecs import hookimpl, hookspec

__version__ = "0.1.0"

# Everything but the errors loads on first use: `import initgraph` stays cheap, the boot
# machinery (TOML, plugins) is not paid by code that only schedules, and `python -m initgraph`
# sets its signal handlers before multiprocess and dill are imported.
_LAZY = {
    "Scheduler": "_scheduler",
    "Domain": "_domain",
    "schedule": "_api",
    "synchronize_cookie": "_api",
    "synchronize_full": "_api",
    "current_is_async": "_api",
    "hookimpl": "hookspecs",
    "hookspec": "hookspecs",
    "boot": "_boot",
    "Boot": "_boot",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module 'initgraph' has no attribute {name!r}"
        raise AttributeError(msg)
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
