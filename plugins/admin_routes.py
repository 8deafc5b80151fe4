"""Plugin ``admin_routes``: the operators' HTTP routes (health, metrics), under the base path.

Publishes one ``http.route.<METHOD> <path>`` key per route, kernel style, like ``api_routes``:
its cookie is higher, so its routes follow the API's in the registry on every run.
"""

from __future__ import annotations

from initgraph import InitContext, hookimpl

from ._routes import Route, init_routes

__all__ = ["initgraph_init"]


@hookimpl
def initgraph_init(ctx: InitContext) -> tuple[Route, ...]:
    return init_routes(ctx, default_prefix="/admin")
