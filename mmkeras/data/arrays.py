"""The ``arrays`` dataset: an ``.npz`` file, in-memory arrays, or a seeded synthetic set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mmkeras.data.base import Dataset, DataSplit
from mmkeras.errors import DataError

LABELS = "labels"
MASK_PREFIX = "mask_"


class ArraysDataset(Dataset):
    """Arrays, one per modality, plus optional labels and presence masks.

    Give exactly one of:

    - ``path``: an ``.npz`` file. Keys ``<split>/<modality>`` (e.g. ``train/image``),
      ``<split>/labels`` and ``<split>/mask_<modality>``; a file with plain keys
      (``image``, ``labels``) is one ``train`` split.
    - ``arrays``: the same layout as a dict (Python use only; recipes give a path).
    - ``synthetic``: a seeded toy set of ``num_classes`` classes with two views of a shared
      class signal (``a``: a vector, ``b``: a small image), each with its own noise, so a
      model must align them to classify. For trying recipes without data.
    """

    def __init__(
        self,
        path: str | None = None,
        arrays: dict[str, Any] | None = None,
        synthetic: bool = False,
        num_samples: int = 1024,
        num_classes: int = 4,
        test_fraction: float = 0.25,
        seed: int = 0,
    ):
        if sum([path is not None, arrays is not None, bool(synthetic)]) != 1:
            raise ValueError("arrays dataset: give exactly one of path, arrays or synthetic: true")
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"arrays dataset: test_fraction must be in (0, 1), got {test_fraction}")
        self.path, self.seed = path, seed
        if path is not None:
            self._flat = self._read(Path(path))
        elif arrays is not None:
            self._flat = dict(arrays)
        else:
            self._flat = _synthetic(num_samples, num_classes, test_fraction, seed)
        self._splits = self._group(self._flat)
        self.splits = tuple(self._splits)

    @staticmethod
    def _read(path: Path) -> dict[str, np.ndarray]:
        if not path.exists():
            raise DataError(f"arrays dataset: file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        except (OSError, ValueError) as exc:
            raise DataError(f"arrays dataset: cannot read {path} as .npz: {exc}") from None

    def _group(self, flat: dict[str, Any]) -> dict[str, dict[str, np.ndarray]]:
        where = self.path or "arrays"
        groups: dict[str, dict[str, np.ndarray]] = {}
        for key, value in flat.items():
            split, _, name = key.rpartition("/")
            groups.setdefault(split or "train", {})[name] = np.asarray(value)
        if "train" not in groups:
            raise DataError(f"arrays dataset {where}: no train split (keys: {sorted(flat)})")
        for split, arrays in groups.items():
            if not any(k not in (LABELS,) and not k.startswith(MASK_PREFIX) for k in arrays):
                raise DataError(f"arrays dataset {where}: split {split!r} has no modality arrays")
        return groups

    def load(self, split: str) -> DataSplit:
        self._check_split(split)
        arrays = self._splits[split]
        inputs = {k: v.astype("float32") for k, v in arrays.items() if k != LABELS and not k.startswith(MASK_PREFIX)}
        masks = {k[len(MASK_PREFIX) :]: v.astype("float32") for k, v in arrays.items() if k.startswith(MASK_PREFIX)}
        labels = arrays[LABELS].astype("int64") if LABELS in arrays else None
        try:
            return DataSplit(inputs, labels, masks)
        except ValueError as exc:
            raise DataError(f"arrays dataset {self.path or 'arrays'}, split {split!r}: {exc}") from None


def _synthetic(n: int, num_classes: int, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, size=n)
    centres = rng.normal(size=(num_classes, 8))
    signal = centres[labels] + 0.3 * rng.normal(size=(n, 8))
    mix_a = rng.normal(size=(8, 16))
    mix_b = rng.normal(size=(8, 64))
    a = signal @ mix_a + 0.5 * rng.normal(size=(n, 16))
    b = (signal @ mix_b + 0.5 * rng.normal(size=(n, 64))).reshape(n, 8, 8, 1)
    cut = int(round(n * (1.0 - test_fraction)))
    out = {}
    for split, sl in (("train", slice(0, cut)), ("test", slice(cut, n))):
        out[f"{split}/a"] = a[sl].astype("float32")
        out[f"{split}/b"] = b[sl].astype("float32")
        out[f"{split}/labels"] = labels[sl]
    return out
