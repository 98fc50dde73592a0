"""The sequence encoders `gru`, `lstm` and `transformer` over front-padded [B, T, d] sequences."""

import keras
import numpy as np
import pytest

import mmkeras
from mmkeras import registry
from mmkeras.encoders.gru import GRUEncoder
from mmkeras.encoders.lstm import LSTMEncoder
from mmkeras.encoders.transformer import TransformerEncoder
from mmkeras.testing import check_encoder

T, D = 5, 3
SMALL = {
    GRUEncoder: {"units": 4},
    LSTMEncoder: {"units": 4},
    TransformerEncoder: {"width": 8, "num_heads": 2, "num_layers": 2, "mlp_ratio": 2.0},
}
MODES = {
    GRUEncoder: ("last", "mean", "flatten"),
    LSTMEncoder: ("last", "mean", "flatten"),
    TransformerEncoder: ("mean", "cls", "last", "tokens"),
}
CASES = [(cls, mode) for cls, modes in MODES.items() for mode in modes]
IDS = [f"{cls.__name__}-{mode}" for cls, mode in CASES]


def _encoder(cls, output=None, **params):
    return cls(**{"output_dim": 6, **SMALL[cls], **({"output": output} if output else {}), **params})


def _sequences(batch=4, steps=T, seed=0, leading_zeros=(0, 2, 1, 0)):
    """Random sequences, row i front-padded with ``leading_zeros[i]`` all-zero steps."""
    x = np.random.default_rng(seed).normal(size=(batch, steps, D)).astype("float32")
    for i, n in enumerate(leading_zeros[:batch]):
        x[i, :n] = 0.0
    return x


def _np(y):
    return np.asarray(keras.ops.convert_to_numpy(y))


def test_the_entry_points_name_the_classes():
    assert registry.get("encoders", "gru") is GRUEncoder
    assert registry.get("encoders", "lstm") is LSTMEncoder
    assert registry.get("encoders", "transformer") is TransformerEncoder


@pytest.mark.parametrize("cls, mode", CASES, ids=IDS)
def test_output_shapes(cls, mode):
    x = _sequences()
    y = _encoder(cls, mode)(x)
    assert tuple(y.shape) == ((4, T, 6) if mode == "tokens" else (4, 6))
    # without a projection: the pooled width itself
    unprojected = {"last": 4, "mean": 4, "flatten": T * 4} if cls is not TransformerEncoder else {}
    bare = _encoder(cls, mode, output_dim=None)
    expected = (4, T, 8) if mode == "tokens" else (4, unprojected.get(mode, 8))
    assert tuple(bare(x).shape) == expected == bare.compute_output_shape(x.shape)


def test_bidirectional_stacks_concatenate_both_directions():
    enc = GRUEncoder(output_dim=None, units=4, num_layers=2, bidirectional=True, output="flatten")
    assert tuple(enc(_sequences()).shape) == (4, T * 8)


@pytest.mark.parametrize(
    "cls, params",
    [
        (GRUEncoder, {"units": 4, "num_layers": 2, "bidirectional": True, "output": "flatten"}),
        (LSTMEncoder, {"units": 4, "output": "mean", "dropout": 0.1}),
        (TransformerEncoder, {**SMALL[TransformerEncoder], "positional": "learned", "output": "cls"}),
        (TransformerEncoder, {**SMALL[TransformerEncoder], "positional": "sinusoidal", "output": "tokens"}),
    ],
    ids=["gru", "lstm", "transformer-cls", "transformer-tokens"],
)
def test_conformance(cls, params):
    check_encoder(cls, params, input_shape=(T, D))


@pytest.mark.parametrize(
    "cls, mode, params",
    [(cls, mode, {}) for cls, mode in CASES]
    + [(GRUEncoder, "last", {"bidirectional": True, "num_layers": 2}), (LSTMEncoder, "mean", {"bidirectional": True})],
    ids=IDS + ["GRUEncoder-last-bidirectional", "LSTMEncoder-mean-bidirectional"],
)
def test_explicitly_masked_steps_cannot_change_the_output(cls, mode, params):
    x = _sequences(leading_zeros=())
    mask = np.ones((4, T), bool)
    mask[0, :2] = False  # front padding
    mask[1, [1, 3]] = False  # holes
    mask[2, :] = False  # no valid step: a missing modality
    enc = _encoder(cls, mode, **params)
    zeros = np.where(mask[..., None], x, 0.0).astype("float32")
    noise = np.where(mask[..., None], x, 50.0 * _sequences(seed=1)).astype("float32")
    expected = _np(enc(zeros, mask=mask))
    np.testing.assert_allclose(_np(enc(noise, mask=mask)), expected, atol=1e-5)
    assert np.isfinite(expected).all()
    if mode == "tokens":
        np.testing.assert_array_equal(expected[~mask], 0.0)


@pytest.mark.parametrize(
    "cls, params",
    [(cls, {"output": mode}) for cls in (GRUEncoder, LSTMEncoder) for mode in ("last", "mean")]
    + [(TransformerEncoder, {"output": mode}) for mode in ("mean", "last", "cls")]
    + [(TransformerEncoder, {"output": "mean", "positional": "sinusoidal"})],
    ids=lambda v: v.__name__ if isinstance(v, type) else "-".join(v.values()),
)
def test_extra_leading_zero_steps_do_not_change_the_output(cls, params):
    x = _sequences()
    enc = _encoder(cls, **params)
    longer = np.concatenate([np.zeros((4, 3, D), "float32"), x], axis=1)
    np.testing.assert_allclose(_np(enc(longer)), _np(enc(x)), atol=1e-5)


@pytest.mark.parametrize("cls", list(MODES))
def test_an_all_padding_row_is_finite_and_padding_none_sees_zero_steps(cls):
    x = _sequences(leading_zeros=(0, 2, T, 0))
    x[1, 3] = 0.0  # a zero step after data: a recurrent state fed zeros from zero (with zero biases) stays zero
    enc = _encoder(cls, output_dim=None)
    y = _np(enc(x))
    assert np.isfinite(y).all()
    # no valid step: the pooled feature is zero (an initial state, or a mean over nothing)
    np.testing.assert_array_equal(y[2], 0.0)
    seeing = _encoder(cls, output_dim=None, padding="none")
    seeing.build(x.shape)
    seeing.set_weights(enc.get_weights())
    z = _np(seeing(x))
    np.testing.assert_allclose(z[[0, 3]], y[[0, 3]], atol=1e-5)  # rows without padding agree
    assert np.abs(z[1] - y[1]).max() > 1e-3  # the zero steps are now data


def test_an_explicit_mask_takes_precedence_over_zero_steps():
    x = _sequences(leading_zeros=(0, 2, 1, 0))
    enc = _encoder(TransformerEncoder)
    ones = np.ones((4, T), bool)
    got = _np(enc(x, mask=ones))
    assert np.abs(got - _np(enc(x))).max() > 1e-3
    seeing = _encoder(TransformerEncoder, padding="none")
    seeing.build(x.shape)
    seeing.set_weights(enc.get_weights())
    np.testing.assert_allclose(got, _np(seeing(x)), atol=1e-5)


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def test_gru_last_follows_the_gru_equations_and_skips_padding_steps():
    """h_t = z h_{t-1} + (1 - z) tanh(W_h x + b_h + r (U_h h_{t-1} + c_h)), z and r sigmoid gates
    (Keras's reset_after form); a padding step leaves h unchanged."""
    x = _sequences(batch=2, leading_zeros=(2, 0))
    x[1, 2] = 0.0  # a zero step in the middle is padding too
    enc = GRUEncoder(output_dim=None, units=3)
    got = _np(enc(x))
    kernel, recurrent, bias = enc.get_weights()
    u = 3
    expected = np.zeros((2, u))
    for b in range(2):
        h = np.zeros(u)
        for t in range(T):
            if not x[b, t].any():
                continue
            xi = x[b, t] @ kernel + bias[0]
            hr = h @ recurrent + bias[1]
            z = _sigmoid(xi[:u] + hr[:u])
            r = _sigmoid(xi[u : 2 * u] + hr[u : 2 * u])
            h = z * h + (1 - z) * np.tanh(xi[2 * u :] + r * hr[2 * u :])
        expected[b] = h
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_unknown_lengths_are_refused_where_the_shape_needs_them():
    with pytest.raises(ValueError, match="output='flatten' needs sequences of a known length"):
        GRUEncoder(output_dim=4, output="flatten").build((None, None, D))
    with pytest.raises(ValueError, match="positional='learned' needs sequences of a known length"):
        TransformerEncoder(output_dim=4, positional="learned").build((None, None, D))
    # the other modes read any length
    enc = TransformerEncoder(output_dim=4, width=8, num_heads=2, num_layers=1, positional="sinusoidal")
    enc.build((None, None, D))
    assert tuple(enc(_sequences(steps=7, leading_zeros=())).shape) == (4, 4)


def test_out_of_range_parameters_are_refused():
    with pytest.raises(ValueError, match="output"):
        GRUEncoder(output_dim=4, output="first")
    with pytest.raises(ValueError, match="multiple of num_heads"):
        TransformerEncoder(output_dim=4, width=10, num_heads=4)


def test_a_saved_model_holding_them_reloads_with_equal_outputs(tmp_path):
    inputs = keras.Input((T, D))
    outputs = [
        GRUEncoder(output_dim=5, units=4, num_layers=2, bidirectional=True, name="gru")(inputs),
        LSTMEncoder(output_dim=5, units=4, output="flatten", name="lstm")(inputs),
        TransformerEncoder(output_dim=5, **SMALL[TransformerEncoder], positional="learned", output="tokens")(inputs),
    ]
    model = keras.Model(inputs, outputs)
    x = _sequences()
    expected = [_np(y) for y in model(x)]
    model.save(tmp_path / "m.keras")
    reloaded = mmkeras.load_model(str(tmp_path / "m.keras"), compile=False)
    for got, want in zip(reloaded(x), expected):
        np.testing.assert_array_equal(_np(got), want)
    assert reloaded.get_layer("gru").get_config()["bidirectional"] is True


def test_a_recipe_with_a_gru_encoder_trains_under_jit_compile(tmp_path):
    rng = np.random.default_rng(0)
    n = 64
    seq = rng.normal(size=(n, T, D)).astype("float32")
    seq[::2, :2] = 0.0  # front padding
    arrays = {
        "train/seq": seq,
        "train/vec": rng.normal(size=(n, 4)).astype("float32"),
        "train/labels": rng.integers(0, 2, n),
    }
    np.savez(tmp_path / "data.npz", **arrays)
    recipe = mmkeras.recipe_from_dict(
        {
            "name": "gru-tiny",
            "seed": 0,
            "data": {"dataset": "arrays", "params": {"path": str(tmp_path / "data.npz")}, "batch_size": 16},
            "modalities": {
                "seq": {"encoder": {"name": "gru", "params": {"units": 4, "output": "flatten"}}},
                "vec": {"encoder": {"name": "mlp", "params": {"hidden_units": [8]}}},
            },
            "model": {"feature_dim": 8, "latent_dim": 8, "head": {"name": "mlp", "params": {"normalize": True}}},
            "objective": {"name": "infonce", "params": {"temperature": 0.1}},
            "train": {"epochs": 1, "jit_compile": True},
            "evaluate": [],
        }
    )
    model = mmkeras.build_model(recipe)
    assert model.jit_compile is True  # the GRU keeps XLA on (no cuDNN kernel)
    from mmkeras.data.pipeline import make_dataset

    data = mmkeras.load_dataset("arrays", path=str(tmp_path / "data.npz")).load("train")
    encoder = model.encoder.encoders["seq"]
    before = [np.array(w) for w in encoder.get_weights()]
    history = model.fit(make_dataset(data, ["seq", "vec"], 16, seed=0).take(1), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(np.abs(np.array(w) - b).max() > 0 for w, b in zip(encoder.get_weights(), before))
