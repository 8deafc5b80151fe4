"""The shared block's two tables, against a plain Python model, without processes or locks.

The in-progress table (``initgraph/_core/inprogress.py``) and the wait slots
(``initgraph/_core/waitslots.py``) are pure layouts over a buffer: here they share a bytearray
laid out as in the shared block, and hypothesis drives random sequences of everything the
scheduler's processes do to them, with a ring small enough that it compacts and fills up.
"""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from initgraph import ConfigError, InitgraphError
from initgraph._core.inprogress import (
    MAX_DOMAINS,
    PARENT,
    W_ALL,
    W_COOKIE,
    W_DONE,
    W_FULL_ALL,
    W_FULL_DOMAIN,
    InProgressTable,
)
from initgraph._core.waitslots import WaitSlots

CAPACITY = 6
SLOTS = 4
OWNERS = st.sampled_from([PARENT, 0, 1, 2, 3])
NAMES = st.sampled_from(["default", "net", "probe", "storage", "n" * 120])
KINDS = st.sampled_from([W_COOKIE, W_FULL_DOMAIN, W_FULL_ALL, W_DONE, W_ALL])


def _tables(capacity: int = CAPACITY, slots: int = SLOTS) -> tuple[InProgressTable, WaitSlots]:
    """Both tables over one zeroed buffer, the wait slots first, as in the shared block."""
    buffer = bytearray(8 + WaitSlots.nbytes(slots) + InProgressTable.nbytes(capacity))
    waits = WaitSlots(buffer, slots, 8)
    return InProgressTable(buffer, capacity, 8 + WaitSlots.nbytes(slots)), waits


class TablesMachine(RuleBasedStateMachine):
    """The model: the domains declared, the cookies in progress with their domain and owner
    (a dict keeps them in cookie order, as they are issued in increasing order), and what each
    sleeping wait slot waits for."""

    def __init__(self) -> None:
        super().__init__()
        self.table, self.waits = _tables()
        self.domains: list[tuple[str, bool]] = []
        self.entries: dict[int, tuple[int, int]] = {}  # cookie -> (domain, owner)
        self.issued = 0
        self.sleepers: dict[int, tuple[int, int, int]] = {}  # slot -> (kind, domain, cookie)
        self.declare("default", False)

    # -- the model's answers ---------------------------------------------------------------------
    def holds(self, kind: int, domain: int, cookie: int) -> bool:
        cookies = [c for c, (d, _) in self.entries.items() if d == domain]
        if kind == W_COOKIE:  # every lower cookie of the domain is complete
            return all(c >= cookie for c in cookies)
        if kind == W_FULL_DOMAIN:
            return not cookies
        if kind == W_FULL_ALL:
            return all(self.domains[d][1] for d, _ in self.entries.values())
        if kind == W_DONE:
            return cookie not in self.entries
        assert kind == W_ALL
        return not self.entries

    def check_wake_ups(self) -> None:
        """What a finishing process does: post the sleepers whose condition now holds."""
        woken = self.waits.take_satisfied(self.table.satisfied)
        expected = sorted(s for s, w in self.sleepers.items() if self.holds(*w))
        assert woken == expected
        for slot in woken:
            del self.sleepers[slot]

    def remove(self, cookie: int) -> None:
        assert self.table.remove(cookie) == (cookie in self.entries)
        self.entries.pop(cookie, None)

    # -- rules -----------------------------------------------------------------------------------
    @rule(name=NAMES, exclusive=st.booleans())
    def declare(self, name: str, exclusive: bool) -> None:
        names = [n for n, _ in self.domains]
        index = self.table.find_domain(name)
        if name in names:
            assert index == names.index(name)
            return
        assert index is None
        assert self.table.declare(name, exclusive) == len(self.domains)
        self.domains.append((name, exclusive))

    @rule(
        data=st.data(),
        owner=OWNERS,
        after=st.lists(st.integers(0, 40), max_size=4),
        max_pending=st.integers(0, CAPACITY),
    )
    def allocate(self, data: st.DataObject, owner: int, after: list[int], max_pending: int) -> None:
        domain = data.draw(st.integers(0, len(self.domains) - 1), label="domain")
        if len(self.entries) >= CAPACITY:
            with pytest.raises(InitgraphError, match=f"more than {CAPACITY} initcalls"):
                self.table.allocate(domain, owner, tuple(after), max_pending)
            return  # nothing issued: the invariants check that nothing changed
        cookie, pending, inline = self.table.allocate(domain, owner, tuple(after), max_pending)
        self.issued += 1
        assert cookie == self.issued
        assert pending == tuple(c for c in after if c in self.entries)
        assert inline == (len(self.entries) > max_pending)
        self.entries[cookie] = (domain, owner)

    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        """A batch of cookies, in progress or not (finished already, never issued)."""
        cookies = data.draw(st.lists(st.integers(0, self.issued + 2), max_size=3), label="cookies")
        for cookie in cookies:
            self.remove(cookie)
        self.check_wake_ups()

    @rule(data=st.data(), owner=OWNERS)
    def set_owner(self, data: st.DataObject, owner: int) -> None:
        """Also what adopt does, with the owner PARENT."""
        cookie = data.draw(st.integers(0, self.issued + 1), label="cookie")
        self.table.set_owner(cookie, owner)
        if cookie in self.entries:
            self.entries[cookie] = (self.entries[cookie][0], owner)

    @rule(owner=OWNERS)
    def release_owner(self, owner: int) -> None:
        """A worker died: the entries it owned are removed, its wait slot emptied."""
        owned = self.table.owned_by(owner)
        assert owned == [(c, d) for c, (d, o) in self.entries.items() if o == owner]
        for cookie, _ in owned:
            self.remove(cookie)
        if 0 <= owner < SLOTS:
            assert self.waits.cancel(owner) == (owner in self.sleepers)
            self.sleepers.pop(owner, None)
        self.check_wake_ups()

    @rule(data=st.data(), slot=st.integers(0, SLOTS - 1), kind=KINDS)
    def sleep(self, data: st.DataObject, slot: int, kind: int) -> None:
        """A waiter whose condition does not hold registers it and sleeps; otherwise passes."""
        domain = data.draw(st.integers(0, len(self.domains) - 1), label="domain")
        cookie = data.draw(st.integers(0, self.issued + 2), label="cookie")
        assert self.table.satisfied(kind, domain, cookie) == self.holds(kind, domain, cookie)
        if slot in self.sleepers or self.holds(kind, domain, cookie):
            return
        self.waits.register(slot, kind, domain, cookie)
        self.sleepers[slot] = (kind, domain, cookie)

    @rule(slot=st.integers(0, SLOTS - 1))
    def time_out(self, slot: int) -> None:
        assert self.waits.cancel(slot) == (slot in self.sleepers)
        self.sleepers.pop(slot, None)

    @precondition(lambda self: len(self.sleepers) > 1)
    @rule()
    def close(self) -> None:
        assert self.waits.take_all() == sorted(self.sleepers)
        self.sleepers.clear()

    # -- invariants ------------------------------------------------------------------------------
    @invariant()
    def table_matches(self) -> None:
        table = self.table
        assert table.last_cookie == self.issued
        assert table.in_progress() == [(c, d) for c, (d, _) in self.entries.items()]
        assert table.domain_names() == dict(enumerate(self.domains))
        for index, (_, exclusive) in enumerate(self.domains):
            assert table.is_exclusive(index) == exclusive
            mine = [c for c, (d, _) in self.entries.items() if d == index]
            assert table.in_progress(index) == [(c, index) for c in mine]
            assert table.low(index) == (mine[0] if mine else 0)
            assert table.count(index) == len(mine)
        for cookie in range(self.issued + 2):
            assert (table.find(cookie) is not None) == (cookie in self.entries)

    @invariant()
    def sleepers_match(self) -> None:
        assert self.waits.asleep == len(self.sleepers)
        for kind, domain, cookie in self.sleepers.values():
            assert not self.table.satisfied(kind, domain, cookie), "a sleeper left asleep"


TestTables = TablesMachine.TestCase
TestTables.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)


def test_a_table_holds_at_most_max_domains() -> None:
    table, _ = _tables()
    for i in range(MAX_DOMAINS):
        assert table.declare(f"d{i}", i % 2 == 1) == i
    assert table.find_domain(f"d{MAX_DOMAINS - 1}") == MAX_DOMAINS - 1
    assert table.find_domain("other") is None
    with pytest.raises(ConfigError, match=f"too many domains: at most {MAX_DOMAINS} per"):
        table.declare("other", False)
    assert len(table.domain_names()) == MAX_DOMAINS


def test_the_tables_stay_inside_their_bytes() -> None:
    """Filled to the brim, neither writes a byte outside its own range of the buffer."""
    capacity, slots = 5, 3
    size_w, size_t = WaitSlots.nbytes(slots), InProgressTable.nbytes(capacity)
    buffer = bytearray(b"\xaa" * (8 + size_w + size_t + 8))
    buffer[8 : 8 + size_w + size_t] = bytes(size_w + size_t)
    table = InProgressTable(buffer, capacity, 8 + size_w)
    waits = WaitSlots(buffer, slots, 8)
    for i in range(MAX_DOMAINS):
        table.declare(f"{i:03d}".ljust(120, "x"), False)
    for _ in range(capacity):
        table.allocate(MAX_DOMAINS - 1, slots - 1, (), capacity)
    for slot in range(slots):
        waits.register(slot, W_ALL, MAX_DOMAINS - 1, 2**62)
    assert buffer[:8] == buffer[-8:] == b"\xaa" * 8
    assert table.domain_names()[MAX_DOMAINS - 1] == ("063".ljust(120, "x"), False)
    assert waits.take_all() == list(range(slots))
    assert table.in_progress() == [(c, MAX_DOMAINS - 1) for c in range(1, capacity + 1)]
