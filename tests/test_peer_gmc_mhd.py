"""The PyTorch peer of GMC-MHD (benchmarks/peers/) and its side-by-side script: the same model, the authors' loss."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _numpy_gmc_loss(joint: np.ndarray, latents: dict, tau: float) -> float:
    """The authors' loss written out from its formula: exp, drop the diagonal, divide, log."""
    b = joint.shape[0]
    total = np.zeros(2 * b)
    for z in latents.values():
        both = np.concatenate([joint, z])
        s = np.exp(both @ both.T / tau)
        denominator = s.sum(1) - np.diag(s)
        positive = np.exp(np.sum(joint * z, 1) / tau)
        total += -np.log(np.concatenate([positive, positive]) / denominator)
    return float(total.mean())


def test_torch_gmc_loss_matches_the_formula():
    torch = pytest.importorskip("torch")
    peer = _load("gmc_mhd_torch", BENCHMARKS / "peers" / "gmc_mhd_torch.py")
    rng = np.random.default_rng(3)

    def unit(shape):
        v = rng.normal(size=shape)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    joint, latents = unit((3, 4)), {"a": unit((3, 4)), "b": unit((3, 4))}
    got = peer.gmc_loss(torch.tensor(joint), {m: torch.tensor(z) for m, z in latents.items()}, 0.5)
    assert float(got) == pytest.approx(_numpy_gmc_loss(joint, latents, 0.5), rel=1e-10)


def test_torch_model_has_the_recipe_models_parameter_count():
    torch = pytest.importorskip("torch")
    import mmkeras

    peer = _load("gmc_mhd_torch", BENCHMARKS / "peers" / "gmc_mhd_torch.py")
    recipe = mmkeras.load_recipe("recipes/gmc_mhd.yaml")
    shapes = {"image": [28, 28, 1], "sound": [32, 128], "trajectory": [200], "label": [10]}
    ours = mmkeras.build_model(recipe, shapes, compile=False)
    model = peer.GMCMHD(joint="mmkeras")
    counts = peer.count_parameters(model)
    assert counts["with_batch_norm_statistics"] == ours.count_params() == 2_902_912
    assert counts["trainable"] == sum(int(np.prod(v.shape)) for v in ours.trainable_variables)
    # the authors' joint encoder (raw feature stacks, one linear layer) is 16,640 weights smaller
    assert peer.count_parameters(peer.GMCMHD(joint="official"))["trainable"] == counts["trainable"] - 16_640
    joint, latents = model(
        {
            "image": torch.zeros(2, 1, 28, 28),
            "sound": torch.zeros(2, 1, 32, 128),
            "trajectory": torch.zeros(2, 200),
            "label": torch.zeros(2, 10),
        }
    )
    assert joint.shape == (2, 64) and sorted(latents) == ["image", "label", "sound", "trajectory"]
    assert torch.linalg.norm(latents["image"], dim=-1).detach().numpy() == pytest.approx([1.0, 1.0], rel=1e-5)


def test_peer_script_without_torch_prints_a_json_error(monkeypatch, capsys):
    script = _load("peer_gmc_mhd", BENCHMARKS / "peer_gmc_mhd.py")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    monkeypatch.setattr(sys, "argv", ["peer_gmc_mhd.py"])
    assert script.main([]) == 2
    result = json.loads(capsys.readouterr().out)
    assert result == {
        "benchmark": "peer_gmc_mhd",
        "error": "PyTorch is not installed: pip install torch --index-url https://download.pytorch.org/whl/cpu",
    }
