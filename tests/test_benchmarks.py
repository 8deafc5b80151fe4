"""The comparison suite (``python -m benchmarks``) runs and reports every row: no timing asserted.

It runs in a subprocess of its own, at its smallest size (``--smoke``): the suite forks pools
with the ``fork`` start method, which wants a process with a single thread, and a pytest-xdist
worker is not one. The subprocess shuts every pool down before it exits, so no child is left.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

EXECUTORS = ["sequential", "ThreadPoolExecutor", "PPE+graphlib", "multiprocess.Pool", "initgraph"]
POOLS = EXECUTORS[1:]
BASE_TARGETS = 12  # ... the event loop's own worst lag and its lag above the floor, first and warm
DATA_TARGETS = 10  # 1 to the parent + 3 to a dependent + bytes; data boot 2; realistic boot 3


@pytest.mark.slow
def test_smoke_run_reports_every_row(tmp_path: Path) -> None:
    # One test, not several sharing a fixture: under pytest-xdist each worker would run it again.
    out = tmp_path / "smoke.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    res, text = json.loads(out.read_text()), proc.stdout
    check_boots(res)
    check_scaling_example_and_import(res)
    check_data_sections(res, text)
    check_report(res, text)


def _run(tmp_path: Path, *args: str) -> tuple[dict[str, Any], str]:
    out = tmp_path / "run.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--json", str(out), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text()), proc.stdout


def test_only_runs_the_named_sections(tmp_path: Path) -> None:
    res, text = _run(tmp_path, "--only", "databoot")
    assert res["sections"] == ["databoot"]
    for key in ("sleep", "cpu", "dag", "scaling", "example", "import", "transfer", "realboot"):
        assert key not in res
    assert "8. data boot" in text
    assert "1. sleep boot" not in text
    assert [t["target"].startswith("data boot") for t in res["targets"]] == [True, True]


def test_only_refuses_an_unknown_section() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--only", "nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "unknown section 'nope'" in proc.stderr


def _complete(s: dict[str, Any]) -> bool:
    return s["min"] <= s["median"] <= s["max"] and len(s["runs"]) >= 1 and s["min"] > 0


def check_boots(res: dict[str, Any]) -> None:
    for workload in ("sleep", "cpu"):
        assert list(res[workload]["cold"]) == EXECUTORS
        assert list(res[workload]["warm"]) == POOLS
        assert res[workload]["ideal_ms"] > 0
        for phase in ("cold", "warm"):
            assert all(_complete(s) for s in res[workload][phase].values())
    assert list(res["dag"]["warm"]) == EXECUTORS
    assert all(_complete(s) for s in res["dag"]["warm"].values())
    dag = res["dag"]
    assert dag["ideal_ms"] == max(dag["critical_path_ms"], dag["total_work_ms"] / dag["workers"])


def check_scaling_example_and_import(res: dict[str, Any]) -> None:
    sizes = res["scaling"]["sizes"]
    assert len(sizes) >= 2
    for per in sizes.values():
        assert list(per) == ["initgraph", "multiprocess.Pool"]
        assert all(_complete(s) for s in per.values())
    example = res["example"]
    assert list(example["wall"]) == ["initgraph", "workers=1"]
    assert example["plugins"] == 12
    assert example["ideal_ms"] >= example["critical_path_ms"] > 0
    imports = res["import"]
    for key in ("import initgraph", "import initgraph; initgraph.Scheduler", "import multiprocess"):
        assert _complete(imports["cached"][key])
        assert isinstance(imports["loaded"][key], list)
    for profile in imports["profile"].values():
        assert profile["by_package_ms"]["initgraph"] > 0
    assert res["calibration"]["iterations"] > 0
    for kind in ("first", "warm"):
        lag = res["looplag"][kind]
        keys = ("max_lag_ms", "less_plugins_ms", "own_max_lag_ms", "p99_lag_ms", "wall_ms")
        assert all(_complete(lag[k]) for k in (*keys, "idle_max_ms"))
        for worst, less in zip(
            lag["max_lag_ms"]["runs"], lag["own_max_lag_ms"]["runs"], strict=True
        ):
            assert worst >= less >= 0  # initgraph's own is a part of the lag
        for worst, idle, above in zip(
            lag["max_lag_ms"]["runs"],
            lag["idle_max_ms"]["runs"],
            lag["above_idle_ms"]["runs"],
            strict=True,
        ):
            assert above == pytest.approx(max(0.0, worst - idle))  # 0 if under the floor


def check_report(res: dict[str, Any], text: str) -> None:
    for label in (
        "1. sleep boot cold",
        "   sleep boot warm",
        "2. CPU boot cold",
        "   CPU boot warm",
        "3. dependency boot",
        "4. 10 no-ops",
        "5. example boot",
        "import initgraph",
        "CPU calibration",
        "10. event loop under lifespan(init.toml)",
        "worst lag of a 1 ms ticker",
        "less those and waiting for a CPU: own",
    ):
        assert label in text
    for name in EXECUTORS:
        assert name in text
    assert len(res["targets"]) == BASE_TARGETS + DATA_TARGETS
    for t in res["targets"]:
        verdict = "PASS" if t["pass"] else "MISS"
        assert f"{verdict}  {t['target']}" in text


DATA_EXECUTORS = [*EXECUTORS, "ray"]


def check_data_sections(res: dict[str, Any], text: str) -> None:
    """7-9 ran end to end: every row there, every ratio computed (never judged on speed)."""
    tr = res["transfer"]
    kinds = [c["kind"] for c in tr["cases"]]
    assert kinds == ["array", "array", "array", "bytes", "dict"]
    with_ray = tr["ray"] is None
    for c in tr["cases"]:
        names = ["local + copy", "PPE+graphlib", "initgraph"] + (["ray"] if with_ray else [])
        assert sorted(c["to_parent"]) == sorted(names)
        assert sorted(c["to_dependent"]) == sorted(names[1:])
        assert all(_complete(s) for s in c["to_parent"].values())
        assert all(_complete(s) for s in c["to_dependent"].values())
    if not with_ray:
        assert "Ray is not installed" in text
    for key in ("databoot", "realboot"):
        sec = res[key]
        expected = DATA_EXECUTORS if sec["ray"] is None else EXECUTORS
        assert sorted(sec["wall"]) == sorted(expected)
        assert all(_complete(s) for s in sec["wall"].values())
        assert sec["results_agree"]
    rb = res["realboot"]
    assert rb["plugins"] == len(rb["graph"]) >= 12
    assert {g["where"] for g in rb["graph"]} == {"pool", "main", "commit"}
    assert rb["ideal_ms"] >= rb["critical_path_ms"] > 0
    assert rb["critical_path"][0] == "settings"
    assert _complete(rb["initgraph_threads_unlimited"])
    for name in ("sequential", "PPE+graphlib", "initgraph"):
        assert rb["pss"][name]["peak_mib"] >= rb["pss"][name]["before_mib"] > 0
    for label in ("7. transfer", "8. data boot", "9. realistic boot", "peak PSS", "limited to 1"):
        assert label in text
    data = [t for t in res["targets"] if t["target"].startswith(("data boot", "realistic"))]
    assert len(data) == 5
    for t in res["targets"]:
        # the lag above the ticker alone's is 0 when the boot's worst tick was under that floor
        may_be_zero = "above the ticker" in t["target"]
        assert t["value"] >= 0 if may_be_zero else t["value"] > 0, t
