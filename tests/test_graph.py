"""Tests of initgraph._boot.graph: the planned order and cycle detection."""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from initgraph._boot.config import PluginConfig
from initgraph._boot.graph import find_cycle, plan_order
from initgraph._errors import ConfigError, CycleError


def plugin(name: str, *requires: str) -> PluginConfig:
    return PluginConfig(name=name, module=f"plugins.{name}", requires=requires)


def names(plugins: Sequence[PluginConfig]) -> list[str]:
    return [p.name for p in plugins]


def graph(edges: Sequence[Sequence[int]]) -> list[PluginConfig]:
    """Plugins p0, p1, ... where plugin i requires the plugins listed in ``edges[i]``."""
    return [plugin(f"p{i}", *(f"p{j}" for j in required)) for i, required in enumerate(edges)]


def smallest_topological_order(plugins: Sequence[PluginConfig]) -> list[str]:
    """The reference: repeatedly take the first plugin in file order whose requirements are met."""
    done: list[str] = []
    left = list(plugins)
    while left:
        ready = next(p for p in left if set(p.requires) <= set(done))
        done.append(ready.name)
        left.remove(ready)
    return done


# --- plan_order: examples ---------------------------------------------------------------------


def test_empty_plan() -> None:
    assert plan_order([]) == ()
    assert find_cycle([]) is None


def test_file_order_without_requires() -> None:
    plugins = [plugin("c"), plugin("a"), plugin("b")]
    assert plan_order(plugins) == tuple(plugins)


def test_requirement_comes_first() -> None:
    plugins = [plugin("corpus", "settings"), plugin("settings")]
    assert names(plan_order(plugins)) == ["settings", "corpus"]


def test_ties_go_to_file_order() -> None:
    # d and b both become ready once a is placed; b is declared first, so it goes first.
    plugins = [plugin("d", "a"), plugin("b", "a"), plugin("a"), plugin("c")]
    assert names(plan_order(plugins)) == ["a", "d", "b", "c"]


def test_ready_plugin_declared_earlier_overtakes() -> None:
    # c waits for e; d is ready from the start and is declared before e.
    plugins = [plugin("c", "e"), plugin("d"), plugin("e")]
    assert names(plan_order(plugins)) == ["d", "e", "c"]


def test_duplicate_requirement_counts_once() -> None:
    plugins = [plugin("a", "b", "b"), plugin("b")]
    assert names(plan_order(plugins)) == ["b", "a"]


def test_plan_returns_the_same_objects() -> None:
    plugins = [plugin("b", "a"), plugin("a")]
    planned = plan_order(plugins)
    assert planned[0] is plugins[1]
    assert planned[1] is plugins[0]


# --- plan_order: errors -----------------------------------------------------------------------


def test_cycle_message_and_cycle() -> None:
    plugins = [plugin("a", "b"), plugin("b", "c"), plugin("c", "a")]
    message = "init.toml: plugins.a.requires: dependency cycle: a -> b -> c -> a"
    with pytest.raises(CycleError, match=rf"^{re.escape(message)}$") as info:
        plan_order(plugins, path="init.toml")
    assert info.value.cycle == ["a", "b", "c", "a"]
    assert info.value.key == "plugins.a.requires"
    assert info.value.path == "init.toml"


def test_cycle_starts_at_first_declared_member() -> None:
    # The walk enters the cycle at c, but the cycle is reported from b, declared earlier.
    plugins = [plugin("x", "c"), plugin("b", "c"), plugin("c", "b")]
    message = "<dict>: plugins.b.requires: dependency cycle: b -> c -> b"
    with pytest.raises(CycleError, match=rf"^{re.escape(message)}$") as info:
        plan_order(plugins)
    assert info.value.cycle == ["b", "c", "b"]
    assert info.value.path is None
    assert find_cycle(plugins) == ["b", "c", "b"]


def test_self_requirement_is_a_cycle_of_one() -> None:
    plugins = [plugin("a", "a")]
    message = "<dict>: plugins.a.requires: dependency cycle: a -> a"
    with pytest.raises(CycleError, match=rf"^{re.escape(message)}$") as info:
        plan_order(plugins)
    assert info.value.cycle == ["a", "a"]


def test_cycle_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        plan_order([plugin("a", "b"), plugin("b", "a")])


def test_unknown_requirement() -> None:
    plugins = [plugin("settings"), plugin("corpus", "setings")]
    message = (
        "init.toml: plugins.corpus.requires: unknown plugin 'setings'; did you mean 'settings'?"
    )
    with pytest.raises(ConfigError, match=rf"^{re.escape(message)}$") as info:
        plan_order(plugins, path="init.toml")
    assert info.value.key == "plugins.corpus.requires"


def test_unknown_requirement_without_close_match() -> None:
    plugins = [plugin("corpus", "zzz")]
    message = (
        "<dict>: plugins.corpus.requires: unknown plugin 'zzz'; "
        "declare it as [plugins.zzz] or remove it"
    )
    with pytest.raises(ConfigError, match=rf"^{re.escape(message)}$"):
        plan_order(plugins)


def test_duplicate_plugin_name() -> None:
    plugins = [plugin("a"), plugin("a")]
    message = "init.toml: plugins.a: declared twice; give each plugin its own name"
    with pytest.raises(ConfigError, match=rf"^{re.escape(message)}$"):
        plan_order(plugins, path="init.toml")


def test_find_cycle_ignores_unknown_requirements() -> None:
    assert find_cycle([plugin("a", "nowhere")]) is None


# --- properties -------------------------------------------------------------------------------


@st.composite
def dags(draw: st.DrawFn) -> list[PluginConfig]:
    """A random DAG: a hidden random order decides which plugin may require which."""
    size = draw(st.integers(min_value=0, max_value=12))
    rank = draw(st.permutations(range(size)))
    edges = []
    for i in range(size):
        earlier = [j for j in range(size) if rank[j] < rank[i]]
        edges.append(draw(st.lists(st.sampled_from(earlier), unique=True)) if earlier else [])
    return graph(edges)


@st.composite
def cyclic_graphs(draw: st.DrawFn) -> list[PluginConfig]:
    """A random graph with at least one cycle planted in it."""
    size = draw(st.integers(min_value=1, max_value=10))
    edges = [
        draw(st.lists(st.integers(min_value=0, max_value=size - 1), unique=True, max_size=3))
        for _ in range(size)
    ]
    members = draw(st.lists(st.integers(0, size - 1), min_size=1, max_size=size, unique=True))
    for here, there in pairwise([*members, members[0]]):
        if there not in edges[here]:
            edges[here].append(there)
    return graph(edges)


@settings(max_examples=200, deadline=None)
@given(dags())
def test_plan_is_a_deterministic_topological_order(plugins: list[PluginConfig]) -> None:
    planned = plan_order(plugins)
    assert sorted(names(planned)) == sorted(names(plugins))
    position = {p.name: i for i, p in enumerate(planned)}
    for p in plugins:
        for required in p.requires:
            assert position[required] < position[p.name]
    assert plan_order(plugins) == planned
    # Ties go to file order: the plan is the smallest topological order by file position.
    assert names(planned) == smallest_topological_order(plugins)
    assert find_cycle(plugins) is None


@settings(max_examples=100, deadline=None)
@given(dags(), st.data())
def test_plan_does_not_depend_on_requires_order(
    plugins: list[PluginConfig], data: st.DataObject
) -> None:
    shuffled = [plugin(p.name, *data.draw(st.permutations(p.requires))) for p in plugins]
    assert names(plan_order(shuffled)) == names(plan_order(plugins))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(), unique=True, max_size=20))
def test_plan_is_file_order_without_requires(keys: list[int]) -> None:
    plugins = [plugin(f"n{key}") for key in keys]
    assert plan_order(plugins) == tuple(plugins)


@settings(max_examples=200, deadline=None)
@given(cyclic_graphs())
def test_cycle_reported_is_a_real_cycle(plugins: list[PluginConfig]) -> None:
    with pytest.raises(CycleError) as info:
        plan_order(plugins, path="init.toml")
    cycle = info.value.cycle
    requires = {p.name: p.requires for p in plugins}
    file_index = {p.name: i for i, p in enumerate(plugins)}
    assert len(cycle) >= 2
    assert cycle[0] == cycle[-1]
    assert len(set(cycle[:-1])) == len(cycle) - 1
    for here, there in pairwise(cycle):
        assert there in requires[here]
    assert cycle[0] == min(cycle, key=file_index.__getitem__)
    expected = f"init.toml: plugins.{cycle[0]}.requires: dependency cycle: {' -> '.join(cycle)}"
    assert str(info.value) == expected
    assert find_cycle(plugins) == cycle
