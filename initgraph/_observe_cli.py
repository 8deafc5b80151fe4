"""The commands that read a boot's trace, and the live progress display of ``initgraph run``.

::

    initgraph blame TRACE [--sort COLUMN]       where each plugin's time went
    initgraph critical-chain TRACE              the steps that set the boot's total time
    initgraph plot TRACE [-o boot.svg]          a bootgraph-style SVG
    initgraph plan CONFIG --from TRACE [--workers N] [--faster NAME=FACTOR ...]
                                                how long the boot would take

A trace is what ``initgraph run --trace FILE`` writes (``_trace.write_trace``). Each command's
handler returns its exit code: 0, or 2 with one line on stderr for a missing or bad trace file or a
bad argument. ``rich`` is imported only to draw the progress display on a terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ._errors import ConfigError

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.live import Live

    from ._boot import Plan
    from ._trace import TraceData

__all__ = ["Progress", "add_commands", "progress"]

PROG = "initgraph"
EXIT_OK = 0
EXIT_USAGE = 2


def add_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``blame``, ``critical-chain``, ``plot`` and ``plan`` to ``subparsers``.

    Each parser sets ``command`` to its handler, ``handler(args) -> exit code``.
    """
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument(
        "-v", "--verbose", action="store_true", help="print tracebacks with errors"
    )
    trace_help = "a trace written by 'initgraph run --trace FILE'"

    blame = subparsers.add_parser(
        "blame",
        parents=[verbose],
        help="show where each plugin's time went, from a trace",
        description=(
            "One line per plugin, its time from being scheduled to the end of its commit split "
            "into: requires (waiting for what it requires to commit), queued (for a free "
            "worker), running, waiting (in synchronize), in-order (for its turn to commit) and "
            "commit. Times in milliseconds."
        ),
    )
    blame.add_argument("trace", metavar="TRACE", help=trace_help)
    blame.add_argument(
        "--sort",
        choices=("total", "requires", "queued", "running", "waiting", "in-order", "commit"),
        default="total",
        help="the column to sort by, longest first (default: total)",
    )
    blame.set_defaults(command=blame_command)

    chain = subparsers.add_parser(
        "critical-chain",
        parents=[verbose],
        help="show the initcalls and waits that set the boot's total time",
        description=(
            "The chain of steps that set the boot's total time, last first, like "
            "'systemd-analyze critical-chain': '@' is when a step started, '+' how long it took."
        ),
    )
    chain.add_argument("trace", metavar="TRACE", help=trace_help)
    chain.set_defaults(command=critical_chain_command)

    plot = subparsers.add_parser(
        "plot",
        parents=[verbose],
        help="draw the boot as an SVG, one row per process",
        description=(
            "Draw the boot like the kernel's bootgraph.pl: a row per process, a bar per init, "
            "waits in grey, commits under the parent's row, the critical chain outlined in red."
        ),
    )
    plot.add_argument("trace", metavar="TRACE", help=trace_help)
    plot.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="where to write the SVG (default: TRACE with the suffix .svg)",
    )
    plot.set_defaults(command=plot_command)

    plan = subparsers.add_parser(
        "plan",
        parents=[verbose],
        help="predict the boot's time with other workers or faster plugins, from a trace",
        description=(
            "Simulate booting CONFIG with the durations measured in TRACE: how long it would "
            "take with --workers N, or with some plugins made faster. Starts no process."
        ),
    )
    plan.add_argument("config", metavar="CONFIG", help="the init.toml to plan")
    plan.add_argument("--from", dest="trace", metavar="TRACE", required=True, help=trace_help)
    plan.add_argument(
        "--workers",
        type=_positive_int,
        metavar="N",
        help="worker processes to plan for (default: the config's)",
    )
    plan.add_argument(
        "--faster",
        type=_speedup,
        action="append",
        default=[],
        metavar="NAME=FACTOR",
        help="plan as if plugin NAME's init ran FACTOR times faster (repeatable)",
    )
    plan.set_defaults(command=plan_command)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"expected a positive integer, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _speedup(text: str) -> tuple[str, float]:
    name, sep, factor = text.partition("=")
    try:
        value = float(factor)
    except ValueError:
        value = 0.0
    if not sep or not name or not value > 0 or value == float("inf"):
        msg = f"expected NAME=FACTOR with a positive FACTOR (2 = twice as fast), got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return name, value


def _error(message: str) -> int:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    return EXIT_USAGE


def _read(path: str) -> TraceData:
    from ._trace import load_trace  # not at the top: --help stays fast

    return load_trace(path)


def _table(out: IO[str], headers: list[str], rows: list[list[str]], numeric: set[int]) -> None:
    from ._cli import _print_table  # the same tables as 'run' and 'check'

    _print_table(out, headers, rows, numeric=numeric)


# -- handlers ------------------------------------------------------------------------------------
def blame_command(args: argparse.Namespace) -> int:
    """``initgraph blame TRACE``."""
    from ._analysis import BLAME_COLUMNS, blame

    try:
        trace = _read(args.trace)
    except ConfigError as exc:
        return _error(str(exc))
    rows = blame(trace)
    sort = args.sort.replace("-", "_")
    rows.sort(key=lambda r: (-getattr(r, sort), r.cookie))
    headers = ["cookie", "plugin", "status", *(c.replace("_", "-") for c in BLAME_COLUMNS)]
    cells = [
        [str(r.cookie), r.name, r.status, *(_ms(getattr(r, c)) for c in BLAME_COLUMNS)]
        for r in rows
    ]
    out = sys.stdout
    _table(out, headers, cells, numeric={0, *range(3, 3 + len(BLAME_COLUMNS))})
    print(
        f"times in ms; total = requires + queued + running + waiting + in-order + commit; "
        f"boot {_ms(trace.wall)} ms",
        file=out,
    )
    out.flush()
    return EXIT_OK


def critical_chain_command(args: argparse.Namespace) -> int:
    """``initgraph critical-chain TRACE``."""
    from ._analysis import critical_chain, format_critical_chain

    try:
        trace = _read(args.trace)
    except ConfigError as exc:
        return _error(str(exc))
    out = sys.stdout
    print('The time when a step started is after "@", how long it took is after "+".', file=out)
    print(file=out)
    for line in format_critical_chain(critical_chain(trace), wall=trace.wall):
        print(line, file=out)
    out.flush()
    return EXIT_OK


def plot_command(args: argparse.Namespace) -> int:
    """``initgraph plot TRACE -o FILE``."""
    from ._plot import plot_svg

    try:
        trace = _read(args.trace)
    except ConfigError as exc:
        return _error(str(exc))
    output = args.output or str(Path(args.trace).with_suffix(".svg"))
    try:
        Path(output).write_text(plot_svg(trace), encoding="utf-8")
    except OSError as exc:
        return _error(f"cannot write {output!r}: {exc.strerror or exc}")
    rows = len(trace.pids)
    ran = sum(1 for p in trace.plugins if p.ran)
    print(f"wrote {output}: {rows} rows (processes), {ran} initcalls", file=sys.stdout)
    return EXIT_OK


def plan_command(args: argparse.Namespace) -> int:
    """``initgraph plan CONFIG --from TRACE``."""
    from . import _boot
    from ._analysis import format_critical_chain, plan_from

    try:
        trace = _read(args.trace)
        the_plan = _boot.plan(args.config, workers=args.workers)
        prediction = plan_from(the_plan, trace, workers=args.workers, faster=dict(args.faster))
    except ConfigError as exc:
        return _error(str(exc))
    out = sys.stdout
    change = (prediction.wall - trace.wall) / trace.wall * 100 if trace.wall > 0 else 0.0
    faster = ", ".join(f"{n} {f:g}x faster" for n, f in args.faster)
    print(
        f"predicted boot: {_ms(prediction.wall)} ms with {_count(prediction.workers, 'worker')}"
        f"{f' and {faster}' if faster else ''} ({change:+.0f}% against the trace: "
        f"{_ms(trace.wall)} ms with {_count(trace.workers, 'worker')})",
        file=out,
    )
    o = prediction.overheads
    print(
        f"measured overheads: {_ms(o['start'])} ms to start, {_ms(o['stop'])} ms to stop, "
        f"{_ms(o['dispatch'])} ms to start a ready init, {_ms(o['commit'])} ms to commit a "
        f"finished one",
        file=out,
    )
    cpus = os.cpu_count() or 1
    if prediction.workers > cpus:
        print(
            f"note: more workers than the {cpus} CPUs here; the plan does not model CPUs, so "
            f"expect the boot to be slower than predicted",
            file=out,
        )
    print(file=out)
    print("predicted critical chain:", file=out)
    for line in format_critical_chain(prediction.chain):
        print(f"  {line}", file=out)
    out.flush()
    return EXIT_OK


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


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
            lines.append(f"  {name} running {now - started:.1f} s")
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
    try:
        yield shown
    finally:
        shown.close()


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False
