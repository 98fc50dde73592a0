"""Serving export: a SavedModel with one signature per modality subset, loaded with plain
TensorFlow (no mmkeras), and ONNX files read by onnxruntime; both give the vectors of encode."""

import importlib.util
import json
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import ROOT, run_cli, synthetic_recipe

import mmkeras
from mmkeras.encoder import MultimodalEncoder
from mmkeras.encoders.conv2d import Conv2DEncoder
from mmkeras.encoders.mlp import MLPEncoder
from mmkeras.errors import MMKerasError
from mmkeras.fusions.concat import ConcatFusion
from mmkeras.heads.mlp import MLPHead
from mmkeras.runs import train
from mmkeras.serving import export_serving

# loads a SavedModel and calls every signature with plain TensorFlow; mmkeras must stay unimported
SERVE = r"""
import json, sys
import numpy as np, tensorflow as tf
inputs, out, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
x = dict(np.load(inputs))
outputs, specs = {}, {}
for i, path in enumerate(paths):
    loaded = tf.saved_model.load(path)
    for name, fn in loaded.signatures.items():
        given = fn.structured_input_signature[1]
        specs[f"{i}/{name}"] = {m: [s.dtype.name, s.shape.as_list()] for m, s in given.items()}
        outputs[f"{i}/{name}"] = fn(**{m: tf.constant(x[m]) for m in given})["embedding"].numpy()
np.savez(out, **outputs)
assert "mmkeras" not in sys.modules, "the SavedModel needed mmkeras"
print(json.dumps(specs))
"""


def _serve_in_plain_tensorflow(paths, x, tmp_path):
    """For each SavedModel in ``paths``: each signature's embedding of ``x``, and its inputs' dtypes
    and shapes, from one fresh process that never imports mmkeras."""
    np.savez(tmp_path / "inputs.npz", **x)
    done = subprocess.run(
        [sys.executable, "-c", SERVE, str(tmp_path / "inputs.npz"), str(tmp_path / "outputs.npz"), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outputs, specs = dict(np.load(tmp_path / "outputs.npz")), json.loads(done.stdout.strip().splitlines()[-1])
    return [
        (
            {k.split("/")[1]: v for k, v in outputs.items() if k.startswith(f"{i}/")},
            {k.split("/")[1]: v for k, v in specs.items() if k.startswith(f"{i}/")},
        )
        for i in range(len(paths))
    ]


def _token_encoder(output_dim):
    """Token ids [B, 6] (int32 in serving) to [B, output_dim]: plain Keras layers."""
    return keras.Sequential(
        [keras.layers.Embedding(20, 8), keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(output_dim)],
        name="t_encoder",
    )


def _inputs(rows=7, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "a": rng.normal(size=(rows, 16)).astype("float32"),
        "b": rng.normal(size=(rows, 8, 8, 1)).astype("float32"),
        "t": rng.integers(0, 20, size=(rows, 6)).astype("int32"),
    }


@pytest.fixture(scope="module")
def gmc_encoder_file(tmp_path_factory):
    """A GMC-like encoder of three modalities (one of int token ids): joint encoders, concat
    fusion, a normalising shared head, subset_encoding "mean"; saved as encoder.keras."""
    keras.utils.set_random_seed(0)

    def encoders(suffix):
        return {
            "a": MLPEncoder(8, hidden_units=[16], name=f"a_{suffix}"),
            "b": Conv2DEncoder(8, filters=[4], kernel_size=3, name=f"b_{suffix}"),
            "t": _token_encoder(8),
        }

    encoder = MultimodalEncoder(
        encoders("encoder"),
        ConcatFusion(8, name="fusion"),
        MLPHead(4, hidden_units=[8], normalize=True, name="head"),
        joint_encoders=encoders("joint_encoder"),
        input_shapes={"a": [16], "b": [8, 8, 1], "t": [6]},
        subset_encoding="mean",
    )
    encoder.build()
    path = tmp_path_factory.mktemp("gmc") / "encoder.keras"
    encoder.save(path)
    return path


@pytest.fixture(scope="module")
def fusion_run(tmp_path_factory):
    """A trained run of two modalities whose incomplete subsets go through the concat fusion."""
    doc = synthetic_recipe(model__fusion={"name": "concat"}, evaluate=[])
    return train(mmkeras.recipe_from_dict(doc), tmp_path_factory.mktemp("run") / "fusion", verbose=0).path


def test_every_signature_gives_encode_s_vectors_in_a_process_without_mmkeras(gmc_encoder_file, tmp_path):
    encoder = mmkeras.load_encoder(gmc_encoder_file)
    lines = export_serving(gmc_encoder_file, tmp_path / "default", dtypes={"t": "int32"})
    chosen = [["t", "a"], ["b", "a"]]
    export_serving(gmc_encoder_file, tmp_path / "chosen", subsets=chosen, output="feature", dtypes={"t": "int32"})
    x = _inputs()
    (got, specs), (features, _) = _serve_in_plain_tensorflow([tmp_path / "default", tmp_path / "chosen"], x, tmp_path)

    subsets = {"serve_a_b_t": ["a", "b", "t"], "serve_a": ["a"], "serve_b": ["b"], "serve_t": ["t"]}
    assert sorted(got) == sorted([*subsets, "serving_default"])
    for name, subset in subsets.items():
        np.testing.assert_allclose(got[name], encoder.encode(x, subset), rtol=0, atol=1e-6, err_msg=name)
    np.testing.assert_array_equal(got["serving_default"], got["serve_a_b_t"])  # the full set by default
    assert specs["serve_t"] == {"t": ["int32", [None, 6]]}
    assert specs["serve_a_b_t"]["b"] == ["float32", [None, 8, 8, 1]]
    assert got["serve_a"].shape == (7, 4) and got["serve_a"].dtype == np.float32
    assert lines[1] == "  serve_a_b_t (serving_default): a, b, t -> embedding float32[None, 4] (latent)"
    assert lines[-2] == "  inputs: a float32[None, 16], b float32[None, 8, 8, 1], t int32[None, 6] (dtypes as given)"
    load = f'  load: tf.saved_model.load("{tmp_path / "default"}").signatures["serve_a_b_t"](a=..., b=..., t=...)'
    assert lines[-1] == load + '["embedding"]'

    # subset_encoding "mean": an incomplete subset is the mean of its modalities' features
    assert sorted(features) == ["serve_a_b", "serve_a_t", "serving_default"]
    for name, subset in (("serve_a_t", ["a", "t"]), ("serve_a_b", ["a", "b"])):
        each = encoder.encode_each(x, subset, output="feature")
        np.testing.assert_allclose(features[name], (each[subset[0]] + each[subset[1]]) / 2, rtol=0, atol=1e-6)
        np.testing.assert_allclose(features[name], encoder.encode(x, subset, output="feature"), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(features["serving_default"], features["serve_a_t"])  # the first subset asked


def test_the_cli_exports_the_subsets_asked_with_the_fusion_rule(fusion_run, tmp_path):
    done = run_cli("export", fusion_run, "--format", "saved_model", "--subset", "a", "--subset", "a,b")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0] == f"wrote a SavedModel of {fusion_run} to {fusion_run / 'saved_model'}"
    assert lines[1] == "  serve_a (serving_default): a -> embedding float32[None, 8] (latent)"
    assert "(dtypes as the run's dataset declares them)" in lines[3]
    encoder = mmkeras.load_encoder(fusion_run)
    x = {k: v for k, v in _inputs(rows=9, seed=2).items() if k != "t"}
    ((got, specs),) = _serve_in_plain_tensorflow([fusion_run / "saved_model"], x, tmp_path)
    assert sorted(got) == ["serve_a", "serve_a_b", "serving_default"]
    np.testing.assert_allclose(got["serve_a"], encoder.encode(x, ["a"]), rtol=0, atol=1e-6)
    np.testing.assert_allclose(got["serve_a_b"], encoder.encode(x), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got["serving_default"], got["serve_a"])
    # the fusion rule: a alone is the fused feature with b masked out, not a's own latent
    assert not np.allclose(got["serve_a"], encoder.encode_each(x, ["a"])["a"], atol=1e-3)
    assert specs["serve_a_b"] == {"a": ["float32", [None, 16]], "b": ["float32", [None, 8, 8, 1]]}
    again = run_cli("export", fusion_run, "--format", "saved_model")
    assert again.returncode == 2
    assert (
        again.stderr.strip()
        .splitlines()[-1]
        .endswith(
            f"{fusion_run / 'saved_model'} already exists; refusing to overwrite it (remove it or choose another --out)"
        )
    )


def test_an_existing_path_is_never_overwritten(gmc_encoder_file, tmp_path):
    out = tmp_path / "sm"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(MMKerasError, match=r"sm already exists; refusing to overwrite it"):
        export_serving(gmc_encoder_file, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_an_unknown_modality_names_what_the_encoder_has(gmc_encoder_file, tmp_path):
    with pytest.raises(MMKerasError) as info:
        export_serving(gmc_encoder_file, tmp_path / "sm", subsets=[["a"], ["a", "image"]])
    assert str(info.value) == "export: subset a,image: unknown modality 'image'; the encoder has a, b, t"
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary sibling left
    with pytest.raises(MMKerasError, match="export: unknown format 'tflite'; expected one of saved_model, onnx"):
        export_serving(gmc_encoder_file, tmp_path / "sm", fmt="tflite")
    with pytest.raises(MMKerasError, match=r"export: modality t: unknown dtype 'integer' \(float32, int32"):
        export_serving(gmc_encoder_file, tmp_path / "sm", dtypes={"t": "integer"})
    assert list(tmp_path.iterdir()) == []


def test_token_ids_are_int32_as_the_run_s_dataset_declares(tmp_path):
    pytest.importorskip("mmkeras_text")
    recipe = mmkeras.load_recipe(
        str(ROOT / "recipes" / "clip_text_synthetic.yaml"),
        overrides=["modalities.text.encoder.params.width=8", "model.feature_dim=8", "model.latent_dim=4"],
    )
    model = mmkeras.build_model(recipe, input_shapes={"text": [12], "vector": [16]}, compile=False)
    run = tmp_path / "run"
    run.mkdir()
    model.encoder.save(run / "encoder.keras")
    (run / "recipe.yaml").write_text(recipe.to_yaml())
    lines = export_serving(run, tmp_path / "sm", subsets=["text", "text,vector"])
    assert (
        lines[-2]
        == "  inputs: text int32[None, 12], vector float32[None, 16] (dtypes as the run's dataset declares them)"
    )
    rng = np.random.default_rng(3)
    x = {
        "text": rng.integers(0, 64, size=(6, 12)).astype("int32"),
        "vector": rng.normal(size=(6, 16)).astype("float32"),
    }
    ((got, specs),) = _serve_in_plain_tensorflow([tmp_path / "sm"], x, tmp_path)
    assert specs["serve_text"] == {"text": ["int32", [None, 12]]}
    np.testing.assert_allclose(got["serve_text"], model.encoder.encode(x, ["text"]), rtol=0, atol=1e-6)
    np.testing.assert_allclose(got["serve_text_vector"], model.encoder.encode(x), rtol=0, atol=1e-6)


def test_onnx_without_its_converter_is_a_one_line_error(gmc_encoder_file, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tf2onnx" else real(name, *a))
    with pytest.raises(MMKerasError) as info:
        export_serving(gmc_encoder_file, tmp_path / "onnx", fmt="onnx")
    assert str(info.value) == (
        "export --format onnx needs tf2onnx, which is not installed: "
        "pip install 'mmkeras[onnx]' (tf2onnx and onnxruntime)"
    )
    assert not (tmp_path / "onnx").exists()


def test_onnx_files_give_encode_s_vectors_in_onnxruntime(gmc_encoder_file, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    lines = export_serving(gmc_encoder_file, tmp_path / "onnx", fmt="onnx", dtypes={"t": "int32"})
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == [
        "serve_a.onnx",
        "serve_a_b_t.onnx",
        "serve_b.onnx",
        "serve_t.onnx",
    ]
    assert lines[1] == "  serve_a_b_t.onnx: a, b, t -> embedding float32[None, 4] (latent)"
    encoder = mmkeras.load_encoder(gmc_encoder_file)
    x = _inputs(rows=6, seed=4)
    for subset in (["a", "b", "t"], ["a"], ["b"], ["t"]):
        session = ort.InferenceSession(str(tmp_path / "onnx" / f"serve_{'_'.join(subset)}.onnx"))
        assert sorted(i.name for i in session.get_inputs()) == subset
        (got,) = session.run(["embedding"], {m: x[m] for m in subset})
        # onnxruntime's kernels sum in another order than TensorFlow's
        np.testing.assert_allclose(got, encoder.encode(x, subset), rtol=0, atol=1e-5, err_msg=str(subset))


@pytest.mark.slow  # two backbones traced per subset, a fresh process and a converter run: ~25 s
def test_keras_hub_backbones_inside_serve_the_same_vectors(tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    from mmkeras.encoders.keras_model import KerasModelEncoder

    keras.utils.set_random_seed(1)
    bert = {"vocabulary_size": 30, "num_layers": 1, "num_heads": 2, "hidden_dim": 8, "intermediate_dim": 16}
    vit = {"image_shape": [8, 8, 3], "patch_size": 4, "num_layers": 1, "num_heads": 2, "hidden_dim": 8, "mlp_dim": 16}
    encoder = MultimodalEncoder(
        {
            "text": KerasModelEncoder(8, backbone="BertBackbone", config={**bert, "max_sequence_length": 6}),
            "image": KerasModelEncoder(8, backbone="ViTBackbone", config=vit),
        },
        ConcatFusion(8, name="fusion"),
        MLPHead(4, normalize=True, name="head"),
        input_shapes={"text": [6], "image": [8, 8, 3]},
    )
    encoder.build()
    assert type(encoder.encoders["text"].network) is keras_hub.models.BertBackbone
    encoder.save(tmp_path / "encoder.keras")
    export_serving(tmp_path / "encoder.keras", tmp_path / "sm", dtypes={"text": "int32"})
    rng = np.random.default_rng(5)
    ids = rng.integers(1, 30, size=(4, 6)).astype("int32")
    ids[:, 4:] = 0  # padding
    x = {"text": ids, "image": rng.random((4, 8, 8, 3)).astype("float32")}
    ((got, specs),) = _serve_in_plain_tensorflow([tmp_path / "sm"], x, tmp_path)
    assert specs["serve_text"] == {"text": ["int32", [None, 6]]}
    for subset in (["image", "text"], ["image"], ["text"]):
        name = "serve_" + "_".join(subset)
        np.testing.assert_allclose(got[name], encoder.encode(x, subset), rtol=0, atol=1e-6, err_msg=name)
    if importlib.util.find_spec("tf2onnx") is None or importlib.util.find_spec("onnxruntime") is None:
        return
    # ONNX where the converter translates every op (the ViT's exact GELU it may not): the same
    # vectors, or one line saying which subset failed and that the SavedModel serves it
    import onnxruntime as ort

    try:
        export_serving(tmp_path / "encoder.keras", tmp_path / "onnx", fmt="onnx", dtypes={"text": "int32"})
    except MMKerasError as exc:
        assert str(exc).startswith("export --format onnx: subset image,text: ") and "\n" not in str(exc)
        assert str(exc).endswith("export --format saved_model serves it")
        assert not (tmp_path / "onnx").exists()
        return
    session = ort.InferenceSession(str(tmp_path / "onnx" / "serve_image_text.onnx"))
    (onnx_out,) = session.run(["embedding"], x)
    np.testing.assert_allclose(onnx_out, encoder.encode(x), rtol=0, atol=1e-5)
