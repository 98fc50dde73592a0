import math

import keras
import numpy as np
import pytest

from mmkeras.losses import info_nce
from mmkeras.objectives.infonce import InfoNCE
from mmkeras.record import Record


def np_info_nce(a, b, t):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    logits = a @ b.T / t

    def ce(lg):
        return np.mean([np.log(np.exp(row).sum()) - row[i] for i, row in enumerate(lg)])

    return 0.5 * (ce(logits) + ce(logits.T))


def test_matches_hand_computed_two_by_two():
    # a = [e1, e2], b = [e1, e1]: cosines [[1, 1], [0, 0]] at t = 0.5 -> logits [[2, 2], [0, 0]]
    a = np.array([[1.0, 0.0], [0.0, 1.0]], "float32")
    b = np.array([[1.0, 0.0], [1.0, 0.0]], "float32")
    a_to_b = 0.5 * ((math.log(2 * math.e**2) - 2) + (math.log(2) - 0))
    b_to_a = 0.5 * ((math.log(math.e**2 + 1) - 2) + (math.log(math.e**2 + 1) - 0))
    expected = 0.5 * (a_to_b + b_to_a)
    assert float(info_nce(a, b, scale=1 / 0.5)) == pytest.approx(expected, rel=1e-6)


def test_matches_numpy_reference_on_random_batch():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 5)).astype("float32"), rng.normal(size=(6, 5)).astype("float32")
    assert float(info_nce(a, b, 1 / 0.1)) == pytest.approx(np_info_nce(a, b, 0.1), rel=1e-5)


def test_masked_rows_equal_the_loss_on_present_rows():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(8, 4)).astype("float32"), rng.normal(size=(8, 4)).astype("float32")
    mask = np.array([1, 1, 0, 1, 0, 1, 1, 1], "float32")
    keep = mask > 0
    assert float(info_nce(a, b, 1 / 0.2, mask)) == pytest.approx(np_info_nce(a[keep], b[keep], 0.2), rel=1e-5)


def test_objective_averages_pairs_and_reports_each():
    rng = np.random.default_rng(2)
    z = {m: rng.normal(size=(4, 3)).astype("float32") for m in "abc"}
    masks = {m: np.ones(4, "float32") for m in "abc"}
    out = InfoNCE(temperature=0.3)(Record(features={}, latents=z, joint_feature=None, joint=None, masks=masks))
    pairs = [("a", "b"), ("a", "c"), ("b", "c")]
    for x, y in pairs:
        assert float(out[f"nce_{x}_{y}"]) == pytest.approx(np_info_nce(z[x], z[y], 0.3), rel=1e-5)
    assert float(out["loss"]) == pytest.approx(np.mean([np_info_nce(z[x], z[y], 0.3) for x, y in pairs]), rel=1e-5)


def test_learnable_temperature_starts_at_temperature_and_is_clamped():
    obj = InfoNCE(temperature=0.05, learnable_temperature=True)
    assert float(obj.scale()) == pytest.approx(20.0, rel=1e-5)
    obj.log_scale.assign(obj.log_scale.constraint(10.0))  # what the optimizer does after an update
    assert float(obj.scale()) == pytest.approx(100.0, rel=1e-5)
    assert InfoNCE.from_config(obj.get_config()).learnable_temperature


def test_float16_inputs_give_float32_loss():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(4, 8)).astype("float16"), rng.normal(size=(4, 8)).astype("float16")
    loss = info_nce(a, b, 1 / 0.01)
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    assert float(loss) == pytest.approx(np_info_nce(a.astype("float64"), b.astype("float64"), 0.01), rel=1e-2)


def test_rejects_bad_temperature():
    with pytest.raises(ValueError, match="InfoNCE: temperature: expected a number > 0, got 0"):
        InfoNCE(temperature=0)
