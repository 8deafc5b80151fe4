"""Running a config's plugins one after another in this process, with no scheduler.

The honest alternative to a boot is no scheduler at all: the same plugins, loaded the same way
(:func:`~.run.prepare`), each ``initgraph_init`` then its ``initgraph_commit`` called here, in
plan order. ``initgraph run --compare`` measures a boot against it. ``ctx.synchronize()`` returns
at once (every lower cookie is done by then). The clock runs from the first init to the last
commit, as a boot's wall time runs from its start to its end, loading the plugins left out of
both. Module-level ``initgraph.schedule`` and ``initgraph.synchronize_*`` have no scheduler to
act on here.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import plugins as _plugins
from .run import prepare
from .state import describe_error

__all__ = ["InProcessRun", "run_in_process"]


@dataclass(frozen=True)
class InProcessRun:
    """How long the plugins took one after another in this process, and whether they all ran.

    ``failed``: the plugin (not optional) whose hook raised, ``error`` why; the run stopped there.
    """

    wall: float
    failed: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.failed is None


def _nothing_to_wait_for(cookie: int, domain: str, timeout: float | None) -> None:
    """``ctx.synchronize()`` in order: every lower cookie has run already."""


def run_in_process(
    config: str | os.PathLike[str] | Mapping[str, Any], overrides: Mapping[str, Any]
) -> InProcessRun:
    """Run every plugin of ``config`` in this process, in plan order; return how long it took.

    An optional plugin that fails is passed over with what requires it, as a boot does.
    """
    loaded, the_plan, ordered, _, pm = prepare(config, overrides)
    configs = {p.name: p.config for p in ordered}
    results: dict[str, Any] = {}
    registry: dict[str, Any] = {}
    passed: set[str] = set()  # optional plugins that failed, and what requires them
    started = time.monotonic()
    with _plugins.on_path(loaded.settings.paths):
        for p in the_plan.plugins:
            if passed.intersection(p.requires):
                passed.add(p.name)
                continue
            common: dict[str, Any] = {
                "name": p.name,
                "cookie": p.cookie,
                "domain": p.domain,
                "config": configs[p.name],
                "results": {r: results[r] for r in p.requires},
            }

            def attempt(common: dict[str, Any] = common) -> tuple[Any, _plugins.InitContext]:
                ctx = _plugins.InitContext(sync=_nothing_to_wait_for, **common)
                value = _plugins.call_one(pm, "initgraph_init", ctx.name, ctx=ctx)
                if inspect.isawaitable(value):
                    # an async def init: in a loop of its own, a fresh one each attempt
                    value = _plugins.run_in_own_loop(value)
                return value, ctx

            retry = _plugins.Retry(p.retries, p.retry_delay, p.retry_delay_max, p.retry_on)
            retryable = _plugins.retry_types(p.retry_on)
            try:
                value, ctx, _ = _plugins.retrying(p.name, p.cookie, retry, retryable, attempt)
                registry.update(ctx.publications)
                commit = _plugins.CommitContext(
                    registry=registry, publish=registry.__setitem__, **common
                )
                _plugins.call_one(pm, "initgraph_commit", p.name, ctx=commit, result=value)
            except Exception as exc:
                if p.optional:
                    passed.add(p.name)
                    continue
                return InProcessRun(time.monotonic() - started, p.name, describe_error(exc))
            results[p.name] = value
        wall = time.monotonic() - started
        # What the run opened is closed as a boot closes it: last committed first.
        for p in reversed(the_plan.plugins):
            if p.name in results:
                closing = _plugins.CommitContext(
                    registry=registry,
                    publish=registry.__setitem__,
                    name=p.name,
                    cookie=p.cookie,
                    domain=p.domain,
                    config=configs[p.name],
                    results={r: results[r] for r in p.requires},
                )
                with contextlib.suppress(Exception):
                    _plugins.call_one(
                        pm, "initgraph_shutdown", p.name, ctx=closing, result=results[p.name]
                    )
    return InProcessRun(wall)
