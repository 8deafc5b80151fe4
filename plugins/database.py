"""Plugin ``database``: load the corpus into a SQLite database the service answers from.

It runs with ``where = "main"``: its result is the open :class:`sqlite3.Connection`, which
cannot leave the process that made it, so the work happens in the parent and the boot's
``results["database"]`` is the live connection. The rows come ready from ``records``, made in a
worker, so the parent only inserts them. Its init is ``async def`` and inserts in a thread, so
a boot under ``initgraph.lifespan`` does not stall the event loop.
Publishes ``db.tables`` (rows per table) from its commit hook; a connection itself cannot be
published.

With ``run_dir`` set, the database has a server to wait for, as a real one would: the first
attempt starts it (a thread that comes up after ``server_startup`` seconds, writing
``<run_dir>/server.<pid>.ready``) and raises :class:`initgraph.NotReady`; the boot retries the
init (the plugin's ``retries``) until the server is up. The open database holds
``<run_dir>/database.<pid>.lock``; the shutdown hook closes the connection, removes the lock
and stops the server.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from pathlib import Path

from initgraph import CommitContext, InitContext, NotReady, hookimpl

from ._config import check_keys, get_float, get_str
from .records import Records

__all__ = [
    "TABLES",
    "build_database",
    "initgraph_commit",
    "initgraph_init",
    "initgraph_shutdown",
    "row_counts",
    "start_server",
]

TABLES = ("documents", "sections", "links")

SCHEMA = """
DROP TABLE IF EXISTS links;
DROP TABLE IF EXISTS sections;
DROP TABLE IF EXISTS documents;
CREATE TABLE documents (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    words INTEGER NOT NULL
);
CREATE TABLE sections (
    id INTEGER PRIMARY KEY,
    document_id INTEGER NOT NULL REFERENCES documents (id),
    position INTEGER NOT NULL,
    level INTEGER NOT NULL,
    heading TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE links (
    document_id INTEGER NOT NULL REFERENCES documents (id),
    label TEXT NOT NULL,
    target TEXT NOT NULL
);
CREATE INDEX sections_by_document ON sections (document_id, position);
CREATE INDEX links_by_target ON links (target);
"""


def build_database(records: Records, path: str = ":memory:") -> sqlite3.Connection:
    """Create the schema at ``path`` (replacing its tables) and insert ``records`` into it."""
    # The boot may run a main-process init on another thread than its commit, and the service
    # uses the connection from yet another: sqlite3 serializes access itself.
    connection = sqlite3.connect(path, check_same_thread=False)
    try:
        with connection:
            connection.executescript(SCHEMA)
            connection.executemany(
                "INSERT INTO documents (id, path, title, body, words) VALUES (?, ?, ?, ?, ?)",
                records.documents,
            )
            connection.executemany(
                "INSERT INTO sections (document_id, position, level, heading, body)"
                " VALUES (?, ?, ?, ?, ?)",
                records.sections,
            )
            connection.executemany(
                "INSERT INTO links (document_id, label, target) VALUES (?, ?, ?)", records.links
            )
    except BaseException:
        connection.close()
        raise
    return connection


def row_counts(connection: sqlite3.Connection) -> dict[str, int]:
    """The number of rows in each table of :data:`TABLES`."""
    return {
        table: int(connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        for table in TABLES
    }


# Named by the process that runs the database (the boot's, as it runs where = "main"), so
# that two boots of the app at once each have their own server and lock.
READY = "server.{pid}.ready"
LOCK = "database.{pid}.lock"


def start_server(run_dir: Path, startup: float) -> threading.Thread:
    """Start the database server: it is up ``startup`` seconds from now (``server.ready``)."""

    def come_up() -> None:
        time.sleep(startup)  # what a server does before it accepts connections
        (run_dir / READY.format(pid=os.getpid())).write_text("up\n")

    server = threading.Thread(target=come_up, name="database-server", daemon=True)
    server.start()
    return server


_servers: dict[Path, threading.Thread] = {}


@hookimpl
async def initgraph_init(ctx: InitContext) -> sqlite3.Connection:
    check_keys(ctx.config, ("path", "run_dir", "server_startup"), plugin=ctx.name)
    path = get_str(ctx.config, "path", ":memory:", plugin=ctx.name)
    run = get_str(ctx.config, "run_dir", "-", plugin=ctx.name) if "run_dir" in ctx.config else ""
    if run:
        run_dir = Path(run).resolve()
        if not (run_dir / READY.format(pid=os.getpid())).exists():
            if run_dir not in _servers:
                run_dir.mkdir(parents=True, exist_ok=True)
                startup = get_float(
                    ctx.config, "server_startup", 0.2, plugin=ctx.name, minimum=0.0, maximum=10.0
                )
                _servers[run_dir] = start_server(run_dir, startup)
            msg = f"the database server in {run} is starting"
            raise NotReady(msg)
        (run_dir / LOCK.format(pid=os.getpid())).write_text(f"{os.getpid()}\n")
    # In a thread: under initgraph.lifespan this init runs on the service's event loop. The
    # rows were made in a worker (plugins.records); what is left is sqlite3's inserts.
    return await asyncio.to_thread(build_database, ctx.results["records"], path)


@hookimpl
def initgraph_commit(ctx: CommitContext, result: sqlite3.Connection) -> None:
    ctx.publish("db.tables", row_counts(result))


@hookimpl
def initgraph_shutdown(ctx: CommitContext, result: sqlite3.Connection) -> None:
    """Close the database, remove its lock and stop its server."""
    result.close()
    run = get_str(ctx.config, "run_dir", "-", plugin=ctx.name) if "run_dir" in ctx.config else ""
    if run:
        run_dir = Path(run).resolve()
        server = _servers.pop(run_dir, None)
        if server is not None:
            server.join()
        for name in (LOCK, READY):
            (run_dir / name.format(pid=os.getpid())).unlink(missing_ok=True)
