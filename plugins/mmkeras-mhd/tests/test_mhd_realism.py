"""Tests of MHD's realism parameters: each does to the signal what its documentation says, the
default reproduces the data of format 2 byte for byte, presets and overrides reach the cache key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from mmkeras_mhd import generate
from mmkeras_mhd.dataset import MHD
from mmkeras_mhd.generate import CLIP, SAMPLE_RATE, WORDS, Realism
from mmkeras_mhd.speech import Speaker

#: the arrays of generate.build(0, {"train": 6, "test": 2}) made by the code before the realism
#: parameters existed (commit dca72d4), flattened as "<split>_<array>"
DEFAULT_FIXTURE = Path(__file__).parent / "fixtures" / "default_format2_train6_test2.npz"
QUIET = (120.0, 120.0)  # white noise 120 dB below the word: a clip "without" noise


def _clip(seed: int, label: int = 3, **params: object) -> np.ndarray:
    """The clip of a fresh Speaker (and babbler) for sample ``seed`` at ``Realism(**params)``."""
    with Speaker() as speaker, Speaker() as babbler:
        rng = np.random.default_rng(seed)
        return generate.speak(speaker, label, rng, Realism(**params), generate.effects_seed(seed, 0, 0), babbler)


def _word(seed: int, label: int = 3, **params: object) -> np.ndarray:
    """The trimmed word :func:`_clip` places (the same draws come first)."""
    with Speaker() as speaker:
        return generate.utterance(speaker, WORDS[label], np.random.default_rng(seed), Realism(**params))


def _db(ratio: float) -> float:
    return 10 * float(np.log10(ratio))


def test_default_data_is_unchanged() -> None:
    """Integers (labels, image pixels) exactly; floats to float32 round-off: the BLAS and FFT kernels
    behind the sound features may differ in the last bit between CPUs."""
    assert Realism() == generate.REALISM["default"] == generate.realism_from("default")
    built = generate.build(0, {"train": 6, "test": 2}, workers=1, progress=False)
    with np.load(DEFAULT_FIXTURE) as before:
        assert sorted(before.files) == sorted(f"{s}_{k}" for s, arrays in built.items() for k in arrays)
        for split, arrays in built.items():
            for name, array in arrays.items():
                expected = before[f"{split}_{name}"]
                assert array.dtype == expected.dtype and array.shape == expected.shape, (split, name)
                if np.issubdtype(array.dtype, np.integer):
                    np.testing.assert_array_equal(array, expected, err_msg=f"{split} {name}")
                else:
                    tolerance = 1e-3 if array.dtype == np.float16 else 1e-5
                    np.testing.assert_allclose(
                        array, expected, rtol=tolerance, atol=tolerance, err_msg=f"{split} {name}"
                    )
    assert MHD(size="tiny").cache_path("train").name == "mhd_v2_train_n200_seed0.npz"


def test_hard_is_the_same_bytes_for_any_worker_count(tmp_path: Path) -> None:
    paths = []
    for workers in (1, 2):  # two chunks (train 20 and test 4 samples): two worker processes
        ds = MHD(size=20, realism="hard", data_dir=str(tmp_path / str(workers)), workers=workers)
        ds.prepare(progress=False)
        paths.append({s: ds.cache_path(s) for s in ds.splits})
    for split in ("train", "test"):
        assert paths[0][split].name == paths[1][split].name
        assert paths[0][split].read_bytes() == paths[1][split].read_bytes()
    # "hard" changes the sound only: images, trajectories and labels are the default ones
    default = generate.build(0, {"train": 20}, workers=1, progress=False)["train"]
    with np.load(paths[0]["train"]) as hard:
        for name in ("image", "trajectory", "labels"):
            np.testing.assert_array_equal(hard[name][:20], default[name])
        assert np.abs(hard["sound"][:20].astype(np.float32) - default["sound"]).mean() > 0.3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_white_noise_has_the_requested_snr(seed: int) -> None:
    noise = _clip(seed, snr_db=(7.5, 7.5)) - _clip(seed, snr_db=QUIET)
    measured = _db(np.mean(_word(seed) ** 2) / np.mean(noise**2))
    assert abs(measured - 7.5) < 1.0
    assert np.abs(noise).min() < 1e-3 * np.abs(noise).max()  # noise everywhere, not only under the word


@pytest.mark.parametrize("seed", [0, 1])
def test_babble_is_other_voices_at_the_requested_snr(seed: int) -> None:
    quiet = _clip(seed, snr_db=QUIET)
    loud = _clip(seed, snr_db=QUIET, babble_talkers=3, babble_snr_db=(2.0, 2.0)) - quiet
    assert abs(_db(np.mean(_word(seed) ** 2) / np.mean(loud**2)) - 2.0) < 1.0
    # the same voices 10 dB softer: the babble is added to an unchanged word (its own generators)
    soft = _clip(seed, snr_db=QUIET, babble_talkers=3, babble_snr_db=(12.0, 12.0)) - quiet
    np.testing.assert_allclose(soft, loud / np.sqrt(10.0), atol=1e-6 * np.abs(loud).max())
    # speech, not noise: a peaky spectrum (white noise's periodogram has a flatness of about 0.56)
    power = np.abs(np.fft.rfft(loud))[1:] ** 2
    assert np.exp(np.mean(np.log(power + 1e-30))) / np.mean(power) < 0.1


def test_band_limiting_removes_energy_outside_the_band() -> None:
    params = {"snr_db": QUIET, "band_hz": (300.0, 3400.0)}
    full, limited = _clip(0, snr_db=QUIET), _clip(0, **params)
    freqs = np.fft.rfftfreq(CLIP, 1.0 / SAMPLE_RATE)
    full_power, limited_power = np.abs(np.fft.rfft(full)) ** 2, np.abs(np.fft.rfft(limited)) ** 2
    outside, inside = (freqs < 300) | (freqs > 3400), (freqs > 300) & (freqs < 3400)
    assert full_power[freqs > 3400].sum() > 0.01 * full_power.sum()  # the word has energy above 3.4 kHz
    assert limited_power[outside].sum() < 1e-8 * limited_power.sum()
    np.testing.assert_allclose(limited_power[inside].sum(), full_power[inside].sum(), rtol=1e-3)


def test_impulse_response_decays_60_db_in_rt60() -> None:
    rt60 = 0.5
    ir = generate.impulse_response(rt60, np.random.default_rng(0))
    assert len(ir) == round(rt60 * SAMPLE_RATE) and np.isclose(np.sum(ir**2), 1.0)
    frames = np.mean(ir[: len(ir) // 220 * 220].reshape(-1, 220) ** 2, axis=1)  # 10 ms frames
    slope = np.polyfit(np.arange(len(frames)) * 0.01, 10 * np.log10(frames), 1)[0]  # dB per second
    assert abs(slope - (-60.0 / rt60)) < 0.1 * 60.0 / rt60


def test_reverberation_lengthens_the_energy_decay() -> None:
    # a sample whose word ends early enough for 0.3 s of tail in the clip
    def word_end(clip: np.ndarray) -> int:
        return int(np.flatnonzero(np.abs(clip) > 1e-4)[-1])

    seed = next(s for s in range(50) if word_end(_clip(s, snr_db=QUIET)) < CLIP - 0.35 * SAMPLE_RATE)
    dry, wet = _clip(seed, snr_db=QUIET), _clip(seed, snr_db=QUIET, rt60_s=(0.6, 0.6))
    end = word_end(dry)

    def tail_db(x: np.ndarray, start_s: float, stop_s: float) -> float:
        a, b = end + round(start_s * SAMPLE_RATE), end + round(stop_s * SAMPLE_RATE)
        return _db(np.mean(x[a:b] ** 2) / np.mean(x[: end + 1] ** 2))

    assert tail_db(dry, 0.02, 0.1) < -100  # the noise floor: the dry word stops dead
    assert tail_db(wet, 0.02, 0.1) > -40
    # the tail then falls at about 60 dB per RT60: 0.1 s later, 10 dB lower
    drop = tail_db(wet, 0.02, 0.07) - tail_db(wet, 0.12, 0.17)
    assert 5.0 < drop < 15.0


def test_rate_and_pitch_change_the_voice() -> None:
    slow, fast = _word(0, rate_wpm=(80, 80)), _word(0, rate_wpm=(400, 400))
    assert len(slow) > 1.8 * len(fast)

    def f0(wave: np.ndarray) -> float:
        import librosa

        return float(np.median(librosa.yin(wave.astype(np.float64), fmin=50, fmax=600, sr=SAMPLE_RATE)))

    assert f0(_word(1, pitch=(100, 100))) > 1.5 * f0(_word(1, pitch=(0, 0)))


def test_stroke_width_jitter_and_affine_change_the_drawing() -> None:
    glyph = generate.glyph_strokes()["futural"][4]

    def draw(seed: int, **params: float) -> tuple[list[np.ndarray], Realism]:
        realism = Realism(**params)
        return generate.distort(glyph, np.random.default_rng(seed), realism.jitter, realism.affine), realism

    strokes, _ = draw(0)
    ink = [generate.render_image(strokes, w).astype(np.float64).sum() for w in (1.0, 2.0, 4.0)]
    assert ink[0] < ink[1] < ink[2]

    def roughness(jitter: float) -> float:  # the pen's second differences along the dense path
        return float(np.mean([np.abs(np.diff(s, 2, axis=0)).mean() for s in draw(0, jitter=jitter)[0]]))

    assert roughness(0.0) < 0.003 < roughness(0.006) < roughness(0.02)

    def spread(affine: float) -> float:  # how much the glyph's width varies across samples
        widths = [np.ptp(np.concatenate(draw(s, affine=affine)[0])[:, 0]) for s in range(40)]
        return float(np.std(widths))

    assert spread(0.0) < 0.5 * spread(1.0) and spread(1.0) < spread(2.0)


def test_presets_overrides_and_cache_keys() -> None:
    hard = MHD(size=20, realism="hard")
    assert hard.realism == generate.REALISM["hard"]
    assert "_hard-" in hard.cache_path("train").name
    override = MHD(size=20, realism="hard", rt60_s=[0, 0], babble_talkers=0)
    assert override.realism.rt60_s == (0.0, 0.0) and override.realism.babble_talkers == 0
    assert override.realism.snr_db == generate.REALISM["hard"].snr_db  # the rest from the preset
    names = {
        MHD(size=20).cache_path("train").name,
        hard.cache_path("train").name,
        override.cache_path("train").name,
        MHD(size=20, jitter=0.01).cache_path("train").name,
        MHD(size=20, realism="hard", jitter=0.01).cache_path("train").name,
    }
    assert len(names) == 5
    # the key follows the values, not how they were given
    every = {f.name: getattr(hard.realism, f.name) for f in dataclasses.fields(Realism)}
    assert MHD(size=20, realism="default", **every).cache_path("train") == hard.cache_path("train")
    assert MHD(size=20, snr_db=(10, 30)).cache_path("train").name == "mhd_v2_train_n20_seed0.npz"


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"realism": "harder"}, "realism"),
        ({"realism": 1}, "realism"),
        ({"snr_db": (30, 10)}, "snr_db"),
        ({"snr_db": 20}, "snr_db"),
        ({"snr_db": (10, float("nan"))}, "snr_db"),
        ({"babble_talkers": -1}, "babble_talkers"),
        ({"babble_talkers": 9}, "babble_talkers"),
        ({"babble_talkers": True}, "babble_talkers"),
        ({"babble_snr_db": (10, 0)}, "babble_snr_db"),
        ({"rt60_s": (-0.1, 0.2)}, "rt60_s"),
        ({"rt60_s": (0.5, 3.0)}, "rt60_s"),
        ({"band_hz": (3400, 300)}, "band_hz"),
        ({"band_hz": (300, 300)}, "band_hz"),
        ({"band_hz": (300, 20000)}, "band_hz"),
        ({"rate_wpm": (10, 100)}, "rate_wpm"),
        ({"rate_wpm": (120.5, 200)}, "rate_wpm"),
        ({"pitch": (0, 101)}, "pitch"),
        ({"pitch_range": (50, 40)}, "pitch_range"),
        ({"stroke_width": (0, 2)}, "stroke_width"),
        ({"jitter": -0.1}, "jitter"),
        ({"affine": 3.0}, "affine"),
        ({"affine": "1"}, "affine"),
    ],
)
def test_bad_realism_params_raise(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=rf"\b{name}\b.*(must|one of)"):
        MHD(size=20, **kwargs)  # type: ignore[arg-type]
