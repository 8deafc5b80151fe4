"""The public surface is exactly the one docs/design.md describes."""

from __future__ import annotations

import pickle

import pytest

import initgraph

PUBLIC = {
    # the core (section 2)
    "Scheduler",
    "Domain",
    "schedule",
    "synchronize_cookie",
    "synchronize_full",
    "current_is_async",
    # plugins and boots (sections 4-5)
    "hookimpl",
    "hookspec",
    "boot",
    "Boot",
    # inside an event loop
    "aboot",
    "lifespan",
    # what plugin authors type their hooks with, and what embedders need (section 7)
    "InitContext",
    "CommitContext",
    "Plan",
    "Registry",
    "load_config",
    "write_trace",
    # errors (section 6)
    "InitgraphError",
    "NotReady",
    "ConfigError",
    "CycleError",
    "PluginError",
    "HookError",
    "HookTimeout",
    "WorkerCrashed",
    "DeadlockError",
    "OrderingError",
    "RegistryConflict",
    "BootError",
}


def test_all_is_exactly_the_public_api() -> None:
    assert set(initgraph.__all__) == PUBLIC
    assert len(initgraph.__all__) == len(PUBLIC)
    classes = [name for name in PUBLIC if isinstance(getattr(initgraph, name), type)]
    # tracebacks show the public name, not the private module
    assert {name: getattr(initgraph, name).__module__ for name in classes} == dict.fromkeys(
        classes, "initgraph"
    )


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError, match=r"^module 'initgraph' has no attribute 'nope'$"):
        _ = initgraph.nope  # type: ignore[attr-defined]


def test_error_tree() -> None:
    E = initgraph
    assert issubclass(E.ConfigError, E.InitgraphError)
    assert issubclass(E.ConfigError, ValueError)
    assert issubclass(E.CycleError, E.ConfigError)
    for name in ("PluginError", "HookError", "DeadlockError", "OrderingError", "NotReady"):
        assert issubclass(getattr(E, name), E.InitgraphError)
    assert issubclass(E.HookTimeout, E.HookError)
    assert issubclass(E.WorkerCrashed, E.HookError)
    assert issubclass(E.RegistryConflict, E.InitgraphError)
    assert issubclass(E.BootError, E.InitgraphError)
    assert E.HookError.__module__ == "initgraph"


def test_errors_pickle_with_their_fields() -> None:
    err = initgraph.WorkerCrashed("boom", cookie=3, name="probe", exitcode=-9)
    back = pickle.loads(pickle.dumps(err))
    assert (back.cookie, back.name, back.exitcode, back.signal) == (3, "probe", -9, "SIGKILL")
    assert str(back) == "boom"
    cyc = pickle.loads(pickle.dumps(initgraph.CycleError("c", cycle=["a", "b", "a"])))
    assert cyc.cycle == ["a", "b", "a"]


def test_domain_is_frozen_hashable_picklable() -> None:
    d = initgraph.Domain("net", exclusive=True)
    assert pickle.loads(pickle.dumps(d)) == d
    assert hash(d) == hash(initgraph.Domain("net", exclusive=True))
    with pytest.raises(AttributeError):
        d.name = "x"  # type: ignore[misc]
    with pytest.raises(
        initgraph.ConfigError, match=r"^domain name must be a non-empty str, got ''$"
    ):
        initgraph.Domain("")
