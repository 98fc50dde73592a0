"""CoMM's "drop": zeroing a random fraction of the time steps."""

from __future__ import annotations

import keras
from keras import ops

from mmkeras.augmentations.base import Augmentation, along, check_axis
from mmkeras.params import Seed, UnitFloat


@keras.saving.register_keras_serializable(package="mmkeras")
class RandomDrop(Augmentation):
    """Zeroes a random fraction f ~ U(0, max_fraction) of the time steps (``axis``) of each sample:
    exactly round(f * n) steps, chosen uniformly. CoMM's "drop" for sequences and time series
    (Dufumier et al., ICLR 2025): max_fraction 0.8, applied with probability 0.5.

    Args:
        max_fraction: the largest fraction of steps dropped.
        axis: the time axis (not 0, the batch axis; negative counts from the end).
        rate: the probability that a sample loses steps.
        seed: the seed of the random draws (None: unseeded).
    """

    def __init__(
        self, max_fraction: UnitFloat = 0.8, axis: int = 1, rate: UnitFloat = 0.5, seed: Seed | None = None, **kwargs
    ):
        super().__init__(rate=rate, seed=seed, **kwargs)
        self.axis = check_axis(self.what, axis)
        self.max_fraction = max_fraction

    def augment(self, x):
        axis = self.axis % len(x.shape)
        batch, n = ops.shape(x)[0], ops.shape(x)[axis]
        fraction = keras.random.uniform((batch, 1), 0.0, self.max_fraction, seed=self.seed_generator)
        count = ops.round(fraction * ops.cast(n, "float32"))
        # the rank of a uniform draw is a uniform random permutation: drop the `count` lowest ranks
        rank = ops.argsort(ops.argsort(keras.random.uniform((batch, n), seed=self.seed_generator), axis=1), axis=1)
        dropped = along(x, axis, ops.cast(rank, "float32") < count)
        return ops.where(dropped, ops.zeros_like(x), x)
