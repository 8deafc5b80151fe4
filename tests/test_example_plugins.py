"""Tests of the example application in plugins/: its pure functions, its hooks and init.toml.

No scheduler takes part: the hooks get a fake context that records what they publish and refuses,
as initgraph does, a publication from an init before it has synchronized. The last tests run the
whole of init.toml serially in plan order on a small corpus.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import inspect
import itertools
import json
import logging
import os
import pickle
import re
import sqlite3
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pluggy
import pytest
from conftest import ROOT, write_files

import initgraph.hookspecs
from plugins import (
    cache,
    corpus,
    database,
    hashes,
    records,
    routes,
    rules,
    settings,
    stats,
)
from plugins import search_index as si
from plugins._routes import Route, build_routes, parse_route, route_key
from plugins._text import anchors, sections, slug, stem, terms, title, words
from plugins._types import Document

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


@dataclass
class FakeContext:
    """A stand-in for initgraph's init and commit contexts."""

    name: str
    config: Mapping[str, Any] = field(default_factory=dict)
    results: Mapping[str, Any] = field(default_factory=dict)
    cookie: int = 1
    domain: str = "default"
    registry: dict[str, Any] = field(default_factory=dict)
    synchronized: bool = False
    events: list[str] = field(default_factory=list)

    @property
    def log(self) -> logging.Logger:
        return logging.getLogger(f"test.{self.name}")

    def synchronize(self, timeout: float | None = None) -> None:
        self.synchronized = True
        self.events.append("synchronize")

    def publish(self, key: str, value: Any) -> None:
        if not self.synchronized:
            msg = f"{self.name} published {key!r} before synchronizing"
            raise AssertionError(msg)
        assert key not in self.registry, f"{key!r} published twice"
        self.registry[key] = value
        self.events.append(f"publish {key}")


def committing(ctx: FakeContext) -> FakeContext:
    """The same plugin's commit context: commits always run after synchronizing."""
    ctx.synchronized = True
    return ctx


def doc(path: str, text: str) -> Document:
    return Document(path, title(text, Path(path).stem), text)


ALPHA = doc(
    "alpha.md",
    "# Scheduling cookies\n\nThe scheduler hands out cookies in order.\n"
    "Cookies are never reused. The worker pool runs initcalls.\n",
)
BETA = doc(
    "beta.md",
    "# Worker pool\n\nA worker runs initcalls. Workers crash sometimes; a crashed worker is "
    "replaced.\n\n## Cookies\n\nA cookie names an initcall.\n",
)


# ---- _text ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "group",
    [
        ("schedule", "schedules", "scheduled", "scheduling"),
        ("cookie", "cookies"),
        ("publish", "publishes", "published", "publishing"),
        ("synchronize", "synchronizes", "synchronizing", "synchronization"),
        ("run", "running"),
    ],
)
def test_stem_maps_inflections_to_one_stem(group: tuple[str, ...]) -> None:
    assert len({stem(word) for word in group}) == 1


def test_words_drop_stop_words_and_single_letters() -> None:
    assert words("The Pool, a worker and X-ray: it's 42!") == [
        "pool",
        "worker",
        "ray",
        "it's",
        "42",
    ]


def test_sections_split_at_headings_outside_code_fences() -> None:
    text = "intro\n# One\nbody one\n```\n# not a heading\n```\n## Two ##\nbody two\n"
    found = sections(text)
    assert [(s.heading, s.level) for s in found] == [("", 0), ("One", 1), ("Two", 2)]
    assert "# not a heading" in found[1].body
    assert found[2].body == "body two"


def test_title_prefers_the_first_level_one_heading() -> None:
    assert title("## Sub\n# Main\n", "file") == "Main"
    assert title("## Sub\n", "file") == "Sub"
    assert title("no headings", "file") == "file"


def test_anchors_follow_github_with_numbered_repeats() -> None:
    found = sections("pre\n# Hello, World!\n## Usage\n## Usage\n")
    assert anchors(found) == ["", "hello-world", "usage", "usage-1"]
    assert slug("  A -- B  ") == "a----b"


# ---- settings -------------------------------------------------------------------------------


def test_settings_defaults_and_values() -> None:
    assert settings.load_settings({}) == settings.Settings(
        "docsearch", "127.0.0.1", 8080, "/", 10, "INFO"
    )
    loaded = settings.load_settings({"port": 9000, "base_path": "/docs/", "log_level": "debug"})
    assert (loaded.port, loaded.base_path, loaded.log_level) == (9000, "/docs", "DEBUG")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"prot": 1}, "plugin 'settings': unknown config key 'prot'; did you mean 'port'?"),
        ({"port": 0}, "plugin 'settings': config key 'port' must be an integer 1..65535, got 0"),
        (
            {"port": True},
            "plugin 'settings': config key 'port' must be an integer 1..65535, got True",
        ),
        ({"host": ""}, "plugin 'settings': config key 'host' must be a non-empty string, got ''"),
        (
            {"base_path": "api"},
            "plugin 'settings': config key 'base_path' must start with '/', got 'api'",
        ),
        (
            {"log_level": "loud"},
            "plugin 'settings': config key 'log_level' must be one of DEBUG, INFO, WARNING, ERROR,"
            " got 'LOUD'",
        ),
    ],
)
def test_settings_refuse_bad_config(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        settings.load_settings(config)


def test_settings_hooks_publish_from_the_commit() -> None:
    ctx = FakeContext("settings", config={"port": 8443})
    result = settings.initgraph_init(ctx)
    assert ctx.registry == {}
    settings.initgraph_commit(committing(ctx), result)
    assert ctx.registry == {"app.settings": result}
    assert result.port == 8443


# ---- corpus ---------------------------------------------------------------------------------


def test_read_corpus_reads_markdown_sorted_by_path(tmp_path: Path) -> None:
    write_files(
        tmp_path,
        {
            "b.md": "# Bee\ntext b",
            "a/z.md": "no heading",
            "a/y.md": "## Why\n",
            "notes.txt": "# not markdown",
            ".hidden/x.md": "# hidden",
        },
    )
    found = corpus.read_corpus(tmp_path)
    assert [(d.path, d.title) for d in found] == [
        ("a/y.md", "Why"),
        ("a/z.md", "z"),
        ("b.md", "Bee"),
    ]
    assert found[2].text == "# Bee\ntext b"


def test_read_corpus_refuses_a_missing_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"is not a folder$"):
        corpus.read_corpus(tmp_path / "missing")


def test_corpus_hook_reads_relative_to_cwd_and_publishes_after_synchronizing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_files(tmp_path / "pages", {"one.md": "# One", "two.md": "# Two"})
    monkeypatch.chdir(tmp_path)
    ctx = FakeContext("corpus", config={"root": "pages"})
    found = corpus.initgraph_init(ctx)
    assert [d.title for d in found] == ["One", "Two"]
    assert ctx.events == ["synchronize", "publish corpus.paths"]
    assert ctx.registry == {"corpus.paths": ("one.md", "two.md")}


def test_corpus_hook_takes_an_absolute_root(tmp_path: Path) -> None:
    write_files(tmp_path, {"one.md": "# One"})
    ctx = FakeContext("corpus", config={"root": str(tmp_path)})
    assert [d.path for d in corpus.initgraph_init(ctx)] == ["one.md"]


# ---- search_index ---------------------------------------------------------------------------


def test_build_index_keeps_sorted_postings_with_positions() -> None:
    index = si.build_index([ALPHA, BETA])
    assert index.paths == ("alpha.md", "beta.md")
    assert index.titles == ("Scheduling cookies", "Worker pool")
    assert list(index.postings) == sorted(index.postings)
    cookie = index.postings[stem("cookies")]
    assert [number for number, _ in cookie] == [0, 1]
    # schedul cooki scheduler hand cooki order cooki ...: stop words take no position
    assert cookie[0][1] == (1, 4, 6)
    assert index.lengths == (len(terms(ALPHA.text)), len(terms(BETA.text)))


def test_search_ranks_by_bm25_and_honours_phrases() -> None:
    index = si.build_index([ALPHA, BETA])
    assert [h.path for h in si.search(index, "worker crash")] == ["beta.md", "alpha.md"]
    assert [h.path for h in si.search(index, "scheduler cookies")] == ["alpha.md", "beta.md"]
    assert [h.path for h in si.search(index, '"worker pool"')] == ["beta.md", "alpha.md"]
    assert [h.path for h in si.search(index, '"never reused"')] == ["alpha.md"]
    assert si.search(index, '"reused never"') == ()
    assert [h.path for h in si.search(index, '"crashed worker" initcalls')] == ["beta.md"]
    assert si.search(index, "nothing matches zebra") == ()
    assert len(si.search(index, "worker", limit=1)) == 1


def test_rank_of_counts_better_scores_and_lower_ties() -> None:
    assert si.rank_of({0: 1.0, 1: 2.0, 2: 1.0}, 2) == 3
    assert si.rank_of({0: 1.0, 1: 2.0}, 1) == 1
    assert si.rank_of({0: 1.0}, 5) == 0


def test_known_item_queries_come_from_headings_and_rare_terms() -> None:
    index = si.build_index([ALPHA, BETA])
    queries = si.known_item_queries([ALPHA, BETA], index, limit=100, lengths=(2,))
    assert ((stem("scheduling"), stem("cookies")), 0) in queries
    assert ((stem("cookies"),), 1) in queries
    assert all(len(q) <= 2 for q, _ in queries)
    assert {n for _, n in queries} == {0, 1}
    assert len(si.known_item_queries([ALPHA, BETA], index, limit=3)) == 3
    assert si.known_item_queries([ALPHA, BETA], index, limit=0) == ()


def test_tune_ranking_picks_the_best_grid_point() -> None:
    index = si.build_index([ALPHA, BETA])
    queries = si.known_item_queries([ALPHA, BETA], index, limit=100)
    best = si.tune_ranking(index, queries, k1_grid=(0.5, 1.2, 2.0), b_grid=(0.0, 0.75, 1.0))
    for k1, b in itertools.product((0.5, 1.2, 2.0), (0.0, 0.75, 1.0)):
        assert best.mrr >= si.tune_ranking(index, queries, k1_grid=(k1,), b_grid=(b,)).mrr
    assert 0.5 < best.mrr <= 1.0
    assert si.tune_ranking(index, (), k1_grid=(0.9,), b_grid=(0.4,)) == si.Ranking(0.9, 0.4, 0.0)


def test_search_index_hooks_tune_then_publish_from_the_commit() -> None:
    config = {"k1": (0.5, 1.5), "b": (0.5, 1.0), "tuning_queries": 50}
    ctx = FakeContext("search_index", config=config, results={"corpus": (ALPHA, BETA)})
    index = si.initgraph_init(ctx)
    assert (index.ranking.k1, index.ranking.b) in itertools.product((0.5, 1.5), (0.5, 1.0))
    assert ctx.registry == {}
    si.initgraph_commit(committing(ctx), index)
    assert ctx.registry == {"search.index": index}


def test_search_index_hook_refuses_a_bad_grid() -> None:
    ctx = FakeContext("search_index", config={"b": (0.5, 2.0)}, results={"corpus": (ALPHA,)})
    with pytest.raises(ValueError, match=r"^plugin 'search_index': config key 'b' must be"):
        si.initgraph_init(ctx)


# ---- hashes ---------------------------------------------------------------------------------

SHARED = " ".join(f"word{i}" for i in range(40))


def test_content_hashes_are_sha256_of_the_text() -> None:
    assert hashes.content_hashes([ALPHA]) == {
        "alpha.md": hashlib.sha256(ALPHA.text.encode()).hexdigest()
    }


def test_minhash_is_deterministic_and_estimates_jaccard() -> None:
    perms = hashes.permutations(64, seed=7)
    assert perms == hashes.permutations(64, seed=7) != hashes.permutations(64, seed=8)
    one = hashes.shingles(SHARED, 3)
    assert len(one) == 38
    same = hashes.minhash(one, perms)
    assert hashes.similarity(same, hashes.minhash(hashes.shingles(SHARED, 3), perms)) == 1.0
    other = hashes.minhash(hashes.shingles("completely different text here today", 3), perms)
    assert hashes.similarity(same, other) < 0.2


def test_units_are_sections_long_enough_keyed_by_link() -> None:
    text = f"preamble {SHARED}\n# Copied part\n{SHARED}\n## Short\ntiny\n"
    found = hashes.units([doc("a.md", text)], min_words=20)
    assert list(found) == ["a.md", "a.md#copied-part"]


def test_fingerprint_finds_copied_sections_only() -> None:
    first = doc("a.md", f"# A\n\n## Shared part\n{SHARED}\n\n## Own\n{'alpha ' * 30}")
    second = doc("b.md", f"# B\n\n## Copy\n{SHARED} extra\n\n## Own\n{'gamma delta ' * 20}")
    result = hashes.fingerprint([first, second], num_perm=64, rows=4, min_words=20)
    assert set(result.sha256) == {"a.md", "b.md"}
    assert [(a, b) for a, b, _ in result.near_duplicates] == [("a.md#shared-part", "b.md#copy")]
    assert result.near_duplicates[0][2] >= 0.8


def test_candidates_pair_labels_sharing_a_band() -> None:
    signatures = {"x": (1, 2, 3, 4), "y": (1, 2, 9, 9), "z": (7, 7, 3, 4), "w": (0, 0, 0, 0)}
    assert hashes.candidates(signatures, rows=2) == [("x", "y"), ("x", "z")]


def test_hashes_hooks_publish_hashes_and_duplicates_from_the_commit() -> None:
    ctx = FakeContext("hashes", config={"num_perm": 16, "rows": 4}, results={"corpus": (ALPHA,)})
    result = hashes.initgraph_init(ctx)
    hashes.initgraph_commit(committing(ctx), result)
    assert ctx.registry == {
        "corpus.sha256": dict(result.sha256),
        "corpus.near_duplicates": result.near_duplicates,
    }


def test_hashes_hook_refuses_rows_above_num_perm() -> None:
    ctx = FakeContext("hashes", config={"num_perm": 8, "rows": 9}, results={"corpus": ()})
    with pytest.raises(ValueError, match=r"^plugin 'hashes': config key 'rows' must be"):
        hashes.initgraph_init(ctx)


# ---- rules ----------------------------------------------------------------------------------


def test_compile_rules_and_scan_report_places() -> None:
    compiled = rules.compile_rules(
        {"todo": r"\bTODO\b", "secret": r"token\s*=\s*\S+"},
        {"in order to": "to"},
        redact=("secret",),
    )
    text = "intro\nTODO: fix. token = abc123\nIn  Order To win, TODO\n"
    found = rules.scan([doc("a.md", text)], compiled)
    assert [(f.line, f.column, f.rule, f.text) for f in found] == [
        (2, 1, "todo", "TODO"),
        (2, 12, "secret", rules.REDACTED),
        (3, 1, "prefer:in order to->to", "In  Order To"),
        (3, 19, "todo", "TODO"),
    ]


@pytest.mark.parametrize(
    ("patterns", "redact", "message"),
    [
        ({"bad": "(unclosed"}, (), r"^rule 'bad': bad regular expression '\(unclosed': "),
        ({"empty": "x*"}, (), r"^rule 'empty': 'x\*' matches the empty string"),
        ({"ok": "x"}, ("nope",), r"^redact names 'nope', which is not a rule of 'patterns'$"),
    ],
)
def test_compile_rules_refuses_bad_rules(
    patterns: dict[str, str], redact: tuple[str, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        rules.compile_rules(patterns, redact=redact)


def test_compile_rules_refuses_a_name_twice() -> None:
    with pytest.raises(ValueError, match=r"^rule 'prefer:x->y' is defined twice$"):
        rules.compile_rules({"prefer:x->y": "q"}, {"x": "y"})


def test_rules_hook_scans_then_synchronizes_then_publishes() -> None:
    config = {"patterns": {"pool": r"\bpool\b"}, "redact": ()}
    ctx = FakeContext("rules", config=config, results={"corpus": (ALPHA, BETA)})
    result = rules.initgraph_init(ctx)
    assert ctx.events == ["synchronize", "publish lint.rules", "publish lint.findings"]
    assert ctx.registry["lint.rules"] == (("pool", r"\bpool\b"),)
    assert [(f.path, f.line) for f in ctx.registry["lint.findings"]] == [
        ("alpha.md", 4),
        ("beta.md", 1),
    ]
    assert result.findings == ctx.registry["lint.findings"]


# ---- records --------------------------------------------------------------------------------


def test_records_number_documents_and_name_them_in_sections_and_links() -> None:
    linked = doc("c.md", "# See\nRead [the design](design.md) and ![img](x.png).\n## More\nmore")
    made = records.build_records([ALPHA, linked])
    assert [row[:3] for row in made.documents] == [
        (1, "alpha.md", "Scheduling cookies"),
        (2, "c.md", "See"),
    ]
    assert made.documents[0][3] == ALPHA.text
    # see read design design md img png: one-letter and stop words ("the", "and", "more") drop
    assert made.documents[1][4] == len(words(linked.text)) == 7
    assert [(d, p, level, heading) for d, p, level, heading, _ in made.sections] == [
        (1, 0, 1, "Scheduling cookies"),
        (2, 0, 1, "See"),
        (2, 1, 2, "More"),
    ]
    assert made.links == ((2, "the design", "design.md"),)  # the image is not a link
    assert pickle.loads(pickle.dumps(made)) == made  # it travels from a worker to the parent


def test_records_take_no_config() -> None:
    ctx = FakeContext("records", config={"root": "docs"}, results={"corpus": (ALPHA,)})
    with pytest.raises(ValueError, match=r"'root'; it takes no config; remove the table$"):
        records.initgraph_init(ctx)
    ctx = FakeContext("records", results={"corpus": (ALPHA, BETA)})
    assert records.initgraph_init(ctx) == records.build_records((ALPHA, BETA))


# ---- database -------------------------------------------------------------------------------


def test_build_database_loads_documents_sections_and_links() -> None:
    linked = doc("c.md", "# See\nRead [the design](design.md) and ![img](x.png).\n## More\nmore")
    connection = database.build_database(records.build_records([ALPHA, BETA, linked]))
    try:
        assert database.row_counts(connection) == {"documents": 3, "sections": 5, "links": 1}
        assert connection.execute("SELECT path, title FROM documents ORDER BY id").fetchall() == [
            ("alpha.md", "Scheduling cookies"),
            ("beta.md", "Worker pool"),
            ("c.md", "See"),
        ]
        assert connection.execute("SELECT label, target FROM links").fetchall() == [
            ("the design", "design.md")
        ]
    finally:
        connection.close()


def test_database_connection_is_usable_from_another_thread() -> None:
    connection = database.build_database(records.build_records([ALPHA]))
    counted: list[int] = []
    try:
        thread = threading.Thread(
            target=lambda: counted.append(database.row_counts(connection)["documents"])
        )
        thread.start()
        thread.join()
        assert counted == [1]
    finally:
        connection.close()


def test_build_database_replaces_the_tables_of_a_file(tmp_path: Path) -> None:
    path = str(tmp_path / "search.sqlite3")
    database.build_database(records.build_records([ALPHA, BETA]), path).close()
    connection = database.build_database(records.build_records([ALPHA]), path)
    try:
        assert database.row_counts(connection)["documents"] == 1
    finally:
        connection.close()


def test_database_hooks_return_the_connection_and_publish_row_counts() -> None:
    ctx = FakeContext("database", results={"records": records.build_records((ALPHA, BETA))})
    connection = asyncio.run(database.initgraph_init(ctx))  # async def: loads in a thread
    try:
        assert isinstance(connection, sqlite3.Connection)
        database.initgraph_commit(committing(ctx), connection)
        assert ctx.registry == {"db.tables": {"documents": 2, "sections": 3, "links": 0}}
        with pytest.raises(TypeError):
            pickle.dumps(connection)
    finally:
        connection.close()


# ---- cache ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("left", "right", "limit", "distance"),
    [
        ("kitten", "sitting", 3, 3),
        ("kitten", "sitting", 2, 3),
        ("pool", "pool", 0, 0),
        ("pool", "poll", 2, 1),
        ("a", "abcd", 2, 3),
        ("", "ab", 2, 2),
    ],
)
def test_edit_distance_stops_past_the_limit(
    left: str, right: str, limit: int, distance: int
) -> None:
    assert cache.edit_distance(left, right, limit) == distance


def test_correct_takes_the_closest_then_the_most_frequent_term() -> None:
    index = si.build_index([ALPHA, BETA])
    assert cache.correct("worker", index, 2) == "worker"
    assert cache.correct("wrker", index, 2) == "worker"
    assert cache.correct("cooki", index, 0) == "cooki"
    assert cache.correct("zzzzzz", index, 2) == "zzzzzz"
    two = si.build_index([doc("x.md", "cart cart"), doc("y.md", "cart card")])
    assert cache.correct("carx", two, 1) == "cart"


def test_warm_corrects_typos_and_answers_each_query_once() -> None:
    index = si.build_index([ALPHA, BETA])
    warmed = cache.warm(
        index, ["Workr  CRASH", "workr crash", '"wrker pool"'], limit=5, max_edits=2
    )
    assert list(warmed) == ["workr crash", '"wrker pool"']
    first = warmed["workr crash"]
    assert first.corrections == {"workr": "worker"}
    assert first.hits == si.search(index, "worker crash", limit=5)
    assert warmed['"wrker pool"'].hits == si.search(index, '"worker pool"', limit=5)


def test_cache_hooks_use_the_settings_limit_and_publish_from_the_commit() -> None:
    index = si.build_index([ALPHA, BETA])
    limits = settings.load_settings({"max_results": 1})
    ctx = FakeContext(
        "cache",
        config={"queries": ("worker",)},
        results={"search_index": index, "settings": limits},
    )
    warmed = cache.initgraph_init(ctx)
    assert len(warmed["worker"].hits) == 1
    cache.initgraph_commit(committing(ctx), warmed)
    assert ctx.registry == {"search.cache": warmed}


# ---- routes ---------------------------------------------------------------------------------

SPECS = ["GET /documents/{path}", "POST /search", "GET /search", "GET /documents/stats", "GET /"]


def test_build_routes_orders_literals_first_then_methods_whatever_the_input() -> None:
    expected = [
        ("GET", "/api"),
        ("GET", "/api/documents/stats"),
        ("GET", "/api/documents/{path}"),
        ("GET", "/api/search"),
        ("POST", "/api/search"),
    ]
    for specs in itertools.permutations(SPECS):
        routes = build_routes(specs, prefix="//api/")
        assert [(r.method, r.path) for r in routes] == expected


def test_parse_route_names_the_handler() -> None:
    assert parse_route("GET /documents/{path}", prefix="/api") == Route(
        "GET", "/api/documents/{path}", "get_api_documents_path"
    )
    assert parse_route("GET /").handler == "get"
    assert route_key(parse_route("DELETE /x")) == "http.route.DELETE /x"


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (["FETCH /x"], r"^route 'FETCH /x': method must be one of GET, HEAD, POST"),
        (["GET x"], r"^route 'GET x': path must start with '/'$"),
        (["GET /a b"], r"^route 'GET /a b': bad path segment 'a b'$"),
        (["GET /{Bad}"], r"^route 'GET /\{Bad\}': bad path segment '\{Bad\}'$"),
        (["GET /a", "GET /a/"], r"^route GET /a is declared twice$"),
    ],
)
def test_build_routes_refuses_bad_routes(specs: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_routes(specs)


@pytest.mark.parametrize(("name", "prefix"), [("api_routes", "/api"), ("admin_routes", "/admin")])
def test_route_hooks_publish_in_order_after_synchronizing(name: str, prefix: str) -> None:
    """Two instances of one module: the prefix comes from the instance's name."""
    ctx = FakeContext(
        name,
        config={"routes": ("POST /b", "GET /b", "GET /a")},
        results={"settings": settings.load_settings({"base_path": "/svc"})},
        domain="http",
    )
    published = routes.initgraph_init(ctx)
    keys = [
        f"http.route.{m} /svc{prefix}{p}" for m, p in [("GET", "/a"), ("GET", "/b"), ("POST", "/b")]
    ]
    assert ctx.events == ["synchronize", *(f"publish {k}" for k in keys)]
    assert list(ctx.registry.values()) == list(published)


# ---- stats ----------------------------------------------------------------------------------


def test_summarize_counts_the_work_of_the_other_plugins() -> None:
    documents = (ALPHA, BETA)
    index = si.build_index(documents)
    compiled = rules.compile_rules({"worker": r"\b[Ww]orker\b"})
    result = stats.summarize(
        documents, index, hashes.fingerprint(documents), rules.lint(documents, compiled), top=2
    )
    assert (result.documents, result.terms) == (2, len(index.postings))
    assert result.characters == len(ALPHA.text) + len(BETA.text)
    assert result.findings == {"worker": 4}
    assert [count for _, count in result.top_terms] == [2, 2]
    assert result.version == ""


def test_corpus_version_changes_with_any_path_or_content() -> None:
    base = stats.corpus_version({"a.md": "1", "b.md": "2"})
    assert base == stats.corpus_version({"b.md": "2", "a.md": "1"})
    assert base != stats.corpus_version({"a.md": "1", "b.md": "3"})
    assert base != stats.corpus_version({"a.md": "1", "c.md": "2"})


def test_stats_commit_reads_the_published_hashes() -> None:
    documents = (ALPHA, BETA)
    fingerprints = hashes.fingerprint(documents, num_perm=16)
    results = {
        "corpus": documents,
        "search_index": si.build_index(documents),
        "hashes": fingerprints,
        "rules": rules.lint(documents, ()),
    }
    ctx = FakeContext("stats", results=results)
    summary = stats.initgraph_init(ctx)
    ctx.registry["corpus.sha256"] = dict(fingerprints.sha256)
    stats.initgraph_commit(committing(ctx), summary)
    published = ctx.registry["stats.summary"]
    assert published.version == stats.corpus_version(fingerprints.sha256)
    assert published.documents == 2


# ---- the whole application ------------------------------------------------------------------


def load_app() -> dict[str, Any]:
    with (ROOT / "init.toml").open("rb") as file:
        return tomllib.load(file)


def plan(plugins: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """initgraph's plan order: dependencies first, ties going to the earlier in the file."""
    done: list[str] = []
    while len(done) < len(plugins):
        ready = [n for n, p in plugins.items() if set(p.get("requires", ())) <= set(done)]
        done.append(next(n for n in ready if n not in done))
    return done


def freeze(value: Any) -> Any:
    """Config as plugins see it: read-only tables, arrays as tuples."""
    if isinstance(value, dict):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    return value


@pytest.mark.parametrize("name", [p["module"] for p in load_app()["plugins"].values()])
def test_each_plugin_registers_against_the_hook_contract(name: str) -> None:
    manager = pluggy.PluginManager(initgraph.hookspecs.PROJECT)
    manager.add_hookspecs(initgraph.hookspecs)
    manager.register(importlib.import_module(name))
    manager.check_pending()
    assert manager.hook.initgraph_init.get_hookimpls()


def init_once(module: Any, ctx: FakeContext) -> Any:
    """The plugin's init; one that is ``async def`` (database's, web's) run to its end."""
    value = module.initgraph_init(ctx=ctx)
    if inspect.isawaitable(value):
        value = asyncio.run(value)
    return value


def init_with_retries(module: Any, ctx: FakeContext, retries: int) -> Any:
    """The plugin's init, tried again on NotReady as a boot would; records its attempts."""
    for _ in range(retries):
        try:
            return init_once(module, ctx)
        except initgraph.NotReady:
            ctx.events.append("not ready")
            time.sleep(0.05)  # the retry delay: the database's server comes up meanwhile
    return init_once(module, ctx)


def shut_down(app: Mapping[str, Any], results: Mapping[str, Any], registry: dict[str, Any]) -> None:
    """Every plugin's shutdown hook, last committed first, with the boot's registry."""
    for name in reversed(plan(app["plugins"])):
        entry = app["plugins"][name]
        module = importlib.import_module(entry["module"])
        if hasattr(module, "initgraph_shutdown"):
            ctx = FakeContext(name, config=freeze(entry.get("config", {})), registry=registry)
            module.initgraph_shutdown(ctx=ctx, result=results[name])


def boot_serially(
    app: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], list[tuple[str, str]]]:
    """Run every plugin's init then commit, in plan order, as one process would.

    Returns the results, the registry and the publications, in order, as (domain, key).
    """
    results: dict[str, Any] = {}
    registry: dict[str, Any] = {}
    log: list[tuple[str, str]] = []
    for cookie, name in enumerate(plan(app["plugins"]), start=1):
        entry = app["plugins"][name]
        module = importlib.import_module(entry["module"])
        ctx = FakeContext(
            name,
            config=freeze(entry.get("config", {})),
            results={r: results[r] for r in entry.get("requires", ())},
            cookie=cookie,
            domain=entry.get("domain", "default"),
            registry=registry,
        )
        results[name] = init_with_retries(module, ctx, entry.get("retries", 0))
        if hasattr(module, "initgraph_commit"):
            module.initgraph_commit(ctx=committing(ctx), result=results[name])
        log.extend(
            (ctx.domain, event.removeprefix("publish "))
            for event in ctx.events
            if event not in ("synchronize", "not ready")
        )
    return results, registry, log


@pytest.fixture
def small_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write_files(
        tmp_path / "docs",
        {"alpha.md": ALPHA.text, "beta.md": BETA.text, "sub/gamma.md": "# Gamma\n" + SHARED},
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_init_toml_declares_the_documented_app() -> None:
    app = load_app()
    assert app["initgraph"] == {
        "workers": "auto",
        "worker_nice": 5,
        "timeout": 60,
        "on_error": "abort",
        "paths": ["."],
    }
    assert "http" in app["domains"]
    plugins = app["plugins"]
    assert plan(plugins) == [
        "settings",
        "corpus",
        "rules",
        "search_index",
        "hashes",
        "records",
        "database",
        "cache",
        "stats",
        "api_routes",
        "admin_routes",
        "web",
    ]
    assert {n for n, p in plugins.items() if p.get("where") == "main"} == {"database", "web"}
    assert {n for n, p in plugins.items() if p.get("domain") == "http"} == {
        "api_routes",
        "admin_routes",
        "web",
    }
    modules = {n: p["module"] for n, p in plugins.items()}
    assert modules.pop("api_routes") == modules.pop("admin_routes") == "plugins.routes"
    assert all(module == f"plugins.{n}" for n, module in modules.items())


def test_init_toml_boots_serially_on_a_small_corpus(small_repo: Path) -> None:
    results, registry, log = boot_serially(load_app())
    try:
        default = [key for domain, key in log if domain == "default"]
        assert default == [
            "app.settings",
            "corpus.paths",
            "lint.rules",
            "lint.findings",
            "search.index",
            "corpus.sha256",
            "corpus.near_duplicates",
            "db.tables",
            "search.cache",
            "stats.summary",
        ]
        routes = [key for domain, key in log if domain == "http"]
        assert routes.pop() == "asgi.app"  # web's, from the routes published before it
        assert routes[0] == "http.route.GET /api/documents"
        assert routes[-1] == "http.route.GET /admin/stats"
        assert len(routes) == len(set(routes)) == 10
        assert results["corpus"][2].path == "sub/gamma.md"
        assert results["stats"].documents == 3
        for name, result in results.items():
            if name != "database":
                assert pickle.loads(pickle.dumps(result)) == result, name
        run_dir = small_repo / ".docsearch"
        assert [p.name for p in run_dir.glob("*.lock")] == [f"database.{os.getpid()}.lock"]
    finally:
        shut_down(load_app(), results, registry)
    # The shutdown hooks closed the database, removed its lock and stopped its server, and
    # flushed the cache to disk.
    assert sorted(p.name for p in run_dir.iterdir()) == ["cache.json"]
    flushed = json.loads((run_dir / "cache.json").read_text())
    assert set(flushed) >= {"cookie order", "deadlock"}  # a query of init.toml, normalized
    with pytest.raises(sqlite3.ProgrammingError):
        database.row_counts(results["database"])


def test_the_database_is_not_ready_until_its_server_is_up(tmp_path: Path) -> None:
    config = {"run_dir": str(tmp_path / "run"), "server_startup": 0.0}
    ctx = FakeContext(
        "database", config=freeze(config), results={"records": records.build_records((ALPHA,))}
    )
    with pytest.raises(initgraph.NotReady, match=r"^the database server in .* is starting$"):
        asyncio.run(database.initgraph_init(ctx))  # async def: raises when awaited
    database._servers[(tmp_path / "run").resolve()].join()  # it is up: startup 0
    connection = asyncio.run(database.initgraph_init(ctx))
    assert (tmp_path / "run" / f"database.{os.getpid()}.lock").exists()
    database.initgraph_shutdown(ctx=ctx, result=connection)
    assert list((tmp_path / "run").iterdir()) == []
