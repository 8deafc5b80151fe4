"""Plugin ``search_index``: build the positional inverted index and tune its ranking.

The index maps each term to its postings, ``(document number, positions)`` sorted by document.
Ranking is BM25; its two parameters are tuned at start-up by a grid search against known-item
queries simulated from the corpus itself (a heading, or the rarest words of a sentence, should
find their own document). The search and the query cache then rank with the winner. Publishes
``search.index`` from its commit hook.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from initgraph import CommitContext, InitContext, hookimpl

from ._config import check_keys, get_floats, get_int
from ._text import sections, terms
from ._types import Document

__all__ = [
    "Hit",
    "Ranking",
    "SearchIndex",
    "build_index",
    "initgraph_commit",
    "initgraph_init",
    "known_item_queries",
    "parse_query",
    "rank",
    "rank_of",
    "score",
    "search",
    "tune_ranking",
]

Posting = tuple[int, tuple[int, ...]]

_PHRASE = re.compile(r'"([^"]*)"')
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n\s*\n")


@dataclass(frozen=True)
class Ranking:
    """BM25 parameters, and the mean reciprocal rank they reached on the tuning queries."""

    k1: float = 1.2
    b: float = 0.75
    mrr: float = 0.0


@dataclass(frozen=True)
class SearchIndex:
    """A positional inverted index over numbered documents."""

    paths: tuple[str, ...]
    titles: tuple[str, ...]
    lengths: tuple[int, ...]
    postings: Mapping[str, tuple[Posting, ...]]
    ranking: Ranking = field(default_factory=Ranking)

    @property
    def average_length(self) -> float:
        return sum(self.lengths) / len(self.lengths) if self.lengths else 0.0


@dataclass(frozen=True)
class Hit:
    """One search result."""

    path: str
    title: str
    score: float


def build_index(documents: Sequence[Document]) -> SearchIndex:
    """Index the terms of each document with their positions; document numbers follow the order."""
    positions: dict[str, dict[int, list[int]]] = {}
    lengths = []
    for number, document in enumerate(documents):
        found = terms(document.text)
        lengths.append(len(found))
        for position, term in enumerate(found):
            positions.setdefault(term, {}).setdefault(number, []).append(position)
    postings = {
        term: tuple((number, tuple(places)) for number, places in sorted(by_doc.items()))
        for term, by_doc in sorted(positions.items())
    }
    return SearchIndex(
        paths=tuple(d.path for d in documents),
        titles=tuple(d.title for d in documents),
        lengths=tuple(lengths),
        postings=postings,
    )


def score(index: SearchIndex, query_terms: Iterable[str], ranking: Ranking) -> dict[int, float]:
    """BM25 score of every document that holds at least one of ``query_terms``."""
    count, average = len(index.paths), index.average_length or 1.0
    k1, b = ranking.k1, ranking.b
    scores: dict[int, float] = {}
    for term in dict.fromkeys(query_terms):
        postings = index.postings.get(term, ())
        if not postings:
            continue
        idf = math.log(1.0 + (count - len(postings) + 0.5) / (len(postings) + 0.5))
        for number, places in postings:
            tf = len(places)
            norm = k1 * (1.0 - b + b * index.lengths[number] / average)
            scores[number] = scores.get(number, 0.0) + idf * tf * (k1 + 1.0) / (tf + norm)
    return scores


def _holds_phrase(index: SearchIndex, number: int, phrase: Sequence[str]) -> bool:
    places: list[set[int]] = []
    for term in phrase:
        by_doc = dict(index.postings.get(term, ()))
        if number not in by_doc:
            return False
        places.append(set(by_doc[number]))
    return any(all(start + i in places[i] for i in range(1, len(phrase))) for start in places[0])


def parse_query(query: str) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """Split a query into its free terms and its ``"quoted"`` phrases, each a tuple of terms."""
    phrases = tuple(found for p in _PHRASE.findall(query) if (found := tuple(terms(p))))
    return tuple(terms(_PHRASE.sub(" ", query))), phrases


def rank(
    index: SearchIndex,
    free: Sequence[str],
    phrases: Sequence[Sequence[str]] = (),
    *,
    limit: int = 10,
) -> tuple[Hit, ...]:
    """The best ``limit`` documents for the terms; each phrase must appear in a hit, in order."""
    scores = score(index, [*free, *(t for p in phrases for t in p)], index.ranking)
    hits = [
        Hit(index.paths[n], index.titles[n], round(s, 6))
        for n, s in scores.items()
        if all(_holds_phrase(index, n, p) for p in phrases)
    ]
    hits.sort(key=lambda h: (-h.score, h.path))
    return tuple(hits[:limit])


def search(index: SearchIndex, query: str, *, limit: int = 10) -> tuple[Hit, ...]:
    """The best ``limit`` documents for ``query``; ``"quoted words"`` must appear as a phrase."""
    free, phrases = parse_query(query)
    return rank(index, free, phrases, limit=limit)


def known_item_queries(
    documents: Sequence[Document],
    index: SearchIndex,
    *,
    limit: int,
    lengths: Sequence[int] = (2, 3),
) -> tuple[tuple[tuple[str, ...], int], ...]:
    """Up to ``limit`` simulated queries, each with the document it should find.

    A user who remembers a passage searches for its rarest words: each section heading is a
    query, and so are the rarest terms of each sentence of four terms or more, one query per
    length in ``lengths``. When there are more than ``limit``, every n-th is kept, so that every
    document takes part.
    """
    queries: list[tuple[tuple[str, ...], int]] = []
    for number, document in enumerate(documents):
        for section in sections(document.text):
            if section.level > 0 and (heading := tuple(terms(section.heading))):
                queries.append((heading, number))
            for sentence in _SENTENCE.split(section.body):
                found = set(terms(sentence))
                if len(found) >= 4:
                    rarest = sorted(found, key=lambda t: (len(index.postings.get(t, ())), t))
                    queries.extend((tuple(rarest[:length]), number) for length in lengths)
    if limit == 0:
        return ()
    step = max(1, math.ceil(len(queries) / limit))
    return tuple(queries[::step][:limit])


def rank_of(scores: Mapping[int, float], expected: int) -> int:
    """The 1-based rank of ``expected`` among scored documents, ties going to the lower number."""
    target = scores.get(expected)
    if target is None:
        return 0
    return 1 + sum(1 for n, s in scores.items() if s > target or (s == target and n < expected))


def tune_ranking(
    index: SearchIndex,
    queries: Sequence[tuple[Sequence[str], int]],
    *,
    k1_grid: Sequence[float],
    b_grid: Sequence[float],
) -> Ranking:
    """Grid-search BM25's parameters for the best mean reciprocal rank; ties keep grid order."""
    best = Ranking(k1_grid[0], b_grid[0], 0.0)
    if not queries:
        return best
    for k1 in k1_grid:
        for b in b_grid:
            ranking = Ranking(k1, b)
            total = 0.0
            for query_terms, expected in queries:
                rank = rank_of(score(index, query_terms, ranking), expected)
                total += 1.0 / rank if rank else 0.0
            mrr = round(total / len(queries), 6)
            if mrr > best.mrr:
                best = Ranking(k1, b, mrr)
    return best


@hookimpl
def initgraph_init(ctx: InitContext) -> SearchIndex:
    check_keys(ctx.config, ("k1", "b", "tuning_queries"), plugin=ctx.name)
    k1_grid = get_floats(ctx.config, "k1", (1.2,), plugin=ctx.name, minimum=0.0, maximum=10.0)
    b_grid = get_floats(ctx.config, "b", (0.75,), plugin=ctx.name, minimum=0.0, maximum=1.0)
    limit = get_int(ctx.config, "tuning_queries", 200, plugin=ctx.name, minimum=0)
    documents: tuple[Document, ...] = ctx.results["corpus"]
    index = build_index(documents)
    ranking = tune_ranking(
        index, known_item_queries(documents, index, limit=limit), k1_grid=k1_grid, b_grid=b_grid
    )
    ctx.log.info("indexed %d terms; ranking %s", len(index.postings), ranking)
    return replace(index, ranking=ranking)


@hookimpl
def initgraph_commit(ctx: CommitContext, result: SearchIndex) -> None:
    ctx.publish("search.index", result)
