"""Values between processes through the scheduler: results, data, forwarded handles, budgets.

Every value crosses by pickle alone through the store (``initgraph/_core/store.py``, tested on
its own in ``test_store.py``): here, what the scheduler makes of it. Results stay unloaded in
the parent until read, a result handed to other initcalls is written once and forwarded, what
pickle cannot send is refused with a message naming it, and no descriptor of a segment is left
in the parent once the scheduler is closed, nor inherited by a worker forked later.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import os
import pickle
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from conftest import AppWriter

import initgraph
from initgraph import BootError, ConfigError, HookError, Scheduler
from initgraph._core import runtime as _runtime
from initgraph._core.store import Handle, Statistics, TooLargeError, UnpicklableError
from initgraph._core.worker import THREAD_VARS

WAIT = 30
MiB = 1 << 20


def store_fds() -> list[str]:
    """Descriptors of store segments this process holds."""
    out = []
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{name}").startswith("/memfd:initgraph-store"):
                out.append(name)
    return out


@pytest.fixture(autouse=True)
def no_store_descriptors() -> Iterator[None]:
    gc.collect()
    before = store_fds()
    yield
    gc.collect()
    assert store_fds() == before


# -- initcalls -----------------------------------------------------------------------------------
def make_array(n: int, cookie: int) -> Any:
    return np.arange(n, dtype=np.float64)


def strided(n: int, cookie: int) -> Any:
    return np.arange(2 * n, dtype=np.float64).reshape(n, 2)[:, 1]  # not contiguous


def identity(data: Any, cookie: int) -> Any:
    return data


def describe_data(data: Any, cookie: int) -> tuple[str, bool, float]:
    arr = data["x"]
    return type(arr).__name__, bool(arr.flags.writeable), float(arr.sum())


def read_handle(data: dict[str, Any], cookie: int) -> tuple[str, float, Statistics]:
    """A dependent: its data holds a handle, loaded here (mapped, not copied)."""
    handle = data["x"]
    kind = type(handle).__name__
    total = float(handle.value().sum())
    return kind, total, _runtime.active_runtime().store.statistics()


def ignore_handle(data: dict[str, Any], cookie: int) -> tuple[bool, Statistics]:
    """A dependent that never reads its input: never maps it."""
    return data["x"].load_s is None, _runtime.active_runtime().store.statistics()


def worker_statistics(data: Any, cookie: int) -> Statistics:
    return _runtime.active_runtime().store.statistics()


def returns_a_file(path: str, cookie: int) -> Any:
    report = open(path, "w")  # noqa: SIM115 - the point: an open file cannot be sent
    report.write("written by the plugin")
    report.flush()
    return report  # dill once sent it, re-opened in the parent in mode "w": truncated


def returns_a_socket(data: Any, cookie: int) -> Any:
    return socket.socket()


def returns_a_lock(data: Any, cookie: int) -> Any:
    return {"guard": threading.Lock()}


def thread_settings(data: Any, cookie: int) -> tuple[dict[str, str | None], list[int]]:
    import threadpoolctl

    env = {var: os.environ.get(var) for var in THREAD_VARS}
    pools = [info["num_threads"] for info in threadpoolctl.threadpool_info()]
    return env, pools


def store_fds_here(data: Any, cookie: int) -> list[str]:
    return store_fds()


# -- results ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_an_array_comes_back_read_only_and_unloaded_until_read(method: str) -> None:
    with Scheduler(1, start_method=method) as sched:
        cookie = sched.schedule(make_array, MiB)
        sched.synchronize_cookie(cookie + 1, timeout=WAIT)
        while (outcome := sched.outcome(cookie)) is None:
            sched.listen().get(timeout=WAIT)
        assert outcome.load_s is None  # nothing loaded yet
        assert outcome.nbytes > 8 * MiB
        assert outcome.serialize_s > 0
        assert outcome.transfer_s >= 0
        arr = sched.result(cookie)
        assert outcome.load_s is not None
        assert sched.result(cookie) is arr  # loaded once
        assert not arr.flags.writeable
        assert arr[-1] == MiB - 1
        copy = arr.copy()
        copy[0] = 7.0  # the one line for a writable array
        assert sched._store.statistics().mapped == 1
    assert arr.sum() == np.arange(MiB, dtype=np.float64).sum()  # valid after close


def test_values_round_trip_inline_and_in_segments() -> None:
    values = [
        b"x" * 10,
        bytearray(b"y" * (2 * MiB)),
        {"nested": [np.ones(3), np.zeros(300_000)], "text": "t"},
        np.arange(12.0).reshape(3, 4).T,  # Fortran order
    ]
    with Scheduler(1) as sched:
        for value in values:
            got = sched.result(sched.schedule(identity, value), timeout=WAIT)
            if isinstance(value, dict):
                assert got["text"] == "t"
                assert np.array_equal(got["nested"][1], value["nested"][1])
            elif isinstance(value, np.ndarray):
                assert np.array_equal(got, value)
            else:
                assert bytes(got) == bytes(value)
        got = sched.result(sched.schedule(strided, 100_000), timeout=WAIT)
        assert np.array_equal(got, np.arange(200_000.0)[1::2])


@pytest.mark.parametrize(
    ("func", "type_name", "why"),
    [
        (returns_a_file, "_io.TextIOWrapper", "cannot pickle '_io.TextIOWrapper' object"),
        (returns_a_socket, "socket.socket", "cannot pickle 'socket' object"),
        (returns_a_lock, "_thread.lock", "cannot pickle '_thread.lock' object"),
    ],
)
def test_a_file_socket_or_lock_is_refused_not_reopened(
    func: Any, type_name: str, why: str, tmp_path: Any
) -> None:
    path = tmp_path / "report.txt"
    with Scheduler(1) as sched:
        cookie = sched.schedule(func, str(path))
        with pytest.raises(HookError) as info:
            sched.result(cookie, timeout=WAIT)
    err = info.value
    assert type(err) is HookError
    assert (err.cookie, err.name) == (cookie, func.__name__)
    cause = err.__cause__
    assert isinstance(cause, UnpicklableError)
    assert cause.type_name == type_name
    assert str(err) == (
        f"initcall {cookie} {func.__name__!r}: pickle cannot send a {type_name!r} object to "
        f"another process ({why}); send plain data instead"
    )
    if func is returns_a_file:
        assert path.read_text() == "written by the plugin"  # not re-opened in mode "w"


def test_a_result_over_max_result_bytes_fails_its_initcall() -> None:
    with Scheduler(1, max_result_bytes=MiB) as sched:
        big = sched.schedule(make_array, MiB // 4)  # 2 MiB
        small = sched.schedule(make_array, 1000)
        with pytest.raises(HookError) as info:
            sched.result(big, timeout=WAIT)
        assert len(sched.result(small, timeout=WAIT)) == 1000  # the worker lives on
    err = info.value
    assert isinstance(err.__cause__, TooLargeError)
    assert err.__cause__.limit == MiB
    assert err.__cause__.size >= 2 * MiB
    assert str(err) == (
        f"initcall {big} 'make_array': the value needs at least "
        f"{err.__cause__.size:,} bytes (2.0 MiB), over max_result_bytes = 1,048,576 bytes "
        f"(1.0 MiB); make it smaller or raise max_result_bytes"
    )


def test_max_result_bytes_worker_threads_and_worker_nice_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"^max_result_bytes must be a positive int, got 0 "):
        Scheduler(1, max_result_bytes=0)
    with pytest.raises(ConfigError, match=r"^worker_threads must be a positive int, got 'x' "):
        Scheduler(1, worker_threads="x")  # type: ignore[arg-type]
    for bad in (-1, 20, True):
        with pytest.raises(
            ConfigError, match=r"^worker_nice must be an integer from 0 to 19, "
        ) as info:
            Scheduler(1, worker_nice=bad)
        assert info.value.key == "worker_nice"


# -- data and forwarding -------------------------------------------------------------------------
def test_large_data_reaches_the_worker_read_only() -> None:
    with Scheduler(1) as sched:
        got = sched.result(sched.schedule(describe_data, {"x": np.ones(MiB)}), timeout=WAIT)
        assert sched._store.statistics().segments_written == 1
    assert got == ("ndarray", False, float(MiB))


def test_a_result_for_n_dependents_is_written_once_and_never_loaded_here() -> None:
    with Scheduler(1) as sched:
        producer = sched.schedule(make_array, MiB)
        sched.result(sched.schedule(identity, None), timeout=WAIT)  # after the producer
        outcome = sched.outcome(producer)
        assert outcome is not None
        assert isinstance(outcome.handle, Handle)
        readers = [sched.schedule(read_handle, {"x": outcome.handle}) for _ in range(3)]
        lazy = sched.schedule(ignore_handle, {"x": outcome.handle})
        got = [sched.result(c, timeout=WAIT) for c in readers]
        never_read, _ = sched.result(lazy, timeout=WAIT)
        worker = sched.result(sched.schedule(worker_statistics), timeout=WAIT)
        parent = sched._store.statistics()
        assert outcome.load_s is None  # the parent never loaded it
    total = float(np.arange(MiB, dtype=np.float64).sum())
    assert [(kind, value) for kind, value, _ in got] == [("Handle", total)] * 3
    assert never_read
    # One worker ran them all: one segment written (the producer's), mapped by each reader.
    assert worker.segments_written == 1
    assert worker.mapped == 3
    # The parent wrote no segment, mapped none, and forwarded the one it received 4 times.
    assert (parent.segments_written, parent.mapped, parent.bytes_mapped) == (0, 0, 0)
    assert parent.received == 1  # the producer's frame: the small results came in their Done
    # Each dependent: the forwarded handle's frame; its small data rides inside the Run.
    assert parent.sent >= 4


def schedules_its_result_onward(n: int, cookie: int) -> float:
    """A worker scheduling with large data: the parent forwards the frame it received."""
    return float(initgraph.schedule(describe_data, {"x": np.ones(n)}))


def test_data_of_work_scheduled_in_a_worker_is_forwarded_by_the_parent() -> None:
    with Scheduler(2) as sched:
        parent_cookie = sched.schedule(schedules_its_result_onward, MiB)
        child = int(sched.result(parent_cookie, timeout=WAIT))
        assert sched.result(child, timeout=WAIT) == ("ndarray", False, float(MiB))
        assert sched._store.statistics().segments_written == 0


# -- lifetimes -------------------------------------------------------------------------------------
def test_close_releases_every_result_read_or_not() -> None:
    sched = Scheduler(1)
    with sched:
        read = sched.schedule(make_array, MiB)
        unread = sched.schedule(make_array, MiB)
        arr = sched.result(read, timeout=WAIT)
        sched.result(sched.schedule(identity, None), timeout=WAIT)
        assert len(store_fds()) >= 2
    # What is left belongs to the array read: its mapping (and, before Python 3.13, the
    # mmap's own duplicate of the descriptor), until it goes.
    assert len(store_fds()) <= 1
    assert arr[-1] == MiB - 1
    with pytest.raises(HookError) as info:
        sched.result(unread)
    assert str(info.value) == (
        f"the result of initcall {unread} 'make_array' cannot be loaded: the scheduler was "
        f"closed before it was read"
    )
    del arr, sched, info
    gc.collect()
    assert store_fds() == []


def test_a_worker_forked_later_does_not_inherit_the_parents_segments() -> None:
    with Scheduler(1, start_method="fork") as sched:
        loaded = sched.result(sched.schedule(make_array, MiB), timeout=WAIT)  # mapped here
        unread = sched.schedule(make_array, MiB)  # a handle here
        sched.result(sched.schedule(identity, None), timeout=WAIT)
        assert sched.outcome(unread) is not None
        assert store_fds() != []
        (victim,) = sched.worker_pids()
        os.kill(victim, signal.SIGKILL)  # replaced by a fork of this process, as it is now
        deadline = time.monotonic() + WAIT
        inherited = None
        while inherited is None and time.monotonic() < deadline:
            cookie = sched.schedule(store_fds_here)
            with contextlib.suppress(HookError):  # it may reach the dying worker
                inherited = sched.result(cookie, timeout=WAIT)
        assert inherited == []
        assert victim not in sched.worker_pids()
        del loaded


# -- native thread pools ---------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_workers_limit_native_thread_pools_to_their_share(method: str) -> None:
    pytest.importorskip("threadpoolctl")  # optional for initgraph; the test extra brings it
    share = max(1, (os.cpu_count() or 1) // 2)
    with Scheduler(2, start_method=method) as sched:
        env, pools = sched.result(sched.schedule(thread_settings), timeout=WAIT)
    assert env == dict.fromkeys(THREAD_VARS, str(share))
    assert pools
    assert all(n <= share for n in pools)


def test_worker_threads_overrides_and_the_users_setting_wins(monkeypatch: Any) -> None:
    pytest.importorskip("threadpoolctl")
    monkeypatch.setenv("MKL_NUM_THREADS", "5")
    with Scheduler(1, start_method="fork", worker_threads=3) as sched:
        env, _ = sched.result(sched.schedule(thread_settings), timeout=WAIT)
    assert env == {**dict.fromkeys(THREAD_VARS, "3"), "MKL_NUM_THREADS": "5"}


# -- what a plugin finds in ctx.results ----------------------------------------------------------
def test_lazy_results_load_a_required_result_when_first_read() -> None:
    from initgraph._boot.plugins import InitResult, LazyResults
    from initgraph._core.store import Store

    store = Store()
    a, b = socket.socketpair()
    with a, b:
        for value in (np.ones(MiB), np.zeros(MiB)):
            with store.encode(InitResult(value), owner="plugin 'x'") as encoded:
                store.send(a, encoded)
        read, unread = store.receive(b), store.receive(b)
        with read, unread:
            results = LazyResults({"read": read, "unread": unread, "local": 3})
            assert sorted(results) == ["local", "read", "unread"]
            arr = results["read"]
            assert results["read"] is arr
            assert arr.sum() == MiB
            assert not arr.flags.writeable
            assert results["local"] == 3
            assert unread.load_s is None  # never read: never mapped
        assert store.statistics().mapped == 1
        del arr


# -- [initgraph] max_result_bytes in a boot ------------------------------------------------------
RETURNS_BYTES = """
from initgraph import hookimpl

@hookimpl
def initgraph_init(ctx):
    return bytes(ctx.config["size"])
"""


def test_a_plugin_over_max_result_bytes_fails_like_any_plugin(app: AppWriter) -> None:
    config = app(
        {
            "big": {"source": RETURNS_BYTES, "config": {"size": 2 * MiB}},
            "small": {"source": RETURNS_BYTES, "config": {"size": 1000}},
            "after": {"requires": ["big"]},
        },
        max_result_bytes=MiB,
        on_error="continue",
    )
    with pytest.raises(BootError) as info:
        initgraph.boot(config)
    boot = info.value.boot
    failure = boot.failures["big"]
    err = failure.error
    assert isinstance(err, HookError)
    assert (err.name, failure.kind, boot.status("big")) == ("big", "error", "failed")
    too_large = err.__cause__
    assert isinstance(too_large, TooLargeError)
    assert (too_large.limit, too_large.owner) == (MiB, "plugin 'big'")
    assert too_large.size > 2 * MiB
    assert failure.message == (
        f"plugin 'big': the value needs at least {too_large.size:,} bytes (2.0 MiB), over "
        f"max_result_bytes = 1,048,576 bytes (1.0 MiB); make it smaller or raise max_result_bytes"
    )
    assert str(info.value) == (
        f"boot failed: plugin 'big': {failure.message}; 1 other plugin(s) did not commit"
    )
    assert boot.results == {"small": bytes(1000)}
    assert boot.status("after") == "skipped"


def test_max_result_bytes_is_an_override_of_boot(app: AppWriter) -> None:
    config = app({"big": {"source": RETURNS_BYTES, "config": {"size": 2 * MiB}}})
    assert initgraph.boot(config).results["big"] == bytes(2 * MiB)  # no bound by default
    boot = initgraph.boot(config, check=False, max_result_bytes=MiB)
    assert boot.status("big") == "failed"
    assert isinstance(boot.failures["big"].error.__cause__, TooLargeError)


# -- what the parent loads in a boot -------------------------------------------------------------
TRACED = """
import os
import threading

from initgraph import hookimpl


def _loaded(log):
    with open(log, "a") as out:
        out.write(f"{os.getpid()} {threading.current_thread().name}\\n")
    return Traced(log)


class Traced:
    \"\"\"A result whose every unpickling writes the pid and thread that unpickled it.\"\"\"

    def __init__(self, log):
        self.log = log

    def __reduce__(self):
        return _loaded, (self.log,)


@hookimpl
def initgraph_init(ctx):
    if "reads" in ctx.config:
        if ctx.config["reads"]:
            got = ctx.results[ctx.config["reads"]]
            assert type(got).__name__ == "Traced", got
        return os.getpid()
    return Traced(ctx.config["log"])
"""

COMMITS = """
from initgraph import hookimpl


@hookimpl
def initgraph_commit(ctx, result):
    ctx.publish("seen." + ctx.name, type(result).__name__)
"""


def loaded_by(log: Any) -> list[int]:
    """The pid of each process that loaded a Traced result, in order."""
    return [int(line.split()[0]) for line in log.read_text().splitlines()] if log.exists() else []


def loaded_on(log: Any) -> list[str]:
    """The name of each thread that loaded a Traced result, in order."""
    return [line.split(maxsplit=1)[1] for line in log.read_text().splitlines()]


def test_a_result_only_pool_plugins_require_is_never_loaded_in_the_parent(
    app: AppWriter, tmp_path: Any
) -> None:
    log = tmp_path / "loads.txt"
    config = app(
        {
            "made": {"source": TRACED, "config": {"log": str(log)}},
            "reader": {"source": TRACED, "requires": ["made"], "config": {"reads": "made"}},
            # a commit hook here that does not read ctx.results["made"]
            "committer": {
                "source": TRACED + COMMITS,
                "requires": ["made"],
                "config": {"reads": ""},
            },
        },
    )
    with initgraph.boot(config) as boot:
        assert boot.ok
        assert boot.registry["seen.committer"] == "int"
        reader_pid = boot.timings["reader"].pid
        assert loaded_by(log) == [reader_pid]  # the reader's worker, not the parent
        assert type(boot.results["made"]).__name__ == "Traced"  # the parent loads it when asked
        assert loaded_by(log) == [reader_pid, os.getpid()]
        boot.results["made"]
        assert loaded_by(log) == [reader_pid, os.getpid()]  # once


def test_a_result_is_loaded_in_the_parent_for_its_commit(app: AppWriter, tmp_path: Any) -> None:
    log = tmp_path / "loads.txt"
    config = app({"made": {"source": TRACED + COMMITS, "config": {"log": str(log)}}})
    with initgraph.boot(config) as boot:
        assert boot.registry["seen.made"] == "Traced"
        assert loaded_by(log) == [os.getpid()]


@pytest.mark.parametrize("embedded", ["boot", "aboot"])
def test_what_the_owners_thread_will_read_is_loaded_on_the_coordinating_one(
    app: AppWriter, tmp_path: Any, embedded: str
) -> None:
    # Under aboot the owner's thread is the event loop's: a result loaded there, one C call,
    # would stall it (5 ms for the example's search index). The commit hook and the main init
    # get values the coordinating thread loaded, in steps the loop can come in between.
    log = tmp_path / "loads.txt"
    config = app(
        {
            "made": {"source": TRACED + COMMITS, "config": {"log": str(log)}},
            "other": {"source": TRACED, "config": {"log": str(log)}},
            "user": {
                "source": TRACED,
                "requires": ["other"],
                "where": "main",
                "config": {"reads": "other"},
            },
        },
    )
    with (
        asyncio.run(initgraph.aboot(config))
        if embedded == "aboot"
        else initgraph.boot(config) as boot
    ):
        assert boot.ok
        assert boot.registry["seen.made"] == "Traced"
        assert loaded_by(log) == [os.getpid()] * 2
        owner = threading.current_thread().name
        assert owner not in loaded_on(log)
        assert set(loaded_on(log)) == {"initgraph-boot"}


REFUSES = """
from initgraph import hookimpl


def _refuse():
    raise ValueError("not here")


class Refuses:
    def __reduce__(self):
        return _refuse, ()


@hookimpl
def initgraph_init(ctx):
    return Refuses()
"""


def test_a_result_nothing_here_needs_may_be_one_the_parent_cannot_load(app: AppWriter) -> None:
    boot = initgraph.boot(app({"odd": {"source": REFUSES}, "after": {"requires": ["odd"]}}))
    assert boot.ok
    assert "odd" in boot.results
    with pytest.raises(HookError) as info:
        boot.results["odd"]
    assert str(info.value) == "the result of plugin 'odd' cannot be loaded here: not here"
    assert (info.value.name, info.value.cookie) == ("odd", 1)
    assert type(info.value.__cause__) is ValueError


def test_a_stepped_load_reads_the_stream_a_step_at_a_time(monkeypatch: Any) -> None:
    # Each step is a call into Python code (the reader's readinto), where the GIL can pass to
    # another thread; pickle.loads of the whole stream would be one C call.
    from initgraph._core import store as _store

    table = {i: (str(i), float(i)) for i in range(20_000)}
    pieces, buffers = _store.Store().pickle_apart(table, owner="plugin 'x'")
    size = sum(memoryview(p).nbytes for p in pieces)
    reads: list[int] = []
    readinto = _store._Pieces.readinto

    def counted(self: Any, buffer: Any) -> int:
        reads.append(readinto(self, buffer))
        return reads[-1]

    monkeypatch.setattr(_store._Pieces, "readinto", counted)
    for chunks in (pieces, [b"".join(pieces)]):  # in pieces, and in one
        reads.clear()
        assert _store.Store.load_apart(chunks, buffers, step=4096) == table
        # all of it but the frames' headers (9 bytes a frame, one per 64 KiB at most)
        assert size - 9 * (size // 65536 + 1) <= sum(reads) < size
        assert max(reads) <= 4096
        assert len(reads) >= size // 4096


@pytest.mark.parametrize(
    "value",
    [
        {"text": "x" * 100_000, "n": list(range(30_000))},  # a big str is written outside frames
        [b"ab" * 40_000, bytearray(b"c" * 70_000), -(2**70), 2**300],  # bytes, bytearray, longs
        ("tiny",),  # one frame
        list(range(100_000)),
    ],
    ids=["big-str", "bytes-and-longs", "tiny", "many-frames"],
)
def test_a_stepped_load_loads_any_stream_cut_anywhere(value: Any) -> None:
    from initgraph._core.store import Store

    pieces, buffers = Store().pickle_apart(value, owner="plugin 'x'")
    stream = b"".join(pieces)
    assert pickle.loads(stream, buffers=buffers) == value
    cuts = sorted({0, 1, 2, 3, 9, 10, 11, len(stream) // 3, len(stream) // 2, len(stream)})
    cut = [stream[a:b] for a, b in itertools.pairwise(cuts) if b > a]  # frames straddle pieces
    for chunks in (pieces, cut, [stream]):
        assert Store.load_apart(chunks, buffers, step=512) == value
    with pytest.raises(pickle.UnpicklingError, match="ends in the middle of an opcode"):
        Store.load_apart([stream[:-5]], buffers, step=512)


def test_a_result_apart_round_trips_in_pieces_and_loads_when_read() -> None:
    from initgraph._boot.plugins import InitResult
    from initgraph._core.store import Store

    store = Store()
    table = {i: str(i) for i in range(50_000)}  # a stream of many frames: many pieces
    pieces, buffers = store.pickle_apart(table, owner="plugin 'x'")
    assert len(pieces) > 1
    assert not buffers
    assert Store.load_apart([memoryview(p) for p in pieces], buffers) == table
    values = [table, bytes(3 * MiB), np.arange(MiB, dtype=np.float64), {"small": [1, 2]}]
    a, b = socket.socketpair()
    with a, b:
        for value in values:
            sent = InitResult(value, (("k", 1),), plugin="x", cookie=7)
            with store.encode(sent, owner="plugin 'x'") as encoded:
                store.send(a, encoded)
            with store.receive(b) as handle:
                got = handle.value()
                assert (got.publications, got.plugin, got.cookie) == ((("k", 1),), "x", 7)
                assert not got.loaded
                if isinstance(value, np.ndarray):
                    assert np.array_equal(got.value, value)
                    assert not got.value.flags.writeable  # a view of the segment
                else:
                    assert got.value == value
                assert got.loaded
                del got
