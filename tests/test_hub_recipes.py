"""The shipped recipes that bring networks from elsewhere, run end to end through the CLI at a tiny
size: keras-hub presets made by scripts/make_hub_presets.py (clip_keras_hub_synthetic), and the
image encoder of gmc_mhd_quick saved as a preset and fine-tuned on another data set
(clip_captions_gmc_image). Slow: each trains for an epoch in a fresh process. (comm_pretrained_mhd
reads its preset the same way; tests/test_preset.py checks that a frozen `pretrained` encoder is
the preset's weight for weight, and tests/test_recipe.py validates the recipe.)"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, run_cli

pytestmark = pytest.mark.slow

RECIPES = ROOT / "recipes"
# digit_captions at a tenth of its size, one epoch, a short probe
SMALL_CAPTIONS = [
    "data.params.num_train=256",
    "data.params.num_test=64",
    "train.epochs=1",
    "evaluate.0.params.epochs=2",
]


def _sets(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def _finished(run_dir, out: subprocess.CompletedProcess) -> dict:
    """The run's metrics.json, after checking the run finished with a finite loss."""
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and math.isfinite(metrics["final"]["loss"])
    return metrics


def test_clip_keras_hub_synthetic_trains_from_the_scripts_presets(tmp_path):
    pytest.importorskip("keras_hub")
    pytest.importorskip("mmkeras_text")
    presets = tmp_path / "presets"
    script = [sys.executable, str(ROOT / "scripts" / "make_hub_presets.py"), "--out", str(presets)]
    made = subprocess.run(script, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr[-3000:]
    lines = made.stdout.splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        f"wrote {presets / 'tiny_text'}",
        f"wrote {presets / 'tiny_vision'}",
    ]
    for name in ("tiny_text", "tiny_vision"):
        assert {p.name for p in (presets / name).iterdir()} >= {"config.json", "model.weights.h5", "metadata.json"}
    # a second run keeps what is there
    again = subprocess.run(script, capture_output=True, text=True, timeout=120)
    assert [line.split(" (")[0] for line in again.stdout.splitlines()] == [
        f"kept {presets / 'tiny_text'}",
        f"kept {presets / 'tiny_vision'}",
    ]

    run_dir = tmp_path / "run"
    overrides = SMALL_CAPTIONS + [
        f"modalities.text.encoder.params.preset={presets / 'tiny_text'}",
        f"modalities.image.encoder.params.preset={presets / 'tiny_vision'}",
    ]
    out = run_cli("train", RECIPES / "clip_keras_hub_synthetic.yaml", "--output", run_dir, *_sets(overrides))
    metrics = _finished(run_dir, out)
    assert set(metrics["evaluation"]["linear_probe"]["accuracy"]) == {"complete", "image", "text"}


def _image_encoder_outputs(run_dir, preset) -> tuple[np.ndarray, np.ndarray]:
    """The run's trained image encoder and the preset's, on the same random images."""
    import mmkeras
    from mmkeras.preset import load_modality_encoder

    x = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    trained = mmkeras.load_encoder(run_dir).encoders["image"]
    return np.asarray(trained(x)), np.asarray(load_modality_encoder(preset)(x))


@pytest.fixture(scope="module")
def gmc_image_preset(tmp_path_factory):
    """The image encoder of gmc_mhd_quick (built on MHD's shapes, not trained: fine-tuning it is
    what is tested) saved as a preset, as `mmkeras export RUN --preset DIR --modality image` does."""
    pytest.importorskip("mmkeras_mhd")  # the recipe names the mhd dataset
    import mmkeras
    from mmkeras.preset import save_preset

    root = tmp_path_factory.mktemp("gmc")
    recipe = mmkeras.load_recipe(RECIPES / "gmc_mhd_quick.yaml")
    shapes = {"image": [28, 28, 1], "sound": [32, 128], "trajectory": [200], "label": [10]}
    model = mmkeras.build_model(recipe, shapes, compile=False)
    preset = save_preset(model.encoder, root / "gmc_mhd_image", modality="image")
    return root, preset


def test_clip_captions_gmc_image_fine_tunes_the_gmc_image_encoder(gmc_image_preset):
    pytest.importorskip("mmkeras_text")
    root, preset = gmc_image_preset
    run_dir = root / "captions"
    overrides = SMALL_CAPTIONS + [f"modalities.image.encoder.params.preset={preset}"]
    out = run_cli("train", RECIPES / "clip_captions_gmc_image.yaml", "--output", run_dir, *_sets(overrides))
    metrics = _finished(run_dir, out)
    assert set(metrics["evaluation"]["linear_probe"]["accuracy"]) == {"complete", "image", "text"}
    # trainable: all, and the sizes match (64), so no projection: the GMC encoder itself moved
    trained, source = _image_encoder_outputs(run_dir, preset)
    assert trained.shape == source.shape == (4, 64)
    assert not np.allclose(trained, source, atol=1e-4)
