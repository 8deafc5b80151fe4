"""The outputs shown in README.md and docs/ are what the code prints today.

Every ```console block of the docs is a list of commands (``$ ...``) each followed by its output.
Each command this file knows is run from the root of the repository, against the example
application, with ``python -m initgraph``, and its output (stdout, then stderr) is compared with
the block's after both are normalized: decimal numbers (times), the worker count and start
method, the path of a temporary file, and runs of spaces (column widths) are made alike. A
command with shown output that this file does not know fails the test unless it is listed in
``NOT_RUN`` with the reason, so a new example is either checked or knowingly left out.

Every ```python block with an ``if __name__ == "__main__":`` guard that is followed by a ```text
block is run as a script from the root of the repository, and its output compared with that
block the same way (these boot the example, so they are marked slow), except those in
``NOT_RUN``.

The docs must also stand alone: they name no file the repository does not hold, and send no one to
a private module.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Shown output that is not checked here, and why, by the command as written after "$ ".
NOT_RUN = {
    "initgraph run": "an illustration with plugins that are not in the repository",
    "echo $?": "the exit code of the command before it",
    "initgraph run init.toml & sleep 0.45; kill -TERM $!; wait $!; echo $?": (
        "depends on timing; tests/test_signals.py checks the lines"
    ),
    "initgraph critical-chain boot.json": "the chain depends on timing",
    "initgraph critical-chain big.json": "the chain depends on timing",
    "initgraph plan init.toml --from boot.json --workers 1": "the chain depends on timing",
    "initgraph plan init.toml --from boot.json --faster hashes=2": "the chain depends on timing",
    "initgraph plan init.toml --from boot.json --faster hashes=2 --faster search_index=2": (
        "the chain depends on timing"
    ),
    "python -m pytest -q test_my_plugins.py": "needs the reader's test file",
}
# Python examples that are not run, by a string in their source, and why.
NOT_RUN_SCRIPTS = {
    '"plugins.timer"': "needs plugins/timer.py and plugins/report.py, saved by the reader",
}


@dataclass(frozen=True)
class Shown:
    """One command or script of the docs and the output shown for it."""

    where: str  # file:line
    command: str  # the console command, or the Python source
    output: str


def _blocks(path: Path) -> Iterator[tuple[int, str, str]]:
    """``(line, language, body)`` of each fenced block of ``path``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        indent, lang, start = m.group(1), m.group(2), i + 1
        i += 1
        body = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent) :])
            i += 1
        i += 1
        yield start, lang, "\n".join(body)


def _commands() -> list[Shown]:
    shown = []
    for path in DOCS:
        rel = path.relative_to(ROOT)
        for line, lang, body in _blocks(path):
            if lang != "console":
                continue
            command, output, at = None, [], line
            for n, text in enumerate(body.splitlines(), line + 1):
                if text.startswith("$ "):
                    if command is not None:
                        shown.append(Shown(f"{rel}:{at}", command, "\n".join(output)))
                    command, output, at = _strip_comment(text[2:]), [], n
                else:
                    output.append(text)
            if command is not None:
                shown.append(Shown(f"{rel}:{at}", command, "\n".join(output)))
    return [s for s in shown if s.output.strip()]  # shown without output: nothing to check


def _scripts() -> list[Shown]:
    shown = []
    for path in DOCS:
        rel = path.relative_to(ROOT)
        blocks = list(_blocks(path))
        for (line, lang, body), (_, next_lang, next_body) in itertools.pairwise(blocks):
            if lang == "python" and 'if __name__ == "__main__":' in body and next_lang == "text":
                shown.append(Shown(f"{rel}:{line}", body, next_body))
    return shown


def _strip_comment(command: str) -> str:
    return re.sub(r"\s+#\s.*$", "", command).strip()


def normalize(text: str) -> list[str]:
    """What may differ between two runs made alike: times, worker count, start method, widths."""
    out = []
    for line in text.strip("\n").splitlines():
        line = re.sub(r"\d[\d,]*\.\d+", "T", line)  # times and ratios
        line = re.sub(r"\b\d+ workers?\b", "W workers", line)
        line = re.sub(r"\((fork|forkserver|spawn)\)", "(M)", line)
        line = re.sub(r"start method (fork|forkserver|spawn)", "start method M", line)
        line = re.sub(r"\b(faster|slower) than", "F than", line)
        line = re.sub(r"^Tx: (Tx F than)", r"\1", line)  # the slower form names both ratios
        line = re.sub(r"^critical chain T ms: .*", "critical chain T ms: ...", line)
        line = re.sub(r"\b\d+ rows\b", "N rows", line)
        out.append(" ".join(line.split()))
    return out


def _initgraph(*args: str, cwd: Path = ROOT) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "COLUMNS")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "initgraph", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """``initgraph run init.toml`` once, as the docs show it (two workers), with a trace."""
    trace = tmp_path_factory.mktemp("docs") / "boot.json"
    # The docs show a machine with two CPUs; --workers 2 gives that output on any machine.
    return _initgraph("run", "init.toml", "--workers", "2", "--trace", str(trace)), trace


@pytest.fixture(scope="module")
def big_traced(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """The boot with a 100 MiB result (docs/big_result), once, with a trace."""
    trace = tmp_path_factory.mktemp("docs") / "big.json"
    return _initgraph("run", "docs/big_result/init.toml", "--trace", str(trace)), trace


COMPARE = "initgraph run init.toml --compare"  # two boots: its own test, marked slow
COMMANDS = _commands()
CHECKED = [s for s in COMMANDS if s.command not in NOT_RUN and s.command != COMPARE]
SCRIPTS = [s for s in _scripts() if not any(m in s.command for m in NOT_RUN_SCRIPTS)]


def test_every_shown_command_is_checked_or_listed_as_not_run() -> None:
    """What is left out of the checks is left out knowingly: listed in NOT_RUN with a reason."""
    assert COMMANDS, "no console block found in the docs"
    assert all(s.command in NOT_RUN or s in CHECKED for s in COMMANDS if s.command != COMPARE)
    listed = {s.command for s in COMMANDS}
    assert set(NOT_RUN) <= listed, f"NOT_RUN lists commands no doc shows: {set(NOT_RUN) - listed}"
    scripts = [s.command for s in _scripts()]
    assert all(any(m in s for s in scripts) for m in NOT_RUN_SCRIPTS), "a stale NOT_RUN_SCRIPTS"


@pytest.mark.parametrize("shown", CHECKED, ids=[s.where for s in CHECKED])
def test_shown_command_output_is_what_it_prints(
    shown: Shown, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    command = shown.command
    big = "big.json" in command
    run_output, trace = request.getfixturevalue("big_traced" if big else "traced")
    expected, sort = shown.output, False
    if command in (
        "initgraph run init.toml",
        "initgraph run docs/big_result/init.toml --trace big.json",
    ):
        actual = run_output
    elif command == "initgraph check init.toml":
        actual = _initgraph("check", "init.toml", "--workers", "2")
    elif command in ("initgraph blame boot.json", "initgraph blame big.json"):
        actual, sort = _initgraph("blame", str(trace)), True  # rows sorted by a time
    elif command == "initgraph plot boot.json -o boot.svg":
        actual = _initgraph("plot", str(trace), "-o", str(tmp_path / "boot.svg"))
        actual = actual.replace(str(tmp_path / "boot.svg"), "boot.svg")
    elif command == "initgraph check /tmp/bad.toml":
        bad = tmp_path / "bad.toml"
        bad.write_text('[initgraph]\non_eror = "abort"\n', encoding="utf-8")
        actual = _initgraph("check", str(bad)).replace(str(bad), "/tmp/bad.toml")
    elif command == "cd /tmp && initgraph run":
        actual = _initgraph("run", cwd=tmp_path)
    elif command == "initgraph run --workers two":
        actual = _initgraph("run", "--workers", "two")
    elif command == "initgraph --version":
        actual = _initgraph("--version")
    elif command == "initgraph run init.toml --json":
        _check_json(shown.output, _initgraph("run", "init.toml", "--workers", "2", "--json"))
        return
    else:
        pytest.fail(
            f"{shown.where}: `$ {command}` shows output that tests/test_docs.py does not check; "
            "teach it the command, or add it to NOT_RUN with the reason"
        )
    want, got = normalize(expected), normalize(actual)
    if sort:
        want, got = sorted(want), sorted(got)
    assert got == want, f"{shown.where}: the output of `{command}` changed:\n{actual}"


@pytest.mark.slow
def test_shown_compare_output_is_what_it_prints() -> None:
    (shown,) = [s for s in COMMANDS if s.command == COMPARE]
    actual = _initgraph("run", "init.toml", "--workers", "2", "--compare")
    # The block elides the table with "..." and shows the lines after it.
    expected = shown.output.split("...\n", 1)[-1]
    tail = actual.strip().splitlines()[-len(expected.strip().splitlines()) :]
    assert normalize("\n".join(tail)) == normalize(expected), f"{shown.where}:\n{actual}"


def _check_json(shown: str, actual: str) -> None:
    """The keys the docs show are the keys the JSON has (the block elides values with ...)."""
    doc = json.loads(actual)
    keys = {*doc, *doc["plugins"][0], *doc["registry"][0]}
    assert set(re.findall(r'^\s*"([a-z_]+)":', shown, re.MULTILINE)) == keys


@pytest.mark.slow
@pytest.mark.parametrize("shown", SCRIPTS, ids=[s.where for s in SCRIPTS])
def test_shown_script_output_is_what_it_prints(shown: Shown, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(shown.command, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert normalize(proc.stdout) == normalize(shown.output), f"{shown.where}:\n{proc.stdout}"


# ASGI apps the docs show (a block that makes ``app = Starlette(lifespan=...)``): each is run as it
# is, its lifespan entered as a server enters it, and a real request made to it.
APPS = [
    Shown(f"{path.relative_to(ROOT)}:{line}", body, "")
    for path in DOCS
    for line, lang, body in _blocks(path)
    if lang == "python" and "= Starlette(lifespan=" in body
]


@pytest.mark.slow
@pytest.mark.parametrize("shown", APPS, ids=[s.where for s in APPS])
def test_shown_starlette_lifespan_boots_and_serves(
    shown: Shown, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    monkeypatch.chdir(ROOT)  # the snippet boots "init.toml", relative to the clone's root
    namespace: dict[str, Any] = {"__name__": "shown_app"}
    exec(compile(shown.command, shown.where, "exec"), namespace)
    app = namespace["app"]

    async def main() -> None:
        async with app.router.lifespan_context(app):
            assert app.state.boot.ok
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                found = await client.get("/api/search", params={"q": "embedding lifespan"})
        assert found.status_code == 200, found.text
        assert found.json()["hits"][0]["path"] == "embedding.md"
        boot = app.state.boot  # shut down when the lifespan ended
        assert all(boot.timings[p].shutdown_ended is not None for p in ("database", "web"))
        assert boot.shutdown_failures == {}

    asyncio.run(main())


def test_the_docs_find_examples() -> None:
    """A guard against a parser that silently finds nothing."""
    commands = {s.command for s in COMMANDS}
    assert {"initgraph run init.toml", "initgraph check init.toml"} <= commands
    assert len(SCRIPTS) >= 3
    assert [s.where.split(":")[0] for s in APPS] == ["docs/embedding.md"]


MISSING = ("PERF-NOTES", "KERNEL-NOTES", "DESIGN.md", "STYLE.md")


@pytest.mark.parametrize("path", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_the_docs_stand_alone(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for name in MISSING:
        assert name not in text, f"{path.name} names {name}, which the repository does not hold"
    private = sorted(set(re.findall(r"initgraph\._(?!_)\w+(?:\.\w+)*", text)))
    assert not private, f"{path.name} sends readers to private names: {private}"


def test_the_files_the_docs_link_exist() -> None:
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
            assert (path.parent / target).exists(), f"{path.name} links {target}, which is missing"


# Files a page asks the reader to create.
READER_FILES = {"plugins/report.py", "plugins/timer.py"}


def test_the_files_the_docs_name_exist() -> None:
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for name in re.findall(r"`((?:initgraph|tests|benchmarks|plugins|docs)/[\w./-]+)", text):
            name = name.split("::")[0].rstrip(".")
            if name not in READER_FILES:
                assert (ROOT / name).exists(), f"{path.name} names {name}, which is missing"
