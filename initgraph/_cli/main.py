"""The ``initgraph`` command line: ``run`` boots an init.toml and reports, ``check`` shows its plan.

Exit codes are listed in ``initgraph/_cli/__init__.py`` and ``docs/cli.md``.

Whatever ends the command, it ends through the boot's own cleanup, so no process of the boot is left
running: SIGTERM is turned into an exception in the main thread, as SIGINT is (see ``Raise``), and
a repeated signal is ignored while the command stops. An interrupted ``run`` says on stderr what the
boot had done (``interruption_text``).

Output is a table for people (drawn with ``rich`` when stdout is a terminal, plain text otherwise)
or, with ``--json``, one JSON object for programs. Errors are one line on stderr,
``initgraph: error: <message>``; ``--verbose`` adds the traceback. ``rich`` and the boot are only
imported by the commands that need them, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from .._errors import BootError, ConfigError, InitgraphError, PluginError
from . import (
    DEFAULT_CONFIG,
    EXIT_BROKEN_PIPE,
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    PROG,
)
from .render import (
    boot_json,
    count,
    interruption_text,
    one_line,
    plan_json,
    print_failure_tracebacks,
    print_json,
    print_skipped,
    print_summary,
    print_table,
    settings_text,
    shutdown_lines,
)
from .signals import Terminated, forget_interrupt, signals_raise

if TYPE_CHECKING:
    from .._boot.run import Interruption

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


class _UsageError(Exception):
    """A bad command line, reported like a ConfigError instead of argparse's usage block."""


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
    with signals_raise():
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
        with _logging_to_stderr(getattr(args, "log_level", None)):
            return command(args)
    except KeyboardInterrupt as exc:
        return _interrupted(exc, verbose=verbose)
    except _UsageError as exc:
        return _report(f"error: {exc}", EXIT_USAGE, verbose=False)
    except (ConfigError, PluginError) as exc:
        return _report(f"error: {one_line(exc)}", EXIT_USAGE, verbose=verbose)
    except InitgraphError as exc:
        # Raised out of a boot by something a plugin did (a deadlock, a conflict): a failed boot.
        return _report(f"error: {one_line(exc)}", EXIT_FAILED, verbose=verbose)
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        msg = (
            f"error: internal error, a bug in initgraph: {type(exc).__name__}: {one_line(exc)}"
            f" (rerun with --verbose for the traceback, and please report it)"
        )
        return _report(msg, EXIT_INTERNAL, verbose=verbose)


def _exit_stopped(code: int) -> NoReturn:
    """End the process with ``code`` now, after its atexit functions, under this command's handlers.

    A signal that stops the command is often followed by another (a second Ctrl-C, a SIGTERM
    after it). While the handlers of :func:`signals_raise` are in place a repeat is ignored,
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
    forget_interrupt()
    if isinstance(exc, Terminated):
        code = _report("terminated", EXIT_TERMINATED, verbose=verbose)
    else:
        code = _report("interrupted", EXIT_INTERRUPTED, verbose=verbose)
    stopped = _interruption_of(exc)
    if stopped is not None:
        print(f"{PROG}: {interruption_text(stopped)}", file=sys.stderr, flush=True)
        for line in shutdown_lines(stopped.boot):
            print(f"{PROG}: {line.strip()}", file=sys.stderr, flush=True)
    return code


def _interruption_of(exc: BaseException) -> Interruption | None:
    # Not through _boot: an interrupt during argument parsing must not import the boot.
    if "initgraph._boot.run" not in sys.modules:
        return None
    from .._boot.run import interruption

    # --serve turns the CancelledError that stopped its boot into the interrupt: its cause.
    found = interruption(exc)
    if found is None and exc.__cause__ is not None:
        found = interruption(exc.__cause__)
    return found


def _report(message: str, code: int, *, verbose: bool) -> int:
    """Print ``initgraph: <message>`` on stderr (after the traceback, with ``--verbose``)."""
    if verbose:
        traceback.print_exc(file=sys.stderr)
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)
    return code


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the final flush at exit cannot fail."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


# -- arguments -----------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    from .. import __version__

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
        "--enable",
        action="append",
        metavar="NAME",
        help="run plugin NAME this time, whatever its enabled and when say (repeatable)",
    )
    common.add_argument(
        "--disable",
        action="append",
        metavar="NAME",
        help="skip plugin NAME (and what requires it) this time (repeatable)",
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
        help="run the plugins again, one after another in this process, and print the "
        "measured speed-up of the boot over that",
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
    run.add_argument(
        "--log-level",
        type=str.upper,
        choices=_LOG_LEVELS,
        metavar="LEVEL",
        help="print log records of this level and above on stderr, from the plugins' workers "
        f"too ({', '.join(_LOG_LEVELS)}; default: Python's, warnings and errors alone)",
    )
    run.add_argument(
        "--serve",
        action="store_true",
        help="once booted, serve the ASGI app a plugin published under 'asgi.app' with uvicorn "
        "until SIGINT or SIGTERM, then shut down (needs the example extra)",
    )
    run.add_argument(
        "--host", default="127.0.0.1", help="with --serve: the address to listen on (127.0.0.1)"
    )
    run.add_argument(
        "--port", type=int, default=8000, help="with --serve: the port (8000; 0 picks a free one)"
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

    from .observe import add_commands

    add_commands(commands)
    return parser


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@contextlib.contextmanager
def _logging_to_stderr(level: str | None) -> Iterator[None]:
    """With a level, let log records of that level and above reach stderr while the command runs.

    Set before the boot starts, so workers take the level too: they send their records to this
    process, whose handlers print them.
    """
    if level is None:
        yield
        return
    import logging

    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    saved = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(saved)


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
    return {
        "workers": args.workers,
        "start_method": args.start_method,
        "on_error": args.on_error,
        "enable": args.enable,
        "disable": args.disable,
    }


# -- check ---------------------------------------------------------------------------------------


def _check(args: argparse.Namespace) -> int:
    from .._boot import run as _boot

    plan = _boot.check(args.config, **_overrides(args))
    out = sys.stdout
    if args.json:
        print_json(out, {"config": plan.path, **plan_json(plan)})
        return EXIT_OK
    rows = [
        [str(p.cookie), p.name, p.domain, ", ".join(p.requires) or "-", p.where]
        for p in plan.plugins
    ]
    print_table(out, ["cookie", "plugin", "domain", "requires", "where"], rows, numeric={0})
    domains = len({p.domain for p in plan.plugins})
    skipped = f", {len(plan.skipped)} skipped" if plan.skipped else ""
    print(
        f"{args.config}: ok, {count(len(plan.plugins), 'plugin')} in "
        f"{count(domains, 'domain')}{skipped}; {settings_text(plan)}",
        file=out,
    )
    print_skipped(out, plan)
    return EXIT_OK


# -- run -----------------------------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    if args.serve:
        return _serve(args)
    from .._boot import run as _boot
    from .progress import progress

    try:
        with _stdout_to_stderr() if args.json else contextlib.nullcontext():
            try:
                with progress(None, quiet=args.quiet or args.json) as shown:
                    boot = _boot.run_boot(
                        args.config, overrides=_overrides(args), watch=shown.update
                    )
                failure: BootError | None = None
            except BootError as exc:  # what committed is shut down already
                boot, failure = exc.boot, exc
            # Before anything is reported, so the report has the shutdown's times, and before
            # --compare runs the plugins again in this process.
            boot.close()
            sequential = None
            if args.compare and failure is None:
                from .._boot.inprocess import run_in_process

                sequential = run_in_process(args.config, _overrides(args))
    except KeyboardInterrupt as exc:
        # SIGINT or SIGTERM: main() reports it on stderr; with --json the object goes out too.
        stopped = _boot.interruption(exc)
        if args.json and stopped is not None:
            signame = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"
            try:
                print_json(sys.stdout, boot_json(stopped.boot, None, (signame, stopped)))
            except BrokenPipeError:
                _silence_stdout()
        raise

    if args.trace:
        from .._observe.trace import write_trace

        write_trace(boot, args.trace)
    if args.debug:
        from .._observe.trace import debug_lines

        print("\n".join(debug_lines(boot)), file=sys.stderr, flush=True)
    out = sys.stdout
    if args.json:
        print_json(out, boot_json(boot, sequential))
    elif not args.quiet:
        print_summary(out, boot, sequential)
    if args.verbose:
        print_failure_tracebacks(boot)
    if failure is not None:
        print(f"{PROG}: error: {one_line(failure)}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    unusable = [
        option for option, given in (("--compare", args.compare), ("--json", args.json)) if given
    ]
    if unusable:
        msg = f"--serve cannot be used with {unusable[0]}"
        raise _UsageError(msg)
    from .serve import serve

    return serve(args, _overrides(args))


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


# -- JSON ----------------------------------------------------------------------------------------


# -- tables and numbers --------------------------------------------------------------------------
