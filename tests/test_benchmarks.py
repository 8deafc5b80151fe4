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
    check_report(res, text)


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
    assert example["plugins"] == 10
    assert example["ideal_ms"] >= example["critical_path_ms"] > 0
    imports = res["import"]
    for key in ("import initgraph", "import initgraph; initgraph.Scheduler", "import multiprocess"):
        assert _complete(imports["cached"][key])
        assert isinstance(imports["loaded"][key], list)
    for profile in imports["profile"].values():
        assert profile["by_package_ms"]["initgraph"] > 0
    assert res["calibration"]["iterations"] > 0


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
    ):
        assert label in text
    for name in EXECUTORS:
        assert name in text
    assert len(res["targets"]) == 8
    for t in res["targets"]:
        verdict = "PASS" if t["pass"] else "MISS"
        assert f"{verdict}  {t['target']}" in text
