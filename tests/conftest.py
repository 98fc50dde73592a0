import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def synthetic_recipe(**over):
    """A small two-modality recipe on the seeded synthetic arrays."""
    doc = {
        "name": "tiny",
        "seed": 0,
        "data": {"dataset": "arrays", "params": {"synthetic": True, "num_samples": 256}, "batch_size": 32},
        "modalities": {
            "a": {"encoder": {"name": "mlp", "params": {"hidden_units": [16]}}},
            "b": {"encoder": {"name": "conv2d", "params": {"filters": [4], "kernel_size": 3}}},
        },
        "model": {"feature_dim": 8, "latent_dim": 8, "head": {"name": "mlp", "params": {"normalize": True}}},
        "objective": {"name": "infonce", "params": {"temperature": 0.1}},
        "train": {"epochs": 1, "jit_compile": False},
        "evaluate": [{"name": "linear_probe", "params": {"epochs": 5}}],
    }
    for key, value in over.items():
        node = doc
        parts = key.split("__")
        for p in parts[:-1]:
            node = node[p]
        node[parts[-1]] = value
    return doc


def run_cli(*args, env_extra=None, cwd=None, timeout=300, quiet_tf=True):
    """``mmkeras ARGS`` in a fresh process; ``quiet_tf=False`` leaves TF_CPP_MIN_LOG_LEVEL unset, as a user has it."""
    env = {k: v for k, v in os.environ.items() if quiet_tf or k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update({"TF_CPP_MIN_LOG_LEVEL": "3"} if quiet_tf else {})
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "mmkeras.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
    )


@pytest.fixture
def shipped_presets(tmp_path, monkeypatch):
    """The working directory moved to a folder holding a stand-in for every preset directory a
    shipped recipe names (``preset: presets/...``, relative to the current directory): the marker
    files that validation looks for, no weights. The shipped recipes that reuse networks validate
    there as they do after their descriptions' commands have made the real presets."""
    import re

    for recipe in (ROOT / "recipes").glob("*.yaml"):
        for preset in re.findall(r"\bpreset: (presets/[\w./-]+)", recipe.read_text()):
            folder = tmp_path / preset
            folder.mkdir(parents=True, exist_ok=True)
            for marker in ("config.json", "metadata.json"):
                (folder / marker).write_text("{}")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def fresh_registry(monkeypatch):
    """The registry re-discovered, restored afterwards."""
    from mmkeras.registry import registry

    saved = registry.entries, registry._discovered
    registry.discover(force=True)
    yield registry
    registry.entries, registry._discovered = saved
