"""Very early fusion: ``flatten`` encoders place the raw modalities side by side, ``early_concat`` fusion
concatenates the present ones, and the head is the joint encoder."""

from pathlib import Path

import keras
import numpy as np
import pytest

import mmkeras
from mmkeras.encoders.flatten import FlattenEncoder
from mmkeras.fusions.early_concat import EarlyConcatFusion
from mmkeras.heads.mlp import MLPHead
from mmkeras.model import MultimodalModel
from mmkeras.registry import registry
from mmkeras.testing import check_encoder, check_fusion

ROOT = Path(__file__).resolve().parent.parent
MHD_SHAPES = {"image": [28, 28, 1], "label": [10], "sound": [32, 128], "trajectory": [200]}


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def test_flatten_places_the_raw_values_at_the_offset():
    x = np.arange(12, dtype="float32").reshape(2, 3, 2)
    out = numpy(FlattenEncoder(10, offset=3)(x))
    expected = np.zeros((2, 10), "float32")
    expected[:, 3:9] = x.reshape(2, 6)
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(ValueError, match=r"the input's 6 values at offset 5 end at 11, beyond output_dim 10"):
        FlattenEncoder(10, offset=5)(x)
    with pytest.raises(ValueError, match=r"FlattenEncoder: offset: expected a number >= 0, got -1"):
        FlattenEncoder(10, offset=-1)


def test_conformance_kit_passes():
    check_encoder(FlattenEncoder, {"output_dim": 20, "offset": 3}, input_shape=(4, 3))
    check_fusion(EarlyConcatFusion, {}, feature_shapes={"a": (6,), "b": (6,), "c": (6,)})
    assert (
        registry.get("encoders", "flatten") is FlattenEncoder
        and registry.get("fusions", "early_concat") is EarlyConcatFusion
    )


def early_model():
    keras.utils.set_random_seed(0)
    return MultimodalModel(
        {"a": FlattenEncoder(11, offset=0, name="a_encoder"), "b": FlattenEncoder(11, offset=3, name="b_encoder")},
        EarlyConcatFusion(name="fusion"),
        MLPHead(4, hidden_units=[8], name="head"),
        input_shapes={"a": [3], "b": [2, 4]},
    )


def inputs(seed=0):
    rng = np.random.default_rng(seed)
    x = {"a": rng.normal(size=(6, 3)).astype("float32"), "b": rng.normal(size=(6, 2, 4)).astype("float32")}
    x["masks"] = {"a": np.ones(6, "float32"), "b": np.array([1, 0, 1, 0, 0, 1], "float32")}
    return x


def test_the_fused_feature_is_the_concatenation_of_the_present_raw_inputs():
    model = early_model()
    model.build()
    x = inputs()
    record = model(x)
    present = x["masks"]["b"][:, None]
    expected = np.concatenate([x["a"], x["b"].reshape(6, 8) * present], axis=1)
    np.testing.assert_array_equal(numpy(record["joint_feature"]), expected)
    # a modality's own latent is the joint encoder applied to it alone: the early-fusion code of that subset
    alone = model({"a": x["a"]})
    np.testing.assert_allclose(numpy(record["latents"]["a"]), numpy(alone["joint"]), rtol=1e-6)
    np.testing.assert_allclose(model.encode({"a": x["a"]}), numpy(alone["joint"]), rtol=1e-6)


def test_a_missing_modality_raw_input_does_not_move_the_output():
    model = early_model()
    model.build()
    x = inputs()
    before = numpy(model(x)["joint"])
    missing = x["masks"]["b"] == 0
    changed = {**x, "b": x["b"].copy()}
    changed["b"][missing] = 1e4 * np.random.default_rng(1).normal(size=changed["b"][missing].shape)
    changed["b"][3, 1, 2] = np.nan  # not even NaN leaks through
    np.testing.assert_array_equal(numpy(model(changed)["joint"]), before)
    changed["b"][0] += 1.0  # a present modality's raw input moves its row only
    after = numpy(model(changed)["joint"])
    assert not np.allclose(after[0], before[0])
    np.testing.assert_array_equal(after[1:], before[1:])


def test_saved_model_reloads_with_identical_outputs(tmp_path):
    model = early_model()
    model.build()
    x = inputs()
    path = tmp_path / "early.keras"
    model.save(path)
    loaded = mmkeras.load_model(str(path), compile=False)
    np.testing.assert_array_equal(numpy(loaded(x)["joint"]), numpy(model(x)["joint"]))


def test_shipped_recipe_tiles_mhd_without_overlap():
    recipe = mmkeras.load_recipe(ROOT / "recipes" / "early_fusion_mhd.yaml")
    assert recipe.model.fusion.name == "early_concat" and recipe.objective.name == "multimodal_autoencoder"
    model = mmkeras.build_model(recipe, input_shapes=MHD_SHAPES, compile=False)
    rng = np.random.default_rng(2)
    x = {m: rng.random((2, *s)).astype("float32") + 1.0 for m, s in MHD_SHAPES.items()}
    joint_feature = numpy(model(x)["joint_feature"])
    # sorted modalities side by side: every raw value appears once, in order, and nothing else
    np.testing.assert_array_equal(joint_feature, np.concatenate([x[m].reshape(2, -1) for m in sorted(x)], axis=1))
