"""Modality-agnostic augmentations: identity and additive Gaussian noise."""

from __future__ import annotations

import keras
from keras import ops

from mmkeras.params import NonNegativeFloat, UnitFloat


@keras.saving.register_keras_serializable(package="mmkeras")
class Identity(keras.layers.Layer):
    """Returns its input unchanged (an explicit "no augmentation")."""

    def call(self, x, training=None):
        return x


@keras.saving.register_keras_serializable(package="mmkeras")
class GaussianNoise(keras.layers.Layer):
    """x + N(0, stddev^2) with probability ``rate`` per sample, in training only; seeded."""

    def __init__(self, stddev: NonNegativeFloat = 0.1, rate: UnitFloat = 1.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if stddev < 0 or not 0.0 <= rate <= 1.0:
            raise ValueError(f"gaussian_noise needs stddev >= 0 and 0 <= rate <= 1, got {stddev}, {rate}")
        self.stddev, self.rate, self.seed = float(stddev), float(rate), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training or self.stddev == 0.0:
            return x
        noise = keras.random.normal(ops.shape(x), stddev=self.stddev, dtype=x.dtype, seed=self.seed_generator)
        if self.rate < 1.0:
            shape = [ops.shape(x)[0]] + [1] * (len(x.shape) - 1)
            keep = ops.cast(keras.random.uniform(shape, seed=self.seed_generator) < self.rate, x.dtype)
            noise = noise * keep
        return x + noise

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev, "rate": self.rate, "seed": self.seed}
