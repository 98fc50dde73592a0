"""Multi-worker training with real worker processes on loopback: two workers of batch b train
exactly like one device with batch 2b, and a killed cluster resumes with no completed epoch lost."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

# only a hang trips these: each wait ends as soon as its progress signal appears or a process exits, so a
# loaded machine makes a test slower, never failed (measured: the kill/resume test takes 2-4 min)
HANG = 1800

STEP_SCRIPT = r"""
import json, os, sys
import numpy as np
import mmkeras
from mmkeras.data.pipeline import make_dataset
from mmkeras.distribute import make_strategy

strategy = make_strategy("multi_worker" if "TF_CONFIG" in os.environ else "one_device")
recipe = mmkeras.recipe_from_dict({
    "name": "dist", "seed": 3,
    "data": {"dataset": "arrays", "params": {"synthetic": True, "num_samples": 64}, "batch_size": 16},
    "modalities": {"a": {"encoder": {"name": "mlp", "params": {"hidden_units": [8]}}},
                   "b": {"encoder": {"name": "mlp", "params": {"hidden_units": [8]}}}},
    "model": {"feature_dim": 6, "latent_dim": 4, "head": {"name": "mlp", "params": {"normalize": True}}},
    "objective": {"name": "infonce", "params": {"temperature": 0.1}},
    "train": {"optimizer": {"name": "sgd", "learning_rate": 0.5}, "jit_compile": False},
})
train = mmkeras.load_dataset("arrays", synthetic=True, num_samples=64).load("train")
model = mmkeras.build_model(recipe, {"a": [16], "b": [8, 8, 1]}, strategy)
ds = make_dataset(train, ["a", "b"], 16, shuffle=False, deterministic=True).take(2)
history = model.fit(ds, epochs=1, verbose=0)
np.savez(sys.argv[1], loss=history.history["loss"][0], *[np.asarray(w) for w in model.trainable_weights])
"""


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def tf_config(ports, index):
    return json.dumps(
        {"cluster": {"worker": [f"localhost:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
    )


def load(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def test_two_workers_match_one_device(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TF_CONFIG", None)
    single = subprocess.run(
        [sys.executable, "-c", STEP_SCRIPT, str(tmp_path / "one.npz")],
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    ports = free_ports(2)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", STEP_SCRIPT, str(tmp_path / f"w{i}.npz")],
            env={**env, "TF_CONFIG": tf_config(ports, i)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=HANG)
        assert p.returncode == 0, err[-3000:]
    one, w0, w1 = load(tmp_path / "one.npz"), load(tmp_path / "w0.npz"), load(tmp_path / "w1.npz")
    assert float(w0["loss"]) == pytest.approx(float(one["loss"]), rel=1e-5)
    for k in one:
        np.testing.assert_allclose(w0[k], one[k], rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(w0[k], w1[k])  # the workers hold the same weights


def start_cluster(recipe, run, ports, epochs, logs):
    """The workers of one cluster, each writing its output to a file in ``logs`` (a pipe nobody reads
    while we wait would fill and block the worker)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TF_CONFIG", None)
    workers = ",".join(f"localhost:{p}" for p in ports)
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for i in range(len(ports)):
        with open(logs / f"worker-{i}.log", "w") as out:
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "mmkeras.cli",
                        "train",
                        str(recipe),
                        "--output",
                        str(run),
                        "--verbose",
                        "2",
                        "--workers",
                        workers,
                        "--worker-index",
                        str(i),
                        "--set",
                        f"train.epochs={epochs}",
                    ],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
    return procs


def wait_until(condition, procs, logs, what):
    """Poll ``condition`` until it holds; fail at once if a worker exits first, else only after
    :data:`HANG` seconds (a hang, not a slow machine)."""
    deadline = time.monotonic() + HANG
    while time.monotonic() < deadline:
        if condition():
            return
        exited = [i for i, p in enumerate(procs) if p.poll() is not None]
        if exited:
            i = exited[0]
            pytest.fail(f"worker {i} exited ({procs[i].returncode}) before {what}:\n{tail(logs, i)}")
        time.sleep(0.5)
    pytest.fail(f"no {what} in {HANG} s (a hang):\n{tail(logs, 0)}")


def wait_exit(procs, logs):
    deadline = time.monotonic() + HANG
    while any(p.poll() is None for p in procs):
        if time.monotonic() > deadline:
            for p in procs:
                p.kill()
            pytest.fail(f"the cluster did not finish in {HANG} s (a hang):\n{tail(logs, 0)}")
        time.sleep(0.5)


def tail(logs, index):
    return (logs / f"worker-{index}.log").read_text(errors="replace")[-3000:]


def epochs_completed(state):
    try:
        return json.loads(state.read_text()).get("epochs_completed", 0)
    except (OSError, ValueError):  # not written yet
        return 0


@pytest.mark.slow
def test_killed_cluster_resumes_without_losing_an_epoch(tmp_path):
    recipe = tmp_path / "mw.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "name": "mw",
                "seed": 0,
                "data": {"dataset": "arrays", "params": {"synthetic": True, "num_samples": 4096}, "batch_size": 16},
                "modalities": {
                    "a": {"encoder": {"name": "mlp", "params": {"hidden_units": [64]}}},
                    "b": {"encoder": {"name": "mlp", "params": {"hidden_units": [64]}}},
                },
                "model": {"feature_dim": 16, "latent_dim": 8, "head": {"name": "mlp", "params": {"normalize": True}}},
                "objective": {"name": "infonce"},
                "evaluate": [],
            }
        )
    )
    run = tmp_path / "run"
    state = run / "state.json"
    logs = tmp_path / "first"
    procs = start_cluster(recipe, run, free_ports(2), 4, logs)
    try:  # wait until an epoch is complete, then kill a worker mid-epoch
        wait_until(lambda: epochs_completed(state) >= 1, procs, logs, "completed epoch")
        completed = epochs_completed(state)
        assert completed < 4
        procs[1].send_signal(signal.SIGKILL)
        time.sleep(3)
    finally:
        for p in procs:
            p.kill()  # the scheduler restarts the whole job, as a cluster manager would
            p.wait()
    saved = epochs_completed(state)
    assert saved >= completed

    logs = tmp_path / "second"
    procs = start_cluster(recipe, run, free_ports(2), 4, logs)
    wait_exit(procs, logs)
    output = (logs / "worker-0.log").read_text(errors="replace")
    assert all(p.returncode == 0 for p in procs), output[-3000:]
    # the checkpoint is written before state.json, so a kill between the two resumes one epoch later
    resumed = [e for e in range(saved, 4) if f"resuming after epoch {e} of 4" in output]
    assert resumed, output
    assert f"Epoch {resumed[0] + 1}/4" in output and f"Epoch {resumed[0]}/4" not in output  # no completed epoch redone
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["history"]["epoch"] == [1, 2, 3, 4]
    assert (run / "model.keras").exists()
