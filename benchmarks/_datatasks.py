"""The work of the data sections (7-9 of ``python -m benchmarks``): data producers and readers,
and the steps of the realistic data-heavy boot.

Every step is ``run_step(step, config, results)``: ``config`` is the plugin's config table,
``results`` the results of what it requires, by plugin name. initgraph's plugins (modules the
suite writes to a temporary directory) call it from ``initgraph_init`` (or ``initgraph_commit``
for the commit-only plugins); every other executor calls the same function, pickled by
reference. Everything is generated from fixed seeds: nothing is downloaded, every run computes
the same thing.

Native thread pools (OpenBLAS, OpenMP) are limited in whatever process runs a step, the same
way for every executor: ``config["threads"]`` (default 1) through threadpoolctl, set once per
process (see :func:`set_threads`).
"""

from __future__ import annotations

import os
import re
import sqlite3
import tempfile
import time
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.cluster import KMeans
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

MIB = 1 << 20

# -- native thread pools ----------------------------------------------------------------------
_threads: dict[int, int] = {}  # pid -> the limit set in that process


def set_threads(n: int) -> None:
    """Limit OpenBLAS/OpenMP to ``n`` threads in this process (0: one per CPU, i.e. no limit).

    Once per process and value: threadpoolctl walks the loaded libraries at each call. A forked
    worker inherits its parent's setting, and re-checks it by its own pid.
    """
    want = n if n > 0 else (os.cpu_count() or 1)
    if _threads.get(os.getpid()) != want:
        threadpool_limits(limits=want)
        _threads[os.getpid()] = want


# -- transfer: producers and readers ---------------------------------------------------------
def produce(kind: str, size: int) -> Any:
    """A result to move: ``array`` (float64, ``size`` bytes), ``bytes`` (``size`` bytes) or
    ``dict`` (``size`` small objects: int -> (int, float, str))."""
    if kind == "array":
        return np.arange(size // 8, dtype=np.float64)
    if kind == "bytes":
        return b"\xab" * size
    if kind == "dict":
        return {i: (i, i * 0.5, "x") for i in range(size)}
    msg = f"unknown kind {kind!r}"
    raise ValueError(msg)


def produce_task(spec: tuple[str, int], cookie: int = 0) -> Any:
    """``produce`` with initgraph's ``func(data, cookie)`` signature (also fine for the pools)."""
    return produce(*spec)


def copy_of(value: Any) -> Any:
    """The baseline's one copy: what any hand-over must at least do."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, bytes):
        return bytearray(value)
    return dict(value)


def touch(value: Any) -> float:
    """Read one element: what a dependent that only needs a little of a result pays."""
    if isinstance(value, np.ndarray):
        return float(value[len(value) // 2])
    if isinstance(value, (bytes, bytearray)):
        return float(value[len(value) // 2])
    return float(value[len(value) // 2][1])


def read_after(value: Any, handed: float = 0.0) -> tuple[float, float]:
    """A dependent: read one element; (``time.monotonic()`` once read, the element)."""
    v = touch(value)
    return time.monotonic(), v


# -- the steps --------------------------------------------------------------------------------
Step = Callable[[Mapping[str, Any], Mapping[str, Any]], Any]
STEPS: dict[str, Step] = {}


def step(fn: Step) -> Step:
    STEPS[fn.__name__] = fn
    return fn


def run_step(name: str, config: Mapping[str, Any], results: Mapping[str, Any]) -> Any:
    """Run step ``name`` here, native thread pools limited as ``config["threads"]`` says."""
    set_threads(int(config.get("threads", 1)))
    return STEPS[name](config, results)


def run_step_timed(
    name: str, config: Mapping[str, Any], results: Mapping[str, Any]
) -> tuple[Any, float, float]:
    """``run_step`` and its (start, end) ``time.monotonic()``: for the work per step."""
    t0 = time.monotonic()
    value = run_step(name, config, results)
    return value, t0, time.monotonic()


def ray_step(name: str, config: Mapping[str, Any], names: tuple[str, ...], *values: Any) -> Any:
    """``run_step`` for Ray: the requirements come as positional arguments (refs resolved)."""
    return run_step(name, config, dict(zip(names, values, strict=True)))


# transfer (7) and data boot (8): producers and readers
@step
def produce_step(config: Mapping[str, Any], results: Mapping[str, Any]) -> Any:
    return produce(str(config["kind"]), int(config["size"]))


@step
def make_array(config: Mapping[str, Any], results: Mapping[str, Any]) -> Any:
    return produce("array", int(config["nbytes"]))


@step
def read_pages(config: Mapping[str, Any], results: Mapping[str, Any]) -> float:
    """Read one float per 4 KiB page of the array: every page is touched, little is computed."""
    (x,) = results.values()
    return float(x[::512].sum())


@step
def read_one(config: Mapping[str, Any], results: Mapping[str, Any]) -> tuple[float, float]:
    """The transfer rows' dependent: one element, and when it had it (``time.monotonic()``)."""
    (x,) = results.values()
    return read_after(x)


# realistic boot (9): corpus -> vectors -> TF-IDF -> SVD -> k-means / classifier / indexes
def _vocabulary(size: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    lengths = rng.integers(3, 10, size)
    chars = rng.integers(0, 26, int(lengths.sum()))
    words, k = [], 0
    for n in lengths.tolist():
        words.append("".join(letters[chars[k : k + n]].tolist()))
        k += n
    return [f"{w}{i}" for i, w in enumerate(words)]  # distinct


@step
def settings(config: Mapping[str, Any], results: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the boot's settings (CPU-light)."""
    out = {k: config[k] for k in ("docs", "vocab", "topics", "words", "components", "clusters")}
    for k, v in out.items():
        if not isinstance(v, int) or v <= 0:
            msg = f"{k} must be a positive int, got {v!r}"
            raise ValueError(msg)
    return out


@step
def corpus(config: Mapping[str, Any], results: Mapping[str, Any]) -> dict[str, Any]:
    """One shard of a synthetic corpus: topic-skewed Zipf text, with some e-mails and URLs."""
    s = results["settings"]
    shard, shards = int(config["shard"]), int(config["shards"])
    vocab = _vocabulary(s["vocab"], 1234)
    rng = np.random.default_rng(1000 + shard)
    n = s["docs"] // shards
    topics = rng.integers(0, s["topics"], n)
    ranks = np.arange(1, s["vocab"] + 1, dtype=np.float64)
    zipf = 1.0 / ranks**1.05
    zipf /= zipf.sum()
    perms = np.random.default_rng(77).permuted(
        np.tile(np.arange(s["vocab"]), (s["topics"], 1)), axis=1
    )
    lengths = rng.integers(s["words"] // 2, s["words"] * 3 // 2, n)
    ranks = rng.choice(s["vocab"], size=int(lengths.sum()), p=zipf)
    doc_of = np.repeat(np.arange(n), lengths)
    on_topic = rng.random(len(ranks)) < float(config.get("on_topic", 0.3))
    ids = np.where(on_topic, perms[topics[doc_of], ranks], ranks)  # else: background words
    words = np.array(vocab, dtype=object)[ids]
    ends = np.cumsum(lengths).tolist()
    docs, start = [], 0
    for i, end in enumerate(ends):
        doc = words[start:end].tolist()
        start = end
        t = int(topics[i])
        if i % 10 == 3:
            doc.append(f"user{i}@example{t}.org")
        if i % 10 == 7:
            doc.append(f"https://docs{t}.example.com/p/{i * 7919 % 10**6}")
        docs.append(" ".join(doc))
    return {"docs": docs, "topics": topics.astype(np.int32)}


@step
def vectorize(config: Mapping[str, Any], results: Mapping[str, Any]) -> Any:
    """Term counts of one shard (hashing: shards need no shared vocabulary)."""
    (c,) = results.values()
    hv = HashingVectorizer(n_features=1 << 18, alternate_sign=False, norm=None, dtype=np.float32)
    return hv.transform(c["docs"]).tocsr()


@step
def tfidf(config: Mapping[str, Any], results: Mapping[str, Any]) -> dict[str, Any]:
    """Stack the shards, keep terms in >= 2 documents, TF-IDF weight and L2-normalize."""
    counts = sp.vstack([results[k] for k in sorted(results)]).tocsr()
    df = np.bincount(counts.indices, minlength=counts.shape[1])
    keep = np.flatnonzero(df >= 2)
    x = TfidfTransformer(sublinear_tf=True).fit_transform(counts[:, keep])
    return {"X": x.astype(np.float32).tocsr(), "terms": keep.astype(np.int32)}


@step
def svd(config: Mapping[str, Any], results: Mapping[str, Any]) -> Any:
    """Document embeddings: TruncatedSVD of the TF-IDF matrix (float64, tens of MB)."""
    x = results["tfidf"]["X"]
    n = int(config["components"])
    model = TruncatedSVD(n_components=n, algorithm="randomized", n_iter=3, random_state=0)
    emb = model.fit_transform(x).astype(np.float64)
    return emb


@step
def kmeans(config: Mapping[str, Any], results: Mapping[str, Any]) -> dict[str, Any]:
    """A k-means index of the embeddings: centroids, labels, members per cluster."""
    emb = results["svd"]
    km = KMeans(n_clusters=int(config["clusters"]), n_init=1, max_iter=25, random_state=0)
    labels = km.fit_predict(emb).astype(np.int32)
    order = np.argsort(labels, kind="stable").astype(np.int32)
    bounds = np.searchsorted(labels[order], np.arange(km.n_clusters + 1))
    return {"centroids": km.cluster_centers_, "labels": labels, "order": order, "bounds": bounds}


@step
def classifier(config: Mapping[str, Any], results: Mapping[str, Any]) -> dict[str, Any]:
    """A topic classifier on the embeddings (logistic regression), held-out accuracy."""
    emb = results["svd"]
    y = np.concatenate([results[k]["topics"] for k in sorted(results) if k.startswith("corpus")])
    cut = len(y) * 4 // 5
    clf = LogisticRegression(max_iter=int(config["iterations"]), tol=1e-3)
    clf.fit(emb[:cut], y[:cut])
    acc = float((clf.predict(emb[cut:]) == y[cut:]).mean())
    return {"coef": clf.coef_, "intercept": clf.intercept_, "accuracy": acc}


@step
def inverted_index(config: Mapping[str, Any], results: Mapping[str, Any]) -> dict[int, Any]:
    """term -> doc ids by descending weight (a posting list per term)."""
    t = results["tfidf"]
    xc = t["X"].tocsc()
    index: dict[int, Any] = {}
    for j, term in enumerate(t["terms"].tolist()):
        lo, hi = xc.indptr[j], xc.indptr[j + 1]
        w = xc.data[lo:hi]
        index[term] = xc.indices[lo:hi][np.argsort(-w, kind="stable")]
    return index


_PRIME = (1 << 61) - 1


@step
def near_duplicates(config: Mapping[str, Any], results: Mapping[str, Any]) -> dict[str, Any]:
    """MinHash signatures of one shard's 3-word shingles (crc32) and LSH buckets of them."""
    (c,) = results.values()
    hashes = int(config["hashes"])
    rng = np.random.default_rng(99)
    a = rng.integers(1, 1 << 31, hashes, dtype=np.uint64)[:, None]
    b = rng.integers(0, 1 << 31, hashes, dtype=np.uint64)[:, None]
    sigs = np.empty((len(c["docs"]), hashes), dtype=np.uint64)
    for i, doc in enumerate(c["docs"]):
        w = doc.split()
        sh = {zlib.crc32(f"{w[k]} {w[k + 1]} {w[k + 2]}".encode()) for k in range(len(w) - 2)}
        h = np.fromiter(sh, dtype=np.uint64, count=len(sh))
        sigs[i] = ((a * h + b) % _PRIME).min(axis=1)
    buckets: dict[bytes, list[int]] = {}
    for i, row in enumerate(sigs.reshape(len(sigs), -1, 4)):
        for band in row:
            buckets.setdefault(band.tobytes(), []).append(i)
    pairs = sum(len(v) * (len(v) - 1) // 2 for v in buckets.values())
    return {"signatures": sigs, "candidate_pairs": pairs}


_EMAIL = re.compile(r"[\w.]+@[\w.]+\.org")
_URL = re.compile(r"https://[\w.]+/p/(\d+)")


@step
def regex_scan(config: Mapping[str, Any], results: Mapping[str, Any]) -> dict[str, int]:
    """Scan every document for e-mail addresses and URLs (regex, pure Python)."""
    emails = urls = 0
    for k in sorted(results):
        for d in results[k]["docs"]:
            if "@" in d:
                emails += len(_EMAIL.findall(d))
            if "https" in d:
                urls += len(_URL.findall(d))
    return {"emails": emails, "urls": urls}


_MIGRATIONS = (
    "CREATE TABLE doc (id INTEGER PRIMARY KEY, topic INTEGER, title TEXT)",
    "CREATE TABLE term (id INTEGER PRIMARY KEY, df INTEGER)",
    "CREATE TABLE cluster (id INTEGER PRIMARY KEY, size INTEGER)",
    "ALTER TABLE doc ADD COLUMN cluster INTEGER",
    "CREATE INDEX doc_topic ON doc(topic)",
    "CREATE TABLE event (id INTEGER PRIMARY KEY, at REAL, what TEXT)",
    "ALTER TABLE term ADD COLUMN stop INTEGER DEFAULT 0",
    "CREATE INDEX doc_cluster ON doc(cluster)",
    "CREATE VIEW big_cluster AS SELECT id FROM cluster WHERE size > 100",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)",
)


@step
def sqlite_migrations(config: Mapping[str, Any], results: Mapping[str, Any]) -> dict[str, int]:
    """Apply the schema migrations to a fresh database in a temporary dir, and seed it."""
    rows = int(config["rows"])
    fd, path = tempfile.mkstemp(suffix=".db", dir=str(config["dir"]))
    os.close(fd)
    try:
        con = sqlite3.connect(path)
        try:
            con.execute("CREATE TABLE schema_version (v INTEGER)")
            for v, sql in enumerate(_MIGRATIONS, start=1):
                with con:
                    con.execute(sql)
                    con.execute("INSERT INTO schema_version VALUES (?)", (v,))
            with con:
                con.executemany(
                    "INSERT INTO doc (id, topic, title, cluster) VALUES (?, ?, ?, ?)",
                    ((i, i % 17, f"document {i}", i % 50) for i in range(rows)),
                )
            (version,) = con.execute("SELECT max(v) FROM schema_version").fetchone()
            (count,) = con.execute("SELECT count(*) FROM doc WHERE topic = 3").fetchone()
        finally:
            con.close()
    finally:
        os.unlink(path)
    return {"version": int(version), "topic3": int(count)}


@step
def config_check(config: Mapping[str, Any], results: Mapping[str, Any]) -> None:
    """Commit-only: cross-check settings against what the scan found (CPU-light)."""
    if results["regex_scan"]["emails"] <= 0 and results["settings"]["docs"] >= 100:
        msg = "the corpus has no e-mail addresses"
        raise RuntimeError(msg)


@step
def ann_index(config: Mapping[str, Any], results: Mapping[str, Any]) -> dict[str, Any]:
    """In the parent (``where = "main"``): unit-normalized embeddings grouped by cluster."""
    emb, km = results["svd"], results["kmeans"]
    grouped = emb[km["order"]]
    grouped /= np.maximum(np.linalg.norm(grouped, axis=1, keepdims=True), 1e-12)
    return {"vectors": grouped, "order": km["order"], "bounds": km["bounds"], "km": km}


@step
def search_ready(config: Mapping[str, Any], results: Mapping[str, Any]) -> None:
    """Commit-only: one query through every index, as a readiness check."""
    ann, inv, clf = results["ann_index"], results["inverted_index"], results["classifier"]
    q = ann["vectors"][0]
    c = int(np.argmax(ann["km"]["centroids"] @ q))
    lo, hi = int(ann["bounds"][c]), int(ann["bounds"][c + 1])
    top = np.argsort(-(ann["vectors"][lo:hi] @ q))[:5]
    postings = next(iter(inv.values()))
    if len(top) == 0 or len(postings) == 0 or not 0.0 <= clf["accuracy"] <= 1.0:
        msg = "search index not ready"
        raise RuntimeError(msg)
