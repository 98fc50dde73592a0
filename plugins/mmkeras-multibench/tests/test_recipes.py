"""Every MultiBench recipe trains as shipped on the stand-in files (one epoch, fewer rows) and
evaluates: the supervised GMC table has every subset, the CoMM probes a balanced accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import mmkeras

ROOT = Path(__file__).resolve().parents[3]
SUPERVISED = ["gmc_mosei_supervised.yaml", "gmc_mosi_supervised.yaml", "supervised_mosei.yaml"]
COMM = ["comm_mosi.yaml", "comm_humor.yaml", "comm_sarcasm.yaml", "comm_mimic.yaml"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("multibench-data"))


def _trained(name: str, data_dir: str, tmp_path: Path, rows: int, more: tuple[str, ...] = ()) -> dict:
    overrides = [
        "train.epochs=1",
        f"data.params.data_dir={data_dir}",
        f"data.params.standin_rows={rows}",
        *more,
    ]
    recipe = mmkeras.load_recipe(ROOT / "recipes" / name, overrides)
    assert recipe.data.params.get("path") is None  # as shipped: the stand-in
    run = mmkeras.train(recipe, str(tmp_path / "run"), verbose=0)
    return json.loads(run.metrics_file.read_text())


@pytest.mark.parametrize("name", SUPERVISED)
def test_supervised_affect_recipes_train_and_report_every_subset(name, data_dir, tmp_path):
    # XLA off: compiling the six GRUs costs 12 s more than one epoch saves (tests/test_sequence_encoders.py
    # trains a GRU under XLA)
    metrics = _trained(name, data_dir, tmp_path, rows=96, more=("train.jit_compile=false",))
    table = metrics["evaluation"]["affect"]
    assert table["source"] == "head" and table["split"] == "test", table
    rows = table["subsets"]
    assert set(rows) == {"complete", "text", "audio", "vision"}, table
    for subset, row in rows.items():
        assert row["n"] == 48, (subset, row)  # the stand-in's test split: rows // 2, every row present
        assert np.isfinite(row["mae"]) and 0.0 <= row["acc2"] <= 1.0 and row["n_nonzero"] <= row["n"]


# comm_humor and comm_sarcasm are comm_mosi on other files (wider vision): they run with one encoder
# layer instead of five, which changes nothing they add and saves a minute of graph tracing each
SHALLOW = tuple(f"modalities.{m}.encoder.params.num_layers=1" for m in ("vision", "text"))


@pytest.mark.parametrize("name", COMM)
def test_comm_recipes_train_and_probe(name, data_dir, tmp_path):
    more = SHALLOW if name in ("comm_humor.yaml", "comm_sarcasm.yaml") else ()
    metrics = _trained(name, data_dir, tmp_path, rows=192, more=more)
    label = metrics["evaluation"]["logistic_probe"]["tasks"]["label"]
    # the stand-ins' splits: affect 192 train / 96 test segments; MIMIC 192 rows, test = the second tenth
    sizes = (154, 19) if name == "comm_mimic.yaml" else (192, 96)
    assert (label["num_train"], label["num_test"]) == sizes, label
    assert label["chance"] == 0.5 and 0.0 <= label["balanced_accuracy"] <= 1.0, label
