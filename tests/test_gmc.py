"""The GMC objective: both loss variants against numpy, masks, the model, gradients, saving,
the supervised head and tf.distribute."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import ROOT

TAU = 0.5


# -- numpy references (written from the formulas, one row at a time) ------------------------
def _unit(x):
    x = np.asarray(x, dtype="float64")
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def ref_official_term(joint, z, tau):
    """mean over the 2B rows of -log(s(k, partner) / sum_{l != k} s(k, l)), Z = [joint; z]."""
    big = np.concatenate([_unit(joint), _unit(z)])
    n = len(joint)
    sim = np.exp(big @ big.T / tau)
    losses = []
    for k in range(2 * n):
        partner = (k + n) % (2 * n)
        denominator = sum(sim[k, col] for col in range(2 * n) if col != k)
        losses.append(-np.log(sim[k, partner] / denominator))
    return float(np.mean(losses))


def ref_paper_term(joint, z, tau):
    """mean_i -log(s(z_i, J_i) / sum_{j != i} [s(z_i, J_j) + s(z_i, z_j) + s(J_i, J_j)])."""
    jn, zn = _unit(joint), _unit(z)
    losses = []
    for i in range(len(jn)):
        positive = np.exp(zn[i] @ jn[i] / tau)
        negatives = sum(
            np.exp(zn[i] @ jn[j] / tau) + np.exp(zn[i] @ zn[j] / tau) + np.exp(jn[i] @ jn[j] / tau)
            for j in range(len(jn))
            if j != i
        )
        losses.append(-np.log(positive / negatives))
    return float(np.mean(losses))


REFERENCE = {"official": ref_official_term, "paper": ref_paper_term}

# a tiny example: 3 samples, 2-d, two modalities
JOINT = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], "float32")
MOD_A = np.array([[0.9, 0.1], [0.2, 1.0], [-1.0, 0.5]], "float32")
MOD_B = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]], "float32")


def test_official_variant_matches_numpy_on_a_tiny_example():
    from mmkeras.losses import gmc_loss, gmc_terms

    expected_a = ref_official_term(JOINT, MOD_A, TAU)
    expected_b = ref_official_term(JOINT, MOD_B, TAU)
    terms = gmc_terms(JOINT, {"a": MOD_A, "b": MOD_B}, TAU)
    assert float(terms["a"]) == pytest.approx(expected_a, rel=1e-5)
    assert float(terms["b"]) == pytest.approx(expected_b, rel=1e-5)
    assert float(gmc_loss(JOINT, [MOD_A, MOD_B], TAU)) == pytest.approx(expected_a + expected_b, rel=1e-5)
    # row 0 of term a by hand: Z = [J; A], partner of J_0 is A_0
    jn, an = _unit(JOINT), _unit(MOD_A)
    others = [jn[1], jn[2], an[0], an[1], an[2]]
    row0 = -np.log(np.exp(jn[0] @ an[0] / TAU) / sum(np.exp(jn[0] @ o / TAU) for o in others))
    assert 0 < row0 < 6 * expected_a  # the per-row value is one of the six averaged rows


def test_paper_variant_matches_numpy_on_a_tiny_example():
    from mmkeras.losses import gmc_loss

    expected = ref_paper_term(JOINT, MOD_A, TAU) + ref_paper_term(JOINT, MOD_B, TAU)
    got = float(gmc_loss(JOINT, {"a": MOD_A, "b": MOD_B}, TAU, variant="paper"))
    assert got == pytest.approx(expected, rel=1e-5)
    official = float(gmc_loss(JOINT, {"a": MOD_A, "b": MOD_B}, TAU))
    assert got != pytest.approx(official, rel=1e-3)


@pytest.mark.parametrize("variant", ["official", "paper"])
def test_inputs_are_l2_normalised_and_temperature_scales(variant):
    from mmkeras.losses import gmc_loss

    scaled = float(gmc_loss(3.0 * JOINT, [7.0 * MOD_A], 0.2, variant=variant))
    assert scaled == pytest.approx(REFERENCE[variant](JOINT, MOD_A, 0.2), rel=1e-5)


@pytest.mark.parametrize("variant", ["official", "paper"])
def test_masked_rows_equal_the_unmasked_loss_on_the_present_rows(variant):
    from mmkeras.losses import gmc_loss, gmc_terms

    rng = np.random.default_rng(1)
    joint, a, b = (rng.normal(size=(7, 4)).astype("float32") for _ in range(3))
    present = np.array([1, 0, 1, 1, 0, 1, 1], "float32")
    keep = present > 0
    ones = np.ones(7, "float32")
    # rows missing every modality: the whole loss equals the loss of the other rows
    masked = float(gmc_loss(joint, {"a": a, "b": b}, TAU, {"a": present, "b": present}, variant))
    subset = float(gmc_loss(joint[keep], {"a": a[keep], "b": b[keep]}, TAU, None, variant))
    assert masked == pytest.approx(subset, rel=1e-5)
    # only a missing on those rows: term a is the subset's term a, term b is untouched
    terms = gmc_terms(joint, {"a": a, "b": b}, TAU, {"a": present, "b": ones}, variant)
    assert float(terms["a"]) == pytest.approx(REFERENCE[variant](joint[keep], a[keep], TAU), rel=1e-5)
    assert float(terms["b"]) == pytest.approx(REFERENCE[variant](joint, b, TAU), rel=1e-5)
    # a missing row's values do not matter
    a_noise = a.copy()
    a_noise[~keep] = 1e3
    again = gmc_terms(joint, {"a": a_noise, "b": b}, TAU, {"a": present, "b": ones}, variant)
    assert float(again["a"]) == pytest.approx(float(terms["a"]), rel=1e-6)


def test_loss_arguments_are_checked():
    from mmkeras.losses import gmc_loss

    with pytest.raises(ValueError, match="variant must be one of"):
        gmc_loss(JOINT, [MOD_A], variant="simclr")
    with pytest.raises(ValueError, match="mask must name the same modalities"):
        gmc_loss(JOINT, {"a": MOD_A}, mask={"b": np.ones(3, "float32")})
    with pytest.raises(ValueError, match="temperature must be positive"):
        gmc_loss(JOINT, [MOD_A], temperature=0.0)


# -- the objective inside a model ------------------------------------------------------------
def gmc_doc(**objective_params):
    return {
        "name": "gmc-tiny",
        "seed": 0,
        "data": {"dataset": "arrays", "params": {"synthetic": True, "num_samples": 64}, "batch_size": 8},
        "modalities": {
            "a": {"encoder": {"name": "mlp", "params": {"hidden_units": [8]}}},
            "b": {"encoder": {"name": "conv2d", "params": {"filters": [4], "kernel_size": 3}}},
            "c": {
                "encoder": {
                    "name": "conv1d",
                    "params": {"filters": [4, 4], "kernel_sizes": [1, 3], "strides": [1, 2], "batch_norm": True},
                }
            },
        },
        "model": {
            "feature_dim": 8,
            "latent_dim": 6,
            "joint_encoders": "separate",
            "fusion": {"name": "concat"},
            "head": {"name": "mlp", "params": {"hidden_units": [16], "normalize": True}},
            "subset_encoding": "mean",
        },
        "objective": {"name": "gmc", "params": {"temperature": TAU, **objective_params}},
        "train": {"epochs": 1, "jit_compile": False},
    }


SHAPES = {"a": [5], "b": [6, 6, 1], "c": [8, 3]}


def build(**objective_params):
    from mmkeras.builder import build_model
    from mmkeras.recipe import recipe_from_dict

    return build_model(recipe_from_dict(gmc_doc(**objective_params), check_data=False), input_shapes=SHAPES)


def batch(n=6, seed=0, masked=True):
    rng = np.random.default_rng(seed)
    x = {m: rng.normal(size=[n] + s).astype("float32") for m, s in SHAPES.items()}
    masks = {m: np.ones(n, "float32") for m in SHAPES}
    if masked:
        masks["b"][[1, 4]] = 0.0
        masks["c"][2] = 0.0
    x["masks"] = masks
    return x, rng.integers(0, 3, size=n)


def test_objective_in_a_model_equals_gmc_loss_and_numpy_on_the_record():
    from mmkeras.losses import gmc_loss

    model = build()
    x, y = batch()
    record = model(x, training=False)
    loss = float(model.compute_loss(x, y, record))
    direct = float(gmc_loss(record.joint, record.latents, TAU, record.masks))
    assert loss == pytest.approx(direct, rel=1e-6)
    joint = np.asarray(record.joint)
    expected = 0.0
    for m in SHAPES:
        keep = x["masks"][m] > 0
        expected += ref_official_term(joint[keep], np.asarray(record.latents[m])[keep], TAU)
    assert loss == pytest.approx(expected, rel=1e-4)
    assert sorted(model.objective_trackers) == ["gmc_a", "gmc_b", "gmc_c"]
    assert float(model.objective_trackers["gmc_b"].result()) == pytest.approx(
        ref_official_term(joint[x["masks"]["b"] > 0], np.asarray(record.latents["b"])[x["masks"]["b"] > 0], TAU),
        rel=1e-4,
    )


@pytest.mark.parametrize("supervised", [False, True])
def test_gradients_reach_every_encoder_the_fusion_and_the_head(supervised):
    import tensorflow as tf

    model = build(supervised=True, num_classes=3) if supervised else build()
    x, y = batch(masked=False)
    with tf.GradientTape() as tape:
        record = model(x, training=True)
        loss = model.compute_loss(x, y, record)
    variables = model.trainable_variables
    grads = dict(zip(map(id, variables), tape.gradient(loss, variables)))
    parts = {f"{m}_encoder": model.encoders[m] for m in SHAPES} | {
        f"{m}_joint": model.joint_encoders[m] for m in SHAPES
    }
    parts |= {"fusion": model.fusion, "head": model.head, "objective": model.objective}
    for name, layer in parts.items():
        owned = layer.trainable_variables
        assert (len(owned) > 0) == (name != "objective" or supervised), name
        dead = [v.path for v in owned if grads[id(v)] is None or not np.any(np.asarray(grads[id(v)]))]
        assert dead == [], name
    assert sum(len(layer.trainable_variables) for layer in parts.values()) == len(variables)


def test_config_round_trip_and_saved_model_reloads(tmp_path):
    import keras

    from mmkeras.objectives.gmc import GMC

    obj = GMC(temperature=0.3, variant="paper", supervised=True, task="regression", prediction_weight=0.5)
    config = obj.get_config()
    again = GMC.from_config(config)
    assert again.get_config() == config
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))
    assert isinstance(revived, GMC) and revived.get_config() == config

    model = build(supervised=True, num_classes=3, variant="paper")
    x, y = batch()
    before = float(model.compute_loss(x, y, model(x, training=False)))
    model.save(tmp_path / "gmc.keras")
    loaded = keras.saving.load_model(tmp_path / "gmc.keras")
    after = float(loaded.compute_loss(x, y, loaded(x, training=False)))
    assert after == pytest.approx(before, rel=1e-6)
    assert loaded.objective.get_config()["variant"] == "paper"


def _head_numpy(objective, joint):
    head = objective.prediction_head
    w1, b1 = (np.asarray(v) for v in head.proj1.weights)
    w2, b2 = (np.asarray(v) for v in head.proj2.weights)
    w3, b3 = (np.asarray(v) for v in head.out.weights)
    hidden = np.maximum(joint @ w1 + b1, 0.0)
    return (joint + hidden @ w2 + b2) @ w3 + b3


def test_supervised_loss_adds_the_prediction_term():
    model = build(supervised=True, num_classes=3, prediction_weight=0.7)
    x, y = batch()
    record = model(x, training=False)
    result = model.objective(record, y)
    joint = np.asarray(record.joint, "float64")
    logits = _head_numpy(model.objective, joint)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    cross_entropy = float(-np.mean(logp[np.arange(len(y)), y]))
    contrastive = sum(float(result[f"gmc_{m}"]) for m in SHAPES)
    assert float(result["prediction"]) == pytest.approx(cross_entropy, rel=1e-4)
    assert float(result["loss"]) == pytest.approx(contrastive + 0.7 * cross_entropy, rel=1e-5)
    assert sorted(model.objective_trackers) == ["gmc_a", "gmc_b", "gmc_c", "prediction"]


def test_supervised_regression_uses_l1_over_present_rows():
    model = build(supervised=True, task="regression")
    x, _ = batch()
    for m in SHAPES:
        x["masks"][m][5] = 0.0  # row 5 has no modality: no joint, no prediction term
    targets = np.linspace(-1.0, 1.0, 6).astype("float32")
    record = model(x, training=False)
    result = model.objective(record, targets)
    pred = _head_numpy(model.objective, np.asarray(record.joint, "float64"))[:, 0]
    assert float(result["prediction"]) == pytest.approx(float(np.mean(np.abs(pred - targets)[:5])), rel=1e-4)


def test_supervised_head_trains_with_fit():
    from mmkeras.data.base import DataSplit
    from mmkeras.data.pipeline import make_dataset

    model = build(supervised=True, num_classes=3)
    x, y = batch(n=32, seed=3, masked=False)
    data = DataSplit({m: x[m] for m in SHAPES}, y)
    head_before = np.asarray(model.objective.prediction_head.out.kernel).copy()
    history = model.fit(make_dataset(data, sorted(SHAPES), 8, seed=0), epochs=2, verbose=0)
    assert set(history.history) >= {"loss", "gmc_a", "gmc_b", "gmc_c", "prediction"}
    assert np.all(np.isfinite(history.history["loss"]))
    assert not np.allclose(np.asarray(model.objective.prediction_head.out.kernel), head_before)


def test_recipe_errors_name_the_objective_key():
    from mmkeras.builder import build_model
    from mmkeras.errors import RecipeError
    from mmkeras.recipe import recipe_from_dict

    with pytest.raises(RecipeError, match="objective: gmc: num_classes must be at least 2"):
        build_model(recipe_from_dict(gmc_doc(supervised=True, num_classes=1), check_data=False), input_shapes=SHAPES)
    with pytest.raises(RecipeError, match=r"objective\.params\.variant"):
        recipe_from_dict(gmc_doc(variant="simclr"))


# -- tf.distribute: 2 replicas of 4 rows == 1 device with 8 rows ----------------------------
DISTRIBUTED = textwrap.dedent(
    """
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import numpy as np
    from mmkeras.losses import gmc_loss

    rng = np.random.default_rng(0)
    joint, a, b = (rng.normal(size=(8, 5)).astype("float32") for _ in range(3))
    mask = np.array([1, 1, 0, 1, 1, 0, 1, 1], "float32")

    def loss_and_grads(j, x, y, m, variant):
        with tf.GradientTape() as tape:
            tape.watch([j, x, y])
            loss = gmc_loss(j, {"a": x, "b": y}, 0.3, {"a": m, "b": tf.ones_like(m)}, variant)
        return loss, tape.gradient(loss, [j, x, y])

    whole = [tf.constant(t) for t in (joint, a, b, mask)]
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    parts = strategy.experimental_distribute_values_from_function(
        lambda ctx: tuple(t[4 * ctx.replica_id_in_sync_group: 4 * ctx.replica_id_in_sync_group + 4] for t in whole)
    )
    for variant in ("official", "paper"):
        single_loss, single_grads = loss_and_grads(*whole, variant)
        step = tf.function(lambda *p: strategy.run(loss_and_grads, args=(*p, variant)))
        losses, grads = step(*parts)
        total = sum(float(v) for v in strategy.experimental_local_results(losses))
        gathered = [np.concatenate([np.asarray(g) for g in strategy.experimental_local_results(t)]) for t in grads]
        error = max(float(np.max(np.abs(np.asarray(s) - g))) for s, g in zip(single_grads, gathered))
        print(variant, float(single_loss), total, error)
    """
)


def test_two_replicas_give_the_loss_and_gradients_of_one_device(tmp_path):
    script = tmp_path / "distributed_gmc.py"
    script.write_text(DISTRIBUTED)
    out = subprocess.run(
        [sys.executable, str(script)], check=False, capture_output=True, text=True, cwd=ROOT, timeout=240
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = {line.split()[0]: [float(v) for v in line.split()[1:]] for line in out.stdout.splitlines()}
    for variant in ("official", "paper"):
        single, distributed, grad_error = rows[variant]
        assert distributed == pytest.approx(single, rel=1e-5), variant
        assert grad_error < 1e-5, variant
