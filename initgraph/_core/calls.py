"""What the pool keeps of each initcall: its work on the way to a worker, its record, its outcome.

:class:`Work` is an initcall's work until a worker has it; :class:`Call` is everything the pool
loop knows of one cookie (written by the loop alone); :class:`Outcome` is how the initcall ended,
published to other threads in its ``Call`` and loaded only when its value is first read;
:class:`Retried` is a run lost to a crash or a timeout. See ``pool.py`` for the loop around them.
"""

from __future__ import annotations

import dataclasses
import pickle
import threading
import time
from dataclasses import dataclass
from typing import Any

from .._errors import HookError, RemoteTraceback
from .messages import Done, Run, WaitRecord, load_error
from .store import Encoded, Handle, PackedRef, Ref, Store
from .workers import Worker

__all__ = ["Call", "Outcome", "Retried", "Work", "inline_of", "outcome_of"]


class Outcome:
    """How an initcall ended: its value (``ok``) or error, when and where it ran, its waits.

    ``started``/``ended`` are ``time.monotonic()`` readings (0.0 when it never ran).

    A result from a worker stays as it came until :attr:`value` is first read, which loads it
    (once, whichever thread asks first; the parent imports the modules of its classes only
    then) or raises a :class:`HookError` naming the initcall when it cannot be loaded: a small
    result as the bytes that came inside its ``Done``, a larger one in its store frame.
    :attr:`handle` can be put into the ``data`` of other initcalls: it is forwarded to them,
    not loaded here. ``nbytes``, ``serialize_s``, ``transfer_s`` and ``load_s`` (None until
    loaded) time its way here; all zero for a value made in the parent.
    """

    __slots__ = (
        "_handle",
        "_inline",
        "_load_s",
        "_lock",
        "_store",
        "_value",
        "cookie",
        "ended",
        "error",
        "name",
        "ok",
        "pid",
        "retried",
        "serialize_s",
        "started",
        "waits",
    )

    def __init__(
        self,
        name: str,
        ok: bool,
        value: Any = None,
        error: BaseException | None = None,
        started: float = 0.0,
        ended: float = 0.0,
        pid: int = 0,
        waits: tuple[WaitRecord, ...] = (),
        *,
        cookie: int = 0,
        handle: Handle | None = None,
        inline: Ref | None = None,
        store: Store | None = None,
        serialize_s: float = 0.0,
        retried: tuple[Retried, ...] = (),
    ) -> None:
        """``handle``: a result in its store frame; ``inline``: a small one that came inside
        its message, and ``store`` the store to make its :attr:`handle` with if one is asked
        for."""
        self.name = name
        self.ok = ok
        self.error = error
        self.started = started
        self.ended = ended
        self.pid = pid
        self.waits = waits
        self.cookie = cookie
        self.serialize_s = serialize_s
        self.retried = retried  # its earlier runs, lost to a crash or a timeout
        self._value = value
        self._handle = handle
        self._inline = inline
        self._store = store
        self._load_s: float | None = None
        # No Handle for a small result (one less object per initcall); a lock until loaded.
        loaded = handle is None and inline is None
        self._lock = None if loaded else threading.Lock()

    @property
    def value(self) -> Any:
        """The initcall's value (None when it failed), loaded on first access."""
        lock = self._lock
        if lock is None:
            return self._value
        with lock:
            if self._lock is not None:
                self._value = self._load()
                self._lock = None
            return self._value

    def _load(self) -> Any:
        inline, handle = self._inline, self._handle
        try:
            if inline is not None:
                began = time.perf_counter()
                value = inline.load()
                self._load_s = time.perf_counter() - began
                return value
            assert handle is not None
            return handle.value()
        except Exception as exc:
            closed = inline is None and handle is not None and handle.closed
            text = "the scheduler was closed before it was read" if closed else exc
            msg = f"the result of initcall {self.cookie} {self.name!r} cannot be loaded: {text}"
            # Not kept in a local: its traceback holds this frame, and that would be a cycle.
            raise HookError(msg, cookie=self.cookie, name=self.name) from exc

    @property
    def handle(self) -> Handle | None:
        """The result as a store handle, to forward to other initcalls (None: no result)."""
        if self._handle is None and self._inline is not None:
            assert self._store is not None
            self._handle = self._store.inline_handle(self._inline)
        return self._handle

    def close(self) -> None:
        """Let go of the result's store frame: a result not read yet can no longer be (a small
        one, which holds no descriptor, still can)."""
        if self._handle is not None:
            self._handle.close()

    @property
    def nbytes(self) -> int:
        """Bytes of its result on the way here (0: made in the parent, or failed)."""
        if self._inline is not None:
            return self._inline.size
        return 0 if self._handle is None else self._handle.nbytes

    @property
    def transfer_s(self) -> float:
        """Seconds its store frame took to come (0.0: none; a small result came in its Done)."""
        return 0.0 if self._inline is not None or self._handle is None else self._handle.transfer_s

    @property
    def load_s(self) -> float | None:
        if self._inline is not None:
            return self._load_s
        return None if self._handle is None else self._handle.load_s

    def __repr__(self) -> str:
        state = "ok" if self.ok else f"failed: {self.error!r}"
        return f"<Outcome {self.cookie} {self.name!r} {state}>"


@dataclass(frozen=True)
class Retried:
    """A run of an initcall lost to a crash or a timeout, after which the pool ran it again.

    ``started``/``ended`` are ``time.monotonic()`` readings; ``delay``: seconds the pool waited
    before the next run.
    """

    started: float
    ended: float
    error: str
    delay: float


def inline_of(data: Encoded | Handle) -> PackedRef | None:
    """What a message carries of a small value instead of a frame of its own (None: a frame)."""
    return data.ref.packed() if data.inline else None


@dataclass(eq=False)
class Work:
    """An initcall's work on its way to a worker: the Run, then its values' frames.

    ``data`` (an encoding made here, or a frame received from a worker that scheduled it) is
    the work's own, closed once sent; ``refs``, the handles ``data`` holds, are forwarded before
    it, and closed with it only when ``owns_refs`` (received with it from a worker).
    """

    run: Run
    data: Encoded | Handle
    refs: tuple[Handle, ...] = ()
    owns_refs: bool = False

    def send(self, conn: Any, store: Store) -> None:
        run, data = self.run, self.data
        conn.send_bytes(pickle.dumps(run, protocol=pickle.HIGHEST_PROTOCOL))
        for handle in self.refs:
            handle.forward(conn)
        if run.inline is not None:  # small: it went inside the Run (see inline_of)
            return
        if isinstance(data, Handle):
            data.forward(conn)
        else:
            store.send(conn, data)

    def close(self) -> None:
        self.data.close()
        if self.owns_refs:
            for handle in self.refs:
                handle.close()


@dataclass(eq=False)
class Call:
    """Everything the pool knows of one cookie, from the moment it hears of it."""

    cookie: int
    name: str
    domain: str | None  # None: it ran inline and never entered the pool
    work: Work | None = None  # its work, until sent (None while held)
    timeout: float | None = None
    sent_at: float = 0.0
    worker: Worker | None = None
    outcome: Outcome | None = None  # published under Pool.changed
    # Crash retries: the delay before each run left, the work to send again, the runs lost.
    retry_delays: tuple[float, ...] = ()
    sent: Work | None = None
    retried: list[Retried] = dataclasses.field(default_factory=list)
    after: tuple[int, ...] = ()  # a reservation's: the cookies it waits for


def outcome_of(done: Done, handle: Handle | None, store: Store) -> Outcome:
    """The outcome a worker's ``Done`` reports (``handle``: its result's frame, if one came)."""
    times = (done.started, done.ended, done.pid, done.waits)
    if done.ok:
        return Outcome(
            done.name,
            True,
            None,
            None,
            *times,
            cookie=done.cookie,
            handle=handle,
            inline=None if done.inline is None else Ref(*done.inline),
            store=store,
            serialize_s=done.serialize_s,
        )
    error = load_error(done.error, done.error_info, done.tb)
    if done.tb:
        error.__cause__ = RemoteTraceback(done.tb)
    if done.unsent:  # the store refused the result: the initcall fails with its error
        refused = HookError(str(error), cookie=done.cookie, name=done.name)
        refused.__cause__ = error
        error = refused
    return Outcome(done.name, False, None, error, *times, cookie=done.cookie)
