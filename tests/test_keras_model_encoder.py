"""The keras_model and pretrained encoders: any Keras model, keras-hub backbone or exported mmkeras
encoder as a modality encoder; trained, saved and reloaded without its source; frozen and unfrozen."""

import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import synthetic_recipe

import mmkeras
from mmkeras.encoders.keras_model import KerasModelEncoder
from mmkeras.errors import MMKerasError, RecipeError

keras_hub = pytest.importorskip("keras_hub")

TOKENS, VOCAB = 6, 50
BERT = {
    "vocabulary_size": VOCAB,
    "num_layers": 1,
    "num_heads": 2,
    "hidden_dim": 16,
    "intermediate_dim": 32,
    "max_sequence_length": 12,
}
VIT = {"image_shape": [8, 8, 3], "patch_size": 4, "num_layers": 1, "num_heads": 2, "hidden_dim": 16, "mlp_dim": 32}


def _recipe(a, b, feature_dim=8, **over):
    doc = synthetic_recipe(evaluate=[], model__feature_dim=feature_dim, **over)
    doc["modalities"] = {"a": {"encoder": a}, "b": {"encoder": b}}
    return mmkeras.recipe_from_dict(doc)


def _tokens(rows, seed=0):
    ids = np.random.default_rng(seed).integers(1, VOCAB, (rows, TOKENS)).astype("int32")
    ids[:, TOKENS - 2 :] = 0  # padding
    return ids


def _images(rows, shape, seed=0):
    return np.random.default_rng(seed).random((rows, *shape)).astype("float32")


def _mlp_file(path, width=16, depth=3):
    """A functional Keras model saved as a .keras file: ``depth`` Dense layers."""
    x = inputs = keras.Input((width,))
    for i in range(depth):
        x = keras.layers.Dense(width, activation="relu", name=f"dense_{i}")(x)
    keras.Model(inputs, x, name="user_mlp").save(path)
    return str(path)


def _numpy_weights(layer):
    return [np.array(keras.ops.convert_to_numpy(w)) for w in layer.weights]


def _encode_in_fresh_process(tmp_path, model_file, encoder_file, x):
    """``encode(x)`` of the saved model and of the saved encoder, each loaded in a new process."""
    np.savez(tmp_path / "x.npz", **x)
    code = (
        "import sys, numpy as np, mmkeras; x = dict(np.load(sys.argv[1]));"
        "np.save(sys.argv[4], mmkeras.load_model(sys.argv[2]).encode(x));"
        "np.save(sys.argv[5], mmkeras.load_encoder(sys.argv[3]).encode(x))"
    )
    args = [tmp_path / "x.npz", model_file, encoder_file, tmp_path / "m.npy", tmp_path / "e.npy"]
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return np.load(tmp_path / "m.npy"), np.load(tmp_path / "e.npy")


def _train_save_reload(model, x, tmp_path, sources, fresh_process=True):
    """One training step, saved, the sources deleted, reloaded (in a fresh process): equal outputs."""
    before = _numpy_weights(model)
    model.fit(x, np.zeros(len(x["a"])), batch_size=len(x["a"]), epochs=1, verbose=0)
    assert any(not np.array_equal(b, a) for b, a in zip(before, _numpy_weights(model)))
    model.save(tmp_path / "model.keras")
    model.encoder.save(tmp_path / "encoder.keras")
    for source in sources:  # the saved files must not need the network's original file or preset
        shutil.rmtree(source) if source.is_dir() else source.unlink()
    model_file, encoder_file = tmp_path / "model.keras", tmp_path / "encoder.keras"
    if fresh_process:
        from_model, from_encoder = _encode_in_fresh_process(tmp_path, model_file, encoder_file, x)
    else:
        from_model = mmkeras.load_model(str(model_file)).encode(x)
        from_encoder = mmkeras.load_encoder(str(encoder_file)).encode(x)
    expected = model.encode(x)
    np.testing.assert_array_equal(from_model, expected)
    np.testing.assert_array_equal(from_encoder, expected)


def test_a_keras_hub_preset_and_a_keras_file_reload_without_their_sources(tmp_path):
    keras_hub.models.BertBackbone(**BERT).save_to_preset(str(tmp_path / "bert"))
    recipe = _recipe(
        {"name": "keras_model", "params": {"preset": str(tmp_path / "bert"), "output": "mean"}},
        {"name": "keras_model", "params": {"path": _mlp_file(tmp_path / "user.keras")}},
    )
    model = mmkeras.build_model(recipe, {"a": [TOKENS], "b": [16]})
    x = {"a": _tokens(4), "b": _images(4, (16,))}
    _train_save_reload(model, x, tmp_path, [tmp_path / "bert", tmp_path / "user.keras"], fresh_process=False)


@pytest.mark.slow  # two fresh processes import TensorFlow and keras-hub (20-50 s on 2 shared cores)
def test_keras_hub_presets_train_save_and_reload_in_a_fresh_process(tmp_path):
    keras_hub.models.BertBackbone(**BERT).save_to_preset(str(tmp_path / "bert"))
    keras_hub.models.ViTBackbone(**VIT).save_to_preset(str(tmp_path / "vit"))
    recipe = _recipe(
        {"name": "keras_model", "params": {"preset": str(tmp_path / "bert")}},
        {"name": "keras_model", "params": {"preset": str(tmp_path / "vit")}},
    )
    model = mmkeras.build_model(recipe, {"a": [TOKENS], "b": [8, 8, 3]})
    assert model.encoders["a"].network.__class__.__name__ == "BertBackbone"
    x = {"a": _tokens(4), "b": _images(4, (8, 8, 3))}
    _train_save_reload(model, x, tmp_path, [tmp_path / "bert", tmp_path / "vit"])


@pytest.mark.slow  # a fresh process imports TensorFlow and keras-hub
def test_a_keras_file_and_a_backbone_by_name_train_save_and_reload(tmp_path):
    recipe = _recipe(
        {"name": "keras_model", "params": {"backbone": "BertBackbone", "config": BERT, "output": "cls"}},
        {"name": "keras_model", "params": {"path": _mlp_file(tmp_path / "user.keras")}},
    )
    model = mmkeras.build_model(recipe, {"a": [TOKENS], "b": [16]})
    x = {"a": _tokens(4), "b": _images(4, (16,))}
    _train_save_reload(model, x, tmp_path, [tmp_path / "user.keras"])


def test_frozen_and_last_layer_only_networks_keep_their_weights(tmp_path):
    frozen = {"name": "keras_model", "params": {"path": _mlp_file(tmp_path / "a.keras"), "trainable": "frozen"}}
    last = {"name": "keras_model", "params": {"path": _mlp_file(tmp_path / "b.keras"), "trainable_layers": 1}}
    model = mmkeras.build_model(_recipe(frozen, last), {"a": [16], "b": [16]})
    nets = {m: model.encoders[m].network for m in ("a", "b")}
    before = {m: [_numpy_weights(layer) for layer in nets[m].layers[1:]] for m in nets}
    projection = _numpy_weights(model.encoders["a"].projector)
    x = {"a": _images(8, (16,)), "b": _images(8, (16,), seed=1)}
    model.fit(x, np.zeros(8), batch_size=4, epochs=1, verbose=0)
    after = {m: [_numpy_weights(layer) for layer in nets[m].layers[1:]] for m in nets}
    for b, a in zip(before["a"], after["a"]):  # frozen: every network weight as it was
        for w0, w1 in zip(b, a):
            np.testing.assert_array_equal(w0, w1)
    assert not np.array_equal(projection[0], _numpy_weights(model.encoders["a"].projector)[0])  # its head trains
    moved = [any(not np.array_equal(w0, w1) for w0, w1 in zip(b, a)) for b, a in zip(before["b"], after["b"])]
    assert moved == [False, False, True]  # trainable_layers: 1, the last Dense only


def test_unfreeze_after_trains_from_that_epoch_and_a_resumed_fit_keeps_the_schedule(tmp_path):
    spec = {"name": "keras_model", "params": {"path": _mlp_file(tmp_path / "a.keras"), "unfreeze_after": 1}}
    plain = {"name": "mlp", "params": {"hidden_units": [8]}}
    recipe = _recipe(spec, plain)
    model = mmkeras.build_model(recipe, {"a": [16], "b": [16]})
    net = model.encoders["a"].network
    assert not net.trainable_weights  # frozen at epoch 0
    snapshots = [_numpy_weights(net)]

    class Snapshot(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append(_numpy_weights(net))

    x = {"a": _images(8, (16,)), "b": _images(8, (16,), seed=1)}
    model.fit(x, np.zeros(8), batch_size=4, epochs=2, verbose=0, callbacks=[Snapshot()])
    same = [all(np.array_equal(u, v) for u, v in zip(s, t)) for s, t in zip(snapshots, snapshots[1:])]
    assert same == [True, False]  # unchanged through epoch 1, trained in epoch 2
    # the optimizer was built over the network's weights from the start: one layout throughout
    layout = _layout(model.optimizer)
    assert len(model.optimizer_variables()) == len(model.trainable_variables)

    # resumed at epoch 1 from a checkpoint written while frozen: the same layout, and the network trains
    first = mmkeras.build_model(recipe, {"a": [16], "b": [16]})
    first.fit(x, np.zeros(8), batch_size=4, epochs=1, verbose=0)
    first.save_weights(tmp_path / "epoch-1.weights.h5")
    resumed = mmkeras.build_model(recipe, {"a": [16], "b": [16]})
    from mmkeras.checkpoint import _build_optimizer

    _build_optimizer(resumed)
    resumed.load_weights(tmp_path / "epoch-1.weights.h5")
    assert _layout(resumed.optimizer) == layout
    start = _numpy_weights(resumed.encoders["a"].network)
    np.testing.assert_array_equal(start[0], _numpy_weights(first.encoders["a"].network)[0])
    resumed.fit(x, np.zeros(8), batch_size=4, epochs=2, initial_epoch=1, verbose=0)
    assert not np.array_equal(start[0], _numpy_weights(resumed.encoders["a"].network)[0])


def _layout(optimizer):
    """The optimizer's variables by name (without the optimizer's own numbered name) and shape."""
    return [(v.path.split("/", 1)[-1], tuple(v.shape)) for v in optimizer.variables]


def _masked_mean(sequence, ids):
    mask = (ids != 0).astype("float32")[..., None]
    return (sequence * mask).sum(1) / mask.sum(1)


def test_each_output_mode_gives_its_shape_and_values(tmp_path):
    ids = _tokens(3)
    bert = KerasModelEncoder(16, backbone="BertBackbone", config=BERT, projection=False, output="pooled")
    bert.build((None, TOKENS))
    out = bert.network({"token_ids": ids, "padding_mask": (ids != 0).astype("int32"), "segment_ids": 0 * ids})
    sequence, pooled = (np.asarray(out[k]) for k in ("sequence_output", "pooled_output"))
    expected = {"pooled": pooled, "cls": sequence[:, 0], "mean": _masked_mean(sequence, ids), "tokens": sequence}
    config = bert.get_config()
    for mode, value in expected.items():
        encoder = KerasModelEncoder.from_config({**config, "output": mode})  # the same weights' config
        encoder.build((None, TOKENS))
        encoder.network.set_weights(bert.network.get_weights())
        got = np.asarray(encoder(ids))
        assert got.shape == ((3, TOKENS, 16) if mode == "tokens" else (3, 16)), mode
        np.testing.assert_allclose(got, value, rtol=1e-5, atol=1e-6, err_msg=mode)
    # projected: per token for tokens, [B, output_dim] otherwise
    vit = KerasModelEncoder(8, backbone="ViTBackbone", config=VIT, output="tokens")
    assert tuple(vit(_images(2, (8, 8, 3))).shape) == (2, 5, 8)
    assert vit.compute_output_shape((2, 8, 8, 3)) == (2, 5, 8)
    assert tuple(KerasModelEncoder(8, backbone="ViTBackbone", config=VIT)(_images(2, (8, 8, 3))).shape) == (2, 8)
    # a feature map: pooled is the spatial mean, tokens the positions in row-major order
    inputs = keras.Input((4, 4, 2))
    conv = keras.Model(inputs, keras.layers.Conv2D(3, 1)(inputs))
    conv.save(tmp_path / "conv.keras")
    images = _images(2, (4, 4, 2))
    maps = np.asarray(conv(images))
    for mode, value in {"auto": maps.mean((1, 2)), "tokens": maps.reshape(2, 16, 3)}.items():
        encoder = KerasModelEncoder(3, path=str(tmp_path / "conv.keras"), projection=False, output=mode)
        np.testing.assert_allclose(np.asarray(encoder(images)), value, rtol=1e-5, atol=1e-6, err_msg=mode)


def test_an_application_builds_on_the_modality_shape_and_reads_a_local_weights_file(tmp_path):
    config = {"alpha": 0.25, "pooling": None}
    encoder = KerasModelEncoder(8, application="MobileNet", config=config, trainable="frozen")
    images = _images(2, (32, 32, 3))
    first = np.asarray(encoder(images))
    assert first.shape == (2, 8) and encoder.network.input_shape == (None, 32, 32, 3)
    encoder.network.save_weights(tmp_path / "mobilenet.weights.h5")
    again = KerasModelEncoder(8, application="MobileNet", config=config, weights=str(tmp_path / "mobilenet.weights.h5"))
    again.build((None, 32, 32, 3))
    again.projector.set_weights(encoder.projector.get_weights())
    np.testing.assert_allclose(np.asarray(again(images)), first, rtol=1e-5, atol=1e-6)


def test_a_pretrained_mmkeras_encoder_is_reused_as_trained_and_saved_without_its_preset(tmp_path):
    from mmkeras.preset import save_preset

    shapes = {"a": [16], "b": [8, 8, 1]}
    source = mmkeras.build_model(mmkeras.recipe_from_dict(synthetic_recipe(evaluate=[])), shapes)
    save_preset(source.encoder, tmp_path / "preset", modality="b")
    x = {"a": _images(4, (16,)), "b": _images(4, (8, 8, 1))}
    reuse = {"name": "pretrained", "params": {"preset": str(tmp_path / "preset")}}
    model = mmkeras.build_model(_recipe({"name": "mlp", "params": {"hidden_units": [8]}}, reuse), shapes)
    assert model.encoders["b"].projector is None  # the sizes agree: the features start as trained
    np.testing.assert_array_equal(
        model.encode_each(x, ["b"], output="feature")["b"], source.encode_each(x, ["b"], output="feature")["b"]
    )
    wider = mmkeras.build_model(_recipe({"name": "mlp", "params": {}}, reuse, feature_dim=4), shapes)
    assert wider.encode_each(x, ["b"], output="feature")["b"].shape == (4, 4)  # projected to feature_dim
    _train_save_reload(model, x, tmp_path, [tmp_path / "preset"])


def test_a_pretrained_preset_that_is_missing_or_lacks_the_modality_is_named(tmp_path):
    from mmkeras.preset import save_preset

    shapes = {"a": [16], "b": [8, 8, 1]}
    source = mmkeras.build_model(mmkeras.recipe_from_dict(synthetic_recipe(evaluate=[])), shapes)
    save_preset(source.encoder, tmp_path / "preset")
    plain = {"name": "mlp", "params": {}}
    for params, message in [
        ({"preset": str(tmp_path / "nowhere")}, "nowhere is not a directory: write a preset there with"),
        ({"preset": str(tmp_path / "preset")}, "holds the encoders of a, b: choose one with modality"),
    ]:
        with pytest.raises(RecipeError, match=r"modalities\.b\.encoder[.a-z]*: pretrained: .*" + message):
            mmkeras.build_model(_recipe(plain, {"name": "pretrained", "params": params}), shapes)


def _error(spec, shapes=None):
    """The one-line error building a model with ``spec`` as modality a's encoder gives."""
    with pytest.raises(MMKerasError) as info:
        mmkeras.build_model(_recipe(spec, {"name": "mlp", "params": {}}), shapes or {"a": [16], "b": [4]})
    assert "\n" not in str(info.value), str(info.value)
    return str(info.value)


def test_errors_name_the_file_the_extra_the_sizes_and_the_output(tmp_path, monkeypatch):
    user = _mlp_file(tmp_path / "user.keras")
    keras_model = "modalities.a.encoder: keras_model: "
    # a missing source is found when the recipe is validated, under the parameter's key
    assert _error({"name": "keras_model", "params": {"path": str(tmp_path / "no.keras")}}) == (
        f"<recipe>: modalities.a.encoder.params.path: keras_model: {tmp_path / 'no.keras'} does not exist "
        "(expected a .keras file)"
    )
    message = _error({"name": "keras_model", "params": {"path": user, "projection": False}})
    assert message.endswith(
        "the network's vector output has size 16 but output_dim (model.feature_dim) is 8; "
        "set projection: true or feature_dim: 16"
    )
    message = _error({"name": "keras_model", "params": {"path": user, "output": "cls"}})
    assert message.endswith(
        "output 'cls' is not available: the network returns a vector [B, 16] (outputs it offers: auto, pooled)"
    )
    message = _error({"name": "keras_model", "params": {"backbone": "BertBackbon", "config": BERT}})
    assert message == f"{keras_model}backbone: unknown keras-hub backbone 'BertBackbon'; did you mean 'BertBackbone'?"
    message = _error({"name": "keras_model", "params": {"path": user, "backbone": "BertBackbone"}})
    assert message == f"{keras_model}give exactly one source of the network: path, preset, backbone or application " + (
        "(got ['path', 'backbone'])"
    )
    message = _error({"name": "keras_model", "params": {"preset": "bert_tiny_en_uncased"}})
    assert message.startswith(f"{keras_model}preset: cannot load the handle 'bert_tiny_en_uncased' (")
    assert message.endswith("a local preset directory (saved with save_to_preset) works offline")
    # a Lambda layer is code: safe_mode refuses the file
    inputs = keras.Input((16,))
    keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(inputs)).save(tmp_path / "lambda.keras")
    message = _error({"name": "keras_model", "params": {"path": str(tmp_path / "lambda.keras")}})
    assert message == (
        f"{keras_model}path: {tmp_path / 'lambda.keras'} holds a Lambda layer or other code that safe_mode "
        "refuses to load; rebuild the model with registered layers"
    )
    monkeypatch.setitem(sys.modules, "keras_hub", None)  # as if keras-hub were not installed
    message = _error({"name": "keras_model", "params": {"backbone": "BertBackbone", "config": BERT}})
    assert message == (
        "<recipe>: modalities.a.encoder.params.backbone: keras_model: the keras_model encoder's preset/backbone "
        "sources need keras-hub: pip install 'mmkeras[hub]'"
    )


def _encoder_specs(node):
    if isinstance(node, dict):
        if isinstance(node.get("encoder"), dict):
            yield node["encoder"]
        for value in node.values():
            yield from _encoder_specs(value)


def test_every_encoder_snippet_in_the_docs_validates():
    import re

    import yaml
    from conftest import ROOT

    from mmkeras.recipe import check_params
    from mmkeras.registry import registry

    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "docs" / "encoders.md").read_text(), re.S)
    specs = [spec for block in blocks for spec in _encoder_specs(yaml.safe_load(block))]
    assert len(specs) == 7
    for spec in specs:
        cls = registry.get("encoders", spec["name"])
        _, problems = check_params(cls, spec["name"], {"output_dim": 8, **spec["params"]}, ())
        assert not problems, (spec, problems)


def test_the_encoder_passes_the_conformance_kit(tmp_path):
    from mmkeras.testing import check_encoder

    check_encoder(KerasModelEncoder, {"path": _mlp_file(tmp_path / "user.keras")}, input_shape=(16,))
    check_encoder(
        KerasModelEncoder, {"backbone": "ViTBackbone", "config": VIT, "output": "mean"}, input_shape=(8, 8, 3)
    )


def test_validate_names_a_missing_source_before_train_claims_a_run_directory(tmp_path):
    """`mmkeras validate` (load_recipe) refuses what the builder would: a missing .keras file,
    preset directory or weights file, with the recipe key and line."""
    from mmkeras.errors import RecipeError
    from mmkeras.recipe import load_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: r\ndata: {dataset: arrays, params: {synthetic: true, num_samples: 16}}\n"
        "modalities:\n"
        f"  a: {{encoder: {{name: keras_model, params: {{path: {tmp_path}/none.keras}}}}}}\n"
        f"  b: {{encoder: {{name: pretrained, params: {{preset: {tmp_path}/p}}}}}}\n"
        "objective: {name: infonce}\n"
    )
    with pytest.raises(RecipeError) as caught:
        load_recipe(recipe)
    problems = caught.value.problems
    assert len(problems) == 2
    assert f"r.yaml:4: modalities.a.encoder.params.path: keras_model: {tmp_path}/none.keras does not" in problems[0]
    assert f"r.yaml:5: modalities.b.encoder.params.preset: pretrained: {tmp_path}/p is not a directory" in problems[1]
    assert f"mmkeras export RUN --preset {tmp_path}/p" in problems[1]
