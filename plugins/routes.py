"""Plugin module ``routes``: HTTP routes under the service's base path, one plugin per group.

``init.toml`` uses it twice, as two plugins: ``api_routes`` (the search API) and ``admin_routes``
(health, metrics). Each instance has its own ``prefix`` and ``routes`` in its config; without a
``prefix`` it is the instance's name up to ``_routes`` (``/api`` for ``api_routes``).

Publishes one ``http.route.<METHOD> <path>`` key per route, kernel style, from inside its init:
synchronizing first puts them after the routes of every earlier plugin of the ``http`` domain, so
the API's routes come before the admin routes in the registry on every run.
"""

from __future__ import annotations

from initgraph import InitContext, hookimpl

from ._routes import Route, init_routes

__all__ = ["initgraph_init"]


@hookimpl
def initgraph_init(ctx: InitContext) -> tuple[Route, ...]:
    return init_routes(ctx, default_prefix=f"/{ctx.name.removesuffix('_routes')}")
