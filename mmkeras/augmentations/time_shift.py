"""A random shift along time, zero-filled or circular."""

from __future__ import annotations

import keras
from keras import ops

from mmkeras.augmentations.base import Augmentation, along, check_axis
from mmkeras.params import Seed, UnitFloat


@keras.saving.register_keras_serializable(package="mmkeras")
class TimeShift(Augmentation):
    """Shifts each sample along ``axis`` by a uniform integer in ``[-max_shift * n, max_shift * n]``
    steps (n the length); the vacated steps are zero, or the signal wraps round if ``circular``.

    Args:
        max_shift: the largest shift, as a fraction of the length.
        circular: wrap the signal round instead of filling with zeros.
        axis: the time axis (not 0, the batch axis; negative counts from the end).
        rate: the probability that a sample is shifted.
        seed: the seed of the random draws (None: unseeded).
    """

    def __init__(
        self,
        max_shift: UnitFloat = 0.1,
        circular: bool = False,
        axis: int = 1,
        rate: UnitFloat = 1.0,
        seed: Seed | None = None,
        **kwargs,
    ):
        super().__init__(rate=rate, seed=seed, **kwargs)
        self.axis = check_axis(self.what, axis)
        self.max_shift = max_shift
        self.circular = circular

    def augment(self, x):
        axis = self.axis % len(x.shape)
        n = ops.shape(x)[axis]
        limit = ops.floor(self.max_shift * ops.cast(n, "float32"))
        u = keras.random.uniform((ops.shape(x)[0], 1), seed=self.seed_generator)
        shift = ops.cast(ops.floor(u * (2.0 * limit + 1.0)) - limit, "int32")  # [B, 1] in [-limit, limit]
        source = ops.arange(n, dtype="int32")[None, :] - shift  # [B, n]: output step t reads step t - shift
        index = along(x, axis, ops.mod(source, n))
        shifted = ops.take_along_axis(x, ops.broadcast_to(index, ops.shape(x)), axis=axis)
        if self.circular:
            return shifted
        valid = along(x, axis, (source >= 0) & (source < n))
        return ops.where(valid, shifted, ops.zeros_like(shifted))
