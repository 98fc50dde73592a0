"""The shared building blocks (mmkeras.layers): the MLP stack and the transformer block against
numpy references written from their formulas, their configs, and a saved/reloaded output."""

import math

import keras
import numpy as np
import pytest

from mmkeras.layers import MLP, TransformerBlock


def _np(v):
    return np.asarray(keras.ops.convert_to_numpy(v), "float64")


def _gelu(x):
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def _layer_norm(x, norm):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + norm.epsilon) * _np(norm.gamma) + _np(norm.beta)


def _save_and_reload(model, tmp_path):
    model.save(tmp_path / "model.keras")
    return keras.saving.load_model(tmp_path / "model.keras")


def test_mlp_is_dense_activation_layers_then_a_linear_output():
    x = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    mlp = MLP([4, 6], output_dim=2, activation="tanh")
    y = _np(mlp(x))
    h = np.tanh(x @ _np(mlp.hidden[0].kernel) + _np(mlp.hidden[0].bias))
    h = np.tanh(h @ _np(mlp.hidden[1].kernel) + _np(mlp.hidden[1].bias))
    np.testing.assert_allclose(y, h @ _np(mlp.out.kernel) + _np(mlp.out.bias), rtol=1e-5, atol=1e-6)
    assert mlp.compute_output_shape((None, 3)) == (None, 2)


def test_mlp_with_batch_norm_normalises_before_the_activation_and_has_no_hidden_bias():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 3)).astype("float32")
    mlp = MLP([4], output_dim=2, batch_norm=True, epsilon=1e-3)
    mlp.build((None, 3))
    bn = mlp.norms[0]
    bn.moving_mean.assign(rng.normal(size=4).astype("float32"))
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, size=4).astype("float32"))
    bn.gamma.assign(rng.normal(size=4).astype("float32"))
    bn.beta.assign(rng.normal(size=4).astype("float32"))
    assert [w.path.split("/")[-1] for w in mlp.hidden[0].weights] == ["kernel"]
    h = x @ _np(mlp.hidden[0].kernel)
    h = (h - _np(bn.moving_mean)) / np.sqrt(_np(bn.moving_variance) + 1e-3) * _np(bn.gamma) + _np(bn.beta)
    expected = np.maximum(h, 0.0) @ _np(mlp.out.kernel) + _np(mlp.out.bias)
    np.testing.assert_allclose(_np(mlp(x, training=False)), expected, rtol=1e-5, atol=1e-6)


def test_mlp_dropout_acts_in_training_only_and_no_output_layer_ends_at_the_last_hidden():
    x = np.ones((64, 8), "float32")
    mlp = MLP([32], activation="relu", dropout=0.5)
    assert mlp.out is None and mlp.compute_output_shape((None, 8)) == (None, 32)
    inference = _np(mlp(x, training=False))
    np.testing.assert_allclose(inference, np.maximum(x @ _np(mlp.hidden[0].kernel), 0.0), rtol=1e-5, atol=1e-6)
    trained = _np(mlp(x, training=True))
    dropped = (trained == 0) & (inference != 0)
    assert 0.35 < dropped.sum() / (inference != 0).sum() < 0.65


def test_mlp_config_round_trips_and_refuses_bad_parameters():
    mlp = MLP((16, 8), output_dim=4, activation="swish", output_activation="sigmoid", dropout=0.1)
    config = mlp.get_config()
    assert config["hidden_units"] == [16, 8] and config["output_activation"] == "sigmoid"
    assert MLP.from_config(config).get_config() == config
    with pytest.raises(ValueError, match="MLP: dropout: expected a number < 1, got 1.0"):
        MLP([4], dropout=1.0)
    with pytest.raises(ValueError, match=r"MLP: hidden_units\[1\]: expected a number > 0, got 0"):
        MLP([4, 0])


def test_mlp_saved_and_reloaded_gives_the_same_output(tmp_path):
    x = np.random.default_rng(2).normal(size=(4, 5)).astype("float32")
    inputs = keras.Input((5,))
    model = keras.Model(inputs, MLP([8], output_dim=3, batch_norm=True, name="mlp")(inputs))
    model(x, training=True)  # moves the batch statistics away from their initial values
    reloaded = _save_and_reload(model, tmp_path)
    assert isinstance(reloaded.get_layer("mlp"), MLP)
    np.testing.assert_allclose(_np(reloaded(x)), _np(model(x)), rtol=1e-6, atol=1e-6)


def _block_numpy(block, x, mask):
    """x + MHA(LN x), then + MLP(LN x), from the block's weights (dropout 0)."""
    att = block.attention
    heads, width = block.num_heads, block.width
    h = _layer_norm(x, block.norm1)

    def project(dense):
        return np.einsum("bld,dhk->blhk", h, _np(dense.kernel)) + _np(dense.bias)

    q, k, v = project(att.query_dense), project(att.key_dense), project(att.value_dense)
    scores = np.einsum("bqhk,bshk->bhqs", q, k) / math.sqrt(width // heads)
    scores = np.where(mask[:, None], scores, -1e9)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    mixed = np.einsum("bhqs,bshk->bqhk", weights, v)
    x = x + np.einsum("bqhk,hkd->bqd", mixed, _np(att.output_dense.kernel)) + _np(att.output_dense.bias)
    m = _gelu(_layer_norm(x, block.norm2) @ _np(block.mlp_in.kernel) + _np(block.mlp_in.bias))
    return x + m @ _np(block.mlp_out.kernel) + _np(block.mlp_out.bias)


def test_transformer_block_matches_its_formula_under_a_key_mask():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 5, 8)).astype("float32")
    keys = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    mask = np.repeat(keys[:, None, :], 5, axis=1)
    block = TransformerBlock(8, 2, mlp_ratio=1.5)
    y = _np(block(x, mask))
    assert y.shape == (2, 5, 8) and block.mlp_in.units == 12
    np.testing.assert_allclose(y, _block_numpy(block, x.astype("float64"), mask), rtol=1e-4, atol=1e-5)
    # a token no query may read changes nothing but its own row
    x2 = x.copy()
    x2[0, 4] += 100.0
    np.testing.assert_allclose(_np(block(x2, mask))[0, :4], y[0, :4], rtol=1e-5, atol=1e-5)


def test_transformer_block_config_and_saved_output(tmp_path):
    block = TransformerBlock(8, 4, mlp_ratio=2.0, dropout=0.1, name="block")
    config = block.get_config()
    assert {k: config[k] for k in ("width", "num_heads", "mlp_ratio", "dropout")} == {
        "width": 8,
        "num_heads": 4,
        "mlp_ratio": 2.0,
        "dropout": 0.1,
    }
    assert TransformerBlock.from_config(config).get_config() == config
    with pytest.raises(ValueError, match=r"TransformerBlock: width \(10\) must be a multiple of num_heads \(4\)"):
        TransformerBlock(10, 4)
    with pytest.raises(ValueError, match="TransformerBlock: num_heads: expected a number > 0, got 0"):
        TransformerBlock(8, 0)

    x = np.random.default_rng(4).normal(size=(3, 6, 8)).astype("float32")
    inputs = keras.Input((6, 8))
    model = keras.Model(inputs, block(inputs))
    reloaded = _save_and_reload(model, tmp_path)
    assert isinstance(reloaded.get_layer("block"), TransformerBlock)
    np.testing.assert_allclose(_np(reloaded(x)), _np(model(x)), rtol=1e-6, atol=1e-6)
