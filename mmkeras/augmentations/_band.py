"""SpecAugment band masking, the shared base of ``time_mask`` and ``freq_mask``."""

from __future__ import annotations

import keras
from keras import ops

from mmkeras.augmentations.base import Augmentation, along, check_axis
from mmkeras.params import FiniteFloat, NonNegativeInt, PositiveInt, Seed, UnitFloat


class BandMask(Augmentation):
    """SpecAugment masking (Park et al., Interspeech 2019): ``num_masks`` bands of width
    U{0..max_width}, each at a uniform position along ``axis``, set to ``mask_value``."""

    def __init__(
        self,
        axis: int,
        max_width: NonNegativeInt = 10,
        num_masks: PositiveInt = 1,
        mask_value: FiniteFloat = 0.0,
        rate: UnitFloat = 1.0,
        seed: Seed | None = None,
        **kwargs,
    ):
        super().__init__(rate=rate, seed=seed, **kwargs)
        self.axis = check_axis(self.what, axis)
        self.max_width = max_width
        self.num_masks = num_masks
        self.mask_value = mask_value

    def augment(self, x):
        axis = self.axis % len(x.shape)
        n = ops.shape(x)[axis]
        n_float = ops.cast(n, "float32")
        batch = ops.shape(x)[0]
        positions = ops.cast(ops.arange(n), "float32")[None, None, :]  # [1, 1, n]
        draws = keras.random.uniform((batch, self.num_masks, 2), seed=self.seed_generator)
        width = ops.minimum(ops.floor(draws[..., 0] * (self.max_width + 1)), n_float)
        start = ops.floor(draws[..., 1] * (n_float - width + 1.0))
        inside = (positions >= start[..., None]) & (positions < (start + width)[..., None])  # [B, masks, n]
        masked = along(x, axis, ops.any(inside, axis=1))
        return ops.where(masked, ops.cast(self.mask_value, x.dtype), x)
