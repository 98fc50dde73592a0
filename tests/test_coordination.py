import itertools
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from mmkeras.errors import RecipeError
from mmkeras.evaluators.linear_cca import LinearCCA
from mmkeras.losses import canonical_correlations
from mmkeras.objectives.cosine import CosineCoordination
from mmkeras.objectives.dcca import DeepCCA
from mmkeras.objectives.hinge import VSEHinge
from mmkeras.objectives.kernel import KernelAlignment
from mmkeras.record import Record

ROOT = Path(__file__).resolve().parent.parent


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def record(z, masks=None):
    n = int(next(iter(z.values())).shape[0])
    masks = masks or {m: np.ones(n, "float32") for m in z}
    return Record(features={}, latents=z, joint_feature=None, joint=None, masks=masks)


def value(x):
    return float(keras.ops.convert_to_numpy(x))


# -- cosine -------------------------------------------------------------------------------
def test_cosine_hand_computed():
    # rows: identical (1 - 1 = 0), orthogonal (1 - 0 = 1), opposite (1 + 1 = 2, but masked out)
    a = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], "float32")
    b = np.array([[3.0, 0.0], [5.0, 0.0], [-1.0, -1.0]], "float32")
    masks = {"a": np.array([1, 1, 1], "float32"), "b": np.array([1, 1, 0], "float32")}
    out = CosineCoordination()(record({"a": a, "b": b}, masks))
    assert value(out["loss"]) == pytest.approx(0.5, abs=1e-6)
    masks["b"][2] = 1.0
    assert value(CosineCoordination()(record({"a": a, "b": b}, masks))["loss"]) == pytest.approx(1.0, abs=1e-6)


def test_cosine_averages_every_pair():
    rng = np.random.default_rng(0)
    z = {m: rng.normal(size=(5, 3)).astype("float32") for m in "abc"}
    out = CosineCoordination()(record(z))
    per_pair = {
        (x, y): np.mean(1 - np.sum(unit(z[x]) * unit(z[y]), axis=1)) for x, y in itertools.combinations("abc", 2)
    }
    for (x, y), expected in per_pair.items():
        assert value(out[f"cos_dist_{x}_{y}"]) == pytest.approx(expected, rel=1e-5)
    assert value(out["loss"]) == pytest.approx(np.mean(list(per_pair.values())), rel=1e-5)


# -- kernel alignment ---------------------------------------------------------------------
def np_kernel(x, kernel, degree=2, c=1.0, gamma=1.0):
    x = x.astype("float64")
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    return {
        "linear": x @ x.T,
        "polynomial": (x @ x.T + c) ** degree,
        "exponential": np.exp(-gamma * d),
        "rbf": np.exp(-gamma * d**2),
    }[kernel]


def np_cka(ka, kb):
    n = len(ka)
    h = np.eye(n) - np.ones((n, n)) / n
    ca, cb = h @ ka @ h, h @ kb @ h
    return (ca * cb).sum() / np.sqrt((ca * ca).sum() * (cb * cb).sum())


@pytest.mark.parametrize(
    "kernel,params",
    [("linear", {}), ("polynomial", {"degree": 3, "c": 0.5}), ("exponential", {"gamma": 0.7}), ("rbf", {"gamma": 0.3})],
)
def test_kernel_alignment_matches_numpy_on_present_rows(kernel, params):
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(7, 3)).astype("float32"), rng.normal(size=(7, 4)).astype("float32")
    keep = np.array([1, 1, 0, 1, 1, 0, 1], "float32")
    out = KernelAlignment(kernel, **params)(record({"a": a, "b": b}, {"a": keep, "b": np.ones(7, "float32")}))
    k = keep > 0
    expected = np_cka(np_kernel(a[k], kernel, **params), np_kernel(b[k], kernel, **params))
    assert value(out["cka_a_b"]) == pytest.approx(expected, rel=1e-4)
    assert value(out["loss"]) == pytest.approx(1.0 - expected, rel=1e-4)


def test_kernel_hand_computed_linear_cka_of_a_rotation_is_one():
    # CKA is invariant to rotations and isotropic scaling: a rotated, scaled copy aligns perfectly
    a = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [-1.0, 3.0]], "float32")
    rotation = np.array([[0.0, -1.0], [1.0, 0.0]], "float32")
    out = KernelAlignment("linear")(record({"a": a, "b": 3.0 * a @ rotation}))
    assert value(out["loss"]) == pytest.approx(0.0, abs=1e-6)


def test_kernel_rejects_unknown_kernel():
    with pytest.raises(
        ValueError,
        match=r"KernelAlignment: kernel: Input should be 'linear', 'polynomial', 'exponential' or 'rbf', got 'cosine'",
    ):
        KernelAlignment("cosine")


def test_exponential_kernel_gradient_is_finite_on_the_diagonal():
    import tensorflow as tf

    z = tf.Variable(np.random.default_rng(2).normal(size=(5, 3)).astype("float32"))
    with tf.GradientTape() as tape:
        loss = KernelAlignment("exponential")(record({"a": z, "b": z * 2.0 + 1.0}))["loss"]
    assert np.all(np.isfinite(tape.gradient(loss, z).numpy()))


# -- hinge --------------------------------------------------------------------------------
def np_hinge(a, b, margin, negatives):
    s = unit(a.astype("float64")) @ unit(b.astype("float64")).T
    rows = []
    for i in range(len(s)):
        forward = [max(0.0, margin - s[i, i] + s[i, j]) for j in range(len(s)) if j != i]
        backward = [max(0.0, margin - s[i, i] + s[j, i]) for j in range(len(s)) if j != i]
        pick = max if negatives == "hardest" else sum
        rows.append(pick(forward) + pick(backward))
    return np.mean(rows)


def test_hinge_hand_computed():
    # a = [e1, e2], b = [e1, e1]: s = [[1, 1], [0, 0]], margin 0.5
    # row 0: [0.5 - 1 + 1]_+ + [0.5 - 1 + 0]_+ = 0.5 ; row 1: [0.5 - 0 + 0]_+ + [0.5 - 0 + 1]_+ = 2.0
    a = np.array([[1.0, 0.0], [0.0, 1.0]], "float32")
    b = np.array([[1.0, 0.0], [1.0, 0.0]], "float32")
    assert value(VSEHinge(margin=0.5)(record({"a": a, "b": b}))["loss"]) == pytest.approx(1.25, abs=1e-6)


@pytest.mark.parametrize("negatives", ["sum", "hardest"])
def test_hinge_matches_numpy_and_drops_missing_rows(negatives):
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(6, 4)).astype("float32"), rng.normal(size=(6, 4)).astype("float32")
    keep = np.array([1, 0, 1, 1, 0, 1], "float32")
    out = VSEHinge(margin=0.3, negatives=negatives)(record({"a": a, "b": b}, {"a": keep, "b": np.ones(6, "float32")}))
    k = keep > 0
    assert value(out["loss"]) == pytest.approx(np_hinge(a[k], b[k], 0.3, negatives), rel=1e-5)


def test_hinge_hardest_is_at_most_sum():
    rng = np.random.default_rng(4)
    z = {"a": rng.normal(size=(8, 4)).astype("float32"), "b": rng.normal(size=(8, 4)).astype("float32")}
    hardest = value(VSEHinge(negatives="hardest")(record(z))["loss"])
    total = value(VSEHinge(negatives="sum")(record(z))["loss"])
    assert 0 < hardest < total


# -- deep CCA -----------------------------------------------------------------------------
def np_canonical_correlations(x, y, r1, r2):
    """Independent reference: whiten each view with the inverse square root of its covariance
    (eigendecomposition), then the singular values of the whitened cross-covariance."""
    x = x - x.mean(0)
    y = y - y.mean(0)
    n = len(x) - 1
    sxx = x.T @ x / n + r1 * np.eye(x.shape[1])
    syy = y.T @ y / n + r2 * np.eye(y.shape[1])

    def inv_sqrt(s):
        w, v = np.linalg.eigh(s)
        return v @ np.diag(w**-0.5) @ v.T

    return np.linalg.svd(inv_sqrt(sxx) @ (x.T @ y / n) @ inv_sqrt(syy), compute_uv=False)


def correlated_views(n=200, seed=5):
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=(n, 2))
    x = np.concatenate([shared, rng.normal(size=(n, 3))], 1) @ rng.normal(size=(5, 5)) + 0.5 * rng.normal(size=(n, 5))
    y = np.concatenate([shared, rng.normal(size=(n, 1))], 1) @ rng.normal(size=(3, 3)) + 0.5 * rng.normal(size=(n, 3))
    return x.astype("float32"), y.astype("float32")


def test_dcca_correlations_equal_numpy_canonical_correlations():
    x, y = correlated_views()
    mask = np.ones(len(x), "float32")
    mask[::7] = 0.0
    ours = keras.ops.convert_to_numpy(canonical_correlations(x, y, 1e-3, 2e-3, mask))
    expected = np_canonical_correlations(x[mask > 0].astype("float64"), y[mask > 0].astype("float64"), 1e-3, 2e-3)
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    assert expected[0] > 0.8 and expected[-1] < 0.3  # two shared directions, one not


def test_dcca_loss_is_minus_the_top_k_sum():
    x, y = correlated_views()
    expected = np_canonical_correlations(x.astype("float64"), y.astype("float64"), 1e-3, 1e-3)
    out = DeepCCA(top_k=2)(record({"image": x, "sound": y}))
    assert value(out["loss"]) == pytest.approx(-expected[:2].sum(), abs=1e-4)
    assert value(out["corr_image_sound"]) == pytest.approx(expected[:2].sum(), abs=1e-4)


def test_dcca_needs_two_views_or_a_pair():
    with pytest.raises(RecipeError, match=r"objective.params.pair: dcca is defined for two views and the model has 3"):
        DeepCCA().views(["a", "b", "c"])
    with pytest.raises(RecipeError, match=r"unknown modalities \['d'\]"):
        DeepCCA(pair=["a", "d"]).views(["a", "b", "c"])
    x, y = correlated_views()
    out = DeepCCA(pair=["b", "c"])(record({"a": y, "b": x, "c": y}))
    assert value(out["loss"]) == pytest.approx(-np_canonical_correlations(x, y, 1e-3, 1e-3).sum(), abs=1e-4)


def test_dcca_training_raises_the_correlation():
    from mmkeras.encoders.mlp import MLPEncoder
    from mmkeras.fusions.mean import MeanFusion
    from mmkeras.model import MultimodalModel

    keras.utils.set_random_seed(0)
    x, y = correlated_views(n=512, seed=6)
    model = MultimodalModel(
        {m: MLPEncoder(3, hidden_units=[16], name=m) for m in "ab"},
        MeanFusion(),
        objective=DeepCCA(top_k=2, r1=1e-2, r2=1e-2),
        input_shapes={"a": [5], "b": [3]},
    )
    model.build()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)

    def corr():
        return value(model.objective(model({"a": x, "b": y}))["corr_a_b"])

    before = corr()
    model.fit({"a": x, "b": y}, np.zeros(len(x)), batch_size=128, epochs=15, verbose=0)
    after = corr()
    assert after > before + 0.1, (before, after)


# -- round trips --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "objective",
    [
        CosineCoordination(),
        KernelAlignment("polynomial", degree=3, c=2.0),
        VSEHinge(0.1, "hardest"),
        DeepCCA(["a", "b"], 1, 0.1, 0.2),
    ],
)
def test_objectives_config_round_trip(objective):
    rng = np.random.default_rng(7)
    rec = record({"a": rng.normal(size=(9, 3)).astype("float32"), "b": rng.normal(size=(9, 3)).astype("float32")})
    clone = type(objective).from_config(objective.get_config())
    assert clone.get_config() == objective.get_config()
    assert value(clone(rec)["loss"]) == pytest.approx(value(objective(rec)["loss"]), rel=1e-6)


# -- linear CCA evaluator -----------------------------------------------------------------
class FixedCodes:
    """A stand-in model whose single-modality codes are given arrays."""

    def __init__(self, codes):
        self.codes, self.modalities = codes, sorted(codes)

    def encode(self, inputs, modalities):
        (m,) = modalities
        return self.codes[m][: len(inputs[m])]


def test_linear_cca_recovers_known_correlations(tmp_path):
    from mmkeras.data.base import DataSplit

    rng = np.random.default_rng(8)
    n, rho = 4000, 0.6
    u, v, e = rng.normal(size=(3, n))
    a = np.stack([u, v, rng.normal(size=n)], 1) @ rng.normal(size=(3, 3))  # mixing does not change CCA
    b = np.stack([rho * u + np.sqrt(1 - rho**2) * e, rng.normal(size=n)], 1)
    split = DataSplit({"a": a, "b": b}, masks={"b": (np.arange(n) % 4 != 0).astype("float32")})
    out = LinearCCA(top_k=2, ridge=0.0).evaluate(FixedCodes({"a": a, "b": b}), {"test": split}, tmp_path)
    result = out["pairs"]["a+b"]
    assert result["rows"] == 3000
    assert result["correlations"][0] == pytest.approx(rho, abs=0.03)
    assert result["correlations"][1] == pytest.approx(0.0, abs=0.06)
    assert "| a+b | " in LinearCCA(top_k=2).report(out)


# -- distribution -------------------------------------------------------------------------
DISTRIBUTED = r"""
import os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from mmkeras.objectives.dcca import DeepCCA
from mmkeras.objectives.hinge import VSEHinge
from mmkeras.objectives.kernel import KernelAlignment
from mmkeras.record import Record

rng = np.random.default_rng(0)
xa, xb = rng.normal(size=(16, 5)).astype("float32"), rng.normal(size=(16, 4)).astype("float32")
mask = np.ones(16, "float32"); mask[[3, 12]] = 0.0
init = rng.normal(size=(5, 4)).astype("float32")
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])  # one: a new one would reuse collective keys
for objective in [VSEHinge(0.3, "hardest"), VSEHinge(0.3, "sum"), KernelAlignment("rbf", gamma=0.5), DeepCCA()]:
    def step(xa, xb, m, w):
        with tf.GradientTape() as tape:
            latents, masks = {"a": tf.matmul(xa, w), "b": xb}, {"a": m, "b": tf.ones_like(m)}
            rec = Record(features={}, latents=latents, joint_feature=None, joint=None, masks=masks)
            loss = objective(rec)["loss"]
        return loss, tape.gradient(loss, w)
    w1 = tf.Variable(init)
    single = step(xa, xb, mask, w1)
    with strategy.scope():
        w2 = tf.Variable(init)
    def split(x):
        return strategy.experimental_distribute_values_from_function(
            lambda ctx: x[ctx.replica_id_in_sync_group * 8 :][:8]
        )
    args = (split(xa), split(xb), split(mask), w2)
    per = tf.function(lambda: strategy.run(step, args=args))()  # traced once, as Keras's fit does
    loss = strategy.reduce("SUM", per[0], axis=None)
    grad = strategy.reduce("SUM", per[1], axis=None)
    print(type(objective).__name__, float(single[0]), float(loss))
    np.testing.assert_allclose(float(loss), float(single[0]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad.numpy(), single[1].numpy(), rtol=1e-4, atol=1e-5)
print("OK")
"""


def test_two_replicas_give_the_single_device_loss_and_gradient():
    out = subprocess.run(
        [sys.executable, "-c", DISTRIBUTED], check=False, capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert out.returncode == 0 and out.stdout.strip().endswith("OK"), (out.stdout + out.stderr)[-3000:]


# -- recipes ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["cosine_mhd", "kernel_mhd", "hinge_mhd", "dcca_mhd"])
def test_recipe_validates(name):
    import mmkeras

    recipe = mmkeras.load_recipe(ROOT / "recipes" / f"{name}.yaml")
    assert recipe.objective.name == name.split("_")[0]
