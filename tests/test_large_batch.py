"""Batches of several thousand: under 2 replicas each replica scores its local rows against the
global columns, so no tensor of the train step is global x global. Checked on the traced train step
(forward, gradients and update) of real models, in a process with 2 logical CPU devices."""

import json
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, sys
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import mmkeras

objective, global_batch = json.loads(sys.argv[1]), int(sys.argv[2])
recipe = mmkeras.recipe_from_dict({
    "name": "large", "seed": 0,
    "data": {"dataset": "arrays", "params": {"synthetic": True, "num_samples": 64}, "batch_size": global_batch},
    "modalities": {"a": {"encoder": {"name": "mlp", "params": {"hidden_units": [8]}}},
                   "b": {"encoder": {"name": "mlp", "params": {"hidden_units": [8]}}}},
    "model": {"feature_dim": 8, "latent_dim": 4, "fusion": {"name": "mean"},
              "head": {"name": "mlp", "params": {"normalize": True}}},
    "objective": objective,
    "train": {"optimizer": {"name": "sgd", "learning_rate": 0.1}, "jit_compile": False},
})
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
model = mmkeras.build_model(recipe, {"a": [6], "b": [5]}, strategy)
rng = np.random.default_rng(0)
x = {m: rng.normal(size=(global_batch, d)).astype("float32") for m, d in (("a", 6), ("b", 5))}
y = np.zeros(global_batch, "int64")
ds = tf.data.Dataset.from_tensors((x, y))
history = model.fit(ds, epochs=1, verbose=0)
biggest, two_global = [0, None], []
def walk(graph, seen):
    for op in graph.get_operations():
        for t in op.outputs:
            dims = t.shape.as_list() if t.shape.rank is not None else []
            if any(d is None for d in dims):
                continue
            n = int(np.prod(dims)) if dims else 1
            if n > biggest[0]:
                biggest[:] = [n, dims]
            if sum(d >= global_batch for d in dims) >= 2:
                two_global.append((op.type, dims))
        for name in op.node_def.attr:
            f = op.node_def.attr[name].func.name
            if f and f not in seen and graph._get_function(f) is not None:
                seen.add(f)
                walk(graph._get_function(f).graph, seen)
step = tf.function(lambda batch: strategy.run(model.train_step, args=(batch,)))  # what fit runs per step
batch = next(iter(strategy.experimental_distribute_dataset(ds)))
walk(step.get_concrete_function(batch).graph, set())
print(json.dumps({"loss": history.history["loss"][0], "biggest": biggest, "global_by_global": two_global[:5]}))
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "objective",
    [
        {"name": "infonce", "params": {"temperature": 0.1}},
        {"name": "gmc", "params": {"temperature": 0.1}},
        {"name": "gmc", "params": {"temperature": 0.1, "variant": "paper"}},
        {"name": "clip", "params": {"temperature": 0.1}},
        {"name": "siglip", "params": {}},
    ],
    ids=["infonce", "gmc", "gmc-paper", "clip", "siglip"],
)
def test_several_thousand_train_with_local_by_global_logits_only(objective):
    global_batch = 4096
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(objective), str(global_batch)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["loss"] == result["loss"] and result["loss"] > 0  # trained, finite
    n, dims = result["biggest"]
    if objective["name"] == "siglip":  # chunked: one local x local block of logits at a time, nothing larger
        assert dims == [global_batch // 2, global_batch // 2], result
    else:  # the logits are there: local rows (2048) by at least the global columns (4096) ...
        assert n >= (global_batch // 2) * global_batch, result
    # ... but nothing is global x global
    assert result["global_by_global"] == [], result
