import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import synthetic_recipe

import mmkeras
from mmkeras.data.pipeline import make_dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    recipe = mmkeras.recipe_from_dict(
        synthetic_recipe(model__joint_encoders="separate", model__fusion={"name": "concat"})
    )
    data = mmkeras.load_dataset("arrays", synthetic=True, num_samples=256)
    train = data.load("train")
    model = mmkeras.build_model(recipe)
    history = model.fit(make_dataset(train, ["a", "b"], 32, seed=0), epochs=2, verbose=0)
    path = tmp_path_factory.mktemp("saved") / "model.keras"
    model.save(path)
    return model, data.load("test"), path, history


def test_fit_trains_through_the_objective(trained):
    _, _, _, history = trained
    loss = history.history["loss"]
    assert loss[1] < loss[0]
    assert history.history["nce_a_b"] == pytest.approx(loss)  # one pair: the loss is that pair's term


def test_record_has_every_part(trained):
    model, test, _, _ = trained
    record = model({"a": test.inputs["a"][:3], "b": test.inputs["b"][:3]})
    assert {f for f in record._fields if f in record} == {
        "features",
        "latents",
        "joint_feature",
        "joint",
        "masks",
        "inputs",
    }
    assert (record.views, record.joint_single) == ((), {})  # what this objective does not ask for stays empty
    assert tuple(record.joint.shape) == (3, 8)
    assert record["joint"] is record.joint  # the dict-style read of plugin API v1
    norms = np.linalg.norm(keras.ops.convert_to_numpy(record.latents["a"]), axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)  # the head normalises


def test_encode_subset_equals_masking_the_other_modality(trained):
    model, test, _, _ = trained
    x = {"a": test.inputs["a"][:16], "b": test.inputs["b"][:16]}
    only_a = model.encode({"a": x["a"]})
    masked = model.encode({**x, "masks": {"a": np.ones(16, "float32"), "b": np.zeros(16, "float32")}}, ["a", "b"])
    np.testing.assert_allclose(only_a, masked, atol=1e-5)
    assert not np.allclose(only_a, model.encode(x))


def test_encode_errors_name_the_modality(trained):
    model, test, _, _ = trained
    with pytest.raises(ValueError, match=r"unknown modalities \['c'\]; this model has \['a', 'b'\]"):
        model.encode({"a": test.inputs["a"]}, ["c"])


def test_reload_in_a_fresh_process_gives_identical_representations(trained, tmp_path):
    model, test, path, _ = trained
    x = {"a": test.inputs["a"][:20], "b": test.inputs["b"][:20]}
    np.savez(tmp_path / "x.npz", **x)
    code = (
        "import sys, numpy as np, mmkeras; m = mmkeras.load_model(sys.argv[1]); x = dict(np.load(sys.argv[2]));"
        "np.save(sys.argv[3], m.encode(x)); np.save(sys.argv[4], m.encode({'b': x['b']}))"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(path),
            str(tmp_path / "x.npz"),
            str(tmp_path / "z.npy"),
            str(tmp_path / "zb.npy"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    np.testing.assert_array_equal(np.load(tmp_path / "z.npy"), model.encode(x))
    np.testing.assert_array_equal(np.load(tmp_path / "zb.npy"), model.encode({"b": x["b"]}))


def test_mean_fusion_ignores_missing_features():
    from mmkeras.fusions.mean import MeanFusion

    h = {"a": np.array([[1.0, 2.0]], "float32"), "b": np.array([[3.0, 6.0]], "float32")}
    out = MeanFusion()(h, {"a": np.ones(1, "float32"), "b": np.zeros(1, "float32")})
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out), [[1.0, 2.0]])
    out = MeanFusion()(h, {"a": np.ones(1, "float32"), "b": np.ones(1, "float32")})
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out), [[2.0, 4.0]])


def test_concat_fusion_ignores_missing_features():
    from mmkeras.fusions.concat import ConcatFusion

    fusion = ConcatFusion(output_dim=3)
    masks = {"a": np.ones(2, "float32"), "b": np.array([1.0, 0.0], "float32")}
    h1 = {"a": np.ones((2, 2), "float32"), "b": np.ones((2, 2), "float32")}
    h2 = {"a": h1["a"], "b": np.array([[1.0, 1.0], [9.0, -9.0]], "float32")}
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(fusion(h1, masks)), keras.ops.convert_to_numpy(fusion(h2, masks))
    )


def test_objective_can_ask_for_two_views_and_single_modality_joints():
    from mmkeras.objectives.infonce import InfoNCE

    class TwoViews(InfoNCE):
        num_views = 2
        needs_single_modality_joints = True

    recipe = mmkeras.recipe_from_dict(
        synthetic_recipe(
            modalities__a={
                "encoder": {"name": "mlp"},
                "augment": [{"name": "gaussian_noise", "params": {"stddev": 1.0}}],
            }
        )
    )
    model = mmkeras.build_model(recipe, {"a": [16], "b": [8, 8, 1]}, compile=False)
    model = mmkeras.model.MultimodalModel(
        model.encoders, model.fusion, model.head, TwoViews(), model.augmentations, input_shapes=model.input_shapes
    )
    rng = np.random.default_rng(0)
    x = {"a": rng.normal(size=(4, 16)).astype("float32"), "b": rng.normal(size=(4, 8, 8, 1)).astype("float32")}
    train = model(x, training=True)
    v1, v2 = (keras.ops.convert_to_numpy(v["latents"]["a"]) for v in train["views"])
    assert not np.allclose(v1, v2)  # each view draws its own augmentation
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(train["views"][0]["latents"]["b"]),
        keras.ops.convert_to_numpy(train["views"][1]["latents"]["b"]),
        rtol=1e-6,
    )  # b has no augmentation
    infer = model(x, training=False)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(infer["joint_single"]["a"]), model.encode({"a": x["a"]}), rtol=1e-5
    )
