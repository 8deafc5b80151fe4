"""Plugin ``hashes``: content hashes of the corpus, and the sections that repeat each other.

Each document gets a SHA-256 of its text, for cache keys and change detection. Each section gets
a MinHash signature of its word shingles; locality-sensitive hashing (bands of ``rows`` slots)
proposes candidate pairs without comparing all of them, and pairs whose signatures agree on at
least ``threshold`` of their slots are reported as near duplicates: text copied from one page to
another, bound to drift. Publishes ``corpus.sha256`` and ``corpus.near_duplicates`` from its
commit hook.
"""

from __future__ import annotations

import hashlib
import random
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

from initgraph import CommitContext, InitContext, hookimpl

from ._config import check_keys, get_float, get_int
from ._text import anchors, sections, words
from ._types import Document

__all__ = [
    "Fingerprints",
    "candidates",
    "content_hashes",
    "fingerprint",
    "initgraph_commit",
    "initgraph_init",
    "minhash",
    "near_duplicates",
    "permutations",
    "shingles",
    "similarity",
    "units",
]

MERSENNE_61 = (1 << 61) - 1


@dataclass(frozen=True)
class Fingerprints:
    """Document hashes by path; section signatures and near-duplicate pairs by section link."""

    sha256: Mapping[str, str]
    signatures: Mapping[str, tuple[int, ...]]
    near_duplicates: tuple[tuple[str, str, float], ...]


def content_hashes(documents: Sequence[Document]) -> dict[str, str]:
    """The SHA-256 of each document's UTF-8 text, by path."""
    return {d.path: hashlib.sha256(d.text.encode()).hexdigest() for d in documents}


def units(documents: Sequence[Document], *, min_words: int) -> dict[str, str]:
    """The text of every section of at least ``min_words`` words, by its link (``path#anchor``)."""
    found = {}
    for document in documents:
        parts = sections(document.text)
        for anchor, section in zip(anchors(parts), parts, strict=True):
            text = f"{section.heading}\n{section.body}"
            if len(words(text)) >= min_words:
                found[f"{document.path}#{anchor}" if anchor else document.path] = text
    return found


def shingles(text: str, size: int) -> frozenset[int]:
    """The CRC-32s of the runs of ``size`` consecutive words (one run if the text is shorter)."""
    found = words(text)
    runs = [found[i : i + size] for i in range(max(1, len(found) - size + 1))]
    return frozenset(zlib.crc32(" ".join(run).encode()) for run in runs if run)


def permutations(count: int, seed: int) -> tuple[tuple[int, int], ...]:
    """``count`` random hash functions ``x -> (a*x + b) mod p``, the same for the same seed."""
    rng = random.Random(seed)
    return tuple((rng.randrange(1, MERSENNE_61), rng.randrange(MERSENNE_61)) for _ in range(count))


def minhash(shingle_set: frozenset[int], perms: Sequence[tuple[int, int]]) -> tuple[int, ...]:
    """The MinHash signature: for each hash function, the least hash over the shingles."""
    if not shingle_set:
        return tuple(MERSENNE_61 for _ in perms)
    values = tuple(shingle_set)
    return tuple(min([(a * x + b) % MERSENNE_61 for x in values]) for a, b in perms)


def similarity(left: Sequence[int], right: Sequence[int]) -> float:
    """Estimated Jaccard similarity of two signatures: the share of slots where they agree."""
    return sum(1 for a, b in zip(left, right, strict=True) if a == b) / len(left) if left else 0.0


def candidates(signatures: Mapping[str, Sequence[int]], rows: int) -> list[tuple[str, str]]:
    """The pairs that agree on every slot of at least one band of ``rows`` slots, sorted."""
    buckets: dict[tuple[int, tuple[int, ...]], list[str]] = {}
    for label, signature in signatures.items():
        for band in range(len(signature) // rows):
            key = (band, tuple(signature[band * rows : (band + 1) * rows]))
            buckets.setdefault(key, []).append(label)
    pairs = {pair for bucket in buckets.values() for pair in combinations(sorted(bucket), 2)}
    return sorted(pairs)


def near_duplicates(
    signatures: Mapping[str, Sequence[int]], threshold: float, *, rows: int
) -> tuple[tuple[str, str, float], ...]:
    """The candidate pairs at least ``threshold`` similar, most similar first, then by label."""
    scored = [
        (a, b, round(similarity(signatures[a], signatures[b]), 4))
        for a, b in candidates(signatures, rows)
    ]
    kept = [pair for pair in scored if pair[2] >= threshold]
    return tuple(sorted(kept, key=lambda p: (-p[2], p[0], p[1])))


def fingerprint(
    documents: Sequence[Document],
    *,
    num_perm: int = 128,
    rows: int = 8,
    shingle_size: int = 5,
    min_words: int = 20,
    threshold: float = 0.8,
    seed: int = 1,
) -> Fingerprints:
    """Hash every document and find the near-duplicate sections among them."""
    perms = permutations(num_perm, seed)
    signatures = {
        label: minhash(shingles(text, shingle_size), perms)
        for label, text in units(documents, min_words=min_words).items()
    }
    return Fingerprints(
        sha256=content_hashes(documents),
        signatures=signatures,
        near_duplicates=near_duplicates(signatures, threshold, rows=rows),
    )


@hookimpl
def initgraph_init(ctx: InitContext) -> Fingerprints:
    config, name = ctx.config, ctx.name
    keys = ("num_perm", "rows", "shingle_size", "min_words", "threshold", "seed")
    check_keys(config, keys, plugin=name)
    num_perm = get_int(config, "num_perm", 128, plugin=name, minimum=1)
    result = fingerprint(
        ctx.results["corpus"],
        num_perm=num_perm,
        rows=get_int(config, "rows", 8, plugin=name, minimum=1, maximum=num_perm),
        shingle_size=get_int(config, "shingle_size", 5, plugin=name, minimum=1),
        min_words=get_int(config, "min_words", 20, plugin=name, minimum=1),
        threshold=get_float(config, "threshold", 0.8, plugin=name, minimum=0.0, maximum=1.0),
        seed=get_int(config, "seed", 1, plugin=name, minimum=0),
    )
    ctx.log.info("%d near-duplicate sections", len(result.near_duplicates))
    return result


@hookimpl
def initgraph_commit(ctx: CommitContext, result: Fingerprints) -> None:
    ctx.publish("corpus.sha256", dict(result.sha256))
    ctx.publish("corpus.near_duplicates", result.near_duplicates)
