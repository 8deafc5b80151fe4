"""The messages between the parent and its workers: a small closed set of frozen dataclasses.

Envelopes travel with the C pickler (fast); what a user hands over (functions, data, results,
exceptions) travels inside as bytes made by :func:`dumps`, which falls back to dill for what the
C pickler refuses (lambdas, closures, functions of ``__main__`` under spawn).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Blocked",
    "Done",
    "Log",
    "Message",
    "Run",
    "Scheduled",
    "Started",
    "Stop",
    "Unblocked",
    "WaitRecord",
    "dumps",
    "loads",
]

_PICKLE = b"P"
_DILL = b"D"


def dumps(obj: Any) -> bytes:
    """Serialize ``obj`` for another process: the C pickler if it can, else dill."""
    try:
        return _PICKLE + pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        import dill

        return _DILL + bytes(dill.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def loads(data: bytes) -> Any:
    """The inverse of :func:`dumps`."""
    if data[:1] == _PICKLE:
        return pickle.loads(data[1:])
    import dill

    return dill.loads(data[1:])


@dataclass(frozen=True)
class WaitRecord:
    """One wait inside an initcall: what it waited for, and when (``time.monotonic()``)."""

    what: str  # "cookie" (synchronize_cookie), "full" (synchronize_full) or "after"
    domain: str | None  # None: every registered domain
    cookie: int  # the cookie waited below (0 for a full synchronize)
    started: float
    ended: float


@dataclass(frozen=True)
class Run:
    """Parent to worker: run this initcall."""

    cookie: int
    domain: str
    name: str
    func: bytes
    data: bytes
    timed: bool = False  # it has a timeout: say Started when it starts (the clock starts then)


@dataclass(frozen=True)
class Stop:
    """Parent to worker: leave the loop and exit."""


@dataclass(frozen=True)
class Done:
    """Worker to parent: an initcall ended (it is already out of its domain's in-progress set).

    ``value`` is set when it returned; ``error`` (the pickled exception, or None when it would not
    pickle) and ``tb`` (its traceback text) when it raised. ``started``/``ended`` are
    ``time.monotonic()`` readings, comparable across processes on one machine.
    """

    cookie: int
    name: str
    ok: bool
    value: bytes | None
    error: bytes | None
    tb: str | None
    started: float
    ended: float
    pid: int
    waits: tuple[WaitRecord, ...] = ()


@dataclass(frozen=True)
class Scheduled:
    """Worker to parent: an initcall scheduled from inside an initcall (cookie already issued)."""

    cookie: int
    domain: str
    name: str
    after: tuple[int, ...]
    timeout: float | None
    func: bytes
    data: bytes


@dataclass(frozen=True)
class Log:
    """Worker to parent: a log record, to be handled by the parent's logging configuration."""

    record: dict[str, Any]


@dataclass(frozen=True)
class Started:
    """Worker to parent: a timed initcall's code and data are loaded; it runs from now on."""

    cookie: int


@dataclass(frozen=True)
class Blocked:
    """Worker to parent: the worker sleeps in a synchronize (the pool may have to grow)."""

    cookie: int


@dataclass(frozen=True)
class Unblocked:
    """Worker to parent: the worker runs again."""

    cookie: int


Message = Run | Stop | Done | Scheduled | Started | Blocked | Unblocked | Log
