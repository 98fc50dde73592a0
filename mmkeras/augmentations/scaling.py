"""Random multiplicative scaling of time series."""

from __future__ import annotations

import keras
from keras import ops

from mmkeras.augmentations.base import Augmentation, per_sample_shape
from mmkeras.params import NonNegativeFloat, Seed, UnitFloat


@keras.saving.register_keras_serializable(package="mmkeras")
class Scaling(Augmentation):
    """Multiplies each sample by s ~ N(1, stddev^2), one s per sample, or per sample and channel
    (last axis) if ``per_channel`` (the time-series "scaling" of Um et al., ICMI 2017).

    Args:
        stddev: the standard deviation of the factor.
        per_channel: one factor per sample and channel instead of one per sample.
        rate: the probability that a sample is scaled.
        seed: the seed of the random draws (None: unseeded).
    """

    def __init__(
        self,
        stddev: NonNegativeFloat = 0.1,
        per_channel: bool = False,
        rate: UnitFloat = 1.0,
        seed: Seed | None = None,
        **kwargs,
    ):
        super().__init__(rate=rate, seed=seed, **kwargs)
        self.stddev = stddev
        self.per_channel = per_channel

    def augment(self, x):
        shape = per_sample_shape(x)
        if self.per_channel:
            shape[-1] = ops.shape(x)[-1]
        factor = keras.random.normal(shape, mean=1.0, stddev=self.stddev, seed=self.seed_generator)
        return x * ops.cast(factor, x.dtype)
