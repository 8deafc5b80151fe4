"""Plugin ``web``: the service's ASGI app, built from the routes the ``http`` domain published.

Its init runs on the boot's thread (``where = "main"``) and is ``async def``: it imports Starlette
in a thread, so under ``initgraph.lifespan`` the event loop goes on meanwhile. Its commit, the
last of the ``http`` domain, finds every ``http.route.*`` publication in the registry, in cookie
order, and publishes ``asgi.app``: a Starlette app with one endpoint per route
(``plugins/_app.py``). ``initgraph run --serve`` serves that app with uvicorn once the boot is
over. Its ``initgraph_boot_finished`` hands the app the finished boot, which the endpoints read
(the index, the database connection, the timings); its shutdown hook, run once the server has
stopped, takes the boot back, so the app no longer answers from what the other plugins close.
"""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

from initgraph import Boot, CommitContext, InitContext, hookimpl

from ._routes import Route

__all__ = [
    "APP_KEY",
    "initgraph_boot_finished",
    "initgraph_commit",
    "initgraph_init",
    "initgraph_shutdown",
]

initgraph_single_instance = True

APP_KEY = "asgi.app"
"""The registry key of the app; ``initgraph run --serve`` serves what is published there."""

_ROUTE_PREFIX = "http.route."


@hookimpl
async def initgraph_init(ctx: InitContext) -> None:
    # Starlette's import takes tens of milliseconds: in a thread, not on the boot's loop.
    await asyncio.to_thread(importlib.import_module, "plugins._app")


@hookimpl
def initgraph_commit(ctx: CommitContext, result: None) -> None:
    from ._app import build_app

    # The registry keeps publication order: the http domain's, which is cookie order.
    routes = [
        value
        for key, value in ctx.registry.items()
        if key.startswith(_ROUTE_PREFIX) and isinstance(value, Route)
    ]
    ctx.publish(APP_KEY, build_app(routes, base_path=ctx.registry["app.settings"].base_path))


@hookimpl
def initgraph_boot_finished(boot: Boot) -> None:
    app = boot.registry.get(APP_KEY)
    if app is not None:
        app.state.boot = boot


@hookimpl
def initgraph_shutdown(ctx: CommitContext, result: None) -> None:
    app: Any = ctx.registry[APP_KEY]
    app.state.boot = None  # a request that still comes finds no service, not a closed database
