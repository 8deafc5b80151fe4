"""The error tree of initgraph.

::

    InitgraphError
    ├── ConfigError          bad init.toml or arguments (also ValueError)
    │   └── CycleError       .cycle: the plugin names in order
    ├── PluginError          a plugin cannot be loaded or breaks the hook contract; .plugin
    ├── HookError            an initcall failed; .cookie, .name; __cause__: what it raised
    │   ├── HookTimeout      it ran past its timeout and was stopped
    │   └── WorkerCrashed    its process died; .exitcode and the signal's name
    ├── DeadlockError        a wait that could never end
    ├── NotReady             raised by an init: not ready yet, try again (retries)
    ├── OrderingError        publish before synchronize
    ├── RegistryConflict     a key published twice
    └── BootError            a boot failed; .boot

Every error carries the data it talks about as attributes, and a lowercase message that names the
offender and, where there is one, what to do. All of them pickle, so a failure in a worker
reaches the parent intact. What a worker raised travels by pickle alone; an exception that
cannot (:class:`RemoteError`) is stood in for by one that keeps its type's name and message.
"""

from __future__ import annotations

import signal
import traceback
from collections.abc import Sequence
from typing import Any

__all__ = [
    "BootError",
    "ConfigError",
    "CycleError",
    "DeadlockError",
    "HookError",
    "HookTimeout",
    "InitgraphError",
    "NotReady",
    "OrderingError",
    "PluginError",
    "RegistryConflict",
    "RemoteError",
    "RemoteTraceback",
    "WorkerCrashed",
    "describe_exitcode",
]


class InitgraphError(Exception):
    """Base of every error initgraph raises on purpose."""

    __module__ = "initgraph"


class ConfigError(InitgraphError, ValueError):
    """Bad ``init.toml`` or bad arguments: the message names the file (or argument) and key path."""

    __module__ = "initgraph"

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.key = key

    def __reduce__(self) -> Any:
        return (_rebuild, (type(self), self.args, self.__dict__))


class CycleError(ConfigError):
    """The plugins' ``requires`` form a cycle; ``.cycle`` lists it in order, first name repeated."""

    __module__ = "initgraph"

    def __init__(
        self, message: str, *, cycle: Sequence[str], path: str | None = None, key: str | None = None
    ) -> None:
        super().__init__(message, path=path, key=key)
        self.cycle = list(cycle)


class PluginError(InitgraphError):
    """A plugin cannot be loaded or breaks the hook contract; ``.plugin`` names it."""

    __module__ = "initgraph"

    def __init__(self, message: str, *, plugin: str) -> None:
        super().__init__(message)
        self.plugin = plugin

    def __reduce__(self) -> Any:
        return (_rebuild, (type(self), self.args, self.__dict__))


class HookError(InitgraphError):
    """An initcall failed. ``.cookie`` and ``.name`` say which; ``__cause__`` is what it raised.

    ``.attempts``: each attempt of a plugin's init that was retried before it failed (a boot's
    ``Attempt`` records), else empty.
    """

    __module__ = "initgraph"

    attempts: tuple[Any, ...] = ()

    def __init__(self, message: str, *, cookie: int, name: str) -> None:
        super().__init__(message)
        self.cookie = cookie
        self.name = name

    def __reduce__(self) -> Any:
        return (_rebuild, (type(self), self.args, self.__dict__))


class HookTimeout(HookError):
    """An initcall ran past its timeout; its worker was stopped and replaced."""

    __module__ = "initgraph"

    def __init__(self, message: str, *, cookie: int, name: str, timeout: float) -> None:
        super().__init__(message, cookie=cookie, name=name)
        self.timeout = timeout


class WorkerCrashed(HookError):
    """The process running an initcall died: ``.exitcode`` (negative: a signal) and ``.signal``."""

    __module__ = "initgraph"

    def __init__(self, message: str, *, cookie: int, name: str, exitcode: int | None) -> None:
        super().__init__(message, cookie=cookie, name=name)
        self.exitcode = exitcode
        self.signal = _signal_name(exitcode)


class DeadlockError(InitgraphError):
    """A wait that could never end, such as an initcall waiting for its own completion."""

    __module__ = "initgraph"


class NotReady(InitgraphError):
    """Raised by an init that cannot finish yet (a server not up): asks for a retry.

    The plugin's ``retries`` say how many more attempts it gets, ``retry_delay`` how long to
    wait before each; the plugin keeps its cookie meanwhile. The message says what is missing.
    """

    __module__ = "initgraph"


class OrderingError(InitgraphError):
    """A plugin published before synchronizing, so the order would depend on timing."""

    __module__ = "initgraph"


class RegistryConflict(InitgraphError):
    """A key was published twice; ``.key``, ``.first`` and ``.second`` name it and both plugins."""

    __module__ = "initgraph"

    def __init__(self, message: str, *, key: str, first: str, second: str) -> None:
        super().__init__(message)
        self.key = key
        self.first = first
        self.second = second

    def __reduce__(self) -> Any:
        return (_rebuild, (type(self), self.args, self.__dict__))


class BootError(InitgraphError):
    """A boot failed; ``.boot`` is the :class:`~initgraph.Boot` with results and failures."""

    __module__ = "initgraph"

    def __init__(self, message: str, *, boot: Any) -> None:
        super().__init__(message)
        self.boot = boot

    def __reduce__(self) -> Any:
        return (_rebuild, (type(self), self.args, self.__dict__))


class RemoteTraceback(Exception):
    """The text of a traceback from another process, chained as ``__cause__`` of a HookError."""

    __module__ = "initgraph"

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb}"""'


class RemoteError(Exception):
    """A stand-in for an exception raised in a worker that could not cross to this process.

    Exceptions travel by pickle alone. One that pickle refuses (it holds a lock, a file, a
    socket), that cannot be rebuilt from its pickle (an ``__init__`` with a required argument
    of its own), or whose class this process cannot import arrives as a ``RemoteError``: an
    instance of a subclass made for it, with the original class's ``__name__``,
    ``__qualname__`` and ``__module__``, so messages read as the original's would
    (``"NeedsTwo: db: down"``). ``.type_name`` is the original's qualified name, ``str()`` its
    message, ``.tb`` the traceback as the worker formatted it (also chained as ``__cause__``).
    """

    __module__ = "initgraph"

    def __init__(self, message: str, *, type_name: str, tb: str = "") -> None:
        super().__init__(message)
        self.type_name = type_name
        self.tb = tb

    def __reduce__(self) -> Any:
        cls = type(self)
        return (remote_error, (cls.__module__, cls.__qualname__, str(self), self.tb))


_STAND_INS: dict[tuple[str, str], type[RemoteError]] = {}


def remote_error(module: str, qualname: str, message: str, tb: str = "") -> RemoteError:
    """The :class:`RemoteError` standing in for an exception of class ``module.qualname``."""
    key = (module, qualname)
    cls = _STAND_INS.get(key)
    if cls is None:
        name = qualname.rpartition(".")[2] or "RemoteError"
        attrs = {"__module__": module, "__qualname__": qualname, "__doc__": RemoteError.__doc__}
        cls = _STAND_INS.setdefault(key, type(name, (RemoteError,), attrs))
    type_name = qualname if module == "builtins" else f"{module}.{qualname}"
    return cls(message, type_name=type_name, tb=tb)


def _rebuild(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    err = cls.__new__(cls)
    err.args = args
    err.__dict__.update(state)
    return err


def _signal_name(exitcode: int | None) -> str | None:
    if exitcode is None or exitcode >= 0:
        return None
    try:
        return signal.Signals(-exitcode).name
    except ValueError:
        return f"SIG{-exitcode}"


def describe_exitcode(exitcode: int | None) -> str:
    """How a worker ended, in loky's style: ``SIGKILL(-9)``, ``EXIT(3)``, or ``unknown``."""
    if exitcode is None:
        return "unknown"
    if exitcode < 0:
        return f"{_signal_name(exitcode)}({exitcode})"
    return f"EXIT({exitcode})"


def format_remote(exc: BaseException) -> str:
    """The traceback of ``exc`` as text, to travel to the parent with it."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
