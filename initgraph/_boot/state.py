"""Where each plugin of a boot stands, and what the boot must do next: a pure state machine.

Events go in: a plugin was scheduled, launched, refused by the pool; its outcome arrived; its
commit started, ended or failed; the boot was interrupted; its shutdown hook started and ended.
Decisions come out: which plugins to launch, which commit may run now, which reservations to
cancel (the transitions that end plugins without running them return their names), what is
stuck, where every plugin stood when an interrupt stopped the boot, and which plugins to shut
down in which order. No processes, clocks, threads or files: times are passed in, in
seconds since the boot started. :class:`~initgraph._boot.run._Run` does the I/O around it. What
it keeps of each plugin, a :class:`Record`, and the stages are in :mod:`.records`.

One plugin's stages::

    WAITING ──launched──► RUNNING ──outcome, ok──► FINISHED ──commit_started──► COMMITTING
     │  │                  │   │                      │                          │       │
     │  │            refused   outcome, failed        aborting, and its turn     committed │
     │  │                  ▼   ▼                      ▼                          ▼       │
     │  │            REFUSED ──► FAILED ◄──┐        CANCELLED                COMMITTED   │
     │  │           (outcome)              └────────────commit_failed────────────────────┘
     │  └── the boot aborts ──► CANCELLED
     └── a plugin it requires did not commit ──► SKIPPED ◄── (from RUNNING, REFUSED, FINISHED too)

``requires`` holds a plugin back twice. Its init is launched once every plugin it requires has
finished its init (is FINISHED, COMMITTING or COMMITTED: its result exists), so a slow commit
elsewhere does not delay it. Its commit runs once every plugin it requires has committed, in
any domain, and every lower cookie of its own domain is over: a domain commits in cookie order,
so a plugin waits at FINISHED until then. A plugin it requires that ends without committing
(its init or its commit failed, or it was skipped) skips it, whether or not its init ran: one
still running stays SKIPPED whatever its outcome, and publishes nothing.

``where = "main"`` inits run one at a time on the thread that called ``boot()``, so one is
launched only once every ``where = "main"`` plugin with a lower cookie (in any domain) has ended
its init: a main init that synchronizes then never waits for a lower main init queued behind it
on that thread. Lower pool plugins need nothing of that thread (an init never waits for a
commit), so they finish while it waits.

Shutdown (:meth:`BootState.begin_shutdown`) takes every COMMITTED plugin in the reverse of the
order the commits happened: within a domain that is reverse cookie order, and domains interleave
as their commits did, reversed. It is given once: a second call returns nothing.

An interrupt moves every plugin that has not reached a final stage to CANCELLED. SKIPPED and
CANCELLED plugins that never ran still have a reservation: the boot cancels it, and the scheduler
reports that outcome too (``reported``); one skipped while it ran reports its own outcome.

The whole state is one immutable value: a transition builds the next one aside and stores it with a
single assignment. An interrupt (``KeyboardInterrupt`` lands between any two bytecodes) therefore
finds the state before the event or after it, never a mix: a plugin cannot be found finished with
its failure not yet recorded.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from .records import (
    FINAL,
    INIT_DONE,
    LAUNCHED,
    MAIN_BUSY,
    SKIPPABLE,
    Attempt,
    Failure,
    Groups,
    Record,
    Stage,
    Transfer,
    Wait,
    attempts_problem,
    describe_error,
    failure_of,
    group_of,
)

__all__ = [
    "Attempt",
    "BootState",
    "Failure",
    "Groups",
    "Planned",
    "Record",
    "Stage",
    "Transfer",
    "Wait",
    "describe_error",
]


class Planned(Protocol):
    """What the state machine needs of a planned plugin."""

    @property
    def name(self) -> str: ...
    @property
    def domain(self) -> str: ...
    @property
    def requires(self) -> tuple[str, ...]: ...
    @property
    def optional(self) -> bool: ...
    @property
    def where(self) -> str: ...


@dataclass(frozen=True)
class _Now:
    records: Mapping[str, Record]
    aborting: bool  # a plugin that is not optional failed and on_error is "abort"
    commits: tuple[str, ...] = ()  # committed plugins, in the order their commits ended
    shutdown: tuple[str, ...] | None = None  # the shutdown order, once begin_shutdown gave it


class _Draft:
    """The next state, built aside by one transition."""

    def __init__(self, now: _Now) -> None:
        self.records = dict(now.records)
        self.aborting = now.aborting
        self.commits = now.commits
        self.shutdown = now.shutdown
        self.ended: list[str] = []  # ended without running: their reservations must be cancelled


_INTERRUPTED = {
    "uncommitted": "finished but not committed: the boot was interrupted",
    "running": "cancelled while running: the boot was interrupted",
    "not_started": "cancelled: the boot was interrupted before it started",
}


class BootState:
    """The stage of every plugin of a boot, moved by events; see the module docstring.

    ``plugins`` are in cookie order; ``on_error`` is ``"abort"`` (the first failure of a plugin
    that is not optional cancels everything not yet launched) or ``"continue"``. Each transition
    raises ``ValueError`` for an event that cannot happen in the plugin's stage: that is a bug of
    the caller, not of a plugin.
    """

    def __init__(self, plugins: Iterable[Planned], *, on_error: str) -> None:
        self._plugins = {p.name: p for p in plugins}
        self._abort = on_error == "abort"
        self._dependents: dict[str, list[str]] = {name: [] for name in self._plugins}
        domains: dict[str, list[str]] = {}
        for p in self._plugins.values():
            for required in p.requires:
                self._dependents[required].append(p.name)
            domains.setdefault(p.domain, []).append(p.name)
        self._domains = {domain: tuple(names) for domain, names in domains.items()}
        self._now = _Now({name: Record(name) for name in self._plugins}, aborting=False)

    # -- queries -----------------------------------------------------------------------------------
    def record(self, name: str) -> Record:
        return self._now.records[name]

    def records(self) -> tuple[Record, ...]:
        """Every plugin's record, in cookie order."""
        return tuple(self._now.records.values())

    @property
    def aborting(self) -> bool:
        return self._now.aborting

    @property
    def done(self) -> bool:
        """Every plugin is over: the boot has nothing left to wait for."""
        return all(record.over for record in self._now.records.values())

    def ready(self) -> tuple[str, ...]:
        """The plugins to launch now, in cookie order: everything they require finished its init."""
        if self._now.aborting:
            return ()
        records = self._now.records
        return tuple(
            name
            for name, record in records.items()
            if record.stage is Stage.WAITING
            and not self._missing(records, name)
            and self._main_before(records, name) is None
        )

    def next_commit(self) -> str | None:
        """The plugin whose commit may run now, if any.

        It finished, it is the first plugin of its domain not yet over (every lower cookie of
        its domain committed or failed), and every plugin it requires, in any domain, committed.
        Domains are taken in the order they first appear in the plan.
        """
        records = self._now.records
        for names in self._domains.values():
            head = self._head(records, names)
            if (
                head is not None
                and head.stage is Stage.FINISHED
                and self._uncommitted(records, head.name) is None
            ):
                return head.name
        return None

    def running(self) -> dict[str, float]:
        """Each plugin handed over and not finished, with when it was launched."""
        return {
            name: record.ready
            for name, record in self._now.records.items()
            if record.stage in LAUNCHED and record.ready is not None
        }

    def waiting(self) -> dict[str, str]:
        """Each plugin not launched yet, with the first plugin it requires still in its init."""
        records = self._now.records
        waiting: dict[str, str] = {}
        for name, record in records.items():
            if record.stage is not Stage.WAITING:
                continue
            missing = self._missing(records, name)
            if missing:
                waiting[name] = missing[0]
            elif (before := self._main_before(records, name)) is not None:
                waiting[name] = before
        return waiting

    def shutdown_failures(self) -> dict[str, Failure]:
        """Why each plugin's shutdown failed or did not run, in shutdown order."""
        found = {}
        for name in self._now.shutdown or ():
            failure = self._now.records[name].shutdown_failure
            if failure is not None:
                found[name] = failure
        return found

    def failures(self) -> dict[str, Failure]:
        """Why each plugin that did not commit did not, in cookie order."""
        return {
            name: record.failure
            for name, record in self._now.records.items()
            if record.failure is not None
        }

    def groups(self) -> Groups:
        """Where each plugin stands, as an interrupt reports it."""
        found: dict[str, list[str]] = {
            "committed": [],
            "uncommitted": [],
            "running": [],
            "failed": [],
            "not_started": [],
        }
        for name, record in self._now.records.items():
            found[group_of(record)].append(name)
        return Groups(**{group: tuple(names) for group, names in found.items()})

    # -- transitions -------------------------------------------------------------------------------
    def scheduled(self, name: str, at: float) -> None:
        """Its cookie was reserved at ``at``."""
        record = self._expect(name, "scheduled", Stage.WAITING)
        draft = _Draft(self._now)
        draft.records[name] = replace(record, scheduled=at)
        self._publish(draft)

    def launched(self, name: str, at: float) -> None:
        """It is being handed to a worker or a thread of the parent, from ``at`` on."""
        record = self._expect(name, "launched", Stage.WAITING)
        draft = _Draft(self._now)
        draft.records[name] = replace(record, stage=Stage.RUNNING, ready=at)
        self._publish(draft)

    def refused(self, name: str) -> None:
        """The pool refused it: it never starts, and the refusal comes back as its outcome."""
        record = self._expect(name, "refused", Stage.RUNNING)
        draft = _Draft(self._now)
        draft.records[name] = replace(record, stage=Stage.REFUSED)
        self._publish(draft)

    def outcome(
        self,
        name: str,
        *,
        value: object = None,
        error: BaseException | None = None,
        started: float | None = None,
        ended: float | None = None,
        pid: int | None = None,
        waits: tuple[Wait, ...] = (),
        attempts: tuple[Attempt, ...] = (),
        transfers: tuple[Transfer, ...] = (),
    ) -> tuple[str, ...]:
        """The scheduler recorded its outcome: ``value``, or ``error`` if it failed.

        ``started`` is ``None`` for a plugin that never ran (then the other times are ignored).
        ``attempts``: each attempt, when its init was retried (it stayed RUNNING across them):
        none, or two or more numbered from 1, each with its reason but the last, whose reason
        says why it failed exactly when ``error`` is given (see :func:`.records.attempts_problem`).
        ``transfers``: how its result and inputs moved between processes.
        Returns the plugins this ended without running (skipped, or cancelled by an abort), whose
        reservations must be cancelled.
        """
        record = self._now.records[name]
        if record.reported or record.stage not in (*LAUNCHED, Stage.WAITING, *FINAL):
            msg = f"an outcome of plugin {name!r} came while it was {record.stage.value}"
            raise ValueError(msg)
        if started is not None and (problem := attempts_problem(attempts, ok=error is None)):
            msg = f"the attempts of plugin {name!r} do not add up: {problem}"
            raise ValueError(msg)
        if started is not None:
            record = replace(
                record,
                started=started,
                ended=ended,
                pid=pid,
                waits=waits,
                attempts=attempts,
                transfers=transfers,
            )
        record = replace(record, reported=True)
        draft = _Draft(self._now)
        draft.records[name] = record
        if record.stage in FINAL:
            pass  # skipped or cancelled before it ran: this is its cancellation coming back
        elif error is None:
            draft.records[name] = replace(record, stage=Stage.FINISHED, result=value)
        else:
            self._fail(draft, name, error)
        return self._publish(draft)

    def commit_started(self, name: str, at: float) -> None:
        """Its commit starts at ``at``.

        It finished, it is the first of its domain not yet over, and everything it requires
        committed.
        """
        records = self._now.records
        head = self._head(records, self._domains[self._plugins[name].domain])
        if head is None or head.name != name or head.stage is not Stage.FINISHED:
            stage = records[name].stage.value
            msg = f"plugin {name!r} may not commit now: it is {stage} or not first in its domain"
            raise ValueError(msg)
        required = self._uncommitted(records, name)
        if required is not None:
            msg = (
                f"plugin {name!r} may not commit now: plugin {required!r}, which it requires, "
                f"has not committed"
            )
            raise ValueError(msg)
        draft = _Draft(self._now)
        record = draft.records[name]
        draft.records[name] = replace(record, stage=Stage.COMMITTING, commit_started=at)
        self._publish(draft)

    def committed(self, name: str, at: float) -> None:
        """Its commit ended at ``at`` and everything it published is visible.

        Calling it again changes nothing, so a caller interrupted around it may repeat it.
        """
        record = self._now.records[name]
        if record.stage is Stage.COMMITTED:
            return
        self._expect(name, "committed", Stage.COMMITTING)
        draft = _Draft(self._now)
        draft.records[name] = replace(record, stage=Stage.COMMITTED, commit_ended=at)
        draft.commits = (*draft.commits, name)
        self._publish(draft)

    def commit_began(self, name: str, at: float) -> None:
        """Its commit, decided earlier, really began at ``at`` (it waited for the thread)."""
        self._expect(name, "commit_began", Stage.COMMITTING)
        draft = _Draft(self._now)
        draft.records[name] = replace(draft.records[name], commit_started=at)
        self._publish(draft)

    def commit_failed(self, name: str, error: BaseException, at: float) -> tuple[str, ...]:
        """Its commit raised ``error`` at ``at``; it published nothing.

        Returns the plugins this ended without running, as :meth:`outcome` does.
        """
        record = self._expect(name, "commit_failed", Stage.COMMITTING)
        draft = _Draft(self._now)
        draft.records[name] = replace(record, commit_ended=at)
        self._fail(draft, name, error)
        return self._publish(draft)

    def skip_stuck(self) -> tuple[str, ...]:
        """Skip every plugin that can no longer start, because nothing in flight could let it.

        A safety net: a caller that launches what is ready after every event never needs it.
        Returns the plugins skipped (their reservations must be cancelled); none while a plugin
        runs, a cancellation has not come back, or a plugin is ready to launch.
        """
        records = self._now.records
        if self.ready() or any(
            r.stage in LAUNCHED or (r.stage in FINAL and not r.reported) for r in records.values()
        ):
            return ()
        draft = _Draft(self._now)
        for name in self._plugins:
            if draft.records[name].stage is Stage.WAITING:
                missing = ", ".join(map(repr, self._missing(draft.records, name)))
                reason = f"skipped: it requires {missing}, which did not commit"
                self._end(draft, name, Stage.SKIPPED, reason, root=None)
        return self._publish(draft)

    def interrupt(self) -> Groups:
        """An interrupt stopped the boot: where each plugin stood.

        Every plugin that had not reached a final stage is cancelled, with a message saying where
        the interrupt found it.
        """
        groups = self.groups()
        draft = _Draft(self._now)
        for group, message in _INTERRUPTED.items():
            for name in getattr(groups, group):
                failure = Failure(name, "cancelled", message)
                draft.records[name] = replace(
                    draft.records[name], stage=Stage.CANCELLED, failure=failure
                )
        self._publish(draft)
        return groups

    # -- shutdown ----------------------------------------------------------------------------------
    def begin_shutdown(self, having: Container[str]) -> tuple[str, ...]:
        """The plugins to shut down, in order: every committed one in ``having``, commits reversed.

        ``having``: the plugins with a shutdown hook. Once per boot: a second call returns
        ``()``. No commit may be under way (the boot is over, or an interrupt ended it).
        """
        if self._now.shutdown is not None:
            return ()
        busy = [r.name for r in self._now.records.values() if r.stage is Stage.COMMITTING]
        if busy:
            msg = f"shutdown may not begin while plugin {busy[0]!r} commits"
            raise ValueError(msg)
        draft = _Draft(self._now)
        draft.shutdown = tuple(name for name in reversed(draft.commits) if name in having)
        self._publish(draft)
        return draft.shutdown

    def shutdown_started(self, name: str, at: float) -> None:
        """Its shutdown hook started at ``at``, once every plugin before it ended its own."""
        record = self._shutting(name, "shutdown_started")
        order = self._now.shutdown or ()
        for before in order[: order.index(name)]:
            if self._now.records[before].shutdown_ended is None:
                msg = f"plugin {name!r} may not shut down before plugin {before!r}"
                raise ValueError(msg)
        if record.shutdown_started is not None:
            msg = f"plugin {name!r} already started its shutdown"
            raise ValueError(msg)
        draft = _Draft(self._now)
        draft.records[name] = replace(record, shutdown_started=at)
        self._publish(draft)

    def shutdown_ended(self, name: str, at: float, error: BaseException | None = None) -> None:
        """Its shutdown ended at ``at``: ``error`` if its hook failed, ran too long or never ran."""
        record = self._shutting(name, "shutdown_ended")
        if record.shutdown_ended is not None:
            msg = f"plugin {name!r} already ended its shutdown"
            raise ValueError(msg)
        failure = None if error is None else failure_of(name, error)
        draft = _Draft(self._now)
        draft.records[name] = replace(record, shutdown_ended=at, shutdown_failure=failure)
        self._publish(draft)

    def _shutting(self, name: str, event: str) -> Record:
        if name not in (self._now.shutdown or ()):
            msg = f"{event}({name!r}): it is not in the shutdown (it did not commit, or none began)"
            raise ValueError(msg)
        return self._now.records[name]

    # -- the steps transitions are made of ---------------------------------------------------------
    def _expect(self, name: str, event: str, stage: Stage) -> Record:
        record = self._now.records[name]
        if record.stage is not stage:
            msg = f"{event}({name!r}) needs it {stage.value}, but it is {record.stage.value}"
            raise ValueError(msg)
        return record

    def _publish(self, draft: _Draft) -> tuple[str, ...]:
        """Finish ``draft`` and make it the state, in one assignment."""
        if draft.aborting:
            self._discard_uncommitted(draft)
        self._now = _Now(draft.records, draft.aborting, draft.commits, draft.shutdown)
        return tuple(draft.ended)

    def _fail(self, draft: _Draft, name: str, error: BaseException) -> None:
        failure = failure_of(name, error)
        draft.records[name] = replace(
            draft.records[name], stage=Stage.FAILED, failure=failure, reported=True
        )
        if self._abort and not self._plugins[name].optional and not draft.aborting:
            draft.aborting = True
            for other in self._plugins:
                self._end(draft, other, Stage.CANCELLED, f"cancelled: plugin {name!r} failed")
        self._skip_dependents(draft, name, root=name)

    def _end(
        self, draft: _Draft, name: str, stage: Stage, message: str, root: str | None = None
    ) -> None:
        """End a plugin that was never launched: skipped, or cancelled by an abort."""
        record = draft.records[name]
        if record.stage is not Stage.WAITING:
            return
        failure = Failure(name, stage.value, message, None, root)
        draft.records[name] = replace(record, stage=stage, failure=failure)
        draft.ended.append(name)
        if stage is Stage.SKIPPED:
            self._skip_dependents(draft, name, root=root or name)

    def _skip_dependents(self, draft: _Draft, name: str, *, root: str) -> None:
        """Skip what requires ``name``, and what requires those, depth first in plan order.

        A dependent may have started (its requirement's init finished before the requirement
        failed to commit): then it is skipped all the same, and only one that never launched
        is returned for its reservation to be cancelled; one still running reports its outcome.
        """
        # An explicit stack, not recursion: a long chain of requirements must not overflow.
        stack = [(dependent, name) for dependent in reversed(self._dependents[name])]
        while stack:
            dependent, required = stack.pop()
            record = draft.records[dependent]
            if record.stage not in SKIPPABLE:
                continue
            message = f"skipped: it requires {required!r}, which did not commit"
            failure = Failure(dependent, "skipped", message, None, root)
            draft.records[dependent] = replace(record, stage=Stage.SKIPPED, failure=failure)
            if record.stage is Stage.WAITING:
                draft.ended.append(dependent)
            stack.extend((d, dependent) for d in reversed(self._dependents[dependent]))

    def _discard_uncommitted(self, draft: _Draft) -> None:
        """While aborting, a finished plugin whose turn to commit came is cancelled instead."""
        message = "finished but not committed: the boot was aborting"
        for names in self._domains.values():
            while (head := self._head(draft.records, names)) is not None:
                if head.stage is not Stage.FINISHED:
                    break
                failure = Failure(head.name, "cancelled", message)
                draft.records[head.name] = replace(head, stage=Stage.CANCELLED, failure=failure)

    def _head(self, records: Mapping[str, Record], names: tuple[str, ...]) -> Record | None:
        """The first plugin of a domain that is not over."""
        for name in names:
            record = records[name]
            if not record.over:
                return record
        return None

    def _missing(self, records: Mapping[str, Record], name: str) -> list[str]:
        """What ``name`` requires whose init has not finished: it holds back its launch."""
        requires = self._plugins[name].requires
        return [r for r in requires if records[r].stage not in INIT_DONE]

    def _main_before(self, records: Mapping[str, Record], name: str) -> str | None:
        """For a ``where = "main"`` plugin: a lower one whose init has not ended yet."""
        if self._plugins[name].where != "main":
            return None
        for other, p in self._plugins.items():
            if other == name:
                return None
            if p.where == "main" and records[other].stage in MAIN_BUSY:
                return other
        return None

    def _uncommitted(self, records: Mapping[str, Record], name: str) -> str | None:
        """The first plugin ``name`` requires that has not committed: it holds back its commit."""
        for required in self._plugins[name].requires:
            if records[required].stage is not Stage.COMMITTED:
                return required
        return None
