"""scripts/trifeatures_pid.py: the table of the PID of Trifeatures representations, from run directories
that already hold the pid evaluation (no training here)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("trifeatures_pid", ROOT / "scripts" / "trifeatures_pid.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["trifeatures_pid"] = module
    spec.loader.exec_module(module)
    return module


def _pair(parts, baseline):
    total = sum(parts.values())
    bits = {k: {"mean": v, "std": 0.0} for k, v in parts.items()} | {"total": {"mean": total, "std": 0.0}}
    return {
        "bits": bits,
        "fraction": {k: v / total for k, v in parts.items()},
        "baseline": dict(baseline, total=sum(baseline.values())),
    }


def _run(path, redundancy, clusters=10):
    """A finished run whose pid holds the R task's redundancy ``redundancy`` (other tasks: fixed parts)."""
    path.mkdir(parents=True)
    base = {"redundancy": 0.01, "unique1": 0.02, "unique2": 0.02, "synergy": 0.1}
    parts = {
        "R": {"redundancy": redundancy, "unique1": 0.1, "unique2": 0.1, "synergy": 0.2},
        "U1": {"redundancy": 0.0, "unique1": 0.4, "unique2": 0.0, "synergy": 0.1},
        "U2": {"redundancy": 0.0, "unique1": 0.0, "unique2": 0.3, "synergy": 0.1},
        "S": {"redundancy": 0.0, "unique1": 0.0, "unique2": 0.0, "synergy": 0.05},
    }
    entropy = {"R": 3.3, "U1": 3.27, "U2": 3.27, "S": 0.47}
    tasks = {t: {"label_entropy": entropy[t], "pairs": {"image1+image2": _pair(p, base)}} for t, p in parts.items()}
    pid = {"clusters": clusters, "seeds": 3, "tasks": tasks}
    (path / "metrics.json").write_text(json.dumps({"evaluation": {"logistic_probe": {}, "pid": pid}}))
    (path / "recipe.yaml").write_text("data: {params: {size: full, image_size: 32, seed: 0, biased: true}}\n")


def test_table_from_runs_that_hold_the_decomposition(script, tmp_path):
    group = tmp_path / "comm-trifeatures" / "comm-unbiased"
    _run(group / "seed0", 0.3)
    _run(group / "seed1", 0.5)
    (tmp_path / "comm-trifeatures" / "cross-unbiased" / "seed0").mkdir(parents=True)  # still training: skipped
    table = script.collect(tmp_path, clusters=10, seeds=3)
    assert list(table) == ["comm-unbiased"] and table["comm-unbiased"]["seeds"] == ["seed0", "seed1"]
    r = table["comm-unbiased"]["cells"]["R"]["redundancy"]
    assert r["bits"]["mean"] == pytest.approx(0.4) and r["bits"]["std"] == pytest.approx(0.1)
    assert r["corrected"]["mean"] == pytest.approx(0.39)  # less the permuted-label redundancy, 0.01
    assert r["share"]["mean"] == pytest.approx((0.3 / 0.7 + 0.5 / 0.9) / 2)
    text = script.markdown(table, 10, 3, "python scripts/trifeatures_pid.py")
    assert "| the data set's structure | | 3.30 | 3.27 | 3.27 | 0.47 | 3.30 / 3.27 / 3.27 / 0.47 |" in text
    # U1: 0.4 bits unique to image 1 (0.38 less the permuted 0.02), 80% of the task's 0.5 bits
    assert (
        "| CoMM | unbiased | 0.40 ± 0.10 [0.39] (49%) | 0.40 ± 0.00 [0.38] (80%) | 0.30 ± 0.00 [0.28] (75%) |" in text
    )
    assert "| CoMM | unbiased | S | 0.000 | 0.000 | 0.000 | 0.050 | 0.050 | 0.150 |" in text
    script.figure(table, tmp_path / "pid.png")
    assert (tmp_path / "pid.png").read_bytes()[:4] == b"\x89PNG"


def test_the_pid_spec_reads_the_runs_data_and_probes_unbiased_pairs(script, tmp_path):
    spec = script.pid_spec({"data": {"params": {"size": "full", "image_size": 32, "seed": 4, "biased": True}}}, 10, 3)
    assert spec["params"]["dataset_params"] == {"size": "full", "image_size": 32, "seed": 4, "biased": False}
    assert spec["params"]["tasks"] == {
        "R": {"task": "shared"},
        "U1": {"task": "unique1"},
        "U2": {"task": "unique2"},
        "S": {"task": "synergy"},
    }
    _run(tmp_path / "run", 0.3, clusters=20)
    assert script.evaluated(tmp_path / "run", spec) is None  # other clusters: evaluated again
    assert script.evaluated(tmp_path / "run", script.pid_spec({"data": {"params": {}}}, 20, 3))["clusters"] == 20
