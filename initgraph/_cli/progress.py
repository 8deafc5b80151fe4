"""The live progress display of ``initgraph run``: ``rich.live`` on a terminal, else nothing."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.live import Live

    from .._boot.run import Plan


# -- live progress ---------------------------------------------------------------------------------
class Progress:
    """What a running boot is doing, drawn with ``rich.live`` on a terminal; else nothing.

    The boot calls :meth:`update` with its state; it starts no thread of its own (a thread in
    the parent would make the default start method ``forkserver`` instead of ``fork``), so call
    it on every change and a few times a second while the boot runs. Nothing is drawn for a boot
    shorter than ``delay`` seconds.
    """

    def __init__(
        self,
        plan: Plan | None,
        live: Live | None,
        *,
        delay: float = 0.5,
        long_wait: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = len(plan.plugins) if plan is not None else None
        self.live = live
        self.delay = delay
        self.long_wait = long_wait
        self.clock = clock
        self.began = clock()
        self.running: dict[str, float] = {}
        self.waiting: dict[str, str] = {}
        self.waiting_since: dict[str, float] = {}
        self.seen: set[str] = set()
        self.attempts: dict[str, int] = {}  # plugin -> the attempt it is on, once retried
        self.shown = False
        self.last_draw = 0.0

    def update(self, running: Mapping[str, float], waiting: Mapping[str, str]) -> None:
        """The boot's state now.

        ``running``: each running init and when it started (``time.monotonic()``);
        ``waiting``: each plugin that waits and the plugin it waits on.
        """
        now = self.clock()
        self.running = dict(running)
        for name in list(self.waiting_since):
            if name not in waiting:
                del self.waiting_since[name]
        for name in waiting:
            self.waiting_since.setdefault(name, now)
        self.waiting = dict(waiting)
        self.seen.update(running, waiting)
        if self.live is None or now - self.began < self.delay or now - self.last_draw < 0.1:
            return
        self.last_draw = now
        if not self.shown:
            self.shown = True
            self.live.start()
        self.live.update(self.render(), refresh=True)

    def lines(self) -> list[str]:
        """What the display shows, as plain lines."""
        now = self.clock()
        done = len(self.seen - set(self.running) - set(self.waiting))
        of = f"/{self.total}" if self.total is not None else ""
        lines = [f"booting: {done}{of} finished, {len(self.running)} running"]
        for name, started in sorted(self.running.items(), key=lambda item: item[1]):
            attempt = self.attempts.get(name)
            again = f", attempt {attempt}" if attempt is not None else ""
            lines.append(f"  {name} running {now - started:.1f} s{again}")
        for name, since in sorted(self.waiting_since.items(), key=lambda item: item[1]):
            if now - since >= self.long_wait:
                lines.append(f"  {self.blocked_by(name, now)}")
        return lines

    def blocked_by(self, name: str, now: float) -> str:
        """``search_index waits on corpus, running 3.2 s``, following a chain of waits."""
        text = name
        seen = {name}
        at = name
        while at in self.waiting:
            at = self.waiting[at]
            text += f" waits on {at}" if text == name else f", which waits on {at}"
            if at in seen:
                return text + " (a cycle)"
            seen.add(at)
        started = self.running.get(at)
        return text + (f", running {now - started:.1f} s" if started is not None else "")

    def render(self) -> RenderableType:
        from rich.text import Text

        return Text("\n".join(self.lines()))

    def close(self) -> None:
        if self.live is not None and self.shown:
            self.live.stop()


@contextlib.contextmanager
def progress(
    plan: Plan | None = None, *, quiet: bool = False, stream: IO[str] | None = None
) -> Iterator[Progress]:
    """A :class:`Progress` for the block: live on a terminal, a no-op when ``quiet`` or not.

    ``stream``: where to draw (default: stderr, so that stdout keeps only the report).
    """
    out = sys.stderr if stream is None else stream
    live = None
    if not quiet and _is_terminal(out):
        from rich.console import Console
        from rich.live import Live

        live = Live(
            console=Console(file=out),
            auto_refresh=False,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
    shown = Progress(plan, live)
    retries = _Retries(shown.attempts)
    retry_log = logging.getLogger("initgraph.retry")
    retry_log.addHandler(retries)
    try:
        yield shown
    finally:
        retry_log.removeHandler(retries)
        shown.close()


class _Retries(logging.Handler):
    """Keeps the attempt each retried plugin is on, from the records of ``initgraph.retry``.

    A retry is logged where it is decided (a worker, forwarded to the parent, or the pool), with
    the plugin and the coming attempt's number as ``initgraph_plugin`` and ``initgraph_attempt``.
    """

    def __init__(self, attempts: dict[str, int]) -> None:
        super().__init__()
        self.attempts = attempts

    def emit(self, record: logging.LogRecord) -> None:
        plugin = getattr(record, "initgraph_plugin", None)
        attempt = getattr(record, "initgraph_attempt", None)
        if isinstance(plugin, str) and isinstance(attempt, int):
            self.attempts[plugin] = attempt


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False
