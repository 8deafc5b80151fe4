"""Plugin ``database``: load the corpus into a SQLite database the service answers from.

It runs with ``where = "main"``: its result is the open :class:`sqlite3.Connection`, which
cannot leave the process that made it, so the work happens in the parent and the boot's
``results["database"]`` is the live connection. Its init is ``async def`` and loads the
database in a thread, so a boot under ``initgraph.lifespan`` does not stall the event loop.
Publishes ``db.tables`` (rows per table) from its commit hook; a connection itself cannot be
published.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Sequence

from initgraph import CommitContext, InitContext, hookimpl

from ._config import check_keys, get_str
from ._text import sections, words
from ._types import Document

__all__ = ["TABLES", "build_database", "initgraph_commit", "initgraph_init", "links", "row_counts"]

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

_LINK = re.compile(r"(?<!!)\[([^\]\n]+)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def links(text: str) -> list[tuple[str, str]]:
    """The ``(label, target)`` of every inline Markdown link in ``text`` (images excluded)."""
    return [(m.group(1), m.group(2)) for m in _LINK.finditer(text)]


def build_database(documents: Sequence[Document], path: str = ":memory:") -> sqlite3.Connection:
    """Create the schema at ``path`` (replacing its tables) and load every document into it."""
    # The boot may run a main-process init on another thread than its commit, and the service
    # uses the connection from yet another: sqlite3 serializes access itself.
    connection = sqlite3.connect(path, check_same_thread=False)
    try:
        with connection:
            connection.executescript(SCHEMA)
            for number, document in enumerate(documents, start=1):
                length = len(words(document.text))
                connection.execute(
                    "INSERT INTO documents (id, path, title, body, words) VALUES (?, ?, ?, ?, ?)",
                    (number, document.path, document.title, document.text, length),
                )
                connection.executemany(
                    "INSERT INTO sections (document_id, position, level, heading, body)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [
                        (number, position, s.level, s.heading, s.body)
                        for position, s in enumerate(sections(document.text))
                    ],
                )
                connection.executemany(
                    "INSERT INTO links (document_id, label, target) VALUES (?, ?, ?)",
                    [(number, label, target) for label, target in links(document.text)],
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


@hookimpl
async def initgraph_init(ctx: InitContext) -> sqlite3.Connection:
    check_keys(ctx.config, ("path",), plugin=ctx.name)
    path = get_str(ctx.config, "path", ":memory:", plugin=ctx.name)
    # In a thread: under initgraph.lifespan this init runs on the service's event loop, and
    # loading the corpus takes tens of milliseconds the loop must not stall for.
    return await asyncio.to_thread(build_database, ctx.results["corpus"], path)


@hookimpl
def initgraph_commit(ctx: CommitContext, result: sqlite3.Connection) -> None:
    ctx.publish("db.tables", row_counts(result))
