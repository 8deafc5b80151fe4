"""Plugin ``settings``: load and validate the service's settings from its config table.

Publishes ``app.settings`` from its commit hook.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from initgraph import CommitContext, InitContext, hookimpl

from ._config import check_keys, get_int, get_str

__all__ = ["Settings", "initgraph_commit", "initgraph_init", "load_settings"]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class Settings:
    """How the search service presents itself and answers."""

    service: str
    host: str
    port: int
    base_path: str
    max_results: int
    log_level: str


def load_settings(config: Mapping[str, Any], *, plugin: str = "settings") -> Settings:
    """Build :class:`Settings` from a config table, refusing unknown keys and bad values."""
    check_keys(config, [f.name for f in fields(Settings)], plugin=plugin)
    base_path = get_str(config, "base_path", "/", plugin=plugin)
    if not base_path.startswith("/") or "//" in base_path:
        msg = f"plugin {plugin!r}: config key 'base_path' must start with '/', got {base_path!r}"
        raise ValueError(msg)
    log_level = get_str(config, "log_level", "INFO", plugin=plugin).upper()
    if log_level not in LOG_LEVELS:
        expected = ", ".join(LOG_LEVELS)
        msg = f"plugin {plugin!r}: config key 'log_level' must be one of {expected}"
        msg += f", got {log_level!r}"
        raise ValueError(msg)
    return Settings(
        service=get_str(config, "service", "docsearch", plugin=plugin),
        host=get_str(config, "host", "127.0.0.1", plugin=plugin),
        port=get_int(config, "port", 8080, plugin=plugin, minimum=1, maximum=65535),
        base_path=base_path.rstrip("/") or "/",
        max_results=get_int(config, "max_results", 10, plugin=plugin, minimum=1, maximum=1000),
        log_level=log_level,
    )


@hookimpl
def initgraph_init(ctx: InitContext) -> Settings:
    return load_settings(ctx.config, plugin=ctx.name)


@hookimpl
def initgraph_commit(ctx: CommitContext, result: Settings) -> None:
    ctx.publish("app.settings", result)
