"""Malformed and hostile recipes (issue 15): each ends in exit 2 with a message naming the file (or the
``--set`` item) and the problem, within seconds and a few hundred MB, never a traceback or a hang.

Every file in ``fixtures/bad_recipes/`` is a case; its first line ``# expect: TEXT`` is a substring the
error must contain. ``semantic/`` holds recipes that only the semantic checks of ``validate`` reject.
Cases that need a FIFO, a symlink loop or a large file are made in a temporary directory here.

``validate`` runs for every case in one ``python -m mmkeras.cli`` process (a process per case would
import TensorFlow each time); ``train`` runs in-process; the hostile cases also run as their own
``mmkeras validate`` process, timed and with their peak memory measured.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import FIXTURES, ROOT

from mmkeras import safe_yaml
from mmkeras.cli import main

BAD = FIXTURES / "bad_recipes"
GOOD = ROOT / "recipes" / "clip_synthetic.yaml"
#: a hostile case may take this long beyond an interpreter's start-up (measured alongside)
DEADLINE_S = 20
#: a process or call still running after this long is a hang, and is stopped
HANG_S = 120
#: the peak resident memory a hostile case may reach (a bare interpreter with mmkeras is ~40 MB)
PEAK_RSS_MB = 300

pytestmark = pytest.mark.slow  # ~60 s on a loaded 2-core machine: TensorFlow is imported twice


@dataclass
class Case:
    id: str
    args: list[str]  # after the command: the recipe and any --set
    expect: str
    names: tuple[str, ...]  # the message names at least one of these
    marks: list = field(default_factory=list)


def _expectation(path: Path) -> str:
    first = path.read_bytes().split(b"\n", 1)[0].decode("ascii")
    assert first.startswith("# expect: "), f"{path}: the first line must be '# expect: TEXT'"
    return first[len("# expect: ") :]


def _file_case(path: Path) -> Case:
    text = path.read_bytes().decode("latin-1")
    extends = [Path(m).name for m in re.findall(r"^extends: *\"?([^\s\"]+)", text, re.M)]
    return Case(str(path.relative_to(BAD)), [str(path)], _expectation(path), (path.name, *extends), [])


FILE_CASES = [_file_case(p) for p in sorted(BAD.glob("*.yaml")) + sorted(BAD.glob("semantic/*.yaml"))]

#: --set items applied to a shipped recipe: (id, item, expected substring)
SET_CASES = [
    ("index_into_scalar", "modalities.a.encoder.params.hidden_units.0.x=1", "hidden_units[0] is 64, not a mapping"),
    ("key_into_list", "evaluate.probe.name=x", "evaluate is a list; expected an index 0..0, got 'probe'"),
    ("index_out_of_range", "modalities.a.augment.1=x", "modalities.a.augment is a list; expected an index 0..0"),
    ("negative_index", "evaluate.-1.name=x", "got '-1'"),
    ("key_into_string", "name.first=x", "name is 'clip-synthetic', not a mapping or a list"),
    ("key_into_bool", "data.params.synthetic.x=1", "data.params.synthetic is True, not a mapping"),
    ("no_equals", "train.epochs", "expected KEY.PATH=VALUE"),
    ("empty_key_part", "train..epochs=1", "empty key"),
    ("empty_key", "=5", "empty key"),
    ("python_tag", "train.epochs=!!python/object/apply:os.system [ls]", "tag !!python/object/apply:os.system"),
    ("recursive_alias", "train=&t [*t]", "recursive alias"),
    ("deep_value", "train=" + "[" * 100 + "]" * 100, "nested more than 64 levels deep"),
    ("wrong_type", "train.epochs=five", "train.epochs: expected an integer, got 'five'"),
    ("unknown_key", "train.epoch=5", "train.epoch: unknown key"),
]


def _set_case(id: str, item: str, expect: str) -> Case:
    return Case(f"set:{id}", [str(GOOD), "--set", item], expect, (f"--set {item}",))


def _fifo_recipe(tmp: Path) -> Path:
    os.mkfifo(tmp / "recipe.yaml")
    return tmp / "recipe.yaml"


def _extends_fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "base.yaml")
    (tmp / "extends_fifo.yaml").write_text("extends: base.yaml\nname: x\n")
    return tmp / "extends_fifo.yaml"


def _directory_recipe(tmp: Path) -> Path:
    (tmp / "recipe_dir.yaml").mkdir()
    return tmp / "recipe_dir.yaml"


def _symlink_loop(tmp: Path) -> Path:
    (tmp / "loop_a.yaml").symlink_to(tmp / "loop_b.yaml")
    (tmp / "loop_b.yaml").symlink_to(tmp / "loop_a.yaml")
    (tmp / "extends_loop.yaml").write_text("extends: loop_a.yaml\nname: x\n")
    return tmp / "extends_loop.yaml"


def _too_large(tmp: Path) -> Path:
    line = b"# " + b"x" * 1021 + b"\n"  # 1 KiB of comment, valid YAML
    (tmp / "too_large.yaml").write_bytes(GOOD.read_bytes() + line * 1024)
    return tmp / "too_large.yaml"


def _extends_too_large(tmp: Path) -> Path:
    _too_large(tmp)
    (tmp / "extends_large.yaml").write_text("extends: too_large.yaml\nname: x\n")
    return tmp / "extends_large.yaml"


def _long_chain(tmp: Path) -> Path:
    for i in range(30):
        (tmp / f"chain_{i}.yaml").write_text(f"extends: chain_{i + 1}.yaml\nname: c{i}\n")
    (tmp / "chain_30.yaml").write_bytes(GOOD.read_bytes())
    return tmp / "chain_0.yaml"


def _too_many_values(tmp: Path) -> Path:
    (tmp / "wide.yaml").write_text(GOOD.read_text() + "extra: [" + "1, " * 300_000 + "]\n")  # 900 KB
    return tmp / "wide.yaml"


def _utf16(tmp: Path) -> Path:
    (tmp / "utf16.yaml").write_bytes(GOOD.read_text().encode("utf-16"))
    return tmp / "utf16.yaml"


#: cases made in a temporary directory: (id, maker, expected substring, file named in the message)
MADE = [
    ("recipe_fifo", _fifo_recipe, "a FIFO (named pipe), not a regular file", "recipe.yaml"),
    ("extends_fifo", _extends_fifo, "extends: a FIFO (named pipe), not a regular file", "base.yaml"),
    ("recipe_directory", _directory_recipe, "a directory, not a regular file", "recipe_dir.yaml"),
    ("extends_symlink_loop", _symlink_loop, "extends: cannot resolve (Symlink loop", "extends_loop.yaml"),
    ("too_large", _too_large, f"larger than {safe_yaml.MAX_BYTES} bytes", "too_large.yaml"),
    ("extends_too_large", _extends_too_large, f"larger than {safe_yaml.MAX_BYTES} bytes", "too_large.yaml"),
    ("too_many_values", _too_many_values, f"more than {safe_yaml.MAX_NODES} values", "wide.yaml"),
    ("extends_chain_too_long", _long_chain, "more than 16 levels of extends", "chain_"),
    ("utf16", _utf16, "not UTF-8 text (byte 0xff at offset 0)", "utf16.yaml"),
]


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, Case]:
    """Every case by id, the MADE ones made in a temporary directory each."""
    out = {c.id: c for c in FILE_CASES}
    out.update({f"set:{id}": _set_case(id, item, expect) for id, item, expect in SET_CASES})
    root = tmp_path_factory.mktemp("made")
    for id, maker, expect, name in MADE:
        (root / id).mkdir()
        out[f"made:{id}"] = Case(f"made:{id}", [str(maker(root / id))], expect, (name,))
    return out


ALL_IDS = [c.id for c in FILE_CASES] + [f"set:{c[0]}" for c in SET_CASES] + [f"made:{m[0]}" for m in MADE]


def _params():
    marks = {c.id: c.marks for c in FILE_CASES}
    return [pytest.param(id, marks=marks.get(id, []), id=id) for id in ALL_IDS]


# One interpreter runs `mmkeras validate` on every case and reports each exit code and stderr as JSON.
_DRIVER = """
import contextlib, io, json, sys, traceback
from mmkeras.cli import main
out = {}
for id, args in json.load(open(sys.argv[1])).items():
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(["validate", *args])
        except SystemExit as exc:
            rc = exc.code
        except BaseException:
            traceback.print_exc()
            rc = -1
    out[id] = {"rc": rc, "stderr": err.getvalue()}
json.dump(out, open(sys.argv[2], "w"))
"""


@pytest.fixture(scope="module")
def validate_results(cases, tmp_path_factory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("validate")
    (tmp / "cases.json").write_text(json.dumps({id: c.args for id, c in cases.items()}))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [sys.executable, "-c", _DRIVER, str(tmp / "cases.json"), str(tmp / "results.json")]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((tmp / "results.json").read_text())


def _check(case: Case, rc: int, stderr: str) -> None:
    assert rc == 2, stderr
    assert "Traceback" not in stderr
    assert stderr.startswith("error: "), stderr
    assert case.expect in stderr, stderr
    assert any(name in stderr for name in case.names), f"none of {case.names} in: {stderr}"


@pytest.mark.parametrize("id", _params())
def test_validate_refuses(id, cases, validate_results):
    case = cases[id]
    result = validate_results[id]
    _check(case, result["rc"], result["stderr"])


@contextlib.contextmanager
def _deadline(seconds: int):
    """Raise in this process after ``seconds``: a blocking open() or read() is interrupted."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("id", _params())
def test_train_refuses_before_any_work(id, cases, tmp_path, capsys):
    case = cases[id]
    with _deadline(HANG_S):  # the first case here imports TensorFlow
        rc = main(["train", *case.args, "--output", str(tmp_path / "run")])
    _check(case, rc, capsys.readouterr().err)
    assert not (tmp_path / "run").exists()  # refused before the run directory is made


HOSTILE = [
    "alias_bomb.yaml",
    "alias_bomb_in_params.yaml",
    "recursive_alias.yaml",
    "deep_nesting.yaml",
    "deep_through_aliases.yaml",
    "huge_integer.yaml",
    "tag_python_object.yaml",
    "random_bytes.yaml",
    "extends_dev_zero.yaml",
    "extends_dev_stdin.yaml",
    "made:recipe_fifo",
    "made:extends_fifo",
    "made:too_large",
    "made:too_many_values",
]


def _peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory since its exec (VmHWM; ru_maxrss would count the pytest
    process it was forked from)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _run_bounded(args: list[str]) -> tuple[int, str, float, float]:
    """``mmkeras validate ARGS`` in its own process: (exit code, stderr, seconds, peak RSS in MB).
    The process is killed past the deadline or past 1 GB so that a regression fails instead of
    stalling or exhausting the machine."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    with tempfile.TemporaryFile("w+") as err:
        start = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "mmkeras.cli", "validate", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )
        killed, peak = "", 0.0
        while True:
            pid, status = os.waitpid(proc.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, _peak_rss_mb(proc.pid))  # read while it runs: an exited process has no memory
            if time.monotonic() - start > HANG_S:
                killed = f"killed after {HANG_S} s"
            elif peak > 1024:
                killed = "killed past 1 GB"
            if killed:
                proc.kill()
                _, status = os.waitpid(proc.pid, 0)
                break
            time.sleep(0.01)
        seconds = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = killed + err.read()
    return proc.returncode, stderr, seconds, peak


@pytest.fixture(scope="module")
def startup_s() -> float:
    """Seconds an ``mmkeras validate`` of a missing file takes here: start-up, on this machine now."""
    rc, stderr, seconds, _ = _run_bounded(["no-such-recipe.yaml"])
    assert rc == 2 and "recipe file not found" in stderr
    return seconds


@pytest.mark.parametrize("id", HOSTILE)
def test_hostile_recipe_ends_fast_and_small(id, cases, startup_s):
    case = cases[id]
    rc, stderr, seconds, peak_mb = _run_bounded(case.args)
    print(f"{id}: {seconds:.2f} s (start-up {startup_s:.2f} s), peak RSS {peak_mb:.0f} MB")
    _check(case, rc, stderr)
    assert seconds < 2 * startup_s + DEADLINE_S
    assert peak_mb < PEAK_RSS_MB


def test_the_corpus_is_broad():
    assert len([c for c in FILE_CASES if not c.marks]) >= 40
    assert all(c.expect.strip() for c in FILE_CASES)


def test_plain_values_keep_their_core_types():
    doc = safe_yaml.loads("a: 2024-01-01\nb: =\nc: [1, 1.5, true, null, '7']\nd: &x {k: 1}\ne: *x\n", "t.yaml")
    assert doc == {"a": "2024-01-01", "b": "=", "c": [1, 1.5, True, None, "7"], "d": {"k": 1}, "e": {"k": 1}}
    assert doc["d"] is not doc["e"]  # an alias is expanded into its own copy
