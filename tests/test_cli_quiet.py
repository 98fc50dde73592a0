"""The command line prints what it has to say and nothing else: no TensorFlow start-up lines, no
spurious Keras warnings. Run as a user runs it: a fresh process, TF_CPP_MIN_LOG_LEVEL unset."""

import pytest
from conftest import ROOT, run_cli

# each seen in `mmkeras validate` or `mmkeras train` output before the fix (issue 15)
NOISE = (
    "All log messages before absl::InitializeLog() is called",
    "cudart_stub.cc",
    "Could not find cuda drivers",
    "oneDNN custom operations are on",
    "This TensorFlow binary is optimized",
    "failed call to cuInit",
    "Skipping variable loading for optimizer",
    "`shuffle=True` was passed, but will be ignored",
)


def mmkeras(*args, cwd=None):
    return run_cli(*args, cwd=cwd, timeout=1800, quiet_tf=False)  # the CLI must quiet TensorFlow itself


def assert_quiet(out):
    noise = [n for n in NOISE if n in out.stderr or n in out.stdout]
    assert not noise, f"noise {noise} in:\n{out.stderr[-3000:]}"


def test_validate_prints_one_line():
    out = mmkeras("validate", ROOT / "recipes" / "clip_synthetic.yaml")
    assert out.returncode == 0, out.stderr
    assert_quiet(out)
    assert out.stderr == ""
    assert out.stdout.endswith("clip_synthetic.yaml: ok (clip-synthetic: a, b -> infonce)\n")


@pytest.mark.slow
def test_train_and_rerunning_a_finished_run_are_quiet(tmp_path):
    args = [
        "train",
        ROOT / "recipes" / "clip_synthetic.yaml",
        "--set",
        "train.epochs=1",
        "--set",
        "data.params.num_samples=256",
        "--set",
        "evaluate=[]",
        "--output",
        tmp_path / "run",
    ]
    first = mmkeras(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert_quiet(first)
    again = mmkeras(*args)  # complete: loads the saved model and evaluates it
    assert again.returncode == 0, again.stderr[-3000:]
    assert "training already complete (1 epochs)" in again.stdout
    assert_quiet(again)
