from pathlib import Path

import keras
import numpy as np
import pytest

import mmkeras
from mmkeras.errors import RecipeError
from mmkeras.heads.conv2d_decoder import Conv2DDecoder
from mmkeras.heads.dense_decoder import DenseDecoder
from mmkeras.objectives.multimodal_autoencoder import MultimodalAutoencoder
from mmkeras.record import Record

ROOT = Path(__file__).resolve().parent.parent
LINEAR = {
    "a": {"name": "dense_decoder", "params": {"hidden_units": []}},
    "b": {"name": "dense_decoder", "params": {"hidden_units": []}},
}


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def as_record(fields):
    """The forward-pass record of ``fields``; the fields a test leaves out are empty."""
    return Record(**{"features": {}, "latents": {}, "joint_feature": None, "joint": None, "masks": {}, **fields})


def tiny_record(seed=0):
    """Codes of size 2; a is a 3-vector, b a 2x2 map missing in rows 1 and 3 (filled with garbage)."""
    rng = np.random.default_rng(seed)
    n = 5
    fields = {
        "joint": rng.normal(size=(n, 2)),
        "latents": {"a": rng.normal(size=(n, 2)), "b": rng.normal(size=(n, 2))},
        "inputs": {"a": rng.normal(size=(n, 3)), "b": rng.normal(size=(n, 2, 2))},
    }
    fields = keras.tree.map_structure(lambda x: x.astype("float32"), fields)
    fields["inputs"]["b"][[1, 3]] = 1e3
    fields["masks"] = {"a": np.ones(n, "float32"), "b": np.array([1, 0, 1, 0, 1], "float32")}
    return as_record(fields)


def fixed_objective(cross_modal=True, joint_weight=1.0, cross_weight=1.0):
    obj = MultimodalAutoencoder(LINEAR, cross_modal=cross_modal, joint_weight=joint_weight, cross_weight=cross_weight)
    obj(tiny_record())
    obj.decoder_layers["a"].set_weights(
        [np.array([[1.0, -1.0, 0.5], [2.0, 0.0, 1.0]], "float32"), np.array([0.1, 0.2, 0.3], "float32")]
    )
    obj.decoder_layers["b"].set_weights([np.arange(8, dtype="float32").reshape(2, 4) / 8.0, -np.ones(4, "float32")])
    return obj


def np_loss(rec, weights, cross_modal=True, joint_weight=1.0, cross_weight=1.0):
    def decode(t, z):
        w, b = weights[t]
        return (z @ w + b).reshape((len(z),) + rec.inputs[t].shape[1:])

    def term(z, t, rows):
        err = ((decode(t, z) - rec.inputs[t]) ** 2).reshape(len(z), -1).mean(1)
        return err[rows > 0].mean()

    m = rec.masks
    joint = np.mean([term(rec.joint, t, m[t]) for t in "ab"])
    cross = np.mean([term(rec.latents[s], t, m[s] * m[t]) for s in "ab" for t in "ab"])
    return joint_weight * joint + (cross_weight * cross if cross_modal else 0.0), joint, cross


def decoder_weights(obj):
    return {t: [numpy(w) for w in obj.decoder_layers[t].weights] for t in "ab"}


def test_loss_matches_numpy_with_fixed_decoders():
    obj = fixed_objective()
    rec = tiny_record()
    out = obj(rec)
    expected, joint, cross = np_loss(rec, decoder_weights(obj))
    assert float(out["recon_joint"]) == pytest.approx(joint, rel=1e-5)
    assert float(out["recon_cross"]) == pytest.approx(cross, rel=1e-5)
    assert float(out["loss"]) == pytest.approx(expected, rel=1e-5)
    assert expected < 100  # the garbage in b's missing rows never entered


def test_weights_and_cross_modal_switch():
    rec = tiny_record()
    obj = fixed_objective(cross_modal=False, joint_weight=2.0)
    expected, _, _ = np_loss(rec, decoder_weights(obj), cross_modal=False, joint_weight=2.0)
    out = obj(rec)
    assert float(out["loss"]) == pytest.approx(expected, rel=1e-5)
    assert sorted(out) == ["loss", "recon_a", "recon_b", "recon_joint"]


def test_a_batch_without_a_modality_skips_its_targets():
    obj = fixed_objective()
    rec = tiny_record()
    del rec.inputs["b"]
    rec.masks["b"] = np.zeros(5, "float32")
    out = obj(rec)
    w = decoder_weights(obj)["a"]

    def err(z):
        return (((z @ w[0] + w[1]) - rec.inputs["a"]) ** 2).mean()

    assert float(out["recon_b"]) == 0.0
    assert float(out["loss"]) == pytest.approx(err(rec.joint) + err(rec.latents["a"]), rel=1e-5)


def test_config_round_trip_rebuilds_the_decoders():
    obj = fixed_objective()
    rec = tiny_record()
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))
    assert clone.built and sorted(clone.decoder_layers) == ["a", "b"]
    assert clone.get_build_config() == {"code_dim": 2, "target_shapes": {"a": [3], "b": [2, 2]}}
    clone.set_weights(obj.get_weights())
    assert float(clone(rec)["loss"]) == pytest.approx(float(obj(rec)["loss"]), rel=1e-6)
    assert MultimodalAutoencoder.from_config(obj.get_config()).get_config() == obj.get_config()


def test_errors_name_the_recipe_key():
    with pytest.raises(ValueError, match=r"decoders.a: unknown keys \['size'\] \(allowed: name, params\)"):
        MultimodalAutoencoder({"a": {"name": "dense_decoder", "size": 3}})
    with pytest.raises(RecipeError, match=r"objective.params.decoders.c: no such modality; the model has \['a', 'b'\]"):
        MultimodalAutoencoder({"c": {"name": "dense_decoder"}})(tiny_record())
    rec = tiny_record()
    rec.latents["b"] = np.zeros((5, 3), "float32")
    with pytest.raises(ValueError, match=r"got joint 2 and latents \{'a': 2, 'b': 3\}: give the model a head"):
        MultimodalAutoencoder(LINEAR)(rec)
    with pytest.raises(
        RecipeError, match=r"objective.params.decoders.a.name: unknown head 'dense_decoderr'; did you mean"
    ):
        MultimodalAutoencoder({"a": {"name": "dense_decoderr"}})(tiny_record())


def test_conv2d_decoder_shapes_and_divisibility():
    z = np.zeros((2, 5), "float32")
    assert tuple(Conv2DDecoder([8, 12, 3], filters=[4, 2])(z).shape) == (2, 8, 12, 3)
    assert tuple(Conv2DDecoder([32, 128], filters=[8, 4])(z).shape) == (2, 32, 128)
    assert tuple(DenseDecoder([2, 3], hidden_units=[4])(z).shape) == (2, 2, 3)
    with pytest.raises(ValueError, match=r"must have H and W divisible by strides \*\* len\(filters\) = 4"):
        Conv2DDecoder([28, 30, 1], filters=[8, 4])


def small_model(objective):
    from mmkeras.encoders.conv2d import Conv2DEncoder
    from mmkeras.encoders.mlp import MLPEncoder
    from mmkeras.fusions.low_rank import LowRankFusion
    from mmkeras.heads.mlp import MLPHead
    from mmkeras.model import MultimodalModel

    keras.utils.set_random_seed(0)
    model = MultimodalModel(
        {
            "a": MLPEncoder(8, hidden_units=[16], name="a_encoder"),
            "b": Conv2DEncoder(8, filters=[4], kernel_size=3, name="b_encoder"),
        },
        LowRankFusion(8, rank=2, name="fusion"),
        MLPHead(4, name="head"),
        objective,
        input_shapes={"a": [16], "b": [8, 8, 1]},
    )
    model.build()
    return model


DECODERS = {
    "a": {"name": "dense_decoder", "params": {"hidden_units": [16]}},
    "b": {"name": "conv2d_decoder", "params": {"filters": [8, 4]}},
}


@pytest.fixture(scope="module")
def data():
    split = mmkeras.load_dataset("arrays", synthetic=True, num_samples=320).load("train")
    return {m: split.inputs[m] for m in "ab"}


def test_short_training_reduces_the_loss_and_the_model_reloads(data, tmp_path):
    model = small_model(MultimodalAutoencoder(DECODERS))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=False)

    def loss():
        return {k: float(v) for k, v in model.objective(model(data)).items()}

    before = loss()
    model.fit(data, np.zeros(len(data["a"])), batch_size=32, epochs=6, verbose=0)
    after = loss()
    assert after["loss"] < 0.8 * before["loss"], (before, after)
    assert after["recon_cross"] < before["recon_cross"]  # each modality alone reconstructs better too

    path = tmp_path / "mae.keras"
    model.save(path)
    loaded = mmkeras.load_model(str(path))
    assert float(loaded.objective(loaded(data))["loss"]) == pytest.approx(after["loss"], rel=1e-5)
    # sound-to-image in miniature: modality a alone, decoded to b, as the reloaded model does it
    only_a = model({"a": data["a"][:4]}).latents["a"]
    np.testing.assert_array_equal(
        numpy(loaded.objective.decoder_layers["b"](loaded({"a": data["a"][:4]}).latents["a"])),
        numpy(model.objective.decoder_layers["b"](only_a)),
    )


def test_recipe_validates():
    recipe = mmkeras.load_recipe(ROOT / "recipes" / "mae_mhd.yaml")
    assert recipe.objective.name == "multimodal_autoencoder" and recipe.model.fusion.name == "low_rank"
    assert sorted(recipe.objective.params["decoders"]) == ["image", "label", "sound", "trajectory"]
