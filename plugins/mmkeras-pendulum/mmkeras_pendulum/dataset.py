"""The ``pendulum`` dataset: observations of :class:`~mmkeras_pendulum.env.PendulumSound` under a random policy."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import numpy as np

from mmkeras.plugin import CachedDataset, DataSplit, ModalityInfo
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


class Pendulum(CachedDataset):
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
    cache_name = "pendulum"

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
        self.set_cache_dir(data_dir)

    def info(self) -> dict[str, ModalityInfo]:
        return dict(MODALITIES)

    def label_info(self) -> str:
        return "int64 bin 0-7 of the current angle (probes only)"

    def cache_version(self) -> int:
        return generate.FORMAT_VERSION

    def build(self, splits: list[str], progress: bool) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
        """The observations of ``splits``; the training file also holds the sound statistics
        (``sound_mean``, ``sound_std``)."""
        for split in splits:
            if progress:
                print(f"pendulum: generating {self.sizes[split]} {split} observations -> {self.cache_path(split)}")
            arrays = generate.build(self.seed, split, self.sizes[split])
            if split == "train":
                arrays["sound_mean"], arrays["sound_std"] = generate.sound_stats(arrays["sound"])
            yield split, arrays

    def sound_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std), float64 [6] each: the training split's per-feature sound statistics
        (frequencies of receivers 1-3, then amplitudes), over both stacked frames of every row."""
        with self.open_cache("train") as z:
            return z["sound_mean"], z["sound_std"]

    def states(self, split: str) -> np.ndarray:
        """float32 [N, 2]: the (theta, thetadot) of each row's current frame (theta in [-pi, pi))."""
        with self.open_cache(split) as z:
            return z["state"]

    def decode(self, split: str, arrays: Any) -> DataSplit:
        mean, std = self.sound_stats()
        frames = arrays["sound"].reshape(len(arrays["sound"]), -1, len(mean)).astype(np.float64)
        sound = ((frames - mean) / std).reshape(len(frames), -1).astype(np.float32)
        inputs = {"image": generate.unpack_images(arrays["image_bits"]), "sound": sound}
        return DataSplit(inputs, arrays["labels"].astype(np.int64))
