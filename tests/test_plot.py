"""The SVG plot of a boot: valid, a row per process, a bar per initcall, readable when large."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import forget_app, observe_args, write_app
from test_trace import with_transfers  # a synthetic trace with transfer spans

import initgraph
from initgraph._observe.analysis import critical_chain
from initgraph._observe.plot import plot_svg
from initgraph._observe.trace import (
    TraceData,
    TracedPlugin,
    TracedWait,
    parse_trace,
    trace_of,
    write_trace,
)

NS = {"svg": "http://www.w3.org/2000/svg"}
CHAIN_RED = "#d00000"


@pytest.fixture(scope="module")
def booted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[initgraph.Boot]:
    root = tmp_path_factory.mktemp("plot")
    plugins: dict[str, dict[str, Any]] = {
        "slow": {"config": {"duration": 0.08}},
        "waiter": {"config": {"synchronize": True}},
        "next": {"requires": ["slow"], "config": {"duration": 0.03}},
        "local": {"requires": ["slow"], "where": "main", "config": {"duration": 0.01}},
        "quick": {"domain": "other", "config": {"duration": 0.005}},
    }
    config = write_app(root, plugins, workers=3)
    config["domains"] = {"other": {}}
    yield initgraph.boot(config)
    forget_app(root)


SVG = "http://www.w3.org/2000/svg"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg.encode())


def title(el: ET.Element) -> str:
    found = el.find(f"{{{SVG}}}title")
    assert found is not None
    return found.text or ""


def groups(root: ET.Element, cls: str) -> list[ET.Element]:
    return [g for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == cls]


def test_plot_is_valid_svg_with_a_row_per_process(booted: initgraph.Boot) -> None:
    trace = trace_of(booted)
    svg = plot_svg(trace)
    assert svg.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<svg ')
    root = parse(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    rows = groups(root, "row")
    assert [int(r.get("data-pid", "0")) for r in rows] == list(trace.pids)
    assert len(rows) == 1 + len({p.pid for p in trace.plugins if p.pid != trace.parent_pid})
    for row in rows:
        pid = int(row.get("data-pid", "0"))
        names = [g.get("data-plugin") for g in groups(row, "initcall")]
        assert names == [p.name for p in trace.plugins if p.pid == pid]
    assert rows[0].findtext("svg:title", namespaces=NS) == f"parent {trace.parent_pid}"
    assert rows[1].findtext("svg:title", namespaces=NS) == f"worker {trace.pids[1]}"


def test_a_bar_per_initcall_with_a_tooltip(booted: initgraph.Boot) -> None:
    trace = trace_of(booted)
    root = parse(plot_svg(trace))
    bars = groups(root, "initcall")
    assert sorted(g.get("data-plugin", "") for g in bars) == sorted(p.name for p in trace)
    for bar in bars:
        (rect,) = [r for r in bar.findall("svg:rect", NS) if r.get("class") == "init"]
        assert float(rect.get("width", "0")) >= 1
        title = bar.findtext("svg:title", namespaces=NS)
        assert title is not None
        assert title.split("\n")[0].split(" ")[1] == bar.get("data-plugin")
    waiter = next(g for g in bars if g.get("data-plugin") == "waiter")
    waits = [r for r in waiter.findall("svg:rect", NS) if r.get("class") == "wait"]
    assert len(waits) == 1
    assert (
        waits[0]
        .findtext("svg:title", namespaces=NS, default="")
        .startswith("waiter synchronize(2) +")
    )


def test_commit_marks_on_the_parent_row_and_an_axis(booted: initgraph.Boot) -> None:
    trace = trace_of(booted)
    root = parse(plot_svg(trace))
    parent, *workers = groups(root, "row")
    assert sorted(g.get("data-plugin", "") for g in groups(parent, "commit")) == sorted(
        booted.results
    )
    assert all(groups(w, "commit") == [] for w in workers)
    (axis,) = groups(root, "axis")
    ticks = [t.text for t in axis.findall("svg:text", NS)]
    assert ticks[0] == "0 ms"
    assert 5 <= len(ticks) <= 11
    assert all(t is not None and t.endswith(" ms") for t in ticks)


def test_the_critical_chain_is_outlined(booted: initgraph.Boot) -> None:
    trace = trace_of(booted)
    chain = {link.plugin for link in critical_chain(trace) if link.kind == "init"}
    assert chain
    root = parse(plot_svg(trace))
    for bar in groups(root, "initcall"):
        (rect,) = [r for r in bar.findall("svg:rect", NS) if r.get("class") == "init"]
        assert (rect.get("stroke") == CHAIN_RED) == (bar.get("data-plugin") in chain)


def many(count: int = 100, workers: int = 4) -> TraceData:
    """``count`` plugins on ``workers`` workers, of very different lengths and name lengths."""
    plugins = []
    ends = [0.01] * workers
    for i in range(count):
        w = min(range(workers), key=lambda k: ends[k])
        length = 0.0005 if i % 3 else 0.002 * (1 + i % 17)
        start, end = ends[w], ends[w] + length
        ends[w] = end + 0.0002
        name = f"plugin_{i:03d}" + ("_with_a_long_descriptive_name" if i % 5 == 0 else "")
        waits = (
            (TracedWait("cookie", "default", i + 1, start, start + length / 2),) if i % 7 else ()
        )
        plugins.append(
            TracedPlugin(
                name=name,
                cookie=i + 1,
                domain="default" if i % 4 else "io",
                requires=(),
                where="pool",
                status="ok" if i != 50 else "failed",
                scheduled=0.0,
                ready=0.01,
                started=start,
                ended=end,
                commit_started=max(ends) + i * 1e-5,
                commit_ended=max(ends) + (i + 1) * 1e-5,
                pid=100 + w,
                waits=waits,
            )
        )
    wall = max(p.commit_ended or 0.0 for p in plugins) + 0.005
    return TraceData(tuple(plugins), wall, parent_pid=1, workers=workers, start_method="fork")


def test_a_hundred_plugins_stay_readable() -> None:
    trace = many()
    root = parse(plot_svg(trace))
    assert len(groups(root, "row")) == 5
    bars = groups(root, "initcall")
    assert len(bars) == 100
    across = rotated = omitted = 0
    for bar in bars:
        assert bar.findtext("svg:title", namespaces=NS)  # a tooltip always
        (rect,) = [r for r in bar.findall("svg:rect", NS) if r.get("class") == "init"]
        width = float(rect.get("width", "0"))
        labels = bar.findall("svg:text", NS)
        if not labels:
            omitted += 1
            continue
        (label,) = labels
        text = label.text or ""
        assert int(label.get("font-size", "11")) >= 11 or label.get("font-size") is None
        if "rotate(90)" in label.get("transform", ""):
            rotated += 1
            assert len(text) <= 13
            assert text == bar.get("data-plugin") or text.endswith("…")
        else:
            across += 1
            assert text == bar.get("data-plugin")
            assert len(text) * 6.6 <= width
    assert min(across, rotated, omitted) > 0, "all three happen among these lengths"
    height = float(root.get("height", "0"))
    assert height < 700  # rows per process, not per plugin


@pytest.mark.parametrize("span", [0.0123, 0.15, 0.19, 0.2, 0.21, 0.5, 0.99, 1.0, 4.2, 37.0])
def test_axis_has_five_to_eleven_round_ticks(span: float) -> None:
    p = TracedPlugin("p", 1, "d", (), "pool", "ok", 0.0, 0.0, 0.0, span, span, span, 7)
    root = parse(plot_svg(TraceData((p,), span, 1, 1, "fork")))
    (axis,) = groups(root, "axis")
    ticks = [t.text or "" for t in axis.findall("svg:text", NS)]
    assert 5 <= len(ticks) <= 11, ticks
    values = [float(t.split()[0]) for t in ticks]
    step = values[1] - values[0]
    assert f"{step:.0e}"[0] in "125"


def test_names_are_escaped() -> None:
    odd = TracedPlugin(
        name='a<b>&"c"',
        cookie=1,
        domain="d&d",
        requires=(),
        where="pool",
        status="ok",
        scheduled=0.0,
        ready=0.0,
        started=0.0,
        ended=0.5,
        commit_started=0.5,
        commit_ended=0.6,
        pid=7,
    )
    root = parse(plot_svg(TraceData((odd,), 0.7, 1, 1, "fork")))
    (bar,) = groups(root, "initcall")
    assert bar.get("data-plugin") == 'a<b>&"c"'


def test_plot_command(
    booted: initgraph.Boot, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "boot.json"
    write_trace(booted, path)
    args = observe_args(["plot", str(path)])
    assert args.command(args) == 0
    written = tmp_path / "boot.svg"
    rows = len(trace_of(booted).pids)
    assert capsys.readouterr().out == f"wrote {written}: {rows} rows (processes), 5 initcalls\n"
    parse(written.read_text())
    args = observe_args(["plot", str(path), "-o", str(tmp_path / "missing" / "x.svg")])
    assert args.command(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"initgraph: error: cannot write '{tmp_path / 'missing' / 'x.svg'}'")


def test_transfer_spans_are_drawn_on_the_row_that_did_them() -> None:
    root = parse(plot_svg(parse_trace(with_transfers())))
    strips = groups(root, "transfer")
    assert sorted((g.get("data-plugin") or "", title(g).split()[1]) for g in strips) == [
        ("data", "load"),
        ("data", "serialize"),
        ("user", "load"),
    ]
    rows = {
        g.get("data-pid"): [s.get("data-plugin") for s in groups(g, "transfer")]
        for g in groups(root, "row")
    }
    assert rows == {"1": ["data"], "10": ["data"], "11": ["user"]}
    legend = [t.text for t in root.iter(f"{{{SVG}}}text") if t.text == "transfer"]
    assert legend == ["transfer"]
