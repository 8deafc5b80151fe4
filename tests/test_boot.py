"""Whole boots: planning, ordered commits, failure policies, plugins, embedding."""

from __future__ import annotations

import multiprocessing
import os
import random
import re
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import SLEEPER
from conftest import AppWriter as Writer

import initgraph
from initgraph import (
    BootError,
    HookError,
    HookTimeout,
    OrderingError,
    PluginError,
    RegistryConflict,
)
from initgraph._boot import run as _boot
from initgraph._boot.run import plan


def keys(boot: initgraph.Boot) -> list[str]:
    return [p.key for p in boot.registry.log]


# -- planning and order ----------------------------------------------------------------------------
def test_plan_gives_cookies_in_dependency_then_file_order(app: Writer) -> None:
    config = app(
        {
            "c": {"requires": ["b"]},
            "a": {},
            "b": {},
            "d": {"requires": ["a"], "domain": "net"},
        },
    )
    config["domains"] = {"net": {}}
    p = plan(config)
    assert [(x.cookie, x.name) for x in p] == [(1, "a"), (2, "b"), (3, "c"), (4, "d")]
    assert p.plugin("d").domain == "net"


def test_boot_runs_and_commits_in_order(app: Writer) -> None:
    boot = initgraph.boot(app({"a": {"config": {"synchronize": True}}, "b": {"requires": ["a"]}}))
    assert boot.ok
    assert keys(boot) == ["init.a", "commit.a", "commit.b"]
    assert boot.registry["commit.b"] == ["a"]
    assert boot.results == {"a": "a", "b": "b"}
    assert boot.registry.owner("init.a") == "a"
    t = boot.timings["b"]
    assert t.started is not None
    assert t.commit_ended is not None
    assert t.started >= boot.timings["a"].ended  # requires: starts after a's init finished
    assert t.commit_started >= boot.timings["a"].commit_ended  # and commits after a did
    assert t.pid != os.getpid()
    (wait,) = boot.timings["a"].waits  # the kernel-style ctx.synchronize() of a
    assert (wait.what, wait.domain, wait.cookie) == ("cookie", "default", 1)
    assert boot.timings["a"].started <= wait.started <= wait.ended <= boot.timings["a"].ended
    assert boot.timings["b"].waits == ()


@pytest.mark.slow
def test_registry_log_is_identical_on_every_run(app: Writer) -> None:
    """Twenty plugins with random durations and dependencies, booted twenty times."""
    rng = random.Random(7)
    plugins: dict[str, dict[str, Any]] = {}
    for i in range(20):
        name = f"p{i:02d}"
        earlier = list(plugins)
        requires = rng.sample(earlier, k=min(len(earlier), rng.choice([0, 0, 1, 2])))
        plugins[name] = {"requires": requires, "config": {"synchronize": i % 3 == 0}}
    expected: list[tuple[int, str, str]] | None = None
    for run in range(20):
        durations = random.Random(run)
        for spec in plugins.values():
            spec["config"] = {**spec["config"], "duration": durations.uniform(0, 0.01)}
        boot = initgraph.boot(app(plugins, workers=4))
        log = [(p.cookie, p.plugin, p.key) for p in boot.registry.log]
        cookies = [c for c, _, _ in log]
        assert cookies == sorted(cookies), "in plan order"
        assert len(log) == 20 + 7
        if expected is None:
            expected = log
        assert log == expected, f"run {run} differs"


def test_each_domain_commits_in_cookie_order(app: Writer) -> None:
    plugins = {
        f"{d}{i}": {"domain": d, "config": {"duration": 0.02 * ((i * 7) % 3), "synchronize": True}}
        for i in range(4)
        for d in ("x", "y")
    }
    config = app(plugins, workers=4)
    config["domains"] = {"x": {}, "y": {}}
    boot = initgraph.boot(config)
    for d in ("x", "y"):
        mine = [p.cookie for p in boot.registry.log if p.domain == d]
        assert mine == sorted(mine)
        assert len(mine) == 8


# -- requires: data first, commits in order --------------------------------------------------------
HELD_INIT = """
import os, select
from initgraph import hookimpl

@hookimpl
def initgraph_init(ctx):
    # Held until dep's init says it started. Under the old rule dep could start only once a
    # committed, after this plugin's commit, after this init: it would wait in vain.
    fd = os.open(ctx.config["gate"], os.O_RDONLY)  # the test holds a writer: no blocking
    try:
        readable, _, _ = select.select([fd], [], [], 60)
        if not readable:
            raise TimeoutError("dep's init did not start while slow's init ran")
        return os.read(fd, 100).decode()
    finally:
        os.close(fd)

@hookimpl
def initgraph_commit(ctx, result):
    ctx.publish("slow.saw", result)
"""

GATED_DEP = """
import os
from initgraph import hookimpl

@hookimpl
def initgraph_init(ctx):
    fd = os.open(ctx.config["gate"], os.O_WRONLY)
    try:
        os.write(fd, f"dep started with {ctx.results['a']}".encode())
    finally:
        os.close(fd)
    ctx.synchronize()  # slow's and a's inits are over; their commits need not be
    ctx.publish("dep.init", ctx.results["a"])
    return "dep"

@hookimpl
def initgraph_commit(ctx, result):
    ctx.publish("dep.commit", result)
"""


def test_a_dependent_starts_before_an_unrelated_lower_cookie_commits(
    app: Writer, tmp_path: Path
) -> None:
    """dep requires a; slow, a lower cookie, holds its init until dep's init has started.

    a commits after slow, so dep starts before what it requires committed. slow's
    publication of dep's message proves it; the registry log is the same on every run.
    """
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    # Held open for reading and writing: opening either end never blocks, and no EOF.
    gate_fd = os.open(gate, os.O_RDWR)
    try:
        config = app(
            {
                "slow": {"source": HELD_INIT, "config": {"gate": str(gate)}},
                "a": {},
                "dep": {"source": GATED_DEP, "requires": ["a"], "config": {"gate": str(gate)}},
                "tail": {"requires": ["dep"], "domain": "net"},
            }
        )
        config["domains"] = {"net": {}}
        logs = []
        for _ in range(5):
            boot = initgraph.boot(config)
            logs.append([(p.cookie, p.domain, p.plugin, p.key, p.value) for p in boot.registry.log])
            t = boot.timings
            assert t["dep"].started is not None
            assert t["dep"].started < t["slow"].commit_started  # proven by slow.saw, too
            assert t["dep"].started < t["a"].commit_started  # before what it requires committed
            assert t["dep"].ready is not None
            assert t["a"].ended is not None
            assert t["dep"].ready >= t["a"].ended  # ready: when a's init finished
        assert logs == 5 * [
            [
                (1, "default", "slow", "slow.saw", "dep started with a"),
                (2, "default", "a", "commit.a", []),
                (3, "default", "dep", "dep.init", "a"),
                (3, "default", "dep", "dep.commit", "dep"),
                (4, "net", "tail", "commit.tail", ["dep"]),  # after dep's commit, which it requires
            ]
        ]
    finally:
        os.close(gate_fd)


def test_a_failed_commit_skips_a_dependent_whose_init_already_ran(app: Writer) -> None:
    failing = """
    from initgraph import hookimpl

    @hookimpl
    def initgraph_init(ctx):
        return "data"

    @hookimpl
    def initgraph_commit(ctx, result):
        raise RuntimeError("cannot publish")
    """
    # The boot launches what bad's result lets start before it commits bad: dep's init runs,
    # whatever it does dep is skipped once bad's commit failed, and so is next.
    config = app(
        {
            "bad": {"source": failing},
            "dep": {"requires": ["bad"], "domain": "net"},
            "next": {"requires": ["dep"], "domain": "net"},
            "fine": {"domain": "io"},
        },
        on_error="continue",
    )
    config["domains"] = {"net": {}, "io": {}}
    boot = initgraph.boot(config, check=False)
    assert boot.status("bad") == "failed"
    assert boot.status("dep") == "skipped"
    assert boot.failures["dep"].message == "skipped: it requires 'bad', which did not commit"
    assert boot.failures["dep"].root == "bad"
    assert boot.status("next") == "skipped"
    assert boot.failures["next"].message == "skipped: it requires 'dep', which did not commit"
    assert keys(boot) == ["commit.fine"]
    assert "dep" not in boot.results
    assert boot.timings["dep"].started is not None  # it ran
    # next may have started too: bad's commit runs on the boot's thread while the coordinator
    # goes on launching, so dep's init can end before bad's commit fails. Skipped either way.


# -- failures --------------------------------------------------------------------------------------
RAISER = """
from initgraph import hookimpl

@hookimpl
def initgraph_init(ctx):
    raise RuntimeError("disk on fire")
"""


def test_abort_cancels_pending_and_raises_boot_error(app: Writer) -> None:
    config = app(
        {
            "bad": {"source": RAISER},
            "slow": {"config": {"duration": 0.2}},
            "later": {"requires": ["slow"]},
        },
    )
    with pytest.raises(BootError) as info:
        initgraph.boot(config)
    boot = info.value.boot
    assert str(info.value).startswith(
        "boot failed: plugin 'bad': initcall 1 'bad' raised RuntimeError: disk on fire"
    )
    assert boot.status("bad") == "failed"
    assert boot.status("later") == "cancelled"
    assert boot.failures["later"].message == "cancelled: plugin 'bad' failed"
    assert boot.status("slow") == "cancelled"  # ran to its end, but was not committed
    assert isinstance(boot.failures["bad"].error, HookError)
    assert isinstance(boot.failures["bad"].error.__cause__, RuntimeError)
    assert not boot.ok


def test_continue_skips_dependents_and_commits_the_rest(app: Writer) -> None:
    config = app(
        {
            "bad": {"source": RAISER},
            "child": {"requires": ["bad"]},
            "grandchild": {"requires": ["child"]},
            "fine": {},
        },
        on_error="continue",
    )
    boot = initgraph.boot(config, check=False)
    assert boot.status("fine") == "ok"
    assert boot.status("child") == "skipped"
    assert boot.failures["child"].message == "skipped: it requires 'bad', which did not commit"
    assert boot.status("grandchild") == "skipped"
    assert keys(boot) == ["commit.fine"]
    with pytest.raises(BootError):
        initgraph.boot(config)


def test_optional_failure_does_not_fail_the_boot(app: Writer) -> None:
    boot = initgraph.boot(
        app({"bad": {"source": RAISER, "optional": True}, "needs": {"requires": ["bad"]}, "ok": {}})
    )
    assert boot.ok
    assert boot.status("bad") == "failed"
    assert boot.status("needs") == "skipped"  # it cannot run without what it requires
    assert boot.status("ok") == "ok"


def test_plugin_timeout(app: Writer) -> None:
    config = app({"hang": {"timeout": 0.3, "config": {"duration": 60}}, "ok": {}})
    with pytest.raises(BootError) as info:
        initgraph.boot(config, on_error="continue")
    boot = info.value.boot
    assert boot.status("hang") == "timeout"
    assert isinstance(boot.failures["hang"].error, HookTimeout)
    assert boot.status("ok") == "ok"


def test_publish_before_synchronize_is_an_ordering_error(app: Writer) -> None:
    source = """
    from initgraph import hookimpl

    @hookimpl
    def initgraph_init(ctx):
        ctx.publish("too.early", 1)
    """
    with pytest.raises(BootError) as info:
        initgraph.boot(app({"eager": {"source": source}}))
    cause = info.value.boot.failures["eager"].error.__cause__
    assert isinstance(cause, OrderingError)
    assert str(cause) == (
        "plugin 'eager' published 'too.early' in initgraph_init before ctx.synchronize(); "
        "call ctx.synchronize() first, or publish from initgraph_commit"
    )


def test_key_published_twice_names_both_plugins(app: Writer) -> None:
    source = """
    from initgraph import hookimpl

    @hookimpl
    def initgraph_commit(ctx, result):
        ctx.publish("shared.key", ctx.name)
    """
    with pytest.raises(BootError) as info:
        initgraph.boot(app({"first": {"source": source}, "second": {"source": source}}))
    boot = info.value.boot
    err = boot.failures["second"].error
    assert isinstance(err, RegistryConflict)
    assert str(err) == (
        "key 'shared.key' published twice: first by plugin 'first', then by plugin 'second'; "
        "give one of them another key"
    )
    assert (err.first, err.second) == ("first", "second")
    assert boot.registry["shared.key"] == "first"


def test_where_main_runs_in_the_parent(app: Writer) -> None:
    source = """
    import os, threading
    from initgraph import hookimpl, current_is_async

    @hookimpl
    def initgraph_init(ctx):
        return os.getpid(), threading.Lock(), current_is_async()  # cannot leave the process
    """
    boot = initgraph.boot(app({"local": {"source": source, "where": "main"}, "other": {}}))
    pid, lock, is_async = boot.results["local"]
    assert pid == os.getpid()
    assert lock.acquire()
    assert is_async is False


# -- plugins ---------------------------------------------------------------------------------------
def test_misspelled_hook_is_a_plugin_error(app: Writer) -> None:
    source = """
    from initgraph import hookimpl

    @hookimpl
    def initgraph_int(ctx):
        return 1
    """
    with pytest.raises(PluginError) as info:
        initgraph.boot(app({"typo": {"source": source}}))
    assert info.value.plugin == "typo"
    assert str(info.value) == (
        "plugin 'typo' implements unknown hook 'initgraph_int'; did you mean 'initgraph_init'?"
    )


def test_module_that_fails_to_import_is_a_plugin_error(app: Writer) -> None:
    with pytest.raises(PluginError) as info:
        initgraph.boot(app({"broken": {"source": "raise ImportError('no libfoo')\n"}}))
    assert info.value.plugin == "broken"
    assert str(info.value).endswith("failed: ImportError: no libfoo")


def test_hook_wrappers_wrap_every_plugin(app: Writer) -> None:
    wrapper = """
    from initgraph import hookimpl

    @hookimpl(wrapper=True)
    def initgraph_init(ctx):
        result = yield
        return ("wrapped", ctx.name, result)

    @hookimpl(wrapper=True)
    def initgraph_commit(ctx, result):
        yield
        ctx.publish("audit." + ctx.name, ctx.cookie)
    """
    boot = initgraph.boot(app({"audit": {"source": wrapper}, "a": {}, "b": {}}))
    assert boot.results["a"] == ("wrapped", "a", "a")
    assert boot.results["b"] == ("wrapped", "b", "b")
    assert keys(boot) == ["commit.a", "audit.a", "commit.b", "audit.b"]


# -- instances: one module backing several plugins ---------------------------------------------
def instances(app: Writer, source: str, **plugins: dict[str, Any]) -> dict[str, Any]:
    """A config where ``primary`` and every plugin of ``plugins`` share one module."""
    config = app({"primary": {"source": source, "config": {"url": "rw"}}})
    module = config["plugins"]["primary"]["module"]
    for name, spec in plugins.items():
        config["plugins"][name] = {"module": module, **spec}
    return config


INSTANCE = """
import os
from initgraph import hookimpl

@hookimpl
def initgraph_init(ctx):
    return (ctx.name, ctx.cookie, ctx.config["url"], os.getpid())

@hookimpl
def initgraph_commit(ctx, result):
    ctx.publish("db." + ctx.name, result[2])
"""


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_one_module_backs_several_plugins(app: Writer, method: str) -> None:
    """Each instance has its own name, config, cookie, result, publications and timings."""
    config = instances(
        app,
        INSTANCE,
        replica={"config": {"url": "ro"}, "requires": ["primary"]},
        other={"config": {"url": "x"}, "domain": "net"},
    )
    config["domains"] = {"net": {}}
    boot = initgraph.boot(config, start_method=method)
    assert [(p.cookie, p.name) for p in boot.plan] == [(1, "primary"), (2, "replica"), (3, "other")]
    assert {name: result[:3] for name, result in boot.results.items()} == {
        "primary": ("primary", 1, "rw"),
        "replica": ("replica", 2, "ro"),
        "other": ("other", 3, "x"),
    }
    assert dict(boot.registry) == {"db.primary": "rw", "db.replica": "ro", "db.other": "x"}
    assert set(boot.timings) == {"primary", "replica", "other"}
    assert all(boot.results[name][3] != os.getpid() for name in boot.results)  # in workers


def test_an_instance_fails_alone(app: Writer) -> None:
    config = instances(
        app, INSTANCE, replica={"config": {}, "optional": True}, third={"config": {"url": "3"}}
    )
    boot = initgraph.boot(config)
    assert boot.ok
    assert boot.status("replica") == "failed"
    assert boot.failures["replica"].message.endswith("KeyError: 'url'")
    assert sorted(boot.registry) == ["db.primary", "db.third"]


def test_a_single_instance_module_backs_one_plugin(app: Writer) -> None:
    config = instances(app, INSTANCE + "initgraph_single_instance = True\n", replica={})
    module = config["plugins"]["primary"]["module"]
    message = (
        f"plugin 'replica': module {module} allows only one instance "
        f"(initgraph_single_instance = True) and already backs plugin 'primary'; "
        f"remove one of them"
    )
    with pytest.raises(PluginError, match=rf"^{re.escape(message)}$") as info:
        initgraph.boot(config)
    assert info.value.plugin == "replica"


WRAPPED = """
from initgraph import hookimpl

calls = []

@hookimpl
def initgraph_plan(plan):
    calls.append("plan")

@hookimpl(wrapper=True)
def initgraph_commit(ctx, result):
    yield
    calls.append("wrapped " + ctx.name)

@hookimpl
def initgraph_boot_finished(boot):
    calls.append("finished")
"""


def test_a_shared_modules_hooks_run_once_per_instance(app: Writer) -> None:
    """Each instance is a plugin: its plan, boot_finished and wrappers run once per instance."""
    config = instances(app, WRAPPED, second={})
    config["plugins"]["a"] = {"module": app({"a": {}})["plugins"]["a"]["module"]}
    module = config["plugins"]["primary"]["module"]
    initgraph.boot(config)
    calls = sys.modules[module].calls
    # Two wrappers of initgraph_commit (one per instance) around a's commit, the only one.
    assert calls == ["plan", "plan", "wrapped a", "wrapped a", "finished", "finished"]


def test_a_module_without_hook_implementations_is_refused(app: Writer) -> None:
    config = app({"empty": {"source": "import os\n"}})
    module = config["plugins"]["empty"]["module"]
    message = (
        f"plugin 'empty': module {module} has no hook implementation; mark its hooks with "
        f"@initgraph.hookimpl"
    )
    with pytest.raises(PluginError, match=rf"^{re.escape(message)}$"):
        initgraph.boot(config)


def test_a_hook_without_hookimpl_is_refused(app: Writer) -> None:
    source = "def initgraph_init(ctx):\n    return 1\n"
    config = app({"bare": {"source": source}})
    module = config["plugins"]["bare"]["module"]
    message = (
        f"plugin 'bare': initgraph_init in module {module} is not marked @initgraph.hookimpl; "
        f"add the decorator"
    )
    with pytest.raises(PluginError, match=rf"^{re.escape(message)}$"):
        initgraph.boot(config)


# -- conditions: plugins skipped at plan time ---------------------------------------------------
def test_plugins_skipped_by_a_condition_get_no_cookie_and_do_not_fail_the_boot(
    app: Writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IGTEST_NOT_SET", raising=False)
    config = app(
        {
            "off": {"enabled": False},
            "a": {},
            "after_off": {"requires": ["off", "a"]},
            "unset": {"when": {"env": "IGTEST_NOT_SET"}},
            "b": {"requires": ["a"]},
        }
    )
    boot = initgraph.boot(config)
    assert boot.ok
    assert [(p.cookie, p.name) for p in boot.plan] == [(1, "a"), (2, "b")]
    assert dict(boot.plan.skipped) == {
        "off": "disabled in init.toml",
        "after_off": "it requires 'off', which is disabled",
        "unset": "when.env 'IGTEST_NOT_SET' is not set",
    }
    assert {name: boot.status(name) for name in boot.plan.skipped} == dict.fromkeys(
        boot.plan.skipped, "skipped"
    )
    assert set(boot.results) == {"a", "b"}
    assert boot.failures == {}
    assert keys(boot) == ["commit.a", "commit.b"]
    assert boot.summary().startswith("boot of 2 plugins finished in ")


def test_enable_and_disable_override_conditions_for_one_boot(app: Writer) -> None:
    config = app({"off": {"enabled": False}, "a": {}, "b": {"requires": ["a"]}})
    boot = initgraph.boot(config, enable=["off"], disable=["a"])
    assert [p.name for p in boot.plan] == ["off"]
    assert dict(boot.plan.skipped) == {
        "a": "disabled for this run",
        "b": "it requires 'a', which is disabled",
    }


COMMIT_ONLY = """
import os
from initgraph import hookimpl

@hookimpl
def initgraph_commit(ctx, result):
    ctx.publish("commit." + ctx.name, (result, sorted(ctx.results), os.getpid()))
"""


# A plugin with a hook but no init and no commit.
PLAN_ONLY = """
from initgraph import hookimpl

@hookimpl
def initgraph_plan(plan):
    pass
"""


def test_a_plugin_without_init_never_goes_to_a_worker(app: Writer) -> None:
    """Its reservation ends in the parent, with result None and an init of length zero.

    local's result cannot be pickled: sending it to a worker, as the boot once did for every
    plugin, would fail. It is in progress until then: k's ctx.synchronize() waits for it.
    """
    local = """
    import threading
    from initgraph import hookimpl

    @hookimpl
    def initgraph_init(ctx):
        return threading.Lock()
    """
    config = app(
        {
            "local": {"source": local, "where": "main"},
            "slow": {},
            "bare": {"source": COMMIT_ONLY, "requires": ["local", "slow"]},
            "empty": {"source": PLAN_ONLY, "where": "main"},
            "k": {"config": {"synchronize": True}},
        }
    )
    boot = initgraph.boot(config)
    assert boot.registry["commit.bare"] == (None, ["local", "slow"], os.getpid())
    assert boot.results["bare"] is None
    assert boot.results["empty"] is None
    t = boot.timings
    for name in ("bare", "empty"):
        assert t[name].pid == os.getpid()
        assert t[name].init_time == 0.0
        assert t[name].waits == ()
    assert t["slow"].ended is not None
    assert t["bare"].started is not None
    assert t["bare"].started >= t["slow"].ended  # once slow's init ended, not before
    # bare is a lower cookie of k's domain: k's ctx.synchronize() waited for it to end.
    (wait,) = t["k"].waits
    assert wait.ended >= t["bare"].ended
    assert keys(boot) == ["commit.slow", "commit.bare", "init.k", "commit.k"]


def test_hook_wrappers_do_not_send_a_plugin_without_init_to_a_worker(app: Writer) -> None:
    """A wrapper of every init wraps only the plugins that have one, in a worker or not."""
    wrapper = """
    import os
    from initgraph import hookimpl

    @hookimpl(wrapper=True)
    def initgraph_init(ctx):
        result = yield
        return ("wrapped", ctx.name, result)

    @hookimpl(hookwrapper=True)
    def initgraph_commit(ctx, result):
        yield
        ctx.publish("audit." + ctx.name, result)
    """
    boot = initgraph.boot(
        app({"audit": {"source": wrapper}, "a": {}, "bare": {"source": COMMIT_ONLY}})
    )
    assert boot.results == {"audit": None, "a": ("wrapped", "a", "a"), "bare": None}
    assert boot.timings["a"].pid != os.getpid()
    for name in ("audit", "bare"):
        assert boot.timings[name].pid == os.getpid()
        assert boot.timings[name].init_time == 0.0
    assert keys(boot) == ["commit.a", "audit.a", "commit.bare", "audit.bare"]


def test_plan_and_finished_hooks(app: Writer) -> None:
    observer = """
    from initgraph import hookimpl

    seen = []

    @hookimpl
    def initgraph_plan(plan):
        seen.append([p.name for p in plan])

    @hookimpl
    def initgraph_boot_finished(boot):
        seen.append(sorted(boot.results))
    """
    config = app({"obs": {"source": observer}, "a": {}})
    initgraph.boot(config)
    module = sys.modules[config["plugins"]["obs"]["module"]]
    assert module.seen == [["obs", "a"], ["a", "obs"]]


def test_entry_point_plugins(app: Writer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = app({"a": {}})
    pkg = config["plugins"]["a"]["module"].split(".")[0]
    (tmp_path / pkg / "extra.py").write_text(textwrap.dedent(SLEEPER))
    (tmp_path / pkg / "named.py").write_text(textwrap.dedent(SLEEPER))
    dist = tmp_path / "initgraph_extra-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: initgraph-extra\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[initgraph]\nextra = {pkg}.extra\nnamed = {pkg}.named\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    config["plugins"]["byname"] = {"entry_point": "named"}
    boot = initgraph.boot(config)
    assert sorted(boot.results) == ["a", "byname"]
    config["initgraph"]["entry_points"] = True
    boot = initgraph.boot(config)
    assert sorted(boot.results) == ["a", "byname", "extra"]


# -- embedding -------------------------------------------------------------------------------------
def _square(x: int) -> int:
    return x * x


@pytest.mark.allow_children
def test_embedded_in_a_host_with_threads_and_a_pool(app: Writer) -> None:
    """A host app with its own threads and multiprocessing pool boots twice; only its pool stays."""
    stop = threading.Event()
    threads = [threading.Thread(target=stop.wait) for _ in range(3)]
    for t in threads:
        t.start()
    pool = multiprocessing.get_context("fork").Pool(2)
    try:
        host = {p.pid for p in psutil.Process().children(recursive=True)}
        assert pool.map(_square, range(4)) == [0, 1, 4, 9]
        config = app({"a": {"config": {"synchronize": True}}, "b": {"requires": ["a"]}})
        first = initgraph.boot(config)
        second = initgraph.boot(config)
        assert keys(first) == keys(second) == ["init.a", "commit.a", "commit.b"]
        assert first.plan.start_method == "forkserver"  # threads are running: no fork
        assert pool.map(_square, range(3)) == [0, 1, 4]
        left = {p.pid for p in psutil.Process().children(recursive=True)} - host
        assert left == set()
    finally:
        pool.terminate()
        pool.join()
        stop.set()
        for t in threads:
            t.join()


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_boot_under_every_start_method(app: Writer, method: str) -> None:
    config = app({"a": {"config": {"synchronize": True}}, "b": {"requires": ["a"]}})
    boot = initgraph.boot(config, start_method=method)
    assert keys(boot) == ["init.a", "commit.a", "commit.b"]


@pytest.mark.slow
def test_example_application_boots() -> None:
    root = Path(__file__).resolve().parents[1]
    cwd = os.getcwd()
    os.chdir(root)
    try:
        boot = initgraph.boot(root / "init.toml")
    finally:
        os.chdir(cwd)
    try:
        assert boot.ok
        assert len(boot.plan.plugins) >= 8
        assert {p.domain for p in boot.plan} >= {"default", "http"}
        routes = [p.key for p in boot.registry.log if p.key.startswith("http.route.")]
        assert routes, "the example registers HTTP routes"
        assert "search.index" in boot.registry
    finally:
        boot.results["database"].close()


def test_main_plugin_that_synchronizes_does_not_hold_back_the_boot(app: Writer) -> None:
    """Its init runs beside the boot's loop, which goes on committing and launching."""
    sync_main = """
    import os
    from initgraph import hookimpl

    @hookimpl
    def initgraph_init(ctx):
        ctx.synchronize(timeout=30)  # waits for x, which starts only after y finished
        ctx.synchronize()
        ctx.publish("main.pid", os.getpid())
    """
    config = app(
        {
            "y": {"config": {"duration": 0.2}},
            "x": {"requires": ["y"]},
            "m": {"source": sync_main, "where": "main"},
        }
    )
    boot = initgraph.boot(config)
    assert [p.name for p in boot.plan] == ["y", "x", "m"]
    assert boot.registry["main.pid"] == os.getpid()
    assert keys(boot) == ["commit.y", "commit.x", "main.pid"]


def test_failed_commit_publishes_nothing(app: Writer) -> None:
    half = """
    from initgraph import hookimpl

    @hookimpl
    def initgraph_init(ctx):
        ctx.synchronize()
        ctx.publish("half.init", 1)

    @hookimpl
    def initgraph_commit(ctx, result):
        ctx.publish("half.commit", 2)
        raise RuntimeError("commit failed halfway")
    """
    boot = initgraph.boot(app({"half": {"source": half}, "fine": {}}), check=False)
    assert boot.status("half") == "failed"
    assert "half.init" not in boot.registry
    assert "half.commit" not in boot.registry
    assert keys(boot) == []  # fine has a higher cookie: the boot aborted before its commit
    assert str(boot.failures["half"].error) == (
        "initgraph_commit of plugin 'half' raised RuntimeError: commit failed halfway"
    )


def test_plan_hook_error_names_its_plugin(app: Writer) -> None:
    picky = """
    from initgraph import hookimpl

    @hookimpl
    def initgraph_plan(plan):
        raise ValueError("too many plugins")
    """
    with pytest.raises(PluginError) as info:
        initgraph.boot(app({"a": {}, "picky": {"source": picky}}))
    assert info.value.plugin == "picky"
    assert str(info.value) == "plugin 'picky': initgraph_plan raised ValueError: too many plugins"


def test_watcher_sees_what_runs_and_what_waits_on_what(app: Writer) -> None:
    from initgraph._boot.run import run_boot

    seen: list[tuple[dict[str, float], dict[str, str]]] = []
    config = app({"slow": {"config": {"duration": 0.6}}, "next": {"requires": ["slow"]}})
    boot = run_boot(config, overrides={}, watch=lambda r, w: seen.append((dict(r), dict(w))))
    assert boot.ok
    assert any("slow" in running and waiting == {"next": "slow"} for running, waiting in seen)
    assert any("next" in running for running, _ in seen)


def test_initcall_debug_lines_reach_a_logger(app: Writer, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    caplog.set_level(logging.DEBUG, logger="initgraph.initcall_debug")
    initgraph.boot(app({"a": {}}))
    lines = [r.getMessage() for r in caplog.records if r.name == "initgraph.initcall_debug"]
    assert any(" calling  1_a" in line for line in lines)
    assert any(" initcall 1_a" in line and "returned after" in line for line in lines)


BROKEN = """
from initgraph import hookimpl

@hookimpl
def initgraph_init(ctx):
    raise ValueError("broken")
"""


def test_an_interrupt_while_an_outcome_is_handled_leaves_it_running_not_finished(
    app: Writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interrupt lands after bad's failure arrived, before the boot recorded it.

    It once listed bad as "finished but not committed" (as if it had succeeded): the boot marked
    it finished before recording its failure. Now it is either recorded or still running.
    """

    def interrupt(*args: Any) -> BaseException:
        raise KeyboardInterrupt

    monkeypatch.setattr(_boot, "as_hook_error", interrupt)
    config = app({"bad": {"source": BROKEN, "optional": True}})
    with pytest.raises(KeyboardInterrupt) as info:
        initgraph.boot(config)
    found = _boot.interruption(info.value)
    assert found is not None
    assert (found.running, found.uncommitted, found.failed) == (("bad",), (), ())


# -- the boot's thread -----------------------------------------------------------------------------
SQLITE = """
import pathlib, sqlite3, threading
from initgraph import hookimpl

@hookimpl
def initgraph_init(ctx):
    conn = sqlite3.connect(":memory:")  # check_same_thread: only its own thread may use it
    conn.execute("create table t (thread int)")
    conn.execute("insert into t values (?)", (threading.get_ident(),))
    return conn

@hookimpl
def initgraph_commit(ctx, result):
    result.execute("insert into t values (?)", (threading.get_ident(),))
    ctx.publish("db.threads", [row[0] for row in result.execute("select thread from t")])

@hookimpl
def initgraph_shutdown(ctx, result):
    result.execute("insert into t values (?)", (threading.get_ident(),))
    seen = [str(row[0]) for row in result.execute("select thread from t")]
    pathlib.Path(ctx.config["seen"]).write_text(" ".join(seen))
    result.close()
"""


def test_a_main_init_commit_and_shutdown_share_the_calling_thread(
    app: Writer, tmp_path: Path
) -> None:
    """A default sqlite3 connection made in a main init works in its commit and shutdown."""
    seen = tmp_path / "seen"
    config = app({"db": {"source": SQLITE, "where": "main", "config": {"seen": str(seen)}}})
    me = threading.get_ident()
    with initgraph.boot(config) as boot:
        assert boot.registry["db.threads"] == [me, me]
    assert seen.read_text().split() == [str(me)] * 3


def test_a_boot_on_another_thread_keeps_its_main_plugins_there(app: Writer, tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    config = app({"db": {"source": SQLITE, "where": "main", "config": {"seen": str(seen)}}})
    threads: list[int] = []

    def run() -> None:
        threads.append(threading.get_ident())
        with initgraph.boot(config) as boot:
            threads.extend(boot.registry["db.threads"])

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert threads == [threads[0]] * 3
    assert seen.read_text().split() == [str(threads[0])] * 3


def test_a_main_init_that_synchronizes_waits_for_a_lower_main_init_not_its_commit(
    app: Writer,
) -> None:
    """low (main) needs slow first; high (main) synchronizes with low.

    Both run on the calling thread: high starts only once low's init ended, or its
    ctx.synchronize() would wait for an init queued behind it. It does not wait for low's commit.
    """
    main_sync = """
    import threading
    from initgraph import hookimpl

    @hookimpl
    def initgraph_init(ctx):
        ctx.synchronize(timeout=30)
        ctx.publish("thread." + ctx.name, threading.get_ident())
    """
    config = app(
        {
            "slow": {"config": {"duration": 0.1}},
            "low": {"source": main_sync, "requires": ["slow"], "where": "main"},
            "high": {"source": main_sync, "where": "main"},
        }
    )
    boot = initgraph.boot(config)
    assert [p.name for p in boot.plan] == ["slow", "low", "high"]
    t = boot.timings
    assert t["low"].ended is not None
    assert t["high"].started is not None
    assert t["high"].started >= t["low"].ended
    me = threading.get_ident()
    assert boot.registry["thread.low"] == boot.registry["thread.high"] == me
    assert keys(boot) == ["commit.slow", "thread.low", "thread.high"]
