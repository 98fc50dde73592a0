"""mmkeras.losses: each pure function against a NumPy reference written from its formula, and the
contrastive objectives gathering each tensor once per step."""

import keras
import numpy as np
import pytest
from test_comm import np_ntxent, rec
from test_coordination import np_cka, np_hinge, np_kernel

from mmkeras import losses
from mmkeras.losses import contrastive


def unit(x):
    x = x.astype("float64")
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def np_ce_rows(a, b, scale):
    """-log softmax(s <a_i, b_j>)_i for each row i."""
    s = scale * unit(a) @ unit(b).T
    return np.log(np.exp(s).sum(1)) - np.diag(s)


def draw(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def test_l2_normalize_gives_unit_rows_in_float32():
    x = draw(4, 3).astype("float16")
    out = losses.l2_normalize(x)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    np.testing.assert_allclose(np.asarray(out), unit(x), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(losses.l2_normalize(np.zeros((1, 3), "float32"))), np.zeros((1, 3)))


def test_info_nce_one_way_is_the_mean_cross_entropy_over_present_rows():
    a, b = draw(6, 4, seed=1), draw(6, 4, seed=2)
    mask = np.array([1, 0, 1, 1, 1, 0], "float32")
    keep = mask > 0
    expected = np_ce_rows(a[keep], b[keep], 5.0).mean()
    assert float(losses.info_nce_one_way(a, b, 5.0, mask)) == pytest.approx(expected, rel=1e-5)
    rows = np.asarray(losses.info_nce_rows(a, b, 5.0, mask))
    np.testing.assert_allclose(rows[keep], np_ce_rows(a[keep], b[keep], 5.0), rtol=1e-5)
    assert np.all(rows[~keep] == 0.0)


def test_symmetric_info_nce_takes_gathered_inputs_or_tensors_alike():
    a, b = draw(5, 3, seed=3), draw(5, 3, seed=4)
    expected = 0.5 * (np_ce_rows(a, b, 2.0).mean() + np_ce_rows(b, a, 2.0).mean())
    assert float(losses.info_nce(a, b, 2.0)) == pytest.approx(expected, rel=1e-5)
    ga, gb = losses.gather_normalized(a), losses.gather_normalized(b)
    assert float(losses.info_nce(ga, gb, 2.0)) == pytest.approx(expected, rel=1e-5)


def test_nt_xent_and_its_clip_form():
    a, b = draw(6, 5, seed=5), draw(6, 5, seed=6)
    assert float(losses.nt_xent(a, b, 0.2)) == pytest.approx(np_ntxent(a, b, 0.2), rel=1e-5)
    assert float(losses.nce_loss(a, b, 0.2, form="ntxent")) == pytest.approx(np_ntxent(a, b, 0.2), rel=1e-5)
    clip = 0.5 * (np_ce_rows(a, b, 5.0).mean() + np_ce_rows(b, a, 5.0).mean())
    assert float(losses.nce_loss(a, b, 0.2, form="clip")) == pytest.approx(clip, rel=1e-5)
    with pytest.raises(ValueError, match=r"nce must be one of \['ntxent', 'clip'\], got 'triplet'"):
        losses.nce_loss(a, b, 0.2, form="triplet")


def test_gmc_official_term_is_nt_xent_of_joint_and_modality():
    joint, a, b = draw(6, 4, seed=7), draw(6, 4, seed=8), draw(6, 4, seed=9)
    terms = losses.gmc_terms(joint, {"a": a, "b": b}, 0.3)
    assert float(terms["a"]) == pytest.approx(np_ntxent(joint, a, 0.3), rel=1e-5)
    assert float(terms["b"]) == pytest.approx(np_ntxent(joint, b, 0.3), rel=1e-5)
    assert float(losses.gmc_loss(joint, [a, b], 0.3)) == pytest.approx(
        np_ntxent(joint, a, 0.3) + np_ntxent(joint, b, 0.3), rel=1e-5
    )


@pytest.mark.parametrize("negatives", ["sum", "hardest"])
def test_vse_hinge_matches_numpy_on_present_rows(negatives):
    a, b = draw(7, 3, seed=10), draw(7, 3, seed=11)
    mask = np.array([1, 1, 0, 1, 1, 1, 0], "float32")
    keep = mask > 0
    got = float(losses.vse_hinge(a, b, 0.25, negatives, mask))
    assert got == pytest.approx(np_hinge(a[keep], b[keep], 0.25, negatives), rel=1e-5)
    with pytest.raises(ValueError, match=r"negatives must be one of \['sum', 'hardest'\], got 'all'"):
        losses.vse_hinge(a, b, 0.25, "all")


def test_supervised_contrastive_one_view_by_hand():
    # rows e1, e1, e2 with labels 0, 0, 1 at tau = 0.5: anchors 0 and 1 each have one positive (cos 1)
    # among {positive (1), e2 (0)}: log(e^2 + 1) - 2; anchor 2 has no positive and is left out
    z = np.array([[1, 0], [1, 0], [0, 1]], "float32")
    got = float(losses.supervised_contrastive([z], np.array([0, 0, 1]), 0.5))
    assert got == pytest.approx(np.log(np.e**2 + 1) - 2, rel=1e-6)


def test_cosine_distance_over_present_rows():
    a, b = draw(5, 3, seed=12), draw(5, 3, seed=13)
    mask = np.array([1, 0, 1, 1, 0], "float32")
    keep = mask > 0
    expected = np.mean(1.0 - np.sum(unit(a[keep]) * unit(b[keep]), axis=1))
    assert float(losses.cosine_distance(a, b, mask)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    ("kernel", "params"),
    [("linear", {}), ("polynomial", {"degree": 3, "c": 0.5}), ("rbf", {"gamma": 0.4}), ("exponential", {"gamma": 0.7})],
)
def test_kernel_matrix_and_centred_alignment(kernel, params):
    a, b = draw(6, 3, seed=14), draw(6, 4, seed=15)
    ka, kb = losses.kernel_matrix(a, kernel, **params), losses.kernel_matrix(b, kernel, **params)
    np.testing.assert_allclose(np.asarray(ka), np_kernel(a.astype("float64"), kernel, **params), rtol=1e-4, atol=1e-5)
    assert float(losses.centred_kernel_alignment(ka, kb)) == pytest.approx(
        np_cka(np_kernel(a, kernel, **params), np_kernel(b, kernel, **params)), rel=1e-4
    )


def test_global_batch_on_one_device_is_the_batch():
    x = draw(4, 3, seed=16)
    np.testing.assert_array_equal(np.asarray(losses.global_batch(x)), x)
    g = losses.gather(x)
    assert int(g.offset) == 0 and np.array_equal(np.asarray(g.columns), x)


# -- one gather per distinct tensor per step ----------------------------------------------------
@pytest.fixture
def gathers(monkeypatch):
    """Every tensor the contrastive losses gather, in order."""
    seen = []

    def counting(x):
        seen.append(np.asarray(x))
        return x, 0

    monkeypatch.setattr(contrastive, "cross_replica_gather", counting)
    return seen


def assert_distinct(seen):
    for i in range(len(seen)):
        for j in range(i):
            same = seen[i].shape == seen[j].shape and np.array_equal(seen[i], seen[j])
            assert not same, f"gathers {j} and {i} gathered the same tensor"


def view(seed, mods):
    joint_single = {m: draw(8, 4, seed=seed + i) for i, m in enumerate(mods)}
    masks = {"a": np.ones(8, "float32"), "b": np.array([1, 1, 0, 1, 1, 0, 1, 1], "float32")}
    return rec(joint=draw(8, 4, seed=seed + 10), joint_single=joint_single, masks=masks)


@pytest.mark.parametrize("nce", ["ntxent", "clip"])
def test_comm_with_two_modalities_gathers_each_tensor_once(gathers, nce):
    from mmkeras.objectives.comm import CoMM

    CoMM(nce=nce)(rec(views=(view(20, "ab"), view(40, "ab"))))
    # two joints, four single-modality joints and two masks (before: 15 gathers for ntxent, 20 for clip)
    assert len(gathers) == 8
    assert_distinct(gathers)


@pytest.mark.parametrize("name", ["infonce", "cmc", "hinge", "gmc"])
def test_pairwise_objectives_gather_each_latent_and_mask_once(gathers, name):
    from mmkeras import registry

    z = {m: draw(6, 4, seed=50 + i) for i, m in enumerate("abc")}
    masks = {m: np.where(np.arange(6) == i, 0.0, 1.0).astype("float32") for i, m in enumerate("abc")}
    registry.get("objectives", name)()(rec(latents=z, masks=masks, joint=draw(6, 4, seed=60)))
    assert len(gathers) == 6 + (name == "gmc")  # three latents, three masks (and GMC's joint)
    assert_distinct(gathers)
