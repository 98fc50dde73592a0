"""The ``mimic`` dataset: MultiBench's processed MIMIC-III file ``im.pk``, read and split as MultiBench does.

The file format: a pickle of a dict holding numpy arrays, N rows (ICU admissions) each:

- ``ep_tdata``: float [N, 24, 12], an hourly time series: 24 steps x 12 measurements;
- ``adm_features_all``: float [N, 5], static admission features;
- ``adm_labels_all``: [N, 6], mortality windows as indicator columns (columns 1-5 are read);
- ``y_icd9``: [N, 20], binary labels of 20 ICD-9 code groups.

Both feature arrays may hold NaN and inf cells. MultiBench's loader, reproduced here: NaN and inf become 0
in both feature arrays; the static features are standardised per column over all N rows and the time
series per measurement over all rows and steps (mean and numpy's population std, over every row before
the split); the label is the mortality class (below) or one ICD-9 column; the row order is shuffled with
Python's ``random.seed(10); random.shuffle(rows)`` and the first N//10 rows are the validation split,
the next N//10 the test split, the rest the training split.

The mortality class is the first of adm_labels_all's columns 1, 2, 3, 4, 5 (in that order) holding a
value > 0, and 0 when none does (6 classes).

Without ``path`` the dataset writes and reads a synthetic stand-in in the same format
(:func:`write_mimic_standin`), whose information content is known by construction.
"""

from __future__ import annotations

import math
import pickle
import random
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, Strict

from mmkeras.plugin import Component, DataError, Dataset, DataSplit, ModalityInfo, PositiveInt, Seed, atomic_write
from mmkeras_multibench._common import array, key, read_pickle, standin_dir

#: the file's keys
SERIES, STATIC, MORTALITY, ICD9 = "ep_tdata", "adm_features_all", "adm_labels_all", "y_icd9"
MORTALITY_COLUMNS = 6
ICD9_COLUMNS = 20
#: fewer rows leave the validation or test split empty (each holds N // 10 rows)
MIN_ROWS = 10
#: the stand-in's ICD-9 columns: column k is a function of the factor kind ICD9_KINDS[k % 5]
ICD9_KINDS = ("redundant", "unique_static", "mixed", "unique_series", "synergy")
#: the stand-in's raw units: feature = offset + scale * latent (the loader's standardisation undoes them)
STATIC_OFFSET = np.array([65.0, 2.0, 0.5, 27.0, 120.0])
STATIC_SCALE = np.array([15.0, 1.0, 0.5, 5.0, 20.0])
SERIES_OFFSET = 10.0 * np.arange(1, 13)
SERIES_SCALE = 1.0 + np.arange(12) / 4.0


class MIMIC(Component, Dataset):
    """MIMIC-III ICU admissions as MultiBench processed them (``im.pk``): static admission features and a
    24-hour time series, with a mortality or an ICD-9 label.

    Modalities: ``static`` float32 [static_dim] and ``timeseries`` float32 [timesteps, series_dim], both
    standardised; labels int64 (mortality class 0-5, or the ICD-9 column's 0/1). Splits "train",
    "validation" and "test" as MultiBench draws them (see the module docstring). A constant column (std 0)
    is divided by 1, not 0, so it becomes 0 instead of NaN.

    Args:
        path: the ``im.pk`` file; None: a synthetic stand-in, written once to
            ``<data_dir>/multibench_standin/mimic_seed<seed>_rows<standin_rows>/im.pk``.
        task: "mortality" (6 classes) or "icd9" (binary: the column ``icd9_index`` of ``y_icd9``).
        icd9_index: the ICD-9 group for task "icd9", 0-19 (7 is the task CoMM reports).
        split_seed: the seed of Python's ``random.shuffle`` of the rows (MultiBench: 10).
        timesteps: steps in ``ep_tdata`` (the file is checked against it).
        series_dim: measurements per step in ``ep_tdata`` (checked against the file).
        static_dim: columns of ``adm_features_all`` (checked against the file).
        data_dir: the root of the stand-in folder (default mmkeras's data dir).
        seed: the stand-in's seed (without ``path`` only).
        standin_rows: the stand-in's rows (without ``path`` only).
    """

    splits = ("train", "validation", "test")
    files_from = (
        "`im.pk`, MultiBench's processed MIMIC-III. MIMIC-III is credentialed data (PhysioNet, with a data use "
        "agreement); MultiBench's authors share `im.pk` with credentialed users. Give it as `data.params.path`. "
        "Without `path`: a synthetic stand-in file in the same layout."
    )

    def __init__(
        self,
        path: str | None = None,
        task: Literal["mortality", "icd9"] = "icd9",
        # literal bounds (ICD9_COLUMNS - 1, MIN_ROWS): `mmkeras validate` reads these hints from the source
        icd9_index: Annotated[int, Strict(), Field(ge=0, le=19)] = 7,
        split_seed: Seed = 10,
        timesteps: PositiveInt = 24,
        series_dim: PositiveInt = 12,
        static_dim: PositiveInt = 5,
        data_dir: str | None = None,
        seed: Seed = 0,
        standin_rows: Annotated[int, Strict(), Field(ge=10)] = 2000,
    ) -> None:
        self.path = path
        self.task = task
        self.icd9_index = icd9_index
        self.split_seed = split_seed
        self.timesteps = timesteps
        self.series_dim = series_dim
        self.static_dim = static_dim
        self.data_dir = data_dir
        self.seed = seed
        self.standin_rows = standin_rows
        self._splits: dict[str, DataSplit] | None = None

    def file(self) -> Path:
        """The file read: ``path``, or the stand-in's (named by its seed and rows, so each is written once)."""
        if self.path is not None:
            return Path(self.path).expanduser()
        return standin_dir(self.data_dir) / f"mimic_seed{self.seed}_rows{self.standin_rows}" / "im.pk"

    def info(self) -> dict[str, ModalityInfo]:
        return {
            "static": ModalityInfo((self.static_dim,), "float32", "admission features, standardised per column"),
            "timeseries": ModalityInfo(
                (self.timesteps, self.series_dim), "float32", "hourly measurements, standardised per measurement"
            ),
        }

    def label_info(self) -> str:
        if self.task == "mortality":
            return "int64 mortality class 0-5 (0: none of the windows)"
        return f"int64 ICD-9 group {self.icd9_index} (0/1)"

    def prepare(self, progress: bool = True) -> None:
        file = self.file()
        if self.path is None and not file.is_file():
            file.parent.mkdir(parents=True, exist_ok=True)
            write_mimic_standin(file, seed=self.seed, rows=self.standin_rows)
            print(
                f"mimic: wrote synthetic stand-in data in MultiBench's im.pk layout to {file}; "
                "set data.params.path to read the real file"
            )

    def load(self, split: str) -> DataSplit:
        self._check_split(split)
        if self._splits is None:
            self.prepare(progress=False)
            self._splits = self._read(self.file())
        return self._splits[split]

    def _read(self, file: Path) -> dict[str, DataSplit]:
        data = read_pickle(file)
        series = self._features(
            data, SERIES, file, {1: ("timesteps", self.timesteps), 2: ("series_dim", self.series_dim)}
        )
        static = self._features(data, STATIC, file, {1: ("static_dim", self.static_dim)})
        n = len(series)
        if len(static) != n:
            raise DataError(f"{file}: {STATIC!r} has {len(static)} rows and {SERIES!r} {n}; expected one per admission")
        if n < MIN_ROWS:
            raise DataError(f"{file}: {n} rows; at least {MIN_ROWS} are needed (validation and test hold N // 10 each)")
        labels = self._labels(data, file, n)
        static = _standardise(static, axis=0)
        series = _standardise(series, axis=(0, 1))
        order = list(range(n))
        random.Random(self.split_seed).shuffle(order)  # the same draws as random.seed(s); random.shuffle(rows)
        rows = np.asarray(order)
        parts = {"validation": rows[: n // 10], "test": rows[n // 10 : n // 5], "train": rows[n // 5 :]}
        return {
            split: DataSplit({"static": static[r], "timeseries": series[r]}, labels[r]) for split, r in parts.items()
        }

    def _features(self, data: object, name: str, file: Path, declared: dict[int, tuple[str, int]]) -> np.ndarray:
        """The float64 array ``data[name]`` with NaN and inf set to 0, its widths checked against the params."""
        values = array(key(data, name, file), file, repr(name), (None,) * (len(declared) + 1))
        for axis, (param, size) in declared.items():
            if values.shape[axis] != size:
                expected = ["N"] + [str(s) for _, s in declared.values()]
                raise DataError(
                    f"{file}: {name!r} has shape {list(values.shape)}; expected [{', '.join(expected)}] "
                    f"(axis {axis} is {param}={size}; set data.params.{param}: {values.shape[axis]} "
                    "if the file is right)"
                )
        values = values.astype(np.float64)  # a copy: the caller's arrays are left as they were
        values[~np.isfinite(values)] = 0.0
        return values

    def _labels(self, data: object, file: Path, n: int) -> np.ndarray:
        if self.task == "mortality":
            windows = array(key(data, MORTALITY, file), file, repr(MORTALITY), (n, MORTALITY_COLUMNS))
            return mortality_class(windows)
        groups = array(key(data, ICD9, file), file, repr(ICD9), (n, ICD9_COLUMNS))
        column = groups[:, self.icd9_index]
        bad = np.flatnonzero((column != 0) & (column != 1))
        if bad.size:
            raise DataError(
                f"{file}: {ICD9!r}[{bad[0]}, {self.icd9_index}] is {column[bad[0]]}; expected 0 or 1 (binary labels)"
            )
        return column.astype(np.int64)


def mortality_class(windows: np.ndarray) -> np.ndarray:
    """int64 [N]: the first of columns 1, 2, 3, 4, 5 of ``windows`` [N, 6] holding a value > 0, else 0."""
    out = np.zeros(len(windows), dtype=np.int64)
    for column in range(MORTALITY_COLUMNS - 1, 0, -1):  # the last assignment wins: the earliest column
        out[windows[:, column] > 0] = column
    return out


def _standardise(values: np.ndarray, axis: int | tuple[int, ...]) -> np.ndarray:
    """(values - mean) / std over ``axis`` (population std; 1 where it is 0), as float32."""
    mean = values.mean(axis=axis)
    std = values.std(axis=axis)
    std[std == 0] = 1.0  # a constant column becomes 0, not NaN
    return ((values - mean) / std).astype(np.float32)


def write_mimic_standin(path: str | Path, seed: int = 0, rows: int = 2000) -> Path:
    """Write a synthetic ``im.pk`` (MultiBench's MIMIC format, see the module docstring) to ``path``.

    Per row, latent factors: a shared r ~ N(0, 1) (redundant: in both modalities), u_s ~ N(0, 1) (unique
    to the static features), u_t ~ N(0, 1) (unique to the time series), and synergy bits b_s, b_t ~
    Bernoulli(1/2) (b_s in the static features, b_t in the time series); e is fresh N(0, 1) noise in
    each cell.

    - ``adm_features_all`` [rows, 5] = STATIC_OFFSET + STATIC_SCALE * z with z = (r + 0.3e, u_s + 0.3e,
      (2 b_s - 1) + 0.3e, e, e);
    - ``ep_tdata`` [rows, 24, 12] = SERIES_OFFSET[j] + SERIES_SCALE[j] * z[t, j] with z[t, j] = r + 0.5e
      for j in 0-3, u_t + 0.5e for j in 4-7, (2 b_t - 1) sin(2 pi t / 24) + 0.5e for j in 8-9, e for
      j in 10-11;
    - 1% of the feature cells are NaN and 0.1% are +-inf (the real file has such cells);
    - ``y_icd9`` [rows, 20]: with s = (r + u_s + u_t) / sqrt(3), x = b_s XOR b_t, t_k = -0.75 + 0.5 (k // 5),
      column k is by ICD9_KINDS[k % 5]: redundant 1[r > t_k], unique_static 1[u_s > t_k], mixed
      1[s + x - 0.5 > t_k] (column 7, the default task: redundant, unique, and synergistic information),
      unique_series 1[u_t > t_k], synergy x;
    - ``adm_labels_all`` [rows, 6]: the mortality class c = 0 if s <= 0.8, else min(5, 1 + floor((s - 0.8) /
      0.3)); column 0 is 1[c > 0] and column j in 1-5 is 1[0 < c <= j] (died within window j), so the
      loader's first positive column among 1-5 is c.

    Returns ``path``. The file is written under a temporary name and renamed into place.
    """
    rng = np.random.default_rng(seed)
    n = rows
    r, u_s, u_t = rng.standard_normal((3, n))
    b_s, b_t = rng.integers(0, 2, (2, n))
    static_z = np.stack([r, u_s, 2.0 * b_s - 1.0, np.zeros(n), np.zeros(n)], axis=1)
    static_z += rng.standard_normal((n, 5)) * np.array([0.3, 0.3, 0.3, 1.0, 1.0])
    static = STATIC_OFFSET + STATIC_SCALE * static_z
    wave = np.sin(2.0 * np.pi * np.arange(24) / 24.0)
    series_z = np.zeros((n, 24, 12))
    series_z[:, :, 0:4] = r[:, None, None]
    series_z[:, :, 4:8] = u_t[:, None, None]
    series_z[:, :, 8:10] = ((2.0 * b_t - 1.0)[:, None] * wave)[:, :, None]
    series_z += rng.standard_normal((n, 24, 12)) * np.where(np.arange(12) < 10, 0.5, 1.0)
    series = SERIES_OFFSET + SERIES_SCALE * series_z
    for values in (static, series):
        cells = rng.random(values.shape)
        values[cells < 0.01] = np.nan
        infinite = (cells >= 0.01) & (cells < 0.011)
        values[infinite] = np.where(rng.random(int(infinite.sum())) < 0.5, np.inf, -np.inf)
    s = (r + u_s + u_t) / math.sqrt(3.0)
    x = (b_s ^ b_t).astype(np.float64)
    factor = {"redundant": r, "unique_static": u_s, "mixed": s + x - 0.5, "unique_series": u_t}
    icd9 = np.zeros((n, ICD9_COLUMNS), dtype=np.int64)
    for k in range(ICD9_COLUMNS):
        kind = ICD9_KINDS[k % 5]
        icd9[:, k] = x if kind == "synergy" else factor[kind] > -0.75 + 0.5 * (k // 5)
    c = np.where(s <= 0.8, 0, np.minimum(5, 1 + np.floor((s - 0.8) / 0.3))).astype(np.int64)
    windows = np.zeros((n, MORTALITY_COLUMNS), dtype=np.int64)
    windows[:, 0] = c > 0
    for j in range(1, MORTALITY_COLUMNS):
        windows[:, j] = (c > 0) & (c <= j)
    data = {SERIES: series, STATIC: static, MORTALITY: windows, ICD9: icd9}
    path = Path(path)
    atomic_write(path, lambda tmp: tmp.write_bytes(pickle.dumps(data, protocol=4)))
    return path
