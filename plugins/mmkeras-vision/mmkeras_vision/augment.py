"""SimCLR's image augmentations (Chen et al., ICML 2020), as used by CoMM (Dufumier et al., ICLR 2025).

Keras layers in ``keras.ops`` on a batch of images ``[B, H, W, C]`` with values in [0, 1] (C = 3,
or C = 1 for grayscale). Each draws its random numbers per sample from its own seeded
``keras.random.SeedGenerator``, returns the input unchanged unless ``training`` is true, keeps the
input dtype and runs inside ``tf.function(jit_compile=True)``. The CoMM/SimCLR recipe is
random_resized_crop, color_jitter (p = 0.8), random_grayscale (p = 0.2), gaussian_blur (p = 0.5)
and random_flip; ``rate`` is the probability that a sample is augmented.

One difference from torchvision, on purpose: crop boxes are continuous (sub-pixel) rather than
whole pixels, which keeps the crop a pair of matrix products.

_materialising: the layers that read neighbouring pixels (crop, flip, blur) and the colour
stages are matrix products, not slices and elementwise chains. XLA fuses elementwise chains into
their consumers and recomputes a producer once per read: a flip after a blur after colour
jitter, written with slices, recomputed the jitter dozens of times per pixel (measured 30x
slower on CPU, with minute-long compiles). A matrix product's operands are materialised.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from mmkeras.plugin import Augmentation, Seed, UnitFloat

#: ITU-R BT.601 luma weights, as torchvision's rgb_to_grayscale uses
LUMA = (0.299, 0.587, 0.114)


def _static_size(name: str, x) -> tuple[int, int, int]:
    if len(x.shape) != 4 or None in tuple(x.shape[1:]):
        raise ValueError(f"{name}: expects images [B, H, W, C] with known H, W, C, got shape {tuple(x.shape)}")
    return int(x.shape[1]), int(x.shape[2]), int(x.shape[3])


def _gray(x):
    """[B, H, W, 1] luma of RGB images (the image itself when C = 1)."""
    if x.shape[-1] == 1:
        return x
    weights = ops.cast(ops.convert_to_tensor(LUMA), x.dtype)
    return ops.sum(x * weights, axis=-1, keepdims=True)


class _ImageAugmentation(Augmentation):
    """The core's augmentation plumbing, for images ``[B, H, W, C]`` of known size."""

    def check_input(self, x) -> None:
        _static_size(self.what, x)


def _interpolation_matrix(start, length, size: int, dtype):
    """[B, size, size] bilinear weights that resample the span [start, start + length) of an axis
    of ``size`` pixels onto ``size`` output pixels (pixel centres aligned, edges clamped)."""
    centres = (ops.arange(size, dtype="float32") + 0.5)[None, :]  # [1, size]
    source = start + centres * (length / size) - 0.5  # [B, size]: where each output pixel samples
    source = ops.clip(source, 0.0, size - 1.0)
    grid = ops.arange(size, dtype="float32")[None, None, :]
    weights = ops.maximum(0.0, 1.0 - ops.abs(source[..., None] - grid))  # hat function
    return ops.cast(weights, dtype)


@keras.saving.register_keras_serializable(package="mmkeras_vision")
class RandomResizedCrop(_ImageAugmentation):
    """A random box of area ``U(scale) * H * W`` and aspect ratio ``w/h`` log-uniform in ``ratio``,
    at a uniform position, resized bilinearly to the input's H x W (SimCLR: scale (0.08, 1)).

    Like torchvision it tries 10 boxes per sample and keeps the first that fits the image, else
    falls back to the largest box of the nearest admissible ratio. The resize is two matrix
    products per sample (separable bilinear), which XLA compiles well.
    """

    def __init__(
        self,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        rate: UnitFloat = 1.0,
        seed: Seed | None = None,
        **kwargs,
    ):
        super().__init__(rate=rate, seed=seed, **kwargs)
        scale, ratio = tuple(float(s) for s in scale), tuple(float(r) for r in ratio)
        if len(scale) != 2 or not 0.0 < scale[0] <= scale[1] <= 1.0:
            raise ValueError(f"{self.what}: scale must be (min, max) with 0 < min <= max <= 1, got {scale}")
        if len(ratio) != 2 or not 0.0 < ratio[0] <= ratio[1]:
            raise ValueError(f"{self.what}: ratio must be (min, max) with 0 < min <= max, got {ratio}")
        self.scale, self.ratio = scale, ratio

    def boxes(self, batch, height: int, width: int):
        """Per-sample crop boxes ``(top, left, h, w)`` in pixels, each [B, 1]."""
        attempts = 10
        draws = keras.random.uniform((batch, attempts, 2), seed=self.seed_generator)
        area = (self.scale[0] + draws[..., 0] * (self.scale[1] - self.scale[0])) * (height * width)
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = ops.exp(log_lo + draws[..., 1] * (log_hi - log_lo))
        w, h = ops.sqrt(area * aspect), ops.sqrt(area / aspect)
        fits = (w <= width) & (h <= height)
        first = ops.argmax(ops.cast(fits, "int32"), axis=1)[:, None]
        any_fit = ops.any(fits, axis=1, keepdims=True)
        fallback_w, fallback_h = self._fallback(height, width)
        w = ops.where(any_fit, ops.take_along_axis(w, first, axis=1), fallback_w)
        h = ops.where(any_fit, ops.take_along_axis(h, first, axis=1), fallback_h)
        position = keras.random.uniform((batch, 2), seed=self.seed_generator)
        top = position[:, :1] * (height - h)
        left = position[:, 1:] * (width - w)
        return top, left, h, w

    def _fallback(self, height: int, width: int) -> tuple[float, float]:
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            return float(width), width / self.ratio[0]
        if in_ratio > self.ratio[1]:
            return height * self.ratio[1], float(height)
        return float(width), float(height)

    def augment(self, x):
        height, width, _ = _static_size(self.what, x)
        top, left, h, w = self.boxes(ops.shape(x)[0], height, width)
        rows = _interpolation_matrix(top, h, height, x.dtype)  # [B, H_out, H_in]
        cols = _interpolation_matrix(left, w, width, x.dtype)  # [B, W_out, W_in]
        return ops.einsum("bxj,byjc->byxc", cols, ops.einsum("byi,bijc->byjc", rows, x))

    def get_config(self):
        return {**super().get_config(), "scale": list(self.scale), "ratio": list(self.ratio)}


@keras.saving.register_keras_serializable(package="mmkeras_vision")
class RandomFlip(_ImageAugmentation):
    """Mirrors each image left-right with probability ``rate`` (0.5, as in SimCLR)."""

    def __init__(self, rate: UnitFloat = 0.5, seed: Seed | None = None, **kwargs):
        super().__init__(rate=rate, seed=seed, **kwargs)

    def augment(self, x):
        # a product with the reversal matrix rather than ops.flip: see _materialising
        width = _static_size(self.what, x)[1]
        reverse = ops.cast(np.eye(width)[::-1], x.dtype)
        return ops.einsum("xj,byjc->byxc", reverse, x)


@keras.saving.register_keras_serializable(package="mmkeras_vision")
class ColorJitter(_ImageAugmentation):
    """torchvision's ColorJitter, per sample: brightness, contrast, saturation and hue factors drawn
    from [1 - b, 1 + b], [1 - c, 1 + c], [1 - s, 1 + s] and [-h, h], applied in a random order,
    clipping to [0, 1] after each. SimCLR/CoMM: (0.4, 0.4, 0.4, 0.1) with probability 0.8.

    For grayscale images (C = 1) saturation and hue do nothing, as in torchvision.
    """

    def __init__(
        self,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.4,
        hue: float = 0.1,
        rate: UnitFloat = 0.8,
        seed: Seed | None = None,
        **kwargs,
    ):
        super().__init__(rate=rate, seed=seed, **kwargs)
        for key, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if value < 0:
                raise ValueError(f"{self.what}: {key} must be >= 0, got {value}")
        if not 0.0 <= hue <= 0.5:
            raise ValueError(f"{self.what}: hue must be in [0, 0.5], got {hue}")
        self.brightness, self.contrast = float(brightness), float(contrast)
        self.saturation, self.hue = float(saturation), float(hue)

    def active(self, channels: int) -> list[str]:
        """The ops that can change images of ``channels`` channels, in their index order."""
        strengths = {"brightness": self.brightness, "contrast": self.contrast}
        if channels == 3:
            strengths.update(saturation=self.saturation, hue=self.hue)
        return [name for name, strength in strengths.items() if strength > 0]

    def sample(self, batch, channels: int, dtype: str = "float32") -> tuple[dict, object]:
        """Per-sample parameters: the factors of brightness, contrast and saturation and the hue
        shift, each [B], and ``order`` [B, n]: the index (into :meth:`active`) of the k-th op."""
        draws = keras.random.uniform((batch, 4), seed=self.seed_generator)
        factors = {}
        for i, name in enumerate(("brightness", "contrast", "saturation")):
            low = max(0.0, 1.0 - getattr(self, name))
            factors[name] = ops.cast(low + draws[:, i] * (1.0 + getattr(self, name) - low), dtype)
        factors["hue"] = ops.cast((2.0 * draws[:, 3] - 1.0) * self.hue, dtype)
        n = max(1, len(self.active(channels)))
        order = ops.argsort(keras.random.uniform((batch, n), seed=self.seed_generator), axis=1)
        return factors, order

    def augment(self, x):
        batch = ops.shape(x)[0]
        names = self.active(x.shape[-1])
        if not names:
            return x
        factors, order = self.sample(batch, x.shape[-1], x.dtype)
        blends = [j for j, name in enumerate(names) if name != "hue"]

        luma = ops.cast(ops.convert_to_tensor(LUMA if x.shape[-1] == 3 else (1.0,)), x.dtype)
        identity = ops.eye(x.shape[-1], dtype=x.dtype)[None]

        def blend(y, k: int, active):
            """Stage k for the samples where ``active`` and the k-th op is a blend. Brightness,
            contrast and saturation are each clip(f * y + (1 - f) * target) with target 0, the
            mean luma or the luma: one per-sample colour matrix and offset do whichever a sample
            needs. The matrix product also makes XLA materialise each stage instead of
            recomputing the whole chain inside one fused loop."""
            factor = ops.ones((batch,), x.dtype)
            to_mean = to_luma = ops.zeros((batch,), x.dtype)
            chosen = ops.zeros((batch,), "bool")
            for j in blends:
                picked = active & (order[:, k] == j)
                chosen = chosen | picked
                factor = ops.where(picked, factors[names[j]], factor)
                if names[j] == "contrast":
                    to_mean = ops.where(picked, ops.ones_like(to_mean), to_mean)
                if names[j] == "saturation":
                    to_luma = ops.where(picked, ops.ones_like(to_luma), to_luma)
            f = factor[:, None, None]
            # y' = f y + (1 - f) luma(y) 1 for saturation: matrix f I + (1 - f) 1 luma^T
            matrix = f * identity + ((1.0 - f) * to_luma[:, None, None]) * luma[None, None, :]
            out = ops.einsum("bij,bhwj->bhwi", matrix, y)
            if "contrast" in names:
                mean = ops.mean(ops.tensordot(y, luma, axes=[[3], [0]]), axis=(1, 2))
                out = out + ((1.0 - factor) * to_mean * mean)[:, None, None, None]
            return ops.where(chosen[:, None, None, None], ops.clip(out, 0.0, 1.0), y)

        y = x
        if "hue" not in names:
            for k in range(len(names)):
                y = blend(y, k, ops.ones((batch,), "bool"))
            return y
        # hue costs several blends: run it once, between the blends each sample orders before and after it
        at = ops.argmax(ops.cast(order == names.index("hue"), "int32"), axis=1)
        for k in range(len(names) - 1):
            y = blend(y, k, k < at)
        hsv = ops.image.rgb_to_hsv(y)
        one = ops.cast(1.0, y.dtype)  # a Python 1.0 would promote a low-precision hue to float32
        rotated = ops.mod(hsv[..., 0] + factors["hue"][:, None, None], one)
        y = ops.image.hsv_to_rgb(ops.stack([rotated, hsv[..., 1], hsv[..., 2]], axis=-1))
        for k in range(1, len(names)):
            y = blend(y, k, k > at)
        return y

    def get_config(self):
        return {
            **super().get_config(),
            "brightness": self.brightness,
            "contrast": self.contrast,
            "saturation": self.saturation,
            "hue": self.hue,
        }


@keras.saving.register_keras_serializable(package="mmkeras_vision")
class RandomGrayscale(_ImageAugmentation):
    """Replaces each RGB image by its luma (in all three channels) with probability ``rate``
    (0.2, as in SimCLR); grayscale images (C = 1) are returned as they are."""

    def __init__(self, rate: UnitFloat = 0.2, seed: Seed | None = None, **kwargs):
        super().__init__(rate=rate, seed=seed, **kwargs)

    def augment(self, x):
        if x.shape[-1] == 1:
            return x
        return ops.broadcast_to(_gray(x), ops.shape(x))


def _reflect_taps(size: int, radius: int) -> np.ndarray:
    """[2 radius + 1, size, size] 0/1: tap t of output pixel i reads pixel j (reflect padding)."""
    taps = np.zeros((2 * radius + 1, size, size), dtype=np.float32)
    for t in range(2 * radius + 1):
        source = np.arange(size) + t - radius
        source = np.abs(source)  # reflect at the start: -1 -> 1
        source = np.where(source > size - 1, 2 * (size - 1) - source, source)  # and at the end
        taps[t, np.arange(size), source] = 1.0
    return taps


@keras.saving.register_keras_serializable(package="mmkeras_vision")
class GaussianBlur(_ImageAugmentation):
    """Separable Gaussian blur with sigma ~ U(sigma_min, sigma_max) per sample and probability
    ``rate`` (SimCLR: sigma in [0.1, 2], p = 0.5). The kernel is ``kernel_size`` taps (odd; default
    the odd number at or just above 10% of the image side, at least 3, as SimCLR), with reflect padding."""

    def __init__(
        self,
        sigma_min: float = 0.1,
        sigma_max: float = 2.0,
        kernel_size: int | None = None,
        rate: UnitFloat = 0.5,
        seed: Seed | None = None,
        **kwargs,
    ):
        super().__init__(rate=rate, seed=seed, **kwargs)
        if not 0.0 < sigma_min <= sigma_max:
            raise ValueError(f"{self.what}: needs 0 < sigma_min <= sigma_max, got {sigma_min}, {sigma_max}")
        if kernel_size is not None and (kernel_size < 1 or kernel_size % 2 == 0):
            raise ValueError(f"{self.what}: kernel_size must be a positive odd int, got {kernel_size}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.kernel_size = None if kernel_size is None else int(kernel_size)

    def taps(self, height: int, width: int) -> int:
        """The kernel size used for images of this size."""
        if self.kernel_size is not None:
            size = self.kernel_size
        else:
            size = max(3, 2 * int(0.05 * min(height, width)) + 1)
        return min(size, 2 * (min(height, width) - 1) + 1)  # reflect padding needs radius < side

    def augment(self, x):
        height, width, _ = _static_size(self.what, x)
        radius = self.taps(height, width) // 2
        sigma = keras.random.uniform((ops.shape(x)[0], 1), self.sigma_min, self.sigma_max, seed=self.seed_generator)
        offsets = ops.arange(-radius, radius + 1, dtype="float32")[None, :]
        kernel = ops.exp(-ops.square(offsets) / (2.0 * ops.square(sigma)))
        kernel = ops.cast(kernel / ops.sum(kernel, axis=1, keepdims=True), x.dtype)  # [B, taps]
        # each axis as a per-sample banded matrix (reflect padding included): see _materialising
        rows = ops.einsum("bt,tij->bij", kernel, ops.cast(_reflect_taps(height, radius), x.dtype))
        cols = ops.einsum("bt,tij->bij", kernel, ops.cast(_reflect_taps(width, radius), x.dtype))
        return ops.einsum("bxj,byjc->byxc", cols, ops.einsum("byi,bijc->byjc", rows, x))

    def get_config(self):
        return {
            **super().get_config(),
            "sigma_min": self.sigma_min,
            "sigma_max": self.sigma_max,
            "kernel_size": self.kernel_size,
        }
