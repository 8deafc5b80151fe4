"""Plugin ``cache``: warm the query cache by answering a fixed list of queries ahead of time.

Each query's terms are spell-corrected against the index's vocabulary (the closest term within
``max_edits`` edits, the more frequent on a tie) and then ranked, so the first users' queries, and
their typos, are answered from memory. Publishes ``search.cache`` from its commit hook. With
``flush_to`` set, its shutdown hook writes the cache to that file (JSON), for the next start.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from initgraph import CommitContext, InitContext, hookimpl

from ._config import check_keys, get_int, get_str, get_strs
from .search_index import Hit, SearchIndex, parse_query, rank

__all__ = [
    "CachedQuery",
    "correct",
    "edit_distance",
    "flush",
    "initgraph_commit",
    "initgraph_init",
    "initgraph_shutdown",
    "normalize",
    "warm",
]


@dataclass(frozen=True)
class CachedQuery:
    """A query's answer: the terms it was corrected to (free terms, then phrases) and its hits."""

    terms: tuple[str, ...]
    corrections: Mapping[str, str]
    hits: tuple[Hit, ...]


def normalize(query: str) -> str:
    """The cache key of a query: lowercased, with runs of white space made single spaces."""
    return " ".join(query.lower().split())


def edit_distance(left: str, right: str, limit: int) -> int:
    """Levenshtein distance, or ``limit + 1`` as soon as it is known to exceed ``limit``."""
    if abs(len(left) - len(right)) > limit:
        return limit + 1
    previous = list(range(len(right) + 1))
    for i, a in enumerate(left, start=1):
        current = [i]
        for j, b in enumerate(right, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a != b)))
        if min(current) > limit:
            return limit + 1
        previous = current
    return previous[-1]


def correct(term: str, index: SearchIndex, max_edits: int) -> str:
    """``term`` if the index holds it, else its closest term within ``max_edits`` (or ``term``)."""
    if term in index.postings or max_edits == 0:
        return term
    best, best_key = term, (max_edits + 1, 0, term)
    for candidate, postings in index.postings.items():
        distance = edit_distance(term, candidate, best_key[0])
        key = (distance, -len(postings), candidate)
        if distance <= max_edits and key < best_key:
            best, best_key = candidate, key
    return best


def warm(
    index: SearchIndex, queries: Sequence[str], *, limit: int, max_edits: int
) -> dict[str, CachedQuery]:
    """Answer every query, keyed by :func:`normalize`; the same query twice is answered once."""
    cache: dict[str, CachedQuery] = {}
    for query in queries:
        key = normalize(query)
        if key in cache:
            continue
        free, phrases = parse_query(query)
        fixes = {t: correct(t, index, max_edits) for t in (*free, *(t for p in phrases for t in p))}
        fixed_phrases = [tuple(fixes[t] for t in p) for p in phrases]
        cache[key] = CachedQuery(
            terms=tuple(fixes[t] for t in free) + tuple(t for p in fixed_phrases for t in p),
            corrections={t: c for t, c in fixes.items() if t != c},
            hits=rank(index, [fixes[t] for t in free], fixed_phrases, limit=limit),
        )
    return cache


@hookimpl
def initgraph_init(ctx: InitContext) -> dict[str, CachedQuery]:
    check_keys(ctx.config, ("queries", "max_edits", "flush_to"), plugin=ctx.name)
    cache = warm(
        ctx.results["search_index"],
        get_strs(ctx.config, "queries", (), plugin=ctx.name),
        limit=ctx.results["settings"].max_results,
        max_edits=get_int(ctx.config, "max_edits", 2, plugin=ctx.name, minimum=0, maximum=3),
    )
    ctx.log.info("warmed %d queries", len(cache))
    return cache


@hookimpl
def initgraph_commit(ctx: CommitContext, result: dict[str, CachedQuery]) -> None:
    ctx.publish("search.cache", result)


def flush(cache: Mapping[str, CachedQuery], path: Path) -> None:
    """Write ``cache`` to ``path`` as JSON: each query's terms and the paths of its hits."""
    data = {
        key: {"terms": list(q.terms), "hits": [hit.path for hit in q.hits]}
        for key, q in cache.items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")


@hookimpl
def initgraph_shutdown(ctx: CommitContext, result: dict[str, CachedQuery]) -> None:
    """Flush the cache to disk (``flush_to``), so the next start can read it."""
    target = (
        get_str(ctx.config, "flush_to", "-", plugin=ctx.name) if "flush_to" in ctx.config else ""
    )
    if target:
        flush(result, Path(target))
        ctx.log.info("flushed %d queries to %s", len(result), target)
