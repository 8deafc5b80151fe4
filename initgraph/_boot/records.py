"""What the boot records of each plugin: its stage, its failure, its waits and attempts, its times.

Plain immutable values, and the pure functions that classify them. :mod:`.state` moves them
from one stage to the next (:class:`~initgraph._boot.state.BootState`); the boot, its reports and
traces read them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from .._errors import HookError, HookTimeout, WorkerCrashed

__all__ = [
    "FINAL",
    "INIT_DONE",
    "LAUNCHED",
    "MAIN_BUSY",
    "SKIPPABLE",
    "UNCOMMITTED",
    "Attempt",
    "Failure",
    "Groups",
    "Record",
    "Stage",
    "Transfer",
    "Wait",
    "attempts_problem",
    "describe_error",
    "failure_of",
    "group_of",
]


class Stage(enum.Enum):
    """Where a plugin stands in a boot."""

    WAITING = "waiting"  # not launched: a plugin it requires has not finished its init yet
    RUNNING = "running"  # handed to a worker (or a thread of the parent); no outcome yet
    REFUSED = "refused"  # the pool refused it (say, data that cannot be pickled); outcome to come
    FINISHED = "finished"  # its init succeeded; it waits for its turn to commit (and requirements)
    COMMITTING = "committing"  # its initgraph_commit runs
    COMMITTED = "committed"  # everything it published is visible
    FAILED = "failed"  # its init or its commit failed
    SKIPPED = "skipped"  # a plugin it requires did not commit (its own init may have run)
    CANCELLED = "cancelled"  # the boot aborted or was interrupted before it committed


FINAL = frozenset({Stage.COMMITTED, Stage.FAILED, Stage.SKIPPED, Stage.CANCELLED})
LAUNCHED = frozenset({Stage.RUNNING, Stage.REFUSED})
UNCOMMITTED = frozenset({Stage.FINISHED, Stage.COMMITTING})
# Its init succeeded: its result exists, and what requires it may start.
INIT_DONE = frozenset({Stage.FINISHED, Stage.COMMITTING, Stage.COMMITTED})
# Not over, and may still be skipped: a requirement that did not commit ends it.
SKIPPABLE = frozenset({Stage.WAITING, Stage.RUNNING, Stage.REFUSED, Stage.FINISHED})
# A where = "main" plugin whose init has not ended: it holds back every higher main plugin.
MAIN_BUSY = frozenset({Stage.WAITING, Stage.RUNNING, Stage.REFUSED})


@dataclass(frozen=True)
class Wait:
    """A wait inside a plugin's init, in seconds since the boot started.

    The boot records them and traces read them back: one shape for both. (The core's own record
    of a wait holds ``time.monotonic()`` readings instead.)
    """

    what: str  # "cookie" (ctx.synchronize / synchronize_cookie), "full" or "after"
    domain: str | None
    cookie: int  # the cookie waited below; 0 for a full synchronize
    started: float
    ended: float

    @property
    def label(self) -> str:
        """How traces and plots name it: ``synchronize(4)``, ``synchronize_full()``, ..."""
        if self.what == "cookie":
            return f"synchronize({self.cookie})"
        if self.what == "after":
            return f"after({self.cookie})"
        return f"synchronize_full({self.domain})" if self.domain else "synchronize_full()"

    @property
    def duration(self) -> float:
        return self.ended - self.started


@dataclass(frozen=True)
class Attempt:
    """One attempt at a plugin's init, when its init was retried.

    Times are seconds since the boot started (the worker records ``time.monotonic()`` readings,
    which the boot shifts). ``reason`` says why the attempt did not succeed (``None`` for the
    one that did); ``delay`` is how long the plugin waited after it before the next attempt.
    """

    number: int  # 1 for the first
    started: float
    ended: float
    reason: str | None = None
    delay: float = 0.0

    def shifted(self, by: float) -> Attempt:
        """The same attempt with its times moved by ``-by``."""
        return replace(self, started=self.started - by, ended=self.ended - by)


@dataclass(frozen=True)
class Transfer:
    """Moving a plugin's result or one of its inputs between processes: one step of it.

    ``name``: ``"serialize"`` (pickling and writing it, in the process that made it),
    ``"transfer"`` (in flight: from its send to its receipt, on the receiving side) or ``"load"``
    (mapping and unpickling it, in the process that reads it). ``pid``: the process where it
    happened; ``size``: the bytes moved; ``of``: for an input, the plugin whose result it is
    (None for the plugin's own result). Times in seconds since the boot started.
    """

    name: str
    pid: int
    started: float
    ended: float
    size: int
    of: str | None = None

    @property
    def duration(self) -> float:
        return max(0.0, self.ended - self.started)


@dataclass(frozen=True)
class Failure:
    """Why a plugin did not commit."""

    plugin: str
    kind: str  # "error" | "timeout" | "crash" | "skipped" | "cancelled"
    message: str
    error: BaseException | None = None
    root: str | None = None  # the plugin whose failure this one follows from (skipped)


@dataclass(frozen=True)
class Record:
    """One plugin's stage, why it failed, and when things happened to it.

    Times are seconds since the boot started; ``None`` until they happen. ``result`` is the init's
    result from its outcome until the boot is over (the state machine never looks inside it).
    """

    name: str
    stage: Stage = Stage.WAITING
    reported: bool = False  # the scheduler recorded its outcome
    failure: Failure | None = None
    result: object = None
    scheduled: float | None = None  # its cookie was reserved
    ready: float | None = None  # launched: everything it requires had finished its init
    started: float | None = None  # its init started (in a worker or a thread of the parent)
    ended: float | None = None
    commit_started: float | None = None
    commit_ended: float | None = None
    pid: int | None = None  # the process its init ran in
    waits: tuple[Wait, ...] = ()
    attempts: tuple[Attempt, ...] = ()  # every attempt, when its init was retried
    transfers: tuple[Transfer, ...] = ()  # its result and inputs between processes
    shutdown_started: float | None = None  # its initgraph_shutdown started
    shutdown_ended: float | None = None
    shutdown_failure: Failure | None = None  # its initgraph_shutdown failed or was not run

    @property
    def over(self) -> bool:
        """In a final stage, and nothing more will be heard of it."""
        return self.stage in FINAL and self.reported


@dataclass(frozen=True)
class Groups:
    """Every plugin of a boot in exactly one group, each in cookie order."""

    committed: tuple[str, ...]  # init finished, commit done: everything it published is visible
    uncommitted: tuple[str, ...]  # init finished, not committed: it published nothing
    running: tuple[str, ...]  # handed to a worker (or a thread of the parent), not finished
    failed: tuple[str, ...]  # did not commit for another reason
    not_started: tuple[str, ...]  # never handed over


def group_of(record: Record) -> str:
    """The :class:`Groups` field an interrupt puts ``record`` in."""
    if record.stage is Stage.COMMITTED:
        return "committed"
    if record.failure is not None:
        return "failed"
    if record.stage in UNCOMMITTED:
        return "uncommitted"
    if record.stage is Stage.RUNNING:
        return "running"
    return "not_started"  # waiting, or refused by the pool


def failure_of(plugin: str, error: BaseException) -> Failure:
    """The failure of a plugin whose init or commit raised ``error``."""
    if isinstance(error, HookTimeout):
        kind = "timeout"
    elif isinstance(error, WorkerCrashed):
        kind = "crash"
    else:
        kind = "error"
    message = str(error) if isinstance(error, HookError) else describe_error(error)
    return Failure(plugin, kind, message, error)


def describe_error(error: BaseException) -> str:
    """``"ValueError: text"``, or the type's name alone when the text is empty."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def attempts_problem(attempts: tuple[Attempt, ...], *, ok: bool) -> str | None:
    """What is wrong with the ``attempts`` of an init that ended (``ok`` or failed), if anything.

    An init tried once has none. A retried one has every attempt, numbered from 1: each failed
    but the last, so each has a reason; the last has one exactly when the init failed.
    """
    if not attempts:
        return None
    numbers = [a.number for a in attempts]
    if len(attempts) == 1 or numbers != list(range(1, len(attempts) + 1)):
        return f"attempts numbered {numbers}, not 1 to 2 or more in order"
    if any(a.reason is None for a in attempts[:-1]):
        return "an attempt before the last has no reason"
    if (attempts[-1].reason is None) != ok:
        return f"the last attempt {'failed' if ok else 'succeeded'}, the init did not"
    return None
