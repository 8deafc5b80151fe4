"""Signals for a command: SIGINT and SIGTERM raise in the main thread, a repeat is ignored.

Whatever ends the command, it ends through the boot's own cleanup, so no process of the boot is
left running: SIGTERM is turned into an exception in the main thread, as SIGINT is (``Raise``),
and a repeated signal is ignored while the command stops.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived.

    A KeyboardInterrupt, so that whatever stops at once for Ctrl-C (the boot's cleanup, code
    that re-raises an interrupt it caught) stops for SIGTERM too.
    """


def forget_interrupt() -> None:
    """Keep the exit code ours after an interrupt was caught.

    When a KeyboardInterrupt leaves code that ``exec`` ran from a string (``dataclasses`` builds
    its methods that way, so an interrupt can land there), CPython notes it as unhandled and, at
    exit, kills the process with SIGINT instead of returning our exit code (the exit by signal of
    bpo-1054041). Running code from a string once more clears that note.
    """
    exec("")


# A signal that comes this soon after the one that raised is ignored: long enough for the boot's
# cleanup (about 0.1-0.5 s; at worst it waits 2 s for a worker that ignores SIGTERM, then kills
# it) and the report to finish, short enough that a repeat still gets out of a cleanup that hangs,
# or out of a boot whose plugin swallowed the first KeyboardInterrupt.
_REPEAT_GRACE = 5.0


class Interrupts:
    """What the SIGINT and SIGTERM handlers of one command share."""

    def __init__(self) -> None:
        self.raised_at: float | None = None  # when a handler last raised

    def stopping(self) -> bool:
        """Whether a handler raised less than ``_REPEAT_GRACE`` seconds ago."""
        raised = self.raised_at
        return raised is not None and time.monotonic() - raised < _REPEAT_GRACE


class Raise:
    """A handler for SIGINT or SIGTERM: raise ``exc_type`` in the main thread.

    A signal (either one) that comes within ``_REPEAT_GRACE`` of the one that raised is
    ignored, so an impatient second Ctrl-C, or a SIGTERM after a Ctrl-C, cannot cut the boot's
    cleanup short and leave processes behind; a later one raises again.

    Python runs a signal handler between two bytecodes of the main thread, wherever they are. One
    place must be avoided: the ``os.register_at_fork`` callbacks around a fork, where an exception
    is printed and dropped, and a lock taken before the fork (``logging``'s) is left held, so the
    command would hang instead of stopping. A signal that arrives during a fork is delivered
    again once the fork is over.
    """

    def __init__(self, exc_type: type[BaseException], interrupts: Interrupts) -> None:
        self.exc_type = exc_type
        self.interrupts = interrupts
        self.deferred = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.interrupts.stopping():
            return
        if forks.active:
            if not self.deferred:
                self.deferred = True
                threading.Thread(target=self._redeliver, args=(signum,), daemon=True).start()
            return
        self.interrupts.raised_at = time.monotonic()
        raise self.exc_type

    def _redeliver(self, signum: int) -> None:
        deadline = time.monotonic() + 1.0
        while forks.active and time.monotonic() < deadline:
            time.sleep(0.001)
        self.deferred = False
        os.kill(os.getpid(), signum)


class Forks:
    """Whether this process is inside a fork, and the handlers a forked child must not keep."""

    def __init__(self) -> None:
        self.active = False
        self.registered = False
        self.replaced: dict[int, Any] = {}  # signal -> the handler Raise replaced

    def register(self) -> None:
        # Once per process, and late (at the first command, not at import), so these callbacks
        # come outermost: registered last, the "before" one runs first and "after" ones last.
        if self.registered or not hasattr(os, "register_at_fork"):
            return
        self.registered = True
        # C callables, not Python functions: a handler could run at the start of one.
        os.register_at_fork(
            before=functools.partial(setattr, self, "active", True),
            after_in_parent=functools.partial(setattr, self, "active", False),
            after_in_child=self._after_in_child,
        )

    def _after_in_child(self) -> None:
        # A worker forked during a boot must die of SIGTERM and take SIGINT as usual, not raise
        # this command's exceptions into code that does not expect them.
        self.active = False
        for signum, previous in self.replaced.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signum, previous)
        self.replaced.clear()


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`Terminated` and SIGINT KeyboardInterrupt.

    Only in the main thread, where handlers can be set. SIGINT is taken over only from Python's
    default handler: if the caller ignores it (``nohup``, a background job) or handles it, so be
    it. The previous handlers come back when the block ends.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    forks.register()
    interrupts = Interrupts()
    handlers = {signal.SIGTERM: Raise(Terminated, interrupts)}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        handlers[signal.SIGINT] = Raise(KeyboardInterrupt, interrupts)
    for signum, handler in handlers.items():
        forks.replaced[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum in handlers:
            signal.signal(signum, forks.replaced.pop(signum))


forks = Forks()
