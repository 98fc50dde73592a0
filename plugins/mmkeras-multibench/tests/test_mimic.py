"""Tests of the mimic dataset: a hand-built im.pk against numpy references, its errors, and the stand-in."""

from __future__ import annotations

import math
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mmkeras_multibench.mimic import MIMIC, mortality_class, write_mimic_standin

from mmkeras.plugin import DataError, check_dataset

N = 20
#: adm_labels_all rows and the class MultiBench's order gives each (the first of columns 1-5 above 0)
WINDOWS = [
    ([0, 0, 0, 0, 0, 0], 0),
    ([1, 0, 0, 0, 0, 0], 0),  # column 0 is not read
    ([1, 1, 1, 1, 1, 1], 1),
    ([0, 0, 1, 1, 0, 0], 2),
    ([0, 0, 0, 1, 0, 1], 3),
    ([0, 0, 0, 0, 1, 1], 4),
    ([0, 0, 0, 0, 0, 1], 5),
    ([0, -1, 0, 2, 0, 0], 3),  # a negative value is not > 0
]


def _file(tmp_path: Path, **change: Any) -> tuple[Path, dict[str, np.ndarray]]:
    """A tiny im.pk with NaN and inf cells and a constant static column; ``change`` replaces or drops keys."""
    rng = np.random.default_rng(0)
    data = {
        "ep_tdata": rng.normal(5.0, 2.0, (N, 24, 12)),
        "adm_features_all": rng.normal(50.0, 10.0, (N, 5)),
        "adm_labels_all": np.array([WINDOWS[i % len(WINDOWS)][0] for i in range(N)], dtype=np.float64),
        "y_icd9": rng.integers(0, 2, (N, 20)).astype(np.float64),
    }
    data["ep_tdata"][0, 3, 2] = np.nan
    data["ep_tdata"][4, 0, 11] = np.inf
    data["ep_tdata"][7, 23, 0] = -np.inf
    data["adm_features_all"][2, 1] = np.nan
    data["adm_features_all"][5, 0] = np.inf
    data["adm_features_all"][:, 4] = 3.0  # std 0: divided by 1
    for k, v in change.items():
        if v is None:
            del data[k]
        else:
            data[k] = v
    path = tmp_path / "im.pk"
    path.write_bytes(pickle.dumps(data, protocol=2))
    return path, data


def _order(n: int, seed: int = 10) -> list[int]:
    rows = list(range(n))
    random.Random(seed).shuffle(rows)  # MultiBench: random.seed(10); random.shuffle(rows): the same draws
    return rows


def _standardised(x: np.ndarray, axis: int | tuple[int, ...]) -> np.ndarray:
    x = np.where(np.isfinite(x), x, 0.0)
    std = x.std(axis=axis)
    return (x - x.mean(axis=axis)) / np.where(std == 0, 1.0, std)


def test_features_are_cleaned_standardised_and_split_as_multibench(tmp_path: Path) -> None:
    path, raw = _file(tmp_path)
    ds = MIMIC(path=str(path))
    static = _standardised(raw["adm_features_all"], 0)
    series = _standardised(raw["ep_tdata"], (0, 1))
    order = _order(N)
    rows = {"validation": order[:2], "test": order[2:4], "train": order[4:]}
    for split, r in rows.items():
        d = ds.load(split)
        assert d.inputs["static"].shape == (len(r), 5) and d.inputs["timeseries"].shape == (len(r), 24, 12)
        assert d.inputs["static"].dtype == np.float32 and d.labels is not None and d.labels.dtype == np.int64
        np.testing.assert_allclose(d.inputs["static"], static[r], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(d.inputs["timeseries"], series[r], rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(d.labels, raw["y_icd9"][r, 7])
        assert np.isfinite(d.inputs["timeseries"]).all() and np.isfinite(d.inputs["static"]).all()
        np.testing.assert_array_equal(d.inputs["static"][:, 4], 0.0)
    # a NaN cell becomes 0 before standardising: its standardised value is (0 - mean) / std of the cleaned column
    clean = np.where(np.isfinite(raw["ep_tdata"]), raw["ep_tdata"], 0.0)[:, :, 2]
    split = next(s for s, r in rows.items() if 0 in r)
    cell = ds.load(split).inputs["timeseries"][rows[split].index(0), 3, 2]
    assert cell == pytest.approx(-clean.mean() / clean.std(), rel=1e-5)
    assert sorted(ds.info()) == ["static", "timeseries"]
    assert ds.info()["timeseries"].shape == (24, 12) and ds.label_info() == "int64 ICD-9 group 7 (0/1)"


def test_split_seed_changes_the_order(tmp_path: Path) -> None:
    path, raw = _file(tmp_path)
    order = _order(N, 3)
    d = MIMIC(path=str(path), split_seed=3).load("test")
    np.testing.assert_allclose(d.inputs["static"], _standardised(raw["adm_features_all"], 0)[order[2:4]], atol=1e-6)


def test_mortality_class_is_the_first_positive_window(tmp_path: Path) -> None:
    windows = np.array([w for w, _ in WINDOWS], dtype=np.float64)
    np.testing.assert_array_equal(mortality_class(windows), [c for _, c in WINDOWS])
    path, _ = _file(tmp_path)
    ds = MIMIC(path=str(path), task="mortality")
    expected = np.array([WINDOWS[i % len(WINDOWS)][1] for i in range(N)])
    order = _order(N)
    np.testing.assert_array_equal(ds.load("train").labels, expected[order[4:]])
    np.testing.assert_array_equal(ds.load("validation").labels, expected[order[:2]])
    assert ds.label_info().startswith("int64 mortality class 0-5")


def test_icd9_index_picks_the_column(tmp_path: Path) -> None:
    path, raw = _file(tmp_path)
    np.testing.assert_array_equal(
        MIMIC(path=str(path), icd9_index=19).load("train").labels, raw["y_icd9"][_order(N)[4:], 19]
    )


def test_a_wider_series_names_the_key_the_width_and_the_param(tmp_path: Path) -> None:
    path, _ = _file(tmp_path, ep_tdata=np.zeros((N, 24, 13)))
    with pytest.raises(DataError) as err:
        MIMIC(path=str(path)).load("train")
    message = str(err.value)
    assert str(path) in message and "'ep_tdata'" in message and "[20, 24, 13]" in message
    assert "data.params.series_dim: 13" in message
    assert MIMIC(path=str(path), series_dim=13).load("train").inputs["timeseries"].shape == (16, 24, 13)


def test_a_narrower_static_array_names_static_dim(tmp_path: Path) -> None:
    path, _ = _file(tmp_path, adm_features_all=np.zeros((N, 4)))
    with pytest.raises(DataError, match=r"'adm_features_all' has shape \[20, 4\].*data\.params\.static_dim: 4"):
        MIMIC(path=str(path)).load("train")


def test_missing_and_bad_labels(tmp_path: Path) -> None:
    path, _ = _file(tmp_path, y_icd9=None)
    with pytest.raises(DataError, match=r"im\.pk: missing key 'y_icd9'; the keys there are: 'ep_tdata'"):
        MIMIC(path=str(path)).load("train")
    assert len(MIMIC(path=str(path), task="mortality").load("train")) == 16  # mortality does not read y_icd9
    bad = np.zeros((N, 20))
    bad[3, 7] = 0.5
    path, _ = _file(tmp_path, y_icd9=bad)
    with pytest.raises(DataError, match=r"'y_icd9'\[3, 7\] is 0.5; expected 0 or 1"):
        MIMIC(path=str(path)).load("test")
    path, _ = _file(tmp_path, adm_labels_all=np.zeros((N - 1, 6)))
    with pytest.raises(DataError, match=r"'adm_labels_all' has shape \[19, 6\]; expected \[20, 6\]"):
        MIMIC(path=str(path), task="mortality").load("test")


def test_parameters_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="icd9_index: expected a number <= 19, got 20"):
        MIMIC(icd9_index=20)
    with pytest.raises(ValueError, match="task: Input should be 'mortality' or 'icd9'"):
        MIMIC(task="sepsis")
    with pytest.raises(DataError, match="no such file"):
        MIMIC(path=str(tmp_path / "absent.pk")).load("train")


def test_standin_is_deterministic_and_loads_without_a_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_mimic_standin(tmp_path / "a.pk", seed=1, rows=50).read_bytes()
    assert write_mimic_standin(tmp_path / "b.pk", seed=1, rows=50).read_bytes() == a
    assert write_mimic_standin(tmp_path / "c.pk", seed=2, rows=50).read_bytes() != a
    ds = MIMIC(data_dir=str(tmp_path), standin_rows=50)
    assert len(ds.load("train")) == 40 and len(ds.load("validation")) == 5 and len(ds.load("test")) == 5
    out = capsys.readouterr().out
    assert out.count("synthetic stand-in") == 1 and "data.params.path" in out and str(ds.file()) in out
    MIMIC(data_dir=str(tmp_path), standin_rows=50).load("train")
    assert capsys.readouterr().out == ""  # written once
    check_dataset(MIMIC, {"data_dir": str(tmp_path), "standin_rows": 50, "task": "mortality"})


def _fit_accuracy(train: np.ndarray, y_train: np.ndarray, test: np.ndarray, y_test: np.ndarray) -> float:
    """Held-out accuracy of a least-squares fit of +-1 targets (a linear classifier)."""
    w = np.linalg.lstsq(np.c_[train, np.ones(len(train))], 2.0 * y_train - 1.0, rcond=None)[0]
    return float(((np.c_[test, np.ones(len(test))] @ w > 0) == y_test).mean())


def test_standin_carries_the_documented_information(tmp_path: Path) -> None:
    raw = pickle.loads(write_mimic_standin(tmp_path / "im.pk", seed=0).read_bytes())
    for name in ("ep_tdata", "adm_features_all"):
        assert np.isnan(raw[name]).any() and np.isinf(raw[name]).any()  # as in the real file
    wave = np.sin(2 * math.pi * np.arange(24) / 24)

    def features(index: int, split: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
        d = MIMIC(path=str(tmp_path / "im.pk"), icd9_index=index).load(split)
        series = d.inputs["timeseries"]
        pooled = np.c_[series.mean(1), (series * wave[None, :, None]).mean(1)]  # level and daily cycle
        both = np.c_[d.inputs["static"], pooled]
        return {"static": d.inputs["static"], "series": pooled, "both": both}, d.labels

    # column 7 (mixed): r is in both modalities, u_s in the static features, u_t in the series
    x, y = features(7, "train")
    xt, yt = features(7, "test")
    acc = {m: _fit_accuracy(x[m], y, xt[m], yt) for m in x}
    assert acc["both"] > max(acc["static"], acc["series"]) + 0.04, acc
    assert min(acc.values()) > 0.6, acc
    # column 4 (synergy): b_s XOR b_t; each modality alone is at chance, their product's sign is the label
    x, y = features(4, "train")
    xt, yt = features(4, "test")
    assert max(_fit_accuracy(x[m], y, xt[m], yt) for m in x) < 0.6
    sign_s, sign_t = x["static"][:, 2] * x["series"][:, 20], xt["static"][:, 2] * xt["series"][:, 20]
    assert _fit_accuracy(sign_s[:, None], y, sign_t[:, None], yt) > 0.8
    # the mortality class: the first positive window column, as the loader reads it, spans all 6 classes
    assert set(mortality_class(raw["adm_labels_all"])) == set(range(6))
