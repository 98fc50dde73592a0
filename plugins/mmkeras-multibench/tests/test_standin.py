"""`mmkeras-multibench-standin` writes every stand-in, and each reads back through its dataset."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from mmkeras_multibench.affect import Affect
from mmkeras_multibench.avmnist import AVMNIST
from mmkeras_multibench.mimic import MIMIC


def test_the_command_writes_every_stand_in_and_each_loads(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "mmkeras_multibench.standin", str(tmp_path), "--rows", "24", "--seed", "3"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    names = sorted(p.rsplit("/", 1)[-1] for p in out.stdout.split())
    assert names == ["avmnist", "humor.pkl", "im.pk", "mosei.pkl", "mosi.pkl", "sarcasm.pkl"]
    for corpus in ("mosi", "mosei", "humor", "sarcasm"):
        data = Affect(corpus=corpus, path=str(tmp_path / f"{corpus}.pkl"))
        assert [len(data.load(s)) for s in data.splits] == [24, 6, 12]  # rows, rows // 4, rows // 2
    mimic = MIMIC(path=str(tmp_path / "im.pk"))
    assert sum(len(mimic.load(s)) for s in mimic.splits) == 24
    avmnist = AVMNIST(path=str(tmp_path / "avmnist"), validation_rows=4)
    test = avmnist.load("test")
    assert len(test) == 4 and set(np.unique(test.labels)) <= set(range(10))  # rows // 6 test rows
