from pathlib import Path

import keras
import numpy as np
import pytest

import mmkeras
from mmkeras.errors import RecipeError
from mmkeras.objectives.dcca import DeepCCA
from mmkeras.objectives.dccae import DCCAE
from mmkeras.record import Record
from mmkeras.testing import check_objective, use_logical_devices

use_logical_devices(2)  # check_objective's 2-replica check; before any TensorFlow op runs

ROOT = Path(__file__).resolve().parent.parent
LINEAR = {
    "image": {"name": "dense_decoder", "params": {"hidden_units": []}},
    "sound": {"name": "dense_decoder", "params": {"hidden_units": [], "output_activation": "sigmoid"}},
}


def value(x):
    return float(keras.ops.convert_to_numpy(x))


def as_record(fields):
    """The forward-pass record of ``fields``; the fields a test leaves out are empty."""
    return Record(**{"features": {}, "latents": {}, "joint_feature": None, "joint": None, "masks": {}, **fields})


def tiny_record(seed=0, n=40):
    """Latents of size 3 sharing one direction; image a 4-vector, sound 2x2 binary pixels missing
    in every fifth row (latents and inputs hold garbage there)."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=(n, 1))
    fields = {
        "latents": {
            "image": np.concatenate([shared, rng.normal(size=(n, 2))], 1) + 0.3 * rng.normal(size=(n, 3)),
            "sound": np.concatenate([-shared, rng.normal(size=(n, 2))], 1) + 0.3 * rng.normal(size=(n, 3)),
        },
        "inputs": {"image": rng.normal(size=(n, 4)), "sound": (rng.random((n, 2, 2)) > 0.5) * 1.0},
    }
    fields = keras.tree.map_structure(lambda x: x.astype("float32"), fields)
    missing = np.arange(n) % 5 == 1
    fields["latents"]["sound"][missing] = 1e3
    fields["inputs"]["sound"][missing] = 1e3
    fields["masks"] = {"image": np.ones(n, "float32"), "sound": (~missing).astype("float32")}
    return as_record(fields)


def fixed_objective(**kwargs):
    obj = DCCAE(LINEAR, **kwargs)
    obj(tiny_record())
    obj.decoder_layers["image"].set_weights(
        [np.linspace(-1.0, 1.0, 12, dtype="float32").reshape(3, 4), np.array([0.1, 0.2, -0.3, 0.0], "float32")]
    )
    obj.decoder_layers["sound"].set_weights(
        [np.arange(12, dtype="float32").reshape(3, 4) / 10.0, -np.ones(4, "float32")]
    )
    return obj


def np_reconstruction(rec, obj, likelihoods):
    """Per view: the mean over its present rows of the error of the fixed linear decoder."""
    out = {}
    for v in ("image", "sound"):
        w, b = (keras.ops.convert_to_numpy(t).astype("float64") for t in obj.decoder_layers[v].weights)
        pred = rec.latents[v].astype("float64") @ w + b
        target = rec.inputs[v].reshape(len(pred), -1).astype("float64")
        if v == "sound":
            pred = 1.0 / (1.0 + np.exp(-pred))
        if likelihoods.get(v, "mse") == "mse":
            err = ((pred - target) ** 2).mean(1)
        else:  # bernoulli
            p = np.clip(pred, 1e-6, 1 - 1e-6)
            err = -(target * np.log(p) + (1 - target) * np.log(1 - p)).sum(1)
        out[v] = err[rec.masks[v] > 0].mean()
    return out


@pytest.mark.parametrize("likelihoods", [{}, {"sound": "bernoulli"}])
def test_loss_is_the_dcca_loss_plus_lambda_times_the_numpy_reconstruction(likelihoods):
    rec = tiny_record()
    obj = fixed_objective(likelihoods=likelihoods, reconstruction_weight=0.7, top_k=2)
    out = obj(rec)
    dcca = DeepCCA(top_k=2)(rec)
    recon = np_reconstruction(rec, obj, likelihoods)
    assert value(out["corr_image_sound"]) == pytest.approx(value(dcca["corr_image_sound"]), rel=1e-6)
    assert value(out["corr_image_sound"]) > 0.9  # the shared direction, in the rows where both are present
    for v in ("image", "sound"):
        assert value(out[f"recon_{v}"]) == pytest.approx(recon[v], rel=1e-5)
    expected = value(dcca["loss"]) + 0.7 * (recon["image"] + recon["sound"])
    assert value(out["loss"]) == pytest.approx(expected, rel=1e-5)
    assert recon["sound"] < 100  # the garbage in sound's missing rows never entered


def test_missing_rows_do_not_move_the_loss():
    rec = tiny_record()
    obj = fixed_objective()
    before = {k: value(v) for k, v in obj(rec).items()}
    missing = rec.masks["sound"] == 0
    rec.latents["sound"][missing] = -7e3
    rec.inputs["sound"][missing] = np.inf
    after = {k: value(v) for k, v in obj(rec).items()}
    assert after == pytest.approx(before, rel=1e-6)


def test_a_view_missing_from_the_batch_is_not_reconstructed():
    rec = tiny_record()
    obj = fixed_objective()
    del rec.inputs["sound"]
    out = obj(rec)
    assert value(out["recon_sound"]) == 0.0
    assert value(out["loss"]) == pytest.approx(value(out["recon_image"]) - value(out["corr_image_sound"]), rel=1e-5)


def test_one_decoded_view_and_its_metrics():
    obj = DCCAE({"image": LINEAR["image"]}, pair=["sound", "image"])
    out = obj(tiny_record())
    assert sorted(out) == ["corr_sound_image", "loss", "recon_image"]


def test_errors_name_the_recipe_key():
    rec = tiny_record()
    three_modalities = rec._replace(masks={**rec.masks, "label": rec.masks["image"]})
    with pytest.raises(ValueError, match=r"decoders.label: not one of the pair \['image', 'sound'\]"):
        DCCAE({"label": LINEAR["image"]}, pair=["image", "sound"])
    with pytest.raises(RecipeError, match=r"objective.params.decoders.label: dccae decodes its two views"):
        DCCAE({"label": LINEAR["image"]})(tiny_record())
    with pytest.raises(ValueError, match=r"likelihoods.image: expected one of \['mse', 'gaussian', 'bernoulli'"):
        DCCAE(LINEAR, likelihoods={"image": "poisson"})
    with pytest.raises(RecipeError, match=r"objective.params.pair: dcca is defined for two views"):
        DCCAE(LINEAR)(three_modalities)
    rec.latents["sound"] = np.zeros((40, 5), "float32")
    with pytest.raises(ValueError, match=r"need one size; got \{'image': 3, 'sound': 5\}: give the model a head"):
        DCCAE(LINEAR)(rec)
    with pytest.raises(ValueError, match=r"DCCAE: reconstruction_weight: expected a number >= 0"):
        DCCAE(LINEAR, reconstruction_weight=-1.0)


def test_conformance_kit_passes():
    check_objective(DCCAE, {"decoders": {"a": LINEAR["image"], "b": LINEAR["image"]}, "top_k": 4}, batch_size=16)


def test_config_round_trip_rebuilds_the_decoders():
    obj = fixed_objective(reconstruction_weight=0.5, pair=["image", "sound"], top_k=1)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))
    assert clone.built and clone.get_build_config() == {"code_dim": 3, "target_shapes": {"image": [4], "sound": [2, 2]}}
    clone.set_weights(obj.get_weights())
    rec = tiny_record(seed=1)
    assert value(clone(rec)["loss"]) == pytest.approx(value(obj(rec)["loss"]), rel=1e-6)
    assert DCCAE.from_config(obj.get_config()).get_config() == obj.get_config()


def test_recipe_validates():
    recipe = mmkeras.load_recipe(ROOT / "recipes" / "dccae_mhd.yaml")
    assert recipe.objective.name == "dccae" and sorted(recipe.modalities) == ["image", "sound"]
    assert sorted(recipe.objective.params["decoders"]) == ["image", "sound"]


@pytest.mark.slow
def test_two_replicas_match_one_device(tmp_path):
    from test_distribute import run  # the distribute suite's runner: 1 and 2 logical CPU devices

    decoders = {m: {"name": "dense_decoder", "params": {"hidden_units": [8]}} for m in "ab"}
    objective = {"name": "dccae", "params": {"decoders": decoders, "top_k": 3}}
    one, two = run(tmp_path, 1, objective), run(tmp_path, 2, objective)
    assert float(two["loss"]) == pytest.approx(float(one["loss"]), rel=1e-4)
    for k in [k for k in one if k != "loss"]:
        np.testing.assert_allclose(two[k], one[k], rtol=1e-3, atol=1e-5)
