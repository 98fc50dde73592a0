"""The downstream evaluator (GMC's Table 1 protocol), the UMAP/PCA plot, and the GMC quick recipe."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from mmkeras.data.base import DataSplit

NUM_CLASSES = 4
EPOCHS = 15


def separable_split(n, seed):
    """Two modalities that each carry the class on their own (plus noise): a model that only
    encodes them, even untrained, gives representations a classifier can separate."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, size=n)
    centres = np.random.default_rng(99).normal(size=(NUM_CLASSES, 6)) * 3.0
    a = centres[labels] + 0.3 * rng.normal(size=(n, 6))
    b = np.repeat(centres[labels][:, :4, None], 3, axis=2) + 0.3 * rng.normal(size=(n, 4, 3))
    return DataSplit({"a": a.astype("float32"), "b": b.astype("float32")}, labels)


def tiny_model():
    from mmkeras.builder import build_model
    from mmkeras.recipe import recipe_from_dict

    doc = {
        "name": "gmc-separable",
        "seed": 0,
        "data": {"dataset": "arrays", "params": {"synthetic": True, "num_samples": 64}},
        "modalities": {
            "a": {"encoder": {"name": "mlp", "params": {"hidden_units": [16]}}},
            "b": {"encoder": {"name": "conv1d", "params": {"filters": [8], "kernel_sizes": [2], "strides": [1]}}},
        },
        "model": {
            "feature_dim": 16,
            "latent_dim": 8,
            "joint_encoders": "separate",
            "fusion": {"name": "concat"},
            "head": {"name": "mlp", "params": {"hidden_units": [16], "normalize": True}},
            "subset_encoding": "mean",
        },
        "objective": {"name": "gmc", "params": {"temperature": 0.1}},
        "train": {"epochs": 1, "jit_compile": False, "optimizer": {"learning_rate": 3.0e-3}},
    }
    return build_model(recipe_from_dict(doc, check_data=False), input_shapes={"a": [6], "b": [4, 3]})


@pytest.fixture(scope="module")
def model_and_data():
    """A tiny GMC model trained briefly: it must align the modalities with the joint
    representation for a classifier trained on complete observations to read single ones."""
    from mmkeras.data.pipeline import make_dataset

    model = tiny_model()
    data = {"train": separable_split(240, 1), "test": separable_split(120, 2)}
    model.fit(make_dataset(data["train"], ["a", "b"], 32, seed=0), epochs=EPOCHS, verbose=0)
    return model, data


def test_downstream_scores_complete_and_each_modality_above_chance(model_and_data, tmp_path):
    from mmkeras.evaluators.downstream import Downstream

    model, data = model_and_data
    results = Downstream(epochs=25, seeds=2, batch_size=32).evaluate(model, data, tmp_path)
    assert list(results["accuracy"]) == ["complete", "a", "b"]
    for name, acc in results["accuracy"].items():
        assert len(acc["runs"]) == 2
        assert acc["mean"] == pytest.approx(np.mean(acc["runs"]))
        assert acc["std"] == pytest.approx(np.std(acc["runs"]))
        assert acc["mean"] > 0.7, name  # chance is about 0.25
    assert results["train_rows"] == 240 and results["test_rows"] == {"complete": 120, "a": 120, "b": 120}
    assert results["classifier"] == [8, 256, 128, NUM_CLASSES]
    assert results["chance"] == pytest.approx(np.bincount(data["test"].labels).max() / 120)


def test_downstream_trains_on_complete_rows_and_tests_each_subset_where_present(model_and_data, tmp_path):
    from mmkeras.evaluators.downstream import Downstream

    model, data = model_and_data
    train, test = data["train"], data["test"]
    b_missing = np.ones(len(train), "float32")
    b_missing[:40] = 0.0
    a_missing = np.ones(len(test), "float32")
    a_missing[:30] = 0.0
    masked = {
        "train": DataSplit(train.inputs, train.labels, {"b": b_missing}),
        "test": DataSplit(test.inputs, test.labels, {"a": a_missing}),
    }
    results = Downstream(subsets="all", epochs=2).evaluate(model, masked, tmp_path)
    assert results["train_rows"] == 200
    assert results["test_rows"] == {"complete": 90, "a": 90, "b": 120}


def test_report_renders_a_table_from_reloaded_results(tmp_path):
    from mmkeras.evaluators.downstream import Downstream, results_table

    results = {
        "model": "gmc_mhd",
        "accuracy": {
            "complete": {"mean": 0.9975, "std": 0.0003, "runs": [0.9972, 0.9978]},
            "image": {"mean": 0.9721, "std": 0.001, "runs": [0.9711, 0.9731]},
        },
        "chance": 0.1,
        "classifier": [64, 256, 128, 10],
        "epochs": 100,
        "seeds": 2,
        "train_rows": 45000,
        "test_rows": {"complete": 10000, "image": 10000},
    }
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(results))
    report = Downstream().report(json.loads(path.read_text()))
    assert "| model | complete | image |" in report
    assert "| gmc_mhd | 99.75 ± 0.03 | 97.21 ± 0.10 |" in report
    assert "64-256-128-10" in report and "45000 complete training observations" in report
    single = {**results, "model": "clip", "seeds": 1, "accuracy": {"image": {"mean": 0.5, "std": 0.0, "runs": [0.5]}}}
    both = results_table({"gmc": results, "clip": single})
    assert both.splitlines()[-1] == "| clip |  | 50.00 |"


def test_downstream_parameters_are_checked():
    from mmkeras.errors import RecipeError
    from mmkeras.evaluators.downstream import Downstream
    from mmkeras.recipe import recipe_from_dict

    with pytest.raises(ValueError, match="subsets must be 'singles', 'all' or a list"):
        Downstream(subsets="pairs")
    with pytest.raises(ValueError, match="epochs must be at least 1"):
        Downstream(epochs=0)
    doc = json.loads(
        json.dumps(
            {
                "name": "x",
                "data": {"dataset": "arrays", "params": {"synthetic": True}},
                "modalities": {"a": {"encoder": {"name": "mlp"}}},
                "objective": {"name": "gmc"},
                "evaluate": [{"name": "downstream", "params": {"epoch": 3}}],
            }
        )
    )
    with pytest.raises(
        RecipeError, match=r"evaluate\[0\]\.params\.epoch: downstream has no parameter 'epoch'; did you mean 'epochs'"
    ):
        recipe_from_dict(doc)


def test_plot_writes_a_png_and_the_report_links_it(model_and_data, tmp_path):
    from PIL import Image

    from mmkeras.evaluators.umap import UMAPPlot

    model, data = model_and_data
    figures = tmp_path / "figures"
    plot = UMAPPlot(modality="b", method="pca", num_samples=50, filename="map.png")
    results = plot.evaluate(model, data, figures)
    assert results == {"figure": "figures/map.png", "method": "pca", "note": "", "modality": "b", "points": 50}
    with Image.open(figures / "map.png") as image:
        assert image.format == "PNG" and image.size == (1000, 460)
    report = plot.report(json.loads(json.dumps(results)))
    assert "![pca of complete and b-only representations](figures/map.png)" in report
    with pytest.raises(Exception, match="modality 'c' is not one of the model's modalities"):
        UMAPPlot(modality="c", method="pca").evaluate(model, data, figures)


def test_plot_falls_back_to_pca_without_umap_learn(model_and_data, tmp_path, monkeypatch):
    from mmkeras.errors import MMKerasError
    from mmkeras.evaluators import umap as umap_plot

    monkeypatch.setattr(umap_plot, "umap_available", lambda: False)
    model, data = model_and_data
    plot = umap_plot.UMAPPlot(modality="a", num_samples=30)
    results = plot.evaluate(model, data, tmp_path / "figures")
    note = 'umap-learn is not installed, so this map is PCA, not UMAP; for UMAP: pip install "mmkeras[umap]"'
    assert results["method"] == "pca" and results["note"] == note
    assert results["figure"] == "figures/pca.png" and (tmp_path / "figures" / "pca.png").exists()
    assert plot.report(results).endswith(f"Note: {note}.\n")
    with pytest.raises(MMKerasError, match=r'pip install "mmkeras\[umap\]"'):
        umap_plot.UMAPPlot(method="umap")


def test_gmc_recipes_validate():
    from mmkeras.recipe import load_recipe
    from mmkeras.registry import registry

    if "mhd" not in registry.names("datasets"):
        pytest.skip("the mhd dataset plugin (plugins/mmkeras-mhd) is not installed")
    quick = load_recipe(ROOT / "recipes" / "gmc_mhd_quick.yaml")
    full = load_recipe(ROOT / "recipes" / "gmc_mhd.yaml")
    clip = load_recipe(ROOT / "recipes" / "clip_mhd.yaml")
    assert quick.model == full.model and quick.objective == full.objective
    assert quick.data.params["size"] == "small" and full.data.params["size"] == "full"
    assert clip.objective.name == "infonce" and clip.model.joint_encoders == "shared"
    assert clip.modalities == full.modalities


# measured on the shared 2-core CPU (8 epochs, seed 0): complete 1.000, image 0.985, label 1.000, sound 0.925,
# trajectory 0.995; thresholds leave a wide margin for run-to-run variation (chance is 0.1)
QUICK_THRESHOLDS = {"complete": 0.9, "image": 0.85, "label": 0.9, "sound": 0.7, "trajectory": 0.85}


@pytest.mark.slow
def test_gmc_mhd_quick_recipe_beats_chance_on_every_single_modality(tmp_path):
    from mmkeras.recipe import load_recipe
    from mmkeras.registry import registry

    if "mhd" not in registry.names("datasets"):
        pytest.skip("the mhd dataset plugin (plugins/mmkeras-mhd) is not installed")
    from mmkeras.runs import train

    data_dir = os.environ.get("MMKERAS_DATA_DIR") or str(Path.home() / ".cache" / "mmkeras")  # shared cache
    recipe = load_recipe(ROOT / "recipes" / "gmc_mhd_quick.yaml", [f"data.params.data_dir={data_dir}"])
    run = train(recipe, tmp_path / "run", verbose=0)
    metrics = json.loads(run.metrics_file.read_text())
    accuracy = {k: v["mean"] for k, v in metrics["evaluation"]["downstream"]["accuracy"].items()}
    for name, threshold in QUICK_THRESHOLDS.items():
        assert accuracy[name] > threshold, (name, accuracy)
    report = run.report_file.read_text()
    assert "| model | complete | image | label | sound | trajectory |" in report
    from mmkeras.evaluators.umap import umap_available

    assert (run.figures / ("umap.png" if umap_available() else "pca.png")).exists()
    for figure in ("downstream_subsets.png", "retrieval.png", "training.png"):
        assert (run.figures / figure).exists(), figure
        assert f"figures/{figure}" in report, figure
    # the image latents land in the joint representation's components (measured: recall 0.94 at 10 epochs)
    dca = metrics["evaluation"]["dca"]["scores"]
    assert dca["image"]["recall"] > 0.5 and dca["image"]["precision"] > 0.5, dca["image"]
    pairs = metrics["evaluation"]["retrieval"]["pairs"]
    assert len(pairs) == 12  # every ordered pair of the 4 modalities
    # sound retrieves its image far better than chance (median rank of a random gallery: about half of it)
    assert pairs["sound->image"]["median_rank"] < pairs["sound->image"]["gallery_size"] / 4
