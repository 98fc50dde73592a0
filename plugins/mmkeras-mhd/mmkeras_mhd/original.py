"""The ``mhd_original`` dataset: the published MHD files, in the built-in ``mhd`` layout.

MHD (Vasco et al. 2022), as GMC and its baselines distribute it, is two ``torch.save`` files in one
folder, ``mhd_train.pt`` (50,000 rows) and ``mhd_test.pt`` (10,000), each the tuple
``(labels, images, trajectories, sounds, trajectory_normalization, sound_normalization)``:

- ``labels``: int [N] digits 0-9 (one-hot [N, 10] is accepted too);
- ``images``: float [N, 1, 28, 28] in [0, 1] (0-255 is accepted: a maximum above 1.5 is divided by 255);
- ``trajectories``: float [N, 200];
- ``sounds``: float [N, C, Tc, 32] with C * Tc = 128: C chunks of Tc frames of 32 bands, which
  joined along time are 128 frames x 32 bands, read transposed as 32 bands x 128 frames
  ([N, 128, 32] is accepted too, by the same rule);
- two normalisation entries (the statistics the signals were scaled with): kept as JSON beside
  the cache for reference, never used for training.

The files are read without PyTorch (:mod:`mmkeras_mhd.torch_format`), checked, and converted once
into a cache ``.npz`` whose name holds each source file's size and a hash of its first and last MiB,
so a replaced file is converted again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mmkeras.plugin import CachedDataset, DataError, DataSplit, ModalityInfo, atomic_write
from mmkeras_mhd.dataset import MODALITIES
from mmkeras_mhd.torch_format import read_torch, write_torch

#: split -> the official file name
FILES: dict[str, str] = {"train": "mhd_train.pt", "test": "mhd_test.pt"}
#: the names of the tuple's six entries, in order
ENTRIES = ("labels", "images", "trajectories", "sounds", "trajectory_normalization", "sound_normalization")
FORMAT_VERSION = 1
_MIB = 1 << 20


def source_key(path: Path) -> str:
    """The file's size and a hash of its first and last MiB, for a cache file's name."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        digest.update(f.read(_MIB))
        if size > _MIB:
            f.seek(max(_MIB, size - _MIB))
            digest.update(f.read(_MIB))
    return f"{size}b_{digest.hexdigest()[:16]}"


def _jsonable(x: Any) -> Any:
    """Arrays as nested lists, dict keys as strings, numpy scalars as numbers."""
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def _entry(data: tuple, i: int, path: Path, shapes: tuple[tuple[int | None, ...], ...]) -> np.ndarray:
    """Entry ``i`` as a finite numeric array of one of ``shapes`` (None: any size), or a DataError."""
    where = f"{path}: entry {i} ({ENTRIES[i]})"
    value = data[i]
    if not isinstance(value, np.ndarray) or not (np.issubdtype(value.dtype, np.number) or value.dtype == bool):
        raise DataError(f"{where} is a {type(value).__name__}, expected a numeric tensor")
    fits = [s for s in shapes if len(s) == value.ndim and all(e is None or e == d for e, d in zip(s, value.shape))]
    if not fits:
        expected = " or ".join("[" + ", ".join("N" if e is None else str(e) for e in s) + "]" for s in shapes)
        raise DataError(f"{where} has shape {list(value.shape)}, expected {expected}")
    if np.issubdtype(value.dtype, np.inexact) and not np.isfinite(value).all():
        row = int(np.flatnonzero(~np.isfinite(value.reshape(len(value), -1)).all(axis=1))[0])
        raise DataError(f"{where} has non-finite values (first in row {row}), expected finite numbers")
    return value


def convert(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays of one official file in the ``mhd`` layout (image [N, 28, 28] float32 in [0, 1],
    sound [N, 32, 128], trajectory [N, 200], labels int64 [N]) and its normalisation entries."""
    data = read_torch(path)
    if not isinstance(data, (tuple, list)) or len(data) != len(ENTRIES):
        found = f"a {len(data)}-tuple" if isinstance(data, (tuple, list)) else f"a {type(data).__name__}"
        raise DataError(f"{path}: expected a tuple of 6 entries ({', '.join(ENTRIES)}), found {found}")
    labels = _entry(data, 0, path, ((None,), (None, 10)))
    images = _entry(data, 1, path, ((None, 1, 28, 28),))
    trajectories = _entry(data, 2, path, ((None, 200),))
    sounds = _entry(data, 3, path, ((None, None, None, 32), (None, 128, 32)))
    rows = {ENTRIES[i]: len(a) for i, a in enumerate((labels, images, trajectories, sounds))}
    if len(set(rows.values())) > 1:
        raise DataError(f"{path}: entries 0-3 disagree on the number of rows: {rows}, expected one count")
    if sounds.ndim == 4 and sounds.shape[1] * sounds.shape[2] != 128:
        raise DataError(
            f"{path}: entry 3 (sounds) has shape {list(sounds.shape)}: C x Tc = {sounds.shape[1] * sounds.shape[2]} "
            "frames, expected [N, C, Tc, 32] with C * Tc = 128"
        )
    if labels.ndim == 2:
        labels = labels.argmax(axis=1)  # one-hot rows
    elif not np.issubdtype(labels.dtype, np.integer) and not (labels == np.round(labels)).all():
        raise DataError(f"{path}: entry 0 (labels) holds non-integer values, expected digits 0-9")
    labels = labels.astype(np.int64)
    bad = np.flatnonzero((labels < 0) | (labels > 9))
    if len(bad):
        raise DataError(f"{path}: entry 0 (labels) holds {labels[bad[0]]} at row {bad[0]}, expected digits 0-9")
    image = images[:, 0].astype(np.float32)
    if image.max(initial=0.0) > 1.5:  # stored as 0-255
        image /= 255.0
    low, high = float(image.min(initial=0.0)), float(image.max(initial=0.0))
    if low < -1e-3 or high > 1 + 1e-3:
        raise DataError(f"{path}: entry 1 (images) spans [{low:g}, {high:g}], expected [0, 1] or [0, 255]")
    n = len(labels)
    # the chunks joined along time are [128 frames, 32 bands]; the mhd layout is bands x frames
    sound = np.ascontiguousarray(sounds.reshape(n, -1, 32).transpose(0, 2, 1), dtype=np.float32)
    arrays = {
        "labels": labels,
        "image": np.clip(image, 0.0, 1.0),
        "sound": sound,
        "trajectory": trajectories.astype(np.float32),
    }
    return arrays, {ENTRIES[4]: _jsonable(data[4]), ENTRIES[5]: _jsonable(data[5])}


def write_standin(directory: str | Path, rows: int = 600, seed: int = 0) -> Path:
    """Write synthetic ``mhd_train.pt`` (``rows``) and ``mhd_test.pt`` (``rows // 5``) in the official
    layout into ``directory``: random class templates plus noise, NOT the MHD data. Returns ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    # per-digit templates, so that a model can tell the stand-in's classes apart
    templates = {
        "images": rng.uniform(0, 1, (10, 1, 28, 28)).astype(np.float32),
        "trajectories": rng.uniform(-1, 1, (10, 200)).astype(np.float32),
        "sounds": rng.normal(0, 1, (10, 4, 32, 32)).astype(np.float32),  # C = 4 chunks of Tc = 32 frames
    }
    for split, n in (("train", rows), ("test", rows // 5)):
        labels = (np.arange(n) % 10).astype(np.int64)
        images = np.clip(templates["images"][labels] + rng.normal(0, 0.2, (n, 1, 28, 28)), 0, 1).astype(np.float32)
        trajectories = (templates["trajectories"][labels] + rng.normal(0, 0.1, (n, 200))).astype(np.float32)
        sounds = (templates["sounds"][labels] + rng.normal(0, 0.5, (n, 4, 32, 32))).astype(np.float32)
        normalization = {
            "min": np.array(trajectories.min(), np.float32),
            "max": np.array(trajectories.max(), np.float32),
        }
        sound_normalization = {"mean": np.array(sounds.mean(), np.float32), "std": np.array(sounds.std(), np.float32)}
        entry = (labels, images, trajectories, sounds, normalization, sound_normalization)
        atomic_write(directory / FILES[split], lambda tmp, entry=entry: write_torch(tmp, entry))
    return directory


class MHDOriginal(CachedDataset):
    """MHD from the published ``mhd_train.pt`` / ``mhd_test.pt`` (see the module docstring), yielding
    exactly what the built-in ``mhd`` yields: ``image`` [N, 28, 28, 1] in [0, 1], ``sound`` [N, 32, 128],
    ``trajectory`` [N, 200], ``label`` one-hot [N, 10], all float32, and int64 ``labels``.

    Parameters:
        path: the folder holding both files; None: synthetic stand-in files in the same layout,
            written into ``<data_dir>/mhd_original/standin/`` (for trying recipes anywhere).
        data_dir: cache root (default ``$MMKERAS_DATA_DIR``, else ``~/.cache/mmkeras``); the converted
            arrays go in ``<data_dir>/mhd_original/``.
        seed: the stand-in's seed (no effect with ``path``).
        standin_rows: the stand-in's training rows (its test split has ``standin_rows // 5``).
    """

    splits = ("train", "test")
    files_from = (
        "`mhd_train.pt` and `mhd_test.pt`, the MHD files GMC's unsupervised experiments download (its "
        "`download_unsupervised_dataset.sh`). Give their folder as `data.params.path`; PyTorch is not needed "
        "to read them. Without `path`: small synthetic stand-in files in the same layout."
    )
    cache_name = "mhd_original"

    def __init__(
        self, path: str | None = None, data_dir: str | None = None, seed: int = 0, standin_rows: int = 600
    ) -> None:
        if path is not None and (not isinstance(path, str) or not path):
            raise ValueError(f"mhd_original: path must be a folder path string or None, got {path!r}")
        if data_dir is not None and (not isinstance(data_dir, str) or not data_dir):
            raise ValueError(f"mhd_original: data_dir must be a non-empty path string or None, got {data_dir!r}")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"mhd_original: seed must be a non-negative int, got {seed!r}")
        if not isinstance(standin_rows, int) or isinstance(standin_rows, bool) or standin_rows < 10:
            raise ValueError(f"mhd_original: standin_rows must be an int >= 10, got {standin_rows!r}")
        self.set_cache_dir(data_dir)
        self.seed, self.standin_rows = seed, standin_rows
        self.path = path
        if path is not None:
            self.source_dir = Path(path).expanduser()
            if not self.source_dir.is_dir():
                raise DataError(
                    f"{self.source_dir}: no such folder (expected the one holding {' and '.join(FILES.values())})"
                )
        else:
            self.source_dir = self.cache_dir / "standin" / f"n{standin_rows}_seed{seed}"
        self._keys: dict[tuple[str, int, int], str] = {}

    def info(self) -> dict[str, ModalityInfo]:
        return dict(MODALITIES)

    def label_info(self) -> str:
        return "int64 digit 0-9"

    def source(self, split: str) -> Path:
        """The official file of ``split`` (the stand-in's written first when there is no ``path``)."""
        self._check_split(split)
        file = self.source_dir / FILES[split]
        if self.path is None and not all((self.source_dir / f).is_file() for f in FILES.values()):
            write_standin(self.source_dir, self.standin_rows, self.seed)
            print(
                f"mhd_original: no path given; wrote SYNTHETIC stand-in files (not the MHD data) to {self.source_dir}"
            )
        if not file.is_file():
            raise DataError(f"{file}: no such file (the official MHD {split} split, expected beside {FILES['train']})")
        return file

    def cache_version(self) -> int:
        return FORMAT_VERSION

    def cache_key(self, split: str) -> str:
        file = self.source(split)
        stat = file.stat()
        memo = (str(file), stat.st_size, stat.st_mtime_ns)
        if memo not in self._keys:
            self._keys[memo] = source_key(file)
        return self._keys[memo]

    def normalization_path(self, split: str) -> Path:
        """The JSON file beside ``split``'s cache holding the file's two normalisation entries."""
        return self.cache_path(split).with_suffix(".normalization.json")

    def normalization(self, split: str) -> dict[str, Any]:
        """The file's ``trajectory_normalization`` and ``sound_normalization`` (converted first if need be)."""
        self.prepare(progress=False)
        return json.loads(self.normalization_path(split).read_text())

    def build(self, splits: list[str], progress: bool) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
        for split in splits:
            file = self.source(split)
            if progress:
                what = "the SYNTHETIC stand-in " if self.path is None else ""
                print(f"mhd_original: converting {what}{file} (once; later runs read the cache)")
            arrays, normalization = convert(file)
            text = json.dumps(normalization)
            atomic_write(self.normalization_path(split), lambda tmp, text=text: Path(tmp).write_text(text))
            yield split, arrays

    def decode(self, split: str, arrays: Any) -> DataSplit:
        labels = arrays["labels"].astype(np.int64)
        inputs = {
            "image": arrays["image"].astype(np.float32)[..., None],
            "sound": arrays["sound"].astype(np.float32),
            "trajectory": arrays["trajectory"].astype(np.float32),
            "label": np.eye(10, dtype=np.float32)[labels],
        }
        return DataSplit(inputs, labels)
