"""The multimodal encoder: the trained representation, saved and loaded apart from the training task."""

import io
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest
from conftest import FIXTURES, synthetic_recipe

import mmkeras
from mmkeras.encoder import MultimodalEncoder
from mmkeras.errors import MMKerasError
from mmkeras.runs import train


def _weight_groups(path):
    """The top-level groups of a saved .keras file's weights."""
    with zipfile.ZipFile(path) as zf, h5py.File(io.BytesIO(zf.read("model.weights.h5")), "r") as f:
        names = []
        f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        return names


@pytest.fixture(scope="module")
def gmc_run(tmp_path_factory):
    """A GMC run whose objective has weights of its own (the supervised prediction head)."""
    doc = synthetic_recipe(
        objective={"name": "gmc", "params": {"temperature": 0.2, "supervised": True, "num_classes": 4}},
        model__joint_encoders="separate",
        model__fusion={"name": "concat"},
        evaluate=[],
    )
    out = tmp_path_factory.mktemp("run") / "gmc"
    return train(mmkeras.recipe_from_dict(doc), out, verbose=0).path


def test_a_run_saves_its_encoder_without_the_objective(gmc_run):
    model_groups = _weight_groups(gmc_run / "model.keras")
    encoder_groups = _weight_groups(gmc_run / "encoder.keras")
    objective = [g for g in model_groups if "gmc" in g or "prediction_head" in g]
    assert objective, model_groups  # the full model holds the objective's prediction head
    assert not [g for g in encoder_groups if "gmc" in g or "prediction_head" in g or "optimizer" in g]
    # every encoder weight is the full model's weight at the same place
    assert set(encoder_groups) == {
        g for g in model_groups if g.split("/")[0] in {"encoders", "fusion", "head", "joint_encoders"}
    }


def test_the_encoder_loaded_alone_in_a_fresh_process_equals_the_full_model(gmc_run, tmp_path):
    data = mmkeras.load_dataset("arrays", synthetic=True, num_samples=256).load("test")
    x = {m: data.inputs[m][:50] for m in ("a", "b")}
    np.savez(tmp_path / "x.npz", **x)
    code = (
        "import sys, numpy as np, mmkeras; e = mmkeras.load_encoder(sys.argv[1]); x = dict(np.load(sys.argv[2]));"
        "print(type(e).__name__); np.save(sys.argv[3], e.encode(x)); np.save(sys.argv[4], e.encode({'b': x['b']}))"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(gmc_run),
            str(tmp_path / "x.npz"),
            str(tmp_path / "z.npy"),
            str(tmp_path / "zb.npy"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("MultimodalEncoder")
    full = mmkeras.load_model(str(gmc_run / "model.keras"))
    np.testing.assert_array_equal(np.load(tmp_path / "z.npy"), full.encode(x))
    np.testing.assert_array_equal(np.load(tmp_path / "zb.npy"), full.encode({"b": x["b"]}))


def test_load_encoder_takes_a_run_an_encoder_file_or_a_model_file(gmc_run):
    x = {"a": np.ones((3, 16), "float32"), "b": np.ones((3, 8, 8, 1), "float32")}
    want = mmkeras.load_model(str(gmc_run / "model.keras")).encode(x)
    for source in (gmc_run, gmc_run / "encoder.keras", gmc_run / "model.keras"):
        encoder = mmkeras.load_encoder(str(source))
        assert isinstance(encoder, MultimodalEncoder)
        np.testing.assert_array_equal(encoder.encode(x), want)
    with pytest.raises(MMKerasError, match="no saved encoder there"):
        mmkeras.load_encoder(str(gmc_run / "nothing"))


def test_encode_outputs_and_each_modality(gmc_run):
    encoder = mmkeras.load_encoder(str(gmc_run))
    rng = np.random.default_rng(0)
    x = {"a": rng.normal(size=(5, 16)).astype("float32"), "b": rng.normal(size=(5, 8, 8, 1)).astype("float32")}
    record = encoder(x, training=False)
    np.testing.assert_allclose(encoder.encode(x), np.asarray(record.joint), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        encoder.encode(x, output="feature"), np.asarray(record.joint_feature), rtol=1e-5, atol=1e-6
    )
    each = encoder.encode_each(x, output="feature")
    assert sorted(each) == ["a", "b"]
    np.testing.assert_allclose(each["a"], np.asarray(record.features["a"]), rtol=1e-5, atol=1e-6)
    # batching does not change the result
    np.testing.assert_allclose(encoder.encode(x, batch_size=2), encoder.encode(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="output must be 'latent' or 'feature', got 'joint'"):
        encoder.encode(x, output="joint")


def test_a_subset_is_compiled_once_it_has_encoded_enough_batches(gmc_run, monkeypatch):
    monkeypatch.setattr(mmkeras.encoder, "EAGER_BATCHES", 4)
    encoder = mmkeras.load_encoder(str(gmc_run))
    x = {"a": np.ones((40, 16), "float32"), "b": np.ones((40, 8, 8, 1), "float32")}
    eager = encoder.encode(x, ["a"], batch_size=16)  # 3 batches: eager
    assert encoder._predict_functions == {}
    compiled = encoder.encode(x, ["a"], batch_size=16)  # 6 batches in all: compiled from now on
    np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-6)
    encoder.encode(x, ["b"], batch_size=8)  # 5 batches at once: compiled at once
    for _ in range(3):
        for subset in (["a"], ["b"], ["a", "b"]):
            encoder.encode(x, subset, batch_size=16)
    assert sorted(encoder._predict_functions) == [(("a",), ()), (("a", "b"), ()), (("b",), ())]


def test_a_model_saved_before_the_encoder_split_loads_with_the_same_outputs():
    """``gmc-0.1.keras`` was written by mmkeras 0.1 (``make_legacy_model.py`` beside it)."""
    expected = np.load(FIXTURES / "legacy" / "gmc-0.1-expected.npz")
    model = mmkeras.load_model(str(FIXTURES / "legacy" / "gmc-0.1.keras"))
    x = {"a": expected["x_a"], "b": expected["x_b"]}
    # float32 round-off only: the fixture was written on another CPU, whose kernels may differ in the last bits
    np.testing.assert_allclose(model.encode(x), expected["joint"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.encode(x, ["a"]), expected["a_only"], rtol=1e-5, atol=1e-6)
    prediction = np.asarray(model.objective.predict_from_joint(model.encode(x)))
    np.testing.assert_allclose(prediction, expected["prediction"], rtol=1e-5, atol=1e-6)
    assert isinstance(mmkeras.load_encoder(str(FIXTURES / "legacy" / "gmc-0.1.keras")), MultimodalEncoder)
