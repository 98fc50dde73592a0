from pathlib import Path

import keras
import numpy as np
import pytest

import mmkeras
from mmkeras.errors import RecipeError
from mmkeras.losses.factorized import cross_correlation_penalty, mmd_to_standard_normal
from mmkeras.objectives.factorized import Factorized
from mmkeras.record import Record
from mmkeras.testing import check_objective, use_logical_devices

use_logical_devices(2)  # check_objective's 2-replica check; before any TensorFlow op runs

ROOT = Path(__file__).resolve().parent.parent
LINEAR = {
    "a": {"name": "dense_decoder", "params": {"hidden_units": []}},
    "b": {"name": "dense_decoder", "params": {"hidden_units": [], "output_activation": "sigmoid"}},
}


def value(x):
    return float(keras.ops.convert_to_numpy(x))


# -- numpy references -----------------------------------------------------------------------
def np_kernel(u, v, bandwidth):
    return np.exp(-((u - v) ** 2).sum() / (bandwidth * len(u)))


def np_mmd(z, keep, bandwidth):
    """Unbiased within-sample term by an explicit double loop, prior expectations in closed form."""
    z = z[keep > 0].astype("float64")
    n, d = z.shape
    s = bandwidth * d / 2
    within = sum(np_kernel(z[i], z[j], bandwidth) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    cross = np.mean([(s / (s + 1)) ** (d / 2) * np.exp(-(zi @ zi) / (2 * (s + 1))) for zi in z])
    return within - 2 * cross + (s / (s + 2)) ** (d / 2)


def np_ortho(a, b, keep):
    k = keep > 0
    corr = np.corrcoef(a[k].astype("float64"), b[k].astype("float64"), rowvar=False)[: a.shape[1], a.shape[1] :]
    return (corr**2).mean()


# -- the MMD and the no-overlap penalty --------------------------------------------------------
@pytest.mark.parametrize("bandwidth", [1.0, 0.3])
def test_mmd_matches_numpy_and_ignores_missing_rows(bandwidth):
    rng = np.random.default_rng(0)
    z = (rng.normal(size=(9, 3)) * 1.5 + 0.4).astype("float32")
    keep = np.array([1, 1, 0, 1, 1, 1, 0, 1, 1], "float32")
    ours = value(mmd_to_standard_normal(z, keep, bandwidth))
    assert ours == pytest.approx(np_mmd(z, keep, bandwidth), rel=1e-5)
    z[keep == 0] = 1e4
    assert value(mmd_to_standard_normal(z, keep, bandwidth)) == pytest.approx(ours, rel=1e-6)


def test_closed_form_prior_expectations_match_monte_carlo():
    """The kernel's expectations under N(0, I) that replace prior samples, against sampling."""
    rng = np.random.default_rng(1)
    d, bandwidth = 3, 0.5
    p, q = rng.normal(size=(200_000, d)), rng.normal(size=(200_000, d))
    z = np.array([[0.3, -1.0, 0.5], [2.0, 0.0, 0.0]])
    # MMD^2 of z with the prior = within - 2 E k(z, p) + E k(p, p'): recover the two expectations
    monte_carlo_pp = np.mean(np.exp(-((p - q) ** 2).sum(1) / (bandwidth * d)))
    monte_carlo_zp = np.mean([np.mean(np.exp(-((p - zi) ** 2).sum(1) / (bandwidth * d))) for zi in z])
    within = np_kernel(z[0], z[1], bandwidth)  # the one pair of two rows
    expected = within - 2 * monte_carlo_zp + monte_carlo_pp
    assert value(mmd_to_standard_normal(z.astype("float32"), None, bandwidth)) == pytest.approx(expected, abs=3e-3)


def test_mmd_is_small_for_prior_samples_and_large_for_shifted_ones():
    rng = np.random.default_rng(2)
    prior = rng.normal(size=(400, 4)).astype("float32")
    assert abs(value(mmd_to_standard_normal(prior))) < 5e-3
    assert value(mmd_to_standard_normal(prior + 2.0)) > 0.3
    assert value(mmd_to_standard_normal(prior[:1])) == 0.0  # one row: no pair, no estimate


def test_orthogonality_penalty_matches_numpy_correlations():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(12, 3)).astype("float32")
    b = np.concatenate([a[:, :1] * 2.0 + 0.1 * rng.normal(size=(12, 1)), rng.normal(size=(12, 1))], 1).astype("float32")
    keep = np.ones(12, "float32")
    keep[[2, 7]] = 0.0
    b[[2, 7]] = np.nan  # not even NaN in a missing row enters
    ours = value(cross_correlation_penalty(a, b, keep))
    assert ours == pytest.approx(np_ortho(a, b, keep), rel=1e-4)
    assert ours > 0.9 / 6  # one of six entries is a correlation of about 1
    independent = rng.normal(size=(2000, 2)).astype("float32")
    assert value(cross_correlation_penalty(independent[:, :1], independent[:, 1:])) < 2e-3


def as_record(fields):
    """The forward-pass record of ``fields``; the fields a test leaves out are empty."""
    return Record(**{"features": {}, "latents": {}, "joint_feature": None, "joint": None, "masks": {}, **fields})


# -- the objective -----------------------------------------------------------------------------
def tiny_record(seed=0, n=8):
    """Shared factor of 2, specific factors of 3; a is a 4-vector, b 2x2 binary pixels missing in
    rows 1 and 5 (features and inputs hold garbage there); 3 classes, row 6 unlabelled."""
    rng = np.random.default_rng(seed)
    fields = {
        "joint": rng.normal(size=(n, 2)),
        "features": {"a": rng.normal(size=(n, 3)), "b": rng.normal(size=(n, 3)) + 0.5},
        "inputs": {"a": rng.normal(size=(n, 4)), "b": (rng.random((n, 2, 2)) > 0.5) * 1.0},
    }
    fields = keras.tree.map_structure(lambda x: x.astype("float32"), fields)
    fields["features"]["b"][[1, 5]] = 1e3
    fields["inputs"]["b"][[1, 5]] = 1e3
    fields["masks"] = {"a": np.ones(n, "float32"), "b": np.array([1, 0, 1, 1, 1, 0, 1, 1], "float32")}
    labels = np.array([0, 1, 2, 0, 1, 2, -1, 1])
    return as_record(fields), labels


def fixed_objective(**kwargs):
    obj = Factorized(LINEAR, num_classes=3, likelihoods={"b": "bernoulli"}, classifier_units=[4], **kwargs)
    rec, labels = tiny_record()
    obj(rec, labels)
    rng = np.random.default_rng(10)
    obj.set_weights([rng.normal(size=w.shape).astype("float32") * 0.5 for w in obj.get_weights()])
    return obj


def np_terms(rec, labels, obj):
    weights = {
        t: [keras.ops.convert_to_numpy(w).astype("float64") for w in obj.decoder_layers[t].weights] for t in "ab"
    }
    (w1, b1), (w2, b2) = (
        [keras.ops.convert_to_numpy(w).astype("float64") for w in dense.weights] for dense in obj.classifier
    )
    z = rec.joint.astype("float64")
    logits = np.maximum(z @ w1 + b1, 0.0) @ w2 + b2
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    labelled = labels >= 0
    disc = -logp[labelled, labels[labelled]].mean()

    m = rec.masks
    recon = {}
    for t in "ab":
        keep = m[t] > 0
        code = np.concatenate([z, rec.features[t].astype("float64")], 1)[keep]
        pred = code @ weights[t][0] + weights[t][1]
        target = rec.inputs[t].reshape(len(z), -1)[keep]
        if t == "a":
            recon[t] = ((pred - target) ** 2).mean(1).mean()
        else:
            p = np.clip(1 / (1 + np.exp(-pred)), 1e-6, 1 - 1e-6)
            recon[t] = (-(target * np.log(p) + (1 - target) * np.log(1 - p))).sum(1).mean()
    ones = np.ones(len(z))
    prior = np_mmd(z, ones, 1.0) + sum(np_mmd(rec.features[t], m[t], 1.0) for t in "ab")
    ortho = sum(np_ortho(z, rec.features[t], m[t]) for t in "ab")
    return {
        "discriminative": disc,
        "recon_a": recon["a"],
        "recon_b": recon["b"],
        "prior": prior,
        "orthogonality": ortho,
    }


def test_every_term_and_the_loss_match_numpy():
    rec, labels = tiny_record()
    obj = fixed_objective(discriminative_weight=2.0, generative_weight=0.5, prior_weight=3.0, orthogonality_weight=0.7)
    out = {k: value(v) for k, v in obj(rec, labels).items()}
    ref = np_terms(rec, labels, obj)
    for key in ref:
        assert out[key] == pytest.approx(ref[key], rel=1e-4), key
    assert out["generative"] == pytest.approx(ref["recon_a"] + ref["recon_b"], rel=1e-5)
    expected = 2.0 * ref["discriminative"] + 0.5 * out["generative"] + 3.0 * ref["prior"] + 0.7 * ref["orthogonality"]
    assert out["loss"] == pytest.approx(expected, rel=1e-5)
    assert out["recon_b"] < 100  # b's garbage rows never entered


def test_missing_rows_and_unlabelled_rows_do_not_move_the_loss():
    rec, labels = tiny_record()
    obj = fixed_objective()
    before = {k: value(v) for k, v in obj(rec, labels).items()}
    missing = rec.masks["b"] == 0
    rec.features["b"][missing] = np.nan
    rec.inputs["b"][missing] = np.inf
    assert {k: value(v) for k, v in obj(rec, labels).items()} == pytest.approx(before, rel=1e-6)
    # the unlabelled row's class does not matter; labelling it changes the discriminative term
    relabelled = labels.copy()
    relabelled[6] = 2
    assert value(obj(rec, relabelled)["discriminative"]) != pytest.approx(before["discriminative"], rel=1e-3)


def test_labels_are_required_and_parameters_checked():
    rec, _ = tiny_record()
    obj = fixed_objective()
    with pytest.raises(ValueError, match=r"factorized: the discriminative term needs labels"):
        obj(rec)
    with pytest.raises(ValueError, match=r"Factorized: num_classes: expected a number >= 2, got 1"):
        Factorized(LINEAR, num_classes=1)
    with pytest.raises(ValueError, match=r"Factorized: prior_weight: expected a number >= 0, got -1.0"):
        Factorized(LINEAR, num_classes=3, prior_weight=-1.0)
    with pytest.raises(ValueError, match=r"likelihoods.c: this modality has no decoder"):
        Factorized(LINEAR, num_classes=3, likelihoods={"c": "mse"})
    with pytest.raises(RecipeError, match=r"objective.params.decoders.b: no such modality; the model has \['a'\]"):
        Factorized(LINEAR, num_classes=3)(rec._replace(masks={"a": rec.masks["a"]}), np.zeros(8))
    rec.features["b"] = np.zeros((8, 5), "float32")
    with pytest.raises(ValueError, match=r"need one size; got \{'a': 3, 'b': 5\}"):
        Factorized(LINEAR, num_classes=3)(rec, np.zeros(8))


def test_conformance_kit_passes():
    check_objective(
        Factorized,
        {"decoders": {"a": LINEAR["a"], "c": LINEAR["a"]}, "num_classes": 3, "classifier_units": [5]},
        modalities=("a", "b", "c"),
    )


def test_saved_model_reloads_with_the_classifier_and_decoders(tmp_path):
    from mmkeras.encoders.mlp import MLPEncoder
    from mmkeras.fusions.concat import ConcatFusion
    from mmkeras.heads.mlp import MLPHead
    from mmkeras.model import MultimodalModel

    keras.utils.set_random_seed(0)
    objective = Factorized(
        {"a": LINEAR["a"], "b": {"name": "conv2d_decoder", "params": {"filters": [4]}}},
        num_classes=3,
        classifier_units=[6],
        name="objective",
    )
    model = MultimodalModel(
        {"a": MLPEncoder(4, hidden_units=[8], name="a_encoder"), "b": MLPEncoder(4, hidden_units=[], name="b_encoder")},
        ConcatFusion(4, name="fusion"),
        MLPHead(3, hidden_units=[8], normalize=False, name="head"),
        objective,
        joint_encoders={
            "a": MLPEncoder(4, hidden_units=[8], name="a_joint_encoder"),
            "b": MLPEncoder(4, hidden_units=[], name="b_joint_encoder"),
        },
        input_shapes={"a": [5], "b": [4, 4, 1]},
    )
    model.build()
    rng = np.random.default_rng(4)
    x = {"a": rng.normal(size=(16, 5)).astype("float32"), "b": rng.random((16, 4, 4, 1)).astype("float32")}
    y = np.arange(16) % 3
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    before = value(model.objective(model(x), y)["loss"])
    model.fit(x, y, batch_size=8, epochs=5, verbose=0)
    after = {k: value(v) for k, v in model.objective(model(x), y).items()}
    assert after["loss"] < before
    path = tmp_path / "factorized.keras"
    model.save(path)
    loaded = mmkeras.load_model(str(path))
    assert {k: value(v) for k, v in loaded.objective(loaded(x), y).items()} == pytest.approx(after, rel=1e-5)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded.objective.logits(loaded(x).joint)),
        keras.ops.convert_to_numpy(model.objective.logits(model(x).joint)),
    )


def test_recipe_validates():
    recipe = mmkeras.load_recipe(ROOT / "recipes" / "factorized_mhd.yaml")
    assert recipe.objective.name == "factorized" and recipe.model.joint_encoders == "separate"
    assert "label" not in recipe.modalities  # the discriminative factor predicts it
    assert sorted(recipe.objective.params["decoders"]) == sorted(recipe.modalities)


@pytest.mark.slow
def test_two_replicas_match_one_device(tmp_path):
    from test_distribute import run  # the distribute suite's runner: 1 and 2 logical CPU devices

    decoders = {m: {"name": "dense_decoder", "params": {"hidden_units": [8]}} for m in "ab"}
    objective = {"name": "factorized", "params": {"decoders": decoders, "num_classes": 4, "classifier_units": [5]}}
    one, two = run(tmp_path, 1, objective), run(tmp_path, 2, objective)
    assert float(two["loss"]) == pytest.approx(float(one["loss"]), rel=1e-4)
    for k in [k for k in one if k != "loss"]:
        np.testing.assert_allclose(two[k], one[k], rtol=1e-3, atol=1e-5)
