"""Augmentations of spectrograms, audio, sequences and time series, tabular rows and token ids.

All are Keras layers in ``keras.ops`` that act on a batch ``[B, ...]``, draw every random number
per sample from their own seeded ``keras.random.SeedGenerator``, return the input unchanged
unless ``training`` is true, keep the input dtype and run under XLA. ``rate`` is the probability
that a sample is augmented at all (CoMM applies each sequence augmentation with p = 0.5).
"""

from __future__ import annotations

import keras
from keras import ops

from mmkeras.augmentations.base import Augmentation
from mmkeras.augmentations.basic import GaussianNoise


def _check_axis(name: str, axis: int) -> int:
    if axis == 0:
        raise ValueError(f"{name}: axis must not be 0 (the batch axis), got {axis}")
    return int(axis)


def _per_sample_shape(x) -> list:
    """[B, 1, ..., 1]: one value per sample, broadcastable against ``x``."""
    return [ops.shape(x)[0]] + [1] * (len(x.shape) - 1)


def _along(x, axis: int, values):
    """``values`` of shape [B, n] reshaped to broadcast along ``axis`` of ``x`` (length n)."""
    shape = [ops.shape(x)[0]] + [1] * (len(x.shape) - 1)
    shape[axis] = ops.shape(x)[axis]
    return ops.reshape(values, shape)


class _BandMask(Augmentation):
    """SpecAugment masking (Park et al., Interspeech 2019): ``num_masks`` bands of width
    U{0..max_width}, each at a uniform position along ``axis``, set to ``mask_value``."""

    def __init__(
        self,
        axis: int,
        max_width: int = 10,
        num_masks: int = 1,
        mask_value: float = 0.0,
        rate: float = 1.0,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(rate=rate, seed=seed, **kwargs)
        if max_width < 0 or num_masks < 1:
            raise ValueError(f"{self.what}: needs max_width >= 0 and num_masks >= 1, got {max_width}, {num_masks}")
        self.axis = _check_axis(self.what, axis)
        self.max_width, self.num_masks, self.mask_value = int(max_width), int(num_masks), float(mask_value)

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
        masked = _along(x, axis, ops.any(inside, axis=1))
        return ops.where(masked, ops.cast(self.mask_value, x.dtype), x)

    def get_config(self):
        return {
            **super().get_config(),
            "axis": self.axis,
            "max_width": self.max_width,
            "num_masks": self.num_masks,
            "mask_value": self.mask_value,
        }


@keras.saving.register_keras_serializable(package="mmkeras")
class TimeMask(_BandMask):
    """SpecAugment time masking of a spectrogram ``[B, T, F]`` (time on ``axis`` 1).

    MHD's sound is ``[B, 32 bands, 128 frames]``: use ``axis: 2`` there.
    """

    def __init__(
        self,
        max_width: int = 10,
        num_masks: int = 1,
        mask_value: float = 0.0,
        axis: int = 1,
        rate: float = 1.0,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(axis, max_width, num_masks, mask_value, rate, seed, **kwargs)


@keras.saving.register_keras_serializable(package="mmkeras")
class FreqMask(_BandMask):
    """SpecAugment frequency masking of a spectrogram ``[B, T, F]`` (frequency on ``axis`` 2).

    MHD's sound is ``[B, 32 bands, 128 frames]``: use ``axis: 1`` there.
    """

    def __init__(
        self,
        max_width: int = 8,
        num_masks: int = 1,
        mask_value: float = 0.0,
        axis: int = 2,
        rate: float = 1.0,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(axis, max_width, num_masks, mask_value, rate, seed, **kwargs)


@keras.saving.register_keras_serializable(package="mmkeras")
class Gain(Augmentation):
    """Multiplies each sample (a waveform or any amplitude signal) by ``10^(g/20)``, g ~ U(min_db, max_db)."""

    def __init__(self, min_db: float = -6.0, max_db: float = 6.0, rate: float = 1.0, seed: int | None = None, **kwargs):
        super().__init__(rate=rate, seed=seed, **kwargs)
        if min_db > max_db:
            raise ValueError(f"{self.what}: needs min_db <= max_db, got {min_db}, {max_db}")
        self.min_db, self.max_db = float(min_db), float(max_db)

    def augment(self, x):
        db = keras.random.uniform(_per_sample_shape(x), self.min_db, self.max_db, seed=self.seed_generator)
        return x * ops.cast(ops.power(10.0, db / 20.0), x.dtype)

    def get_config(self):
        return {**super().get_config(), "min_db": self.min_db, "max_db": self.max_db}


@keras.saving.register_keras_serializable(package="mmkeras")
class TimeShift(Augmentation):
    """Shifts each sample along ``axis`` by a uniform integer in ``[-max_shift * n, max_shift * n]``
    steps (n the length); the vacated steps are zero, or the signal wraps round if ``circular``."""

    def __init__(
        self,
        max_shift: float = 0.1,
        circular: bool = False,
        axis: int = 1,
        rate: float = 1.0,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(rate=rate, seed=seed, **kwargs)
        if not 0.0 <= max_shift <= 1.0:
            raise ValueError(f"{self.what}: max_shift must be a fraction of the length in [0, 1], got {max_shift}")
        self.axis = _check_axis(self.what, axis)
        self.max_shift, self.circular = float(max_shift), bool(circular)

    def augment(self, x):
        axis = self.axis % len(x.shape)
        n = ops.shape(x)[axis]
        limit = ops.floor(self.max_shift * ops.cast(n, "float32"))
        u = keras.random.uniform((ops.shape(x)[0], 1), seed=self.seed_generator)
        shift = ops.cast(ops.floor(u * (2.0 * limit + 1.0)) - limit, "int32")  # [B, 1] in [-limit, limit]
        source = ops.arange(n, dtype="int32")[None, :] - shift  # [B, n]: output step t reads step t - shift
        index = _along(x, axis, ops.mod(source, n))
        shifted = ops.take_along_axis(x, ops.broadcast_to(index, ops.shape(x)), axis=axis)
        if self.circular:
            return shifted
        valid = _along(x, axis, (source >= 0) & (source < n))
        return ops.where(valid, shifted, ops.zeros_like(shifted))

    def get_config(self):
        return {**super().get_config(), "max_shift": self.max_shift, "circular": self.circular, "axis": self.axis}


@keras.saving.register_keras_serializable(package="mmkeras")
class RandomDrop(Augmentation):
    """Zeroes a random fraction f ~ U(0, max_fraction) of the time steps (``axis``) of each sample:
    exactly round(f * n) steps, chosen uniformly. CoMM's "drop" for sequences and time series
    (Dufumier et al., ICLR 2025): max_fraction 0.8, applied with probability 0.5."""

    def __init__(self, max_fraction: float = 0.8, axis: int = 1, rate: float = 0.5, seed: int | None = None, **kwargs):
        super().__init__(rate=rate, seed=seed, **kwargs)
        if not 0.0 <= max_fraction <= 1.0:
            raise ValueError(f"{self.what}: max_fraction must be in [0, 1], got {max_fraction}")
        self.axis = _check_axis(self.what, axis)
        self.max_fraction = float(max_fraction)

    def augment(self, x):
        axis = self.axis % len(x.shape)
        batch, n = ops.shape(x)[0], ops.shape(x)[axis]
        fraction = keras.random.uniform((batch, 1), 0.0, self.max_fraction, seed=self.seed_generator)
        count = ops.round(fraction * ops.cast(n, "float32"))
        # the rank of a uniform draw is a uniform random permutation: drop the `count` lowest ranks
        rank = ops.argsort(ops.argsort(keras.random.uniform((batch, n), seed=self.seed_generator), axis=1), axis=1)
        dropped = _along(x, axis, ops.cast(rank, "float32") < count)
        return ops.where(dropped, ops.zeros_like(x), x)

    def get_config(self):
        return {**super().get_config(), "max_fraction": self.max_fraction, "axis": self.axis}


@keras.saving.register_keras_serializable(package="mmkeras")
class Jitter(GaussianNoise):
    """Additive Gaussian noise with CoMM's defaults for sequences and time series ("noise":
    N(0, 0.1^2), applied with probability 0.5); ``gaussian_noise`` with other defaults."""

    def __init__(self, stddev: float = 0.1, rate: float = 0.5, seed: int | None = None, **kwargs):
        super().__init__(stddev=stddev, rate=rate, seed=seed, **kwargs)


@keras.saving.register_keras_serializable(package="mmkeras")
class Scaling(Augmentation):
    """Multiplies each sample by s ~ N(1, stddev^2), one s per sample, or per sample and channel
    (last axis) if ``per_channel`` (the time-series "scaling" of Um et al., ICMI 2017)."""

    def __init__(
        self, stddev: float = 0.1, per_channel: bool = False, rate: float = 1.0, seed: int | None = None, **kwargs
    ):
        super().__init__(rate=rate, seed=seed, **kwargs)
        if stddev < 0:
            raise ValueError(f"{self.what}: stddev must be >= 0, got {stddev}")
        self.stddev, self.per_channel = float(stddev), bool(per_channel)

    def augment(self, x):
        shape = _per_sample_shape(x)
        if self.per_channel:
            shape[-1] = ops.shape(x)[-1]
        factor = keras.random.normal(shape, mean=1.0, stddev=self.stddev, seed=self.seed_generator)
        return x * ops.cast(factor, x.dtype)

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev, "per_channel": self.per_channel}


@keras.saving.register_keras_serializable(package="mmkeras")
class FeatureMask(Augmentation):
    """Sets each feature of a tabular row ``[B, F]`` (or any element of ``[B, ...]``) to
    ``mask_value`` independently with probability ``fraction``."""

    def __init__(
        self, fraction: float = 0.2, mask_value: float = 0.0, rate: float = 1.0, seed: int | None = None, **kwargs
    ):
        super().__init__(rate=rate, seed=seed, **kwargs)
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"{self.what}: fraction must be in [0, 1], got {fraction}")
        self.fraction, self.mask_value = float(fraction), float(mask_value)

    def augment(self, x):
        masked = keras.random.uniform(ops.shape(x), seed=self.seed_generator) < self.fraction
        return ops.where(masked, ops.cast(self.mask_value, x.dtype), x)

    def get_config(self):
        return {**super().get_config(), "fraction": self.fraction, "mask_value": self.mask_value}


@keras.saving.register_keras_serializable(package="mmkeras")
class TokenMask(Augmentation):
    """Replaces each token id of ``[B, L]`` integer sequences by ``mask_id`` with probability
    ``fraction``; padding (``padding_id``) is never masked. CoMM masks 15% of the tokens of
    MM-IMDb's text in training (its ``TextMasking``)."""

    def __init__(
        self,
        mask_id: int = 1,
        fraction: float = 0.15,
        padding_id: int = 0,
        rate: float = 1.0,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(rate=rate, seed=seed, **kwargs)
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"{self.what}: fraction must be in [0, 1], got {fraction}")
        if mask_id == padding_id:
            raise ValueError(f"{self.what}: mask_id must differ from padding_id, both are {mask_id}")
        self.mask_id, self.fraction, self.padding_id = int(mask_id), float(fraction), int(padding_id)

    def augment(self, x):
        picked = keras.random.uniform(ops.shape(x), seed=self.seed_generator) < self.fraction
        picked = picked & (x != ops.cast(self.padding_id, x.dtype))
        return ops.where(picked, ops.cast(self.mask_id, x.dtype), x)

    def get_config(self):
        return {
            **super().get_config(),
            "mask_id": self.mask_id,
            "fraction": self.fraction,
            "padding_id": self.padding_id,
        }
