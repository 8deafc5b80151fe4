"""The messages between the parent and its workers: a small closed set of dataclasses.

Envelopes travel with the C pickler (fast). Functions and exceptions travel inside as bytes made
by :func:`dumps`, which falls back to dill for what the C pickler refuses (lambdas, closures,
functions of ``__main__`` under spawn). Values (``data``, results) go through the store
(``store.py``), pickled by pickle alone, so that a file, socket or lock is refused instead of
re-opened on the other side: a small one inside its message (``inline``: its ``Ref`` as a
plain tuple), a larger one as a store frame that follows its message. On a worker's socket::

    parent -> worker   Run        then `handles` forwarded frames, then the data's frame unless
                                  the data is inline
    worker -> parent   Done       then, when ok and not inline, the result's frame
                       Scheduled  then `handles` forwarded frames, then the data's frame unless
                                  the data is inline
                       Started, Blocked, Unblocked, Log: no frame

A message and its frames are sent under one lock (a worker's log thread must not come between).

Nothing changes a message once made, but the classes are not frozen: a frozen dataclass's
``__init__`` sets each field through ``object.__setattr__``, ~2 µs more for a ``Done``, and
every initcall makes a ``Run`` and a ``Done``.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .store import PackedRef

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


@dataclass
class Run:
    """Parent to worker: run this initcall."""

    cookie: int
    domain: str
    name: str
    func: bytes
    handles: int = 0  # store frames of handles its data holds, before the data's frame
    timed: bool = False  # it has a timeout: say Started when it starts (the clock starts then)
    owner: str | None = None  # whose result it is, in errors (default: "initcall <cookie> <name>")
    inline: PackedRef | None = None  # a small data value (its Ref), not a frame of its own


@dataclass
class Stop:
    """Parent to worker: leave the loop and exit."""


@dataclass
class Done:
    """Worker to parent: an initcall ended (it is already out of its domain's in-progress set).

    ``ok``: it returned, and its result's store frame follows. Else ``error`` (the pickled
    exception, or None when it would not pickle) and ``tb`` (its traceback text); ``unsent``: the
    error is the store's refusal of the result (unpicklable, too large, no room), not what the
    initcall raised. ``started``/``ended`` are ``time.monotonic()`` readings, comparable across
    processes on one machine; ``serialize_s``: seconds spent encoding the result.
    """

    cookie: int
    name: str
    ok: bool
    error: bytes | None
    tb: str | None
    started: float
    ended: float
    pid: int
    waits: tuple[WaitRecord, ...] = ()
    serialize_s: float = 0.0
    unsent: bool = False
    inline: PackedRef | None = None  # a small result (its Ref), not a frame of its own


@dataclass
class Scheduled:
    """Worker to parent: an initcall scheduled from inside an initcall (cookie already issued)."""

    cookie: int
    domain: str
    name: str
    after: tuple[int, ...]
    timeout: float | None
    func: bytes
    handles: int = 0  # store frames of handles its data holds, before the data's frame
    inline: PackedRef | None = None  # a small data value (its Ref), not a frame of its own


@dataclass
class Log:
    """Worker to parent: a log record, to be handled by the parent's logging configuration."""

    record: dict[str, Any]


@dataclass
class Started:
    """Worker to parent: a timed initcall's code and data are loaded; it runs from now on."""

    cookie: int


@dataclass
class Blocked:
    """Worker to parent: the worker sleeps in a synchronize (the pool may have to grow)."""

    cookie: int


@dataclass
class Unblocked:
    """Worker to parent: the worker runs again."""

    cookie: int


Message = Run | Stop | Done | Scheduled | Started | Blocked | Unblocked | Log
