"""``initgraph run --serve``: boot under :func:`~initgraph.lifespan`, serve the app, shut down.

The boot runs on an event loop (``asyncio.run``) with the loop as its owner, so commits run on
the loop's thread. Once it succeeded, its summary is printed and the ASGI app a plugin published
under ``asgi.app`` is served by uvicorn on ``--host``/``--port`` until SIGINT or SIGTERM; then the
server stops gracefully, the boot is closed (shutdown hooks, last committed first) and the
shutdown line is printed: exit 0. A signal during the boot cancels it, as it stops ``boot()``:
workers stopped, what committed shut down, exit 130 or 143.

SIGINT and SIGTERM are the loop's here (``loop.add_signal_handler``), not the command's
exceptions: an exception raised between two bytecodes of the loop's thread would cut a task in
the middle. uvicorn's own handlers are left out for the same reason, and because it re-raises a
captured signal after its graceful stop, which would make a clean stop exit 143. uvicorn is
imported here only, and only on this path: it is the ``example`` extra, not a dependency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .._errors import BootError, ConfigError
from . import EXIT_FAILED, EXIT_OK, PROG
from .render import one_line, print_summary, shutdown_lines
from .signals import Terminated

if TYPE_CHECKING:
    from .._boot.run import Boot

__all__ = ["APP_KEY", "serve"]

APP_KEY = "asgi.app"
"""The registry key of the ASGI app ``--serve`` serves."""


def serve(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    """Boot ``args.config``, serve its app until SIGINT or SIGTERM, shut down; the exit code."""
    try:
        import uvicorn  # noqa: F401 - checked before the boot, which is long
    except ImportError as exc:
        msg = (
            "--serve needs uvicorn, which is not installed; "
            "install the example extra: pip install -e '.[example]'"
        )
        raise ConfigError(msg, key="serve") from exc
    return asyncio.run(_serve(args, overrides))


async def _serve(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    from .._boot.aio import lifespan

    out = sys.stdout if not args.quiet else None
    stops = _Stops(asyncio.current_task())
    with stops.handling(asyncio.get_running_loop()):
        try:
            async with lifespan(args.config, **overrides) as boot:
                if out is not None:
                    print_summary(out, boot, None)
                    out.flush()
                await _serve_app(boot, args, stops, out)
        except BootError as exc:  # what committed is shut down already
            if out is not None:
                print_summary(out, exc.boot, None)
            print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr, flush=True)
            return EXIT_FAILED
        except asyncio.CancelledError as exc:
            if stops.signum is None:
                raise
            # Stopped by a signal during the boot: reported as the blocking run reports it.
            stopped: type[KeyboardInterrupt] = (
                Terminated if stops.signum == signal.SIGTERM else KeyboardInterrupt
            )
            raise stopped from exc
    if out is not None:
        for line in shutdown_lines(boot):
            print(line, file=out, flush=True)
    return EXIT_OK


async def _serve_app(boot: Boot, args: argparse.Namespace, stops: _Stops, out: Any) -> None:
    import uvicorn

    app = boot.registry.get(APP_KEY)
    if app is None:
        msg = f"--serve: no plugin published an ASGI app under {APP_KEY!r}; nothing to serve"
        raise ConfigError(msg, key="serve")
    try:
        sock = socket.create_server((args.host, args.port))
    except OSError as exc:
        msg = f"--serve: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
        raise ConfigError(msg, key="port") from exc
    host, port = sock.getsockname()[:2]

    def started() -> None:
        if out is not None:
            print(f"serving http://{host}:{port} until SIGINT or SIGTERM", file=out, flush=True)

    config = uvicorn.Config(app, lifespan="off", log_level="warning")
    server = _server(config, started)
    with sock:
        stops.server = server
        try:
            if stops.signum is None:
                await server.serve(sockets=[sock])
        finally:
            stops.server = None


def _server(config: Any, started: Callable[[], None]) -> Any:
    """uvicorn's server, with our signal handling, calling ``started`` once it accepts."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # the loop's handlers (_Stops) set should_exit

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                started()

    return Server(config)


class _Stops:
    """SIGINT and SIGTERM while serving: the first cancels the boot, or stops the server.

    A repeated signal is ignored while the command stops, as in a blocking run.
    """

    def __init__(self, task: asyncio.Task[Any] | None) -> None:
        self.task = task
        self.signum: int | None = None
        self.server: Any = None

    def __call__(self, signum: int) -> None:
        if self.signum is not None:
            return
        self.signum = signum
        if self.server is not None:
            self.server.should_exit = True
        elif self.task is not None:
            self.task.cancel()

    @contextlib.contextmanager
    def handling(self, loop: asyncio.AbstractEventLoop) -> Iterator[None]:
        signums = (signal.SIGINT, signal.SIGTERM)
        saved = {signum: signal.getsignal(signum) for signum in signums}
        for signum in signums:
            loop.add_signal_handler(signum, self, signum)
        try:
            yield
        finally:
            for signum in signums:
                loop.remove_signal_handler(signum)
                signal.signal(signum, saved[signum])
