"""A boot as an SVG picture, after the kernel's ``scripts/bootgraph.pl``.

One row per process — the parent, then each worker in the order it first ran an init — with a
bar per init (coloured by domain), its waits shaded grey inside it, the parent's commits as marks
under its row, moving data between processes (the trace's transfer spans, if any) as orange
strips at the foot of the row that did it, a time axis with gridlines, and the critical chain
outlined in red. Every bar
carries a ``<title>`` (a tooltip in browsers) with its numbers; a bar too narrow for its label
gets it rotated, shortened, or left out.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence

from .analysis import ChainLink, critical_chain
from .trace import TraceData, TracedPlugin, TracedTransfer, ms_text

__all__ = ["plot_svg"]

SVG_NS = "http://www.w3.org/2000/svg"

_FONT = 11  # px
_CHAR = 0.6 * _FONT  # the width of an average character of a sans-serif font, roughly
_LEFT = 150  # the row titles' column
_RIGHT = 30
_TOP = 56  # title and time axis
_ROW = 84  # the height of a row; rotated labels fit up to about 12 characters
_GAP = 10
_COMMIT_LANE = 14  # commit marks, under the parent's row
_PALETTE = (
    "#7aa6da",
    "#b9ca4a",
    "#e7c547",
    "#c397d8",
    "#70c0b1",
    "#e78c45",
    "#9fb3c8",
    "#d4a5a5",
)
_FAILED = "#d54e53"
_WAIT = "#9e9e9e"
_CHAIN = "#d00000"
_TRANSFER = "#e78c45"

Scale = Callable[[float], float]  # seconds since the boot started -> x in pixels


def plot_svg(
    trace: TraceData, *, width: int = 1200, chain: Sequence[ChainLink] | None = None
) -> str:
    """The boot as an SVG document (a string); ``chain``: outlined in red (default: computed)."""
    links = critical_chain(trace) if chain is None else chain
    on_chain = {(link.kind, link.plugin) for link in links}
    moved = {(link.plugin, link.started) for link in links if link.kind == "transfer"}
    pids = trace.pids
    span = max(trace.wall, max((p.finished or 0.0 for p in trace.plugins), default=0.0))
    span = span if span > 0 else 1.0
    plot_w = width - _LEFT - _RIGHT
    domains = list(dict.fromkeys(p.domain for p in trace.plugins))
    colour = {d: _PALETTE[i % len(_PALETTE)] for i, d in enumerate(domains)}

    def x(seconds: float) -> float:
        return _LEFT + seconds / span * plot_w

    rows_y = {}
    y = _TOP
    for pid in pids:
        rows_y[pid] = y
        y += _ROW + (_COMMIT_LANE if pid == trace.parent_pid else 0) + _GAP
    legend_y = y + 8
    height = legend_y + 40

    svg = ET.Element(
        "svg",
        {
            "xmlns": SVG_NS,
            "width": str(width),
            "height": str(height),
            "viewBox": f"0 0 {width} {height}",
            "font-family": "sans-serif",
            "font-size": str(_FONT),
        },
    )
    ran = sum(1 for p in trace.plugins if p.ran)
    ET.SubElement(svg, "title").text = "initgraph boot"
    heading = (
        f"initgraph boot: {len(trace.plugins)} plugins ({ran} ran), {trace.workers} workers, "
        f"{ms_text(trace.wall, ' ms')}"
    )
    _text(svg, 10, 18, heading, weight="bold", size=_FONT + 2)
    _axis(svg, span, x, _TOP - 8, y - _GAP)

    for pid in pids:
        top = rows_y[pid]
        parent = pid == trace.parent_pid
        row = ET.SubElement(svg, "g", {"class": "row", "data-pid": str(pid)})
        title = f"parent {pid}" if parent else f"worker {pid}"
        ET.SubElement(row, "title").text = title
        height_here = _ROW + (_COMMIT_LANE if parent else 0)
        # Translucent, so that the axis' gridlines, drawn first, show through under the bars.
        shade = {"fill": "#dddddd", "fill-opacity": "0.35" if parent else "0.12"}
        _rect(row, 0, top, width, height_here, shade)
        _text(row, 8, top + _ROW / 2 + _FONT / 2 - 2, title, weight="bold" if parent else None)
        if parent:
            _text(row, 8, top + _ROW + _COMMIT_LANE - 3, "commits", size=_FONT - 1)
        for p in trace.plugins:
            if p.ran and p.pid == pid:
                _bar(row, p, x, top, colour[p.domain], on_chain)
        for p in trace.plugins:
            for t in p.transfers:
                if t.pid == pid:
                    chained = any(n == p.name and t.started <= at < t.ended for n, at in moved)
                    _transfer(row, p.name, t, x, top + _ROW - 8, chained)
        if parent:
            lane = top + _ROW
            for p in trace.plugins:
                if p.commit_started is not None and p.commit_ended is not None:
                    _commit(row, p, x, lane, (("commit", p.name) in on_chain))
    _legend(svg, colour, legend_y, transfers=trace.transfers_recorded)
    ET.indent(svg, space=" ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(svg, encoding="unicode") + "\n"


def _bar(
    row: ET.Element,
    p: TracedPlugin,
    x: Scale,
    top: float,
    fill: str,
    on_chain: set[tuple[str, str]],
) -> None:
    assert p.started is not None
    assert p.ended is not None
    left, right = x(p.started), x(p.ended)
    w = max(right - left, 1.0)
    bar = ET.SubElement(row, "g", {"class": "initcall", "data-plugin": p.name})
    tip = (
        f"{p.cookie} {p.name} ({p.domain}, {p.status})\n"
        f"init @{ms_text(p.started, ' ms')} +{ms_text(p.init_time, ' ms')}: "
        f"running {ms_text(p.running, ' ms')}, waiting {ms_text(p.waiting, ' ms')}\n"
        f"ready @{ms_text(p.ready, ' ms')}, committed @{ms_text(p.commit_ended, ' ms')}"
    )
    if p.requires:
        tip += f"\nrequires {', '.join(p.requires)}"
    ET.SubElement(bar, "title").text = tip
    style = {"fill": fill if p.status == "ok" else _FAILED, "stroke": "#333333"}
    style["stroke-width"] = "0.5"
    if ("init", p.name) in on_chain:
        style.update({"stroke": _CHAIN, "stroke-width": "2"})
    _rect(bar, left, top + 4, w, _ROW - 8, style).set("class", "init")
    chained_wait = ("wait", p.name) in on_chain
    for wait in p.waits:
        wl, wr = x(wait.started), x(wait.ended)
        shade = {"fill": _WAIT, "fill-opacity": "0.8", "class": "wait"}
        if chained_wait and wait.duration > 0.001:
            shade.update({"stroke": _CHAIN, "stroke-width": "1.5"})
        el = _rect(bar, wl, top + 14, max(wr - wl, 0.5), _ROW - 28, shade)
        ET.SubElement(el, "title").text = f"{p.name} {wait.label} +{ms_text(wait.duration, ' ms')}"
    _label(bar, p.name, left, w, top)


def _label(bar: ET.Element, name: str, left: float, w: float, top: float) -> None:
    """The bar's name: across it if it fits, else rotated, shortened to fit, else nothing."""
    if len(name) * _CHAR + 6 <= w:
        _text(bar, left + 3, top + _ROW / 2 + _FONT / 2 - 2, name)
        return
    if w < _FONT * 0.9:
        return  # too narrow even for a rotated label: the tooltip names it
    room = int((_ROW - 12) / _CHAR)
    text = name if len(name) <= room else name[: max(room - 1, 1)] + "…"
    el = _text(bar, 0, 0, text)
    # Turned a quarter clockwise, glyphs stand to the right of the baseline: centre them.
    el.set("transform", f"translate({left + w / 2 - _FONT * 0.35:.1f},{top + 8}) rotate(90)")


def _transfer(
    row: ET.Element, plugin: str, t: TracedTransfer, x: Scale, y: float, chained: bool
) -> None:
    left, right = x(t.started), x(t.ended)
    strip = ET.SubElement(row, "g", {"class": "transfer", "data-plugin": plugin})
    size = "" if t.size is None else f", {t.size} bytes"
    tip = f"{plugin} {t.name} @{ms_text(t.started, ' ms')} +{ms_text(t.duration, ' ms')}{size}"
    ET.SubElement(strip, "title").text = tip
    style = {"fill": _TRANSFER}
    if chained:
        style.update({"stroke": _CHAIN, "stroke-width": "1.5"})
    _rect(strip, left, y, max(right - left, 1.0), 6, style)


def _commit(row: ET.Element, p: TracedPlugin, x: Scale, lane: float, chained: bool) -> None:
    assert p.commit_started is not None
    assert p.commit_ended is not None
    left, right = x(p.commit_started), x(p.commit_ended)
    mark = ET.SubElement(row, "g", {"class": "commit", "data-plugin": p.name})
    ET.SubElement(
        mark, "title"
    ).text = f"commit {p.name} @{ms_text(p.commit_started, ' ms')} +{ms_text(p.commit_time, ' ms')}"
    stroke = _CHAIN if chained else "#333333"
    _rect(mark, left, lane + 2, max(right - left, 1.5), _COMMIT_LANE - 4, {"fill": stroke})


def _axis(svg: ET.Element, span: float, x: Scale, y: float, bottom: float) -> None:
    axis = ET.SubElement(svg, "g", {"class": "axis"})
    step = _tick_step(span)
    count = int(span / step + 1e-9)
    for i in range(count + 1):
        t = i * step
        at = x(t)
        line = _attrs(x1=at, y1=y + 2, x2=at, y2=bottom, stroke="#dddddd")
        ET.SubElement(axis, "line", line).set("stroke-width", "1")
        label = f"{t * 1000:g} ms" if step < 1 else f"{t:g} s"
        el = _text(axis, at, y, label, size=_FONT - 1)
        el.set("text-anchor", "middle")


def _tick_step(span: float) -> float:
    """The smallest round step (1, 2 or 5 times a power of ten) with at most 10 in ``span``.

    So the axis has 5 to 11 ticks, counting the one at 0.
    """
    raw = span / 10
    power = 10.0 ** math.floor(math.log10(raw))
    for mult in (1, 2, 5):
        if raw <= mult * power:
            return mult * power
    return 10.0 * power


def _legend(svg: ET.Element, colour: dict[str, str], y: float, *, transfers: bool) -> None:
    legend = ET.SubElement(svg, "g", {"class": "legend"})
    at = float(_LEFT)
    items = [(f"domain {d}", {"fill": c}) for d, c in colour.items()]
    items += [
        ("waiting (synchronize)", {"fill": _WAIT}),
        ("failed", {"fill": _FAILED}),
        ("critical chain", {"fill": "#ffffff", "stroke": _CHAIN, "stroke-width": "2"}),
        ("commit (parent)", {"fill": "#333333"}),
    ]
    if transfers:
        items.append(("transfer", {"fill": _TRANSFER}))
    for text, style in items:
        _rect(legend, at, y, 14, 14, style)
        _text(legend, at + 19, y + 11, text)
        at += 19 + len(text) * _CHAR + 18


def _attrs(**values: float | str) -> dict[str, str]:
    return {k: f"{v:.1f}" if isinstance(v, float) else str(v) for k, v in values.items()}


def _rect(
    parent: ET.Element, x: float, y: float, w: float, h: float, style: Mapping[str, str]
) -> ET.Element:
    attrs = _attrs(x=float(x), y=float(y), width=float(w), height=float(h))
    return ET.SubElement(parent, "rect", {**attrs, **style})


def _text(
    parent: ET.Element,
    x: float,
    y: float,
    text: str,
    *,
    weight: str | None = None,
    size: int | None = None,
) -> ET.Element:
    el = ET.SubElement(parent, "text", _attrs(x=float(x), y=float(y)))
    if weight:
        el.set("font-weight", weight)
    if size:
        el.set("font-size", str(size))
    el.text = text
    return el
