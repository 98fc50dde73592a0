"""DMC (deep multimodal clustering): the soft k-means and max-margin loss against numpy written from
the formulas, masks, gradients, the conv encoders' ``output: tokens``, and the MHD recipe."""

import io
import json
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

import mmkeras
from mmkeras.encoders.conv1d import Conv1DEncoder
from mmkeras.encoders.conv2d import Conv2DEncoder
from mmkeras.errors import RecipeError
from mmkeras.losses.dmc import dmc_loss, initial_blocks, soft_kmeans
from mmkeras.objectives.dmc import DMC
from mmkeras.record import Record
from mmkeras.registry import registry

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module", autouse=True)
def dmc_registered():
    """``dmc`` by its entry point once pyproject declares it; registered in this process until then."""
    if "dmc" in registry.names("objectives"):
        yield
        return
    mmkeras.register_objective("dmc")(DMC)
    yield
    registry.remove("objectives", "dmc")


def value(x):
    return float(keras.ops.convert_to_numpy(x))


def record(features, masks=None):
    n = len(next(iter(features.values())))
    masks = masks or {m: np.ones(n, "float32") for m in features}
    return Record(features=features, latents={}, joint_feature=None, joint=None, masks=masks)


# -- numpy, from the formulas -----------------------------------------------------------------
def np_unit(x):
    return x / np.sqrt(np.maximum((x * x).sum(-1, keepdims=True), 1e-12))


def np_kmeans(u, clusters, iterations, tau):
    """One sample's tokens [T, d]: centres from K contiguous blocks, then soft assignment and update."""
    u = u.astype("float64")
    block = np.arange(len(u)) * clusters // len(u)
    c = np.stack([u[block == k].mean(0) for k in range(clusters)])
    for _ in range(iterations):
        e = np.exp(np_unit(u) @ np_unit(c).T / tau)
        s = e / e.sum(1, keepdims=True)
        c = (s.T @ u) / s.sum(0)[:, None]
    return s, c


def np_dmc(ca, cb, margin):
    """The bidirectional hinge over S_ij = mean_k cos(c^a_ik, c^b_jk), averaged over anchors."""
    s = np.einsum("ikd,jkd->ij", np_unit(ca), np_unit(cb)) / ca.shape[1]
    n = len(s)
    off = ~np.eye(n, dtype=bool)
    rows = np.maximum(margin - np.diag(s)[:, None] + s, 0) * off
    cols = np.maximum(margin - np.diag(s)[None, :] + s, 0) * off
    return (rows.sum(1) + cols.sum(0)).mean(), np.diag(s).mean()


# 2 samples x 3 tokens x 2 features per modality
TOKENS = {
    "image": np.array([[[1.0, 0.0], [1.0, 0.2], [0.0, 1.0]], [[0.3, 1.0], [1.0, -0.5], [0.8, 0.1]]], "float32"),
    "sound": np.array([[[2.0, 0.1], [0.5, 0.0], [-0.2, 1.5]], [[0.1, 0.4], [0.9, -1.0], [1.0, 1.0]]], "float32"),
}


def test_initial_centres_average_contiguous_blocks():
    # 3 tokens, 2 clusters: tokens 0 and 1 start centre 0, token 2 starts centre 1
    np.testing.assert_array_equal(initial_blocks(3, 2), [[0.5, 0.0], [0.5, 0.0], [0.0, 1.0]])
    np.testing.assert_array_equal(initial_blocks(5, 2).sum(0), [1.0, 1.0])
    with pytest.raises(ValueError, match="3 clusters need at least as many tokens per sample, got 2"):
        initial_blocks(2, 3)


def test_one_round_by_hand():
    # sample 0 of image: c0 = (1, 0.1), c1 = (0, 1); token 2 = (0, 1) has cos 0.1/sqrt(1.01) and 1
    s, c = soft_kmeans(TOKENS["image"][:1], clusters=2, iterations=1, temperature=0.5)
    s, c = keras.ops.convert_to_numpy(s)[0], keras.ops.convert_to_numpy(c)[0]
    cos = 0.1 / np.sqrt(1.01)
    assert s[2, 1] == pytest.approx(np.exp(1 / 0.5) / (np.exp(1 / 0.5) + np.exp(cos / 0.5)), rel=1e-6)
    np.testing.assert_allclose(s.sum(1), 1.0, rtol=1e-6)
    u = TOKENS["image"][0]
    np.testing.assert_allclose(c, (s.T @ u) / s.sum(0)[:, None], rtol=1e-5)


@pytest.mark.parametrize("iterations,tau", [(1, 0.5), (3, 0.1)])
def test_assignments_centres_and_loss_match_numpy(iterations, tau):
    out = {m: soft_kmeans(t, 2, iterations, tau) for m, t in TOKENS.items()}
    centres = {}
    for m, t in TOKENS.items():
        ref = [np_kmeans(u, 2, iterations, tau) for u in t]
        np.testing.assert_allclose(keras.ops.convert_to_numpy(out[m][0]), [s for s, _ in ref], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(out[m][1]), [c for _, c in ref], rtol=1e-5, atol=1e-6)
        centres[m] = np.stack([c for _, c in ref])
    loss, sim = np_dmc(centres["image"], centres["sound"], 0.7)
    assert loss > 0.1  # the hinge is active: the example tests the loss, not a zero
    assert value(dmc_loss(out["image"][1], out["sound"][1], 0.7)) == pytest.approx(loss, rel=1e-5)
    result = DMC(clusters=2, iterations=iterations, temperature=tau, margin=0.7)(record(TOKENS))
    assert value(result["loss"]) == pytest.approx(loss, rel=1e-5)
    assert value(result["dmc_image_sound"]) == pytest.approx(loss, rel=1e-5)
    assert value(result["sim_image_sound"]) == pytest.approx(sim, rel=1e-5)


def test_a_missing_modality_is_the_same_as_dropping_the_sample():
    rng = np.random.default_rng(0)
    tokens = {m: rng.normal(size=(5, 4, 3)).astype("float32") for m in ("image", "sound")}
    masks = {"image": np.ones(5, "float32"), "sound": np.array([1, 1, 0, 1, 1], "float32")}
    tokens["sound"][2] = 1e3  # what a missing row holds must not matter
    obj = DMC(clusters=2, iterations=2, temperature=0.2, margin=0.5)
    masked = {k: value(v) for k, v in obj(record(tokens, masks)).items()}
    keep = [0, 1, 3, 4]
    dropped = {k: value(v) for k, v in obj(record({m: t[keep] for m, t in tokens.items()})).items()}
    assert masked == pytest.approx(dropped, rel=1e-6)
    ref = np_dmc(*(np.stack([np_kmeans(u, 2, 2, 0.2)[1] for u in tokens[m][keep]]) for m in ("image", "sound")), 0.5)
    assert masked["loss"] == pytest.approx(ref[0], rel=1e-5)


def test_three_modalities_average_the_pairs_and_pairs_choose_them():
    rng = np.random.default_rng(1)
    tokens = {m: rng.normal(size=(4, 3, 2)).astype("float32") for m in ("a", "b", "c")}
    out = {k: value(v) for k, v in DMC()(record(tokens)).items()}
    pairs = ["dmc_a_b", "dmc_a_c", "dmc_b_c"]
    assert out["loss"] == pytest.approx(np.mean([out[p] for p in pairs]), rel=1e-6)
    only = {k: value(v) for k, v in DMC(pairs=[["c", "a"]])(record(tokens)).items()}
    assert sorted(only) == ["dmc_a_c", "loss", "sim_a_c"] and only["loss"] == pytest.approx(out["dmc_a_c"], rel=1e-6)


def test_gradients_are_finite_with_a_zero_row():
    import tensorflow as tf

    rng = np.random.default_rng(2)
    image = tf.Variable(rng.normal(size=(4, 3, 2)).astype("float32"))
    sound = rng.normal(size=(4, 3, 2)).astype("float32")
    sound[1] = 0.0  # a missing modality's features are zeros
    masks = {"image": np.ones(4, "float32"), "sound": np.array([1, 0, 1, 1], "float32")}
    with tf.GradientTape() as tape:
        loss = DMC(clusters=2, iterations=3)(record({"image": image * 1.0, "sound": tf.constant(sound)}, masks))["loss"]
    grad = tape.gradient(loss, image).numpy()
    assert np.all(np.isfinite(grad)) and np.abs(grad).sum() > 0
    assert np.all(grad[1] == 0.0)  # the row whose pair is missing takes no part


def test_errors_name_what_to_change():
    vectors = {"image": np.ones((4, 6), "float32"), "sound": np.ones((4, 3, 6), "float32")}
    with pytest.raises(RecipeError, match=r"modalities.image.encoder: .* give it `output: tokens`"):
        DMC()(record(vectors))
    with pytest.raises(RecipeError, match=r"objective.params.clusters: 4 clusters but modality image has 3 tokens"):
        DMC(clusters=4)(record(TOKENS))
    with pytest.raises(RecipeError, match=r"objective.params.pairs: unknown modalities \['text'\]"):
        DMC(pairs=[["image", "text"]])(record(TOKENS))
    with pytest.raises(ValueError, match=r"DMC: temperature: expected a number > 0, got 0.0"):
        DMC(temperature=0.0)


def test_config_round_trip():
    obj = DMC(clusters=3, iterations=2, temperature=0.3, margin=0.1, pairs=[["image", "sound"]])
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))
    assert clone.get_config() == obj.get_config()
    assert {k: clone.get_config()[k] for k in ("clusters", "iterations", "temperature", "margin")} == {
        "clusters": 3,
        "iterations": 2,
        "temperature": 0.3,
        "margin": 0.1,
    }


# -- the encoders' output: tokens -------------------------------------------------------------
def test_tokens_keep_the_positions():
    image = np.random.default_rng(3).normal(size=(2, 28, 28, 1)).astype("float32")
    sound = np.random.default_rng(4).normal(size=(2, 32, 128)).astype("float32")
    conv2d = Conv2DEncoder(16, filters=[8, 8], kernel_size=4, strides=2, output="tokens")
    conv1d = Conv1DEncoder(16, filters=[8, 8, 8], kernel_sizes=[1, 4, 4], strides=[1, 2, 2], output="tokens")
    assert tuple(conv2d(image).shape) == (2, 49, 16) == conv2d.compute_output_shape((2, 28, 28, 1))
    assert tuple(conv1d(sound).shape) == (2, 8, 16) == conv1d.compute_output_shape((2, 32, 128))
    assert conv2d.compute_output_shape((None, 28, 28, 1)) == (None, 49, 16)
    # token 7 r + c is the projection of the last feature map at row r, column c (row-major)
    feature_map = image
    for conv in conv2d.convs:
        feature_map = conv2d.act(conv(feature_map))
    expected = keras.ops.convert_to_numpy(conv2d.out(feature_map))[:, 2, 5]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(conv2d(image))[:, 7 * 2 + 5], expected, rtol=1e-6)
    assert Conv2DEncoder.from_config(conv2d.get_config()).output_mode == "tokens"


# the default: the layers, weights and outputs of the encoders before `output` existed (numbers
# recorded with the code at 7181d03 for keras.utils.set_random_seed(0))
BEFORE = {
    "conv2d": ([[-0.05404843, -0.26756743, 0.02934528], [-0.00992767, -0.08607951, -0.14209035]], 239),
    "conv1d": ([[0.8581729, 0.501234, 0.5364594], [0.00108491, 0.08310371, 0.05777742]], 131),
}


def test_vector_output_is_unchanged():
    rng = np.random.default_rng(0)
    image, sound = rng.normal(size=(2, 8, 8, 1)).astype("float32"), rng.normal(size=(2, 6, 3)).astype("float32")
    keras.utils.set_random_seed(0)
    conv2d = Conv2DEncoder(3, filters=[4, 4], kernel_size=3)
    conv1d = Conv1DEncoder(3, filters=[4, 4], kernel_sizes=[1, 3], strides=[1, 2])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(conv2d(image)), BEFORE["conv2d"][0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(conv1d(sound, training=False)), BEFORE["conv1d"][0], rtol=1e-5, atol=1e-7
    )
    assert (conv2d.count_params(), conv1d.count_params()) == (BEFORE["conv2d"][1], BEFORE["conv1d"][1])
    assert [tuple(w.shape) for w in conv2d.weights] == [(3, 3, 1, 4), (4,), (3, 3, 4, 4), (4,), (16, 3), (3,)]
    assert conv2d.get_config()["output"] == "vector" and conv2d.compute_output_shape((None, 8, 8, 1)) == (None, 3)


def test_a_model_saved_before_the_option_loads_with_the_same_outputs(tmp_path):
    from mmkeras.fusions.concat import ConcatFusion
    from mmkeras.model import MultimodalModel
    from mmkeras.objectives.infonce import InfoNCE

    shapes = {"image": [8, 8, 1], "sound": [6, 3]}
    model = MultimodalModel(
        {
            "image": Conv2DEncoder(8, filters=[4, 4], kernel_size=3, name="image_encoder"),
            "sound": Conv1DEncoder(8, filters=[4, 4], kernel_sizes=[1, 3], strides=[1, 2], name="sound_encoder"),
        },
        ConcatFusion(output_dim=8, name="fusion"),
        None,
        InfoNCE(name="objective"),
        input_shapes=shapes,
    )
    model.build()
    x = {m: np.random.default_rng(5).normal(size=(4, *s)).astype("float32") for m, s in shapes.items()}
    path = tmp_path / "model.keras"
    model.save(path)
    # the file as the code before `output` wrote it: no "output" key in the encoders' configs
    with zipfile.ZipFile(path) as zf:
        files = {n: zf.read(n) for n in zf.namelist()}
    config = json.loads(files["config.json"])
    stripped = []

    def strip(node):
        if isinstance(node, dict):
            if node.get("class_name") in ("Conv2DEncoder", "Conv1DEncoder"):
                stripped.append(node["config"].pop("output"))
            for v in node.values():
                strip(v)
        elif isinstance(node, list):
            for v in node:
                strip(v)

    strip(config)
    assert stripped.count("vector") >= 2
    files["config.json"] = json.dumps(config).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    (tmp_path / "old.keras").write_bytes(buffer.getvalue())
    loaded = mmkeras.load_model(str(tmp_path / "old.keras"))
    np.testing.assert_array_equal(loaded.encode(x), model.encode(x))


# -- the recipe -------------------------------------------------------------------------------
def test_recipe_validates_and_trains_an_epoch_on_mhd_tiny():
    pytest.importorskip("mmkeras_mhd")
    from mmkeras.builder import input_shapes_of
    from mmkeras.data.pipeline import make_dataset
    from mmkeras.runs import load_splits

    overrides = ["data.params.size=tiny", "data.params.workers=1", "data.batch_size=32", "train.epochs=1"]
    recipe = mmkeras.load_recipe(ROOT / "recipes" / "dmc_mhd.yaml", overrides=overrides)
    assert recipe.objective.name == "dmc" and sorted(recipe.modalities) == ["image", "sound"]
    _, splits = load_splits(recipe)
    model = mmkeras.build_model(recipe, input_shapes=input_shapes_of(splits["train"], ["image", "sound"]))
    record = model.encoder({m: np.zeros([2] + model.encoder.input_shapes[m], "float32") for m in ("image", "sound")})
    assert tuple(record.features["image"].shape) == (2, 49, 64) and tuple(record.features["sound"].shape) == (2, 8, 64)
    assert tuple(record.latents["image"].shape) == (2, 64)  # the tokens averaged
    data = make_dataset(splits["train"], ["image", "sound"], 32)
    history = model.fit(data, epochs=1, steps_per_epoch=3, verbose=0).history
    assert sorted(history) == ["dmc_image_sound", "loss", "sim_image_sound"]
    assert np.isfinite(history["loss"][0]) and 0 < history["loss"][0] < 2 * 31 * 0.2 + 1
