"""Additive Gaussian noise, for any modality."""

from __future__ import annotations

import keras

from mmkeras.augmentations.base import Augmentation
from mmkeras.params import NonNegativeFloat, Seed, UnitFloat


@keras.saving.register_keras_serializable(package="mmkeras")
class GaussianNoise(Augmentation):
    """x + N(0, stddev^2) with probability ``rate`` per sample, in training only; seeded.

    Args:
        stddev: the noise's standard deviation.
        rate: the probability that a sample gets noise.
        seed: the seed of the random draws (None: unseeded).
    """

    def __init__(self, stddev: NonNegativeFloat = 0.1, rate: UnitFloat = 1.0, seed: Seed | None = None, **kwargs):
        super().__init__(rate=rate, seed=seed, **kwargs)
        self.stddev = stddev

    def augment(self, x):
        if self.stddev == 0.0:
            return x
        return x + keras.random.normal(keras.ops.shape(x), stddev=self.stddev, dtype=x.dtype, seed=self.seed_generator)
