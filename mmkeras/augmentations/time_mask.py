"""SpecAugment time masking."""

from __future__ import annotations

import keras

from mmkeras.augmentations._band import BandMask
from mmkeras.params import FiniteFloat, NonNegativeInt, PositiveInt, Seed, UnitFloat


@keras.saving.register_keras_serializable(package="mmkeras")
class TimeMask(BandMask):
    """SpecAugment time masking of a spectrogram ``[B, T, F]`` (time on ``axis`` 1): ``num_masks``
    bands of width U{0..max_width} time steps, each at a uniform position, set to ``mask_value``
    (Park et al., Interspeech 2019).

    MHD's sound is ``[B, 32 bands, 128 frames]``: use ``axis: 2`` there.

    Args:
        max_width: the largest band width, in steps.
        num_masks: the number of bands per sample.
        mask_value: the value the masked steps take.
        axis: the time axis (not 0, the batch axis; negative counts from the end).
        rate: the probability that a sample is masked.
        seed: the seed of the random draws (None: unseeded).
    """

    def __init__(
        self,
        max_width: NonNegativeInt = 10,
        num_masks: PositiveInt = 1,
        mask_value: FiniteFloat = 0.0,
        axis: int = 1,
        rate: UnitFloat = 1.0,
        seed: Seed | None = None,
        **kwargs,
    ):
        super().__init__(axis, max_width, num_masks, mask_value, rate, seed, **kwargs)
