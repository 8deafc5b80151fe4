"""The search service's ASGI app: one Starlette endpoint per route the ``http`` domain published.

Each route is served by the endpoint named by its method and its path under the base path
(``GET /api/search``); a route with no endpoint here answers 501. Endpoints read the finished
boot from ``app.state.boot`` (set by the ``web`` plugin once the boot is over): the index and the
query cache, the settings and the statistics from its registry, the SQLite connection from its
results, and the timings. Imported by the ``web`` plugin only: Starlette is the ``example`` extra.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route as StarletteRoute

from ._routes import Route
from .cache import correct, normalize
from .search_index import Hit, search

__all__ = ["ENDPOINTS", "build_app"]

Endpoint = Callable[[Request], Awaitable[JSONResponse]]


def _boot(request: Request) -> Any:
    boot = getattr(request.app.state, "boot", None)
    if boot is None:
        raise _Unavailable
    return boot


class _Unavailable(Exception):
    """The boot is not finished, or already shut down: nothing to answer from."""


def _hits(hits: Sequence[Hit]) -> list[dict[str, Any]]:
    return [asdict(hit) for hit in hits]


def _answer(boot: Any, query: str, limit: int | None) -> dict[str, Any]:
    settings = boot.registry["app.settings"]
    limit = settings.max_results if limit is None else max(1, min(limit, settings.max_results))
    cached = boot.registry.get("search.cache", {}).get(normalize(query))
    if cached is not None and len(cached.hits) >= limit:
        return {"query": query, "cached": True, "hits": _hits(cached.hits[:limit])}
    found = search(boot.registry["search.index"], query, limit=limit)
    return {"query": query, "cached": False, "hits": _hits(found)}


def _limit(request: Request) -> int | None:
    text = request.query_params.get("limit")
    return int(text) if text is not None and text.isdigit() else None


async def search_get(request: Request) -> JSONResponse:
    query = request.query_params.get("q", "")
    return JSONResponse(_answer(_boot(request), query, _limit(request)))


async def search_post(request: Request) -> JSONResponse:
    body = await request.json()
    query = body.get("q", "") if isinstance(body, dict) else ""
    limit = body.get("limit") if isinstance(body, dict) else None
    return JSONResponse(
        _answer(_boot(request), str(query), limit if isinstance(limit, int) else None)
    )


async def suggest(request: Request) -> JSONResponse:
    index = _boot(request).registry["search.index"]
    words = request.query_params.get("q", "").lower().split()
    return JSONResponse({"suggestions": [correct(w, index, 2) for w in words]})


async def documents(request: Request) -> JSONResponse:
    db = _boot(request).results["database"]
    rows = db.execute("SELECT path, title, words FROM documents ORDER BY path").fetchall()
    return JSONResponse([{"path": p, "title": t, "words": w} for p, t, w in rows])


async def document(request: Request) -> JSONResponse:
    db = _boot(request).results["database"]
    path = request.path_params["path"]
    row = db.execute("SELECT title, words, body FROM documents WHERE path = ?", (path,)).fetchone()
    if row is None:
        return JSONResponse({"error": f"no document {path!r}"}, status_code=404)
    title, words, body = row
    return JSONResponse({"path": path, "title": title, "words": words, "body": body})


async def sections(request: Request) -> JSONResponse:
    db = _boot(request).results["database"]
    path = request.path_params["path"]
    rows = db.execute(
        "SELECT s.level, s.heading FROM sections s JOIN documents d ON d.id = s.document_id"
        " WHERE d.path = ? ORDER BY s.position",
        (path,),
    ).fetchall()
    if (
        not rows
        and db.execute("SELECT 1 FROM documents WHERE path = ?", (path,)).fetchone() is None
    ):
        return JSONResponse({"error": f"no document {path!r}"}, status_code=404)
    return JSONResponse([{"level": level, "heading": heading} for level, heading in rows])


async def health(request: Request) -> JSONResponse:
    boot = _boot(request)
    return JSONResponse({"status": "ok", "service": boot.registry["app.settings"].service})


async def metrics(request: Request) -> JSONResponse:
    """The boot's timings, in milliseconds, in cookie order."""
    boot = _boot(request)

    def ms(seconds: float | None) -> float | None:
        return None if seconds is None else round(seconds * 1e3, 3)

    plugins = {}
    for p in boot.plan.plugins:
        timing = boot.timings.get(p.name)
        plugins[p.name] = {
            "status": boot.status(p.name),
            "where": p.where,
            "init_ms": ms(timing.init_time if timing else None),
            "commit_ms": ms(timing.commit_time if timing else None),
            "pid": timing.pid if timing else None,
        }
    return JSONResponse({"boot_ms": ms(boot.wall), "plugins": plugins})


async def stats(request: Request) -> JSONResponse:
    return JSONResponse(asdict(_boot(request).registry["stats.summary"]))


ENDPOINTS: dict[str, Endpoint] = {
    "GET /api/search": search_get,
    "POST /api/search": search_post,
    "GET /api/suggest": suggest,
    "GET /api/documents": documents,
    "GET /api/documents/{path}": document,
    "GET /api/documents/{path}/sections": sections,
    "GET /admin/health": health,
    "GET /admin/metrics": metrics,
    "GET /admin/stats": stats,
}
"""The endpoints, by method and path under the base path."""


async def _not_implemented(request: Request) -> JSONResponse:
    msg = f"{request.method} {request.url.path} has no endpoint in this service"
    return JSONResponse({"error": msg}, status_code=501)


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": "the service is not booted"}, status_code=503)


def build_app(routes: Sequence[Route], *, base_path: str = "/") -> Starlette:
    """A Starlette app serving ``routes``, in their order, each by its endpoint in ENDPOINTS."""
    base = "" if base_path == "/" else base_path
    served = []
    for route in routes:
        relative = route.path.removeprefix(base) or "/"
        endpoint = ENDPOINTS.get(f"{route.method} {relative}", _not_implemented)
        served.append(
            StarletteRoute(route.path, endpoint, methods=[route.method], name=route.handler)
        )
    app = Starlette(routes=served, exception_handlers={_Unavailable: _unavailable})
    app.state.boot = None
    return app
