"""The result store: values between processes through sealed memfd segments.

After every test here, as after every test, the conftest checks that this process holds no
descriptor, shared mapping or ``/dev/shm`` entry it did not hold before, and that no process is
left running.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import os
import pickle
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import multiprocess
import numpy as np
import pytest
from conftest import _fds

from initgraph._core import store as store_mod
from initgraph._core.store import (
    THRESHOLD,
    Encoded,
    Handle,
    NoRoomError,
    Store,
    TooLargeError,
    UnpicklableError,
)

MiB = 1 << 20
METHODS = ["fork", "forkserver", "spawn"]
MEMFD = "memfd:initgraph-store"


def _memfd_maps(pid: int | str = "self") -> list[str]:
    return [line for line in Path(f"/proc/{pid}/maps").read_text().splitlines() if MEMFD in line]


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    with a, b:
        yield a, b


@pytest.fixture(params=METHODS)
def ctx(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A multiprocess context; stops the fork server and resource tracker if the test started
    them (multiprocess keeps them for the life of the process, and the conftest counts them)."""
    from multiprocess import forkserver, resource_tracker

    server = forkserver._forkserver
    tracker = resource_tracker._resource_tracker
    had = (server._forkserver_pid is not None, tracker._pid is not None)
    yield multiprocess.get_context(request.param)
    if not had[0] and server._forkserver_pid is not None:
        server._stop()
    if not had[1] and tracker._pid is not None:
        tracker._stop()


# -- the values ----------------------------------------------------------------------------------
def make_values() -> dict[str, Any]:
    """Deterministic values, the same in every process, each kind the store must carry."""
    grid = np.arange(400_000, dtype=np.float64).reshape(400, 1000)
    return {
        "contiguous": np.arange(100_000, dtype=np.float64),
        "strided": grid[::2, ::3],
        "fortran": np.asfortranarray(grid[:300]),
        "int8": np.arange(300_000, dtype=np.int64).astype(np.int8),
        "bytearray": bytearray(range(256)) * 2000,
        "memoryview": memoryview(np.arange(100_000, dtype=np.int32)),
        "memoryview-2d": memoryview(np.arange(60_000, dtype=np.float64).reshape(200, 300)),
        "bytes": bytes(range(256)) * 2000,
        "nested": {
            "a": [np.ones(100_000), {"b": np.arange(10, dtype=np.int16)}],
            "c": (np.zeros((30, 40)), "text", 3.5),
            "d": bytearray(b"xyz" * 100_000),
        },
        "small": {"x": 1, "y": [1.5, "s", None], "z": np.arange(4)},
    }


def assert_same(got: Any, want: Any) -> None:
    assert type(got) is type(want)
    if isinstance(want, np.ndarray):
        assert got.dtype == want.dtype
        assert got.shape == want.shape
        assert np.array_equal(got, want)
        assert not got.flags.writeable
        if want.flags.f_contiguous and not want.flags.c_contiguous:
            assert got.flags.f_contiguous
    elif isinstance(want, memoryview):
        assert got.readonly
        assert (got.format, got.shape) == (want.format, want.shape)
        assert got.tobytes() == want.tobytes()
    elif isinstance(want, dict):
        assert list(got) == list(want)
        for key in want:
            assert_same(got[key], want[key])
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert_same(g, w)
    else:
        assert got == want


def send_and_receive(store: Store, encoded: Encoded, a: socket.socket, b: socket.socket) -> Handle:
    """Send from a thread: an inline frame can outgrow the socket's buffer."""
    sender = threading.Thread(target=store.send, args=(a, encoded))
    sender.start()
    try:
        return store.receive(b)
    finally:
        sender.join()


def round_trip(store: Store, value: Any, a: socket.socket, b: socket.socket) -> Handle:
    with store.encode(value, owner="plugin 'x'") as encoded:
        return send_and_receive(store, encoded, a, b)


# -- round trips in one process ------------------------------------------------------------------
@pytest.mark.parametrize("name", list(make_values()))
def test_round_trip_through_a_socketpair(name: str, pair: tuple[socket.socket, socket.socket]):
    value = make_values()[name]
    store = Store()
    with round_trip(store, value, *pair) as handle:
        assert handle.load_s is None  # nothing mapped or loaded before value()
        got = handle.value()
        assert handle.value() is got  # cached
        assert_same(got, value)
        assert handle.inline == (name == "small")
        assert handle.load_s is not None
        assert handle.transfer_s >= 0
    del got


def test_arrays_are_read_only_views_and_copy_makes_them_writable(pair):
    store = Store()
    with round_trip(store, np.arange(100_000.0), *pair) as handle:
        arr = handle.value()
    assert not arr.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        arr[0] = 1.0
    with pytest.raises(ValueError, match="cannot set WRITEABLE flag"):
        arr.flags.writeable = True
    mine = arr.copy()  # the one line for those who need to write
    mine[0] = 1.0
    assert mine.flags.writeable
    assert len(_memfd_maps()) == 1  # the closed handle left the mapping to the array
    assert arr.sum() == sum(range(100_000))
    del arr
    gc.collect()
    assert _memfd_maps() == []


def test_small_arrays_travel_in_the_stream_and_still_arrive_read_only(pair):
    small = store_mod.SMALL_ARRAY
    below = np.arange(small // 8 - 1, dtype=np.float64)  # one item under: in the stream
    at = np.arange(small // 8, dtype=np.float64)  # at the cut: a buffer of its own
    odd = [
        np.asfortranarray(np.arange(12, dtype=">i4").reshape(3, 4)),  # byte order, F order
        np.arange(24).reshape(4, 6)[:, ::2],  # strided
        np.zeros((0, 3)),
        np.array(2.5),  # 0-d
        np.array([(1, 2.0)], dtype="i4,f8"),  # structured
    ]
    postings = {i: np.arange(i % 50, dtype=np.int32) for i in range(3000)}
    store = Store(threshold=0)  # a segment, so buffers and stream are told apart
    cases = [(below, 0), (at, 1), (odd, 0), (postings, 0), ([below, at, at.copy()], 2)]
    for value, buffers in cases:
        with store.encode(value, owner="plugin 'x'") as encoded:
            assert len(encoded.ref.buffers) == buffers
            handle = send_and_receive(store, encoded, *pair)
        with handle:
            assert_same(handle.value(), value)


@pytest.mark.parametrize("kind", ["bytearray", "bytes"])
def test_threshold_just_below_travels_inline_and_at_it_in_a_segment(kind, pair):
    store = Store()
    cls: Callable[[int], Any] = bytearray if kind == "bytearray" else bytes
    with Store(threshold=1 << 40).encode(cls(THRESHOLD), owner="plugin 'x'") as probe:
        overhead = probe.ref.stream + probe.ref.buffer_bytes - THRESHOLD  # pickle's own bytes
    for size, inline in [(THRESHOLD - overhead - 1, True), (THRESHOLD - overhead, False)]:
        value = cls(b"\x07" * size)
        with store.encode(value, owner="plugin 'x'") as encoded:
            assert encoded.inline == inline, size
            assert encoded.ref.stream + encoded.ref.buffer_bytes == size + overhead
            handle = send_and_receive(store, encoded, *pair)
        with handle:
            assert handle.inline == inline
            assert_same(handle.value(), value)
    assert store.statistics().segments_written == 1


def test_segments_are_sealed_private_and_nameless(pair):
    store = Store()
    with store.encode(np.ones(MiB), owner="plugin 'x'") as encoded:
        assert encoded.fd is not None
        assert os.fstat(encoded.fd).st_mode & 0o777 == 0o600
        seals = fcntl.fcntl(encoded.fd, fcntl.F_GET_SEALS)
        assert seals & fcntl.F_SEAL_WRITE
        assert seals & fcntl.F_SEAL_SHRINK
        with pytest.raises(PermissionError):
            os.pwrite(encoded.fd, b"x", 0)
        with pytest.raises(PermissionError):
            os.ftruncate(encoded.fd, 0)
        assert os.readlink(f"/proc/self/fd/{encoded.fd}").startswith("/memfd:initgraph-store")


def test_an_unsealed_segment_is_not_mapped(pair):
    # A sender that could still shrink the segment could SIGBUS the receiver through its views.
    fd = os.memfd_create("initgraph-store", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.write(fd, pickle.dumps(1, protocol=5))
        store_mod._send_frame(pair[0], store_mod.Ref(os.fstat(fd).st_size, 5, (), None), fd)
    finally:
        os.close(fd)
    with Store().receive(pair[1]) as handle, pytest.raises(ValueError, match="unsealed"):
        handle.value()


def test_a_closed_peer_is_eof(pair):
    pair[0].shutdown(socket.SHUT_WR)
    with pytest.raises(EOFError, match="the peer closed the socket"):
        Store().receive(pair[1])


def test_a_connection_works_as_the_socket():
    conn_a, conn_b = multiprocess.Pipe(duplex=True)
    store = Store()
    try:
        conn_a.send("before")
        with store.encode(np.arange(MiB, dtype=np.uint8), owner="plugin 'x'") as encoded:
            store.send(conn_a, encoded)
        conn_a.send("after")  # the Connection's framing resumes after the store's frame
        assert conn_b.recv() == "before"
        with store.receive(conn_b) as handle:
            assert_same(handle.value(), np.arange(MiB, dtype=np.uint8))
        assert conn_b.recv() == "after"
    finally:
        conn_a.close()
        conn_b.close()


def test_closing_and_collecting_release_every_descriptor(pair):
    store = Store()
    before = len(_fds())
    encoded = store.encode(np.ones(MiB), owner="plugin 'x'")
    store.send(pair[0], encoded)
    handle = store.receive(pair[1])
    arr = handle.value()
    assert len(_fds()) == before + 3  # the encoded, the handle, the mapping's own
    del encoded, handle  # never closed: collection closes them
    gc.collect()
    assert len(_fds()) == before + 1
    del arr
    gc.collect()
    assert len(_fds()) == before
    closed = round_trip(store, 1, *pair)
    closed.close()
    with pytest.raises(ValueError, match=r"^the handle is closed$"):
        closed.value()
    with pytest.raises(ValueError, match=r"^the handle is closed$"):
        closed.forward(pair[0])


# -- one write, N readers ------------------------------------------------------------------------
def test_forward_writes_once_and_maps_in_each_receiver():
    producer, parent, dependent = Store(), Store(), Store()
    pairs = [socket.socketpair() for _ in range(4)]
    try:
        value = {"a": np.arange(MiB, dtype=np.float64), "b": [np.ones(1000)]}
        with producer.encode(value, owner="plugin 'x'") as encoded:
            producer.send(pairs[0][0], encoded)
        with parent.receive(pairs[0][1]) as held:
            for a, _ in pairs[1:]:
                held.forward(a)
        handles = [dependent.receive(b) for _, b in pairs[1:]]
        got = [h.value() for h in handles]
        inodes = {line.split()[4] for line in _memfd_maps()}
        for h in handles:
            h.close()
    finally:
        for a, b in pairs:
            a.close()
            b.close()
    for g in got:
        assert_same(g, value)
    assert producer.statistics().segments_written == 1
    assert producer.statistics().bytes_written >= 8 * MiB
    assert parent.statistics().mapped == 0  # forwarded without loading
    assert (parent.statistics().received, parent.statistics().sent) == (1, 3)
    assert dependent.statistics().mapped == 3
    assert len(inodes) == 1  # three mappings of one segment
    del got


# -- through real processes ----------------------------------------------------------------------
def child_echo(conn: Any) -> None:
    """Forward back, unloaded, what the parent sends; then send this process's own values."""
    store = Store()
    values = make_values()
    for _ in values:
        with store.receive(conn) as handle:
            handle.forward(conn)
    for value in values.values():
        with store.encode(value, owner="plugin 'child'") as encoded:
            store.send(conn, encoded)
    conn.send(store.statistics())
    conn.recv()  # until the parent has checked


def test_round_trips_through_a_child_process(ctx):
    store = Store()
    values = make_values()
    conn, child_conn = ctx.Pipe(duplex=True)
    proc = ctx.Process(target=child_echo, args=(child_conn,), daemon=True)
    proc.start()
    child_conn.close()
    try:
        for value in values.values():  # parent -> child -> back, never loaded in the child
            with store.encode(value, owner="initcall 1 'load'") as encoded:
                store.send(conn, encoded)
            with store.receive(conn) as handle:
                assert_same(handle.value(), value)
        for value in values.values():  # made in the child
            with store.receive(conn) as handle:
                assert_same(handle.value(), value)
        stats = conn.recv()
        assert stats.mapped == 0  # it forwarded what it received without loading it
        segments = 0
        for value in values.values():
            with store.encode(value, owner="x") as encoded:
                segments += not encoded.inline
        assert stats.segments_written == segments
        conn.send("done")
        proc.join(30)
        assert proc.exitcode == 0
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()
        conn.close()


def dependent_report(conn: Any) -> None:
    """Receive one forwarded value, load it, report the segment's inode and the checksum."""
    store = Store()
    with store.receive(conn) as handle:
        arr = handle.value()
        inode = [line.split()[4] for line in _memfd_maps()]
        conn.send((inode, float(arr.sum()), bool(arr.flags.writeable), store.statistics().mapped))
    conn.recv()


def test_a_child_result_forwarded_to_dependents_is_written_once():
    ctx = multiprocess.get_context("fork")
    store = Store()
    producer_conn, producer_child = ctx.Pipe(duplex=True)
    producer = ctx.Process(target=child_make, args=(producer_child, "array"), daemon=True)
    dependents = []
    for _ in range(3):
        conn, child = ctx.Pipe(duplex=True)
        dependents.append((ctx.Process(target=dependent_report, args=(child,), daemon=True), conn))
    procs = [producer] + [p for p, _ in dependents]
    try:
        for proc in procs:
            proc.start()
        with store.receive(producer_conn) as held:
            written = producer_conn.recv()
            for _, conn in dependents:
                held.forward(conn)
        reports = [conn.recv() for _, conn in dependents]
        for _, conn in dependents:
            conn.send("done")
        producer_conn.send("done")
        for proc in procs:
            proc.join(30)
            assert proc.exitcode == 0
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
        producer_conn.close()
        producer_child.close()
        for _, conn in dependents:
            conn.close()
    assert written == 1
    assert store.statistics().mapped == 0
    inodes = {inode for r in reports for inode in r[0]}
    assert len(inodes) == 1
    assert [r[1:] for r in reports] == [(float(sum(range(4 * MiB))), False, 1)] * 3


def child_make(conn: Any, kind: str) -> None:
    store = Store()
    value = np.arange(4 * MiB, dtype=np.float64) if kind == "array" else b"\x01" * (64 * MiB)
    with store.encode(value, owner="plugin 'child'") as encoded:
        store.send(conn, encoded)
    conn.send(store.statistics().segments_written)
    conn.recv()


# -- refused values ------------------------------------------------------------------------------
def _refused() -> list[tuple[str, Callable[[], Any], str, str]]:
    """(id, make the value, the type named, pickle's own words)."""
    return [
        (
            "file",
            lambda: open(__file__),
            "_io.TextIOWrapper",
            "cannot pickle '_io.TextIOWrapper' object",
        ),
        ("socket", socket.socket, "socket.socket", "cannot pickle 'socket' object"),
        ("lock", threading.Lock, "_thread.lock", "cannot pickle '_thread.lock' object"),
        (
            "generator",
            lambda: (i for i in range(3)),
            "generator",
            "cannot pickle 'generator' object",
        ),
        (
            "connection",
            lambda: multiprocess.Pipe()[0],
            "multiprocess.connection.Connection",
            "its file descriptor means nothing there",
        ),
    ]


REFUSED = _refused()


@pytest.mark.parametrize(
    ("make", "type_name", "why"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_refused_values_name_the_owner_and_the_type(make, type_name, why):
    bad = make()
    try:
        with pytest.raises(UnpicklableError) as info:
            Store().encode({"ok": np.ones(MiB), "bad": [bad]}, owner="plugin 'x'")
        expected = (
            f"plugin 'x': pickle cannot send a '{type_name}' object to another process ({why}); "
            'return plain data, or set where = "main" to run the plugin in the main process'
        )
        assert str(info.value) == expected
        assert (info.value.owner, info.value.type_name) == ("plugin 'x'", type_name)
        assert isinstance(info.value, TypeError)
        again = pickle.loads(pickle.dumps(info.value))  # it can travel to the parent itself
        assert (str(again), again.type_name) == (expected, type_name)
        plain = r"^initcall 12 'load': .*; send plain data instead$"
        with pytest.raises(UnpicklableError, match=plain):
            Store().encode([bad], owner="initcall 12 'load'")
    finally:
        with contextlib.suppress(AttributeError):
            bad.close()


def test_a_refused_file_is_left_as_it_was(tmp_path):
    # dill would pickle the file and re-open it on the other side in mode "w", truncating it.
    import dill  # noqa: F401  (loaded, as in a worker; pickle must still refuse)

    path = tmp_path / "data.txt"
    path.write_text("precious")
    with open(path, "a") as f, pytest.raises(UnpicklableError, match=r"'_io\.TextIOWrapper'"):
        Store().encode(f, owner="plugin 'x'")
    assert path.read_text() == "precious"


# -- the budget and the memory -------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["array", "bytes"])
def test_the_budget_refuses_a_larger_value_before_writing_it(kind):
    value = np.ones(2 * MiB // 8) if kind == "array" else b"\x01" * (2 * MiB)
    store = Store(max_result_bytes=MiB)
    with pytest.raises(TooLargeError) as info:
        store.encode(value, owner="plugin 'x'")
    size = info.value.size
    assert size > MiB
    assert str(info.value) == (
        f"plugin 'x': the value needs at least {size:,} bytes ({size / MiB:.1f} MiB), over "
        "max_result_bytes = 1,048,576 bytes (1.0 MiB); make it smaller or raise max_result_bytes"
    )
    assert (info.value.limit, info.value.owner) == (MiB, "plugin 'x'")
    assert isinstance(info.value, ValueError)
    assert store.statistics().segments_written == 0
    Store(max_result_bytes=4 * MiB).encode(value, owner="plugin 'x'").close()


def test_short_memory_is_an_error_before_writing(monkeypatch):
    monkeypatch.setattr(store_mod, "_available_memory", lambda: 100 * MiB)
    with pytest.raises(NoRoomError) as info:
        Store().encode(np.ones(64 * MiB // 8), owner="plugin 'x'")
    size = info.value.size
    assert 64 * MiB <= size < 64 * MiB + 1024
    assert str(info.value) == (
        f"plugin 'x': no room in shared memory for a value of at least {size:,} bytes "
        "(64.0 MiB): 104,857,600 bytes (100.0 MiB) available; free memory or make the value "
        "smaller"
    )
    assert info.value.available == 100 * MiB


def child_write_past_rlimit(conn: Any) -> None:
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (MiB, MiB))
    try:
        Store().encode(np.ones(4 * MiB // 8), owner="plugin 'x'")
    except NoRoomError as exc:
        conn.send(str(exc))
    else:
        conn.send(None)


def test_a_failed_write_is_an_error_not_a_crash():
    ctx = multiprocess.get_context("fork")
    conn, child = ctx.Pipe(duplex=True)
    proc = ctx.Process(target=child_write_past_rlimit, args=(child,), daemon=True)
    proc.start()
    try:
        message = conn.recv()
        proc.join(30)
    finally:
        conn.close()
        child.close()
    assert proc.exitcode == 0
    assert re.fullmatch(
        r"plugin 'x': no room in shared memory for a value of at least [\d,]+ bytes "
        r"\([\d.]+ MiB\): \[Errno 27\] File too large; free memory or make the value smaller",
        message,
    ), message


# -- SIGKILL -------------------------------------------------------------------------------------
def _shmem() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Shmem:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no Shmem in /proc/meminfo")


def _wait_shmem_below(limit: int) -> int:
    deadline = time.monotonic() + 10
    while (now := _shmem()) > limit and time.monotonic() < deadline:
        time.sleep(0.05)  # the kernel frees a dead process's files as it reaps it
    return now


class Stall:
    """Pickles only after a long time: the writer is killed in the middle of a value."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> Any:
        os.write(self.fd, b"!")
        time.sleep(60)
        raise AssertionError("not killed")


def child_write_and_stall(fd: int) -> None:
    Store().encode([b"\x01" * (64 * MiB), Stall(fd)], owner="plugin 'x'")


def test_a_writer_killed_mid_value_leaves_nothing():
    ctx = multiprocess.get_context("fork")
    r, w = os.pipe()
    base = _shmem()
    proc = ctx.Process(target=child_write_and_stall, args=(w,), daemon=True)
    try:
        proc.start()
        os.close(w)
        assert os.read(r, 1) == b"!"  # 64 MiB are in its segment, the rest is being pickled
        fds = Path(f"/proc/{proc.pid}/fd")
        assert any(MEMFD in os.readlink(fd) for fd in fds.iterdir())
        peak = _shmem()
        assert peak > base + 48 * MiB
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(30)
    finally:
        os.close(r)
        if proc.is_alive():
            proc.kill()
            proc.join()
    assert proc.exitcode == -signal.SIGKILL
    assert _wait_shmem_below(peak - 48 * MiB) <= peak - 48 * MiB


def child_map_and_wait(conn: Any) -> None:
    with Store().receive(conn) as handle:
        arr = handle.value()
        conn.send(float(arr[-1]))
        time.sleep(60)


def test_a_receiver_killed_with_a_segment_mapped_leaves_nothing():
    ctx = multiprocess.get_context("fork")
    store = Store()
    conn, child = ctx.Pipe(duplex=True)
    base = _shmem()
    proc = ctx.Process(target=child_map_and_wait, args=(child,), daemon=True)
    try:
        proc.start()
        child.close()
        with store.encode(np.arange(8 * MiB, dtype=np.float64), owner="plugin 'x'") as encoded:
            store.send(conn, encoded)
        assert conn.recv() == 8 * MiB - 1
        assert _memfd_maps(proc.pid) != []  # the child alone holds the segment now
        peak = _shmem()
        assert peak > base + 48 * MiB
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(30)
    finally:
        conn.close()
        if proc.is_alive():
            proc.kill()
            proc.join()
    assert proc.exitcode == -signal.SIGKILL
    assert _wait_shmem_below(peak - 48 * MiB) <= peak - 48 * MiB


def test_a_segment_in_flight_to_a_dead_receiver_is_freed():
    store = Store()
    a, b = socket.socketpair()
    base = _shmem()
    with a, b, store.encode(np.ones(8 * MiB), owner="plugin 'x'") as encoded:
        store.send(a, encoded)  # in the socket's queue, never received
    assert _wait_shmem_below(base + 16 * MiB) <= base + 16 * MiB


def test_the_interface_is_small():
    assert set(store_mod.__all__) == {
        "THRESHOLD",
        "Encoded",
        "Handle",
        "NoRoomError",
        "Ref",
        "Statistics",
        "Store",
        "StoreError",
        "TooLargeError",
        "UnpicklableError",
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": -1}, r"^threshold must be >= 0, got -1$"),
        ({"max_result_bytes": 0}, r"^max_result_bytes must be positive or None, got 0$"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Store(**kwargs)
