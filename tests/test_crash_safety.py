"""Runs lose nothing under faults: a kill in the middle of the checkpoint write, an unreadable
newest checkpoint, two processes in one directory, and a loss that becomes NaN."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from conftest import run_cli, synthetic_recipe

from mmkeras.checkpoint import PAUSE_ENV


def write_recipe(tmp_path, **over):
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(synthetic_recipe(**over)))
    return p


def start_paused(recipe, run, marker, epoch):
    """A training process that stops inside the write of epoch ``epoch``'s checkpoint."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", PAUSE_ENV: f"{epoch}:{marker}"}
    cmd = [sys.executable, "-m", "mmkeras.cli", "train", str(recipe), "--output", str(run), "--verbose", "0"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while not marker.exists():  # keyed to progress: the test's own timeout catches a hang
        if proc.poll() is not None:
            pytest.fail("training ended before the paused write: " + proc.stdout.read()[-3000:])
        time.sleep(0.2)
    return proc


def kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stdout.close()


def history_epochs(run):
    lines = (run / "history.csv").read_text().splitlines()
    assert sum(line.startswith("epoch,") for line in lines) == 1, lines  # one header
    return [int(line.split(",")[0]) for line in lines[1:]]


def test_a_kill_during_the_checkpoint_write_loses_no_completed_epoch(tmp_path):
    recipe = write_recipe(tmp_path, train__epochs=3)
    run = tmp_path / "run"
    marker = tmp_path / "paused"
    kill(start_paused(recipe, run, marker, epoch=2))
    assert json.loads((run / "state.json").read_text())["epochs_completed"] == 1
    assert (run / "checkpoint" / "epoch-0001.weights.h5").stat().st_size > 1000

    again = run_cli("train", recipe, "--output", run, "--verbose", "0")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming after epoch 1 of 3" in again.stdout
    assert history_epochs(run) == [0, 1, 2]
    state = json.loads((run / "state.json").read_text())
    assert state["status"] == "complete" and state["epochs_completed"] == 3
    names = sorted(p.name for p in (run / "checkpoint").iterdir())
    assert names == ["epoch-0002.weights.h5", "epoch-0003.weights.h5"]  # two kept, no temporaries left


def test_an_unreadable_newest_checkpoint_falls_back_to_the_previous_one_and_none_readable_is_one_line(tmp_path):
    recipe = write_recipe(tmp_path, train__epochs=2)
    run = tmp_path / "run"
    assert run_cli("train", recipe, "--output", run, "--verbose", "0").returncode == 0
    newest = run / "checkpoint" / "epoch-0002.weights.h5"
    newest.write_bytes(newest.read_bytes()[:96])  # what an interrupted in-place write used to leave

    more = run_cli("train", recipe, "--output", run, "--verbose", "0", "--set", "train.epochs=3")
    assert more.returncode == 0, more.stderr[-3000:]
    assert "epoch-0002.weights.h5 (" in more.stdout and "resuming from epoch-0001.weights.h5 instead" in more.stdout
    assert "resuming after epoch 1 of 3" in more.stdout
    assert history_epochs(run) == [0, 1, 2]
    assert "Traceback" not in more.stderr

    for p in (run / "checkpoint").glob("*.h5"):  # every checkpoint unreadable: one line naming them
        p.write_bytes(b"")
    out = run_cli("train", recipe, "--output", run, "--verbose", "0", "--set", "train.epochs=4")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "no checkpoint can be read (epoch-0003.weights.h5" in out.stderr and "epoch-0002.weights.h5 (" in out.stderr
    assert sorted(p.name for p in (run / "checkpoint").iterdir()) == ["epoch-0002.weights.h5", "epoch-0003.weights.h5"]


def test_a_second_process_in_the_same_run_directory_is_refused(tmp_path):
    recipe = write_recipe(tmp_path, train__epochs=2)
    run = tmp_path / "run"
    holder = start_paused(recipe, run, tmp_path / "paused", epoch=1)  # holds the lock, mid-training
    try:
        second = run_cli("train", recipe, "--output", run, "--verbose", "0")
        assert second.returncode == 2
        assert f"is in use by another mmkeras process (pid {holder.pid}, train)" in second.stderr
        evaluating = run_cli("evaluate", run)
        assert evaluating.returncode == 2 and f"pid {holder.pid}" in evaluating.stderr
    finally:
        kill(holder)
    done = run_cli("train", recipe, "--output", run, "--verbose", "0")
    assert done.returncode == 0, done.stderr[-3000:]
    assert history_epochs(run) == [0, 1]


def test_a_loss_that_becomes_nan_fails_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    # an absurd learning rate: the first update sends the weights to infinity
    recipe = write_recipe(tmp_path, train__epochs=3, train__optimizer={"name": "sgd", "learning_rate": 1.0e30})
    run = tmp_path / "run"
    out = run_cli("train", recipe, "--output", run, "--verbose", "0")
    assert out.returncode == 2, out.stdout[-2000:]
    assert "training stopped: loss nan at epoch 1, step " in out.stderr
    assert "the run is marked failed and no epoch had completed" in out.stderr
    state = json.loads((run / "state.json").read_text())
    assert state["status"] == "failed" and state["failure"]["epoch"] == 1
    assert not (run / "model.keras").exists() and not (run / "metrics.json").exists()
    assert not list((run / "checkpoint").glob("*.h5"))


def test_a_corrupt_history_is_read_past_not_a_traceback(tmp_path):
    from mmkeras.runs import RunDirectory

    run = tmp_path / "run"
    run.mkdir()
    # two interleaved writers, as before the run lock: a second header and a torn row
    (run / "history.csv").write_text("epoch,loss\n0,1.5\nepoch,loss\n1,1.25\n2,1.\n3\n")
    assert RunDirectory(run).history() == {"epoch": [1, 2, 3], "loss": [1.5, 1.25, 1.0]}


@pytest.mark.parametrize(
    "poison, expected",
    [
        ("nan", "modality 'a'"),
        ("zeros", "modality 'b'"),
    ],
)
def test_nan_data_or_a_modality_of_zeros_never_makes_a_complete_run(tmp_path, poison, expected):
    import numpy as np

    rng = np.random.default_rng(0)
    arrays = {
        "train/a": rng.normal(size=(64, 4)).astype("float32"),
        "train/b": rng.normal(size=(64, 3)).astype("float32"),
        "train/labels": rng.integers(0, 2, 64),
    }
    if poison == "nan":
        arrays["train/a"][17, 2] = np.nan
    else:
        arrays["train/b"][:] = 0.0
    np.savez(tmp_path / "data.npz", **arrays)
    doc = synthetic_recipe()
    doc["data"] = {"dataset": "arrays", "params": {"path": str(tmp_path / "data.npz")}, "batch_size": 16}
    doc["modalities"]["b"] = {"encoder": {"name": "mlp", "params": {"hidden_units": [8]}}}
    recipe = tmp_path / "poisoned.yaml"
    recipe.write_text(yaml.safe_dump(doc))
    run = tmp_path / "run"
    out = run_cli("train", recipe, "--output", run, "--verbose", "0")
    assert out.returncode == 2, out.stdout[-2000:]
    assert expected in out.stderr and "split 'train'" in out.stderr and "Traceback" not in out.stderr
    if poison == "nan":
        assert "row 17" in out.stderr
    assert not (run / "recipe.yaml").exists() and not (run / "state.json").exists()  # refused before training


def test_a_checkpoint_the_disk_cannot_hold_is_refused_before_writing(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    import keras
    import numpy as np

    from mmkeras import checkpoint
    from mmkeras.errors import MMKerasError

    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(256)])
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)
    first = checkpoint.save(model, tmp_path, 1)
    before = first.read_bytes()
    weights = (64 * 256 + 256) * 4  # float32 kernel and bias; Adam adds two slots of each
    assert first.stat().st_size > weights

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(10**9, 10**9 - 3 * weights, 3 * weights))
    with pytest.raises(MMKerasError, match=r"cannot write .*epoch-0002\.weights\.h5: 0\.\d MB free on its disk"):
        checkpoint.save(model, tmp_path, 2)
    assert first.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [first.name]

    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(10**9, 0, 10**9))
    model.layers[0].kernel.assign(np.ones((64, 256), "float32"))
    checkpoint.save(model, tmp_path, 2)
    assert checkpoint.restore(model, tmp_path, say=lambda _: None) == 2
