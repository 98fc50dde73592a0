"""The affect evaluator: each metric against hand-computed numbers (label 0 excluded exactly where the
protocol says), weighted F1 against sklearn, integer labels refused, head vs probe, and end to end on a
supervised GMC regression model over three modalities."""

from types import SimpleNamespace

import numpy as np
import pytest

from mmkeras.data.base import DataSplit
from mmkeras.errors import MMKerasError
from mmkeras.evaluators.affect import Affect, affect_scores, weighted_f1

# rows 2 and 6 have label 0; row 4 predicts exactly 0 (not positive)
PRED = np.array([2.4, -0.6, 0.3, -1.2, 0.0, -0.4, -0.2])
TRUE = np.array([2.0, -1.0, 0.0, 1.0, -0.5, 2.6, 0.0])


def test_metrics_by_hand():
    s = affect_scores(PRED, TRUE)
    assert s["mae"] == pytest.approx((0.4 + 0.4 + 0.3 + 2.2 + 0.5 + 3.0 + 0.2) / 7)
    assert s["corr"] == pytest.approx(np.corrcoef(PRED, TRUE)[0, 1])
    # non-zero rows 0, 1, 3, 4, 5: truth +, -, +, -, +; predicted +, -, -, -, - -> 3 of 5 right
    assert s["acc2"] == pytest.approx(3 / 5)
    # F1: positive (support 3) tp 1, fp 0, fn 2 -> 2/4; negative (support 2) tp 2, fp 2, fn 0 -> 4/6
    assert s["f1"] == pytest.approx((3 * 0.5 + 2 * 4 / 6) / 5)
    # all rows, 0 counts as non-negative: p >= 0 +, -, +, -, +, -, -; y >= 0 +, -, +, +, -, +, + -> 3 of 7
    assert s["acc2_with_zero"] == pytest.approx(3 / 7)
    # rounded: p 2, -1, 0, -1, 0, 0, 0; y 2, -1, 0, 1, 0 (-0.5 rounds to even), 3, 0 -> 5 of 7
    assert s["acc7"] == pytest.approx(5 / 7)
    assert (s["n"], s["n_nonzero"]) == (7, 5)


def test_acc7_clips_to_the_scale_and_all_zero_labels_have_no_binary_scores():
    assert affect_scores(np.array([4.2, -5.0]), np.array([2.6, -3.0]))["acc7"] == 1.0
    s = affect_scores(np.array([0.5, -0.5]), np.zeros(2))
    assert s["acc2"] is None and s["f1"] is None and s["acc2_with_zero"] == 0.5 and s["corr"] is None


def test_weighted_f1_agrees_with_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(5):
        y, p = rng.integers(0, 2, 30).astype(bool), rng.integers(0, 2, 30).astype(bool)
        assert weighted_f1(y, p) == pytest.approx(metrics.f1_score(y, p, average="weighted"))
    nonzero = TRUE != 0
    expected = metrics.f1_score(TRUE[nonzero] > 0, PRED[nonzero] > 0, average="weighted")
    assert affect_scores(PRED, TRUE)["f1"] == pytest.approx(expected)
    # a class never true weighs 0; one never predicted scores 0
    assert weighted_f1([1, 1, 1], [1, 0, 1]) == pytest.approx(0.8)
    assert weighted_f1([1, 0], [1, 1]) == pytest.approx(0.5 * 2 / 3)


def test_integer_labels_are_refused_in_one_line(tmp_path):
    split = DataSplit({"a": np.zeros((4, 2), "float32")}, np.array([0, 1, 1, 0]))
    model = SimpleNamespace(modalities=["a"], objective=None)
    with pytest.raises(MMKerasError) as err:
        Affect().evaluate(model, {"train": split, "test": split}, tmp_path)
    assert str(err.value) == (
        "affect: the test labels are integer classes (int64), not sentiment scores; set data.params.target: "
        "regression, or use the logistic_probe evaluator for classes"
    )


def test_source_auto_takes_a_regression_head_else_the_probe():
    from mmkeras.objectives.gmc import GMC
    from mmkeras.objectives.supervised import Supervised

    def source(objective, asked="auto"):
        return Affect(source=asked).resolve_source(SimpleNamespace(objective=objective))

    assert source(Supervised()) == "head"
    assert source(GMC(supervised=True, task="regression")) == "head"
    assert source(GMC()) == "probe"  # unsupervised: no head
    assert source(GMC(supervised=True, num_classes=3)) == "probe"  # a classifier cannot score sentiment
    assert source(None) == "probe"  # an encoder alone
    assert source(Supervised(), "probe") == "probe"
    with pytest.raises(MMKerasError, match=r"objective \(GMC\) has no prediction head; .* or set source: probe"):
        source(GMC(), "head")
    classifier = r"is a classifier \(task: classification\); set objective.params.task: regression, or source: probe"
    with pytest.raises(MMKerasError, match=classifier):
        source(Supervised(task="classification"), "head")


def test_parameters_are_checked():
    with pytest.raises(ValueError, match="subsets must be 'all', 'singles' or a list"):
        Affect(subsets="pairs")
    with pytest.raises(ValueError, match="validation_fraction must be in"):
        Affect(validation_fraction=1.0)


# -- end to end: supervised GMC regression on three modalities ------------------------------------
SHAPES = {"audio": [4], "text": [6], "video": [3]}


def splits(seed=0):
    """Sentiment-like scores in [-3, 3] that every modality carries with its own noise; video missing in
    some test rows."""
    rng = np.random.default_rng(seed)
    mixing = {m: rng.normal(size=[1] + s) for m, s in SHAPES.items()}
    out = {}
    for split, n in (("train", 64), ("validation", 16), ("test", 24)):
        signal = rng.uniform(-1, 1, n)
        inputs = {
            m: (signal[:, None] * mixing[m] + 0.2 * rng.normal(size=[n] + s)).astype("float32")
            for m, s in SHAPES.items()
        }
        labels = np.round(3 * signal, 1).astype("float32")
        labels[:2] = 0.0
        masks = {"video": (np.arange(n) % 4 != 1).astype("float32")} if split == "test" else {}
        out[split] = DataSplit(inputs, labels, masks)
    return out


@pytest.fixture(scope="module")
def trained():
    from mmkeras.builder import build_model
    from mmkeras.data.pipeline import make_dataset
    from mmkeras.recipe import recipe_from_dict

    doc = {
        "name": "gmc-affect-tiny",
        "seed": 0,
        "data": {"dataset": "arrays", "params": {"synthetic": True, "num_samples": 64}, "batch_size": 16},
        "modalities": {m: {"encoder": {"name": "mlp", "params": {"hidden_units": [8]}}} for m in SHAPES},
        "model": {
            "feature_dim": 8,
            "latent_dim": 6,
            "joint_encoders": "separate",
            "fusion": {"name": "concat"},
            "head": {"name": "mlp", "params": {"hidden_units": [8], "normalize": True}},
            "subset_encoding": "mean",
        },
        "objective": {"name": "gmc", "params": {"temperature": 0.3, "supervised": True, "task": "regression"}},
        "train": {"epochs": 1, "jit_compile": False},
    }
    model = build_model(recipe_from_dict(doc, check_data=False), input_shapes=SHAPES)
    data = splits()
    model.fit(make_dataset(data["train"], sorted(SHAPES), 16, seed=0), epochs=1, verbose=0)
    return model, data


def test_head_scores_every_subset_with_the_mean_latent(trained, tmp_path):
    model, data = trained
    results = Affect().evaluate(model, data, tmp_path / "figures")
    assert results["source"] == "head" and results["split"] == "test" and results["objective"] == "GMC"
    names = ["complete", "audio+text", "audio+video", "text+video", "audio", "text", "video"]
    assert list(results["subsets"]) == names
    test = data["test"]
    with_video = test.masks["video"] > 0
    assert results["subsets"]["complete"]["n"] == int(with_video.sum()) == 18
    assert results["subsets"]["audio+text"]["n"] == 24 and results["subsets"]["text+video"]["n"] == 18
    # audio+text by hand: the head on the mean of the two modalities' latents
    x = {m: test.inputs[m] for m in SHAPES}
    latents = model.encode_each(x, ["audio", "text"], output="latent")
    z = (latents["audio"] + latents["text"]) / 2
    predicted = np.asarray(model.objective.predict_from_joint(z))[:, 0]
    expected = affect_scores(predicted, test.labels)
    for key in ("mae", "corr", "acc2", "f1", "acc7"):
        assert results["subsets"]["audio+text"][key] == pytest.approx(expected[key], rel=1e-5), key
    assert results["subsets"]["audio+text"]["n_nonzero"] == 22
    report = Affect().report(results)
    assert "prediction head trained with the objective (`GMC`)" in report
    assert "| subset | MAE | Corr | Acc-2 | F1 | Acc-7 |" in report
    row = results["subsets"]["text"]
    assert f"| text | {row['mae']:.3f} | {row['corr']:.3f} | {100 * row['acc2']:.1f} |" in report
    assert (tmp_path / "figures" / "affect_subsets.png").stat().st_size > 0
    assert "(figures/affect_subsets.png)" in report


def test_probe_is_a_ridge_on_complete_train_rows_with_alpha_chosen_on_validation(trained, tmp_path):
    from mmkeras.evaluators.regression_probe import RidgeFit

    model, data = trained
    evaluator = Affect(source="probe", subsets=["complete", "text"])
    results = evaluator.evaluate(model, data, tmp_path)
    assert results["source"] == "probe" and list(results["subsets"]) == ["complete", "text"]
    probe = results["probe"]
    assert probe["alpha_chosen_on"] == "validation" and probe["train_rows"] == 64
    mods = sorted(SHAPES)
    z_train = model.encode({m: data["train"].inputs[m] for m in mods}, mods)
    z_val = model.encode({m: data["validation"].inputs[m] for m in mods}, mods)
    ridge = RidgeFit(z_train, data["train"].labels)
    errors = {a: np.mean((ridge.predict(z_val, a) - data["validation"].labels) ** 2) for a in evaluator.alphas}
    assert probe["alpha"] == min(evaluator.alphas, key=lambda a: errors[a])
    test = data["test"]
    z_text = model.encode({"text": test.inputs["text"]}, ["text"])
    expected = affect_scores(ridge.predict(z_text, probe["alpha"]), test.labels)
    assert results["subsets"]["text"]["mae"] == pytest.approx(expected["mae"], rel=1e-6)
    assert "ridge regression probe" in evaluator.report(results)
    # without a validation split the penalty is chosen on held-out train rows
    held = Affect(source="probe", subsets="singles").evaluate(model, {"train": data["train"], "test": test}, None)
    assert held["probe"]["alpha_chosen_on"] == "train_holdout" and held["figure"] is None


def test_affect_is_an_entry_point_and_validate_checks_its_subsets():
    from mmkeras.registry import registry

    assert registry.get("evaluators", "affect") is Affect
    problems = Affect.check_recipe({"subsets": ["complete", "text+smell"]}, sorted(SHAPES))
    assert problems == [
        ("subsets", "subset 'text+smell' names unknown modalities ['smell']; the model has ['audio', 'text', 'video']")
    ]
