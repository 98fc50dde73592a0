"""A random gain in decibels, for waveforms and other amplitude signals."""

from __future__ import annotations

import keras
from keras import ops

from mmkeras.augmentations.base import Augmentation, per_sample_shape
from mmkeras.params import FiniteFloat, Seed, UnitFloat


@keras.saving.register_keras_serializable(package="mmkeras")
class Gain(Augmentation):
    """Multiplies each sample (a waveform or any amplitude signal) by ``10^(g/20)``, g ~ U(min_db, max_db).

    Args:
        min_db: the lowest gain, in decibels.
        max_db: the highest gain, in decibels (at least ``min_db``).
        rate: the probability that a sample is scaled.
        seed: the seed of the random draws (None: unseeded).
    """

    def __init__(
        self,
        min_db: FiniteFloat = -6.0,
        max_db: FiniteFloat = 6.0,
        rate: UnitFloat = 1.0,
        seed: Seed | None = None,
        **kwargs,
    ):
        super().__init__(rate=rate, seed=seed, **kwargs)
        if min_db > max_db:
            raise ValueError(f"{self.what}: needs min_db <= max_db, got {min_db}, {max_db}")
        self.min_db = min_db
        self.max_db = max_db

    def augment(self, x):
        db = keras.random.uniform(per_sample_shape(x), self.min_db, self.max_db, seed=self.seed_generator)
        return x * ops.cast(ops.power(10.0, db / 20.0), x.dtype)
