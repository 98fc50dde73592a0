"""scripts/figure_dmc_clusters.py: the pendulum's tip-to-patch mapping, the numbers on hand-built
assignments, the assignments against numpy written from the formulas, and the script end to end on
a tiny trained dmc_pendulum run."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from test_dmc import np_kmeans  # the numpy soft k-means the loss is tested against

ROOT = Path(__file__).resolve().parent.parent


def _load():
    spec = importlib.util.spec_from_file_location("figure_dmc_clusters", ROOT / "scripts" / "figure_dmc_clusters.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["figure_dmc_clusters"] = module
    spec.loader.exec_module(module)
    return module


fig = _load()


# the 60x60 frame in 15x15 patches of 4 pixels; the tip is 25 pixels from the pivot at pixel (30, 30)
# (theta counterclockwise from upright: pi/2 puts the tip on the left of the picture)
@pytest.mark.parametrize(
    "theta,patch",
    [
        (0.0, (1, 7)),  # up: row 30 - 25 = 5
        (math.pi / 2, (7, 1)),  # left: column 5
        (-math.pi / 2, (7, 13)),  # right: column 55
        (math.pi, (13, 7)),  # down
        (math.pi / 4, (3, 3)),  # up-left: 30 - 25 / sqrt(2) = 12.3
        (-3 * math.pi / 4, (11, 11)),  # down-right: 47.7
    ],
)
def test_tip_patch_by_hand(theta, patch):
    pytest.importorskip("mmkeras_pendulum")
    assert tuple(fig.tip_patch(np.array([theta]), 15)[0]) == patch
    assert tuple(fig.tip_patch(np.array([theta]), 15, fraction=0.0)[0]) == (7, 7)  # the pivot


def test_tip_patch_is_lit_in_the_rendered_frame():
    env = pytest.importorskip("mmkeras_pendulum.env")
    theta = np.random.default_rng(0).uniform(-np.pi, np.pi, 200)
    lit = fig.patches_holding(env.render(theta).astype(bool), 15)
    patch = fig.tip_patch(theta, 15)
    assert lit[np.arange(200), patch[:, 0] * 15 + patch[:, 1]].all()
    # and the patch 2 steps further out along the rod is dark: the mapping is not off by a patch outward
    inside = ((fig.tip_pixel(theta, 1.35) >= 0) & (fig.tip_pixel(theta, 1.35) < 60)).all(-1)
    beyond = fig.tip_patch(theta, 15, fraction=1.35)
    assert inside.sum() > 50 and not lit[np.arange(200), beyond[:, 0] * 15 + beyond[:, 1]][inside].any()


def test_pendulum_numbers_when_one_cluster_is_the_tip_patch():
    env = pytest.importorskip("mmkeras_pendulum.env")
    theta = np.array([0.0, math.pi / 2, -2.0, 2.5])
    tip = fig.tip_patch(theta, 15)
    assign = np.zeros((4, 225, 2), "float32")
    assign[..., 0] = 1.0
    assign[np.arange(4), tip[:, 0] * 15 + tip[:, 1]] = [0.0, 1.0]
    images = np.stack([env.render(theta), env.render(theta)], axis=-1).astype("float32")
    numbers = fig.pendulum_numbers(assign, theta, images)
    small = numbers["smaller_cluster"]
    assert small["index_counts"] == [0, 4]
    assert small["tip_patch_in_it"] == 1.0 and small["share_of_patches"] == pytest.approx(1 / 225)
    assert small["along_rod_in_it"]["0.00"] == 0.0 and small["background_patches_in_it"] == 0.0
    # the centroid is the tip patch's centre: within half a patch diagonal (2.83 px) of the tip
    assert small["centroid_tip_distance_px"] < 2 * math.sqrt(2)
    assert small["centroid_radius_px"] == pytest.approx(25.0, abs=2 * math.sqrt(2))
    assert small["centroid_tip_corr_y"] > 0.99 and small["centroid_angle_error_deg"] < 7
    assert numbers["per_cluster"][0]["tip_patch_in_it"] == 0.0


def test_mhd_numbers_count_ink_and_background_patches():
    images = np.zeros((1, 28, 28, 1), "float32")
    images[0, :4, :8] = 1.0  # ink in patches 0 and 1 of the 7x7 grid
    assign = np.zeros((1, 49, 2), "float32")
    assign[0, :, 0] = 1.0
    assign[0, [0, 2], :] = [0.0, 1.0]  # cluster 1: one ink patch, one background patch
    numbers = fig.mhd_numbers(assign, images)
    assert numbers["ink_share_of_patches"] == pytest.approx(2 / 49)
    assert numbers["per_cluster"][1] == pytest.approx(
        {"share_of_patches": 2 / 49, "ink_patches_in_it": 0.5, "background_patches_in_it": 1 / 47}
    )
    assert numbers["smaller_cluster"]["index_counts"] == [0, 1]


def test_initial_block_agreement():
    assign = np.eye(2, dtype="float32")[[0, 0, 1, 0]][None]  # 4 tokens, blocks 0 0 1 1
    assert fig.initial_block_agreement(assign) == 0.75


def test_conv1d_reads_a_vector_as_steps_of_one_feature():
    from mmkeras.encoders.conv1d import Conv1DEncoder

    sound = np.random.default_rng(1).normal(size=(3, 12)).astype("float32")
    encoder = Conv1DEncoder(8, filters=[4, 4], kernel_sizes=[3, 1], strides=[3, 1], batch_norm=False, output="tokens")
    tokens = keras.ops.convert_to_numpy(encoder(sound))
    assert tokens.shape == (3, 4, 8) == encoder.compute_output_shape((3, 12))
    np.testing.assert_array_equal(tokens, keras.ops.convert_to_numpy(encoder(sound[..., None])))
    # token 1 reads values 3-5 only (the previous frame's amplitudes)
    changed = sound.copy()
    changed[:, 3:6] += 1.0
    moved = np.abs(keras.ops.convert_to_numpy(encoder(changed)) - tokens).max(axis=(0, 2))
    assert moved[1] > 0 and (moved[[0, 2, 3]] == 0).all()


def test_the_script_end_to_end_on_a_tiny_run(tmp_path):
    pytest.importorskip("mmkeras_pendulum")
    import mmkeras

    overrides = ["data.params.size=tiny", "train.epochs=1", "evaluate=[]", "data.batch_size=32"]
    recipe = mmkeras.load_recipe(ROOT / "recipes" / "dmc_pendulum.yaml", overrides=overrides)
    run = tmp_path / "run"
    mmkeras.train(recipe, str(run), verbose=0)

    out = tmp_path / "figure.png"
    numbers = fig.analyse(run, out, examples=3)
    assert out.stat().st_size > 10_000
    written = json.loads(out.with_suffix(".json").read_text())
    assert written == numbers and written["test_examples"] == 100
    assert (written["clusters"], written["iterations"], written["temperature"]) == (2, 3, 0.1)

    def leaves(node):
        if isinstance(node, dict):
            return [x for v in node.values() for x in leaves(v)]
        if isinstance(node, list):
            return [x for v in node for x in leaves(v)]
        return [node] if isinstance(node, float) else []

    assert len(leaves(written["smaller_cluster"])) >= 12 and all(math.isfinite(x) for x in leaves(written))
    assert 0 < written["smaller_cluster"]["share_of_patches"] <= 0.5

    # the assignments are the loss's: soft k-means of the record's token features, batch by batch
    model = mmkeras.load_model(str(run / "model.keras"), compile=False)
    from mmkeras.builder import make_dataset

    dataset = make_dataset(recipe)
    split = dataset.load("test")
    inputs = {m: split.inputs[m][:10] for m in ("image", "sound")}
    got = fig.encode_and_cluster(model, inputs, fig.cluster_settings(recipe), batch_size=4)
    features = model.encoder(inputs, training=False).features
    for m in ("image", "sound"):
        tokens = keras.ops.convert_to_numpy(features[m]).astype("float64")
        assert got[m].shape == (10, tokens.shape[1], 2)
        ref = np.stack([np_kmeans(u, 2, 3, 0.1)[0] for u in tokens])
        np.testing.assert_allclose(got[m], ref, rtol=1e-4, atol=1e-5)
