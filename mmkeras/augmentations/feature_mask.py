"""Random masking of the features of tabular rows."""

from __future__ import annotations

import keras
from keras import ops

from mmkeras.augmentations.base import Augmentation
from mmkeras.params import FiniteFloat, Seed, UnitFloat


@keras.saving.register_keras_serializable(package="mmkeras")
class FeatureMask(Augmentation):
    """Sets each feature of a tabular row ``[B, F]`` (or any element of ``[B, ...]``) to
    ``mask_value`` independently with probability ``fraction``.

    Args:
        fraction: the probability that a feature is masked.
        mask_value: the value a masked feature takes.
        rate: the probability that a sample is masked at all.
        seed: the seed of the random draws (None: unseeded).
    """

    def __init__(
        self,
        fraction: UnitFloat = 0.2,
        mask_value: FiniteFloat = 0.0,
        rate: UnitFloat = 1.0,
        seed: Seed | None = None,
        **kwargs,
    ):
        super().__init__(rate=rate, seed=seed, **kwargs)
        self.fraction = fraction
        self.mask_value = mask_value

    def augment(self, x):
        masked = keras.random.uniform(ops.shape(x), seed=self.seed_generator) < self.fraction
        return ops.where(masked, ops.cast(self.mask_value, x.dtype), x)
