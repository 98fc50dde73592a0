"""The augmentation contract, for the core's augmentations and for plugins', and the shape helpers they share."""

from __future__ import annotations

import re

import keras
from keras import ops

from mmkeras.component import Component
from mmkeras.params import Seed, UnitFloat


class Augmentation(Component, keras.layers.Layer):
    """Base class of augmentations: ``rate`` and ``seed``, a seed generator, identity unless training.

    Subclasses implement ``augment(x)`` on a batch ``[B, ...]`` (every random number drawn per
    sample from ``self.seed_generator``) and may override ``check_input(x)``. ``rate`` is the
    probability that a sample is augmented at all; the model applies augmentations in training only.
    A subclass declares its parameters once, in ``__init__``'s signature (``rate`` and ``seed``
    included), and keeps each as an attribute of the same name (see :class:`~mmkeras.component.Component`).

    Args:
        rate: the probability that a sample is augmented.
        seed: the seed of the augmentation's random draws (None: unseeded).
    """

    def __init__(self, rate: UnitFloat = 1.0, seed: Seed | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training or self.rate == 0.0:
            return x
        self.check_input(x)
        out = self.augment(x)
        if self.rate < 1.0:
            picked = keras.random.uniform(per_sample_shape(x), seed=self.seed_generator)
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


def check_axis(what: str, axis: int) -> int:
    """``axis``, refused when it is the batch axis 0 (``what`` names the augmentation in the message)."""
    if axis == 0:
        raise ValueError(f"{what}: axis must not be 0 (the batch axis), got {axis}")
    return axis


def per_sample_shape(x) -> list:
    """[B, 1, ..., 1]: one value per sample, broadcastable against ``x``."""
    return [ops.shape(x)[0]] + [1] * (len(x.shape) - 1)


def along(x, axis: int, values):
    """``values`` of shape [B, n] reshaped to broadcast along ``axis`` of ``x`` (length n)."""
    shape = per_sample_shape(x)
    shape[axis] = ops.shape(x)[axis]
    return ops.reshape(values, shape)
