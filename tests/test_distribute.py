"""N replicas of batch b must train exactly like one device with batch N*b (global negatives,
loss scaling). Each case runs in its own process (logical devices are fixed at TF start-up), which
trains on one device and then on two replicas, each model built from the same seed."""

import json
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = r"""
import json, sys
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import mmkeras
from mmkeras.data.pipeline import make_dataset

objective, out = json.loads(sys.argv[1]), sys.argv[2]
recipe = mmkeras.recipe_from_dict({
    "name": "dist", "seed": 3,
    "data": {"dataset": "arrays", "params": {"synthetic": True, "num_samples": 64}, "batch_size": 16},
    "modalities": {"a": {"encoder": {"name": "mlp", "params": {"hidden_units": [8]}}},
                   "b": {"encoder": {"name": "mlp", "params": {"hidden_units": [8]}}}},
    "model": {"feature_dim": 6, "latent_dim": 4, "head": {"name": "mlp", "params": {"normalize": True}}},
    "objective": objective,
    "train": {"optimizer": {"name": "sgd", "learning_rate": 0.5}, "jit_compile": False},
})
train = mmkeras.load_dataset("arrays", synthetic=True, num_samples=64).load("train")
for replicas in (1, 2):  # one process for both: TensorFlow's start-up is most of a case's time
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]) if replicas == 2 else None
    model = mmkeras.build_model(recipe, {"a": [16], "b": [8, 8, 1]}, strategy)
    ds = make_dataset(train, ["a", "b"], 16, shuffle=False, deterministic=True).take(2)
    history = model.fit(ds, epochs=1, verbose=0)
    weights = [np.asarray(w) for w in model.trainable_weights]
    np.savez(f"{out}{replicas}.npz", loss=history.history["loss"][0], *weights)
"""


def run(tmp_path, replicas, objective):
    """The loss and trained weights of ``objective`` on ``replicas`` (1 or 2) logical CPUs. The
    first call for an objective in ``tmp_path`` trains both in one process; the other reads its result."""
    out = tmp_path / f"r{replicas}.npz"
    tag = tmp_path / "objective.json"
    if not out.exists() or tag.read_text() != json.dumps(objective):
        proc = subprocess.run(
            [sys.executable, "-c", SCRIPT, json.dumps(objective), str(tmp_path / "r")],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        tag.write_text(json.dumps(objective))
    with np.load(out) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize(
    "objective",
    [
        {"name": "infonce", "params": {"temperature": 0.1}},
        {"name": "infonce", "params": {"learnable_temperature": True}},
        {"name": "siglip", "params": {}},
    ],
    ids=["infonce", "infonce-learnable-temperature", "siglip"],
)
def test_two_replicas_match_one_device(tmp_path, objective):
    one, two = run(tmp_path, 1, objective), run(tmp_path, 2, objective)
    assert float(two["loss"]) == pytest.approx(float(one["loss"]), rel=1e-5)
    weights = [k for k in one if k != "loss"]
    assert weights
    for k in weights:
        np.testing.assert_allclose(two[k], one[k], rtol=1e-4, atol=1e-6)
