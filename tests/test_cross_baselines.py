import math

import numpy as np
import pytest
from test_comm import np_clip, np_ntxent, rec

from mmkeras.objectives.clip import CrossCLIP
from mmkeras.objectives.cmc import CMC
from mmkeras.objectives.cross_self import CrossSelf
from mmkeras.objectives.supcon import SupCon


def latents(rng, n, d, mods):
    return {m: rng.normal(size=(n, d)).astype("float32") for m in mods}


def ones(n, mods):
    return {m: np.ones(n, "float32") for m in mods}


def np_supcon(z, y, t):
    """Khosla et al. L^sup_out over the rows of z (all views stacked), anchors with a positive."""
    z = z.astype("float64") / np.linalg.norm(z, axis=1, keepdims=True)
    s = z @ z.T / t
    losses = []
    for k in range(len(z)):
        others = [j for j in range(len(z)) if j != k]
        positives = [j for j in others if y[j] == y[k]]
        if not positives:
            continue
        log_denominator = np.log(np.sum(np.exp(s[k, others])))
        losses.append(-np.mean([s[k, p] - log_denominator for p in positives]))
    return float(np.mean(losses))


def test_clip_hand_computed_and_scale_clamped_to_0_ln100():
    # a = b = [e1, e2] with s = 1/0.5 = 2: each direction's CE is log(e^2 + 1) - 2
    e = np.eye(2, dtype="float32")
    obj = CrossCLIP(temperature=0.5)
    out = obj(rec(latents={"a": e, "b": e}, masks=ones(2, "ab")))
    assert float(out["loss"]) == pytest.approx(math.log(math.e**2 + 1) - 2, rel=1e-6)
    assert float(out["nce_a_b"]) == pytest.approx(float(out["loss"]), rel=1e-6)
    obj.log_scale.assign(obj.log_scale.constraint(7.0))  # what the optimizer does after an update
    assert float(obj.scale()) == pytest.approx(100.0, rel=1e-5)
    obj.log_scale.assign(obj.log_scale.constraint(-3.0))
    assert float(obj.scale()) == pytest.approx(1.0, rel=1e-6)
    assert CrossCLIP(temperature=0.1, learnable_temperature=False).scale() == pytest.approx(10.0)


def test_cross_self_matches_numpy_with_a_missing_row():
    rng = np.random.default_rng(0)
    v1, v2 = latents(rng, 6, 4, "ab"), latents(rng, 6, 4, "ab")
    masks = {"a": np.ones(6, "float32"), "b": np.array([1, 1, 1, 0, 1, 1], "float32")}
    out = CrossSelf(temperature=0.2, ssl_scale=0.5)(
        rec(views=(rec(latents=v1, masks=masks), rec(latents=v2, masks=masks)))
    )
    keep = masks["b"] > 0
    cross = 0.5 * (np_ntxent(v1["a"][keep], v1["b"][keep], 0.2) + np_ntxent(v2["a"][keep], v2["b"][keep], 0.2))
    own_a, own_b = np_ntxent(v1["a"], v2["a"], 0.2), np_ntxent(v1["b"][keep], v2["b"][keep], 0.2)
    assert float(out["cross_a_b"]) == pytest.approx(cross, rel=1e-5)
    assert float(out["self_a"]) == pytest.approx(own_a, rel=1e-5)
    assert float(out["self_b"]) == pytest.approx(own_b, rel=1e-5)
    assert float(out["loss"]) == pytest.approx(cross + 0.5 * 0.5 * (own_a + own_b), rel=1e-5)


@pytest.mark.parametrize("nce", ["ntxent", "clip"])
def test_cmc_is_the_mean_over_pairs(nce):
    rng = np.random.default_rng(1)
    z = latents(rng, 5, 3, "abc")
    out = CMC(temperature=0.3, nce=nce)(rec(latents=z, masks=ones(5, "abc")))
    f = np_ntxent if nce == "ntxent" else np_clip
    pairs = [("a", "b"), ("a", "c"), ("b", "c")]
    for x, y in pairs:
        assert float(out[f"cmc_{x}_{y}"]) == pytest.approx(f(z[x], z[y], 0.3), rel=1e-5)
    assert float(out["loss"]) == pytest.approx(np.mean([f(z[x], z[y], 0.3) for x, y in pairs]), rel=1e-5)


def test_supcon_hand_computed_one_view():
    # rows e1, e1, e2 with labels 0, 0, 1 at t = 1: anchor 0 has positive 1 (cos 1) among {1 (1), 2 (0)}:
    # log(e + 1) - 1, and so has anchor 1; anchor 2 has no positive and is left out
    z = np.array([[1, 0], [1, 0], [0, 1]], "float32")
    out = SupCon(temperature=1.0, views=1)(rec(joint=z, masks={"a": np.ones(3, "float32")}), np.array([0, 0, 1]))
    assert float(out["loss"]) == pytest.approx(math.log(math.e + 1) - 1, rel=1e-6)


def test_supcon_two_views_matches_numpy_and_drops_missing_rows():
    rng = np.random.default_rng(2)
    y = np.array([0, 1, 0, 2, 1, 1, 2, 0])
    masks = {"a": np.array([1, 1, 1, 1, 0, 1, 1, 1], "float32"), "b": np.array([1, 1, 1, 1, 0, 0, 1, 1], "float32")}
    z1, z2 = rng.normal(size=(8, 5)).astype("float32"), rng.normal(size=(8, 5)).astype("float32")
    obj = SupCon(temperature=0.1)
    assert obj.num_views == 2
    out = obj(rec(views=(rec(joint=z1, masks=masks), rec(joint=z2, masks=masks))), y)
    keep = np.array([1, 1, 1, 1, 0, 1, 1, 1], bool)  # row 4 has no modality
    expected = np_supcon(np.concatenate([z1[keep], z2[keep]]), np.concatenate([y[keep], y[keep]]), 0.1)
    assert float(out["loss"]) == pytest.approx(expected, rel=1e-5)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="supcon needs labels"):
        SupCon(views=1)(rec(joint=np.ones((2, 2), "float32"), masks={"a": np.ones(2, "float32")}))
    with pytest.raises(ValueError, match="cross_self needs the records of two augmented views"):
        CrossSelf()(rec())
    with pytest.raises(ValueError, match="cmc needs at least two modalities"):
        CMC()(rec(latents={"a": np.ones((2, 2), "float32")}, masks=ones(2, "a")))
    with pytest.raises(ValueError, match=r"CMC: nce: Input should be 'ntxent' or 'clip', got 'hinge'"):
        CMC(nce="hinge")


def test_configs_round_trip():
    for obj in (CrossCLIP(temperature=0.05), CrossSelf(ssl_scale=0.3, nce="clip"), CMC(nce="clip"), SupCon(views=3)):
        clone = type(obj).from_config(obj.get_config())
        assert {k: v for k, v in clone.get_config().items() if k != "name"} == {
            k: v for k, v in obj.get_config().items() if k != "name"
        }
    assert SupCon.from_config(SupCon(views=3).get_config()).num_views == 3
