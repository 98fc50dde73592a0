"""Core augmentations (spectrogram, audio, sequence, tabular, text): identity out of training,
statistics that could fail, seeds, XLA and configs."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mmkeras.augmentations.feature_mask import FeatureMask
from mmkeras.augmentations.freq_mask import FreqMask
from mmkeras.augmentations.gain import Gain
from mmkeras.augmentations.gaussian_noise import GaussianNoise
from mmkeras.augmentations.jitter import Jitter
from mmkeras.augmentations.random_drop import RandomDrop
from mmkeras.augmentations.scaling import Scaling
from mmkeras.augmentations.time_mask import TimeMask
from mmkeras.augmentations.time_shift import TimeShift
from mmkeras.augmentations.token_mask import TokenMask

FLOAT = {
    "time_mask": (TimeMask, {"max_width": 6}),
    "freq_mask": (FreqMask, {"max_width": 3}),
    "gain": (Gain, {}),
    "time_shift": (TimeShift, {"max_shift": 0.3}),
    "random_drop": (RandomDrop, {}),
    "jitter": (Jitter, {}),
    "scaling": (Scaling, {}),
    "feature_mask": (FeatureMask, {}),
}


def signals(n=32, t=20, f=6, seed=0):
    """Strictly positive values, so a zero can only come from the augmentation."""
    return (np.random.default_rng(seed).random((n, t, f)) + 0.5).astype("float32")


def tokens(n=64, length=30, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(2, 1000, size=(n, length)).astype("int32")
    lengths = rng.integers(5, length, size=n)
    x[np.arange(length)[None, :] >= lengths[:, None]] = 0  # padded
    return x


def cases():
    out = [(name, cls, params, signals()) for name, (cls, params) in FLOAT.items()]
    out.append(("token_mask", TokenMask, {"mask_id": 1}, tokens()))
    return out


@pytest.mark.parametrize("name, cls, params, x", cases(), ids=[c[0] for c in cases()])
def test_identity_unless_training(name, cls, params, x):
    layer = cls(**params, seed=0)
    for training in (False, None):
        np.testing.assert_array_equal(np.asarray(layer(x, training=training)), x)


@pytest.mark.parametrize("name, cls, params, x", cases(), ids=[c[0] for c in cases()])
def test_seeded_runs_under_xla_and_round_trips(name, cls, params, x):
    a, b, c = cls(**params, seed=1), cls(**params, seed=1), cls(**params, seed=2)
    ya, yb, yc = (np.asarray(layer(x, training=True)) for layer in (a, b, c))
    np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(ya, yc)
    assert ya.dtype == x.dtype and ya.shape == x.shape

    copy = cls.from_config(a.get_config())
    assert type(copy) is cls and copy.get_config() == a.get_config()
    np.testing.assert_array_equal(np.asarray(copy(x, training=True)), ya)

    y = np.asarray(tf.function(lambda t: c(t, training=True), jit_compile=True)(tf.constant(x)))
    assert y.shape == x.shape and y.dtype == x.dtype and not np.array_equal(y, x)


@pytest.mark.parametrize("name", FLOAT)
def test_keeps_a_low_precision_dtype(name):
    cls, params = FLOAT[name]
    x = tf.constant(signals(n=4), dtype="bfloat16")
    assert cls(**params, seed=0, dtype="bfloat16")(x, training=True).dtype == tf.bfloat16


def test_time_mask_zeroes_one_band_of_whole_time_steps():
    x = signals(n=400)
    y = np.asarray(TimeMask(max_width=6, seed=0)(x, training=True))
    zero = y == 0
    steps = zero.all(axis=2)
    np.testing.assert_array_equal(zero.any(axis=2), steps)  # whole time steps, every frequency
    widths = steps.sum(axis=1)
    assert widths.max() <= 6
    for row in steps[widths > 0]:  # one contiguous band
        idx = np.flatnonzero(row)
        assert idx[-1] - idx[0] + 1 == len(idx)
    assert abs(widths.mean() - 3.0) < 0.35  # U{0..6}: mean 3, sd 2 / sqrt(400) = 0.1


def test_freq_mask_acts_on_the_frequency_axis():
    x = signals(n=300, f=16)
    y = np.asarray(FreqMask(max_width=4, num_masks=2, seed=0)(x, training=True))
    zero = y == 0
    bands = zero.all(axis=1)
    np.testing.assert_array_equal(zero.any(axis=1), bands)  # whole frequencies, every time step
    assert bands.sum(axis=1).max() <= 8
    assert 2.0 < bands.sum(axis=1).mean() < 4.0  # two bands of mean width 2, sometimes overlapping
    mhd = signals(n=8, t=32, f=128)  # MHD's sound is [B, bands, frames]: time is axis 2
    z = np.asarray(TimeMask(max_width=20, axis=2, seed=0)(mhd, training=True)) == 0
    np.testing.assert_array_equal(z.any(axis=1), z.all(axis=1))


def test_gain_multiplies_each_sample_by_a_decibel_factor():
    x = signals(n=300)
    ratio = (np.asarray(Gain(seed=0)(x, training=True)) / x).reshape(300, -1)
    np.testing.assert_allclose(ratio, ratio[:, :1].repeat(ratio.shape[1], axis=1), rtol=1e-5)
    db = 20 * np.log10(ratio[:, 0])
    assert db.min() >= -6 - 1e-3 and db.max() <= 6 + 1e-3
    assert abs(db.mean()) < 0.7  # U(-6, 6): sd 3.46 / sqrt(300) = 0.2


@pytest.mark.parametrize("circular", [False, True])
def test_time_shift_is_a_shift_of_each_sample(circular):
    x = signals(n=100, t=20)
    y = np.asarray(TimeShift(max_shift=0.25, circular=circular, seed=0)(x, training=True))
    shifts = []
    for xi, yi in zip(x, y):
        matches = []
        for s in range(-5, 6):
            expect = np.roll(xi, s, axis=0)
            if not circular and s > 0:
                expect[:s] = 0
            elif not circular and s < 0:
                expect[s:] = 0
            if np.array_equal(expect, yi):
                matches.append(s)
        assert len(matches) == 1
        shifts.append(matches[0])
    assert set(shifts) == set(range(-5, 6))  # all 11 shifts among 100 samples


def test_random_drop_zeroes_the_expected_fraction_of_time_steps():
    x = signals(n=2000, t=50)
    y = np.asarray(RandomDrop(seed=0)(x, training=True))  # CoMM: U(0, 0.8) of the steps, p = 0.5
    dropped = (y == 0).all(axis=2)
    np.testing.assert_array_equal((y == 0).any(axis=2), dropped)
    per_sample = dropped.mean(axis=1)
    assert per_sample.max() <= 0.8
    assert abs(per_sample.mean() - 0.2) < 0.02  # 0.5 * 0.4; sd about 0.26 / sqrt(2000)
    assert abs((per_sample == 0).mean() - 0.5 - 0.5 / 80) < 0.04  # untouched: p = 0.5 plus count 0
    always = np.asarray(RandomDrop(rate=1.0, max_fraction=0.5, seed=1)(x, training=True))
    assert abs((always == 0).all(axis=2).mean() - 0.25) < 0.02


def test_jitter_is_gaussian_noise_with_comm_defaults():
    x = signals(n=2000, t=10, f=10)
    layer = Jitter(seed=0)
    assert isinstance(layer, GaussianNoise) and (layer.stddev, layer.rate) == (0.1, 0.5)
    noise = (np.asarray(layer(x, training=True)) - x).reshape(2000, -1)
    touched = np.abs(noise).max(axis=1) > 0
    assert abs(touched.mean() - 0.5) < 0.05
    assert abs(noise[touched].std() - 0.1) < 0.005
    assert keras.saving.get_registered_object("mmkeras>Jitter") is Jitter


@pytest.mark.parametrize("per_channel", [False, True])
def test_scaling_multiplies_by_normal_factors(per_channel):
    x = signals(n=1000, t=5, f=4)
    ratio = np.asarray(Scaling(stddev=0.1, per_channel=per_channel, seed=0)(x, training=True)) / x
    np.testing.assert_allclose(ratio, ratio[:, :1].repeat(5, axis=1), rtol=1e-5)  # constant in time
    across_channels = np.ptp(ratio[:, 0, :], axis=1)
    assert (across_channels > 1e-4).all() if per_channel else (across_channels < 1e-5).all()
    assert abs(ratio[:, 0, 0].std() - 0.1) < 0.01 and abs(ratio[:, 0, 0].mean() - 1.0) < 0.01


def test_feature_mask_masks_the_fraction():
    x = signals(n=500, t=40, f=1)[..., 0]  # tabular [B, F]
    y = np.asarray(FeatureMask(fraction=0.3, mask_value=-1.0, seed=0)(x, training=True))
    masked = y == -1.0
    np.testing.assert_array_equal(y[~masked], x[~masked])
    assert abs(masked.mean() - 0.3) < 0.01


def test_token_mask_never_masks_padding():
    x = tokens(n=500)
    y = np.asarray(TokenMask(mask_id=1, seed=0)(x, training=True))
    assert y.dtype == np.int32
    pad = x == 0
    np.testing.assert_array_equal(y[pad], 0)
    masked = y != x
    np.testing.assert_array_equal(y[masked], 1)
    assert abs(masked[~pad].mean() - 0.15) < 0.01


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: TimeMask(max_width=-1), "TimeMask: max_width: expected a number >= 0, got -1"),
        (lambda: FreqMask(axis=0), "freq_mask: axis must not be 0"),
        (lambda: Gain(min_db=3.0, max_db=-3.0), "gain: needs min_db <= max_db"),
        (lambda: TimeShift(max_shift=2.0), "TimeShift: max_shift: expected a number <= 1, got 2.0"),
        (lambda: RandomDrop(max_fraction=1.5), "RandomDrop: max_fraction: expected a number <= 1, got 1.5"),
        (lambda: RandomDrop(rate=-0.1), "RandomDrop: rate: expected a number >= 0, got -0.1"),
        (lambda: Scaling(stddev=-1.0), "Scaling: stddev: expected a number >= 0, got -1.0"),
        (lambda: FeatureMask(fraction=2.0), "FeatureMask: fraction: expected a number <= 1, got 2.0"),
        (lambda: TokenMask(mask_id=0), "token_mask: mask_id must differ from padding_id"),
        (lambda: GaussianNoise(seed=-1), "GaussianNoise: seed: expected a number >= 0, got -1"),
    ],
)
def test_bad_parameters_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_registered_under_their_names():
    from mmkeras.registry import registry

    for name, (cls, _) in {**FLOAT, "token_mask": (TokenMask, {})}.items():
        assert registry.get("augmentations", name) is cls
