"""initgraph: fast, deterministic application start-up, after the kernel's async initcalls."""

from ._api import current_is_async
from ._api import schedule
from ._api import synchronize_cookie
from ._api import synchronize_full
from ._domain import Domain
from ._errors import BootError
from ._errors import ConfigError
from ._errors import CycleError
from ._errors import DeadlockError
from ._errors import HookError
from ._errors import HookTimeout
from ._errors import InitgraphError
from ._errors import OrderingError
from ._errors import PluginError
from ._errors import RegistryConflict
from ._errors import WorkerCrashed
from ._scheduler import Scheduler
from .hookspecs import hookimpl
from .hookspecs import hookspec

__version__ = "0.1.0"

__all__ = [
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
    "current_is_async",
    "hookimpl",
    "hookspec",
    "schedule",
    "synchronize_cookie",
    "synchronize_full",
]
