"""The commands that read a boot's trace.

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
import os
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .._errors import ConfigError
from . import EXIT_OK, EXIT_USAGE, PROG
from .render import count, ms_text, print_skipped, print_table

if TYPE_CHECKING:
    from .._observe.trace import TraceData

__all__ = ["add_commands"]


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
            "into: requires (waiting for what it requires), queued (for a free worker), "
            "running, waiting (in synchronize), in-order (for its turn to commit), parent-busy "
            "(its turn come, the parent busy with other commits and results), transfer (moving "
            "its data between processes, '-' when the trace records none) and commit. Times in "
            "milliseconds."
        ),
    )
    blame.add_argument("trace", metavar="TRACE", help=trace_help)
    blame.add_argument(
        "--sort",
        choices=(
            "total",
            "requires",
            "queued",
            "running",
            "waiting",
            "in-order",
            "parent-busy",
            "transfer",
            "commit",
            "shutdown",
        ),
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
    from .._observe.trace import load_trace  # not at the top: --help stays fast

    return load_trace(path)


def _table(out: IO[str], headers: list[str], rows: list[list[str]], numeric: set[int]) -> None:
    print_table(out, headers, rows, numeric=numeric)


# -- handlers ------------------------------------------------------------------------------------
def blame_command(args: argparse.Namespace) -> int:
    """``initgraph blame TRACE``."""
    from .._observe.analysis import BLAME_COLUMNS, blame

    try:
        trace = _read(args.trace)
    except ConfigError as exc:
        return _error(str(exc))
    rows = blame(trace)
    sort = args.sort.replace("-", "_")
    rows.sort(key=lambda r: (-(getattr(r, sort) or 0.0), r.cookie))
    headers = ["cookie", "plugin", "status", *(c.replace("_", "-") for c in BLAME_COLUMNS)]
    # No transfer spans: the column is unknown, not zero (the time is under parent-busy).
    unknown = set() if trace.transfers_recorded else {"transfer"}
    cells = [
        [
            str(r.cookie),
            r.name,
            r.status,
            *("-" if c in unknown else ms_text(getattr(r, c)) for c in BLAME_COLUMNS),
        ]
        for r in rows
    ]
    out = sys.stdout
    _table(out, headers, cells, numeric={0, *range(3, 3 + len(BLAME_COLUMNS))})
    pool = ""
    if trace.pool_started is not None and trace.pool_stopping is not None:
        stop = max(0.0, trace.wall - trace.pool_stopping)
        pool = f": {ms_text(trace.pool_started)} starting the pool, {ms_text(stop)} stopping it"
    print(
        f"times in ms; total = requires + queued + running + waiting + in-order + parent-busy + "
        f"transfer + commit (shutdown comes after the boot); boot {ms_text(trace.wall)} ms{pool}",
        file=out,
    )
    out.flush()
    return EXIT_OK


def critical_chain_command(args: argparse.Namespace) -> int:
    """``initgraph critical-chain TRACE``."""
    from .._observe.analysis import critical_chain, format_critical_chain

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
    from .._observe.plot import plot_svg

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
    from .._boot import run as _boot
    from .._observe.analysis import format_critical_chain, plan_from

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
        f"predicted boot: {ms_text(prediction.wall)} ms with {count(prediction.workers, 'worker')}"
        f"{f' and {faster}' if faster else ''} ({change:+.0f}% against the trace: "
        f"{ms_text(trace.wall)} ms with {count(trace.workers, 'worker')})",
        file=out,
    )
    o = prediction.overheads
    print(
        f"measured overheads: {ms_text(o['start'])} ms to start, {ms_text(o['stop'])} ms to stop, "
        f"{ms_text(o['worker_start'])} ms for a new worker to take its first init, "
        f"{ms_text(o['dispatch'])} ms to start a ready init, {ms_text(o['commit'])} ms to commit a "
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
    if the_plan.skipped:
        print(file=out)
        print("not planned:", file=out)
        print_skipped(out, the_plan)
    out.flush()
    return EXIT_OK
