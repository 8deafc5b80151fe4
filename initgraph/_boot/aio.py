"""A boot inside an event loop: ``await aboot(config)`` and ``async with lifespan(config)``.

The same boot as :func:`~.run.boot`, with the event loop's thread as its owner: the boot's
coordinating thread hands it main inits and commits through ``call_soon_threadsafe``, and a
task on the loop runs them one at a time, awaiting an ``async def`` commit there. So commits,
main inits and shutdown hooks run on the loop's thread and may touch loop-bound objects, while
the scheduler, the state's decisions and the plugin imports stay off it. A main init still
runs on the loop: unless it is ``async def``, the loop waits while it runs, as for any blocking
call.

Cancelling the task that awaits the boot stops it as SIGINT stops ``boot()``: the coordinator
stops the scheduler's processes at once, what committed is shut down, and ``CancelledError``
goes on. An ``async def initgraph_init`` with ``where = "main"`` is awaited on the loop too (one in
a worker runs in an event loop of its own there, see :func:`~.plugins.run_init`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

from .._errors import BootError
from .run import Boot, Job, _Run, call_plan, load

__all__ = ["aboot", "lifespan"]


class _LoopOwner:
    """The owner of a boot run by :func:`aboot`: a task of the event loop runs the jobs."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.jobs: asyncio.Queue[Job | None] = asyncio.Queue()

    def submit(self, job: Job | None) -> None:
        self.loop.call_soon_threadsafe(self.jobs.put_nowait, job)

    async def serve(self) -> None:
        """Run jobs until the coordinator is done."""
        while (job := await self.jobs.get()) is not None:
            pending = job()
            if pending is not None:
                await pending

    async def drain(self) -> None:
        """Drop the jobs left until the coordinator is done, through further cancellations."""
        while True:
            try:
                if await self.jobs.get() is None:
                    return
            except asyncio.CancelledError:
                continue  # stopping already: the original error goes on once this is over


async def aboot(
    config: str | os.PathLike[str] | Mapping[str, Any], *, check: bool = True, **overrides: Any
) -> Boot:
    """:func:`~initgraph.boot` without blocking the event loop; returns the :class:`Boot`.

    Commits, ``where = "main"`` inits and shutdown hooks run on the loop's thread; ``async def``
    commit and shutdown hooks are awaited there. Raises what ``boot()`` raises; cancelled, it
    stops the boot, shuts down what committed and raises ``CancelledError``. Close the boot
    with ``await boot.aclose()``, or use :func:`lifespan`.
    """
    # Reading the config and importing the plugins may take long: off the loop.
    prepared = await asyncio.to_thread(load, config, overrides)
    call_plan(prepared)
    owner = _LoopOwner(asyncio.get_running_loop())
    run = _Run(prepared, owner)
    run.start()
    try:
        await owner.serve()
    except BaseException as exc:  # cancelled, or KeyboardInterrupt on the loop's thread
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
        raise err
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
        await boot.aclose()
