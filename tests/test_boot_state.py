"""The boot's pure state machine, step by step and in random event orders, without processes."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from initgraph import HookError, HookTimeout, WorkerCrashed
from initgraph._boot.state import FINAL, Attempt, BootState, Failure, Groups, Stage, Wait


@dataclass(frozen=True)
class P:
    name: str
    domain: str = "default"
    requires: tuple[str, ...] = ()
    optional: bool = False
    where: str = "pool"


def make(*plugins: P, on_error: str = "continue") -> BootState:
    state = BootState(plugins, on_error=on_error)
    for p in plugins:
        state.scheduled(p.name, 0.0)
    return state


def run(state: BootState, name: str, at: float = 1.0, error: BaseException | None = None) -> None:
    """Launch ``name`` and give it its outcome: ``"value of name"``, or ``error``."""
    state.launched(name, at)
    ended = state.outcome(name, value=f"value of {name}", error=error, started=at, ended=at + 1)
    assert ended == ()


def commit(state: BootState, name: str, at: float = 5.0) -> None:
    assert state.next_commit() == name
    state.commit_started(name, at)
    state.committed(name, at + 0.5)


def stages(state: BootState) -> dict[str, Stage]:
    return {r.name: r.stage for r in state.records()}


BOOM = HookError("initcall 1 'a' raised ValueError: boom", cookie=1, name="a")


# -- launching -----------------------------------------------------------------------------------
def test_plugins_that_require_nothing_are_ready_first_in_cookie_order() -> None:
    state = make(P("a"), P("b", requires=("a",)), P("c"))
    assert state.ready() == ("a", "c")
    assert state.waiting() == {"b": "a"}
    assert stages(state) == dict.fromkeys("abc", Stage.WAITING)
    assert not state.done


def test_scheduled_and_launched_record_their_times() -> None:
    state = BootState([P("a")], on_error="continue")
    assert state.record("a").scheduled is None
    state.scheduled("a", 0.25)
    state.launched("a", 0.5)
    record = state.record("a")
    assert (record.stage, record.scheduled, record.ready) == (Stage.RUNNING, 0.25, 0.5)
    assert state.ready() == ()
    assert state.running() == {"a": 0.5}


def test_an_outcome_records_the_init_times_and_its_value() -> None:
    state = make(P("a"))
    state.launched("a", 0.5)
    wait = Wait("cookie", "default", 0, 0.75, 1.0)
    state.outcome("a", value="v", started=0.6, ended=1.5, pid=42, waits=(wait,))
    record = state.record("a")
    assert record.stage is Stage.FINISHED
    assert (record.started, record.ended, record.pid, record.waits) == (0.6, 1.5, 42, (wait,))
    assert record.result == "v"
    assert record.reported
    assert state.running() == {}


def test_a_finished_init_makes_its_dependents_ready_before_it_commits() -> None:
    state = make(P("a"), P("b", requires=("a",)), P("c", requires=("a", "b")))
    state.launched("a", 1.0)
    assert state.waiting() == {"b": "a", "c": "a"}
    state.outcome("a", value="value of a", started=1.0, ended=2.0)
    assert state.ready() == ("b",)  # its init finished: its result exists
    assert state.waiting() == {"c": "b"}
    state.launched("b", 2.5)
    assert state.record("b").ready == 2.5
    state.commit_started("a", 3.0)
    assert state.record("a").stage is Stage.COMMITTING
    assert state.next_commit() is None
    state.committed("a", 3.5)
    record = state.record("a")
    assert (record.stage, record.commit_started, record.commit_ended) == (Stage.COMMITTED, 3.0, 3.5)
    assert state.ready() == ()  # c still waits for b's init
    state.outcome("b", value="value of b", started=2.5, ended=4.0)
    assert state.ready() == ("c",)


def test_a_dependent_commits_after_what_it_requires_even_in_another_domain() -> None:
    state = make(P("slow"), P("a"), P("b", domain="net", requires=("a",)))
    state.launched("slow", 1.0)
    run(state, "a")
    run(state, "b")  # started and finished while slow, a lower cookie, still runs
    assert state.next_commit() is None  # b's own domain is free, but a has not committed
    with pytest.raises(
        ValueError,
        match=r"^plugin 'b' may not commit now: plugin 'a', which it requires, has not committed$",
    ):
        state.commit_started("b", 2.0)
    state.outcome("slow", value=0, started=1.0, ended=3.0)
    commit(state, "slow")
    commit(state, "a")
    commit(state, "b")
    assert state.done


def test_committed_again_changes_nothing() -> None:
    state = make(P("a"))
    run(state, "a")
    commit(state, "a", at=5.0)
    state.committed("a", 9.0)
    assert state.record("a").commit_ended == 5.5
    assert state.done


def test_a_refused_plugin_counts_as_not_started_and_fails_by_its_outcome() -> None:
    state = make(P("a"))
    state.launched("a", 1.0)
    state.refused("a")
    assert state.record("a").stage is Stage.REFUSED
    assert state.groups().not_started == ("a",)
    refusal = HookError("cannot pickle", cookie=1, name="a")
    assert state.outcome("a", error=refusal) == ()
    record = state.record("a")
    assert record.stage is Stage.FAILED
    assert record.failure == Failure("a", "error", "cannot pickle", refusal)
    assert record.started is None
    assert state.done


# -- commit order --------------------------------------------------------------------------------
def test_a_domain_commits_in_cookie_order_whatever_finished_first() -> None:
    state = make(P("a"), P("b"), P("c", domain="net"))
    run(state, "b")
    assert state.next_commit() is None  # a, a lower cookie of its domain, is not over
    run(state, "c")
    assert state.next_commit() == "c"  # another domain goes on
    commit(state, "c")
    run(state, "a")
    commit(state, "a")
    commit(state, "b")
    assert state.next_commit() is None
    assert state.done


def test_commit_started_out_of_turn_is_refused() -> None:
    state = make(P("a"), P("b"))
    run(state, "b")
    with pytest.raises(ValueError, match=r"^plugin 'b' may not commit now: it is finished or not"):
        state.commit_started("b", 2.0)
    with pytest.raises(ValueError, match=r"^plugin 'a' may not commit now: it is waiting"):
        state.commit_started("a", 2.0)


def test_a_skipped_plugin_holds_its_domain_until_its_cancellation_comes_back() -> None:
    state = make(P("a"), P("b", requires=("a",)), P("c"))
    state.launched("a", 1.0)
    run(state, "c")
    assert state.outcome("a", error=BOOM, started=1.0, ended=2.0) == ("b",)
    assert state.next_commit() is None  # b is skipped, but the scheduler has not said so yet
    assert not state.done
    assert state.outcome("b", error=HookError("skipped", cookie=2, name="b")) == ()
    assert state.record("b").reported
    commit(state, "c")
    assert state.done


# -- failures ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("error", "kind", "message"),
    [
        (BOOM, "error", "initcall 1 'a' raised ValueError: boom"),
        (HookTimeout("initcall 1 'a' timed out", cookie=1, name="a", timeout=1.0), "timeout", None),
        (WorkerCrashed("worker crashed", cookie=1, name="a", exitcode=-11), "crash", None),
        (ValueError("plain"), "error", "ValueError: plain"),
        (ValueError(), "error", "ValueError"),
    ],
)
def test_a_failure_is_classified_by_its_error(
    error: BaseException, kind: str, message: str | None
) -> None:
    state = make(P("a"))
    run(state, "a", error=error)
    failure = state.record("a").failure
    assert failure == Failure("a", kind, message or str(error), error)
    assert state.record("a").stage is Stage.FAILED


def test_a_failed_requirement_skips_its_dependents_transitively_depth_first() -> None:
    state = make(
        P("a"),
        P("b", requires=("a",)),
        P("c", requires=("a", "b")),
        P("d", requires=("c",)),
        P("e"),
    )
    state.launched("a", 1.0)
    assert state.outcome("a", error=BOOM, started=1.0, ended=2.0) == ("b", "c", "d")
    failures = state.failures()
    assert failures["b"] == Failure(
        "b", "skipped", "skipped: it requires 'a', which did not commit", None, "a"
    )
    assert failures["c"].message == "skipped: it requires 'b', which did not commit"
    assert failures["d"].message == "skipped: it requires 'c', which did not commit"
    assert {failures[n].root for n in "bcd"} == {"a"}
    assert state.ready() == ("e",)  # on_error = "continue": the rest goes on
    assert list(failures) == ["a", "b", "c", "d"]


def test_a_failed_commit_skips_dependents_whose_init_ran_or_runs() -> None:
    state = make(
        P("a"),
        P("finished", domain="net", requires=("a",)),
        P("running", domain="io", requires=("a",)),
        P("below", domain="io", requires=("running",)),
        P("waiting", requires=("below",)),
        P("other"),
    )
    run(state, "a")
    run(state, "finished")
    state.launched("running", 2.0)
    state.commit_started("a", 3.0)
    error = HookError("initgraph_commit of plugin 'a' raised KeyError: 'x'", cookie=1, name="a")
    # Only what never launched has a reservation to cancel: running reports its own outcome.
    assert state.commit_failed("a", error, 4.0) == ("below", "waiting")
    skipped = "skipped: it requires 'a', which did not commit"
    for name in ("finished", "running"):
        assert state.record(name).stage is Stage.SKIPPED
        assert state.record(name).failure == Failure(name, "skipped", skipped, None, "a")
    assert state.record("below").failure == Failure(
        "below", "skipped", "skipped: it requires 'running', which did not commit", None, "a"
    )
    assert state.record("waiting").stage is Stage.SKIPPED
    assert state.record("finished").over  # its init ran and finished: nothing more to hear
    assert not state.record("running").over
    assert state.next_commit() is None  # finished never commits
    # running's init ends well, or not: it stays skipped, and its times are kept
    assert state.outcome("running", value=1, started=2.0, ended=5.0) == ()
    assert state.record("running").stage is Stage.SKIPPED
    assert state.record("running").ended == 5.0
    for name in ("below", "waiting"):
        state.outcome(name, error=HookError("skipped", cookie=4, name=name))
    run(state, "other")
    commit(state, "other")
    assert state.done
    assert list(state.failures()) == ["a", "finished", "running", "below", "waiting"]


def test_a_failed_commit_publishes_nothing_and_skips_its_dependents() -> None:
    state = make(P("a"), P("b", requires=("a",)))
    run(state, "a")
    state.commit_started("a", 3.0)
    error = HookError("initgraph_commit of plugin 'a' raised KeyError: 'x'", cookie=1, name="a")
    assert state.commit_failed("a", error, 4.0) == ("b",)
    record = state.record("a")
    assert (record.stage, record.commit_ended, record.failure) == (
        Stage.FAILED,
        4.0,
        Failure("a", "error", str(error), error),
    )
    assert state.record("b").stage is Stage.SKIPPED


def test_on_error_abort_cancels_what_was_not_launched_and_what_has_yet_to_commit() -> None:
    state = make(
        P("a"), P("b"), P("c"), P("d", requires=("a",)), P("e", domain="net"), on_error="abort"
    )
    for name in ("a", "c", "e"):
        state.launched(name, 1.0)
    state.outcome("c", value=1, started=1.0, ended=2.0)  # finished, behind a
    state.launched("b", 1.0)
    ended = state.outcome("b", error=BOOM, started=1.0, ended=2.0)
    assert ended == ("d",)
    assert state.aborting
    assert state.failures()["d"] == Failure("d", "cancelled", "cancelled: plugin 'b' failed")
    assert state.ready() == ()
    state.outcome("a", value=0, started=1.0, ended=3.0)  # a ran on and finished: not committed
    assert state.next_commit() is None
    aborted = "finished but not committed: the boot was aborting"
    assert state.failures()["a"] == Failure("a", "cancelled", aborted)
    assert state.failures()["c"] == Failure("c", "cancelled", aborted)
    state.outcome("e", value=2, started=1.0, ended=4.0)
    assert state.record("e").stage is Stage.CANCELLED
    state.outcome("d", error=HookError("cancelled", cookie=4, name="d"))
    assert state.done


def test_an_optional_failure_does_not_abort() -> None:
    state = make(P("a", optional=True), P("b"), P("c", requires=("a",)), on_error="abort")
    state.launched("a", 1.0)
    assert state.outcome("a", error=BOOM, started=1.0, ended=2.0) == ("c",)
    assert not state.aborting
    assert state.ready() == ("b",)
    assert state.record("c").failure == Failure(
        "c", "skipped", "skipped: it requires 'a', which did not commit", None, "a"
    )


# -- stuck plugins -------------------------------------------------------------------------------
def test_nothing_is_stuck_while_something_is_in_flight() -> None:
    state = make(P("a"), P("b", requires=("a",)))
    state.launched("a", 1.0)
    assert state.skip_stuck() == ()
    assert state.record("b").stage is Stage.WAITING


def test_a_plugin_ready_to_launch_is_not_stuck() -> None:
    """A finished requirement lets its dependents start: that is not being stuck.

    With the caller launching what is ready after every event nothing is ever stuck, as the
    random event orders check; skip_stuck stays as a safety net.
    """
    state = make(P("a"), P("x"), P("b", requires=("a", "x")), P("c", requires=("b",)))
    run(state, "a")
    run(state, "x")  # finished, never committed: b may start all the same
    assert state.skip_stuck() == ()
    assert state.ready() == ("b",)


# -- interrupts ----------------------------------------------------------------------------------
def test_an_interrupt_puts_every_plugin_in_one_group_and_cancels_the_unfinished() -> None:
    state = make(
        P("done"),
        P("bad", optional=True),
        P("finished"),
        P("running", domain="net"),
        P("waiting", requires=("finished",)),
        P("committing", domain="io"),
    )
    run(state, "done")
    commit(state, "done")
    run(state, "bad", error=BOOM)
    run(state, "finished")
    state.launched("running", 1.0)
    run(state, "committing")
    state.commit_started("committing", 6.0)
    groups = state.interrupt()
    assert groups == Groups(
        committed=("done",),
        uncommitted=("finished", "committing"),
        running=("running",),
        failed=("bad",),
        not_started=("waiting",),
    )
    failures = state.failures()
    assert failures["finished"].message == "finished but not committed: the boot was interrupted"
    assert failures["running"].message == "cancelled while running: the boot was interrupted"
    assert failures["waiting"].message == "cancelled: the boot was interrupted before it started"
    assert failures["bad"].kind == "error"  # its own failure stands
    assert all(r.stage in FINAL for r in state.records())


# -- refused events ------------------------------------------------------------------------------
def test_events_that_cannot_happen_in_a_stage_are_refused() -> None:
    state = make(P("a"))
    with pytest.raises(ValueError, match=r"^refused\('a'\) needs it running, but it is waiting$"):
        state.refused("a")
    with pytest.raises(ValueError, match=r"^committed\('a'\) needs it committing"):
        state.committed("a", 1.0)
    run(state, "a")
    with pytest.raises(ValueError, match=r"^launched\('a'\) needs it waiting, but it is finished$"):
        state.launched("a", 1.0)
    with pytest.raises(ValueError, match=r"^an outcome of plugin 'a' came while it was finished$"):
        state.outcome("a", value=1)


def test_a_transition_that_raises_leaves_the_state_as_it_was() -> None:
    state = make(P("a"), P("b", requires=("a",)))
    state.launched("a", 1.0)
    before = state.records()

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        state.outcome("a", error=Unprintable(), started=1.0, ended=2.0)
    assert state.records() == before
    assert state.groups().running == ("a",)


# -- random event orders against the rules -------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(1, 14),
    domains=st.lists(st.sampled_from("xyz"), min_size=14, max_size=14),
    edges=st.lists(st.tuples(st.integers(0, 13), st.integers(0, 13)), max_size=30),
    optional=st.sets(st.integers(0, 13), max_size=4),
    main=st.sets(st.integers(0, 13), max_size=6),
    on_error=st.sampled_from(["continue", "abort"]),
    rng=st.randoms(use_true_random=False),
    interrupt_after=st.one_of(st.none(), st.integers(0, 40)),
)
def test_random_event_orders_keep_every_rule(
    n: int,
    domains: list[str],
    edges: list[tuple[int, int]],
    optional: set[int],
    main: set[int],
    on_error: str,
    rng: random.Random,
    interrupt_after: int | None,
) -> None:
    requires: dict[int, set[int]] = {i: set() for i in range(n)}
    for a, b in edges:
        lo, hi = sorted((a, b))
        if lo != hi and hi < n:
            requires[hi].add(lo)
    plan = [
        P(
            f"p{i}",
            domains[i],
            tuple(f"p{r}" for r in sorted(requires[i])),
            i in optional,
            "main" if i in main else "pool",
        )
        for i in range(n)
    ]
    by_name = {p.name: p for p in plan}
    cookie = {p.name: i for i, p in enumerate(plan)}
    state = BootState(plan, on_error=on_error)
    for p in plan:
        state.scheduled(p.name, 0.0)
    fate = {p.name: rng.choice(["ok", "ok", "ok", "init", "commit", "refused"]) for p in plan}
    tries = {p.name: rng.choice([1, 1, 2, 3]) for p in plan}  # attempts its init takes
    given: dict[str, tuple[Attempt, ...]] = {}  # the attempts each outcome came with
    in_flight: list[str] = []  # launched, or cancelled without running: an outcome will come
    commits: list[str] = []
    clock = 0.0

    def tick() -> float:
        nonlocal clock
        clock += 1.0
        return clock

    init_ok: set[str] = set()  # outcomes that came back ok, in the order they came
    commit_failed: set[str] = set()

    def ended(names: tuple[str, ...]) -> None:
        for name in names:
            record = state.record(name)
            assert record.stage in (Stage.SKIPPED, Stage.CANCELLED)
            assert record.ready is None, "only what never launched has a reservation to cancel"
            in_flight.append(name)

    def launch_ready() -> None:
        for name in state.ready():
            assert not state.aborting
            # an init starts only after every init it requires finished ok
            assert all(r in init_ok for r in by_name[name].requires)
            if by_name[name].where == "main":
                # one main init at a time, in cookie order: every lower one's init has ended
                for q in plan[: cookie[name]]:
                    if q.where == "main":
                        assert state.record(q.name).stage not in busy, (name, q.name)
            state.launched(name, tick())
            if fate[name] == "refused":
                state.refused(name)
            in_flight.append(name)

    def commit_ready() -> None:
        while (name := state.next_commit()) is not None:
            p = by_name[name]
            # a commit runs only after every commit it requires, in any domain, and once
            # every lower cookie of its domain is over
            assert all(r in commits for r in p.requires)
            earlier = [q for q in plan if q.domain == p.domain and cookie[q.name] < cookie[name]]
            assert all(state.record(q.name).over for q in earlier), "commit out of cookie order"
            state.commit_started(name, tick())
            if fate[name] == "commit":
                ended(state.commit_failed(name, ValueError("commit"), tick()))
                commit_failed.add(name)
            else:
                state.committed(name, tick())
                commits.append(name)

    busy = (Stage.WAITING, Stage.RUNNING, Stage.REFUSED)
    launch_ready()
    steps = 0
    while not state.done:
        assert in_flight, f"stuck: {[(r.name, r.stage) for r in state.records()]}"
        if interrupt_after is not None and steps == interrupt_after:
            check_interruption(state, plan)
            check_shutdown(state, commits, rng)
            return
        steps += 1
        name = in_flight.pop(rng.randrange(len(in_flight)))
        record = state.record(name)
        if record.ready is None:  # skipped or cancelled before it launched
            ended(state.outcome(name, error=HookError("cancelled", cookie=1, name=name)))
        elif fate[name] in ("init", "refused"):
            given[name] = attempts(tries[name], ok=False)
            error = ValueError("init")
            times = {"started": tick(), "ended": tick()}
            ended(state.outcome(name, error=error, attempts=given[name], **times))
        else:
            given[name] = attempts(tries[name], ok=True)
            times = {"started": tick(), "ended": tick()}
            ended(state.outcome(name, value=name, attempts=given[name], **times))
            init_ok.add(name)
        # a retried init stays in its stage across its attempts; they are kept as they came
        assert state.record(name).attempts == given.get(name, ())
        launch_ready()
        commit_ready()
        assert state.skip_stuck() == (), "a well-behaved boot never gets stuck"
    # every plugin ends in exactly one final stage, and the commits kept each domain's order:
    # the registry's log is the same whatever order the outcomes came in
    assert all(r.stage in FINAL and r.reported for r in state.records())
    for domain in "xyz":
        order = [cookie[c] for c in commits if by_name[c].domain == domain]
        assert order == sorted(order)
    failures = state.failures()
    for p in plan:
        record = state.record(p.name)
        assert (record.stage is Stage.COMMITTED) == (p.name not in failures)
        if any(state.record(r).stage is not Stage.COMMITTED for r in p.requires):
            # a requirement that did not commit skips its dependents, transitively, unless
            # one's own init failed first
            assert record.stage in (Stage.SKIPPED, Stage.CANCELLED, Stage.FAILED)
            if record.stage is Stage.FAILED:
                assert fate[p.name] in ("init", "refused")
                assert record.ready is not None
            elif not state.aborting:
                assert record.stage is Stage.SKIPPED
                root = failures[p.name].root
                assert root is not None
                assert state.record(root).stage is Stage.FAILED
        elif not state.aborting:
            assert record.stage in (Stage.COMMITTED, Stage.FAILED)
        if commit_failed & set(p.requires) and p.name in init_ok:
            # its init ran and succeeded, then what it requires failed to commit
            assert record.stage is Stage.SKIPPED
            assert failures[p.name].message.endswith("which did not commit")
        if record.stage is Stage.FAILED:
            assert fate[p.name] in ("init", "commit", "refused")
    assert {r.name: r.attempts for r in state.records() if r.attempts} == {
        name: a for name, a in given.items() if a
    }
    check_shutdown(state, commits, rng)


def attempts(n: int, *, ok: bool) -> tuple[Attempt, ...]:
    """The attempts of an init tried ``n`` times: none when once, else each with its reason."""
    if n == 1:
        return ()
    reasons = [f"NotReady: attempt {i}" for i in range(1, n)] + [None if ok else "ValueError"]
    return tuple(Attempt(i, i, i + 0.5, reason) for i, reason in enumerate(reasons, start=1))


@pytest.mark.parametrize(
    ("given", "ok", "problem"),
    [
        (attempts(2, ok=True)[:1], True, r"attempts numbered \[1\], not 1 to 2 or more"),
        (attempts(3, ok=True)[::2], True, r"attempts numbered \[1, 3\]"),
        (
            (Attempt(1, 0, 1), *attempts(2, ok=True)[1:]),
            True,
            "an attempt before the last has no reason",
        ),
        (attempts(2, ok=False), True, "the last attempt failed, the init did not"),
        (attempts(2, ok=True), False, "the last attempt succeeded, the init did not"),
    ],
)
def test_attempts_that_do_not_add_up_are_refused(
    given: tuple[Attempt, ...], ok: bool, problem: str
) -> None:
    state = make(P("a"))
    state.launched("a", 0.5)
    before = state.records()
    error = None if ok else ValueError("init")
    with pytest.raises(ValueError, match=f"^the attempts of plugin 'a' do not add up: {problem}"):
        state.outcome("a", value="v", error=error, started=1.0, ended=2.0, attempts=given)
    assert state.records() == before  # still running: the outcome was not taken


def check_shutdown(state: BootState, commits: list[str], rng: random.Random) -> None:
    """Exactly what committed (and has a hook) shuts down, last commit first, once."""
    having = {name for name in commits if rng.random() < 0.8}
    having |= {r.name for r in state.records() if r.stage is not Stage.COMMITTED}  # ignored
    order = state.begin_shutdown(having)
    assert list(order) == [name for name in reversed(commits) if name in having]
    for name in order:
        state.shutdown_started(name, 1.0)
        state.shutdown_ended(name, 2.0, ValueError("x") if rng.random() < 0.3 else None)
    assert list(state.shutdown_failures()) == [
        name for name in order if state.record(name).shutdown_failure is not None
    ]
    assert state.begin_shutdown(having) == ()


def check_interruption(state: BootState, plan: list[P]) -> None:
    before = {r.name: r.stage for r in state.records()}
    groups = state.interrupt()
    names = [p.name for p in plan]
    members = [*groups.committed, *groups.uncommitted, *groups.running, *groups.failed]
    members += groups.not_started
    assert sorted(members) == sorted(names), "the groups partition the plan"
    for group in (groups.committed, groups.uncommitted, groups.running, groups.failed):
        assert list(group) == sorted(group, key=names.index), "each group in cookie order"
    assert all(before[n] is Stage.COMMITTED for n in groups.committed)
    assert all(before[n] in (Stage.FINISHED, Stage.COMMITTING) for n in groups.uncommitted)
    assert all(before[n] is Stage.RUNNING for n in groups.running)
    assert all(before[n] in (Stage.WAITING, Stage.REFUSED) for n in groups.not_started)
    assert all(r.stage in FINAL for r in state.records())
    assert set(state.failures()) == set(names) - set(groups.committed)


# -- the boot's thread: main inits one at a time ---------------------------------------------------
def test_a_main_plugin_waits_for_every_lower_main_init_to_end() -> None:
    """low needs slow first; high, a higher main plugin, waits for low's init, not its commit.

    Both run on the one thread that called boot(): were high launched first and synchronized
    with low, low could never run.
    """
    state = make(P("slow"), P("low", requires=("slow",), where="main"), P("high", where="main"))
    assert state.ready() == ("slow",)
    assert state.waiting() == {"low": "slow", "high": "low"}
    run(state, "slow")
    assert state.ready() == ("low",)
    state.launched("low", 2.0)
    assert state.ready() == ()
    state.outcome("low", value="v", started=2.0, ended=3.0)
    assert state.ready() == ("high",)  # low finished its init; its commit may come later


def test_a_lower_main_plugin_that_ends_without_running_releases_the_next() -> None:
    state = make(P("bad"), P("low", requires=("bad",), where="main"), P("high", where="main"))
    state.launched("bad", 1.0)
    assert state.outcome("bad", error=BOOM, started=1.0, ended=2.0) == ("low",)
    assert state.record("low").stage is Stage.SKIPPED
    assert state.ready() == ("high",)


# -- shutdown --------------------------------------------------------------------------------------
def test_shutdown_reverses_the_commits_across_domains() -> None:
    state = make(P("a"), P("b", domain="net"), P("c"), P("d", domain="net"), P("e"))
    for name in "abcde":
        run(state, name)
    for name in ("a", "b", "d", "c", "e"):  # domains interleave as their commits did
        state.commit_started(name, 5.0)
        state.committed(name, 6.0)
    assert state.begin_shutdown(having=set("abcde") - {"c"}) == ("e", "d", "b", "a")
    assert state.begin_shutdown(having=set("abcde")) == ()  # once


def test_shutdown_takes_only_what_committed_when_a_boot_aborts() -> None:
    state = make(P("a"), P("b"), P("c"), on_error="abort")
    run(state, "a")
    commit(state, "a")
    run(state, "b")
    commit(state, "b")
    run(state, "c", error=BOOM)
    assert state.aborting
    order = state.begin_shutdown(having={"a", "b", "c"})
    assert order == ("b", "a")
    state.shutdown_started("b", 7.0)
    with pytest.raises(ValueError, match=r"^plugin 'a' may not shut down before plugin 'b'$"):
        state.shutdown_started("a", 7.5)
    state.shutdown_ended("b", 8.0, ValueError("disk gone"))
    state.shutdown_started("a", 8.0)
    state.shutdown_ended("a", 8.5)
    (failure,) = state.shutdown_failures().values()
    assert (failure.plugin, failure.message) == ("b", "ValueError: disk gone")
    record = state.record("a")
    assert (record.shutdown_started, record.shutdown_ended) == (8.0, 8.5)
    with pytest.raises(ValueError, match=r"not in the shutdown"):
        state.shutdown_started("c", 9.0)


def test_shutdown_may_not_begin_while_a_plugin_commits() -> None:
    state = make(P("a"))
    run(state, "a")
    state.commit_started("a", 5.0)
    with pytest.raises(ValueError, match=r"^shutdown may not begin while plugin 'a' commits$"):
        state.begin_shutdown(having={"a"})
    state.interrupt()
    assert state.begin_shutdown(having={"a"}) == ()  # cancelled mid-commit: not committed
