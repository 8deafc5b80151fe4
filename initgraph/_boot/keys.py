"""How configuration errors name what they are about: TOML key paths and unknown plugins.

Every configuration error reads ``"{file}: {key}: {problem}"``; the loader (``config``) and the
planner (``graph``) both raise them, so the naming lives here, below both.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable

__all__ = ["key_path", "unknown_plugin"]

# TOML's bare keys; anything else must be quoted to name the same key.
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")


def key_path(*parts: str | int) -> str:
    """The dotted TOML path of a key as errors show it: ``plugins."a.b".requires[0]``.

    String parts that are not TOML bare keys are quoted (so a plugin named ``a.b`` is not mistaken
    for a table ``a`` with a key ``b``); int parts are list indexes and render as ``[i]``.
    """
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
            continue
        name = part if _BARE_KEY.match(part) else json.dumps(part, ensure_ascii=False)
        text += f".{name}" if text else name
    return text


def unknown_plugin(name: str, known: Iterable[str]) -> str:
    """The problem of a ``requires`` entry naming no plugin, with the closest known name."""
    close = difflib.get_close_matches(name, list(known), n=1)
    if close:
        return f"unknown plugin {name!r}; did you mean {close[0]!r}?"
    return f"unknown plugin {name!r}; declare it as [{key_path('plugins', name)}] or remove it"
