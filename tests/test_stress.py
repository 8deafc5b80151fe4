"""Stress: 10,000 initcalls in eight domains, with ``after`` edges, nesting, failures and waiters.

Every initcall appends ``<id> <cookie>`` to a runs file when it starts and, unless it is one of
the few planned to raise, publishes with the kernel's in-order idiom: ``synchronize_cookie(cookie,
domain=d)``, then append ``<domain> <cookie>`` to a publications file. Both files are written
with one ``os.write`` per line in append mode, so lines from different processes never mix. The
checks: every planned initcall ran exactly once and the cookies are exactly 1..10,000; each
domain's publications are in cookie order and hold exactly the initcalls that did not fail;
failures come back as ``HookError`` naming their ``ValueError``; every waiter returned — inside
initcalls, in the parent, in parent threads.

A hang fails fast instead of eating the suite's time: every wait in the parent runs in slices,
and if nothing at all completes or is scheduled for ``STALL`` seconds the test fails with the
dispatcher's state (the workload's longest initcall sleeps 3 ms).

The plan is drawn from a fixed seed (``INITGRAPH_STRESS_SEED`` overrides it), so a failure
replays the same plan. Figures and how to reproduce them: ``docs/reliability.md``.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import initgraph
from initgraph import Domain, HookError, Scheduler

TOTAL = 10_000
STALL = 5.0  # seconds without any progress that count as a hang
INNER_WAIT = 60  # bound on the waits inside initcalls; the parent notices a stall long before
DOMAINS = (*(Domain(f"d{i}") for i in range(6)), *(Domain(f"x{i}", exclusive=True) for i in (0, 1)))
SEED = int(os.environ.get("INITGRAPH_STRESS_SEED", "20261126"))

# Open bug (issue 5): some seeds end with every worker blocked (at max_workers) and a cookie
# left queued behind a blocked initcall, which the pool did not take back; since the full-pool
# fallback the stall turns into DeadlockError failures instead of a hang. Seen with 1, 2 and 16
# workers. Not strict: most seeds pass. Reproduce: INITGRAPH_STRESS_SEED=202 (workers=1).
DEADLOCK = (
    "initgraph bug: a cookie can stay queued behind a blocked initcall when every worker is "
    "blocked at max_workers (seed-dependent)"
)


@dataclass
class Spec:
    """One planned initcall: what it does, and the children it schedules from inside."""

    ident: int
    domain: str
    exclusive: bool
    duration: float
    fail: bool
    runs: str
    pubs: str
    children: list[Spec] = field(default_factory=list)
    after_parent: bool = False  # a child that may start only once its parent completed


def _append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def initcall(spec: Spec, cookie: int) -> int:
    """Record the run, work a little, schedule children, then fail or publish in order."""
    _append(spec.runs, f"{spec.ident} {cookie}\n")
    if spec.duration:
        time.sleep(spec.duration)  # the work; never used to synchronize
    for child in spec.children:
        initgraph.schedule(
            initcall,
            child,
            domain=Domain(child.domain, exclusive=child.exclusive),
            after=(cookie,) if child.after_parent else (),
            name=f"stress-{child.ident}",
        )
    if spec.fail:
        msg = f"planned failure of {spec.ident}"
        raise ValueError(msg)
    domain = Domain(spec.domain, exclusive=spec.exclusive)
    initgraph.synchronize_cookie(cookie, domain=domain, timeout=INNER_WAIT)
    _append(spec.pubs, f"{spec.domain} {cookie}\n")
    return cookie


def plan(rng: random.Random, total: int, runs: str, pubs: str) -> list[Spec]:
    """Top-level specs whose trees hold exactly ``total`` initcalls (nesting up to depth 2)."""
    count = 0

    def make(depth: int) -> Spec:
        nonlocal count
        count += 1
        d = rng.choice(DOMAINS)
        duration = 0.0 if rng.random() < 0.97 else rng.uniform(0.0005, 0.003)
        spec = Spec(count, d.name, d.exclusive, duration, rng.random() < 0.03, runs, pubs)
        if depth < 2 and rng.random() < 0.04:
            for _ in range(rng.randint(1, 4)):
                if count >= total:
                    break
                child = make(depth + 1)
                child.after_parent = rng.random() < 0.3
                spec.children.append(child)
        return spec

    tops: list[Spec] = []
    while count < total:
        tops.append(make(0))
    return tops


def walk(specs: list[Spec]) -> list[Spec]:
    """Every spec of the trees, parents before children."""
    out: list[Spec] = []
    stack = list(reversed(specs))
    while stack:
        spec = stack.pop()
        out.append(spec)
        stack.extend(reversed(spec.children))
    return out


# -- waiting without hanging -----------------------------------------------------------------------
class Stalled(BaseException):
    """Nothing completed or was scheduled for STALL seconds while something waited.

    Not an ``Exception``: leaving the scheduler's ``with`` block with it stops the pool at once
    (as an interrupt does) instead of waiting for work that will never finish.
    """


def _progress(sched: Scheduler) -> tuple[int, int]:
    return sched._shared.last_cookie, len(sched._outcomes)


def _state(sched: Scheduler) -> str:
    with sched._lock:
        disp = sched._dispatcher
        workers = {w: s.value for w, s in disp.workers.items()}
        queues = {w: q for w, q in disp._queues.items() if q}
        ready = disp.ready[:10]
    pending = sched._shared.in_progress()[:10]
    return f"workers {workers}; queues {queues}; ready {ready}; in progress {pending}"


def wait_for(
    sched: Scheduler,
    wait: Callable[[float], None],
    what: str,
    stop: threading.Event | None = None,
) -> None:
    """Call ``wait(timeout)`` in slices until it returns; raise Stalled if progress stops."""
    seen, since = _progress(sched), time.monotonic()
    while stop is None or not stop.is_set():
        try:
            wait(0.5)
            return
        except TimeoutError:
            pass
        now = _progress(sched)
        if now != seen:
            seen, since = now, time.monotonic()
        elif time.monotonic() - since > STALL:
            msg = f"{what}: no progress for {STALL} s (seed {SEED}); {_state(sched)}"
            raise Stalled(msg)


class Waiters:
    """Parent threads that synchronize on random cookies and domains while the work runs."""

    def __init__(self, sched: Scheduler, rng: random.Random, count: int = 4) -> None:
        self.sched = sched
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.returned = 0
        self._lock = threading.Lock()
        seeds = [rng.random() for _ in range(count)]
        self.threads = [threading.Thread(target=self._run, args=(s,)) for s in seeds]

    def _run(self, seed: float) -> None:
        rng = random.Random(seed)
        sched = self.sched
        while not self.stop.is_set():
            domain = rng.choice(DOMAINS)
            wait: Callable[[float], None]
            if rng.random() < 0.2:

                def wait(t: float, d: Domain = domain) -> None:
                    sched.synchronize_full(domain=d, timeout=t)

            else:
                cookie = rng.randint(1, max(1, sched._shared.last_cookie))

                def wait(t: float, d: Domain = domain, c: int = cookie) -> None:
                    sched.synchronize_cookie(c, domain=d, timeout=t)

            try:
                wait_for(sched, wait, "a waiter thread", self.stop)
            except BaseException as exc:
                self.errors.append(exc)
                return
            with self._lock:
                self.returned += 1

    def __enter__(self) -> Waiters:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(STALL + 5)
        assert not any(t.is_alive() for t in self.threads), "a waiter thread never returned"


# -- the test --------------------------------------------------------------------------------------
@dataclass
class Run:
    tops: list[Spec]
    top_cookies: list[int]
    outcomes: dict[int, tuple[str, Any]]
    last: int
    wall: float
    waiters_returned: int


def run(tmp_path: Path, workers: int, seed: int) -> Run:
    rng = random.Random(seed)
    runs, pubs = str(tmp_path / "runs.txt"), str(tmp_path / "pubs.txt")
    tops = plan(rng, TOTAL, runs, pubs)
    started = time.monotonic()
    with Scheduler(workers) as sched, Waiters(sched, rng) as waiters:
        top_cookies: list[int] = []
        for i, spec in enumerate(tops):
            recent = top_cookies[-50:]
            after = rng.sample(recent, k=min(len(recent), rng.choice([0, 0, 1, 2])))
            domain = Domain(spec.domain, exclusive=spec.exclusive)
            cookie = sched.schedule(initcall, spec, domain=domain, after=after)
            top_cookies.append(cookie)
            if i % 1000 == 999:  # the parent synchronizes now and then, mid-stream
                d = rng.choice(DOMAINS)

                def mid(t: float, c: int = cookie, d: Domain = d) -> None:
                    sched.synchronize_cookie(c, domain=d, timeout=t)

                wait_for(sched, mid, f"synchronize_cookie({cookie}, domain={d.name!r})")
        wait_for(sched, lambda t: sched.synchronize_full(timeout=t), "synchronize_full()")
        for d in DOMAINS:

            def full(t: float, d: Domain = d) -> None:
                sched.synchronize_full(domain=d, timeout=t)

            wait_for(sched, full, f"synchronize_full(domain={d.name!r})")
        outcomes: dict[int, tuple[str, Any]] = {}
        for cookie in range(1, sched._shared.last_cookie + 1):
            try:
                outcomes[cookie] = ("ok", sched.result(cookie, timeout=INNER_WAIT))
            except HookError as exc:
                outcomes[cookie] = ("error", exc)
        last = sched._shared.last_cookie
    wall = time.monotonic() - started
    assert waiters.errors == []
    return Run(tops, top_cookies, outcomes, last, wall, waiters.returned)


def check(tmp_path: Path, result: Run) -> None:
    every = walk(result.tops)
    by_ident = {s.ident: s for s in every}
    assert len(every) == TOTAL

    # every planned initcall ran exactly once, and the cookies are exactly 1..TOTAL
    lines = (tmp_path / "runs.txt").read_text().splitlines()
    ran = [(int(i), int(c)) for i, c in (line.split() for line in lines)]
    twice = [i for i, n in Counter(i for i, _ in ran).items() if n > 1]
    assert twice == [], f"ran more than once (seed {SEED})"
    cookie_of = dict(ran)
    assert set(cookie_of) == set(by_ident), f"never ran (seed {SEED})"
    assert sorted(cookie_of.values()) == list(range(1, TOTAL + 1))
    assert result.last == TOTAL
    assert [cookie_of[s.ident] for s in result.tops] == result.top_cookies

    # the failures are exactly the planned ones, each a HookError naming its ValueError
    for ident, spec in by_ident.items():
        kind, value = result.outcomes[cookie_of[ident]]
        if spec.fail:
            assert kind == "error", (ident, value)
            assert isinstance(value.__cause__, ValueError)
            assert str(value.__cause__) == f"planned failure of {ident}"
        else:
            assert (kind, value) == ("ok", cookie_of[ident])

    # each domain published in cookie order, exactly the initcalls that did not fail
    published: dict[str, list[int]] = {d.name: [] for d in DOMAINS}
    for line in (tmp_path / "pubs.txt").read_text().splitlines():
        d, c = line.split()
        published[d].append(int(c))
    for d in DOMAINS:
        mine = [s for s in every if s.domain == d.name and not s.fail]
        expected = sorted(cookie_of[s.ident] for s in mine)
        assert published[d.name] == expected, f"domain {d.name} out of order (seed {SEED})"
    assert result.waiters_returned > 0


@pytest.mark.parametrize(
    "workers",
    [
        pytest.param(1, marks=pytest.mark.xfail(strict=False, reason=DEADLOCK)),
        pytest.param(2, marks=pytest.mark.xfail(strict=False, reason=DEADLOCK)),
        pytest.param(16, marks=pytest.mark.xfail(strict=False, reason=DEADLOCK)),
    ],
)
def test_ten_thousand_initcalls(tmp_path: Path, workers: int) -> None:
    result = run(tmp_path, workers, SEED + workers)
    check(tmp_path, result)
    print(f"\nstress workers={workers}: {TOTAL} initcalls in {result.wall:.2f} s")
