"""The ``arrays`` dataset: an ``.npz`` file, in-memory arrays, or a seeded synthetic set."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from mmkeras.data.base import Dataset, DataSplit, ModalityInfo
from mmkeras.errors import DataError

LABELS = "labels"
MASK_PREFIX = "mask_"
SYNTHETIC_SHAPES = {"a": (16,), "b": (8, 8, 1)}
SYNTHETIC_DESCRIPTIONS = {
    "a": "a noisy linear view of the class signal",
    "b": "another noisy linear view, as an 8x8 one-channel image",
}


class ArraysDataset(Dataset):
    """Arrays, one per modality, plus optional labels and presence masks.

    Give exactly one of:

    - ``path``: an ``.npz`` file. Keys ``<split>/<modality>`` (e.g. ``train/image``),
      ``<split>/labels`` (whole numbers: int64 class labels; fractional ones: regression targets, kept as float32)
      and ``<split>/mask_<modality>``; a file with plain keys
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
        self._synthetic_args = (num_samples, num_classes, test_fraction, seed) if synthetic else None
        self._flat: dict[str, Any] | None = None  # the arrays of every split, when held in memory
        if path is not None:
            keys = self._members(Path(path))  # the file's index only: its arrays are read by load
        elif arrays is not None:
            self._flat = dict(arrays)
            keys = list(self._flat)
        else:
            keys = [f"{split}/{name}" for split in ("train", "test") for name in (*SYNTHETIC_SHAPES, LABELS)]
        self._layout = self._group(keys)
        self.splits = tuple(self._layout)

    def _members(self, path: Path) -> list[str]:
        """The array keys of the ``.npz`` file at ``path``, read from its zip directory."""
        if not path.exists():
            raise DataError(f"arrays dataset: file not found: {path}")
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (OSError, zipfile.BadZipFile) as exc:
            raise DataError(f"arrays dataset: cannot read {path} as .npz: {exc}") from None
        return [n.removesuffix(".npy") for n in names]

    def _group(self, keys: list[str]) -> dict[str, dict[str, str]]:
        """split -> {array name: key}."""
        where = self.path or "arrays"
        groups: dict[str, dict[str, str]] = {}
        for key in keys:
            split, _, name = key.rpartition("/")
            groups.setdefault(split or "train", {})[name] = key
        if "train" not in groups:
            raise DataError(f"arrays dataset {where}: no train split (keys: {sorted(keys)})")
        for split, names in groups.items():
            if not any(_is_modality(k) for k in names):
                raise DataError(f"arrays dataset {where}: split {split!r} has no modality arrays")
        return groups

    def info(self) -> dict[str, ModalityInfo]:
        """The train split's modalities: from the ``.npz`` headers, the arrays, or the synthetic shapes."""
        names = [name for name in self._layout["train"] if _is_modality(name)]
        if self._synthetic_args is not None:
            return {n: ModalityInfo(SYNTHETIC_SHAPES[n], "float32", SYNTHETIC_DESCRIPTIONS[n]) for n in names}
        if self._flat is not None:
            shapes = {n: np.shape(self._flat[self._layout["train"][n]])[1:] for n in names}
        else:
            shapes = self._header_shapes([self._layout["train"][n] for n in names])
            shapes = {n: shapes[self._layout["train"][n]][1:] for n in names}
        return {n: ModalityInfo(tuple(shapes[n]), "float32", f"array {self._layout['train'][n]!r}") for n in names}

    def _header_shapes(self, keys: list[str]) -> dict[str, tuple[int, ...]]:
        """Each array's shape from its ``.npy`` header inside the ``.npz``, without reading the data."""
        path = Path(self.path)
        shapes = {}
        try:
            with zipfile.ZipFile(path) as z:
                for key in keys:
                    with z.open(key + ".npy") as fh:
                        version = np.lib.format.read_magic(fh)
                        if version == (1, 0):
                            shape, _, _ = np.lib.format.read_array_header_1_0(fh)
                        elif version == (2, 0):
                            shape, _, _ = np.lib.format.read_array_header_2_0(fh)
                        else:  # version 3 headers have no public reader: read the array itself
                            with np.load(path, allow_pickle=False) as f:
                                shape = f[key].shape
                    shapes[key] = shape
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise DataError(f"arrays dataset: cannot read {path} as .npz: {exc}") from None
        return shapes

    def label_info(self) -> str | None:
        return "int64 class labels" if LABELS in self._layout["train"] else None

    def _arrays(self, split: str) -> dict[str, np.ndarray]:
        keys = self._layout[split]
        if self._flat is None and self._synthetic_args is not None:
            self._flat = _synthetic(*self._synthetic_args)
        if self._flat is not None:
            return {name: np.asarray(self._flat[key]) for name, key in keys.items()}
        try:
            with np.load(self.path, allow_pickle=False) as f:
                return {name: f[key] for name, key in keys.items()}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise DataError(f"arrays dataset: cannot read {self.path} as .npz: {exc}") from None

    def load(self, split: str) -> DataSplit:
        self._check_split(split)
        arrays = self._arrays(split)
        inputs = {k: v.astype("float32") for k, v in arrays.items() if _is_modality(k)}
        masks = {k[len(MASK_PREFIX) :]: v.astype("float32") for k, v in arrays.items() if k.startswith(MASK_PREFIX)}
        labels = arrays.get(LABELS)
        if labels is not None:  # fractional labels are regression targets (sentiment scores): kept, not truncated
            fractional = np.issubdtype(labels.dtype, np.floating) and not np.all(np.mod(labels, 1) == 0)
            labels = labels.astype("float32" if fractional else "int64")
        try:
            return DataSplit(inputs, labels, masks)
        except ValueError as exc:
            raise DataError(f"arrays dataset {self.path or 'arrays'}, split {split!r}: {exc}") from None


def _is_modality(name: str) -> bool:
    return name != LABELS and not name.startswith(MASK_PREFIX)


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
