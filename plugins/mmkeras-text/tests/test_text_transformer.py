"""The text_transformer encoder: shapes, padding ignored, conformance kit, errors, saved models."""

from pathlib import Path

import keras
import numpy as np
import pytest
from mmkeras_text.encoder import TextTransformer

from mmkeras.plugin import check_encoder

DATA = Path(__file__).resolve().parent / "data"
PARAMS = {"output_dim": 6, "vocab_size": 20, "max_length": 16, "width": 16, "num_layers": 2, "num_heads": 2}
IDS = np.array([[5, 7, 3, 0, 0, 0, 0, 0], [2, 9, 9, 11, 4, 6, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0]], dtype=np.int32)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _encoder():
    keras.utils.set_random_seed(0)
    enc = TextTransformer(**PARAMS)
    enc.build((None, 8))
    # the default N(0, 0.05) embeddings are small; larger ones make any leak of padding visible
    enc.token_embedding.assign(np.random.default_rng(0).normal(size=(20, 16)).astype("float32"))
    return enc


def test_output_shape_and_int_or_float_ids():
    enc = _encoder()
    y = _np(enc(IDS))
    assert y.shape == (3, 6) and y.dtype == np.float32
    np.testing.assert_allclose(_np(enc(IDS.astype("float32"))), y, atol=1e-6)


def test_padding_is_ignored():
    enc = _encoder()
    y = _np(enc(IDS))
    # more trailing padding: same outputs
    longer = np.pad(IDS, ((0, 0), (0, 8)))
    np.testing.assert_allclose(_np(enc(longer)), y, atol=1e-5)
    # another padding embedding E[0]: same outputs
    table = _np(enc.token_embedding).copy()
    table[0] = 100.0
    enc.token_embedding.assign(table)
    np.testing.assert_allclose(_np(enc(IDS)), y, atol=1e-5)
    # an all-padding row is the projection of zero
    np.testing.assert_allclose(y[2], _np(enc.out.bias), atol=1e-6)
    # while a real token does matter (the check above could fail)
    changed = IDS.copy()
    changed[0, 2] = 8
    assert np.abs(_np(enc(changed))[0] - y[0]).max() > 1e-3
    np.testing.assert_allclose(_np(enc(changed))[1:], y[1:], atol=1e-5)


def test_out_of_range_ids_read_as_unknown():
    enc = _encoder()
    odd = IDS.copy()
    odd[0, 1] = 99
    odd[1, 0] = -4
    unk = IDS.copy()
    unk[0, 1] = 1
    unk[1, 0] = 1
    np.testing.assert_allclose(_np(enc(odd)), _np(enc(unk)), atol=1e-6)


def test_conformance_kit():
    # the kit feeds float N(0, 1) values: cast to int32 they are ids in {-3..3}, negatives read as 1
    check_encoder(TextTransformer, {**PARAMS, "dropout": 0.1}, input_shape=(12,))


def test_config_and_errors():
    config = TextTransformer(**PARAMS, dropout=0.1).get_config()
    assert {k: config[k] for k in [*PARAMS, "dropout"]} == {**PARAMS, "dropout": 0.1}
    with pytest.raises(ValueError, match=r"length 20 exceed max_length=16"):
        TextTransformer(**PARAMS).build((None, 20))
    with pytest.raises(ValueError, match=r"TextTransformer: width \(16\) must be a multiple of num_heads \(3\)"):
        TextTransformer(**{**PARAMS, "num_heads": 3})
    with pytest.raises(ValueError, match=r"TextTransformer: vocab_size: expected a number >= 2, got 1"):
        TextTransformer(**{**PARAMS, "vocab_size": 1})
    with pytest.raises(ValueError, match=r"TextTransformer: dropout: expected a number < 1, got 1.0"):
        TextTransformer(**{**PARAMS, "dropout": 1.0})
    with pytest.raises(ValueError, match=r"TextTransformer: num_layers: expected a number >= 0, got -1"):
        TextTransformer(**{**PARAMS, "num_layers": -1})


def test_a_model_saved_before_the_encoder_became_a_component_still_loads(tmp_path):
    # saved by the previous class (hand-written get_config, plain keras Layer): same config keys, same weight paths
    model = keras.saving.load_model(DATA / "text_transformer_v0.keras")
    expected = np.load(DATA / "text_transformer_v0_outputs.npy")
    np.testing.assert_allclose(_np(model(IDS)), expected, rtol=1e-5, atol=1e-6)
    assert isinstance(model.get_layer("text"), TextTransformer)
    # and a model saved now reloads the same way
    model.save(tmp_path / "now.keras")
    np.testing.assert_allclose(
        _np(keras.saving.load_model(tmp_path / "now.keras")(IDS)), expected, rtol=1e-5, atol=1e-6
    )
