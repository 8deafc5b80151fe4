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
    NotReady,
    OrderingError,
    PluginError,
    RegistryConflict,
    WorkerCrashed,
)

if TYPE_CHECKING:
    from ._boot.aio import aboot, lifespan
    from ._boot.config import load_config
    from ._boot.plugins import CommitContext, InitContext
    from ._boot.run import Boot, Plan, Registry, boot
    from ._core.api import current_is_async, schedule, synchronize_cookie, synchronize_full
    from ._core.domain import Domain
    from ._core.scheduler import Scheduler
    from ._observe.trace import write_trace
    from .hookspecs import hookimpl, hookspec

__version__ = "0.1.0"

# Everything but the errors loads on first use: `import initgraph` stays cheap, the boot
# machinery (TOML, plugins) is not paid by code that only schedules, and `python -m initgraph`
# sets its signal handlers before multiprocess and dill are imported.
_LAZY = {
    "Scheduler": "_core.scheduler",
    "Domain": "_core.domain",
    "schedule": "_core.api",
    "synchronize_cookie": "_core.api",
    "synchronize_full": "_core.api",
    "current_is_async": "_core.api",
    "hookimpl": "hookspecs",
    "hookspec": "hookspecs",
    "boot": "_boot.run",
    "aboot": "_boot.aio",
    "lifespan": "_boot.aio",
    "Boot": "_boot.run",
    "Plan": "_boot.run",
    "Registry": "_boot.run",
    "InitContext": "_boot.plugins",
    "CommitContext": "_boot.plugins",
    "load_config": "_boot.config",
    "write_trace": "_observe.trace",
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
    "CommitContext",
    "ConfigError",
    "CycleError",
    "DeadlockError",
    "Domain",
    "HookError",
    "HookTimeout",
    "InitContext",
    "InitgraphError",
    "NotReady",
    "OrderingError",
    "Plan",
    "PluginError",
    "Registry",
    "RegistryConflict",
    "Scheduler",
    "WorkerCrashed",
    "aboot",
    "boot",
    "current_is_async",
    "hookimpl",
    "hookspec",
    "lifespan",
    "load_config",
    "schedule",
    "synchronize_cookie",
    "synchronize_full",
    "write_trace",
]
