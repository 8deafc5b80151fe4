"""What the commands print: tables (``rich`` on a terminal, plain text otherwise) and JSON."""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any

from . import PROG

if TYPE_CHECKING:
    from .._boot.inprocess import InProcessRun
    from .._boot.run import Boot, Interruption, Plan


_STATUS_STYLES = {
    "ok": "green",
    "failed": "bold red",
    "timeout": "bold red",
    "crashed": "bold red",
    "skipped": "yellow",
    "cancelled": "yellow",
}


_LISTED = 8  # names shown per group of the interruption summary; then "and N more"


def interruption_text(stopped: Interruption) -> str:
    """``boot stopped after 0.84 s: 1 of 3 plugins committed (a); cancelled while running: ...``.

    Groups are separated by ``; ``, names by ``, ``; a group with no plugin is left out, except
    the committed count.
    """
    total = len(stopped.boot.plan.plugins)
    committed = f"{len(stopped.committed)} of {count(total, 'plugin')} committed"
    if stopped.committed:
        committed += f" ({_names(stopped.committed)})"
    parts = [committed]
    status = stopped.boot.status
    for label, names in [
        ("finished but not committed", stopped.uncommitted),
        ("cancelled while running", stopped.running),
        ("did not commit", tuple(f"{name} {status(name)}" for name in stopped.failed)),
        ("not started", stopped.not_started),
    ]:
        if names:
            parts.append(f"{label}: {len(names)} ({_names(names)})")
    return f"boot stopped after {stopped.after:.2f} s: {'; '.join(parts)}"


def shutdown_lines(boot: Boot) -> list[str]:
    """``shut down 2 plugins in 1.204 ms, last committed first: cache 0.201, database 1.003``.

    Then a line for each hook that failed, ran past its time or was not run. Nothing when no
    shutdown hook ran.
    """
    ran = [
        (name, timing)
        for name, timing in boot.timings.items()
        if timing.shutdown_started is not None and timing.shutdown_ended is not None
    ]
    if not ran:
        return []
    ran.sort(key=lambda item: (item[1].shutdown_started, item[1].shutdown_ended))
    each = ", ".join(f"{name} {ms_text(timing.shutdown_time)}" for name, timing in ran)
    head = (
        f"shut down {count(len(ran), 'plugin')} in {ms_text(boot.shutdown_wall)} ms, "
        f"last committed first: {each}"
    )
    return [head] + [f"  {name}: {f.message}" for name, f in boot.shutdown_failures.items()]


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_LISTED])
    return shown if len(names) <= _LISTED else f"{shown} and {len(names) - _LISTED} more"


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (messages may wrap a long path or list)."""
    return squash(str(exc)) or type(exc).__name__


def print_summary(out: IO[str], boot: Boot, sequential: InProcessRun | None) -> None:
    rows = []
    for p in boot.plan.plugins:
        timing = boot.timings.get(p.name)
        init = None if timing is None else timing.init_time
        commit = None if timing is None else timing.commit_time
        rows.append(
            [
                str(p.cookie),
                p.name,
                p.domain,
                p.where,
                boot.status(p.name),
                ms_text(init),
                ms_text(commit),
            ]
        )
    headers = ["cookie", "plugin", "domain", "where", "status", "init ms", "commit ms"]
    notes = [attempts_note(boot, p.name) for p in boot.plan.plugins]
    if any(notes):  # a column only when some plugin was retried
        headers.append("note")
        for row, note in zip(rows, notes, strict=True):
            row.append(note)
    print_table(out, headers, rows, numeric={0, 5, 6}, status_column=4)

    plugins = count(len(boot.plan.plugins), "plugin")
    workers = count(boot.plan.workers, "worker")
    how = f"in {ms_text(boot.wall)} ms with {workers} ({boot.plan.start_method})"
    if boot.ok:
        print(f"booted {plugins} {how}", file=out)
    else:
        print(f"boot failed: {plugins} {how}", file=out)
    for p in boot.plan.plugins:
        failure = boot.failures.get(p.name)
        if failure is not None:
            optional = " (optional)" if p.optional else ""
            print(f"  {p.name}{optional}: {failure_text(boot, p.name)}", file=out)
    print_skipped(out, boot.plan)
    if boot.ok and boot.plan.workers != 1:
        print(chain_text(boot), file=out)
    if boot.ok and (boot.plan.workers != 1 or sequential is not None):
        print(speed_text(boot, sequential), file=out)
    for line in shutdown_lines(boot):
        print(line, file=out)
    out.flush()


def attempts_note(boot: Boot, name: str) -> str:
    """``3 attempts`` for a plugin whose init was retried, else empty."""
    timing = boot.timings.get(name)
    attempts = () if timing is None else timing.attempts
    return f"{len(attempts)} attempts" if len(attempts) > 1 else ""


def print_skipped(out: IO[str], plan: Plan) -> None:
    """One line per plugin a condition left out of ``plan``: ``  name: skipped: why``."""
    for name, why in plan.skipped.items():
        print(f"  {name}: skipped: {why}", file=out)


def chain_text(boot: Boot) -> str:
    """The critical chain's length, its steps, and what lies between them.

    The chain spans the boot from its start to its end, across domains, so its length is the
    wall time; what it names are the inits and commits that set it. Between them: moving data
    between processes, starting and stopping the pool, and what no recorded span explains.
    """
    from .._observe.analysis import (
        chain_between,
        chain_length,
        chain_steps,
        chain_time,
        critical_chain,
    )
    from .._observe.trace import trace_of

    chain = critical_chain(trace_of(boot))
    steps = " -> ".join(chain_steps(chain)) or "-"
    moving, pool = ms_text(chain_time(chain, "transfer")), ms_text(chain_time(chain, "boot"))
    between = ms_text(chain_between(chain))
    return (
        f"critical chain {ms_text(chain_length(chain))} ms: {steps} ({moving} ms moving data, "
        f"{pool} ms starting and stopping the pool, {between} ms between steps)"
    )


def failure_text(boot: Boot, name: str) -> str:
    """``<status>: <why>`` on one line, without repeating a status the message starts with."""
    status = boot.status(name)
    message = squash(boot.failures[name].message)
    return message if message.startswith(f"{status}:") else f"{status}: {message}"


BASELINE = "running the plugins one after another in this process"
"""What ``--compare`` measures the boot against (see ``initgraph._boot.inprocess``)."""


def speed_text(boot: Boot, sequential: InProcessRun | None) -> str:
    """The measured speed-up over running the plugins in this process, or, unmeasured, the
    parallelism achieved (which is not a speed-up: the pool has costs of its own)."""
    if sequential is None:
        busy = init_total(boot)
        ratio = busy / boot.wall if boot.wall > 0 else 0.0
        return (
            f"parallelism {ratio:.2f}x: {ms_text(busy)} ms of init work ran in "
            f"{ms_text(boot.wall)} ms (--compare measures the speed-up)"
        )
    if not sequential.ok:
        return (
            f"no speed-up measured: {BASELINE}, plugin {sequential.failed!r} failed: "
            f"{squash(sequential.error or '')}"
        )
    return speed_up_text(boot.wall, sequential.wall)


def speed_up_text(wall: float, baseline: float) -> str:
    """``1.80x faster than ...`` or ``0.80x: 1.25x slower than ...``, with both times."""
    times = f"({ms_text(wall)} ms vs {ms_text(baseline)} ms)"
    ratio = baseline / wall if wall > 0 else float("inf")
    if ratio >= 1:
        return f"{ratio:.2f}x faster than {BASELINE} {times}"
    return f"{ratio:.2f}x: {1 / ratio:.2f}x slower than {BASELINE} {times}"


def print_failure_tracebacks(boot: Boot) -> None:
    for name, failure in boot.failures.items():
        if failure.error is None:
            continue
        print(f"{PROG}: {name}: {failure.kind}:", file=sys.stderr)
        error = failure.error
        traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)


def plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "workers": plan.workers,
        "start_method": plan.start_method,
        "on_error": plan.on_error,
        "plugins": [
            {
                "cookie": p.cookie,
                "name": p.name,
                "domain": p.domain,
                "requires": list(p.requires),
                "where": p.where,
                "optional": p.optional,
                "timeout": p.timeout,
                "source": p.source,
            }
            for p in plan.plugins
        ],
        "skipped": [
            {"name": name, "status": "skipped", "reason": why} for name, why in plan.skipped.items()
        ],
    }


def boot_json(
    boot: Boot, sequential: InProcessRun | None, interrupted: tuple[str, Interruption] | None = None
) -> dict[str, Any]:
    plan = plan_json(boot.plan)
    for entry in plan["plugins"]:
        name = entry["name"]
        timing = boot.timings.get(name)
        failure = boot.failures.get(name)
        entry["status"] = boot.status(name)
        entry["init_ms"] = ms(None if timing is None else timing.init_time)
        entry["commit_ms"] = ms(None if timing is None else timing.commit_time)
        entry["waited_ms"] = ms(None if timing is None else timing.waited)
        entry["pid"] = None if timing is None else timing.pid
        entry["error"] = None if failure is None else failure.message
        entry["shutdown_ms"] = ms(None if timing is None else timing.shutdown_time)
        entry["attempts"] = [
            {
                "number": a.number,
                "started_ms": ms(a.started),
                "ended_ms": ms(a.ended),
                "reason": a.reason,
                "delay_ms": ms(a.delay),
            }
            for a in (() if timing is None else timing.attempts)
        ]
        shut = boot.shutdown_failures.get(name)
        entry["shutdown_error"] = None if shut is None else shut.message
    busy = init_total(boot)
    report: dict[str, Any] = {
        "config": boot.plan.path,
        "ok": boot.ok,
        "wall_ms": ms(boot.wall),
        "init_ms_total": ms(busy),
        "parallelism": round(busy / boot.wall, 3) if boot.wall > 0 else None,
        **plan,
        "registry": [
            {"key": pub.key, "plugin": pub.plugin, "domain": pub.domain, "cookie": pub.cookie}
            for pub in boot.registry.log
        ],
        "shutdown_ms": ms(boot.shutdown_wall),
    }
    if interrupted is not None:
        signame, stopped = interrupted
        report["interrupted"] = {
            "signal": signame,
            "after_ms": ms(stopped.after),
            "committed": list(stopped.committed),
            "finished_not_committed": list(stopped.uncommitted),
            "running": list(stopped.running),
            "did_not_commit": list(stopped.failed),
            "not_started": list(stopped.not_started),
        }
    if sequential is not None:
        report["compare"] = {
            "ok": sequential.ok,
            "in_process_wall_ms": ms(sequential.wall),
            "speedup": round(sequential.wall / boot.wall, 3) if boot.wall > 0 else None,
        }
    return report


def print_json(out: IO[str], data: Mapping[str, Any]) -> None:
    json.dump(data, out, indent=2, default=str)
    out.write("\n")
    out.flush()


def print_table(
    out: IO[str],
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    numeric: set[int],
    status_column: int | None = None,
) -> None:
    """Print rows under headers: with rich on a terminal, as aligned plain text otherwise."""
    if out.isatty():
        print_rich_table(out, headers, rows, numeric=numeric, status_column=status_column)
        return
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    for row in [headers, *rows]:
        cells = [
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip(), file=out)


def print_rich_table(
    out: IO[str],
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    numeric: set[int],
    status_column: int | None,
) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, header_style="bold")
    for i, header in enumerate(headers):
        table.add_column(header, justify="right" if i in numeric else "left", no_wrap=True)
    for row in rows:
        cells = [Text(cell) for cell in row]
        if status_column is not None:
            cells[status_column].stylize(_STATUS_STYLES.get(row[status_column], ""))
        table.add_row(*cells)
    Console(file=out, highlight=False).print(table)


def init_total(boot: Boot) -> float:
    times = (timing.init_time for timing in boot.timings.values())
    return sum(t for t in times if t is not None)


def settings_text(plan: Plan) -> str:
    return (
        f"{count(plan.workers, 'worker')}, start method {plan.start_method}, "
        f"on_error {plan.on_error}"
    )


def count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def ms_text(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def squash(text: str) -> str:
    return " ".join(text.split())
