"""The ``initgraph`` command line: ``run`` boots an init.toml and reports, ``check`` shows its plan.

Exit codes (``docs/cli.md``)::

    0    success
    1    a plugin failed (BootError, or another error a plugin caused)
    2    bad configuration or usage (ConfigError, PluginError, bad arguments, missing file)
    3    an internal error: a bug in initgraph
    130  interrupted (SIGINT, Ctrl-C)
    141  stdout was closed early (a pipe into ``head``)
    143  terminated (SIGTERM)

Whatever ends the command, it ends through the boot's own cleanup, so no process of the boot is left
running: SIGTERM is turned into an exception in the main thread, as SIGINT is (see ``_Raise``), and
a repeated signal is ignored while the command stops. An interrupted ``run`` says on stderr what the
boot had done (``_interruption_text``).

Output is a table for people (drawn with ``rich`` when stdout is a terminal, plain text otherwise)
or, with ``--json``, one JSON object for programs. Errors are one line on stderr,
``initgraph: error: <message>``; ``--verbose`` adds the traceback. ``rich`` and the boot are only
imported by the commands that need them, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import functools
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import FrameType
from typing import IO, TYPE_CHECKING, Any, NoReturn

from ._errors import BootError, ConfigError, InitgraphError, PluginError

if TYPE_CHECKING:
    from ._boot import Boot, Interruption, Plan

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_FAILED",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "main",
]

PROG = "initgraph"
DEFAULT_CONFIG = "init.toml"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
EXIT_TERMINATED = 143

_STATUS_STYLES = {
    "ok": "green",
    "failed": "bold red",
    "timeout": "bold red",
    "crashed": "bold red",
    "skipped": "yellow",
    "cancelled": "yellow",
}


class _UsageError(Exception):
    """A bad command line, reported like a ConfigError instead of argparse's usage block."""


class _Terminated(KeyboardInterrupt):
    """SIGTERM arrived.

    A KeyboardInterrupt, so that whatever stops at once for Ctrl-C (the boot's cleanup, code
    that re-raises an interrupt it caught) stops for SIGTERM too.
    """


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        msg = f"{message} (see '{self.prog} --help')"
        raise _UsageError(msg)


# -- entry point ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    Run as the program (``argv`` not given) and stopped by SIGINT or SIGTERM, it does not
    return: it ends the process with 130 or 143 (:func:`_exit_stopped`).
    """
    # The report is written while the handlers are still ours, so a repeated signal cannot cut
    # it short; and a first one that comes while another outcome is reported still gets 130/143.
    with _signals_raise():
        try:
            code = _main(argv)
        except KeyboardInterrupt as exc:
            code = _interrupted(exc, verbose=False)
        if argv is None and code in (EXIT_INTERRUPTED, EXIT_TERMINATED):
            _exit_stopped(code)  # run as the program: see there
        return code


def _main(argv: Sequence[str] | None) -> int:
    verbose = False
    try:
        try:
            args = _parser().parse_args(argv)
        except SystemExit as exc:  # --help and --version
            return exc.code if isinstance(exc.code, int) else EXIT_OK
        verbose = args.verbose
        command: Callable[[argparse.Namespace], int] = args.command
        return command(args)
    except KeyboardInterrupt as exc:
        return _interrupted(exc, verbose=verbose)
    except _UsageError as exc:
        return _report(f"error: {exc}", EXIT_USAGE, verbose=False)
    except (ConfigError, PluginError) as exc:
        return _report(f"error: {_one_line(exc)}", EXIT_USAGE, verbose=verbose)
    except InitgraphError as exc:
        # Raised out of a boot by something a plugin did (a deadlock, a conflict): a failed boot.
        return _report(f"error: {_one_line(exc)}", EXIT_FAILED, verbose=verbose)
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        msg = (
            f"error: internal error, a bug in initgraph: {type(exc).__name__}: {_one_line(exc)}"
            f" (rerun with --verbose for the traceback, and please report it)"
        )
        return _report(msg, EXIT_INTERNAL, verbose=verbose)


def _exit_stopped(code: int) -> NoReturn:
    """End the process with ``code`` now, after its atexit functions, under this command's handlers.

    A signal that stops the command is often followed by another (a second Ctrl-C, a SIGTERM
    after it). While the handlers of :func:`_signals_raise` are in place a repeat is ignored,
    but the interpreter's exit puts the default handlers back before it tears its modules down,
    and a repeat then kills the process by that signal after its report (status -2, not 130).
    So the process ends here: the atexit functions run (logging's flush, the plugins' own), then
    ``os._exit``. Skipped are the module teardown and the wait for threads that are not daemons,
    which would let a thread a plugin started keep a stopped command alive.
    """
    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def _interrupted(exc: KeyboardInterrupt, *, verbose: bool) -> int:
    """Report SIGINT or SIGTERM: ``initgraph: interrupted`` (or ``terminated``), then what the
    boot had done, if one was under way; return 130 (or 143)."""
    _forget_interrupt()
    if isinstance(exc, _Terminated):
        code = _report("terminated", EXIT_TERMINATED, verbose=verbose)
    else:
        code = _report("interrupted", EXIT_INTERRUPTED, verbose=verbose)
    stopped = _interruption_of(exc)
    if stopped is not None:
        print(f"{PROG}: {_interruption_text(stopped)}", file=sys.stderr, flush=True)
    return code


def _interruption_of(exc: BaseException) -> Interruption | None:
    # Not through _boot: an interrupt during argument parsing must not import the boot.
    if "initgraph._boot" not in sys.modules:
        return None
    from ._boot import interruption

    return interruption(exc)


_LISTED = 8  # names shown per group of the interruption summary; then "and N more"


def _interruption_text(stopped: Interruption) -> str:
    """``boot stopped after 0.84 s: 1 of 3 plugins committed (a); cancelled while running: ...``.

    Groups are separated by ``; ``, names by ``, ``; a group with no plugin is left out, except
    the committed count.
    """
    total = len(stopped.boot.plan.plugins)
    committed = f"{len(stopped.committed)} of {_count(total, 'plugin')} committed"
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


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_LISTED])
    return shown if len(names) <= _LISTED else f"{shown} and {len(names) - _LISTED} more"


def _forget_interrupt() -> None:
    """Keep the exit code ours after an interrupt was caught.

    When a KeyboardInterrupt leaves code that ``exec`` ran from a string (``dataclasses`` builds
    its methods that way, so an interrupt can land there), CPython notes it as unhandled and, at
    exit, kills the process with SIGINT instead of returning our exit code (the exit by signal of
    bpo-1054041). Running code from a string once more clears that note.
    """
    exec("")


def _report(message: str, code: int, *, verbose: bool) -> int:
    """Print ``initgraph: <message>`` on stderr (after the traceback, with ``--verbose``)."""
    if verbose:
        traceback.print_exc(file=sys.stderr)
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)
    return code


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (messages may wrap a long path or list)."""
    return _squash(str(exc)) or type(exc).__name__


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the final flush at exit cannot fail."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


# A signal that comes this soon after the one that raised is ignored: long enough for the boot's
# cleanup (about 0.1-0.5 s; at worst it waits 2 s for a worker that ignores SIGTERM, then kills
# it) and the report to finish, short enough that a repeat still gets out of a cleanup that hangs,
# or out of a boot whose plugin swallowed the first KeyboardInterrupt.
_REPEAT_GRACE = 5.0


class _Interrupts:
    """What the SIGINT and SIGTERM handlers of one command share."""

    def __init__(self) -> None:
        self.raised_at: float | None = None  # when a handler last raised

    def stopping(self) -> bool:
        """Whether a handler raised less than ``_REPEAT_GRACE`` seconds ago."""
        raised = self.raised_at
        return raised is not None and time.monotonic() - raised < _REPEAT_GRACE


class _Raise:
    """A handler for SIGINT or SIGTERM: raise ``exc_type`` in the main thread.

    A signal (either one) that comes within ``_REPEAT_GRACE`` of the one that raised is
    ignored, so an impatient second Ctrl-C, or a SIGTERM after a Ctrl-C, cannot cut the boot's
    cleanup short and leave processes behind; a later one raises again.

    Python runs a signal handler between two bytecodes of the main thread, wherever they are. One
    place must be avoided: the ``os.register_at_fork`` callbacks around a fork, where an exception
    is printed and dropped, and a lock taken before the fork (``logging``'s) is left held, so the
    command would hang instead of stopping. A signal that arrives during a fork is delivered
    again once the fork is over.
    """

    def __init__(self, exc_type: type[BaseException], interrupts: _Interrupts) -> None:
        self.exc_type = exc_type
        self.interrupts = interrupts
        self.deferred = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.interrupts.stopping():
            return
        if _forks.active:
            if not self.deferred:
                self.deferred = True
                threading.Thread(target=self._redeliver, args=(signum,), daemon=True).start()
            return
        self.interrupts.raised_at = time.monotonic()
        raise self.exc_type

    def _redeliver(self, signum: int) -> None:
        deadline = time.monotonic() + 1.0
        while _forks.active and time.monotonic() < deadline:
            time.sleep(0.001)
        self.deferred = False
        os.kill(os.getpid(), signum)


class _Forks:
    """Whether this process is inside a fork, and the handlers a forked child must not keep."""

    def __init__(self) -> None:
        self.active = False
        self.registered = False
        self.replaced: dict[int, Any] = {}  # signal -> the handler _Raise replaced

    def register(self) -> None:
        # Once per process, and late (at the first command, not at import), so these callbacks
        # come outermost: registered last, the "before" one runs first and "after" ones last.
        if self.registered or not hasattr(os, "register_at_fork"):
            return
        self.registered = True
        # C callables, not Python functions: a handler could run at the start of one.
        os.register_at_fork(
            before=functools.partial(setattr, self, "active", True),
            after_in_parent=functools.partial(setattr, self, "active", False),
            after_in_child=self._after_in_child,
        )

    def _after_in_child(self) -> None:
        # A worker forked during a boot must die of SIGTERM and take SIGINT as usual, not raise
        # this command's exceptions into code that does not expect them.
        self.active = False
        for signum, previous in self.replaced.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signum, previous)
        self.replaced.clear()


_forks = _Forks()


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`_Terminated` and SIGINT KeyboardInterrupt.

    Only in the main thread, where handlers can be set. SIGINT is taken over only from Python's
    default handler: if the caller ignores it (``nohup``, a background job) or handles it, so be
    it. The previous handlers come back when the block ends.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _forks.register()
    interrupts = _Interrupts()
    handlers = {signal.SIGTERM: _Raise(_Terminated, interrupts)}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        handlers[signal.SIGINT] = _Raise(KeyboardInterrupt, interrupts)
    for signum, handler in handlers.items():
        _forks.replaced[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum in handlers:
            signal.signal(signum, _forks.replaced.pop(signum))


# -- arguments -----------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    common = _Parser(add_help=False)
    common.add_argument(
        "config",
        nargs="?",
        default=DEFAULT_CONFIG,
        help=f"the init.toml to read (default: {DEFAULT_CONFIG} in the current directory)",
    )
    common.add_argument(
        "--workers",
        type=_workers,
        metavar="N",
        help="worker processes: a positive integer or 'auto' (default: from the file)",
    )
    common.add_argument(
        "--start-method",
        choices=("fork", "forkserver", "spawn"),
        help="how worker processes start (default: from the file, else the fastest safe one)",
    )
    common.add_argument(
        "--on-error",
        choices=("abort", "continue"),
        help="after a failed plugin: stop the boot, or skip its dependents and go on",
    )
    common.add_argument(
        "--json", action="store_true", help="print one JSON object instead of a table"
    )
    common.add_argument("-v", "--verbose", action="store_true", help="print tracebacks with errors")

    parser = _Parser(
        prog=PROG,
        description="Fast, deterministic application start-up from an init.toml.",
        epilog=(
            "exit codes: 0 success, 1 a plugin failed, 2 bad configuration or usage, "
            "3 internal error, 130 interrupted, 141 stdout closed early, 143 terminated"
        ),
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run",
        parents=[common],
        help="boot the plugins and print a summary",
        description="Boot every plugin of the config and print what each did and how long it took.",
    )
    run.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print nothing on success; on failure only the error line (stderr)",
    )
    run.add_argument(
        "--compare",
        action="store_true",
        help="boot a second time with --workers 1 and print the measured speed-up",
    )
    run.add_argument(
        "--trace",
        metavar="FILE",
        help="write the boot as a Chrome trace to FILE (open it in Perfetto; read it with "
        "blame, critical-chain, plot, plan --from)",
    )
    run.add_argument(
        "--debug",
        action="store_true",
        help="print kernel-style initcall debug lines (bootgraph.pl reads them) on stderr",
    )
    run.set_defaults(command=_run)

    check = commands.add_parser(
        "check",
        parents=[common],
        help="validate the config and print the plan; starts no process",
        description=(
            "Validate the config (keys, types, dependencies, that every plugin's module can be "
            "found) and print the plan in cookie order. Starts no process and runs no plugin."
        ),
    )
    check.set_defaults(command=_check)

    from ._observe_cli import add_commands

    add_commands(commands)
    return parser


def _workers(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        msg = f"expected a positive integer or 'auto', got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return count


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {"workers": args.workers, "start_method": args.start_method, "on_error": args.on_error}


# -- check ---------------------------------------------------------------------------------------


def _check(args: argparse.Namespace) -> int:
    from . import _boot

    plan = _boot.plan(args.config, **_overrides(args))
    out = sys.stdout
    if args.json:
        _print_json(out, {"config": plan.path, **_plan_json(plan)})
        return EXIT_OK
    rows = [
        [str(p.cookie), p.name, p.domain, ", ".join(p.requires) or "-", p.where]
        for p in plan.plugins
    ]
    _print_table(out, ["cookie", "plugin", "domain", "requires", "where"], rows, numeric={0})
    domains = len({p.domain for p in plan.plugins})
    print(
        f"{args.config}: ok, {_count(len(plan.plugins), 'plugin')} in "
        f"{_count(domains, 'domain')}; {_settings_text(plan)}",
        file=out,
    )
    return EXIT_OK


# -- run -----------------------------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    from . import _boot
    from ._observe_cli import progress

    try:
        with _stdout_to_stderr() if args.json else contextlib.nullcontext():
            try:
                with progress(None, quiet=args.quiet or args.json) as shown:
                    boot = _boot.run_boot(
                        args.config, overrides=_overrides(args), watch=shown.update
                    )
                failure: BootError | None = None
            except BootError as exc:
                boot, failure = exc.boot, exc
            sequential = None
            if args.compare and failure is None and boot.plan.workers != 1:
                overrides = {**_overrides(args), "workers": 1}
                sequential = _boot.boot(args.config, check=False, **overrides)
    except KeyboardInterrupt as exc:
        # SIGINT or SIGTERM: main() reports it on stderr; with --json the object goes out too.
        stopped = _boot.interruption(exc)
        if args.json and stopped is not None:
            signame = "SIGTERM" if isinstance(exc, _Terminated) else "SIGINT"
            try:
                _print_json(sys.stdout, _boot_json(stopped.boot, None, (signame, stopped)))
            except BrokenPipeError:
                _silence_stdout()
        raise

    if args.trace:
        from ._trace import write_trace

        write_trace(boot, args.trace)
    if args.debug:
        from ._trace import debug_lines

        print("\n".join(debug_lines(boot)), file=sys.stderr, flush=True)
    out = sys.stdout
    if args.json:
        _print_json(out, _boot_json(boot, sequential))
    elif not args.quiet:
        _print_summary(out, boot, sequential)
    if args.verbose:
        _print_failure_tracebacks(boot)
    if failure is not None:
        print(f"{PROG}: error: {_one_line(failure)}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    return EXIT_OK


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send everything written to stdout, by this process or its children, to stderr.

    ``--json`` promises that stdout holds the JSON object and nothing else, but a plugin may
    print: in the parent through ``sys.stdout``, in a worker straight to file descriptor 1. Both
    go to stderr until the block ends.
    """
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no descriptor 1: nothing below can reach it either
        saved = -1
    try:
        if saved >= 0:
            os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        if saved >= 0:
            os.dup2(saved, 1)
            os.close(saved)


def _print_summary(out: IO[str], boot: Boot, sequential: Boot | None) -> None:
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
                _ms_text(init),
                _ms_text(commit),
            ]
        )
    headers = ["cookie", "plugin", "domain", "where", "status", "init ms", "commit ms"]
    _print_table(out, headers, rows, numeric={0, 5, 6}, status_column=4)

    plugins = _count(len(boot.plan.plugins), "plugin")
    workers = _count(boot.plan.workers, "worker")
    how = f"in {_ms_text(boot.wall)} ms with {workers} ({boot.plan.start_method})"
    if boot.ok:
        print(f"booted {plugins} {how}", file=out)
    else:
        print(f"boot failed: {plugins} {how}", file=out)
    for p in boot.plan.plugins:
        failure = boot.failures.get(p.name)
        if failure is not None:
            optional = " (optional)" if p.optional else ""
            print(f"  {p.name}{optional}: {_failure_text(boot, p.name)}", file=out)
    if boot.ok and boot.plan.workers != 1:
        print(_chain_text(boot), file=out)
        print(_speed_text(boot, sequential), file=out)
    out.flush()


def _chain_text(boot: Boot) -> str:
    """The critical chain's length and its initcalls: what set the boot's wall time."""
    from ._analysis import critical_chain
    from ._trace import trace_of

    chain = critical_chain(trace_of(boot))
    inits = [link.plugin for link in chain if link.kind == "init"]
    length = sum(link.duration for link in chain)
    return f"critical chain {_ms_text(length)} ms: {' -> '.join(inits) or '-'}"


def _failure_text(boot: Boot, name: str) -> str:
    """``<status>: <why>`` on one line, without repeating a status the message starts with."""
    status = boot.status(name)
    message = _squash(boot.failures[name].message)
    return message if message.startswith(f"{status}:") else f"{status}: {message}"


def _speed_text(boot: Boot, sequential: Boot | None) -> str:
    """The measured speed-up over a sequential boot, or, unmeasured, the parallelism achieved."""
    if sequential is None:
        busy = _init_total(boot)
        ratio = busy / boot.wall if boot.wall > 0 else 0.0
        return (
            f"parallelism {ratio:.2f}x: about {ratio:.2f}x faster than --workers 1 "
            f"({_ms_text(busy)} ms of init work ran in {_ms_text(boot.wall)} ms; "
            f"--compare measures it)"
        )
    if not sequential.ok:
        names = ", ".join(sequential.failures)
        return f"no speed-up measured: the boot with --workers 1 failed ({names})"
    ratio = sequential.wall / boot.wall if boot.wall > 0 else 0.0
    times = f"({_ms_text(boot.wall)} ms vs {_ms_text(sequential.wall)} ms)"
    if ratio >= 1:
        return f"{ratio:.2f}x faster than --workers 1 {times}"
    return f"{1 / ratio:.2f}x slower than --workers 1 {times}"


def _print_failure_tracebacks(boot: Boot) -> None:
    for name, failure in boot.failures.items():
        if failure.error is None:
            continue
        print(f"{PROG}: {name}: {failure.kind}:", file=sys.stderr)
        error = failure.error
        traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)


# -- JSON ----------------------------------------------------------------------------------------


def _plan_json(plan: Plan) -> dict[str, Any]:
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
    }


def _boot_json(
    boot: Boot, sequential: Boot | None, interrupted: tuple[str, Interruption] | None = None
) -> dict[str, Any]:
    plan = _plan_json(boot.plan)
    for entry in plan["plugins"]:
        name = entry["name"]
        timing = boot.timings.get(name)
        failure = boot.failures.get(name)
        entry["status"] = boot.status(name)
        entry["init_ms"] = _ms(None if timing is None else timing.init_time)
        entry["commit_ms"] = _ms(None if timing is None else timing.commit_time)
        entry["waited_ms"] = _ms(None if timing is None else timing.waited)
        entry["pid"] = None if timing is None else timing.pid
        entry["error"] = None if failure is None else failure.message
    busy = _init_total(boot)
    report: dict[str, Any] = {
        "config": boot.plan.path,
        "ok": boot.ok,
        "wall_ms": _ms(boot.wall),
        "init_ms_total": _ms(busy),
        "parallelism": round(busy / boot.wall, 3) if boot.wall > 0 else None,
        **plan,
        "registry": [
            {"key": pub.key, "plugin": pub.plugin, "domain": pub.domain, "cookie": pub.cookie}
            for pub in boot.registry.log
        ],
    }
    if interrupted is not None:
        signame, stopped = interrupted
        report["interrupted"] = {
            "signal": signame,
            "after_ms": _ms(stopped.after),
            "committed": list(stopped.committed),
            "finished_not_committed": list(stopped.uncommitted),
            "running": list(stopped.running),
            "did_not_commit": list(stopped.failed),
            "not_started": list(stopped.not_started),
        }
    if sequential is not None:
        report["compare"] = {
            "ok": sequential.ok,
            "workers_1_wall_ms": _ms(sequential.wall),
            "speedup": round(sequential.wall / boot.wall, 3) if boot.wall > 0 else None,
        }
    return report


def _print_json(out: IO[str], data: Mapping[str, Any]) -> None:
    json.dump(data, out, indent=2, default=str)
    out.write("\n")
    out.flush()


# -- tables and numbers --------------------------------------------------------------------------


def _print_table(
    out: IO[str],
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    numeric: set[int],
    status_column: int | None = None,
) -> None:
    """Print rows under headers: with rich on a terminal, as aligned plain text otherwise."""
    if out.isatty():
        _print_rich_table(out, headers, rows, numeric=numeric, status_column=status_column)
        return
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    for row in [headers, *rows]:
        cells = [
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip(), file=out)


def _print_rich_table(
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


def _init_total(boot: Boot) -> float:
    times = (timing.init_time for timing in boot.timings.values())
    return sum(t for t in times if t is not None)


def _settings_text(plan: Plan) -> str:
    return (
        f"{_count(plan.workers, 'worker')}, start method {plan.start_method}, "
        f"on_error {plan.on_error}"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _ms_text(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def _squash(text: str) -> str:
    return " ".join(text.split())
