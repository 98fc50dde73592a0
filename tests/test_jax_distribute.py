"""``distribute.strategy: data_parallel`` on JAX (keras.distribution): two host devices, and two
processes on loopback with one device each, train exactly like one device on the same global batch;
a run killed mid-training resumes from its checkpoint; the strategy and the batch are checked.

Every case runs in fresh processes (the host device count and the JAX processes are fixed at start-up);
one process trains every objective on one device and then under data_parallel, so start-up is paid once."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import run_cli

from mmkeras.checkpoint import PAUSE_ENV

ROOT = Path(__file__).resolve().parent.parent
# only a hang trips this: each wait ends as soon as its progress signal appears or a process exits
HANG = 600

OBJECTIVES = {
    "infonce": {"name": "infonce", "params": {"temperature": 0.1}},
    "gmc": {"name": "gmc", "params": {"temperature": 0.1}},
}
if (ROOT / "mmkeras" / "objectives" / "siglip.py").exists():
    OBJECTIVES["siglip"] = {"name": "siglip"}

STEP_SCRIPT = r"""
import json, sys
import numpy as np
from mmkeras.distribute import initialize_processes

mode, out, objectives = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
index = 0
if mode != "devices":  # process:I:host:port,host:port
    _, index, workers = mode.split(":", 2)
    index = int(index)
    initialize_processes(workers.split(","), index)  # before any JAX computation
import mmkeras
from mmkeras.data.pipeline import make_dataset
from mmkeras.errors import MMKerasError


def recipe(objective, strategy, batch=16):
    return mmkeras.recipe_from_dict({
        "name": "dist", "seed": 3,
        "data": {"dataset": "arrays", "params": {"synthetic": True, "num_samples": 64}, "batch_size": batch},
        "modalities": {"a": {"encoder": {"name": "mlp", "params": {"hidden_units": [8]}}},
                       "b": {"encoder": {"name": "mlp", "params": {"hidden_units": [8]}}}},
        "model": {"feature_dim": 6, "latent_dim": 4, "head": {"name": "mlp", "params": {"normalize": True}}},
        "objective": objective,
        "train": {"optimizer": {"name": "sgd", "learning_rate": 0.5}},
        "distribute": {"strategy": strategy},
    })


train = mmkeras.load_dataset("arrays", synthetic=True, num_samples=64).load("train").subset(np.arange(32))
strategies = ("one_device", "data_parallel") if mode == "devices" else ("data_parallel",)
for name, objective in objectives.items():
    for strategy in strategies:  # the same seed builds the same initial weights
        model = mmkeras.build_model(recipe(objective, strategy), {"a": [16], "b": [8, 8, 1]})
        ds = make_dataset(train, ["a", "b"], 16, shuffle=False, deterministic=True)  # two global batches
        history = model.fit(ds, epochs=1, verbose=0)
        devices = len(model.trainable_weights[0].value.sharding.device_set)  # the variables' replicas
        weights = [np.asarray(w) for w in model.trainable_weights]
        np.savez(f"{out}/{name}-{strategy}-{index}.npz", loss=history.history["loss"][0], devices=devices, *weights)
if mode == "devices":
    try:
        mmkeras.build_model(recipe(objectives["infonce"], "data_parallel", batch=15), {"a": [16], "b": [8, 8, 1]})
        message = "no error"
    except MMKerasError as exc:
        message = str(exc)
    with open(f"{out}/odd-batch.txt", "w") as f:
        f.write(message)
"""


def jax_env(devices):
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env.pop("TF_CONFIG", None)
    return env


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def load(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def two_devices(tmp_path_factory):
    """One process with two host devices: every objective trained on one device, then under data_parallel."""
    out = tmp_path_factory.mktemp("jax-devices")
    proc = subprocess.run(
        [sys.executable, "-c", STEP_SCRIPT, "devices", str(out), json.dumps(OBJECTIVES)],
        env=jax_env(2),
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def assert_same_training(one, other):
    assert float(other["loss"]) == pytest.approx(float(one["loss"]), rel=1e-4)
    weights = [k for k in one if k not in ("loss", "devices")]
    assert weights
    for k in weights:
        np.testing.assert_allclose(other[k], one[k], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_data_parallel_on_two_devices_matches_one_device(two_devices, objective):
    one = load(two_devices / f"{objective}-one_device-0.npz")
    two = load(two_devices / f"{objective}-data_parallel-0.npz")
    assert int(one["devices"]) == 1 and int(two["devices"]) == 2  # the variables are replicated on both devices
    assert_same_training(one, two)


def test_a_batch_that_does_not_split_over_the_devices_is_refused(two_devices):
    message = (two_devices / "odd-batch.txt").read_text()
    assert message.startswith("data.batch_size: 15 rows do not split evenly over data_parallel's 2 devices")
    assert "use a multiple of 2" in message


def test_two_processes_match_one_device(two_devices, tmp_path):
    workers = ",".join(f"127.0.0.1:{p}" for p in free_ports(2))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", STEP_SCRIPT, f"process:{i}:{workers}", str(tmp_path), json.dumps(OBJECTIVES)],
            env=jax_env(1),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=HANG)
        assert p.returncode == 0, err[-3000:]
    for objective in sorted(OBJECTIVES):
        one = load(two_devices / f"{objective}-one_device-0.npz")
        p0 = load(tmp_path / f"{objective}-data_parallel-0.npz")
        p1 = load(tmp_path / f"{objective}-data_parallel-1.npz")
        assert int(p0["devices"]) == 2, objective  # one device in each process
        assert_same_training(one, p0)
        for k in p0:
            np.testing.assert_array_equal(p0[k], p1[k])  # both processes hold the same weights


HLO_SCRIPT = r"""
import json, re, sys
import jax
import keras
import mmkeras

out, batch = sys.argv[1], int(sys.argv[2])
shapes, temp = {}, {}
for chunked in (True, False):
    recipe = mmkeras.recipe_from_dict({
        "name": "hlo", "seed": 0,
        "data": {"dataset": "arrays", "params": {"synthetic": True, "num_samples": 64}, "batch_size": batch},
        "modalities": {"a": {"encoder": {"name": "mlp", "params": {"hidden_units": [8]}}},
                       "b": {"encoder": {"name": "mlp", "params": {"hidden_units": [8]}}}},
        "model": {"feature_dim": 6, "latent_dim": 4, "head": {"name": "mlp", "params": {"normalize": True}}},
        "objective": {"name": "siglip", "params": {"chunked": chunked}},
        "distribute": {"strategy": "data_parallel"},
    })
    model = mmkeras.build_model(recipe, {"a": [16], "b": [8, 8, 1]})
    dist = keras.distribution.distribution()

    def spec(shape, dtype="float32"):  # the global batch's shape, split over the devices as Keras feeds it
        return jax.ShapeDtypeStruct(shape, dtype, sharding=dist.get_data_layout(shape).backend_layout)

    ones = spec((batch,))
    data = ({"a": spec((batch, 16)), "b": spec((batch, 8, 8, 1)), "masks": {"a": ones, "b": ones}},
            spec((batch,), "int64"))
    model._symbolic_build(data_batch=data)
    model.optimizer.build(model.trainable_variables)
    state = model._get_jax_state(trainable_variables=True, non_trainable_variables=True, optimizer_variables=True,
                                 metrics_variables=True)
    # jitted as Keras's JAX trainer does in make_train_function; compiled text is the per-device program
    step = jax.jit(model.train_step, donate_argnums=0, out_shardings=(None, model._get_state_sharding_spec()))
    compiled = step.lower(state, data).compile()
    hlo = compiled.as_text()
    temp[str(chunked)] = compiled.memory_analysis().temp_size_in_bytes
    shapes[str(chunked)] = sorted({tuple(int(d) for d in m.split(",")) for m in re.findall(r"f32\[([\d,]+)\]", hlo)})
with open(f"{out}/shapes.json", "w") as f:
    json.dump({"shapes": shapes, "temp": temp}, f)
"""


def test_siglip_under_data_parallel_holds_one_local_block_of_logits_per_device(tmp_path):
    """The compiled per-device train step at global batch 4096 on 2 devices: chunked, each device's largest
    f32 tensor is a 2048 x 2048 logits block (unchunked: 2048 x 4096, local x global), and none is B x B; the
    blocks run one after the other, so its temporary memory is about half the unchunked step's."""
    proc = subprocess.run(
        [sys.executable, "-c", HLO_SCRIPT, str(tmp_path), "4096"],
        env=jax_env(2),
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "shapes.json").read_text())
    shapes = {k: [tuple(s) for s in v] for k, v in result["shapes"].items()}
    for chunked in ("True", "False"):
        assert not [s for s in shapes[chunked] if sum(d >= 4096 for d in s) >= 2], chunked
    largest = {k: max(v, key=lambda s: int(np.prod(s))) for k, v in shapes.items()}
    assert largest == {"True": (2048, 2048), "False": (2048, 4096)}
    # measured 0.51 (51.4 / 101.6 MB); blocks scheduled side by side gave 0.84
    assert result["temp"]["True"] < 0.65 * result["temp"]["False"], result["temp"]


def start_processes(recipe, run, ports, logs, env_extra=None):
    """``mmkeras train --workers`` in two JAX processes, each writing to a log file (a pipe nobody
    reads while we wait would fill and block it)."""
    workers = ",".join(f"127.0.0.1:{p}" for p in ports)
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for i in range(len(ports)):
        cmd = [sys.executable, "-m", "mmkeras.cli", "train", str(recipe), "--output", str(run), "--verbose", "2"]
        cmd += ["--workers", workers, "--worker-index", str(i)]
        with open(logs / f"process-{i}.log", "w") as out:
            env = {**jax_env(1), **(env_extra or {})}
            procs.append(subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True))
    return procs


def log(logs, i):
    return (logs / f"process-{i}.log").read_text(errors="replace")


# two launches of two processes: 40-80 s on two shared cores (like the TF multi-worker kill test, slow)
@pytest.mark.slow
def test_killed_processes_resume_without_losing_an_epoch_and_only_the_chief_writes(tmp_path):
    recipe = tmp_path / "dp.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "name": "dp",
                "seed": 0,
                "data": {"dataset": "arrays", "params": {"synthetic": True, "num_samples": 256}, "batch_size": 32},
                "modalities": {
                    "a": {"encoder": {"name": "mlp", "params": {"hidden_units": [16]}}},
                    "b": {"encoder": {"name": "mlp", "params": {"hidden_units": [16]}}},
                },
                "model": {"feature_dim": 8, "latent_dim": 8, "head": {"name": "mlp", "params": {"normalize": True}}},
                "objective": {"name": "infonce"},
                "train": {"epochs": 3},
                "distribute": {"strategy": "data_parallel"},
                "evaluate": [],
            }
        )
    )
    run, marker = tmp_path / "run", tmp_path / "paused"
    first = tmp_path / "first"
    # the chief stops inside the write of epoch 2's checkpoint; the other process waits for it in the next step
    procs = start_processes(recipe, run, free_ports(2), first, {PAUSE_ENV: f"2:{marker}"})
    try:
        deadline = time.monotonic() + HANG
        while not marker.exists():
            exited = [i for i, p in enumerate(procs) if p.poll() is not None]
            if exited or time.monotonic() > deadline:
                pytest.fail(f"no paused checkpoint write:\n{log(first, exited[0] if exited else 0)[-3000:]}")
            time.sleep(0.2)
    finally:
        for p in procs:  # the whole job is restarted, as a cluster manager would
            p.send_signal(signal.SIGKILL)
            p.wait()
    assert json.loads((run / "state.json").read_text())["epochs_completed"] == 1

    again = tmp_path / "again"
    procs = start_processes(recipe, run, free_ports(2), again)
    for i, p in enumerate(procs):
        assert p.wait(timeout=HANG) == 0, log(again, i)[-3000:]
    for i in range(2):  # every process restores the chief's checkpoint
        assert "resuming after epoch 1 of 3" in log(again, i)
        assert "Epoch 2/3" in log(again, i) and "Epoch 1/3" not in log(again, i)
    history = (run / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["0", "1", "2"]
    state = json.loads((run / "state.json").read_text())
    assert state["status"] == "complete" and state["epochs_completed"] == 3
    # process 1 wrote nothing: no checkpoint copy of its own, only the chief's two newest
    assert sorted(p.name for p in (run / "checkpoint").iterdir()) == ["epoch-0002.weights.h5", "epoch-0003.weights.h5"]
    assert (run / "model.keras").exists() and (run / "encoder.keras").exists()


@pytest.mark.parametrize(
    ("backend", "strategy", "expected"),
    [
        (
            "tensorflow",
            "data_parallel",
            "distribute.strategy: data_parallel needs the jax backend (KERAS_BACKEND=jax), but this process uses "
            "the tensorflow backend, where distribute.strategy is one of: auto, one_device, mirrored, "
            "multi_worker, tpu",
        ),
        (
            "jax",
            "multi_worker",
            "distribute.strategy: multi_worker needs the tensorflow backend (KERAS_BACKEND=tensorflow), but this "
            "process uses the jax backend, where distribute.strategy is one of: auto, one_device, data_parallel",
        ),
    ],
)
def test_a_strategy_the_backend_cannot_run_is_one_line_from_validate_and_train(tmp_path, backend, strategy, expected):
    from conftest import synthetic_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(synthetic_recipe(distribute={"strategy": strategy})))
    checked = run_cli("validate", recipe, env_extra={"KERAS_BACKEND": backend})
    assert checked.returncode == 2
    assert checked.stderr.strip().endswith(expected), checked.stderr
    trained = run_cli("train", recipe, "--output", tmp_path / "run", env_extra={"KERAS_BACKEND": backend})
    assert trained.returncode == 2
    assert trained.stderr.strip().endswith(expected), trained.stderr
    assert not (tmp_path / "run").exists()  # refused before anything was written
