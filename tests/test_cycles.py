"""A closed boot is freed by reference counting alone, nothing of it left to the cyclic collector.

Whatever sits in a reference cycle waits for a collection of the oldest generation, and that
collection holds the GIL for as long as it walks the heap: milliseconds in which the event loop
of a service that embedded the boot stands still. So each test turns the collector off (after a
collection that clears what earlier tests left), boots, closes and drops the boot, then has the
collector save what it would free (``gc.DEBUG_SAVEALL``): none of it may be initgraph's, the
example's or the test plugins', and a result the test held must be gone before that collection.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, app_package

import initgraph
from initgraph import BootError

# Returns an object of its own class (so the test can hold a weak reference to the result the
# parent loads), publishes one from its init, commits with an async hook, shuts down.
PLUGIN = """
import asyncio
from initgraph import hookimpl

class Result:
    def __init__(self, name, inputs):
        self.name = name
        self.inputs = inputs

@hookimpl
def initgraph_init(ctx):
    if ctx.config.get("fail"):
        raise RuntimeError("broken on purpose")
    ctx.synchronize()
    ctx.publish("init." + ctx.name, Result(ctx.name, []))
    return Result(ctx.name, [ctx.results[r] for r in ctx.results])

@hookimpl
async def initgraph_commit(ctx, result):
    await asyncio.sleep(0)
    ctx.publish("commit." + ctx.name, sorted(ctx.results))

@hookimpl
def initgraph_shutdown(ctx, result):
    pass
"""

MAIN = """
from initgraph import hookimpl

@hookimpl
def initgraph_init(ctx):
    return {"main": sorted(ctx.results)}
"""


def plugins(fail: bool = False) -> dict[str, dict[str, Any]]:
    """Pool inits, one that waits for two others, a main init: c fails if told to."""
    return {
        "a": {"source": PLUGIN},
        "b": {"source": PLUGIN, "requires": ["a"]},
        "m": {"source": MAIN, "where": "main", "requires": ["a"]},
        "c": {"source": PLUGIN, "requires": ["b", "m"], "config": {"fail": fail}},
    }


def left_to_the_collector(action: Callable[[], None], prefixes: tuple[str, ...]) -> list[str]:
    """What of ours a collection finds unreachable after ``action``, run with the collector off.

    "Ours": objects whose type's module starts with one of ``prefixes``. Other garbage (a
    third-party library's own cycles, other threads') is not the boot's doing.
    """
    gc.collect()  # what earlier tests, or the warm-up, left
    enabled = gc.isenabled()
    gc.disable()
    try:
        action()
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        found = collections.Counter(
            f"{type(o).__module__}.{type(o).__qualname__}"
            for o in gc.garbage
            if type(o).__module__.startswith(prefixes)
        )
        return [f"{n} {name}" for name, n in found.most_common()]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if enabled:
            gc.enable()


def boot_and_close(config: dict[str, Any], how: str, results: list[weakref.ref[Any]]) -> None:
    """Boot ``config`` the way ``how`` says, note weak references to its results, close it."""

    def note(boot: initgraph.Boot) -> None:
        assert boot.ok, boot.summary()
        results.extend(weakref.ref(boot.results[name]) for name in ("a", "b", "c"))

    if how == "boot":
        boot = initgraph.boot(config)
        note(boot)
        boot.close()
        return

    async def main() -> None:
        if how == "aboot":
            boot = await initgraph.aboot(config)
            note(boot)
            await boot.aclose()
        else:
            async with initgraph.lifespan(config) as boot:
                note(boot)

    asyncio.run(main())


@pytest.fixture
def ours(tmp_path: Path) -> tuple[str, ...]:
    return ("initgraph", "plugins", app_package(tmp_path))


@pytest.mark.parametrize("how", ["boot", "aboot", "lifespan"])
def test_a_closed_boot_is_freed_by_reference_counting(
    app: Callable[..., dict[str, Any]], ours: tuple[str, ...], how: str
) -> None:
    config = app(plugins())
    boot_and_close(config, how, [])  # the first boot of a process imports, and fills caches
    results: list[weakref.ref[Any]] = []
    found = left_to_the_collector(lambda: boot_and_close(config, how, results), ours)
    assert found == []
    assert len(results) == 3
    assert [r() for r in results] == [None, None, None]  # gone before any collection


def fail_and_close(config: dict[str, Any], how: str) -> None:
    """Boot ``config``, which fails; close the boot the BootError carries.

    The error is handled in the ``except`` block that caught it: kept in a local of the frame
    its traceback holds, it would be in a cycle of the test's own making.
    """

    async def aboot() -> None:
        try:
            await initgraph.aboot(config)
        except BootError as exc:
            close(exc)
        else:
            raise AssertionError("the boot did not fail")

    if how == "aboot":
        asyncio.run(aboot())  # caught inside: asyncio.run's task would hold the error too
        return
    try:
        initgraph.boot(config)
    except BootError as exc:
        close(exc)
    else:
        raise AssertionError("the boot did not fail")


def close(err: BootError) -> None:
    assert err.boot.failures["c"].kind == "error"
    err.boot.close()


@pytest.mark.parametrize("how", ["boot", "aboot"])
def test_a_failed_boot_is_freed_by_reference_counting(
    app: Callable[..., dict[str, Any]], ours: tuple[str, ...], how: str
) -> None:
    """A plugin that raises in its worker: the BootError, once dropped, takes the boot along."""
    config = app(plugins(fail=True))
    fail_and_close(config, how)
    assert left_to_the_collector(lambda: fail_and_close(config, how), ours) == []


@pytest.fixture
def at_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(ROOT)  # the example reads docs/ from the current directory
    return ROOT / "init.toml"


@pytest.mark.slow
def test_the_example_boot_is_freed_by_reference_counting(at_root: Path) -> None:
    """init.toml: search hits, findings, cached queries, a sqlite connection, a Starlette app.

    Starlette's router is in a cycle of its own (its lifespan refers back to it), not the
    boot's doing: it holds no object of ours.
    """

    def run() -> None:
        initgraph.boot(at_root).close()

    run()
    assert left_to_the_collector(run, ("initgraph", "plugins")) == []
