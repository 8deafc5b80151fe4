"""A boot inside an event loop: ``await aboot(config)`` and ``async with lifespan(config)``.

The same boot as :func:`~.run.boot`, with the event loop's thread as its owner: the boot's
coordinating thread hands it main inits and commits through ``call_soon_threadsafe``, and a
task on the loop runs them one at a time, awaiting an ``async def`` commit there. So commits,
main inits and shutdown hooks run on the loop's thread and may touch loop-bound objects, while
the scheduler, the state's decisions and the plugin imports stay off it. A main init still
runs on the loop: unless it is ``async def``, the loop waits while it runs, as for any blocking
call.

What would stall the loop stays off it: the boot's machinery (``run``, the scheduler,
``multiprocess``, ``dill``) is imported on first use in a thread, with the config and the
plugins; the coordinating thread is started from a thread too (starting a thread waits until
it runs). While the boot runs, and while :func:`lifespan` shuts it down, the interpreter's GIL
switch interval is lowered to :data:`SWITCH_INTERVAL` (then put back): a thread of the boot
that holds the GIL gives it up to the loop after that long, not after the default 5 ms.

Cancelling the task that awaits the boot stops it as SIGINT stops ``boot()``: the coordinator
stops the scheduler's processes at once, what committed is shut down, and ``CancelledError``
goes on. An ``async def initgraph_init`` with ``where = "main"`` is awaited on the loop too (one in
a worker runs in an event loop of its own there, see :func:`~.plugins.run_init`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .._errors import BootError

if TYPE_CHECKING:
    from .run import Boot, Job, Prepared, _Run

__all__ = ["SWITCH_INTERVAL", "aboot", "lifespan"]

SWITCH_INTERVAL = 0.0005
"""The GIL switch interval (seconds) while a boot runs under :func:`aboot`."""


class _Switching:
    """Lowers ``sys.setswitchinterval`` while any boot runs; the last one out puts it back.

    An interval already at or below :data:`SWITCH_INTERVAL` is left alone (setting the value
    read back can drift it by a microsecond).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.boots = 0
        self.saved: float | None = None  # the interval to put back, if it was lowered

    @contextlib.contextmanager
    def lowered(self) -> Iterator[None]:
        with self.lock:
            if self.boots == 0:
                before = sys.getswitchinterval()
                self.saved = before if before > SWITCH_INTERVAL else None
                if self.saved is not None:
                    sys.setswitchinterval(SWITCH_INTERVAL)
            self.boots += 1
        try:
            yield
        finally:
            with self.lock:
                self.boots -= 1
                if self.boots == 0 and self.saved is not None:
                    sys.setswitchinterval(self.saved)


_switching = _Switching()


class _LoopOwner:
    """The owner of a boot run by :func:`aboot`: a task of the event loop runs the jobs."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.jobs: asyncio.Queue[Job | None] = asyncio.Queue()

    def submit(self, job: Job | None) -> None:
        self.loop.call_soon_threadsafe(self.jobs.put_nowait, job)

    async def serve(self) -> None:
        """Run jobs until the coordinator is done, giving the loop a turn after each.

        ``Queue.get()`` returns at once while jobs are queued: without the ``sleep(0)``,
        commits that arrive together would run back to back within one turn of the loop.
        """
        while (job := await self.jobs.get()) is not None:
            pending = job()
            if pending is not None:
                await pending
            await asyncio.sleep(0)

    async def drain(self) -> None:
        """Drop the jobs left until the coordinator is done, through further cancellations."""
        while True:
            try:
                if await self.jobs.get() is None:
                    return
            except asyncio.CancelledError:
                continue  # stopping already: the original error goes on once this is over


def _load(
    config: str | os.PathLike[str] | Mapping[str, Any], overrides: Mapping[str, Any]
) -> Prepared:
    """In a thread: the boot's machinery imported on first use, then the config and plugins."""
    from .run import load

    return load(config, overrides)


async def _start(run: _Run) -> None:
    """``run.start()`` in a thread: starting the coordinator waits until its thread runs.

    Cancelled meanwhile, it waits the start out (the coordinator then sees the stop), and the
    cancellation goes on.
    """
    starting = asyncio.get_running_loop().run_in_executor(None, run.start)
    try:
        await asyncio.shield(starting)
    except asyncio.CancelledError:
        while not starting.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(starting)
        raise


def _started(run: _Run) -> bool:
    return run.coordinator is not None and run.coordinator.ident is not None


async def aboot(
    config: str | os.PathLike[str] | Mapping[str, Any], *, check: bool = True, **overrides: Any
) -> Boot:
    """:func:`~initgraph.boot` without blocking the event loop; returns the :class:`Boot`.

    Commits, ``where = "main"`` inits and shutdown hooks run on the loop's thread; ``async def``
    commit and shutdown hooks are awaited there. Raises what ``boot()`` raises; cancelled, it
    stops the boot, shuts down what committed and raises ``CancelledError``. Close the boot
    with ``await boot.aclose()``, or use :func:`lifespan`.
    """
    with _switching.lowered():
        return await _aboot(config, check, overrides)


async def _aboot(
    config: str | os.PathLike[str] | Mapping[str, Any], check: bool, overrides: Mapping[str, Any]
) -> Boot:
    # Importing the scheduler, reading the config and importing the plugins take long: off
    # the loop.
    prepared = await asyncio.to_thread(_load, config, overrides)
    from .run import _Run, call_plan

    call_plan(prepared)
    owner = _LoopOwner(asyncio.get_running_loop())
    run = _Run(prepared, owner)
    try:
        await _start(run)
        await owner.serve()
    except BaseException as exc:  # cancelled, or KeyboardInterrupt on the loop's thread
        if not _started(run):
            raise  # the start failed: there is nothing to stop
        run.stop()
        await owner.drain()
        run.ended(exc)  # the coordinator has submitted its last job: it is ending
        await run.ashutdown_after(exc)
        raise
    try:
        run.ended(None)
        run.finished()
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            run.interrupted(exc)
        await run.ashutdown_after(exc)
        raise
    boot = run.boot
    if check and not boot.ok:
        err = BootError(boot.summary(), boot=boot)
        await run.ashutdown_after(err)
        try:
            raise err
        finally:
            del err  # its traceback holds this frame: no cycle back through a local
    return boot


@contextlib.asynccontextmanager
async def lifespan(
    config: str | os.PathLike[str] | Mapping[str, Any], *, check: bool = True, **overrides: Any
) -> AsyncIterator[Boot]:
    """``async with lifespan(config) as boot:`` boots with :func:`aboot`, shuts down on exit.

    A failed boot raises :class:`~initgraph.BootError` before the block runs (a server that
    starts its lifespan this way does not start serving).
    """
    boot = await aboot(config, check=check, **overrides)
    try:
        yield boot
    finally:
        with _switching.lowered():
            await boot.aclose()
