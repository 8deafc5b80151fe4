"""Shared fixtures and helpers.

Every test must leave behind no process, open descriptor, shared memory mapping or ``/dev/shm``
entry, checked after its fixtures are torn down (``pytest_runtest_teardown``). The rest is
what several test modules need: plugin apps written into a tmp dir (a package of modules and a
config dict, or flat modules and an ``init.toml`` for the command line), the command line run
in a subprocess (``Cli``), and the ``gates`` initcalls wait on. Test modules import the plain
functions and classes with ``from conftest import ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import multiprocess
import psutil
import pytest

from initgraph._cli.observe import add_commands
from initgraph._core.backend import manager_process

ROOT = Path(__file__).resolve().parents[1]


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True) if _alive(p)}


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _fds() -> dict[int, str]:
    out = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
    return out


def _shared_maps() -> list[str]:
    """This process's mappings of shared memory: memfd segments and /dev/shm files."""
    lines = Path("/proc/self/maps").read_text().splitlines()
    return [line for line in lines if "memfd:" in line or "/dev/shm/" in line]


def _shm_entries() -> set[str]:
    # Named semaphores (sem.*) of other xdist workers come and go meanwhile: they are left out
    # here, and the scheduler's own are unlinked by its close (tests/test_soak.py counts them).
    # So do the files of another process's multiprocess heap arena ("pym-<pid>-..."), which
    # every scheduler makes: created and unlinked at once, but seen if listed in between.
    return {
        name
        for name in os.listdir("/dev/shm")
        if not name.startswith("sem.") and not _foreign_arena(name)
    }


def _foreign_arena(name: str) -> bool:
    prefix, _, rest = name.partition("-")
    pid = rest.partition("-")[0]
    return prefix == "pym" and pid.isdigit() and int(pid) != os.getpid()


@dataclass(frozen=True)
class Holdings:
    """What this process holds: child processes, descriptors, shared mappings, /dev/shm entries."""

    children: set[int]
    fds: dict[int, str]
    maps: list[str]
    shm: set[str]

    @classmethod
    def take(cls, *, collect: bool = True) -> Holdings:
        """Now, after a garbage collection unless told not to (``collect=False``).

        An object that closes what it holds when collected is not a leak of the test that
        dropped it; what a ``close()`` must release is checked without one.
        """
        if collect:
            gc.collect()
        return cls(_children(), _fds(), _shared_maps(), _shm_entries())

    def leaks_since(self, before: Holdings) -> list[str]:
        """What is held now and was not ``before``, one line per kind."""
        found = []
        if left := self.children - before.children:
            found.append(f"processes running: {_describe(left)}")
        if fds := {fd: target for fd, target in self.fds.items() if before.fds.get(fd) != target}:
            found.append(f"descriptors open: {fds}")
        if maps := [line for line in self.maps if line not in before.maps]:
            found.append(f"shared memory mapped: {maps}")
        if shm := self.shm - before.shm:
            found.append(f"entries in /dev/shm: {sorted(shm)}")
        return found


def _describe(pids: set[int]) -> str:
    details = []
    for pid in sorted(pids):
        with contextlib.suppress(psutil.NoSuchProcess):
            p = psutil.Process(pid)
            details.append(f"{pid} {p.name()} {' '.join(p.cmdline())[:120]}")
    return "; ".join(details)


_BEFORE = pytest.StashKey[Holdings]()
_RAISED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    """Note what the process holds before the test's fixtures are set up."""
    if not item.get_closest_marker("allow_children"):
        item.stash[_BEFORE] = Holdings.take()
    return (yield)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    if call.excinfo is not None:  # failed, skipped or xfailed: its traceback holds its frames
        item.stash[_RAISED] = True


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Fail a test that leaves a process, descriptor, shared mapping or /dev/shm entry behind.

    Checked once its fixtures are torn down and their values dropped (what pytest itself does
    right after this hook), so what the test owned does not count and what the library leaked
    does. A test marked ``allow_children`` checks leaks itself; one that raised (failed,
    skipped, xfailed) is not checked: its traceback still holds its objects.
    """
    result = yield
    before = item.stash.get(_BEFORE, None)
    if before is None or item.stash.get(_RAISED, False):
        return result
    if isinstance(item, pytest.Function):
        item.funcargs = {}
    now = Holdings.take()
    leaks = now.leaks_since(before)
    for pid in now.children - before.children:  # so that the next test starts clean
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()
    if leaks:
        pytest.fail("the test left behind:\n" + "\n".join(leaks))
    return result


class Gates:
    """Events, held by a manager the test owns, that initcalls wait on (no sleeping)."""

    def __init__(self) -> None:
        self._manager = multiprocess.get_context("fork").Manager()

    def new(self) -> Any:
        return self._manager.Event()

    def shared_list(self) -> Any:
        return self._manager.list()

    def close(self) -> None:
        """Stop the manager and release its process's sentinel, as the scheduler does."""
        self._manager.shutdown()
        process = manager_process(self._manager)
        process.join()
        process.close()


@pytest.fixture
def gates() -> Iterator[Gates]:
    g = Gates()
    try:
        yield g
    finally:
        g.close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allow_children: the test checks leaks itself")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that runs the command line in a subprocess (``cli``, ``repo_cli``) is slow."""
    for item in items:
        if {"cli", "repo_cli"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


needs_main_thread = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="signal handlers can only be set in the main thread",
)


# -- apps as a config dict: a package of plugin modules under a tmp dir ----------------------------
# The plugin most tests boot: it works for config "duration" seconds; with "synchronize" it waits
# for every lower cookie (kernel style) and publishes "init.<name>", then works "then" seconds
# more; with "fail" it raises. Its commit works "commit" seconds, then publishes "commit.<name>":
# the names of its results.
SLEEPER = """
import time
from initgraph import hookimpl

@hookimpl
def initgraph_init(ctx):
    time.sleep(ctx.config.get("duration", 0))  # the plugin's work
    if ctx.config.get("synchronize"):
        ctx.synchronize()
        ctx.publish("init." + ctx.name, ctx.cookie)
    time.sleep(ctx.config.get("then", 0))  # more work, after synchronizing
    if ctx.config.get("fail"):
        raise RuntimeError("broken on purpose")
    return ctx.name

@hookimpl
def initgraph_commit(ctx, result):
    time.sleep(ctx.config.get("commit", 0))  # a commit that loads data
    ctx.publish("commit." + ctx.name, sorted(ctx.results))
"""

# A plugin that returns its process id.
PID = """
import os
from initgraph import hookimpl

@hookimpl
def initgraph_init(ctx):
    return os.getpid()
"""

AppWriter = Callable[..., dict[str, Any]]


def write_files(root: Path, files: Mapping[str, str]) -> None:
    """Write ``files`` (relative path -> text) under ``root``, making folders as needed."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def write_package(root: Path, package: str, modules: Mapping[str, str]) -> None:
    """A package ``package`` of modules (name -> source, dedented) in ``root``."""
    sources = {f"{name}.py": textwrap.dedent(source) for name, source in modules.items()}
    write_files(root / package, {"__init__.py": "", **sources})


def app_package(root: Path) -> str:
    """The name of the package ``write_app`` writes under ``root`` (unique in the session)."""
    return "app_" + root.name.replace("-", "_")


def write_app(
    root: Path, plugins: Mapping[str, Mapping[str, Any]], **settings: Any
) -> dict[str, Any]:
    """A config dict for ``plugins``, each with its own module in a package under ``root``.

    A plugin's spec may carry its module's ``source`` (``SLEEPER`` if not); the rest of it is
    the plugin's table. ``settings`` go to ``[initgraph]``, with ``paths`` set to ``root``.
    Called again, it rewrites the modules it is given.
    """
    package = app_package(root)
    table: dict[str, Any] = {}
    sources = {}
    for name, spec in plugins.items():
        spec = dict(spec)
        sources[name] = spec.pop("source", SLEEPER)
        table[name] = {"module": f"{package}.{name}", **spec}
    write_package(root, package, sources)
    return {"initgraph": {"paths": [str(root)], **settings}, "plugins": table}


def forget_app(root: Path) -> None:
    """Drop the modules of ``write_app``'s package under ``root`` from ``sys.modules``."""
    package = app_package(root)
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[name]


@pytest.fixture
def app(tmp_path: Path) -> Iterator[AppWriter]:
    """``write_app`` in ``tmp_path``, 2 workers unless told otherwise."""

    def write(plugins: Mapping[str, Mapping[str, Any]], **settings: Any) -> dict[str, Any]:
        return write_app(tmp_path, plugins, **{"workers": 2, **settings})

    yield write
    forget_app(tmp_path)


def observe_args(argv: list[str]) -> argparse.Namespace:
    """Parse the command line of an observing command (blame, critical-chain, plot, plan)."""
    parser = argparse.ArgumentParser(prog="initgraph")
    add_commands(parser.add_subparsers())
    return parser.parse_args(argv)


# -- apps for the command line: flat plugin modules and an init.toml in a folder ------------------
CLI_PLUGIN = """\
import os
import pathlib

from initgraph import hookimpl


@hookimpl
def initgraph_init(ctx):
{body}
"""

# Bodies of initgraph_init, by what the plugin does.
BEHAVIOURS = {
    "ok": "return ctx.name",
    "raise": 'raise ValueError("boom")',
    "crash": "os._exit(3)",
    # One write, so that the lines of two processes sharing stderr cannot interleave.
    "print": 'import sys\nsys.stdout.write(f"noise from {ctx.name}\\n")\nsys.stdout.flush()',
    # Say it started, then wait for a writer that never comes.
    "block": (
        'pathlib.Path(ctx.config["marker"]).write_text(str(os.getpid()))\n'
        'with open(ctx.config["fifo"]) as fifo:\n'
        "    fifo.read()"
    ),
}


def write_plugin(folder: Path, name: str, behaviour: str) -> None:
    """Module ``name`` in ``folder``: a plugin that does what ``BEHAVIOURS[behaviour]`` says."""
    body = textwrap.indent(BEHAVIOURS[behaviour], "    ")
    (folder / f"{name}.py").write_text(CLI_PLUGIN.format(body=body))


def write_config(folder: Path, text: str) -> Path:
    """``folder/init.toml`` holding ``text`` (dedented)."""
    path = folder / "init.toml"
    path.write_text(textwrap.dedent(text))
    return path


def boot_processes(tag: str) -> list[str]:
    """Live processes whose environment carries ``tag``: what is left of a boot."""
    left = []
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get("INITGRAPH_TEST_MARKER") == tag:
                left.append(f"{proc.pid} {' '.join(proc.cmdline())[:100]}")
        except psutil.Error:
            continue
    return left


class Cli:
    """Runs ``python -m initgraph`` in a folder, marking every process it starts."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.tag = uuid.uuid4().hex
        self.env = {**os.environ, "INITGRAPH_TEST_MARKER": self.tag}

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "initgraph", *args]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the command to its end; fail (and clean up) if it takes more than a minute."""
        proc = self.start(*args)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.terminate()  # SIGTERM: the CLI's own clean way out
            try:
                out, err = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            self.kill_leftovers()
            pytest.fail(f"initgraph {' '.join(args)} hung; stdout:\n{out}\nstderr:\n{err}")
        left = self.kill_leftovers()
        assert left == [], "processes of the boot outlived initgraph"
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def kill_leftovers(self) -> list[str]:
        left = boot_processes(self.tag)
        for line in left:
            with contextlib.suppress(psutil.Error):
                psutil.Process(int(line.split()[0])).kill()
        return left

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args),
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """The command line, run in ``tmp_path``."""
    return Cli(tmp_path)
