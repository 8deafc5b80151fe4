"""The plan: in which order a boot's plugins are given their cookies.

A plugin comes after every plugin it ``requires``; among plugins that are ready at the same time the
one declared first in ``init.toml`` goes first. This is Kahn's algorithm with a heap on the file
index, so the plan is the lexicographically smallest topological order by file position: the same
on every run, and exactly the file order when nothing requires anything.

Everything here is pure: no I/O, no imports of plugins, no processes. It needs of a plugin only its
``name`` and ``requires``. Errors name the key that holds the mistake, in the same
``"{file}: {key}: {problem}"`` shape as the rest of the configuration errors.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Protocol, TypeVar

from .._errors import ConfigError, CycleError
from .keys import key_path, unknown_plugin

__all__ = ["Requiring", "find_cycle", "plan_order"]


class Requiring(Protocol):
    """A plugin as the plan sees it: a name, and the names of the plugins it requires."""

    @property
    def name(self) -> str: ...
    @property
    def requires(self) -> tuple[str, ...]: ...


_P = TypeVar("_P", bound=Requiring)


def plan_order(plugins: Sequence[_P], *, path: str | None = None) -> tuple[_P, ...]:
    """The order in which ``plugins`` get their cookies: dependencies first, then file order.

    ``plugins`` is in file order. Each plugin comes after everything in its ``requires``; ties go to
    the plugin that comes first in ``plugins``. ``path`` is the file name used in error messages
    (``None``: the configuration came from a mapping, shown as ``<dict>``).

    Raises :class:`ConfigError` for two plugins with one name or a ``requires`` entry naming no
    plugin, and :class:`CycleError` (with ``.cycle``, first name repeated at the end) when the
    requirements form a cycle.
    """
    file = "<dict>" if path is None else path
    position = _positions(plugins, file, path)
    for plugin in plugins:
        for required in plugin.requires:
            if required not in position:
                key = key_path("plugins", plugin.name, "requires")
                msg = f"{file}: {key}: {unknown_plugin(required, position)}"
                raise ConfigError(msg, path=path, key=key)
    order, cycle = _kahn(plugins, position)
    if cycle is not None:
        names = [plugins[i].name for i in cycle]
        key = key_path("plugins", names[0], "requires")
        msg = f"{file}: {key}: dependency cycle: {' -> '.join(names)}"
        raise CycleError(msg, cycle=names, path=path, key=key)
    return tuple(plugins[i] for i in order)


def find_cycle(plugins: Sequence[Requiring]) -> list[str] | None:
    """A cycle among the ``requires`` of ``plugins``, or ``None`` if there is none.

    The cycle lists plugin names in order, each requiring the next, starting with the member
    declared first and ending with it again: ``["a", "b", "c", "a"]``. When there are several, the
    one found is always the same for the same input. Requirements naming no plugin are ignored.
    """
    position = {plugin.name: index for index, plugin in enumerate(plugins)}
    _, cycle = _kahn(plugins, position)
    return None if cycle is None else [plugins[i].name for i in cycle]


def _positions(plugins: Sequence[Requiring], file: str, path: str | None) -> dict[str, int]:
    position: dict[str, int] = {}
    for index, plugin in enumerate(plugins):
        if plugin.name in position:
            key = key_path("plugins", plugin.name)
            msg = f"{file}: {key}: declared twice; give each plugin its own name"
            raise ConfigError(msg, path=path, key=key)
        position[plugin.name] = index
    return position


def _kahn(
    plugins: Sequence[Requiring], position: dict[str, int]
) -> tuple[list[int], list[int] | None]:
    """Kahn's algorithm over file indexes: the order reached, and a cycle if it got stuck."""
    # Duplicates in a requires list must not count twice, or the plugin would never become ready.
    requires = [
        [position[name] for name in dict.fromkeys(plugin.requires) if name in position]
        for plugin in plugins
    ]
    waiting = [len(edges) for edges in requires]
    dependents: list[list[int]] = [[] for _ in plugins]
    for index, edges in enumerate(requires):
        for required in edges:
            dependents[required].append(index)
    ready = [index for index, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        index = heapq.heappop(ready)
        order.append(index)
        for dependent in dependents[index]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                heapq.heappush(ready, dependent)
    if len(order) == len(plugins):
        return order, None
    return order, _cycle_among({i for i, count in enumerate(waiting) if count}, requires)


def _cycle_among(stuck: set[int], requires: list[list[int]]) -> list[int]:
    """A cycle through ``stuck``, the plugins Kahn's algorithm could not place.

    Each stuck plugin still waits for at least one stuck plugin, so following the first such
    requirement from any of them must come back to a plugin already seen: that loop is a cycle.
    """
    seen: dict[int, int] = {}
    trail: list[int] = []
    index = min(stuck)
    while index not in seen:
        seen[index] = len(trail)
        trail.append(index)
        index = next(required for required in requires[index] if required in stuck)
    cycle = trail[seen[index] :]
    # Start at the member declared first, so the same cycle always reads the same way.
    start = cycle.index(min(cycle))
    cycle = cycle[start:] + cycle[:start]
    return [*cycle, cycle[0]]
