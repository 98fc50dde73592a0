"""Random masking of token ids (masked-language-model style)."""

from __future__ import annotations

import keras
from keras import ops

from mmkeras.augmentations.base import Augmentation
from mmkeras.params import NonNegativeInt, Seed, UnitFloat


@keras.saving.register_keras_serializable(package="mmkeras")
class TokenMask(Augmentation):
    """Replaces each token id of ``[B, L]`` integer sequences by ``mask_id`` with probability
    ``fraction``; padding (``padding_id``) is never masked. CoMM masks 15% of the tokens of
    MM-IMDb's text in training (its ``TextMasking``).

    Args:
        mask_id: the id that replaces a masked token (not ``padding_id``).
        fraction: the probability that a token is masked.
        padding_id: the padding id, never masked.
        rate: the probability that a sample is masked at all.
        seed: the seed of the random draws (None: unseeded).
    """

    def __init__(
        self,
        mask_id: NonNegativeInt = 1,
        fraction: UnitFloat = 0.15,
        padding_id: NonNegativeInt = 0,
        rate: UnitFloat = 1.0,
        seed: Seed | None = None,
        **kwargs,
    ):
        super().__init__(rate=rate, seed=seed, **kwargs)
        if mask_id == padding_id:
            raise ValueError(f"{self.what}: mask_id must differ from padding_id, both are {mask_id}")
        self.mask_id = mask_id
        self.fraction = fraction
        self.padding_id = padding_id

    def augment(self, x):
        picked = keras.random.uniform(ops.shape(x), seed=self.seed_generator) < self.fraction
        picked = picked & (x != ops.cast(self.padding_id, x.dtype))
        return ops.where(picked, ops.cast(self.mask_id, x.dtype), x)
