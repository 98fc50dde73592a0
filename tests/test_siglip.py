"""The SigLIP loss and objective: against a numpy reference written from the paper's formula (loss
and gradients), chunked against unchunked under 2 replicas, its learned scale and bias trained and
saved, the JAX backend, and its recipe."""

import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT, run_cli, synthetic_recipe

import mmkeras
from mmkeras.data.pipeline import make_dataset
from mmkeras.errors import RecipeError
from mmkeras.losses import siglip
from mmkeras.losses.contrastive import Gathered, gather_normalized
from mmkeras.objectives.siglip import SigLIP
from mmkeras.record import Record


def np_siglip(x, y, t, b, mask=None):
    """-1/|B| sum_i sum_j log sigmoid(z_ij (t <x_i, y_j> + b)) over the present rows, in float64."""
    x = np.asarray(x, "float64")
    y = np.asarray(y, "float64")
    keep = np.ones(len(x), bool) if mask is None else np.asarray(mask) > 0
    x = x[keep] / np.linalg.norm(x[keep], axis=1, keepdims=True)
    y = y[keep] / np.linalg.norm(y[keep], axis=1, keepdims=True)
    logits = t * x @ y.T + b
    z = 2.0 * np.eye(len(x)) - 1.0
    return np.sum(np.logaddexp(0.0, -z * logits)) / max(len(x), 1)


def np_objective(z, masks, t, b):
    pairs = [(p, q) for i, p in enumerate(sorted(z)) for q in sorted(z)[i + 1 :]]
    terms = {f"siglip_{p}_{q}": np_siglip(z[p], z[q], t, b, masks[p] * masks[q]) for p, q in pairs}
    return terms, np.mean(list(terms.values()))


def record(z, masks):
    return Record(features={}, latents=z, joint_feature=None, joint=None, masks=masks)


def tiny(modalities, seed=0):
    rng = np.random.default_rng(seed)
    z = {m: rng.normal(size=(4, 3)).astype("float32") for m in modalities}
    masks = {m: np.ones(4, "float32") for m in modalities}
    masks[modalities[0]][1] = 0.0  # row 1 lacks the first modality, row 3 the last
    masks[modalities[-1]][3] = 0.0
    return z, masks


def test_hand_computed_two_by_two():
    # x = [e1, e2], y = [e1, e1], t = 2, b = -1: logits [[1, 1], [-1, -1]], z = [[+1, -1], [-1, +1]]
    x = np.array([[1.0, 0.0], [0.0, 1.0]], "float32")
    y = np.array([[1.0, 0.0], [1.0, 0.0]], "float32")
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731 - softplus(v) = -log sigmoid(-v)
    expected = (sp(-1) + sp(1) + sp(-1) + sp(1)) / 2  # divided by |B| = 2, not by |B|^2
    assert float(siglip(x, y, 2.0, -1.0)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("modalities", [("a", "b"), ("a", "b", "c")])
def test_objective_matches_numpy_reference_with_masks(modalities):
    z, masks = tiny(modalities)
    objective = SigLIP(init_temperature=3.0, init_bias=-2.0)
    out = objective(record(z, masks))
    terms, loss = np_objective(z, masks, 3.0, -2.0)
    assert sorted(out) == sorted([*terms, "loss"])
    for name, value in terms.items():
        assert float(out[name]) == pytest.approx(value, rel=1e-5)
    assert float(out["loss"]) == pytest.approx(loss, rel=1e-5)


@pytest.mark.parametrize("modalities", [("a", "b"), ("a", "b", "c")])
def test_gradients_match_finite_differences(modalities):
    z, masks = tiny(modalities, seed=1)
    t, b = 3.0, -2.0
    objective = SigLIP(init_temperature=t, init_bias=b)
    variables = {m: tf.Variable(v) for m, v in z.items()}
    with tf.GradientTape() as tape:
        loss = objective(record(variables, masks))["loss"]
    wrt = [*variables.values(), objective.log_temperature, objective.bias]
    grads = [np.asarray(g) for g in tape.gradient(loss, wrt)]

    def reference(z64, log_t, bias):
        return np_objective(z64, masks, math.exp(log_t), bias)[1]

    eps, z64 = 1e-6, {m: v.astype("float64") for m, v in z.items()}
    for m, grad in zip(variables, grads):
        numeric = np.zeros_like(z64[m])
        for idx in np.ndindex(*z64[m].shape):
            up, down = dict(z64), dict(z64)
            up[m], down[m] = z64[m].copy(), z64[m].copy()
            up[m][idx] += eps
            down[m][idx] -= eps
            numeric[idx] = (reference(up, math.log(t), b) - reference(down, math.log(t), b)) / (2 * eps)
        np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=1e-5)
    assert np.all(grads[0][1] == 0.0)  # a row missing the first modality gets no gradient there
    d_log_t = (reference(z64, math.log(t) + eps, b) - reference(z64, math.log(t) - eps, b)) / (2 * eps)
    d_bias = (reference(z64, math.log(t), b + eps) - reference(z64, math.log(t), b - eps)) / (2 * eps)
    assert float(grads[-2]) == pytest.approx(d_log_t, rel=1e-4)
    assert float(grads[-1]) == pytest.approx(d_bias, rel=1e-4)


def test_chunks_give_the_loss_and_gradient_of_one_block():
    # a replica's view by hand: local rows 4..7 of a global batch of 12, its columns in 3 blocks
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(12, 5)).astype("float32"), rng.normal(size=(12, 5)).astype("float32")
    mask = np.array([1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 0], "float32")
    x_var = tf.Variable(x)
    results = []
    for chunks in (1, 3):
        with tf.GradientTape() as tape:
            gx, gy = gather_normalized(x_var), gather_normalized(tf.constant(y))
            rows = Gathered(gx.columns[4:8], gx.columns, 4)
            cols = Gathered(gy.columns[4:8], gy.columns, 4)
            m = Gathered(tf.constant(mask[4:8]), tf.constant(mask), 4)
            loss = siglip(rows, cols, 10.0, -10.0, m, chunks)
        results.append((float(loss), np.asarray(tape.gradient(loss, x_var))))
    (one, g_one), (three, g_three) = results
    assert three == pytest.approx(one, rel=1e-6)
    np.testing.assert_allclose(g_three, g_one, rtol=1e-5, atol=1e-8)
    # the rows' sums over the 9 present columns, over their own 3 present rows (outside a replica
    # context the count is not summed over replicas)
    keep = mask > 0
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    yn = y / np.linalg.norm(y, axis=1, keepdims=True)
    logits = 10.0 * xn @ yn.T - 10.0
    z = 2.0 * np.eye(12) - 1.0
    per_pair = np.logaddexp(0.0, -z * logits) * keep[None, :]
    assert one == pytest.approx(np.sum(per_pair[4:8][keep[4:8]]) / keep[4:8].sum(), rel=1e-5)


def test_chunks_that_do_not_divide_the_columns_are_refused():
    z = np.eye(6, 4, dtype="float32")
    with pytest.raises(ValueError, match="chunks must divide the 6 columns into equal blocks, got 4"):
        siglip(z, z, 10.0, -10.0, None, 4)


def test_float16_latents_give_float32_loss():
    z, masks = tiny(("a", "b"), seed=3)
    half = {m: v.astype("float16") for m, v in z.items()}
    out = SigLIP()(record(half, masks))
    assert keras.backend.standardize_dtype(out["loss"].dtype) == "float32"
    assert float(out["loss"]) == pytest.approx(np_objective(z, masks, 10.0, -10.0)[1], rel=1e-2)


def test_pairs_choose_the_terms():
    z, masks = tiny(("a", "b", "c"), seed=4)
    out = SigLIP(pairs=[["c", "a"]])(record(z, masks))
    assert sorted(out) == ["loss", "siglip_a_c"]
    assert float(out["loss"]) == pytest.approx(np_siglip(z["a"], z["c"], 10.0, -10.0, masks["a"] * masks["c"]), 1e-5)
    with pytest.raises(RecipeError, match=r"objective.params.pairs: unknown modalities \['d'\]; the model has"):
        SigLIP(pairs=[["a", "d"]])(record(z, masks))
    with pytest.raises(ValueError, match=r"pairs: each pair must name two different modalities, got \[.a., .a.\]"):
        SigLIP(pairs=[["a", "a"]])
    with pytest.raises(ValueError, match="SigLIP: init_temperature: expected a number > 0, got 0"):
        SigLIP(init_temperature=0)


def test_learnable_false_keeps_scale_and_bias():
    objective = SigLIP(init_temperature=5.0, init_bias=-1.0, learnable=False)
    assert objective.trainable_weights == []
    assert float(objective.temperature()) == pytest.approx(5.0, rel=1e-6)
    assert SigLIP.from_config(objective.get_config()).learnable is False


def test_scale_and_bias_are_trained_and_saved(tmp_path):
    recipe = mmkeras.recipe_from_dict(
        synthetic_recipe(
            objective={"name": "siglip", "params": {"init_temperature": 10.0, "init_bias": -10.0}},
            data__params={"synthetic": True, "num_samples": 32},
            data__batch_size=16,
            evaluate=[],
        )
    )
    train = mmkeras.load_dataset("arrays", synthetic=True, num_samples=32).load("train")
    model = mmkeras.build_model(recipe)
    model.fit(make_dataset(train, ["a", "b"], 16, shuffle=False).take(1), epochs=1, verbose=0)
    objective = model.objective
    assert float(objective.log_temperature) != pytest.approx(math.log(10.0), abs=1e-6)
    assert float(objective.bias) > -10.0  # the positives pull b up from -10 on the first step
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = mmkeras.load_model(str(path))
    x = {m: train.inputs[m][:8] for m in ("a", "b")}
    for name in ("log_temperature", "bias"):
        assert float(getattr(loaded.objective, name)) == float(getattr(objective, name))
    before, after = model(x), loaded(x)
    np.testing.assert_allclose(np.asarray(after.latents["a"]), np.asarray(before.latents["a"]), rtol=1e-6)
    assert float(loaded.objective(after)["loss"]) == pytest.approx(float(objective(before)["loss"]), rel=1e-6)


REPLICAS = r"""
import json, sys
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from mmkeras.objectives.siglip import SigLIP
from mmkeras.record import Record

rng = np.random.default_rng(0)
b, d = 4, 3
z = {m: rng.normal(size=(2 * b, d)).astype("float32") for m in ("a", "b")}
masks = {"a": np.array([1, 1, 0, 1, 1, 1, 1, 0], "float32"), "b": np.array([1, 1, 1, 1, 0, 1, 1, 1], "float32")}

def loss_and_grads(objective, z, masks):
    z = {m: tf.convert_to_tensor(v) for m, v in z.items()}
    with tf.GradientTape() as tape:
        tape.watch(list(z.values()))
        loss = objective(Record({}, z, None, None, masks))["loss"]
    return [loss, *tape.gradient(loss, [z["a"], z["b"], *objective.trainable_weights])]

out = {"one": [np.asarray(v).tolist() for v in loss_and_grads(SigLIP(init_bias=-2.0), z, masks)]}
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
def local(values):  # replica r gets rows r*b .. (r+1)*b - 1
    def part(ctx):
        r = ctx.replica_id_in_sync_group
        return {m: v[r * b:(r + 1) * b] for m, v in values.items()}
    return strategy.experimental_distribute_values_from_function(part)
for chunked in (True, False):
    with strategy.scope():
        objective = SigLIP(init_bias=-2.0, chunked=chunked)
    per_replica = lambda z, masks: loss_and_grads(objective, z, masks)
    step = tf.function(lambda z, masks: strategy.run(per_replica, args=(z, masks)))
    parts = [strategy.experimental_local_results(v) for v in step(local(z), local(masks))]
    # summed over replicas: the loss and the scale's and bias's gradients; the rows' gradients concatenate
    out["chunked" if chunked else "unchunked"] = [
        float(sum(parts[0])), np.concatenate(parts[1]).tolist(), np.concatenate(parts[2]).tolist(),
        float(sum(parts[3])), float(sum(parts[4]))]
print(json.dumps(out))
"""


def test_two_replicas_chunked_and_unchunked_equal_one_device():
    proc = subprocess.run([sys.executable, "-c", REPLICAS], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # loss, gradients w.r.t. each modality's latents, the log scale and the bias
    for key, reference in (("chunked", "one"), ("unchunked", "one"), ("chunked", "unchunked")):
        for got, want in zip(out[key], out[reference]):
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6, err_msg=key)
    assert np.abs(np.asarray(out["one"][1])).max() > 0.1  # the gradients compared are not all zero


JAX = r"""
import json
import jax
import numpy as np
import keras
import mmkeras
from mmkeras.data.pipeline import make_dataset
from mmkeras.losses import siglip

assert keras.backend.backend() == "jax"
recipe = mmkeras.recipe_from_dict({
    "name": "jax", "seed": 0,
    "data": {"dataset": "arrays", "params": {"synthetic": True, "num_samples": 32}, "batch_size": 16},
    "modalities": {"a": {"encoder": {"name": "mlp", "params": {"hidden_units": [8]}}},
                   "b": {"encoder": {"name": "mlp", "params": {"hidden_units": [8]}}}},
    "model": {"feature_dim": 6, "latent_dim": 4, "head": {"name": "mlp", "params": {"normalize": True}}},
    "objective": {"name": "siglip"},
    "train": {"optimizer": {"name": "sgd", "learning_rate": 0.1}, "jit_compile": True},
})
train = mmkeras.load_dataset("arrays", synthetic=True, num_samples=32).load("train")
model = mmkeras.build_model(recipe, {"a": [16], "b": [8, 8, 1]})
history = model.fit(make_dataset(train, ["a", "b"], 16, shuffle=False), epochs=1, steps_per_epoch=1, verbose=0)
x = np.array([[1.0, 0.0], [0.0, 1.0]], "float32"); y = np.array([[1.0, 0.0], [1.0, 0.0]], "float32")
u = np.random.default_rng(0).normal(size=(6, 3)).astype("float32")
grad = {c: np.asarray(jax.grad(lambda v: siglip(v, u[::-1], 3.0, -2.0, None, c))(u)) for c in (1, 3)}
print(json.dumps({"loss": history.history["loss"][0], "bias": float(model.objective.bias),
                  "two_by_two": float(siglip(x, y, 2.0, -1.0, None, 2)),
                  "grad_gap": float(np.abs(grad[3] - grad[1]).max()), "grad_size": float(np.abs(grad[1]).max())}))
"""


def test_fits_under_jax():
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", JAX], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert math.isfinite(out["loss"]) and out["loss"] > 0
    assert out["bias"] != -10.0  # trained
    # the two-by-two example of test_hand_computed_two_by_two, its columns in 2 blocks
    assert out["two_by_two"] == pytest.approx(math.log1p(math.exp(-1)) + math.log1p(math.exp(1)), rel=1e-6)
    assert out["grad_gap"] < 1e-6 < 0.01 < out["grad_size"]  # 3 recomputed blocks: the gradient of one


def test_recipe_validates():
    out = run_cli("validate", ROOT / "recipes" / "siglip_mhd.yaml")
    assert out.returncode == 0, out.stderr
    assert "siglip-mhd" in out.stdout and "-> siglip" in out.stdout
    bad = run_cli("validate", ROOT / "recipes" / "siglip_mhd.yaml", "--set", "objective.params.pairs=[[image, sond]]")
    assert bad.returncode == 2
    assert "objective.params.pairs: siglip: 'sond' is not a modality of this recipe" in bad.stderr
