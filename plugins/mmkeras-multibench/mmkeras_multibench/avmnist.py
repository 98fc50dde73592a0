"""The ``avmnist`` dataset: AV-MNIST as MultiBench publishes it, a folder of ``.npy`` files.

The folder layout (N = 60,000 training and 10,000 test rows in the published set):

- ``image/train_data.npy`` [N, 784] and ``image/test_data.npy``: MNIST digits (28 x 28, flattened) with
  much of their energy removed, values 0-255;
- ``audio/train_data.npy`` [N, 112, 112] and ``audio/test_data.npy``: spectrograms of spoken digits
  (frequency x time), values 0-255;
- ``train_labels.npy`` [N] and ``test_labels.npy``: the digits 0-9.

MultiBench's loader, reproduced here: image and audio are divided by 255; the last 5,000 training rows
are the validation split and the rest the training split. The files are plain numeric ``.npy`` arrays,
read with ``allow_pickle=False`` (a pickled object array is refused: it could run code) and memory-mapped,
so the 3 GB audio array is converted one split at a time.

Without ``path`` the dataset writes and reads a synthetic stand-in folder in the same layout
(:func:`write_avmnist_standin`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import Field, Strict

from mmkeras.plugin import Component, DataError, Dataset, DataSplit, ModalityInfo, PositiveInt, Seed
from mmkeras_multibench._common import array, standin_dir

#: the folder's files by (modality or "labels", split), and one row's shape in each
FILES: dict[tuple[str, str], str] = {
    ("image", "train"): "image/train_data.npy",
    ("image", "test"): "image/test_data.npy",
    ("audio", "train"): "audio/train_data.npy",
    ("audio", "test"): "audio/test_data.npy",
    ("labels", "train"): "train_labels.npy",
    ("labels", "test"): "test_labels.npy",
}
ROW_SHAPES: dict[str, tuple[int, ...]] = {"image": (784,), "audio": (112, 112), "labels": ()}
LAYOUT = ", ".join(FILES.values())
#: MultiBench's validation rows: the last 5,000 of the 60,000 training rows (1/12)
VALIDATION_ROWS, FULL_TRAIN_ROWS = 5000, 60000
#: rows converted to float32 at a time, so no float64 copy of a whole split is made
CHUNK = 2048


class AVMNIST(Component, Dataset):
    """AV-MNIST as MultiBench publishes it: a faded MNIST digit and a spectrogram of the spoken digit.

    Modalities: ``image`` float32 [28, 28, 1] and ``audio`` float32 [112, 112, 1], both the file's
    values / 255 (in [0, 1] for the published files); labels int64 digits 0-9. Splits "train",
    "validation" (the last ``validation_rows`` training rows) and "test".

    Args:
        path: the AV-MNIST folder (see the module docstring for its files); None: a synthetic stand-in,
            written once to ``<data_dir>/multibench_standin/avmnist_seed<seed>_rows<standin_rows>/``.
        validation_rows: the training rows held out, from the end; None: 5,000, or 1/12 of the
            training rows when there are fewer than 60,000.
        data_dir: the root of the stand-in folder (default mmkeras's data dir).
        seed: the stand-in's seed (without ``path`` only).
        standin_rows: the stand-in's training rows (without ``path`` only); its test rows are a sixth of them.
    """

    splits = ("train", "validation", "test")
    files_from = (
        "MultiBench's AV-MNIST folder (`image/` and `audio/` `.npy` files with `train_labels.npy` and "
        "`test_labels.npy`; linked from MultiBench's README), made from MNIST and the Free Spoken Digit Dataset. "
        "Give the folder as `data.params.path`. Without `path`: a synthetic stand-in folder in the same layout."
    )

    def __init__(
        self,
        path: str | None = None,
        validation_rows: PositiveInt | None = None,
        data_dir: str | None = None,
        seed: Seed = 0,
        standin_rows: Annotated[int, Strict(), Field(ge=12)] = 1200,
    ) -> None:
        self.path = path
        self.validation_rows = validation_rows
        self.data_dir = data_dir
        self.seed = seed
        self.standin_rows = standin_rows

    def folder(self) -> Path:
        """The folder read: ``path``, or the stand-in's (named by its seed and rows, so each is written once)."""
        if self.path is not None:
            return Path(self.path).expanduser()
        return standin_dir(self.data_dir) / f"avmnist_seed{self.seed}_rows{self.standin_rows}"

    def info(self) -> dict[str, ModalityInfo]:
        return {
            "image": ModalityInfo((28, 28, 1), "float32", "the digit with much of its energy removed, in [0, 1]"),
            "audio": ModalityInfo((112, 112, 1), "float32", "spectrogram of the spoken digit (frequency x time)"),
        }

    def label_info(self) -> str:
        return "int64 digit 0-9"

    def prepare(self, progress: bool = True) -> None:
        folder = self.folder()
        if self.path is None and not folder.is_dir():
            write_avmnist_standin(folder, seed=self.seed, rows=self.standin_rows)
            print(
                f"avmnist: wrote synthetic stand-in data in AV-MNIST's published layout to {folder}; "
                "set data.params.path to read the real files"
            )
        self._open("train")
        self._open("test")

    def load(self, split: str) -> DataSplit:
        self._check_split(split)
        self.prepare(progress=False)
        arrays = self._open("test" if split == "test" else "train")
        rows = slice(None)
        if split != "test":
            n = len(arrays["labels"])
            held = self._held_out(n)
            rows = slice(n - held, n) if split == "validation" else slice(0, n - held)
        return DataSplit(
            {
                "image": _scaled(arrays["image"][rows]).reshape(-1, 28, 28, 1),
                "audio": _scaled(arrays["audio"][rows])[..., None],
            },
            np.asarray(arrays["labels"][rows], dtype=np.int64),
        )

    def _held_out(self, n: int) -> int:
        held = self.validation_rows
        if held is None:
            held = VALIDATION_ROWS if n >= FULL_TRAIN_ROWS else n // 12
        if not 0 < held < n:
            file = self.folder() / FILES["labels", "train"]
            raise DataError(
                f"{file}: {n} training rows, so validation_rows={held} leaves no training or validation rows; "
                f"set data.params.validation_rows between 1 and {n - 1}"
            )
        return held

    def _open(self, split: str) -> dict[str, np.ndarray]:
        """The split's three arrays, memory-mapped, their shapes and labels checked."""
        out = {
            name: _read(self.folder(), FILES[name, split], ROW_SHAPES[name]) for name in ("image", "audio", "labels")
        }
        counts = {FILES[name, split]: len(a) for name, a in out.items()}
        if len(set(counts.values())) > 1:
            found = ", ".join(f"{f}: {c}" for f, c in counts.items())
            raise DataError(f"{self.folder()}: the {split} files disagree on the number of rows ({found})")
        labels = out["labels"]
        bad = np.flatnonzero((labels != np.round(labels)) | (labels < 0) | (labels > 9))
        if bad.size:
            file = self.folder() / FILES["labels", split]
            raise DataError(f"{file}: row {bad[0]} is {labels[bad[0]]}; expected a digit 0-9")
        return out


def _read(folder: Path, name: str, row_shape: tuple[int, ...]) -> np.ndarray:
    """``folder/name`` memory-mapped, or a :class:`DataError` naming the file and what is wrong."""
    file = folder / name
    if not file.is_file():
        raise DataError(f"{file}: no such file; an AV-MNIST folder holds {LAYOUT}")
    try:
        values = np.load(file, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:  # object arrays (pickles) and files that are not .npy
        raise DataError(
            f"{file}: not a numeric .npy array ({exc}); pickled arrays are refused: they could run code"
        ) from exc
    except OSError as exc:
        raise DataError(f"{file}: cannot be read ({exc})") from exc
    if not isinstance(values, np.ndarray):
        raise DataError(f"{file}: holds {type(values).__name__}; expected one .npy array")
    return array(values, file, "the array", (None, *row_shape))


def _scaled(values: np.ndarray) -> np.ndarray:
    """``values / 255`` as float32, computed in float32 a chunk of rows at a time (reads a memory map once)."""
    out = np.empty(values.shape, dtype=np.float32)
    for start in range(0, len(values), CHUNK):
        np.divide(values[start : start + CHUNK], np.float32(255.0), out=out[start : start + CHUNK], dtype=np.float32)
    return out


def write_avmnist_standin(folder: str | Path, seed: int = 0, rows: int = 1200) -> Path:
    """Write a synthetic AV-MNIST folder (the published layout, see the module docstring) to ``folder``.

    ``rows`` training rows and ``rows // 6`` test rows; digits d ~ Uniform{0..9}; e is fresh N(0, 1) noise in
    each cell; values are rounded and clipped to 0-255 and stored as uint8. The digit is in both modalities
    (redundant information):

    - image [784] = 28 x 28 pixels, 80 + 24 P_d + 70 e, where P_d is the digit's coarse pattern: 4 of the
      cells of a 7 x 7 grid (drawn once per seed and digit), each cell covering 4 x 4 pixels;
    - audio [112, 112] (frequency x time) = 40 + 40 e, plus 14 in two frequency bands of 3 bins centred at
      6 + 5 d and 60 + 5 ((3 d) mod 10) during the 24 frames from an onset ~ Uniform{0..88} (the word).

    Each modality alone names the digit only in part (a nearest-centroid classifier of the image, or of
    the audio averaged over time, is right a little more than half the time), both together about 4 times in 5.

    Returns ``folder``. The files are written into a temporary sibling folder renamed into place.
    """
    rng = np.random.default_rng(seed)
    cells = np.stack([rng.permutation(49) < 4 for _ in range(10)])  # 4 of the 49 cells per digit
    patterns = cells.reshape(10, 7, 7).repeat(4, axis=1).repeat(4, axis=2).reshape(10, 784)
    low = 6 + 5 * np.arange(10)
    high = 60 + 5 * ((3 * np.arange(10)) % 10)
    bins = np.arange(112)
    bands = (np.abs(bins[None] - low[:, None]) <= 1) | (np.abs(bins[None] - high[:, None]) <= 1)  # [10, 112]
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "image").mkdir(parents=True)
    (tmp / "audio").mkdir()
    for split, n in (("train", rows), ("test", rows // 6)):
        digits = rng.integers(0, 10, n)
        image = 80.0 + 24.0 * patterns[digits] + 70.0 * rng.standard_normal((n, 784), np.float32)
        onset = rng.integers(0, 89, n)
        frames = np.arange(112)
        spoken = (frames[None] >= onset[:, None]) & (frames[None] < onset[:, None] + 24)  # [n, 112]
        word = bands[digits][:, :, None] & spoken[:, None, :]  # [n, 112 frequencies, 112 frames]
        audio = rng.standard_normal((n, 112, 112), np.float32)
        audio *= 40.0  # in place: the largest array, made once
        audio += 40.0
        np.add(audio, 14.0, out=audio, where=word)
        np.save(tmp / "image" / f"{split}_data.npy", _bytes(image))
        np.save(tmp / "audio" / f"{split}_data.npy", _bytes(audio))
        np.save(tmp / f"{split}_labels.npy", digits.astype(np.int64))
    old = folder.with_name(f".{folder.name}.{os.getpid()}.old")
    if folder.exists():
        os.replace(folder, old)  # a folder cannot be renamed over a non-empty one: move it aside first
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def _bytes(values: np.ndarray) -> np.ndarray:
    """``values`` rounded and clipped to 0-255, as uint8 (overwrites ``values``)."""
    np.rint(values, out=values)
    np.clip(values, 0, 255, out=values)
    return values.astype(np.uint8)
