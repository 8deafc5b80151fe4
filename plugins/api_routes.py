"""Plugin ``api_routes``: the search API's HTTP routes, under the service's base path.

Publishes one ``http.route.<METHOD> <path>`` key per route, kernel style, from inside its init:
synchronizing first puts them after the routes of every earlier plugin of the ``http`` domain.
"""

from __future__ import annotations

from initgraph import InitContext, hookimpl

from ._routes import Route, init_routes

__all__ = ["initgraph_init"]


@hookimpl
def initgraph_init(ctx: InitContext) -> tuple[Route, ...]:
    return init_routes(ctx, default_prefix="/api")
