import keras
import numpy as np
import pytest

import mmkeras
from mmkeras.fusions.attention import AttentionFusion
from mmkeras.fusions.gated import GatedFusion
from mmkeras.fusions.low_rank import LowRankFusion
from mmkeras.fusions.tensor import TensorFusion

FUSIONS = {
    "tensor": (TensorFusion, {"output_dim": 5}),
    "low_rank": (LowRankFusion, {"output_dim": 5, "rank": 3}),
    "gated": (GatedFusion, {"output_dim": 5, "activation": "tanh"}),
    "attention": (AttentionFusion, {"output_dim": 5, "num_heads": 2, "token_dim": 6}),
}


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def inputs(seed=0):
    """Three modalities of different sizes; b missing in rows 1 and 4, c in rows 2 and 4."""
    rng = np.random.default_rng(seed)
    features = {"a": rng.normal(size=(6, 3)), "b": rng.normal(size=(6, 4)), "c": rng.normal(size=(6, 2))}
    masks = {"a": np.ones(6), "b": np.array([1, 0, 1, 1, 0, 1]), "c": np.array([1, 1, 0, 1, 0, 1])}
    return {k: v.astype("float32") for k, v in features.items()}, {k: v.astype("float32") for k, v in masks.items()}


@pytest.fixture(params=sorted(FUSIONS))
def fusion(request):
    keras.utils.set_random_seed(0)
    cls, kwargs = FUSIONS[request.param]
    layer = cls(**kwargs)
    layer(*inputs())
    return layer


def test_output_shape(fusion):
    features, masks = inputs()
    assert tuple(fusion(features, masks).shape) == (6, 5)


def test_output_ignores_missing_modalities_features(fusion):
    features, masks = inputs()
    before = numpy(fusion(features, masks))
    changed = {k: v.copy() for k, v in features.items()}
    rng = np.random.default_rng(9)
    for m in ("b", "c"):
        missing = masks[m] == 0
        changed[m][missing] = 100.0 * rng.normal(size=changed[m][missing].shape)
    changed["c"][4, 0] = np.nan  # not even NaN leaks through
    np.testing.assert_array_equal(numpy(fusion(changed, masks)), before)
    changed["b"][0] += 1.0  # a present modality's features do change the output, in that row only
    after = numpy(fusion(changed, masks))
    assert not np.allclose(after[0], before[0])
    np.testing.assert_array_equal(after[1:], before[1:])


def test_config_round_trip(fusion):
    features, masks = inputs()
    clone = type(fusion).from_config(fusion.get_config())
    clone(features, masks)
    clone.set_weights(fusion.get_weights())
    assert clone.get_config() == fusion.get_config()
    np.testing.assert_allclose(numpy(clone(features, masks)), numpy(fusion(features, masks)), rtol=1e-6)


@pytest.mark.parametrize("name", sorted(FUSIONS))
def test_saved_model_reloads_with_identical_outputs(name, tmp_path):
    from mmkeras.encoders.mlp import MLPEncoder
    from mmkeras.model import MultimodalModel

    keras.utils.set_random_seed(1)
    cls, kwargs = FUSIONS[name]
    model = MultimodalModel(  # no head, so the modality features may differ in size
        {"a": MLPEncoder(4, hidden_units=[8], name="a_encoder"), "b": MLPEncoder(3, hidden_units=[], name="b_encoder")},
        cls(**kwargs, name="fusion"),
        input_shapes={"a": [7], "b": [2, 3]},
    )
    model.build()
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = mmkeras.load_model(str(path))
    rng = np.random.default_rng(2)
    x = {"a": rng.normal(size=(5, 7)).astype("float32"), "b": rng.normal(size=(5, 2, 3)).astype("float32")}
    masked = {**x, "masks": {"a": np.ones(5, "float32"), "b": np.array([1, 0, 1, 0, 1], "float32")}}
    for batch, mods in ((x, None), (masked, ["a", "b"]), ({"b": x["b"]}, None)):
        np.testing.assert_array_equal(loaded.encode(batch, mods), model.encode(batch, mods))
    assert not np.allclose(model.encode(x), model.encode(masked, ["a", "b"]))


# -- the formulas, against numpy ----------------------------------------------------------
def test_tensor_fusion_matches_numpy_outer_product():
    features, masks = inputs()
    layer = TensorFusion(5)
    out = numpy(layer(features, masks))
    kernel, bias = layer.get_weights()
    for i in range(6):
        parts = [np.append(features[m][i] * masks[m][i], 1.0) for m in "abc"]
        z = np.einsum("i,j,k->ijk", *parts).reshape(-1)
        np.testing.assert_allclose(out[i], z @ kernel + bias, rtol=1e-5, atol=1e-6)
    assert kernel.shape == (4 * 5 * 3, 5)


def test_low_rank_fusion_matches_numpy_and_equals_its_tensor_fusion():
    features, masks = inputs()
    layer = LowRankFusion(5, rank=3)
    out = numpy(layer(features, masks))
    fa, fb, fc, lam, bias = layer.get_weights()
    for i in range(6):
        v = {m: np.append(features[m][i] * masks[m][i], 1.0) for m in "abc"}
        expected = np.einsum("r,ro,ro,ro->o", lam, v["a"] @ fa, v["b"] @ fb, v["c"] @ fc) + bias
        np.testing.assert_allclose(out[i], expected, rtol=1e-5, atol=1e-6)
        # the same map as tensor fusion with the rank-3 weight tensor sum_r lam_r fa_r (x) fb_r (x) fc_r
        w = np.einsum("r,rio,rjo,rko->ijko", lam, fa, fb, fc)
        np.testing.assert_allclose(
            out[i], np.einsum("i,j,k,ijko->o", v["a"], v["b"], v["c"], w) + bias, rtol=1e-4, atol=1e-5
        )
    # row 4 has only a: b and c contribute the factors of the constant 1, their last rows
    v = np.append(features["a"][4], 1.0)
    np.testing.assert_allclose(
        out[4], np.einsum("r,ro,ro,ro->o", lam, v @ fa, fb[:, -1], fc[:, -1]) + bias, rtol=1e-5, atol=1e-6
    )


def test_gated_fusion_matches_numpy():
    features, masks = inputs()
    layer = GatedFusion(5)
    out = numpy(layer(features, masks))
    w = {layer_w.path.split("/")[-2] + "/" + layer_w.name: numpy(layer_w) for layer_w in layer.weights}
    kept = {m: features[m] * masks[m][:, None] for m in "abc"}
    context = np.concatenate([kept[m] for m in "abc"], axis=1)
    expected = numpy(layer.bias)
    for m in "abc":
        gate = 1 / (1 + np.exp(-(context @ w[f"gate_{m}/kernel"] + w[f"gate_{m}/bias"])))
        expected = expected + (gate * kept[m]) @ w[f"projection_{m}/kernel"]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_tensor_fusion_refuses_a_huge_product():
    features, masks = inputs()
    with pytest.raises(ValueError, match=r"has 60 features \(the product of d_m \+ 1\), more than max_features=50"):
        TensorFusion(5, max_features=50)(features, masks)


def test_attention_needs_token_dim_divisible_by_heads():
    with pytest.raises(ValueError, match=r"token_dim \(6\) must be a multiple of num_heads \(4\)"):
        AttentionFusion(6, num_heads=4)


@pytest.mark.parametrize("name", ["tensor", "low_rank", "gated", "attention"])
def test_fusions_are_registered(name):
    assert mmkeras.registry.get("fusions", name) is FUSIONS[name][0]


def test_mean_fusion_averages_token_features_first():
    from mmkeras.fusions.mean import MeanFusion

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 3, 4)).astype("float32"), rng.normal(size=(2, 5, 4)).astype("float32")
    masks = {"a": np.array([1.0, 1.0], "float32"), "b": np.array([1.0, 0.0], "float32")}
    got = np.asarray(MeanFusion()({"a": a, "b": b}, masks))
    expected = np.stack([(a[0].mean(0) + b[0].mean(0)) / 2, a[1].mean(0)])  # row 1: b is missing
    np.testing.assert_allclose(got, expected, rtol=1e-6)
