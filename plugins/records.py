"""Plugin ``records``: the rows of the service's database, made from the corpus in a worker.

Splitting every document into sections, finding its links and counting its words is text
processing: about 25 ms of Python for this corpus, and it grows with the corpus. ``database``
must run in the parent (its result is a connection, which cannot leave the process that opened
it), and under ``initgraph.lifespan`` the parent is the service's own process, whose event loop
shares the GIL with every thread there. So the text is processed here, in a pool worker, and
``database`` is left only the inserts: a couple of milliseconds of C that let go of the GIL at
every row. Publishes nothing: its result is for ``database``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from initgraph import InitContext, hookimpl

from ._config import check_keys
from ._text import sections, words
from ._types import Document

__all__ = ["Records", "build_records", "initgraph_init", "links"]

_LINK = re.compile(r"(?<!!)\[([^\]\n]+)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def links(text: str) -> list[tuple[str, str]]:
    """The ``(label, target)`` of every inline Markdown link in ``text`` (images excluded)."""
    return [(m.group(1), m.group(2)) for m in _LINK.finditer(text)]


@dataclass(frozen=True)
class Records:
    """The rows of each table of the database, in the tables' column order.

    Documents are numbered from 1 in the corpus's order; sections and links name theirs by
    that number.
    """

    documents: tuple[tuple[int, str, str, str, int], ...]  # id, path, title, body, words
    sections: tuple[tuple[int, int, int, str, str], ...]  # document, position, level, heading, body
    links: tuple[tuple[int, str, str], ...]  # document, label, target


def build_records(documents: Sequence[Document]) -> Records:
    """The rows for ``documents``: one per document, one per section and one per link."""
    rows: list[tuple[int, str, str, str, int]] = []
    parts: list[tuple[int, int, int, str, str]] = []
    found: list[tuple[int, str, str]] = []
    for number, document in enumerate(documents, start=1):
        rows.append(
            (number, document.path, document.title, document.text, len(words(document.text)))
        )
        parts.extend(
            (number, position, s.level, s.heading, s.body)
            for position, s in enumerate(sections(document.text))
        )
        found.extend((number, label, target) for label, target in links(document.text))
    return Records(tuple(rows), tuple(parts), tuple(found))


@hookimpl
def initgraph_init(ctx: InitContext) -> Records:
    check_keys(ctx.config, (), plugin=ctx.name)
    return build_records(ctx.results["corpus"])
