"""Numerical faults (issue 15, part 8): a learned logit scale that froze at its bound, and deep
CCA that failed or summed float32 noise when the batch is smaller than the latent width."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_coordination import np_canonical_correlations
from test_infonce import np_info_nce

from mmkeras.encoders.mlp import MLPEncoder
from mmkeras.fusions.mean import MeanFusion
from mmkeras.losses.cca import top_k_correlation
from mmkeras.model import MultimodalModel
from mmkeras.objectives.clip import CrossCLIP
from mmkeras.objectives.dcca import DeepCCA
from mmkeras.objectives.infonce import ClipLogScale, InfoNCE
from mmkeras.record import Record

LN100 = math.log(100.0)


def record(z, masks=None):
    n = int(next(iter(z.values())).shape[0])
    masks = masks or {m: np.ones(n, "float32") for m in z}
    return Record(features={}, latents=z, joint_feature=None, joint=None, masks=masks)


def value(x):
    return float(keras.ops.convert_to_numpy(x))


# -- learned logit scale --------------------------------------------------------------------
LEARNED = {
    "clip": lambda: CrossCLIP(temperature=0.07),
    "infonce": lambda: InfoNCE(temperature=0.07, learnable_temperature=True),
}


def pairs(prefer: str):
    """Latents whose loss falls as the scale grows (``larger``: b = a) or as it shrinks
    (``smaller``: b = -a, every positive is the least similar column)."""
    a = np.random.default_rng(0).normal(size=(4, 4)).astype("float32")
    return {"a": a, "b": a if prefer == "larger" else -a}


def adam_steps(objective, z, steps: int, learning_rate: float = 0.01) -> list[float]:
    """``steps`` Adam updates of the objective's log scale on the loss of ``z``; t after each."""
    optimizer = keras.optimizers.Adam(learning_rate)
    rec = record(z)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = objective(rec)["loss"]
        optimizer.apply_gradients([(tape.gradient(loss, objective.log_scale), objective.log_scale)])

    trace = []
    for _ in range(steps):
        step()
        trace.append(value(objective.log_scale))
    return trace


def np_adam_on_log_scale(z, t: float, steps: int, learning_rate: float = 0.01) -> float:
    """Keras's Adam on t alone, the gradient a float64 finite difference of the numpy loss at
    s = e^t, and t clipped to [0, ln 100] after each update; t after ``steps``."""
    a, b = z["a"].astype("float64"), z["b"].astype("float64")
    m = v = 0.0
    for step in range(1, steps + 1):
        h = 1e-6
        g = (np_info_nce(a, b, math.exp(-(t + h))) - np_info_nce(a, b, math.exp(-(t - h)))) / (2 * h)
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        t -= learning_rate * math.sqrt(1 - 0.999**step) / (1 - 0.9**step) * m / (math.sqrt(v) + 1e-7)
        t = min(max(t, 0.0), LN100)
    return t


@pytest.mark.parametrize("name", sorted(LEARNED))
def test_an_update_past_the_upper_bound_is_clipped_back(name):
    objective = LEARNED[name]()
    objective.log_scale.assign(LN100 + 0.05)
    # the loss wants a larger scale, so Adam pushes t further up; the constraint brings it back
    [t] = adam_steps(objective, pairs("larger"), 1)
    assert t == pytest.approx(LN100, abs=1e-6)


@pytest.mark.parametrize("name", sorted(LEARNED))
def test_an_update_past_the_lower_bound_is_clipped_back(name):
    objective = LEARNED[name]()
    objective.log_scale.assign(0.005)
    trace = adam_steps(objective, pairs("smaller"), 3)
    assert trace == pytest.approx([0.0, 0.0, 0.0], abs=1e-7)  # infonce used to have no lower bound
    assert value(objective.scale()) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("name", sorted(LEARNED))
def test_the_gradient_at_the_bound_is_the_finite_difference_not_zero(name):
    objective = LEARNED[name]()
    objective.log_scale.assign(LN100)
    z = pairs("smaller")
    with tf.GradientTape() as tape:
        loss = objective(record(z))["loss"]
    grad = value(tape.gradient(loss, objective.log_scale))
    h = 1e-5
    a, b = z["a"].astype("float64"), z["b"].astype("float64")
    expected = (np_info_nce(a, b, math.exp(-(LN100 + h))) - np_info_nce(a, b, math.exp(-(LN100 - h)))) / (2 * h)
    assert expected > 50  # the loss grows with t: a clamp inside the loss made this 0
    assert grad == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("name", sorted(LEARNED))
def test_a_scale_started_past_the_bound_comes_back_down(name):
    # clamped inside the forward pass, the scale stayed at 100 for good; clamped after each update it moves
    objective = LEARNED[name]()
    objective.log_scale.assign(LN100 + 0.05)
    trace = adam_steps(objective, pairs("smaller"), 200)
    assert max(trace) <= LN100 + 1e-6
    expected = np_adam_on_log_scale(pairs("smaller"), LN100 + 0.05, 200)
    assert math.exp(trace[-1]) == pytest.approx(math.exp(expected), rel=1e-3)
    assert math.exp(trace[-1]) < 30


def test_the_loss_at_a_scale_inside_the_bounds_is_unchanged():
    rng = np.random.default_rng(3)
    z = {"a": rng.normal(size=(6, 5)).astype("float32"), "b": rng.normal(size=(6, 5)).astype("float32")}
    for objective in (LEARNED["clip"](), LEARNED["infonce"]()):
        assert value(objective(record(z))["loss"]) == pytest.approx(np_info_nce(z["a"], z["b"], 0.07), rel=1e-5)
        objective.log_scale.assign(math.log(1 / 0.3))
        assert value(objective(record(z))["loss"]) == pytest.approx(np_info_nce(z["a"], z["b"], 0.3), rel=1e-5)


@pytest.mark.parametrize(("temperature", "scale"), [(0.001, 100.0), (0.05, 20.0), (2.0, 1.0)])
def test_a_learnable_temperature_outside_the_bounds_starts_at_the_nearest(temperature, scale):
    assert value(InfoNCE(temperature, learnable_temperature=True).scale()) == pytest.approx(scale, rel=1e-5)
    assert value(CrossCLIP(temperature).scale()) == pytest.approx(scale, rel=1e-5)


def test_the_constraint_clips_and_round_trips():
    constraint = keras.constraints.deserialize(keras.constraints.serialize(ClipLogScale(0.0, LN100)))
    assert isinstance(constraint, ClipLogScale) and constraint.get_config() == {"low": 0.0, "high": LN100}
    clipped = keras.ops.convert_to_numpy(constraint(np.array([-1.0, 2.0, 9.0], "float32")))
    np.testing.assert_allclose(clipped, [0.0, 2.0, LN100], rtol=1e-6)
    with pytest.raises(ValueError, match="low must be at most high, got 1.0 > 0.0"):
        ClipLogScale(1.0, 0.0)


def test_fit_clips_the_scale_after_its_updates():
    keras.utils.set_random_seed(0)
    model = MultimodalModel(
        {m: MLPEncoder(4, hidden_units=[8], name=m) for m in "ab"},
        MeanFusion(),
        objective=InfoNCE(temperature=0.07, learnable_temperature=True),
        input_shapes={"a": [3], "b": [3]},
    )
    model.build()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
    model.objective.log_scale.assign(5.0)
    x = np.random.default_rng(1).normal(size=(8, 3)).astype("float32")
    model.fit({"a": x, "b": x}, np.zeros(8), batch_size=8, epochs=1, verbose=0)
    assert value(model.objective.log_scale) == pytest.approx(LN100, abs=1e-6)


# -- deep CCA with a batch smaller than the width --------------------------------------------
def np_top_k(x, y, k, r1=1e-3, r2=1e-3):
    """The float64 formula: the sum of the k largest singular values of S11^-1/2 S12 S22^-1/2."""
    return float(np.sort(np_canonical_correlations(x.astype("float64"), y.astype("float64"), r1, r2))[::-1][:k].sum())


def narrow_batch(seed, n=8, d=64, scale=1.0):
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=(n, d))
    x = scale * (shared + rng.normal(size=(n, d)))
    y = scale * (shared @ rng.normal(size=(d, d)) / 8 + rng.normal(size=(n, d)))
    return x.astype("float32"), y.astype("float32")


@pytest.mark.parametrize("scale", [1.0, 100.0])
@pytest.mark.parametrize("top_k", [20, 64])
def test_dcca_above_b_minus_1_equals_the_float64_formula(top_k, scale):
    x, y = narrow_batch(0, scale=scale)
    expected = np_top_k(x, y, top_k)
    out = DeepCCA(top_k=top_k)(record({"a": x, "b": y}))
    # float32 whitening gave -7.159 for -7.056 (its null space plus the epsilon floor)
    assert value(out["loss"]) == pytest.approx(-expected, rel=1e-5)
    assert value(out["corr_a_b"]) == pytest.approx(expected, rel=1e-5)


def test_dcca_caps_k_at_the_present_rows_minus_1():
    x, y = narrow_batch(1, n=10, d=16)
    mask = np.array([1, 1, 0, 1, 1, 1, 0, 1, 1, 1], "float32")
    out = DeepCCA(top_k=16)(record({"a": x, "b": y}, {"a": mask, "b": np.ones(10, "float32")}))
    keep = mask > 0
    assert value(out["corr_a_b"]) == pytest.approx(np_top_k(x[keep], y[keep], 7), rel=1e-5)
    assert value(out["corr_a_b"]) == pytest.approx(np_top_k(x[keep], y[keep], 16), rel=1e-5)


def test_dcca_gradient_above_b_minus_1_equals_the_float64_finite_difference():
    x, y = narrow_batch(2)
    h1 = tf.Variable(x)
    with tf.GradientTape() as tape:
        corr = top_k_correlation(h1, y, 64)
    grad = tape.gradient(corr, h1).numpy()
    # 32 entries: every one costs two float64 references; float32 whitening was 110x off here
    entries = [tuple(e) for e in np.random.default_rng(0).integers(0, x.shape, size=(32, 2))]
    h, fd = 1e-3, []
    for i, j in entries:
        up, down = x.astype("float64"), x.astype("float64")
        up[i, j] += h
        down[i, j] -= h
        fd.append((np_top_k(up, y, 64) - np_top_k(down, y, 64)) / (2 * h))
    fd = np.array(fd)
    assert np.abs(fd).max() > 1e-6
    np.testing.assert_allclose([grad[e] for e in entries], fd, rtol=0, atol=5e-3 * np.abs(fd).max())


def test_dcca_trains_at_batch_8_width_64_and_activations_times_100():
    # float32 Cholesky of S11 (eigenvalues 1e-3 .. ~1e5) aborted with "Cholesky: Tensor had NaN values"
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(4)
    x, y = 100 * rng.normal(size=(32, 10)).astype("float32"), 100 * rng.normal(size=(32, 6)).astype("float32")
    model = MultimodalModel(
        {m: MLPEncoder(64, hidden_units=[32], name=m) for m in "ab"},
        MeanFusion(),
        objective=DeepCCA(),
        input_shapes={"a": [10], "b": [6]},
    )
    model.build()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
    latent = keras.ops.convert_to_numpy(model({"a": x[:8], "b": y[:8]})["latents"]["a"])
    assert latent.shape == (8, 64) and latent.std() > 20  # the regime that failed
    history = model.fit({"a": x, "b": y}, np.zeros(32), batch_size=8, epochs=2, verbose=0)
    losses = history.history["loss"]
    assert len(losses) == 2 and np.isfinite(losses).all()
    assert losses[-1] == pytest.approx(-7.0, abs=0.05)  # 7 = B - 1 correlations, each near 1 at this width
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_dcca_without_a_ridge_stays_finite():
    x, y = narrow_batch(5, n=8, d=16, scale=100.0)
    out = DeepCCA(r1=0.0, r2=0.0)(record({"a": x, "b": y}))
    assert value(out["corr_a_b"]) == pytest.approx(7.0, abs=1e-3)  # B - 1 perfect correlations


def test_dcca_float16_latents_give_a_float32_loss():
    x, y = narrow_batch(6, n=8, d=16)
    out = DeepCCA(top_k=16)(record({"a": x.astype("float16"), "b": y.astype("float16")}))
    assert keras.backend.standardize_dtype(out["loss"].dtype) == "float32"
    expected = np_top_k(x.astype("float16"), y.astype("float16"), 16)
    assert value(out["loss"]) == pytest.approx(-expected, rel=1e-5)
