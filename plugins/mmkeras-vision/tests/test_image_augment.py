"""Image augmentations: identity out of training, statistics, numpy references, seeds, XLA, configs."""

import colorsys

import keras
import numpy as np
import pytest
import tensorflow as tf
from mmkeras_vision.augment import (
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


def jitter_reference(x, factors, order, names):
    """torchvision's ColorJitter on one float image, ops in the given order, in numpy."""
    luma = np.array([0.299, 0.587, 0.114])
    y = x.astype(np.float64)
    for j in order:
        name = names[j]
        if name == "brightness":
            y = np.clip(factors[name] * y, 0, 1)
        elif name == "contrast":
            y = np.clip(factors[name] * y + (1 - factors[name]) * (y @ luma).mean(), 0, 1)
        elif name == "saturation":
            y = np.clip(factors[name] * y + (1 - factors[name]) * (y @ luma)[..., None], 0, 1)
        else:
            hsv = [colorsys.rgb_to_hsv(*p) for p in y.reshape(-1, 3)]
            y = np.array([colorsys.hsv_to_rgb((h + factors["hue"]) % 1.0, s, v) for h, s, v in hsv]).reshape(y.shape)
    return y


def test_color_jitter_matches_torchvision_semantics():
    x = images(n=24, size=5)
    layer = ColorJitter(brightness=0.8, contrast=0.8, saturation=0.8, hue=0.3, rate=1.0, seed=3)
    factors, order = ColorJitter.from_config(layer.get_config()).sample(24, 3)
    factors = {k: np.asarray(v) for k, v in factors.items()}
    order = np.asarray(order)
    y = np.asarray(layer(x, training=True))
    names = layer.active(3)
    assert len({tuple(o) for o in order}) > 10  # many different orders
    for b in range(24):
        expect = jitter_reference(x[b], {k: v[b] for k, v in factors.items()}, order[b], names)
        np.testing.assert_allclose(y[b], expect, atol=2e-5)


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
        (lambda: RandomFlip(rate=1.5), "RandomFlip: rate: expected a number <= 1"),
    ],
)
def test_bad_parameters_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_not_images_raises():
    with pytest.raises(ValueError, match=r"expects images \[B, H, W, C\]"):
        RandomFlip()(np.zeros((2, 5, 5), "float32"), training=True)


def test_registered_under_their_names():
    import mmkeras

    for name, (cls, _) in ALL.items():
        assert mmkeras.registry.get("augmentations", name) is cls
    assert keras.saving.get_registered_object("mmkeras_vision>ColorJitter") is ColorJitter


@pytest.mark.slow
def test_a_trifeatures_recipe_trains_under_xla_with_simclr_augmentations(tmp_path):
    import tensorflow as tf

    import mmkeras

    augment = [{"name": name, "params": {}} for name in ALL]
    recipe = mmkeras.recipe_from_dict(
        {
            "name": "trifeatures-simclr",
            "seed": 0,
            "data": {"dataset": "trifeatures", "params": {"size": "tiny", "data_dir": str(tmp_path)}, "batch_size": 32},
            "modalities": {
                m: {"encoder": {"name": "conv2d", "params": {"filters": [8], "kernel_size": 3}}, "augment": augment}
                for m in ("image1", "image2")
            },
            "model": {"feature_dim": 8, "latent_dim": 8, "head": {"name": "mlp", "params": {"normalize": True}}},
            "objective": {"name": "infonce", "params": {"temperature": 0.1}},
            "train": {"epochs": 1, "jit_compile": True},
        }
    )
    model = mmkeras.build_model(recipe)
    assert model.jit_compile
    split = mmkeras.load_dataset("trifeatures", size="tiny", data_dir=str(tmp_path)).load("train")
    x = {m: split.inputs[m] for m in ("image1", "image2")}
    x["masks"] = {m: split.mask(m) for m in ("image1", "image2")}
    batches = tf.data.Dataset.from_tensor_slices((x, split.labels)).batch(32, drop_remainder=True)
    history = model.fit(batches, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    z = np.asarray(model.encode(split.take(8).inputs, ["image1"]))  # no augmentation outside training
    np.testing.assert_array_equal(np.asarray(model.encode(split.take(8).inputs, ["image1"])), z)
    model.save(tmp_path / "model.keras")
    reloaded = mmkeras.load_model(str(tmp_path / "model.keras"))
    np.testing.assert_allclose(np.asarray(reloaded.encode(split.take(8).inputs, ["image1"])), z, atol=1e-6)
    assert [type(a) for a in reloaded.augmentations["image1"]] == [cls for cls, _ in ALL.values()]
    # the builder's seeds: recipe seed + 1000 * (modality's sorted index + 1) + position, so that
    # the two images draw independent augmentations; the reloaded model keeps them
    assert [a.seed for a in reloaded.augmentations["image1"]] == list(range(1000, 1005))
    assert [a.seed for a in reloaded.augmentations["image2"]] == list(range(2000, 2005))
