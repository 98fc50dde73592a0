"""The supervised objective: a prediction head on the joint latent, trained alone. Both tasks and both
regression losses against hand-computed numbers, masks, the residual head in a model, saving, the
conformance kit (2 replicas included), and a tiny recipe on an arrays file with float labels."""

import json

import numpy as np
import pytest

from mmkeras.testing import check_objective, use_logical_devices

use_logical_devices(2)  # check_objective's 2-replica check; before any TensorFlow op runs

# four joint latents [4, 2], read by a linear head with known weights
JOINT = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [-1.0, 0.5]], "float32")
MASKS = {"a": np.ones(4, "float32"), "b": np.array([1.0, 0.0, 1.0, 1.0], "float32")}


def record(masks=MASKS):
    from mmkeras.record import Record

    return Record(features={}, latents={}, joint_feature=None, joint=JOINT, masks=masks)


def linear_objective(weights, bias, **params):
    from mmkeras.objectives.supervised import Supervised

    objective = Supervised(head="linear", **params)
    objective.prediction_head.build((None, 2))
    objective.prediction_head.set_weights([np.asarray(weights, "float32"), np.asarray(bias, "float32")])
    return objective


# y^ = 0.5 z_1 - z_2 + 0.25: 0.75, -1.75, -0.25, -0.75 against 1, -2, 0.5, 0: errors -0.25, 0.25, -0.75, -0.75
REGRESSION = {"weights": [[0.5], [-1.0]], "bias": [0.25]}
TARGETS = np.array([1.0, -2.0, 0.5, 0.0], "float32")


@pytest.mark.parametrize("loss, expected", [("l1", (0.25 + 0.25 + 0.75 + 0.75) / 4), ("mse", 1.25 / 4)])
def test_regression_loss_by_hand(loss, expected):
    objective = linear_objective(**REGRESSION, loss=loss)
    np.testing.assert_allclose(np.asarray(objective.predict_from_joint(JOINT))[:, 0], [0.75, -1.75, -0.25, -0.75])
    result = objective(record(), TARGETS)
    assert sorted(result) == ["loss", "prediction"]
    assert float(result["loss"]) == pytest.approx(expected, rel=1e-6)
    assert float(result["prediction"]) == pytest.approx(expected, rel=1e-6)


def test_classification_cross_entropy_by_hand():
    objective = linear_objective(
        [[1.0, 0.0, -1.0], [0.0, 1.0, 0.0]], [0.0, 0.0, 0.5], task="classification", num_classes=3
    )
    logits = np.array([[1.0, 0.0, -0.5], [0.0, 2.0, 0.5], [1.0, 1.0, -0.5], [-1.0, 0.5, 1.5]])
    np.testing.assert_allclose(np.asarray(objective.predict_from_joint(JOINT)), logits, rtol=1e-6)
    labels = np.array([0, 1, 2, 1])
    # row 0: log(e^1 + e^0 + e^-0.5) - 1, and so on
    expected = np.mean([np.log(np.exp(row).sum()) - row[c] for row, c in zip(logits, labels)])
    assert float(objective(record(), labels)["loss"]) == pytest.approx(expected, rel=1e-6)
    # the regression loss setting does not touch a classifier
    again = linear_objective(
        [[1.0, 0.0, -1.0], [0.0, 1.0, 0.0]], [0.0, 0.0, 0.5], task="classification", num_classes=3, loss="mse"
    )
    assert float(again(record(), labels)["loss"]) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("loss, expected", [("l1", (0.25 + 0.25 + 0.75) / 3), ("mse", (0.0625 + 0.0625 + 0.5625) / 3)])
def test_rows_without_any_modality_do_not_count(loss, expected):
    objective = linear_objective(**REGRESSION, loss=loss)
    masks = {"a": np.array([1.0, 0.0, 1.0, 0.0], "float32"), "b": np.array([1.0, 1.0, 0.0, 0.0], "float32")}
    # row 3 has no modality; rows 1 and 2 have one each and count
    assert float(objective(record(masks), TARGETS)["loss"]) == pytest.approx(expected, rel=1e-6)
    nothing = {m: np.zeros(4, "float32") for m in masks}
    assert float(objective(record(nothing), TARGETS)["loss"]) == 0.0


def test_arguments_are_checked():
    from mmkeras.objectives.supervised import Supervised

    with pytest.raises(ValueError, match="num_classes must be at least 2 for classification, got 1"):
        Supervised(task="classification", num_classes=1)
    with pytest.raises(ValueError, match="loss"):
        Supervised(loss="huber")
    with pytest.raises(ValueError, match="needs labels"):
        linear_objective(**REGRESSION)(record(), None)


# -- in a model -----------------------------------------------------------------------------------
SHAPES = {"a": [5], "b": [4], "c": [3]}


def supervised_doc(data=None, evaluate=(), **objective_params):
    return {
        "name": "supervised-tiny",
        "seed": 0,
        "data": data or {"dataset": "arrays", "params": {"synthetic": True, "num_samples": 64}, "batch_size": 8},
        "modalities": {m: {"encoder": {"name": "mlp", "params": {"hidden_units": [8]}}} for m in SHAPES},
        "model": {"feature_dim": 6, "latent_dim": 4, "fusion": {"name": "concat"}, "head": {"name": "mlp"}},
        "objective": {"name": "supervised", "params": objective_params},
        "train": {"epochs": 1, "jit_compile": False},
        "evaluate": list(evaluate),
    }


def build(**objective_params):
    from mmkeras.builder import build_model
    from mmkeras.recipe import recipe_from_dict

    return build_model(recipe_from_dict(supervised_doc(**objective_params), check_data=False), input_shapes=SHAPES)


def batch(n=6, seed=0):
    rng = np.random.default_rng(seed)
    x = {m: rng.normal(size=[n] + s).astype("float32") for m, s in SHAPES.items()}
    x["masks"] = {m: np.ones(n, "float32") for m in SHAPES}
    x["masks"]["b"][1] = 0.0
    for m in SHAPES:
        x["masks"][m][4] = 0.0  # row 4 has no modality
    return x, np.linspace(-3.0, 3.0, n).astype("float32")


def test_residual_head_in_a_model_is_the_l1_of_gmc_prediction_head():
    model = build()
    x, y = batch()
    rec = model(x, training=False)
    head = model.objective.prediction_head
    w1, b1, w2, b2, w3, b3 = (np.asarray(v, "float64") for d in (head.proj1, head.proj2, head.out) for v in d.weights)
    z = np.asarray(rec.joint, "float64")
    predicted = ((z + np.maximum(z @ w1 + b1, 0.0) @ w2 + b2) @ w3 + b3)[:, 0]
    keep = np.arange(6) != 4
    expected = float(np.mean(np.abs(predicted - y)[keep]))
    assert float(model.compute_loss(x, y, rec)) == pytest.approx(expected, rel=1e-5)
    assert sorted(model.objective_trackers) == ["prediction"]


def test_saved_model_reloads_with_its_head(tmp_path):
    import keras

    model = build(loss="mse")
    x, y = batch()
    before = float(model.compute_loss(x, y, model(x, training=False)))
    predicted = np.asarray(model.objective.predict_from_joint(model.encode(x)))
    model.save(tmp_path / "supervised.keras")
    loaded = keras.saving.load_model(tmp_path / "supervised.keras")
    assert loaded.objective.get_config()["loss"] == "mse" and loaded.objective.get_config()["head"] == "residual"
    assert float(loaded.compute_loss(x, y, loaded(x, training=False))) == pytest.approx(before, rel=1e-6)
    np.testing.assert_allclose(np.asarray(loaded.objective.predict_from_joint(loaded.encode(x))), predicted, rtol=1e-5)


@pytest.mark.parametrize(
    "params",
    [
        # mse: with l1 the gradient of the output bias, the mean sign of the errors, can be exactly 0
        {"loss": "mse"},
        {"task": "classification", "num_classes": 3, "head": "linear"},
    ],
)
def test_conformance_kit_passes(params):
    from mmkeras.objectives.supervised import Supervised

    check_objective(Supervised, params, modalities=("a", "b", "c"))


def test_a_tiny_recipe_on_float_labels_trains(tmp_path):
    from mmkeras.recipe import recipe_from_dict
    from mmkeras.runs import train

    rng = np.random.default_rng(1)
    arrays = {}
    for split, n in (("train", 32), ("test", 16)):
        signal = rng.normal(size=n)
        for m, s in SHAPES.items():
            arrays[f"{split}/{m}"] = (signal[:, None] + 0.1 * rng.normal(size=[n] + s)).astype("float32")
        arrays[f"{split}/labels"] = np.clip(1.5 * signal, -3, 3).astype("float32")  # sentiment-like scores
    np.savez(tmp_path / "affect.npz", **arrays)
    data = {"dataset": "arrays", "params": {"path": str(tmp_path / "affect.npz")}, "batch_size": 8}
    doc = supervised_doc(data=data, evaluate=[{"name": "affect", "params": {"subsets": "singles"}}])
    run = train(recipe_from_dict(doc), tmp_path / "run", verbose=0)
    metrics = json.loads(run.metrics_file.read_text())
    assert len(metrics["history"]["prediction"]) == 1 and np.isfinite(metrics["history"]["prediction"][0])
    scores = metrics["evaluation"]["affect"]["subsets"]
    assert metrics["evaluation"]["affect"]["source"] == "head"
    assert list(scores) == ["complete", "a", "b", "c"] and scores["complete"]["n"] == 16
    assert "| subset | MAE | Corr | Acc-2 | F1 | Acc-7 |" in (tmp_path / "run" / "report.md").read_text()
