"""SpecAugment frequency masking."""

from __future__ import annotations

import keras

from mmkeras.augmentations._band import BandMask
from mmkeras.params import FiniteFloat, NonNegativeInt, PositiveInt, Seed, UnitFloat


@keras.saving.register_keras_serializable(package="mmkeras")
class FreqMask(BandMask):
    """SpecAugment frequency masking of a spectrogram ``[B, T, F]`` (frequency on ``axis`` 2):
    ``num_masks`` bands of width U{0..max_width} bins, each at a uniform position, set to
    ``mask_value`` (Park et al., Interspeech 2019).

    MHD's sound is ``[B, 32 bands, 128 frames]``: use ``axis: 1`` there.

    Args:
        max_width: the largest band width, in bins.
        num_masks: the number of bands per sample.
        mask_value: the value the masked bins take.
        axis: the frequency axis (not 0, the batch axis; negative counts from the end).
        rate: the probability that a sample is masked.
        seed: the seed of the random draws (None: unseeded).
    """

    def __init__(
        self,
        max_width: NonNegativeInt = 8,
        num_masks: PositiveInt = 1,
        mask_value: FiniteFloat = 0.0,
        axis: int = 2,
        rate: UnitFloat = 1.0,
        seed: Seed | None = None,
        **kwargs,
    ):
        super().__init__(axis, max_width, num_masks, mask_value, rate, seed, **kwargs)
