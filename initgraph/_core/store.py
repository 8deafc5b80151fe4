"""Values between processes: pickle protocol 5 with out-of-band buffers in shared memory.

A value (an initcall's result, ``data`` for ``schedule``, what a plugin finds in ``ctx.results``)
is pickled once by the process that made it. Out-of-band buffers (numpy arrays, ``bytearray``,
``memoryview``, anything that pickles to a :class:`pickle.PickleBuffer`) are not copied into the
pickle stream: they are written once, next to the stream, into an anonymous ``memfd`` segment,
which is then sealed. The segment's file descriptor crosses the Unix socket between the processes
(``SCM_RIGHTS``); a receiver maps it read-only and unpickles with the buffers in place, so numpy
arrays come back as zero-copy views with ``writeable=False`` (``arr.copy()`` for a writable one).
A value smaller than the threshold travels inline in the message instead, with the same layout::

    producer (worker)                         parent                        dependents
    ─────────────────                         ──────                        ──────────
    store.encode(value, owner=...)
      pickle.Pickler(protocol=5)
      │  stream ──────┐
      │  buffers ─────┤ pwrite, once
      ▼               ▼
    memfd segment [stream|pad|buf0|pad|buf1]
      sealed: no write, grow, shrink
    store.send(sock, enc)  ── frame + fd ──▶  h = store.receive(sock)
    enc.close()                                 (nothing mapped)
                                              h.forward(sock_i) ── frame + fd ──▶  h_i = receive()
                                              ...  N times, no copy              h_i.value(): mmap
                                              h.close()                            PROT_READ, loads
                                                                                   with buffers=
                                                                                   views of the map

The frame on the socket is a fixed prefix, a table of (offset, length) of the buffers, and for an
inline value its bytes; a segment's descriptor rides on the prefix. It can share a socket with
``multiprocess``'s ``Connection`` framing as long as both sides take turns (send a message, then a
frame; receive the message, then the frame).

**Lifetime.** A segment has no name (nothing in ``/dev/shm``; reachable only through descriptors
and mappings, so private to the user's own processes), and the kernel frees it when its last
descriptor and mapping are gone, whichever process is SIGKILLed. :class:`Encoded` and
:class:`Handle` hold one descriptor each, closed by ``close()`` or when they are collected. A
mapping belongs to the views of the value that use it: it is unmapped when the last array or
memoryview on it is released, never under a live view (``Handle.close()`` does not unmap).

**Safety.** Only :mod:`pickle` serializes values, never dill (dill re-opens files by name: a
file returned by a worker came back re-opened in mode ``"w"``, truncating it). What pickle refuses,
and descriptors that would pickle into nonsense (``Connection``), raise :class:`UnpicklableError`
naming the owner and the type. ``max_result_bytes`` bounds a value (:class:`TooLargeError`), and the
writer checks available memory and writes with ``pwrite``: a full memory is an error
(:class:`NoRoomError`), never a SIGBUS. Receivers map only segments sealed against writing and
shrinking, so a view can neither change nor lose its pages.

The interface, small enough for another engine's object store to back the same calls::

    store = Store(threshold=THRESHOLD, max_result_bytes=None)
    store.encode(value, *, owner: str) -> Encoded   # .ref .fd .nbytes .inline .serialize_s
    store.send(sock, encoded) -> None                # sock: a socket, or a duplex Connection
    store.receive(sock) -> Handle                    # .ref .nbytes .inline .transfer_s .load_s
    store.inline_handle(ref) -> Handle               # a small value that came in a message
    ref.load() -> Any                                # the same, loaded at once, no handle
    handle.value() -> Any                            # lazy, cached
    handle.forward(sock) -> None                     # the same segment, not loaded here
    handle.close(), encoded.close()                  # or let them be collected
    store.statistics() -> Statistics                 # counts of writes, sends, maps
    store.pickle_apart(value, *, owner) -> (pieces, buffers)   # a part loaded only when asked
    Store.load_apart(pieces, buffers, *, step=None) -> Any
"""

from __future__ import annotations

import array
import bisect
import contextlib
import fcntl
import functools
import io
import itertools
import mmap
import os
import pickle
import socket
import struct
import sys
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from .._errors import InitgraphError, _rebuild

__all__ = [
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
]

# Below this many bytes (stream plus buffers) a value travels inline in the frame. Measured with
# `python benchmarks/store.py --crossover` (float64 arrays and bytes, child to parent, medians of
# 31, 2 loaded cores): up to 128 KiB a segment costs ~30-40 µs more wall time and ~10 µs more of
# the receiver's CPU (memfd_create, seal, descriptor passing, mmap); from 256 KiB on it saves the
# receiver's CPU (an array: 48 vs 56 µs at 256 KiB, 100 vs 172 µs at 1 MiB, 117 vs 478 µs at
# 4 MiB) for a wall time within 10% (the writer allocating shmem pages costs about what two
# socket copies do), and a forward is one descriptor instead of a re-send of the bytes.
THRESHOLD = 256 * 1024
# A numpy array smaller than this travels in the pickle stream (copied, still read-only when
# loaded), not as a buffer of its own. Measured with `python benchmarks/store.py --small-arrays`
# (a dict of 2,000 arrays, encode + send + load, ms, in the stream / a buffer each; loaded
# machine): 1 KiB 24 / 58, 2 KiB 30 / 48, 4 KiB 65 / 41, 16 KiB 165 / 64. A value holding
# thousands of small arrays (posting lists) paid ~40 µs per buffer for the table, the write and
# the slicing: 20,000 of them took 920 ms to encode and load, 280 ms in the stream.
SMALL_ARRAY = 4 * 1024

_NAME = "initgraph-store"  # of every segment; /proc/<pid>/fd shows "/memfd:initgraph-store"
# Types pickle writes in band with no reducer of ours to consult: they take a fast path.
_PLAIN = frozenset({type(None), bool, int, float, complex, str, bytes})

_MAGIC = b"IGs1"
_INLINE, _SEGMENT = 0, 1
# magic, kind, number of buffers, blob size, stream size, when it was sent (time.monotonic())
_PREFIX = struct.Struct("<4sB3xIQQd")
_ENTRY = struct.Struct("<QQ")  # one out-of-band buffer: offset, length
_ALIGN = 64  # buffers start on a cache line: numpy needs its dtype's alignment, SIMD likes 64
_PAD = bytes(_ALIGN)
_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
_NEEDED_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_WRITE
_IOV_MAX = 1024
_ROOM_STEP = 64 << 20  # check available memory again after this many bytes
_HEADROOM = 64 << 20  # leave this much memory to everyone else


class StoreError(InitgraphError):
    """A value cannot cross to another process; ``.owner`` names whose value it is."""

    def __init__(self, message: str, *, owner: str) -> None:
        super().__init__(message)
        self.owner = owner

    def __reduce__(self) -> Any:
        return (_rebuild, (type(self), self.args, self.__dict__))


class UnpicklableError(StoreError, TypeError):
    """Pickle refuses a part of the value; ``.type_name`` is the type of that part."""

    def __init__(self, message: str, *, owner: str, type_name: str) -> None:
        super().__init__(message, owner=owner)
        self.type_name = type_name


class TooLargeError(StoreError, ValueError):
    """The value needs more than ``max_result_bytes``: ``.size`` (at least) and ``.limit``."""

    def __init__(self, message: str, *, owner: str, size: int, limit: int) -> None:
        super().__init__(message, owner=owner)
        self.size = size
        self.limit = limit


class NoRoomError(StoreError, MemoryError):
    """Shared memory is short: ``.size`` bytes were needed, ``.available`` (or None) were left."""

    def __init__(self, message: str, *, owner: str, size: int, available: int | None) -> None:
        super().__init__(message, owner=owner)
        self.size = size
        self.available = available


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


Sock = socket.socket | _HasFileno
"""A connected ``AF_UNIX`` stream socket, or what wraps one (a duplex ``Connection``)."""


PackedRef = tuple[int, int, tuple[tuple[int, int], ...], bytes | None]


class Ref(NamedTuple):
    """What a value is made of: small and picklable; a segment's descriptor travels apart.

    The blob (``inline`` bytes, or the segment) holds the pickle stream at offset 0 and
    ``size`` bytes in all; ``buffers`` are the (offset, length) of each out-of-band buffer.
    A message carries a small value's ref as a plain tuple (:meth:`packed`, ``Ref(*t)`` on
    arrival), which pickles as cheaply as bytes: a class, this one or a dataclass, cost about a
    µs more to pickle and again to unpickle, in both messages of every initcall.
    """

    size: int
    stream: int
    buffers: tuple[tuple[int, int], ...]
    inline: bytes | None

    @property
    def buffer_bytes(self) -> int:
        """Bytes of out-of-band buffers (numpy arrays, bytearrays...) in the value."""
        return sum(n for _, n in self.buffers)

    def packed(self) -> PackedRef:
        """The ref as a plain tuple, for a message (``Ref(*packed)`` makes it again)."""
        return (self.size, self.stream, self.buffers, self.inline)

    def load(self, refs: Sequence[Handle] = ()) -> Any:
        """The value of an inline ref (one that came inside a message), loaded now.

        For a receiver that needs no :class:`Handle`. ``refs``: the handles the value holds
        (see :meth:`Store.encode`).
        """
        if self.inline is None:
            msg = "a segment's Ref cannot be loaded without its descriptor: receive a Handle"
            raise ValueError(msg)
        if not self.buffers and not refs:  # the stream alone (most values)
            return pickle.loads(self.inline)
        return _loads(self, memoryview(self.inline), tuple(refs))


@dataclass(frozen=True)
class Statistics:
    """What a :class:`Store` did in this process, for traces and tests."""

    encoded: int  # values encoded
    segments_written: int  # of those, written to a segment (the rest went inline)
    bytes_written: int  # bytes written to segments
    sent: int  # frames sent: send() and forward()
    received: int  # frames received (a small value inside its message is not one)
    mapped: int  # segments mapped to load a value
    bytes_mapped: int


class Store:
    """Encode values for other processes, and send and receive them over Unix sockets.

    ``threshold``: a value below this many bytes travels inline (default :data:`THRESHOLD`).
    ``max_result_bytes``: a larger value raises :class:`TooLargeError` before it is written
    (None: no limit but available memory).
    """

    def __init__(self, *, threshold: int = THRESHOLD, max_result_bytes: int | None = None) -> None:
        if threshold < 0:
            msg = f"threshold must be >= 0, got {threshold}"
            raise ValueError(msg)
        if max_result_bytes is not None and max_result_bytes < 1:
            msg = f"max_result_bytes must be positive or None, got {max_result_bytes}"
            raise ValueError(msg)
        self.threshold = threshold
        self.max_result_bytes = max_result_bytes
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(Statistics.__dataclass_fields__, 0)

    def encode(self, value: Any, *, owner: str, refs: list[Handle] | None = None) -> Encoded:
        """Pickle ``value``, writing it to a new sealed segment unless it is below the threshold.

        ``owner`` names whose value it is in errors: ``"plugin 'x'"`` (errors then suggest
        ``where = "main"``) or ``"initcall 12 'load'"``. Raises :class:`UnpicklableError`,
        :class:`TooLargeError` or :class:`NoRoomError`.

        ``refs``: given a list, each :class:`Handle` inside ``value`` is not pickled but
        appended to it and referred to by its index; the sender forwards those handles, and the
        receiver passes them to :meth:`receive`, whose value then holds them, not loaded.
        """
        began = time.perf_counter()
        if type(value) in _PLAIN:
            # None, a number, a short string (no handle inside): the C pickler alone, inline
            # (most initcalls)
            stream = pickle.dumps(value, protocol=5)
            n, limit = len(stream), self.max_result_bytes
            if n < self.threshold and (limit is None or n <= limit):
                with self._lock:
                    self._counts["encoded"] += 1
                return Encoded(Ref(n, n, (), stream), None, time.perf_counter() - began)
        writer = _Writer(owner, self.threshold, self.max_result_bytes)
        pickler = (
            _Pickler(writer, owner, value)
            if refs is None
            else _RefPickler(writer, owner, value, refs)
        )
        try:
            _dump(pickler, value)
            ref, fd = writer.finish()
        except BaseException:
            writer.abort()
            raise
        encoded = Encoded(ref, fd, time.perf_counter() - began)
        self._count("encoded")
        if fd is not None:
            self._count("segments_written")
            self._count("bytes_written", ref.size)
        return encoded

    def send(self, sock: Sock, encoded: Encoded) -> None:
        """Send an encoded value (its frame, and its segment's descriptor) through ``sock``.

        The sender may close ``encoded`` as soon as this returns: the segment lives on in the
        socket and then in the receiver.
        """
        _send_frame(sock, encoded.ref, encoded.fd)
        self._count("sent")

    def receive(self, sock: Sock, *, refs: Sequence[Handle] = ()) -> Handle:
        """Receive one value sent by :meth:`send` or :meth:`Handle.forward`; nothing is mapped yet.

        ``refs``: the handles its value refers to (see :meth:`encode`), received before it.
        Raises EOFError when the peer closed the socket before a whole frame.
        """
        ref, fd, sent_at = _recv_frame(sock)
        self._count("received")
        return Handle(ref, fd, time.monotonic() - sent_at, self, tuple(refs))

    def inline_handle(self, ref: Ref, *, refs: Sequence[Handle] = ()) -> Handle:
        """A handle on an inline value that came inside a message instead of a frame of its own.

        Small values (below the threshold) travel in their message: one send and one receive
        per message, as before the store, instead of two (the per-initcall cost doubled).
        """
        if ref.inline is None:
            msg = "inline_handle() takes the Ref of an inline value; a segment comes in a frame"
            raise ValueError(msg)
        return Handle(ref, None, 0.0, self, tuple(refs))

    def pickle_apart(self, value: Any, *, owner: str) -> tuple[list[Any], list[memoryview]]:
        """``value`` pickled as :meth:`encode` would (same errors and bound), kept in memory.

        Its stream in pieces, in order, and its out-of-band buffers, none copied: for a part of
        a larger value that the receiver loads only if asked (the value of a plugin's result,
        which the parent need not load to commit it). Wrapped in :class:`pickle.PickleBuffer`
        and given to the enclosing value's reducer, they travel out of band inside it, written
        once like any buffer; :meth:`load_apart` loads them from what arrives.
        """
        writer = _Writer(owner, sys.maxsize, self.max_result_bytes)  # never spills: in memory
        _dump(_Pickler(writer, owner, value), value)
        return writer.chunks, writer.buffers

    @staticmethod
    def load_apart(
        pieces: Sequence[Any], buffers: Sequence[Any], *, step: int | None = None
    ) -> Any:
        """The value :meth:`pickle_apart` gave the ``pieces`` (of its stream) and ``buffers`` of.

        ``step``: read the stream that many bytes at a time through Python code, so that the
        GIL can pass to another thread between steps. ``pickle.loads`` is one C call: loading
        a big object graph in a thread would otherwise hold the GIL from start to end (2 ms of
        CPU for the example's search index, 2-7 ms of wall time on a busy machine) and stall an
        event loop in the same process.
        """
        if step is None:
            if len(pieces) == 1:
                return pickle.loads(pieces[0], buffers=buffers)
            reader = io.BufferedReader(_Pieces(pieces))
        else:
            # Without its frames: the unpickler reads a whole frame (64 KiB) at once and takes
            # it apart in C; unframed, it reads no more than the reader's buffer at a time.
            reader = io.BufferedReader(_Pieces(_unframed(pieces)), buffer_size=step)
        return pickle.Unpickler(reader, buffers=buffers).load()

    def statistics(self) -> Statistics:
        """Counts of what this store did so far in this process."""
        with self._lock:
            return Statistics(**self._counts)

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n


class Encoded:
    """A value encoded by its producer: a :class:`Ref`, and the segment's descriptor if any.

    ``nbytes``: the blob's size; ``serialize_s``: seconds spent pickling and writing.
    Close it once sent (``with store.encode(...) as enc: store.send(sock, enc)``).
    """

    __slots__ = ("__weakref__", "_finalizer", "fd", "ref", "serialize_s")

    def __init__(self, ref: Ref, fd: int | None, serialize_s: float) -> None:
        self.ref = ref
        self.fd = fd
        self.serialize_s = serialize_s
        # an inline value holds no descriptor: nothing to close (and a finalizer costs ~5 µs)
        self._finalizer = None if fd is None else weakref.finalize(self, _close_fd, fd)

    @property
    def nbytes(self) -> int:
        return self.ref.size

    @property
    def inline(self) -> bool:
        return self.fd is None

    def close(self) -> None:
        """Close the descriptor; the segment lives on while a receiver or socket holds it."""
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> Encoded:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "inline" if self.fd is None else f"segment fd={self.fd}"
        return f"<Encoded {self.ref.size:,} bytes {where}>"


class Handle:
    """A received value: maps and unpickles on the first :meth:`value`, which it then caches.

    ``nbytes``; ``transfer_s``: seconds from the sender's send to the end of the receive (one
    machine's ``time.monotonic()``); ``load_s``: seconds :meth:`value` took to map and unpickle
    (None before). A handle holds one descriptor until :meth:`close` or collection.
    """

    __slots__ = (
        "__weakref__",
        "_closed",
        "_fd",
        "_finalizer",
        "_lock",
        "_store",
        "_value",
        "load_s",
        "ref",
        "refs",
        "transfer_s",
    )

    def __init__(
        self,
        ref: Ref,
        fd: int | None,
        transfer_s: float,
        store: Store,
        refs: tuple[Handle, ...] = (),
    ) -> None:
        self.ref = ref
        self.refs = refs  # the handles its value holds, in the order of encode()'s refs
        self.transfer_s = transfer_s
        self.load_s: float | None = None
        self._fd = fd
        self._store = store
        self._lock = threading.Lock()
        self._value: Any = None
        self._closed = False
        # an inline value holds no descriptor: nothing to close (and a finalizer costs ~5 µs)
        self._finalizer = None if fd is None else weakref.finalize(self, _close_fd, fd)

    @property
    def nbytes(self) -> int:
        return self.ref.size

    @property
    def inline(self) -> bool:
        return self.ref.inline is not None

    @property
    def closed(self) -> bool:
        return self._closed

    def value(self) -> Any:
        """The value. Its out-of-band buffers are read-only views of the shared segment."""
        with self._lock:
            if self._closed:
                msg = "the handle is closed"
                raise ValueError(msg)
            if self.load_s is None:  # not loaded yet
                began = time.perf_counter()
                self._value = self._load()
                self.load_s = time.perf_counter() - began
            return self._value

    def forward(self, sock: Sock) -> None:
        """Send this value on to another process without loading it: the same segment, again."""
        if self._closed:
            msg = "the handle is closed"
            raise ValueError(msg)
        _send_frame(sock, self.ref, self._fd)
        self._store._count("sent")

    def close(self) -> None:
        """Drop the cached value and close the descriptor. Views already handed out stay valid."""
        with self._lock:
            self._closed = True
            self._value = None
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> Handle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _load(self) -> Any:
        if self._fd is None:
            return self.ref.load(self.refs)
        seals = fcntl.fcntl(self._fd, fcntl.F_GET_SEALS)
        if seals & _NEEDED_SEALS != _NEEDED_SEALS or os.fstat(self._fd).st_size < self.ref.size:
            msg = f"refusing to map an unsealed or short segment (seals {seals:#x})"
            raise ValueError(msg)
        # The mapping lives as long as a view on it: numpy arrays and memoryviews of the value
        # hold the memoryview that holds the mmap, which unmaps (and closes its own dup of the
        # descriptor) when the last of them goes.
        # Before 3.13 an mmap keeps a duplicate of the descriptor as long as it lives: a value
        # read holds one descriptor until its last view goes; trackfd=False drops it.
        options: dict[str, Any] = {"trackfd": False} if sys.version_info >= (3, 13) else {}
        mapping = mmap.mmap(
            self._fd, self.ref.size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ, **options
        )
        self._store._count("mapped")
        self._store._count("bytes_mapped", self.ref.size)
        return _loads(self.ref, memoryview(mapping), self.refs)

    def __repr__(self) -> str:
        where = "inline" if self.ref.inline is not None else f"segment fd={self._fd}"
        state = "closed" if self._closed else "loaded" if self.load_s is not None else "not loaded"
        return f"<Handle {self.ref.size:,} bytes {where}, {state}>"


# -- encoding ------------------------------------------------------------------------------------
class _Pickler(pickle.Pickler):
    """The C pickler, remembering the last object it reduced (to name what it refused)."""

    def __init__(self, writer: _Writer, owner: str, value: object) -> None:
        super().__init__(writer, protocol=5, buffer_callback=writer.add_buffer)
        self.owner = owner
        self.last = value

    def reducer_override(self, obj: Any) -> Any:
        # Not called for None, bools and exact int, float, str, bytes, list, tuple, dict, set.
        self.last = obj
        cls = type(obj)
        if cls is memoryview:
            # memoryview does not pickle at all; send its bytes out of band, keep format and shape
            data = obj if obj.c_contiguous else obj.tobytes()
            return _memoryview, (pickle.PickleBuffer(data), obj.format, obj.shape)
        module = cls.__module__
        if module == "numpy" and cls.__name__ == "ndarray" and not obj.dtype.hasobject:
            if obj.nbytes < SMALL_ARRAY:
                # in the stream: a buffer of its own costs more than copying a small array, and
                # values often hold thousands (posting lists); it still arrives read-only, over
                # bytes. One dimension: numpy.frombuffer itself, a C call (a dict of 20,000
                # posting lists: 31 ms to encode and 11 to load, against 46 and 28 through
                # _array).
                if obj.ndim == 1:
                    return sys.modules["numpy"].frombuffer, (obj.tobytes(), obj.dtype)
                order = "F" if obj.flags.f_contiguous and not obj.flags.c_contiguous else "C"
                return _array, (obj.tobytes(order), obj.dtype, obj.shape, order)
            if not (obj.flags.c_contiguous or obj.flags.f_contiguous):
                # numpy pickles a strided view in band, copied in the stream and again when
                # loaded; a contiguous copy goes out of band and arrives as a view like the rest
                return obj.copy(order="C").__reduce_ex__(5)
            return NotImplemented
        if module in ("multiprocessing.connection", "multiprocess.connection"):
            # pickles without complaint, as a bare descriptor number that means nothing there
            raise _unpicklable(self.owner, obj, "its file descriptor means nothing there")
        return NotImplemented


def _dump(pickler: _Pickler, value: Any) -> None:
    """Pickle ``value``; what pickle refuses is an :class:`UnpicklableError` naming the part."""
    try:
        pickler.dump(value)
    except StoreError:
        raise
    except Exception as exc:
        raise _unpicklable(pickler.owner, pickler.last, str(exc)) from exc
    finally:
        pickler.last = None


class _RefPickler(_Pickler):
    """A pickler that leaves each :class:`Handle` out of the stream, as an index into ``refs``."""

    def __init__(self, writer: _Writer, owner: str, value: object, refs: list[Handle]) -> None:
        super().__init__(writer, owner, value)
        self.refs = refs

    def persistent_id(self, obj: Any) -> int | None:
        if type(obj) is Handle:
            self.refs.append(obj)
            return len(self.refs) - 1
        return None


def _array(data: bytes, dtype: Any, shape: tuple[int, ...], order: Any) -> Any:
    """A small numpy array that travelled in the pickle stream: read-only, as over ``bytes``."""
    import numpy  # only a value that holds an array gets here

    return numpy.frombuffer(data, dtype=dtype).reshape(shape, order=order)


def _memoryview(buffer: Any, fmt: Any, shape: tuple[int, ...]) -> memoryview[Any]:
    view = memoryview(buffer)
    if fmt == "B" and len(shape) == 1:
        return view
    try:
        cast: memoryview[Any] = view.cast("B").cast(fmt, shape)
        return cast
    except (TypeError, ValueError):
        return view  # a format cast does not take: the bytes


class _Writer:
    """The pickle stream's file: memory while the value is small, then a memfd segment.

    Out-of-band buffers are kept as views (no copy) and written after the stream, each aligned.
    """

    def __init__(self, owner: str, threshold: int, limit: int | None) -> None:
        self.owner = owner
        self.threshold = threshold
        self.limit = limit
        self.chunks: list[Any] = []  # the stream, while in memory
        self.stream = 0  # bytes of stream so far
        self.buffers: list[memoryview] = []
        self.buffer_bytes = 0
        self.fd: int | None = None
        self.unchecked = 0  # bytes to write since available memory was last checked

    # the Pickler's file
    def write(self, data: Any) -> int:
        n = data.nbytes if isinstance(data, memoryview) else len(data)
        self._grow(n)
        if self.fd is None:
            self.chunks.append(data)
        else:
            self._room(n)
            _pwrite_all(self.owner, self.fd, [memoryview(data)], self.stream)
        self.stream += n
        return n

    def add_buffer(self, buffer: pickle.PickleBuffer) -> None:
        raw = buffer.raw()
        self._grow(raw.nbytes)
        self.buffers.append(raw)
        self.buffer_bytes += raw.nbytes

    def _grow(self, n: int) -> None:
        total = self.stream + self.buffer_bytes + n
        if self.limit is not None and total > self.limit:
            raise _too_large(self.owner, total, self.limit)
        if self.fd is None and total >= self.threshold:
            self._spill()

    def _spill(self) -> None:
        fd = os.memfd_create(_NAME, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        self.fd = fd
        os.fchmod(fd, 0o600)  # unreachable by name anyway; this says so to anyone who looks
        self._room(self.stream)
        _pwrite_all(self.owner, fd, [memoryview(c) for c in self.chunks], 0)
        self.chunks = []

    def _room(self, n: int) -> None:
        """Check available memory once per ``_ROOM_STEP`` bytes written (a write to full shmem
        fails or calls the OOM killer; to a mapping it would SIGBUS)."""
        self.unchecked += n
        if self.unchecked < _ROOM_STEP:
            return
        available = _available_memory()
        if available is not None and self.unchecked + _HEADROOM > available:
            raise _no_room(self.owner, self.stream + self.buffer_bytes, available, None)
        self.unchecked = 0

    def finish(self) -> tuple[Ref, int | None]:
        """Lay the buffers out after the stream; write them (segment) or join them (inline)."""
        pieces: list[Any] = []
        table = []
        end = self.stream
        for raw in self.buffers:
            pad = -end % _ALIGN
            if pad:
                pieces.append(_PAD[:pad])
            end += pad
            table.append((end, raw.nbytes))
            pieces.append(raw)
            end += raw.nbytes
        if self.fd is None:
            blob = b"".join([*self.chunks, *pieces])
            return Ref(len(blob), self.stream, tuple(table), blob), None
        self._room(self.buffer_bytes)
        _pwrite_all(self.owner, self.fd, [memoryview(p) for p in pieces], self.stream)
        fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, _SEALS)
        fd, self.fd = self.fd, None
        self.buffers = []
        return Ref(end, self.stream, tuple(table), None), fd

    def abort(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.chunks = []
        self.buffers = []


def _pwrite_all(owner: str, fd: int, views: list[memoryview], offset: int) -> None:
    """Write ``views`` back to back at ``offset``; a write that fails is a :class:`NoRoomError`."""
    views = [v for v in views if v.nbytes]
    first = 0
    while first < len(views):
        batch = views[first : first + _IOV_MAX]
        try:
            n = os.pwritev(fd, batch, offset)
        except OSError as exc:
            raise _no_room(owner, offset + sum(v.nbytes for v in views[first:]), None, exc) from exc
        offset += n
        while first < len(views) and n >= views[first].nbytes:
            n -= views[first].nbytes
            first += 1
        if n:
            views[first] = views[first][n:]


def _available_memory() -> int | None:
    """Bytes of memory a new shmem page can still take: MemAvailable, or the cgroup's room."""
    found: list[int] = []
    with contextlib.suppress(OSError, ValueError, StopIteration):
        with open("/proc/meminfo", "rb") as f:
            line = next(ln for ln in f if ln.startswith(b"MemAvailable:"))
        found.append(int(line.split()[1]) * 1024)
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/self/cgroup", "rb") as f:
            path = f.read().split(b"::", 1)[1].strip().decode()
        base = f"/sys/fs/cgroup{path}"
        with open(f"{base}/memory.max", "rb") as f:
            limit = f.read().strip()
        if limit != b"max":
            with open(f"{base}/memory.current", "rb") as f:
                found.append(int(limit) - int(f.read()))
    return min(found) if found else None


def _loads(ref: Ref, blob: memoryview, refs: tuple[Handle, ...] = ()) -> Any:
    blob = blob.toreadonly()
    stream = blob[: ref.stream]
    buffers = [blob[o : o + n] for o, n in ref.buffers]
    try:
        if not refs:
            return pickle.loads(stream, buffers=buffers)
        unpickler = pickle.Unpickler(io.BytesIO(stream), buffers=buffers)
        unpickler.persistent_load = refs.__getitem__  # type: ignore[method-assign]
        return unpickler.load()
    finally:
        stream.release()


_FRAME = pickle.FRAME[0]


@functools.cache
def _opcodes() -> dict[int, tuple[int, int, str]]:
    """Each opcode's argument: its fixed size, or the size and format of its length prefix.

    From pickletools' table (imported here, on first use: workers never need it). Opcodes
    whose argument ends at a newline (protocols 0 and 1 only) are left out.
    """
    import pickletools

    sized = {
        pickletools.TAKEN_FROM_ARGUMENT1: (1, "<B"),
        pickletools.TAKEN_FROM_ARGUMENT4: (4, "<i"),
        pickletools.TAKEN_FROM_ARGUMENT4U: (4, "<I"),
        pickletools.TAKEN_FROM_ARGUMENT8U: (8, "<Q"),
    }
    found = {}
    for op in pickletools.opcodes:
        n = 0 if op.arg is None else op.arg.n
        if n >= 0:
            found[ord(op.code)] = (n, 0, "")
        elif n in sized:
            found[ord(op.code)] = (0, *sized[n])
    return found


def _unframed(pieces: Sequence[Any]) -> list[memoryview]:
    """The pickle stream in ``pieces`` without its FRAME opcodes: views of what they frame.

    A protocol 4+ stream is frames (``FRAME``, a length, then whole opcodes) and, between
    them, the opcodes the pickler left out of any: a large bytes or str value, written apart,
    and frames too short to be worth a header (under 4 bytes). The same opcodes with no frame
    around them make the same value. Only the opcodes between frames are parsed here, a few.
    """
    views = [memoryview(p).cast("B") for p in pieces]
    stream = _Joined(views)
    kept: list[tuple[int, int]] = []
    at, end = 0, stream.size
    while at < end:
        code = stream.at(at, 1)[0]
        if code == _FRAME:
            (size,) = struct.unpack("<Q", stream.at(at + 1, 8))
            start = at + 9
        else:
            found = _opcodes().get(code)
            if found is None:
                msg = f"opcode {bytes([code])!r} at {at} cannot be taken out of a frame"
                raise pickle.UnpicklingError(msg)
            fixed, head, fmt = found
            size = 1 + fixed
            if head:
                (length,) = struct.unpack(fmt, stream.at(at + 1, head))
                size += head + length
            start = at
        if kept and kept[-1][1] == start:
            kept[-1] = (kept[-1][0], start + size)
        else:
            kept.append((start, start + size))
        at = start + size
    return [view for start, stop in kept for view in stream.views(start, stop)]


class _Joined:
    """Pieces of a stream addressed as one: small reads, and views of any range, not copied."""

    def __init__(self, views: list[memoryview]) -> None:
        self._views = views
        self._starts = list(itertools.accumulate((v.nbytes for v in views), initial=0))
        self.size = self._starts[-1]

    def at(self, offset: int, n: int) -> bytes:
        return b"".join(bytes(v) for v in self.views(offset, offset + n))

    def views(self, start: int, stop: int) -> Iterator[memoryview]:
        if stop > self.size:
            msg = "the pickle stream ends in the middle of an opcode"
            raise pickle.UnpicklingError(msg)
        i = bisect.bisect_right(self._starts, start) - 1
        while start < stop:
            base = self._starts[i]
            view = self._views[i]
            upto = min(stop, base + view.nbytes)
            yield view[start - base : upto - base]
            start = upto
            i += 1


class _Pieces(io.RawIOBase):
    """The pieces of a pickle stream read as one file, each copied once, into the reader."""

    def __init__(self, pieces: Sequence[Any]) -> None:
        super().__init__()
        self._pieces = [memoryview(p).cast("B") for p in pieces]
        self._index = 0
        self._at = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        out = memoryview(buffer).cast("B")
        done = 0
        while done < out.nbytes and self._index < len(self._pieces):
            piece = self._pieces[self._index]
            n = min(out.nbytes - done, piece.nbytes - self._at)
            out[done : done + n] = piece[self._at : self._at + n]
            done += n
            self._at += n
            if self._at == piece.nbytes:
                self._index, self._at = self._index + 1, 0
        return done


# -- errors --------------------------------------------------------------------------------------
def _type_name(cls: type) -> str:
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def _what_to_do(owner: str) -> str:
    if owner.startswith("plugin "):
        return 'return plain data, or set where = "main" to run the plugin in the main process'
    return "send plain data instead"


def _unpicklable(owner: str, obj: object, why: str) -> UnpicklableError:
    name = _type_name(type(obj))
    msg = (
        f"{owner}: pickle cannot send a {name!r} object to another process ({why}); "
        f"{_what_to_do(owner)}"
    )
    return UnpicklableError(msg, owner=owner, type_name=name)


def _mib(n: int) -> str:
    return f"{n:,} bytes ({n / 2**20:.1f} MiB)"


def _too_large(owner: str, size: int, limit: int) -> TooLargeError:
    msg = (
        f"{owner}: the value needs at least {_mib(size)}, over max_result_bytes = {_mib(limit)}; "
        f"make it smaller or raise max_result_bytes"
    )
    return TooLargeError(msg, owner=owner, size=size, limit=limit)


def _no_room(owner: str, size: int, available: int | None, exc: OSError | None) -> NoRoomError:
    why = f"{_mib(available)} available" if available is not None else f"{exc}"
    msg = (
        f"{owner}: no room in shared memory for a value of at least {_mib(size)}: {why}; "
        f"free memory or make the value smaller"
    )
    return NoRoomError(msg, owner=owner, size=size, available=available)


# -- frames --------------------------------------------------------------------------------------
@contextlib.contextmanager
def _as_socket(sock: Sock) -> Iterator[socket.socket]:
    if isinstance(sock, socket.socket):
        yield sock
        return
    wrapped = socket.socket(fileno=sock.fileno())
    try:
        yield wrapped
    finally:
        wrapped.detach()  # the descriptor stays its owner's


def _send_frame(sock: Sock, ref: Ref, fd: int | None) -> None:
    kind = _INLINE if fd is None else _SEGMENT
    head = _PREFIX.pack(_MAGIC, kind, len(ref.buffers), ref.size, ref.stream, time.monotonic())
    parts: list[bytes] = [head, b"".join(_ENTRY.pack(o, n) for o, n in ref.buffers)]
    if fd is None:
        assert ref.inline is not None
        parts.append(ref.inline)
    fds = [] if fd is None else [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
    with _as_socket(sock) as s:
        sent = s.sendmsg(parts, fds)
        total = sum(len(p) for p in parts)
        if sent < total:  # interrupted part way: the descriptor went with the first bytes
            s.sendall(b"".join(parts)[sent:])


def _recv_frame(sock: Sock) -> tuple[Ref, int | None, float]:
    with _as_socket(sock) as s:
        head, fds = _recv_head(s)
        try:
            magic, kind, count, size, stream, sent_at = _PREFIX.unpack(head)
            if magic != _MAGIC or kind not in (_INLINE, _SEGMENT):
                msg = f"not a store frame: {head!r}"
                raise ValueError(msg)
            if len(fds) != (1 if kind == _SEGMENT else 0):
                msg = f"a store frame of kind {kind} came with {len(fds)} descriptors"
                raise ValueError(msg)
            table = _recv_exact(s, count * _ENTRY.size)
            inline = _recv_bytes(s, size) if kind == _INLINE else None
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
    buffers = tuple(_ENTRY.unpack_from(table, i * _ENTRY.size) for i in range(count))
    return Ref(size, stream, buffers, inline), (fds[0] if fds else None), sent_at


def _recv_head(s: socket.socket) -> tuple[bytes, list[int]]:
    """The prefix, and the descriptor that rides on it (received close-on-exec)."""
    data, ancillary, flags, _ = s.recvmsg(
        _PREFIX.size, socket.CMSG_SPACE(array.array("i").itemsize), socket.MSG_CMSG_CLOEXEC
    )
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            got = array.array("i")
            got.frombytes(payload[: len(payload) - len(payload) % got.itemsize])
            fds.extend(got)
    try:
        if flags & socket.MSG_CTRUNC:
            msg = "a store frame came with more descriptors than one"
            raise ValueError(msg)
        if not data:
            msg = "the peer closed the socket"
            raise EOFError(msg)
        if len(data) < _PREFIX.size:
            data += _recv_exact(s, _PREFIX.size - len(data))
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return data, fds


def _recv_exact(s: socket.socket, n: int) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = s.recv_into(view[got:])
        if not k:
            msg = f"the peer closed the socket {got:,} bytes into a {n:,}-byte frame part"
            raise EOFError(msg)
        got += k
    return buf


def _recv_bytes(s: socket.socket, n: int) -> bytes:
    data = s.recv(n, socket.MSG_WAITALL)  # one call, no copy, unless a signal cuts it short
    if len(data) < n:
        data += _recv_exact(s, n - len(data))
    return data


# -- descriptors a forked child inherits -----------------------------------------------------------
def _drop_inherited() -> None:
    """In a forked child: let go of the parent's segments (fork copies every descriptor).

    Close-on-exec does not apply to a fork without exec (a worker under the ``fork`` start
    method, a manager): without this, the child would pin every segment the parent held when it
    forked, until the child exits. Each descriptor is replaced by ``/dev/null`` rather than
    closed: the parent's objects copied into the child (handles, mappings) still own the numbers
    and close them when collected, which must not close a descriptor the child opened since.
    The parent's mappings stay in the child (its copies of loaded values stay valid).
    """
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return
    null = -1
    try:
        for name in names:
            with contextlib.suppress(OSError, ValueError):
                fd = int(name)
                if os.readlink(f"/proc/self/fd/{fd}").startswith(f"/memfd:{_NAME} "):
                    if null < 0:
                        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
                    os.dup2(null, fd, inheritable=False)
    finally:
        if null >= 0:
            os.close(null)


os.register_at_fork(after_in_child=_drop_inherited)


def _close_fd(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)
