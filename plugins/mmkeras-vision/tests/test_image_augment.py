"""Image augmentations: identity out of training, statistics, numpy references, seeds, XLA, configs."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from mmkeras_vision.augment import (  # noqa: E402
    ColorJitter,
    GaussianBlur,
    RandomFlip,
    RandomGrayscale,
    RandomResizedCrop,
)

ALL = {
    "random_resized_crop": (RandomResizedCrop, {}),
    "random_flip": (RandomFlip, {}),
    "color_jitter": (ColorJitter, {}),
    "random_grayscale": (RandomGrayscale, {}),
    "gaussian_blur": (GaussianBlur, {}),
}


def images(n=16, size=24, channels=3, seed=0):
    return np.random.default_rng(seed).random((n, size, size, channels)).astype("float32")


def changed(x, y):
    """Per sample: did the augmentation change it?"""
    return np.abs(np.asarray(y) - x).reshape(len(x), -1).max(axis=1) > 1e-6


@pytest.mark.parametrize("name", ALL)
def test_identity_unless_training(name):
    cls, params = ALL[name]
    x = images()
    layer = cls(**params, seed=0)
    for training in (False, None):
        np.testing.assert_array_equal(np.asarray(layer(x, training=training)), x)


@pytest.mark.parametrize("name", ALL)
def test_seeded_runs_under_xla_and_round_trips(name):
    cls, params = ALL[name]
    x = images(n=32)
    a, b, c = cls(**params, seed=1), cls(**params, seed=1), cls(**params, seed=2)
    ya, yb, yc = (np.asarray(layer(x, training=True)) for layer in (a, b, c))
    np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(ya, yc)
    assert ya.dtype == np.float32 and ya.shape == x.shape
    assert -1e-5 <= ya.min() and ya.max() <= 1 + 1e-5  # images stay in [0, 1]

    copy = cls.from_config(a.get_config())
    assert copy.get_config() == a.get_config()
    np.testing.assert_array_equal(np.asarray(copy(x, training=True)), ya)

    jitted = tf.function(lambda t: c(t, training=True), jit_compile=True)
    y = np.asarray(jitted(tf.constant(x)))
    assert y.shape == x.shape and changed(x, y).any()
    gray = np.asarray(jitted(tf.constant(x[..., :1])))  # grayscale-safe, also compiled
    assert gray.shape == x[..., :1].shape


@pytest.mark.parametrize("name", ALL)
def test_keeps_a_low_precision_dtype(name):
    cls, params = ALL[name]
    x = tf.constant(images(n=4), dtype="bfloat16")
    assert cls(**params, seed=0, dtype="bfloat16")(x, training=True).dtype == tf.bfloat16


def test_flip_mirrors_about_half_the_images():
    x = images(n=400, size=8)
    y = np.asarray(RandomFlip(seed=0)(x, training=True))
    flipped = np.all(y == np.flip(x, axis=2), axis=(1, 2, 3))
    assert np.all(flipped | np.all(y == x, axis=(1, 2, 3)))  # each image is itself or its mirror
    assert 160 < flipped.sum() < 240  # Binomial(400, 0.5): 8 standard deviations
    np.testing.assert_array_equal(np.asarray(RandomFlip(rate=1.0)(x, training=True)), np.flip(x, axis=2))


def test_crop_of_the_whole_image_is_the_image():
    x = images()
    y = RandomResizedCrop(scale=(1.0, 1.0), ratio=(1.0, 1.0), seed=0)(x, training=True)
    np.testing.assert_allclose(np.asarray(y), x, atol=1e-5)


def test_crop_samples_the_box_bilinearly():
    n, size = 64, 20
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    ramp = np.stack([rows, cols, np.zeros_like(rows)], axis=-1).astype("float32")
    x = np.broadcast_to(ramp, (n, size, size, 3))
    top, left, h, w = (np.asarray(t)[:, 0] for t in RandomResizedCrop(seed=5).boxes(n, size, size))
    y = np.asarray(RandomResizedCrop(seed=5)(x, training=True))
    # bilinear interpolation reproduces a linear ramp: pixel o samples start + (o + 0.5) * length / size - 0.5
    centres = np.arange(size) + 0.5
    expect_rows = np.clip(top[:, None] + centres * h[:, None] / size - 0.5, 0, size - 1)
    expect_cols = np.clip(left[:, None] + centres * w[:, None] / size - 0.5, 0, size - 1)
    np.testing.assert_allclose(y[:, :, 0, 0], expect_rows, atol=1e-4)
    np.testing.assert_allclose(y[:, 0, :, 1], expect_cols, atol=1e-4)
    area = h * w / size**2
    assert np.all((area > 0.08 - 1e-4) & (area <= 1 + 1e-4))
    assert np.all((w / h > 3 / 4 - 1e-4) & (w / h < 4 / 3 + 1e-4))
    assert np.all((top >= 0) & (left >= 0) & (top + h <= size + 1e-4) & (left + w <= size + 1e-4))
    assert 0.3 < area.mean() < 0.8  # E[area] is about 0.54 (from U(0.08, 1), a few boxes refused)


def test_grayscale_uses_luma_with_probability_rate():
    x = images(n=500, size=4)
    y = np.asarray(RandomGrayscale(rate=1.0)(x, training=True))
    luma = x @ np.array([0.299, 0.587, 0.114], dtype="float32")
    for c in range(3):
        np.testing.assert_allclose(y[..., c], luma, atol=1e-6)
    some = np.asarray(RandomGrayscale(seed=0)(x, training=True))
    assert 60 < changed(x, some).sum() < 140  # Binomial(500, 0.2): mean 100, sd 9
    single = x[..., :1]
    np.testing.assert_array_equal(np.asarray(RandomGrayscale(rate=1.0)(single, training=True)), single)


def test_color_jitter_brightness_scales_each_image():
    x = 0.5 * images(n=200, size=6)  # below 1 / 1.4, so scaling never clips
    layer = ColorJitter(brightness=0.4, contrast=0, saturation=0, hue=0, rate=1.0, seed=0)
    ratio = np.asarray(layer(x, training=True)) / np.maximum(x, 1e-6)
    per_image = ratio.reshape(200, -1)
    np.testing.assert_allclose(per_image, per_image[:, :1].repeat(per_image.shape[1], axis=1), rtol=1e-4)
    assert per_image.min() >= 0.6 - 1e-5 and per_image.max() <= 1.4 + 1e-5
    assert abs(per_image[:, 0].mean() - 1.0) < 0.06  # U(0.6, 1.4): mean 1, sd 0.23 / sqrt(200)


def test_color_jitter_applies_with_probability_and_leaves_gray_hue_alone():
    x = images(n=500, size=4)
    assert 360 < changed(x, ColorJitter(seed=0)(x, training=True)).sum() < 440  # Binomial(500, 0.8)
    gray = np.repeat(images(n=8, size=6, channels=1), 3, axis=-1)
    hue_only = ColorJitter(brightness=0, contrast=0, saturation=0, hue=0.5, rate=1.0, seed=0)
    np.testing.assert_allclose(np.asarray(hue_only(gray, training=True)), gray, atol=1e-5)
    colour = images(n=8, size=6)
    assert changed(colour, hue_only(colour, training=True)).all()


def test_blur_matches_a_numpy_reference():
    x = images(n=3, size=12)
    y = np.asarray(GaussianBlur(sigma_min=1.0, sigma_max=1.0, kernel_size=5, rate=1.0)(x, training=True))
    t = np.arange(-2, 3)
    k = np.exp(-(t**2) / 2.0)
    k /= k.sum()
    padded = np.pad(x, [(0, 0), (2, 2), (2, 2), (0, 0)], mode="reflect")
    rows = sum(k[i] * padded[:, i : i + 12] for i in range(5))
    expect = sum(k[i] * rows[:, :, i : i + 12] for i in range(5))
    np.testing.assert_allclose(y, expect, atol=1e-5)
    assert GaussianBlur().taps(224, 224) == 23 and GaussianBlur().taps(32, 32) == 3  # SimCLR's 10%


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: RandomResizedCrop(scale=(0.5, 0.1)), "scale must be"),
        (lambda: RandomResizedCrop(ratio=(0.0, 1.0)), "ratio must be"),
        (lambda: ColorJitter(hue=0.7), "hue must be in"),
        (lambda: ColorJitter(contrast=-1.0), "contrast must be >= 0"),
        (lambda: GaussianBlur(kernel_size=4), "kernel_size must be a positive odd int"),
        (lambda: GaussianBlur(sigma_min=3.0), "sigma_min <= sigma_max"),
        (lambda: RandomFlip(rate=1.5), "rate must be in"),
    ],
)
def test_bad_parameters_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_not_images_raises():
    with pytest.raises(ValueError, match=r"expects images \[B, H, W, C\]"):
        RandomFlip()(np.zeros((2, 5, 5), "float32"), training=True)


def test_registered_under_their_names():
    from mmkeras.registry import registry

    for name, (cls, _) in ALL.items():
        assert registry.get("augmentations", name) is cls
    assert keras.saving.get_registered_object("mmkeras_vision>ColorJitter") is ColorJitter
