"""The ``pendulum`` dataset: observations of :class:`~mmkeras_pendulum.env.PendulumSound` under a random policy."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np

from mmkeras.data.base import Dataset, DataSplit, ModalityInfo
from mmkeras_pendulum import generate

#: named sizes -> (train, test) observations; "full" is the GMC paper's 20,000 / 2,000
SIZES: dict[str, tuple[int, int]] = {
    "full": (20_000, 2_000),
    "small": (4_000, 400),
    "tiny": (300, 100),
}
#: what :meth:`Pendulum.load` yields, whatever the size and seed
MODALITIES: dict[str, ModalityInfo] = {
    "image": ModalityInfo((60, 60, 2), "float32", "the rendered rod, previous and current frame, in {0, 1}"),
    "sound": ModalityInfo(
        (12,), "float32", "Doppler frequency and amplitude at 3 receivers, previous and current frame, standardised"
    ),
}


def split_sizes(size: str | int) -> tuple[int, int]:
    """(train, test) observations of a named size or of an int N (N train, N // 10 test)."""
    if isinstance(size, str) and size in SIZES:
        return SIZES[size]
    if isinstance(size, int) and not isinstance(size, bool) and size >= 10:
        return size, size // 10
    raise ValueError(
        f"pendulum: size must be one of {list(SIZES)} or an int >= 10 (the number of training observations), "
        f"got {size!r}"
    )


def default_data_dir() -> str:
    """``$MMKERAS_DATA_DIR`` if set, else ``~/.cache/mmkeras``."""
    return os.environ.get("MMKERAS_DATA_DIR") or str(Path.home() / ".cache" / "mmkeras")


class Pendulum(Dataset):
    """Observations of the pendulum swing-up task (the GMC paper's control experiment) under a
    random policy: each row is one time step of a random-torque episode from a random start
    (see :mod:`mmkeras_pendulum.generate`).

    - ``image``: float32 [N, 60, 60, 2] in {0, 1}: the rendered rod, previous and current frame;
    - ``sound``: float32 [N, 12]: per frame (previous, then current) the Doppler-shifted frequency
      and the 1/d^2 amplitude of a 440 Hz source at the rod tip at three receivers, each of the 6
      features standardised with its mean and standard deviation over the training split
      (:meth:`sound_stats`, which the control evaluator's environment uses too);
    - ``labels``: int64 [N], the current angle in 8 equal bins of [-pi, pi) (bin 4 starts upright):
      a target for probes; the representation objectives do not use it.

    Parameters:
        size: "full" (20,000 train / 2,000 test), "small" (4,000 / 400), "tiny" (300 / 100),
            or an int N for N train and N // 10 test observations.
        seed: generation seed; the same seed gives byte-identical arrays.
        data_dir: cache root (default ``$MMKERAS_DATA_DIR``, else ``~/.cache/mmkeras``);
            files go in ``<data_dir>/pendulum/``.
    """

    splits = ("train", "test")

    def __init__(
        self, size: Literal["full", "small", "tiny"] | int = "full", seed: int = 0, data_dir: str | None = None
    ) -> None:
        n_train, n_test = split_sizes(size)
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"pendulum: seed must be a non-negative int, got {seed!r}")
        if data_dir is not None and (not isinstance(data_dir, str) or not data_dir):
            raise ValueError(f"pendulum: data_dir must be a non-empty path string or None, got {data_dir!r}")
        self.size = size
        self.seed = seed
        self.sizes = {"train": n_train, "test": n_test}
        self.cache_dir = Path(data_dir if data_dir is not None else default_data_dir()) / "pendulum"

    def info(self) -> dict[str, ModalityInfo]:
        return dict(MODALITIES)

    def label_info(self) -> str:
        return "int64 bin 0-7 of the current angle (probes only)"

    def cache_path(self, split: str) -> Path:
        """The cache file of ``split``, e.g. ``pendulum_v1_train_n20000_seed0.npz``."""
        self._check_split(split)
        name = f"pendulum_v{generate.FORMAT_VERSION}_{split}_n{self.sizes[split]}_seed{self.seed}.npz"
        return self.cache_dir / name

    def prepare(self, progress: bool = True) -> None:
        """Build and cache the splits that are not cached yet (a cache hit does nothing). The
        training file also holds the sound statistics (``sound_mean``, ``sound_std``)."""
        for split in self.splits:
            path = self.cache_path(split)
            if path.exists():
                continue
            if progress:
                print(f"pendulum: generating {self.sizes[split]} {split} observations -> {path}")
            arrays = generate.build(self.seed, split, self.sizes[split])
            if split == "train":
                arrays["sound_mean"], arrays["sound_std"] = generate.sound_stats(arrays["sound"])
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            self._write(path, arrays)

    @staticmethod
    def _write(path: Path, arrays: dict[str, np.ndarray]) -> None:
        # a temporary file in the same directory, renamed when complete: an interrupted build
        # never leaves a partial file under the cache name
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache is meant to be shared
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise

    def sound_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std), float64 [6] each: the training split's per-feature sound statistics
        (frequencies of receivers 1-3, then amplitudes), over both stacked frames of every row."""
        path = self.cache_path("train")
        if not path.exists():
            self.prepare()
        with np.load(path) as z:
            return z["sound_mean"], z["sound_std"]

    def states(self, split: str) -> np.ndarray:
        """float32 [N, 2]: the (theta, thetadot) of each row's current frame (theta in [-pi, pi))."""
        path = self.cache_path(split)
        if not path.exists():
            self.prepare()
        with np.load(path) as z:
            return z["state"]

    def load(self, split: str) -> DataSplit:
        """One split in memory (built first if it is not cached)."""
        path = self.cache_path(split)
        if not path.exists():
            self.prepare()
        mean, std = self.sound_stats()
        with np.load(path) as z:
            frames = z["sound"].reshape(len(z["sound"]), -1, len(mean)).astype(np.float64)
            sound = ((frames - mean) / std).reshape(len(frames), -1).astype(np.float32)
            inputs = {"image": generate.unpack_images(z["image_bits"]), "sound": sound}
            labels = z["labels"].astype(np.int64)
        return DataSplit(inputs, labels)
