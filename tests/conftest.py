"""Shared fixtures: every test that starts processes must leave none behind."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import multiprocess
import psutil
import pytest


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True) if _alive(p)}


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture(autouse=True)
def no_leaked_processes(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves a child process (worker, manager, fork server, tracker) running."""
    before = _children()
    yield
    if request.node.get_closest_marker("allow_children"):
        return
    left = _children() - before
    if left:
        details = []
        for pid in sorted(left):
            try:
                p = psutil.Process(pid)
                details.append(f"{pid} {p.name()} {' '.join(p.cmdline())[:120]}")
            except psutil.NoSuchProcess:
                continue
        if details:
            for pid in left:
                with contextlib.suppress(psutil.NoSuchProcess):
                    psutil.Process(pid).kill()
            pytest.fail("test left processes running:\n" + "\n".join(details))


class Gates:
    """Events, held by a manager the test owns, that initcalls wait on (no sleeping)."""

    def __init__(self) -> None:
        self._manager = multiprocess.get_context("fork").Manager()

    def new(self) -> Any:
        return self._manager.Event()

    def shared_list(self) -> Any:
        return self._manager.list()

    def close(self) -> None:
        self._manager.shutdown()


@pytest.fixture
def gates() -> Iterator[Gates]:
    g = Gates()
    try:
        yield g
    finally:
        g.close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allow_children: the test checks leaks itself")
