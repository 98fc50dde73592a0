"""CoMM's "noise" augmentation of sequences and time series."""

from __future__ import annotations

import keras

from mmkeras.augmentations.gaussian_noise import GaussianNoise
from mmkeras.params import NonNegativeFloat, Seed, UnitFloat


@keras.saving.register_keras_serializable(package="mmkeras")
class Jitter(GaussianNoise):
    """Additive Gaussian noise with CoMM's defaults for sequences and time series ("noise":
    N(0, 0.1^2), applied with probability 0.5); ``gaussian_noise`` with other defaults.

    Args:
        stddev: the noise's standard deviation.
        rate: the probability that a sample gets noise.
        seed: the seed of the random draws (None: unseeded).
    """

    def __init__(self, stddev: NonNegativeFloat = 0.1, rate: UnitFloat = 0.5, seed: Seed | None = None, **kwargs):
        super().__init__(stddev=stddev, rate=rate, seed=seed, **kwargs)
