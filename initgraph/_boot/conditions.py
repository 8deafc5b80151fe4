"""Conditions: which plugins a boot leaves out at plan time, and why.

A plugin is skipped, not failed, when ``enabled = false``, when one of its ``when`` conditions
does not hold, or when it is disabled for one run; a plugin that requires a skipped plugin is
skipped too. ``enable`` for one run overrides both ``enabled`` and ``when``. Skipped plugins get
no cookie: the plan's cookies stay dense, and the same on every run with the same conditions.

Pure but for what it reads: the environment and platform are passed in.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from .config import Config, PluginConfig
from .graph import plan_order

__all__ = ["skipped_plugins"]

DISABLED = "disabled in init.toml"
DISABLED_FOR_RUN = "disabled for this run"


def skipped_plugins(
    config: Config,
    *,
    environ: Mapping[str, str] = os.environ,
    platform: str = sys.platform,
) -> dict[str, str]:
    """Each plugin the boot leaves out, with why, in plan order (``"disabled in init.toml"``)."""
    why: dict[str, str] = {}
    for plugin in plan_order(config.plugins, path=config.path):
        reason = _own_reason(plugin, config, environ, platform)
        if reason is None:
            reason = next(
                (
                    f"it requires {name!r}, which is "
                    f"{'disabled' if why[name] in (DISABLED, DISABLED_FOR_RUN) else 'skipped'}"
                    for name in plugin.requires
                    if name in why
                ),
                None,
            )
        if reason is not None:
            why[plugin.name] = reason
    return why


def _own_reason(
    plugin: PluginConfig, config: Config, environ: Mapping[str, str], platform: str
) -> str | None:
    """Why ``plugin`` itself is left out, or ``None``: the first condition that does not hold."""
    if plugin.name in config.disable:
        return DISABLED_FOR_RUN
    if plugin.name in config.enable:
        return None
    if not plugin.enabled:
        return DISABLED
    when = plugin.when
    if when.env is not None and when.env not in environ:
        return f"when.env {when.env!r} is not set"
    for name, wanted in when.env_equals.items():
        if name not in environ:
            return f"when.env_equals {name!r} is not set"
        if environ[name] != wanted:
            return f"when.env_equals {name!r} is not {wanted!r}"
    if when.platform and not any(platform.startswith(name) for name in when.platform):
        wanted_text = (
            repr(when.platform[0]) if len(when.platform) == 1 else repr(list(when.platform))
        )
        return f"when.platform {wanted_text} does not match {platform!r}"
    if when.path_exists is not None and not os.path.exists(when.path_exists):
        return f"when.path_exists {when.path_exists!r} does not exist"
    return None
