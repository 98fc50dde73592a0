"""mmkeras's own presets: a trained encoder exported in keras-hub's layout, loaded back, reused."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import run_cli, synthetic_recipe

import mmkeras
from mmkeras.errors import MMKerasError
from mmkeras.preset import export_preset, load_modality_encoder, load_preset, save_preset

SHAPES = {"a": [16], "b": [8, 8, 1]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run trained for two epochs, its encoder, and inputs to encode."""
    from mmkeras.runs import train

    root = tmp_path_factory.mktemp("preset")
    run = root / "run"
    train(mmkeras.recipe_from_dict(synthetic_recipe(train__epochs=2, evaluate=[])), run, verbose=0)
    rng = np.random.default_rng(0)
    x = {"a": rng.normal(size=(6, 16)).astype("float32"), "b": rng.normal(size=(6, 8, 8, 1)).astype("float32")}
    return run, mmkeras.load_encoder(run), x


def test_a_run_exported_as_a_preset_encodes_identically(trained, tmp_path):
    run, source, x = trained
    path = export_preset(run, tmp_path / "preset")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "metadata.json", "model.weights.h5"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the temporary sibling is gone
    meta = json.loads((path / "metadata.json").read_text())
    assert meta["keras_version"] and meta["mmkeras_version"] == mmkeras.__version__
    assert meta["parameter_count"] == source.count_params()
    block = meta["mmkeras"]
    assert block["kind"] == "multimodal_encoder" and block["modalities"] == ["a", "b"]
    assert block["input_shapes"] == SHAPES and block["feature_shapes"] == {"a": [8], "b": [8]}
    assert block["joint_latent_shape"] == [8] and block["recipe"] == "tiny" and block["run"] == str(run.resolve())
    assert json.loads((path / "config.json").read_text())["class_name"] == "MultimodalEncoder"

    loaded = mmkeras.load_encoder(path)
    for subset in (None, ["a"], ["b"]):
        np.testing.assert_array_equal(loaded.encode(x, subset), source.encode(x, subset))
    np.testing.assert_array_equal(loaded.encode(x, output="feature"), source.encode(x, output="feature"))
    # the layer of one modality, taken out of the multimodal preset
    a = load_modality_encoder(path, "a")
    np.testing.assert_array_equal(np.asarray(a(x["a"])), np.asarray(source.encoders["a"](x["a"])))


def test_one_modality_preset_gives_that_encoders_features(trained, tmp_path):
    run, source, x = trained
    path = export_preset(run, tmp_path / "b", modality="b")
    block = json.loads((path / "metadata.json").read_text())["mmkeras"]
    assert block["kind"] == "modality_encoder" and block["modality"] == "b" and block["input_shape"] == [8, 8, 1]
    expected = np.asarray(source.encoders["b"](x["b"], training=False))
    layer = load_modality_encoder(path)
    assert layer.name == "b_encoder" and layer.count_params() == source.encoders["b"].count_params()
    np.testing.assert_array_equal(np.asarray(layer(x["b"], training=False)), expected)
    # load_encoder wraps it: one encoder, a mean fusion, no head, so encode gives its features
    wrapped = load_preset(path)
    assert wrapped.modalities == ["b"] and wrapped.head is None
    np.testing.assert_array_equal(wrapped.encode({"b": x["b"]}), expected)
    with pytest.raises(MMKerasError, match=r"has no modality 'a' \(its modalities: b\)"):
        load_modality_encoder(path, "a")


def test_cli_exports_one_modality_and_names_the_modalities_on_a_wrong_one(trained, tmp_path):
    run, source, x = trained
    out = run_cli("export", run, "--preset", tmp_path / "a", "--modality", "a")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == f"wrote the a encoder of {run} as a preset in {tmp_path / 'a'}"
    layer = load_modality_encoder(tmp_path / "a", "a")
    expected = np.asarray(source.encoders["a"](x["a"], training=False))
    np.testing.assert_array_equal(np.asarray(layer(x["a"], training=False)), expected)
    out = run_cli("export", run, "--preset", tmp_path / "p", "--modality", "aa")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"error: {run} has no modality 'aa'; did you mean 'a'? (its modalities: a, b)"
    ]
    assert not (tmp_path / "p").exists()


def test_a_fresh_process_loads_the_same_vectors(trained, tmp_path):
    run, source, x = trained
    out = run_cli("export", run, "--preset", tmp_path / "all")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == f"wrote the multimodal encoder of {run} as a preset in {tmp_path / 'all'}"
    export_preset(run, tmp_path / "b", modality="b")
    np.savez(tmp_path / "x.npz", **x)
    script = (
        "import sys, numpy as np, mmkeras\n"
        "from mmkeras.preset import load_modality_encoder\n"
        "d, x = sys.argv[1], dict(np.load(sys.argv[2]))\n"
        "z = mmkeras.load_encoder(d + '/all').encode(x)\n"
        "f = np.asarray(load_modality_encoder(d + '/b')(x['b'], training=False))\n"
        "np.savez(d + '/out.npz', z=z, f=f)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), str(tmp_path / "x.npz")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    got = np.load(tmp_path / "out.npz")
    np.testing.assert_array_equal(got["z"], source.encode(x))
    np.testing.assert_array_equal(got["f"], np.asarray(source.encoders["b"](x["b"], training=False)))


def test_model_init_from_a_preset_starts_from_its_weights(trained, tmp_path):
    run, source, x = trained
    path = export_preset(run, tmp_path / "preset")
    doc = synthetic_recipe(seed=3)
    doc["model"]["init_from"] = str(path)
    model = mmkeras.build_model(mmkeras.recipe_from_dict(doc), SHAPES)
    np.testing.assert_array_equal(model.encode(x), source.encode(x))
    fresh = mmkeras.build_model(mmkeras.recipe_from_dict(synthetic_recipe(seed=3)), SHAPES)
    assert not np.allclose(fresh.encode(x), source.encode(x))  # the equality above is the copy's


def test_an_existing_directory_is_never_written_into(trained, tmp_path):
    _, source, _ = trained
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(MMKerasError, match=r"mine is not empty; nothing was written there"):
        save_preset(source, target)
    assert [p.name for p in target.iterdir()] == ["notes.txt"] and (target / "notes.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(MMKerasError, match="file is a file; give a new directory"):
        save_preset(source, tmp_path / "file")
    empty = tmp_path / "empty"
    empty.mkdir()  # an empty directory is taken
    assert mmkeras.save_preset(source, empty) == empty and (empty / "model.weights.h5").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "file", "mine"]


def test_a_keras_hub_preset_is_refused_with_what_to_use(tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=64, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32, max_sequence_length=12
    )
    backbone.save_to_preset(str(tmp_path / "bert"))
    with pytest.raises(MMKerasError) as info:
        mmkeras.load_encoder(tmp_path / "bert")
    assert str(info.value) == (
        f"{tmp_path / 'bert'} is a keras-hub preset (BertBackbone), not an mmkeras encoder preset; to use it as "
        f"a modality encoder, give it to the keras_model encoder: {{name: keras_model, params: {{preset: "
        f"{tmp_path / 'bert'}}}}}"
    )


def test_missing_and_corrupt_presets_are_one_line_errors(trained, tmp_path):
    import shutil

    run, _, _ = trained
    good = export_preset(run, tmp_path / "good")
    with pytest.raises(MMKerasError, match=r"nowhere: no such directory \(expected an mmkeras preset"):
        load_preset(tmp_path / "nowhere")
    with pytest.raises(MMKerasError, match="nowhere: no saved encoder there"):
        mmkeras.load_encoder(tmp_path / "nowhere")
    for name, damage, message in [
        ("metadata.json", "{not json", r"metadata.json is corrupt or unreadable \(Expecting property name"),
        ("config.json", "[1, 2]", "config.json is corrupt: expected a JSON object"),
        ("model.weights.h5", "not hdf5", "cannot load the weights .*model.weights.h5: "),
    ]:
        bad = tmp_path / f"bad_{name}"
        shutil.copytree(good, bad)
        (bad / name).write_text(damage)
        with pytest.raises(MMKerasError, match=message) as info:
            mmkeras.load_encoder(bad)
        assert "\n" not in str(info.value)
    (bad / "model.weights.h5").unlink()
    with pytest.raises(MMKerasError, match=r"no model.weights.h5 there \(expected an mmkeras preset: a directory"):
        load_preset(bad)


def test_loading_is_in_safe_mode(tmp_path):
    import keras

    from mmkeras.encoder import MultimodalEncoder
    from mmkeras.fusions.mean import MeanFusion

    encoder = MultimodalEncoder({"a": keras.layers.Lambda(lambda t: t * 2.0)}, MeanFusion(), input_shapes={"a": [4]})
    path = save_preset(encoder, tmp_path / "lambda")
    with pytest.raises(MMKerasError, match=r"cannot rebuild the encoder of .*config.json: .*safe_mode"):
        load_preset(path)


def test_a_recipe_reuses_a_preset_encoder_through_the_pretrained_encoder(trained, tmp_path):
    run, source, x = trained
    whole = export_preset(run, tmp_path / "all")
    only_b = export_preset(run, tmp_path / "b", modality="b")
    doc = synthetic_recipe(seed=4)
    doc["modalities"]["a"]["encoder"] = {
        "name": "pretrained",
        "params": {"preset": str(whole), "modality": "a", "trainable": "frozen"},
    }
    doc["modalities"]["b"]["encoder"] = {"name": "pretrained", "params": {"preset": str(only_b)}}
    model = mmkeras.build_model(mmkeras.recipe_from_dict(doc), SHAPES)
    for m in ("a", "b"):  # same sizes as trained: no projection, the features start exactly as trained
        np.testing.assert_array_equal(
            np.asarray(model.encoders[m](x[m], training=False)),
            np.asarray(source.encoders[m](x[m], training=False)),
        )
