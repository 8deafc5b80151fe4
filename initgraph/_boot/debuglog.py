"""A boot as the kernel's async initcall debug lines (the ``initgraph.initcall_debug`` logger).

The lines of ``kernel/async.c`` under ``initcall_debug``, after a dmesg timestamp (seconds since
the boot started)::

    [    0.017496] calling  2_corpus+0x0/0x0 @ 8129
    [    0.020587] async_waiting @ 8129
    [    0.020712] async_continuing @ 8129 after 125 usec
    [    0.020801] initcall 2_corpus+0x0/0x0 returned after 3305 usecs

The kernel prints the function with ``%pS`` (``name+offset/size``); ``+0x0/0x0`` stands in for it
because ``scripts/bootgraph.pl`` finds names by the ``+`` that follows them. Names keep only the
characters that script accepts (letters, digits, ``_`` and ``.``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Protocol

__all__ = ["Ran", "debug_lines"]

_US = 1_000_000
_SYMBOL = re.compile(r"[^A-Za-z0-9_.]")


class _Span(Protocol):
    @property
    def started(self) -> float: ...
    @property
    def ended(self) -> float: ...


Ran = tuple[int, str, int, float, float, Iterable[_Span]]
"""One init that ran: cookie, name, pid, started, ended (seconds since the boot started), waits."""


def debug_lines(inits: Iterable[Ran]) -> list[str]:
    """The debug lines of ``inits``, sorted by time."""
    lines: list[tuple[float, int, int, str]] = []
    for cookie, name, pid, started, ended, waits in inits:
        symbol = f"{cookie}_{_SYMBOL.sub('_', name)}+0x0/0x0"
        lines.append((started, cookie, 0, f"calling  {symbol} @ {pid}"))
        for w in waits:
            lines.append((w.started, cookie, 1, f"async_waiting @ {pid}"))
            after = _us(w.ended - w.started)
            lines.append((w.ended, cookie, 2, f"async_continuing @ {pid} after {after} usec"))
        usecs = _us(ended - started)
        lines.append((ended, cookie, 3, f"initcall {symbol} returned after {usecs} usecs"))
    lines.sort(key=lambda line: line[:3])
    return [f"{_stamp(t)} {text}" for t, _, _, text in lines]


def _us(seconds: float) -> int:
    return round(seconds * _US)


def _stamp(seconds: float) -> str:
    """The dmesg timestamp: ``[%5lu.%06lu]``, as printk prints it."""
    us = _us(seconds)
    return f"[{us // _US:5d}.{us % _US:06d}]"
