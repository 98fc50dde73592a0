"""scripts/reproduce.py: the runs it plans, the table it aggregates, resuming, failures and the docs block."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("reproduce", ROOT / "scripts" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["reproduce"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


reproduce = _load()

HARDWARE = {"cpu": "Test CPU", "cores": 2, "usable_cores": 2, "gpus": [], "backend": "tensorflow"}


def _value(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


def test_dry_run_lists_every_row_variant_and_seed_with_its_overrides(tmp_path, capsys):
    code = reproduce.main(
        ["comm-trifeatures", "--seeds", "2", "--epochs", "3", "--backend", "jax", "--runs-dir", str(tmp_path)]
        + ["--set", "train.jit_compile=false", "--dry-run"]
    )
    out = capsys.readouterr().out
    assert code == 0
    commands = [line for line in out.splitlines() if not line.startswith("#")]
    assert len(commands) == 3 * 2 * 2  # CoMM, Cross, Cross+Self x unbiased, biased x seeds 0, 1
    assert all(c.startswith("KERAS_BACKEND=jax mmkeras train recipes/") for c in commands)
    assert "# 12 runs; nothing started (--dry-run)" in out
    assert not any(tmp_path.iterdir())  # nothing started, nothing written
    runs = reproduce.plan(reproduce.TABLES["comm-trifeatures"], 2, tmp_path, 3, "jax", ["train.jit_compile=false"])
    seen = set()
    for run in runs:
        sets = _value(run.argv, "--set")
        biased = run.group.endswith("-biased")
        # row overrides first, then the seed, the epochs and the user's --set, so the user's win
        assert sets == [f"data.params.biased={str(biased).lower()}", f"seed={run.seed}", "train.epochs=3"] + [
            "train.jit_compile=false"
        ]
        assert _value(run.argv, "--output") == [str(tmp_path / "comm-trifeatures" / run.group / f"seed{run.seed}")]
        assert (
            run.recipe.seed == run.seed and run.recipe.train.epochs == 3 and run.recipe.data.params["biased"] is biased
        )
        assert run.env == {"KERAS_BACKEND": "jax"}
        seen.add((run.row, run.group, run.seed))
    assert {(r, g) for r, g, _ in seen} == {
        (r, f"{r}-{v}") for r in ("comm", "cross", "crossself") for v in ("unbiased", "biased")
    }
    assert {s for *_, s in seen} == {0, 1}


def test_table1_sets_the_recipe_seed_and_the_classifier_seed_per_run(tmp_path):
    runs = reproduce.plan(reproduce.TABLES["gmc-table1"], 3, tmp_path, rows=["gmc", "mfm"])
    assert [(r.row, r.seed) for r in runs] == [(n, s) for n in ("gmc", "mfm") for s in range(3)]
    for run in runs:
        assert run.recipe.seed == run.seed
        (downstream,) = run.recipe.evaluate  # the table's protocol only: no umap on every seed
        assert downstream.name == "downstream" and downstream.params["seed"] == run.seed
        assert downstream.params["epochs"] == 100 and downstream.params["seeds"] == 3
        assert run.recipe.train.epochs == 100  # the recipe's, without --epochs
    (dca,) = reproduce.plan(reproduce.TABLES["gmc-table2"], 1, tmp_path, rows=["gmc"])[0].recipe.evaluate
    assert dca.name == "dca" and dca.params["deduplicate"] == ["label"] and dca.params["max_points"] == 10000


def test_the_pendulum_table_refuses_the_jax_backend(capsys):
    with pytest.raises(SystemExit):
        reproduce.main(["pendulum", "--backend", "jax", "--dry-run"])
    assert "pendulum runs on the tensorflow backend only, not --backend jax" in capsys.readouterr().err


def _finish(run, evaluation: dict, epochs: int | None = None) -> None:
    run.path.mkdir(parents=True)
    (run.path / "recipe.yaml").write_text(run.recipe.to_yaml())
    epochs = run.recipe.train.epochs if epochs is None else epochs
    (run.path / "metrics.json").write_text(json.dumps({"epochs": epochs, "evaluation": evaluation}))


def _accuracy(**subsets: float) -> dict:
    return {"downstream": {"accuracy": {k: {"mean": v, "std": 0.0, "runs": [v]} for k, v in subsets.items()}}}


def test_aggregation_is_the_mean_and_std_over_seeds_of_fake_runs(tmp_path):
    table = reproduce.TABLES["gmc-table1"]
    runs = reproduce.plan(table, 3, tmp_path, epochs=2, rows=["gmc", "mfm"])
    image = {0: 0.90, 1: 0.92, 2: 0.97}
    for run in runs:
        if run.row == "gmc":
            _finish(run, _accuracy(complete=1.0, image=image[run.seed], label=1.0, sound=0.5, trajectory=0.99))
        elif run.seed < 2:  # MFM: no label modality, and seed 2 never finished
            _finish(run, _accuracy(complete=0.8, image=0.6 + 0.1 * run.seed, sound=0.3, trajectory=0.7))
        run.timing.parent.mkdir(parents=True, exist_ok=True)
        run.timing.write_text(json.dumps({"wall_s": 10.0 * (run.seed + 1)}))
    rows = {r["name"]: r for r in reproduce.aggregate(table, runs)}
    gmc, mfm = rows["gmc"]["cells"], rows["mfm"]["cells"]
    # by hand: image 90, 92, 97 -> mean 93, deviations -3, -1, 4 -> std sqrt(26 / 3)
    assert gmc["image"]["mean"] == pytest.approx(93.0) and gmc["image"]["std"] == pytest.approx(math.sqrt(26 / 3))
    assert gmc["sound"] == {"mean": 50.0, "std": 0.0, "n": 3, "values": [50.0, 50.0, 50.0]}
    assert mfm["image"]["mean"] == pytest.approx(65.0) and mfm["image"]["std"] == pytest.approx(5.0)
    assert mfm["image"]["n"] == 2 and mfm["label"]["n"] == 0
    assert rows["gmc"]["wall_s"]["mean"] == pytest.approx(20.0) and rows["gmc"]["epochs"] == [2]
    info = {"seeds": [0, 1, 2], "hardware": HARDWARE, "epochs": 2, "finished": 5, "runs": 6, "wall_s": 100.0}
    text = reproduce.markdown(table, list(rows.values()), {**info, "command": "python x", "date": "today"})
    assert "| GMC | `gmc_mhd` | 2 | 100.00 ± 0.00 [100] | 93.00 ± 2.94 [99.75] |" in text
    assert "| 65.00 ± 5.00 (n=2) |  |" in text  # MFM: two seeds of three, and no label column
    assert "Test CPU, 2 cores (2 usable); GPU: none that JAX sees. Backend: tensorflow." in text


def test_aggregation_reads_each_column_from_its_variant_and_averages_paths(tmp_path):
    table = reproduce.TABLES["comm-trifeatures"]
    runs = reproduce.plan(table, 2, tmp_path, epochs=1, rows=["comm"])

    def probe(**tasks: float) -> dict:
        return {"tasks": {k: {"balanced_accuracy": v} for k, v in tasks.items()}}

    for run in runs:
        s = run.seed
        if run.group == "comm-unbiased":
            evaluation = {"logistic_probe": probe(R=0.7, U1=0.3 + 0.1 * s, U2=0.5 + 0.1 * s, S=0.5)}
        else:  # S counts from the biased runs only
            evaluation = {"logistic_probe": probe(R=0.0, U1=0.0, U2=0.0, S=0.52 + 0.02 * s)}
            evaluation["logistic_probe_1"] = probe(S=0.6)
        _finish(run, evaluation)
    (row,) = reproduce.aggregate(table, runs)
    cells = row["cells"]
    assert cells["R"]["values"] == pytest.approx([70.0, 70.0])
    assert cells["U (mean of U1, U2)"]["values"] == pytest.approx([40.0, 50.0])  # (30 + 50) / 2, (40 + 60) / 2
    assert cells["S"]["mean"] == pytest.approx(53.0) and cells["S"]["std"] == pytest.approx(1.0)
    assert cells["S, class-balanced probe"]["mean"] == pytest.approx(60.0)
    assert row["paper"] == {"R": 99.9, "U (mean of U1, U2)": 87.8, "S": 71.9}


def _writer(path: Path, recipe_yaml: str, metrics: dict) -> list[str]:
    """A stand-in for `mmkeras train`: writes a finished run directory."""
    code = (
        "import json, pathlib, sys; p = pathlib.Path(sys.argv[1]); p.mkdir(parents=True, exist_ok=True); "
        "(p / 'recipe.yaml').write_text(sys.argv[2]); (p / 'metrics.json').write_text(sys.argv[3]); print('done')"
    )
    return [sys.executable, "-c", code, str(path), recipe_yaml, json.dumps(metrics)]


def test_a_finished_run_is_skipped_and_counted_and_a_partial_one_resumed(tmp_path):
    table = reproduce.TABLES["gmc-table1"]
    runs = reproduce.plan(table, 3, tmp_path, epochs=2, rows=["clip"])
    finished = {"epochs": 2, "evaluation": _accuracy(complete=1.0)}
    _finish(runs[0], finished["evaluation"])
    runs[1].path.mkdir(parents=True)  # interrupted: recipe written, no metrics
    (runs[1].path / "recipe.yaml").write_text(runs[1].recipe.to_yaml())
    assert reproduce.status(runs[0]) == ("finished", "")
    assert reproduce.status(runs[1]) == ("partial", "no metrics.json yet")
    assert reproduce.status(runs[2]) == ("new", "")
    for run in runs[1:]:
        run.argv = _writer(run.path, run.recipe.to_yaml(), finished)
    lines: list[str] = []
    outcomes = reproduce.execute(runs, 2, say=lines.append)
    assert [o.state for o in outcomes] == ["skipped", "trained", "trained"]
    assert lines[0] == "[1/3] clip seed 0: already finished, skipped"
    assert [line[:6] for line in lines[1:]] == ["[2/3] ", "[3/3] "]  # numbered as they end, in either order
    assert sorted(line[6:].split(":")[0] for line in lines[1:]) == ["clip seed 1", "clip seed 2"]
    assert "done" in runs[1].log.read_text() and json.loads(runs[1].timing.read_text())["last_exit_status"] == 0
    again: list[str] = []
    assert [o.state for o in reproduce.execute(runs, 2, say=again.append)] == ["skipped"] * 3
    # fewer epochs than asked for, or other evaluators: not finished, so trained on / evaluated again
    more = reproduce.plan(table, 1, tmp_path, epochs=4, rows=["clip"])[0]
    assert reproduce.status(more) == ("partial", "2 of 4 epochs")
    other = reproduce.plan(table, 1, tmp_path, epochs=2, rows=["clip"], sets=["evaluate.0.params.epochs=7"])[0]
    assert reproduce.status(other)[0] == "partial"
    # a different recipe in the directory is refused without starting anything
    changed = reproduce.plan(table, 1, tmp_path, epochs=2, rows=["clip"], sets=["data.params.size=tiny"])[0]
    state, why = reproduce.status(changed)
    assert state == "conflict" and "differs at: data.params.size" in why
    refused: list[str] = []
    (outcome,) = reproduce.execute([changed], 1, say=refused.append)
    assert outcome.state == "failed" and "pass another --runs-dir" in refused[0]


def test_a_failing_run_is_reported_with_its_log_and_the_others_go_on(tmp_path, monkeypatch, capsys):
    table = reproduce.TABLES["gmc-table1"]
    good, bad = reproduce.plan(table, 2, tmp_path, epochs=1, rows=["clip"])
    good.argv = _writer(good.path, good.recipe.to_yaml(), {"epochs": 1, "evaluation": _accuracy(image=0.5)})
    bad.argv = [sys.executable, "-c", "import sys; print('step 1'); print('ValueError: boom'); sys.exit(3)"]
    monkeypatch.setattr(reproduce, "plan", lambda *a, **k: [good, bad])
    monkeypatch.setattr(reproduce, "hardware", lambda backend: HARDWARE)
    code = reproduce.main(["gmc-table1", "--seeds", "2", "--runs-dir", str(tmp_path), "--parallel", "2"])
    out, err = capsys.readouterr()
    assert code == 1
    failure = next(line for line in out.splitlines() if "FAILED" in line)
    assert "FAILED clip seed 1 (exit status 3)" in failure and failure.endswith("ValueError: boom")
    assert f"log: {bad.log}" in out and f"clip seed 1: {bad.log}" in err
    assert "2 runs: 1 trained, 0 already finished (skipped), 1 failed" in out
    assert "ValueError: boom" in bad.log.read_text()
    record = json.loads((tmp_path / "gmc-table1" / "table.json").read_text())
    assert record["failed"] == [str(bad.log)] and record["finished"] == 1
    (clip,) = record["rows"]
    assert clip["cells"]["image"]["values"] == [50.0]  # the finished seed still counts


def test_the_docs_block_is_replaced_between_its_markers_only(tmp_path):
    doc = tmp_path / "results.md"
    before = "# Results\n\nsome text\n"
    other = "<!-- reproduce:gmc-table1:start -->\nkeep me\n<!-- reproduce:gmc-table1:end -->\n"
    block = "<!-- reproduce:pendulum:start -->\nold table\n<!-- reproduce:pendulum:end -->"
    after = "\n\n## Next\nmore text\n"
    doc.write_text(before + other + block + after)
    reproduce.write_docs(doc, "pendulum", "| new | table |\n")
    expected = (
        before + other + "<!-- reproduce:pendulum:start -->\n| new | table |\n<!-- reproduce:pendulum:end -->" + after
    )
    assert doc.read_text() == expected
    reproduce.write_docs(doc, "pendulum", "| newer |")
    assert doc.read_text() == expected.replace("| new | table |", "| newer |")
    with pytest.raises(SystemExit, match="needs exactly one <!-- reproduce:gmc-table2:start -->"):
        reproduce.write_docs(doc, "gmc-table2", "x")
    # the shipped docs have one block per table
    shipped = (ROOT / "docs" / "results.md").read_text()
    for name in reproduce.TABLES:
        assert shipped.count(f"<!-- reproduce:{name}:start -->") == 1
        assert shipped.count(f"<!-- reproduce:{name}:end -->") == 1


def test_one_row_one_seed_end_to_end_on_tiny_mhd(tmp_path, capsys):
    from mmkeras.registry import registry

    if "mhd" not in registry.names("datasets"):
        pytest.skip("the mhd dataset plugin (plugins/mmkeras-mhd) is not installed")
    args = ["gmc-table1", "--rows", "clip", "--seeds", "1", "--epochs", "1", "--runs-dir", str(tmp_path)]
    args += ["--set", "data.params.size=tiny", "--set", "evaluate.0.params.epochs=1"]
    args += ["--set", "evaluate.0.params.seeds=1"]
    assert reproduce.main(args) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "data: mhd {'size': 'tiny'" in out  # built once by the script, before the runs start
    assert "[1/1] clip seed 0: finished in" in out
    record = json.loads((tmp_path / "gmc-table1" / "table.json").read_text())
    (clip,) = record["rows"]
    for subset in ("complete", "image", "label", "sound", "trajectory"):
        cell = clip["cells"][subset]
        assert cell["n"] == 1 and 0.0 <= cell["mean"] <= 100.0 and cell["std"] == 0.0
    assert clip["epochs"] == [1] and clip["wall_s"]["mean"] > 0
    assert (tmp_path / "gmc-table1" / "clip" / "seed0" / "model.keras").exists()
    assert "| CLIP-style pairwise InfoNCE (ours, not in the paper) | `clip_mhd` | 1 |" in out
    assert reproduce.main(args) == 0  # the same command again: nothing to train
    assert "1 runs: 0 trained, 1 already finished (skipped), 0 failed" in capsys.readouterr().out
