"""The augmentation contract, for the core's augmentations and for plugins'."""

from __future__ import annotations

import re

import keras
from keras import ops

from mmkeras.params import UnitFloat


class Augmentation(keras.layers.Layer):
    """Base class of augmentations: ``rate`` and ``seed``, a seed generator, identity unless training.

    Subclasses implement ``augment(x)`` on a batch ``[B, ...]`` (every random number drawn per
    sample from ``self.seed_generator``) and may override ``check_input(x)``. ``rate`` is the
    probability that a sample is augmented at all; the model applies augmentations in training only.
    """

    def __init__(self, rate: UnitFloat = 1.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{self.what}: rate must be in [0, 1], got {rate}")
        self.rate, self.seed = float(rate), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training or self.rate == 0.0:
            return x
        self.check_input(x)
        out = self.augment(x)
        if self.rate < 1.0:
            picked = keras.random.uniform([ops.shape(x)[0]] + [1] * (len(x.shape) - 1), seed=self.seed_generator)
            out = ops.where(picked < self.rate, out, x)
        return out

    def check_input(self, x) -> None:
        """Raise ValueError for an input this augmentation cannot handle."""

    def augment(self, x):
        raise NotImplementedError

    @property
    def what(self) -> str:
        """The component's registered-style name for messages (a layer's own name may carry a suffix)."""
        return re.sub(r"(?<!^)(?=[A-Z])", "_", type(self).__name__).lower()

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
