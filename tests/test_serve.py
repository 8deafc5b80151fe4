"""The example serves: its app in process (httpx, Starlette's TestClient) and ``run --serve``.

In process, the routes the boot's ``http`` domain registered answer real queries; a failing
plugin makes the lifespan raise before a request is served; a cancelled boot leaves no process
(the autouse check). End to end, ``initgraph run init.toml --serve --port 0`` prints the address
once uvicorn accepts connections (no polling needed), answers over HTTP on 127.0.0.1, and stops
on SIGTERM with exit 0 and its shutdown line; a SIGTERM during its boot keeps 143.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomllib
from conftest import ROOT, Cli, write_config, write_plugin
from starlette.applications import Starlette

import initgraph
from initgraph import BootError
from plugins._text import terms
from plugins.corpus import read_corpus
from plugins.search_index import build_index

pytestmark = pytest.mark.slow  # whole boots of the example, a dozen processes each


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """init.toml as a dict, 2 workers, from the repository's root (its paths are relative)."""
    monkeypatch.chdir(ROOT)
    with (ROOT / "init.toml").open("rb") as file:
        config = tomllib.load(file)
    config["initgraph"]["workers"] = 2
    return config


def with_plugin(config: dict[str, Any], folder: Path, name: str, behaviour: str) -> None:
    write_plugin(folder, name, behaviour)
    config["initgraph"]["paths"] = [".", str(folder)]
    config["plugins"][name] = {"module": name}


def a_word_only_in(name: str) -> str:
    """A word that docs/``name`` holds and no other page of docs/ does: its search has one hit.

    Taken from the corpus the example indexes, so these tests do not depend on how the wording of
    the docs happens to rank.
    """
    index = build_index(read_corpus(ROOT / "docs"))
    number = index.paths.index(name)
    only = [t for t, posts in index.postings.items() if [n for n, _ in posts] == [number]]
    return min(t for t in only if t.isalpha() and terms(t) == [t])  # a query of itself


def paths(found: httpx.Response) -> list[str]:
    assert found.status_code == 200, found.text
    return [hit["path"] for hit in found.json()["hits"]]


def test_the_routes_the_boot_registered_answer_real_queries(example: dict[str, Any]) -> None:
    async def main() -> None:
        async with initgraph.lifespan(example) as boot:
            app = boot.registry["asgi.app"]
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                found = await client.get("/api/search", params={"q": "embedding lifespan"})
                assert "embedding.md" in paths(found)
                posted = await client.post("/api/search", json={"q": "embedding lifespan"})
                assert paths(posted) == paths(found)
                word = a_word_only_in("embedding.md")
                only = await client.get("/api/search", params={"q": word})
                assert paths(only) == ["embedding.md"], word
                doc = await client.get("/api/documents/embedding.md")
                assert doc.json()["body"] == (ROOT / "docs" / "embedding.md").read_text()
                missing = await client.get("/api/documents/nope.md")
                assert (missing.status_code, missing.json()) == (
                    404,
                    {"error": "no document 'nope.md'"},
                )
                metrics = (await client.get("/admin/metrics")).json()
                assert list(metrics["plugins"]) == [p.name for p in boot.plan.plugins]
                assert metrics["plugins"]["database"]["status"] == "ok"
                assert metrics["boot_ms"] == round(boot.wall * 1e3, 3)
                reload = await client.post("/admin/reload")
                assert reload.status_code == 501
            served = [r.path for r in app.routes]
            published = [v.path for k, v in boot.registry.items() if k.startswith("http.route.")]
            assert served == published
        # shut down: the app no longer answers from the closed boot
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            gone = await client.get("/admin/health")
            assert (gone.status_code, gone.json()) == (503, {"error": "the service is not booted"})

    asyncio.run(main())


def starlette_app(config: dict[str, Any], served: list[str]) -> Starlette:
    """The embedding of docs/embedding.md: a Starlette app whose lifespan boots initgraph."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with initgraph.lifespan(config) as boot:
            app.mount("/", boot.registry["asgi.app"])
            yield
        served.append("shut down")

    return Starlette(lifespan=lifespan)


@contextlib.asynccontextmanager
async def running(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """The app's lifespan, as a server runs it, and a client of the app."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


def test_a_starlette_lifespan_serves_the_boot(example: dict[str, Any]) -> None:
    served: list[str] = []

    async def main() -> None:
        async with running(starlette_app(example, served)) as client:
            word = a_word_only_in("reliability.md")
            found = await client.get("/api/search", params={"q": word})
            assert paths(found) == ["reliability.md"], word
            health = await client.get("/admin/health")
            assert health.json() == {"status": "ok", "service": "docsearch"}

    asyncio.run(main())
    assert served == ["shut down"]


def test_a_failing_plugin_makes_the_lifespan_raise_and_nothing_is_served(
    example: dict[str, Any], tmp_path: Path
) -> None:
    with_plugin(example, tmp_path, "broken", "raise")
    served: list[str] = []

    async def main() -> None:
        async with running(starlette_app(example, served)):
            pytest.fail("the lifespan must raise before a request is served")

    with pytest.raises(BootError, match=r"^boot failed: plugin 'broken': "):
        asyncio.run(main())
    assert served == []


def test_cancelling_the_lifespan_mid_boot_leaves_no_process(
    example: dict[str, Any], tmp_path: Path
) -> None:
    """blocker signals through a FIFO that it runs, then blocks; the boot is then cancelled."""
    with_plugin(example, tmp_path, "blocker", "block")
    started, never = tmp_path / "started", tmp_path / "never"
    os.mkfifo(started)
    os.mkfifo(never)
    example["plugins"]["blocker"]["config"] = {"marker": str(started), "fifo": str(never)}

    async def main() -> None:
        boot = asyncio.create_task(initgraph.aboot(example))
        # the plugin's write_text opens the FIFO: this read returns once it has run
        assert await asyncio.to_thread(started.read_text) != ""
        boot.cancel()
        with pytest.raises(asyncio.CancelledError):
            await boot

    asyncio.run(main())  # the autouse check: no process left


# -- end to end ----------------------------------------------------------------------------------
SERVING = re.compile(r"^serving http://127\.0\.0\.1:(\d+) until SIGINT or SIGTERM$")


def read_line_matching(
    proc: subprocess.Popen[str], pattern: re.Pattern[str]
) -> tuple[re.Match[str], str]:
    """Read stdout, within a bound, up to a line matching ``pattern``; the match, what was read."""
    assert proc.stdout is not None
    deadline = time.monotonic() + 90
    seen = ""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            line = proc.stdout.readline()
            if not line:
                break
            seen += line
            if found := pattern.match(line.rstrip("\n")):
                return found, seen
    proc.kill()
    out, err = proc.communicate()
    pytest.fail(f"no line matching {pattern.pattern!r}; stdout:\n{seen}{out}\nstderr:\n{err}")


def end(proc: subprocess.Popen[str], cli: Cli) -> tuple[str, str]:
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"initgraph did not stop; stderr:\n{err}")
    assert cli.kill_leftovers() == [], "processes of the boot outlived initgraph"
    return out, err


def test_run_serve_answers_over_http_and_stops_cleanly_on_sigterm() -> None:
    cli = Cli(ROOT)
    proc = cli.start("run", "init.toml", "--serve", "--workers", "2", "--port", "0")
    # The line is printed once uvicorn accepts connections: no polling of the port.
    found, before = read_line_matching(proc, SERVING)
    assert "booted 12 plugins in " in before
    base = f"http://127.0.0.1:{found.group(1)}"
    with httpx.Client(base_url=base, timeout=30) as client:
        word = a_word_only_in("embedding.md")
        assert paths(client.get("/api/search", params={"q": word})) == ["embedding.md"], word
        assert client.get("/admin/health").json() == {"status": "ok", "service": "docsearch"}
    proc.send_signal(signal.SIGTERM)
    out, err = end(proc, cli)
    assert proc.returncode == 0, err
    # cache, database and web have shutdown hooks; their commit order depends on timing.
    shutdown = re.fullmatch(
        r"shut down 3 plugins in \d+\.\d ms, last committed first: "
        r"(\w+) \d+\.\d, (\w+) \d+\.\d, (\w+) \d+\.\d\n",
        out,
    )
    assert shutdown is not None, out
    assert sorted(shutdown.group(1, 2, 3)) == ["cache", "database", "web"]
    assert err == ""


def test_run_serve_interrupted_during_its_boot_exits_143(cli: Cli) -> None:
    write_plugin(cli.cwd, "blocker", "block")
    os.mkfifo(cli.cwd / "fifo")
    marker = cli.cwd / "marker"
    write_config(
        cli.cwd,
        f"""\
        [plugins.blocker]
        module = "blocker"
        config = {{ fifo = "{cli.cwd / "fifo"}", marker = "{marker}" }}
        """,
    )
    proc = cli.start("run", "--serve", "--port", "0")
    deadline = time.monotonic() + 60  # bounded poll for the marker the plugin writes
    while not (marker.exists() and marker.read_text()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the blocking plugin never started"
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    out, err = end(proc, cli)
    assert proc.returncode == 143, err
    assert out == ""
    assert err.splitlines() == [
        "initgraph: terminated",
        err.splitlines()[1],
    ]
    assert re.fullmatch(
        r"initgraph: boot stopped after \d+\.\d+ s: 0 of 1 plugin committed; "
        r"cancelled while running: 1 \(blocker\)",
        err.splitlines()[1],
    ), err


def test_serve_without_an_app_is_a_usage_error(cli: Cli) -> None:
    write_plugin(cli.cwd, "quick", "ok")
    write_config(cli.cwd, '[plugins.quick]\nmodule = "quick"\n')
    done = cli.run("run", "--serve", "--port", "0")
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        "initgraph: error: --serve: no plugin published an ASGI app under 'asgi.app'; "
        "nothing to serve\n"
    )
    assert sys.executable  # the command ran in this interpreter's environment
