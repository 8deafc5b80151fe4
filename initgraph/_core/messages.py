"""The messages between the parent and its workers: a small closed set of dataclasses.

Envelopes travel with the C pickler (fast). Functions travel inside as bytes made by
:func:`dumps`, which falls back to dill for what the C pickler refuses (lambdas, closures,
functions of ``__main__`` under spawn). Nothing else does: values (``data``, results) go through
the store (``store.py``), and a worker's exception rides in its :class:`Done`
(:func:`dump_error`), both pickled by pickle alone, so that a file, socket or lock is refused
instead of re-opened on the other side (dill re-opens a file by name, in its mode: ``"w"``
truncated it). An exception that cannot cross arrives as a
:class:`~initgraph._errors.RemoteError` with its type's name, its message and its traceback
(:func:`load_error`). A small value rides inside its message (``inline``: its ``Ref`` as a plain
tuple), a larger one as a store frame that follows its message. On a worker's socket::

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

import io
import pickle
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import RemoteTraceback, remote_error

if TYPE_CHECKING:
    from .store import PackedRef

__all__ = [
    "Blocked",
    "Done",
    "ErrorInfo",
    "Log",
    "Message",
    "Run",
    "Scheduled",
    "Started",
    "Stop",
    "Unblocked",
    "WaitRecord",
    "dump_error",
    "dumps",
    "load_error",
    "loads",
]

_PICKLE = b"P"
_DILL = b"D"


def dumps(obj: Any) -> bytes:
    """Serialize a function for another process: the C pickler if it can, else dill.

    For functions alone (a lambda, a closure): never for a value or an exception.
    """
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
class ErrorInfo:
    """What the parent shows of a worker's exception when the exception itself cannot cross."""

    module: str  # of its class
    qualname: str  # of its class
    text: str  # str() of it


class _ErrorPickler(pickle.Pickler):
    """The C pickler, refusing what pickles into nonsense, as the store does (``Connection``)."""

    def reducer_override(self, obj: Any) -> Any:
        if type(obj).__module__ in ("multiprocessing.connection", "multiprocess.connection"):
            msg = f"a {type(obj).__name__}'s file descriptor means nothing in another process"
            raise TypeError(msg)
        return NotImplemented


def dump_error(exc: BaseException) -> tuple[bytes | None, ErrorInfo]:
    """``exc`` pickled for the parent (None when it would not come back), and what it says.

    Pickle alone, never dill. The pickle is loaded once here: an exception whose ``__init__``
    takes an argument of its own cannot be rebuilt from its ``args``, and is better found here
    than in the parent. One whose ``str()`` raises is not sent either: the parent's messages
    would fail on it. Its ``__cause__``, ``__context__`` and traceback do not travel (pickle
    leaves them out): the traceback text (``Done.tb``) shows the whole chain.
    """
    cls = type(exc)
    try:
        text = str(exc)
    except Exception:  # the parent's messages would fail on it: the stand-in says so instead
        return None, ErrorInfo(cls.__module__, cls.__qualname__, "<exception str() failed>")
    info = ErrorInfo(cls.__module__, cls.__qualname__, text)
    stream = io.BytesIO()
    try:
        _ErrorPickler(stream, protocol=pickle.HIGHEST_PROTOCOL).dump(exc)
        data = stream.getvalue()
        pickle.loads(data)
    except Exception:
        return None, info
    return data, info


def load_error(data: bytes | None, info: ErrorInfo | None, tb: str | None) -> BaseException:
    """The exception :func:`dump_error` sent, else a :class:`RemoteError` standing in for it.

    Also the stand-in when this process cannot load it (its class is in a module only the
    worker could import). ``tb``: the traceback text, kept on the stand-in.
    """
    if data is not None:
        try:
            exc = pickle.loads(data)
        except Exception:
            pass
        else:
            if isinstance(exc, BaseException):
                return exc
    if info is None:
        return RemoteTraceback(tb or "")
    return remote_error(info.module, info.qualname, info.text, tb or "")


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
    exception, or None when it would not pickle), ``error_info`` (its type and message, for a
    stand-in when it cannot be loaded) and ``tb`` (its traceback text); ``unsent``: the
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
    error_info: ErrorInfo | None = None


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
