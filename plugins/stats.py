"""Plugin ``stats``: corpus statistics for the service's status page, and the corpus version.

Its init sums up what the plugins it requires produced. Its commit hook reads the registry: the
per-document hashes that ``hashes`` published become one corpus version (an ETag for the whole
corpus), published with the statistics as ``stats.summary``.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from initgraph import CommitContext, InitContext, hookimpl

from ._config import check_keys, get_int
from ._types import Document
from .hashes import Fingerprints
from .rules import Lint
from .search_index import SearchIndex

__all__ = ["CorpusStats", "corpus_version", "initgraph_commit", "initgraph_init", "summarize"]


@dataclass(frozen=True)
class CorpusStats:
    """Counts over the corpus and the work done on it at start-up."""

    documents: int
    characters: int
    terms: int
    postings: int
    top_terms: tuple[tuple[str, int], ...]
    findings: Mapping[str, int]
    near_duplicates: int
    ranking_mrr: float
    version: str = field(default="")


def summarize(
    documents: Sequence[Document],
    index: SearchIndex,
    fingerprints: Fingerprints,
    lint: Lint,
    *,
    top: int = 10,
) -> CorpusStats:
    """Count what the corpus holds; ``top_terms`` are the most widespread terms, then by name."""
    spread = sorted(((t, len(p)) for t, p in index.postings.items()), key=lambda x: (-x[1], x[0]))
    return CorpusStats(
        documents=len(documents),
        characters=sum(len(d.text) for d in documents),
        terms=len(index.postings),
        postings=sum(len(p) for p in index.postings.values()),
        top_terms=tuple(spread[:top]),
        findings=dict(sorted(Counter(f.rule for f in lint.findings).items())),
        near_duplicates=len(fingerprints.near_duplicates),
        ranking_mrr=index.ranking.mrr,
    )


def corpus_version(sha256: Mapping[str, str]) -> str:
    """One hash for the whole corpus: it changes when any document's path or content does."""
    digest = hashlib.sha256()
    for path, hexdigest in sorted(sha256.items()):
        digest.update(f"{path}\0{hexdigest}\n".encode())
    return digest.hexdigest()[:16]


@hookimpl
def initgraph_init(ctx: InitContext) -> CorpusStats:
    check_keys(ctx.config, ("top",), plugin=ctx.name)
    return summarize(
        ctx.results["corpus"],
        ctx.results["search_index"],
        ctx.results["hashes"],
        ctx.results["rules"],
        top=get_int(ctx.config, "top", 10, plugin=ctx.name, minimum=0),
    )


@hookimpl
def initgraph_commit(ctx: CommitContext, result: CorpusStats) -> None:
    # "hashes" has a lower cookie in this domain, so its commit, and its publication, came first.
    version = corpus_version(ctx.registry["corpus.sha256"])
    ctx.publish("stats.summary", replace(result, version=version))
