"""The ``mhd`` dataset: Multimodal Handwritten Digits, built locally from real signals."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from mmkeras.plugin import CachedDataset, DataSplit, ModalityInfo

#: named sizes -> (train, test) samples; "full" is the GMC paper's 50,000 / 10,000
SIZES: dict[str, tuple[int, int]] = {
    "full": (50_000, 10_000),
    "small": (5_000, 1_000),
    "tiny": (200, 100),
}
#: what :meth:`MHD.load` yields, whatever the size and seed
MODALITIES: dict[str, ModalityInfo] = {
    "image": ModalityInfo((28, 28, 1), "float32", "the digit drawn MNIST-style from a Hershey font, in [0, 1]"),
    "sound": ModalityInfo((32, 128), "float32", "the spoken digit: 32 log-mel bands x 128 frames (1 s), standardised"),
    "trajectory": ModalityInfo((200,), "float32", "the pen path: 100 (x, y) points, interleaved, within about [-1, 1]"),
    "label": ModalityInfo((10,), "float32", "the digit, one-hot"),
}


def split_sizes(size: str | int) -> tuple[int, int]:
    """(train, test) samples of a named size or of an int N (N train, N // 5 test)."""
    if isinstance(size, str) and size in SIZES:
        return SIZES[size]
    if isinstance(size, int) and not isinstance(size, bool) and size >= 5:
        return size, size // 5
    raise ValueError(
        f"MHD: size must be one of {list(SIZES)} or an int >= 5 (the number of training samples), got {size!r}"
    )


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use, not the machine's
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class MHD(CachedDataset):
    """Multimodal Handwritten Digits (as in the GMC paper): four views of each digit 0-9.

    - ``image``: float32 [N, 28, 28, 1] in [0, 1], the digit drawn MNIST-style (white on black)
      from one of seven Hershey vector fonts under a random affine and elastic distortion;
    - ``trajectory``: float32 [N, 200], the same pen strokes as 100 (x, y) points evenly spaced
      along the inked path, interleaved x0, y0, x1, y1, ... with y up, within about [-1, 1];
    - ``sound``: float32 [N, 32, 128], the digit's word spoken by eSpeak NG (random accent,
      voice, rate, pitch, time offset and noise) as 32 log-mel bands x 128 frames (1.0 s),
      standardised per sample;
    - ``label``: float32 [N, 10] one-hot; ``labels`` are the int64 digits.

    Parameters:
        size: "full" (50,000 train / 10,000 test), "small" (5,000 / 1,000), "tiny" (200 / 100),
            or an int N for N train and N // 5 test samples.
        seed: generation seed; a seed gives byte-identical arrays whatever the worker count.
        data_dir: cache root (default ``$MMKERAS_DATA_DIR``, else ``~/.cache/mmkeras``);
            files go in ``<data_dir>/mhd/``.
        workers: processes building the data (default: all usable cores).
    """

    splits = ("train", "test")
    cache_name = "mhd"

    def __init__(
        self,
        size: str | int = "full",
        seed: int = 0,
        data_dir: str | None = None,
        workers: int | None = None,
    ) -> None:
        n_train, n_test = split_sizes(size)
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"MHD: seed must be a non-negative int, got {seed!r}")
        if data_dir is not None and (not isinstance(data_dir, str) or not data_dir):
            raise ValueError(f"MHD: data_dir must be a non-empty path string or None, got {data_dir!r}")
        if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
            raise ValueError(f"MHD: workers must be a positive int or None, got {workers!r}")
        self.size = size
        self.seed = seed
        self.sizes = {"train": n_train, "test": n_test}
        self.workers = workers if workers is not None else _cpu_count()
        self.set_cache_dir(data_dir)

    def info(self) -> dict[str, ModalityInfo]:
        return dict(MODALITIES)

    def label_info(self) -> str:
        return "int64 digit 0-9"

    def cache_version(self) -> int:
        from mmkeras_mhd import generate  # librosa, eSpeak: only when the data is read or built

        return generate.FORMAT_VERSION

    def build(self, splits: list[str], progress: bool) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
        from mmkeras_mhd import generate

        sizes = {s: self.sizes[s] for s in splits}
        yield from generate.build(self.seed, sizes, self.workers, progress, str(self.cache_dir)).items()

    def decode(self, split: str, arrays: Any) -> DataSplit:
        labels = arrays["labels"].astype(np.int64)
        inputs = {
            "image": (arrays["image"].astype(np.float32) / 255.0)[..., None],
            "sound": arrays["sound"].astype(np.float32),
            "trajectory": arrays["trajectory"].astype(np.float32),
            "label": np.eye(10, dtype=np.float32)[labels],
        }
        return DataSplit(inputs, labels)
