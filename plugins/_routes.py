"""HTTP routes for the route plugins: parse, validate and order them, then publish them in order.

A route is written ``"METHOD /path/{param}"``. Routes are ordered by path, segment by segment,
with literal segments before ``{parameters}`` (so ``/documents/stats`` is tried before
``/documents/{path}``), then by method; the order never depends on the config's order or timing.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from initgraph import InitContext

from ._config import check_keys, get_str, get_strs

__all__ = [
    "METHODS",
    "Route",
    "build_routes",
    "init_routes",
    "parse_route",
    "publish_routes",
    "route_key",
]

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")

_SEGMENT = re.compile(r"[a-z0-9][a-z0-9._-]*|\{[a-z_][a-z0-9_]*\}")


@dataclass(frozen=True)
class Route:
    """A method and an absolute path, and the name of the handler that serves them."""

    method: str
    path: str
    handler: str


def parse_route(spec: str, *, prefix: str = "/") -> Route:
    """Parse ``"METHOD /path"`` under ``prefix``; the handler is named after method and path."""
    method, _, path = spec.strip().partition(" ")
    path = path.strip()
    if method not in METHODS:
        msg = f"route {spec!r}: method must be one of {', '.join(METHODS)}"
        raise ValueError(msg)
    if not path.startswith("/"):
        msg = f"route {spec!r}: path must start with '/'"
        raise ValueError(msg)
    segments = [s for s in f"{prefix}/{path}".split("/") if s]
    for segment in segments:
        if not _SEGMENT.fullmatch(segment):
            msg = f"route {spec!r}: bad path segment {segment!r}"
            raise ValueError(msg)
    names = [re.sub(r"[^a-z0-9]+", "_", s).strip("_") for s in segments]
    return Route(method, "/" + "/".join(segments), "_".join([method.lower(), *names]) or "root")


def _order(route: Route) -> tuple[tuple[tuple[bool, str], ...], int]:
    segments = tuple((s.startswith("{"), s) for s in route.path.split("/") if s)
    return segments, METHODS.index(route.method)


def build_routes(specs: Sequence[str], *, prefix: str = "/") -> tuple[Route, ...]:
    """Parse every route under ``prefix`` and order them; the same route twice is an error."""
    routes = sorted((parse_route(spec, prefix=prefix) for spec in specs), key=_order)
    for before, after in itertools.pairwise(routes):
        if (before.method, before.path) == (after.method, after.path):
            msg = f"route {before.method} {before.path} is declared twice"
            raise ValueError(msg)
    return tuple(routes)


def route_key(route: Route) -> str:
    """The registry key of a route: ``"http.route.GET /api/search"``."""
    return f"http.route.{route.method} {route.path}"


def publish_routes(ctx: InitContext, routes: Sequence[Route]) -> None:
    """Publish each route, kernel style: after every earlier plugin of the domain has finished."""
    ctx.synchronize()
    for route in routes:
        ctx.publish(route_key(route), route)


def init_routes(ctx: InitContext, *, default_prefix: str) -> tuple[Route, ...]:
    """A route plugin's init: build its ``routes`` under base path and ``prefix``, then publish."""
    check_keys(ctx.config, ("prefix", "routes"), plugin=ctx.name)
    prefix = get_str(ctx.config, "prefix", default_prefix, plugin=ctx.name)
    specs = get_strs(ctx.config, "routes", (), plugin=ctx.name)
    routes = build_routes(specs, prefix=f"{ctx.results['settings'].base_path}/{prefix}")
    publish_routes(ctx, routes)
    return routes
