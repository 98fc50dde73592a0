import keras
import numpy as np
import pytest

from mmkeras.fusions.transformer import TransformerFusion, sincos_2d

SHAPES = {"map": (4, 4, 3), "seq": (5, 6), "vec": (7,)}


def inputs(seed, batch=3):
    rng = np.random.default_rng(seed)
    return {m: rng.normal(size=(batch,) + s).astype("float32") for m, s in SHAPES.items()}


def masks(batch=3, **absent):
    return {m: np.zeros(batch, "float32") if absent.get(m) else np.ones(batch, "float32") for m in SHAPES}


def fusion(**kw):
    keras.utils.set_random_seed(0)
    params = dict(output_dim=8, width=16, num_layers=2, num_heads=4, **kw)
    return TransformerFusion(**params)


@pytest.mark.parametrize("kw", [{}, {"vector_tokens": "per_feature", "modality_embeddings": True, "patch_size": 2}])
def test_masked_modality_has_no_effect_and_present_one_does(kw):
    f = fusion(**kw)
    x = inputs(0)
    changed = {**x, "seq": x["seq"] + 10.0 * np.random.default_rng(1).normal(size=x["seq"].shape).astype("float32")}
    without_seq = masks(seq=True)
    a = np.asarray(f(x, without_seq))
    b = np.asarray(f(changed, without_seq))
    np.testing.assert_array_equal(a, b)
    full = masks()
    assert np.abs(np.asarray(f(x, full)) - np.asarray(f(changed, full))).max() > 1e-3


def test_mask_is_per_row_and_nan_in_a_missing_modality_does_not_leak():
    f = fusion()
    x = inputs(2)
    m = masks()
    m["vec"] = np.array([1.0, 0.0, 1.0], "float32")
    poisoned = {**x, "vec": x["vec"].copy()}
    poisoned["vec"][1] = np.nan
    base, out = np.asarray(f(x, m)), np.asarray(f(poisoned, m))
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[1], base[1])
    # rows 0 and 2 still see their vector
    other = {**x, "vec": x["vec"] + 1.0}
    assert np.abs(np.asarray(f(other, m))[[0, 2]] - base[[0, 2]]).max() > 1e-3


def test_training_and_inference_mask_alike_with_dropout_off():
    f = fusion(dropout=0.0)
    x, m = inputs(3), masks(map=True)
    np.testing.assert_allclose(np.asarray(f(x, m, training=True)), np.asarray(f(x, m, training=False)), rtol=1e-6)


def test_single_modality_equals_a_fusion_built_on_that_modality_alone_up_to_weights():
    # with only "vec" present, the output is that of the CLS token and the vector token alone:
    # changing both other modalities leaves it unchanged, and it differs from no modality at all
    f = fusion()
    x, y = inputs(4), inputs(5)
    y["vec"] = x["vec"]
    only_vec = masks(map=True, seq=True)
    np.testing.assert_array_equal(np.asarray(f(x, only_vec)), np.asarray(f(y, only_vec)))
    nothing = masks(map=True, seq=True, vec=True)
    out_nothing = np.asarray(f(x, nothing))
    np.testing.assert_allclose(out_nothing[0], out_nothing[1], rtol=1e-6)  # the CLS token's own transform
    assert np.abs(np.asarray(f(x, only_vec)) - out_nothing).max() > 1e-3


def test_save_and_reload_gives_same_output(tmp_path):
    f = fusion(vector_tokens="per_feature", modality_embeddings=True)
    x, m = inputs(6), masks(seq=True)
    expected = np.asarray(f(x, m))
    clone = TransformerFusion.from_config(f.get_config())
    clone(x, m)
    clone.set_weights(f.get_weights())
    np.testing.assert_allclose(np.asarray(clone(x, m)), expected, rtol=1e-6)
    assert len(f.get_weights()) == len(clone.get_weights())


def test_sincos_2d_values():
    pe = sincos_2d(2, 3, 8)
    assert pe.shape == (6, 8)
    # position (row 1, col 2) is index 5; the first frequency is 1: sin(1), ..., then the column part
    np.testing.assert_allclose(pe[5, 0], np.sin(1.0), rtol=1e-6)
    np.testing.assert_allclose(pe[5, 2], np.cos(1.0), rtol=1e-6)
    np.testing.assert_allclose(pe[5, 4], np.sin(2.0), rtol=1e-6)
    np.testing.assert_allclose(pe[5, 5], np.sin(2.0 / 100.0), rtol=1e-6)


def test_errors_name_the_problem():
    with pytest.raises(
        ValueError, match="TransformerFusion: vector_tokens: Input should be 'one' or 'per_feature', got 'many'"
    ):
        TransformerFusion(output_dim=4, vector_tokens="many")
    with pytest.raises(ValueError, match="TransformerFusion: dropout: expected a number < 1, got 1.0"):
        TransformerFusion(output_dim=4, dropout=1.0)
    with pytest.raises(ValueError, match=r"width \(10\) must be a multiple of num_heads \(4\)"):
        TransformerFusion(output_dim=4, width=10, num_heads=4)
    f = TransformerFusion(output_dim=4, width=8, num_heads=2, patch_size=3)
    with pytest.raises(ValueError, match="feature map 4x4 is not divisible by patch_size 3"):
        f(inputs(0), masks())
