"""Tests of the mhd dataset (size "tiny", built once into a temporary data_dir)."""

from __future__ import annotations

import importlib.metadata as md
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from mmkeras_mhd import generate
from mmkeras_mhd.dataset import MHD
from mmkeras_mhd.speech import ACCENTS, SAMPLE_RATE, VARIANTS, Speaker, voice_name

from mmkeras.plugin import DataSplit

MODALITIES = ("image", "sound", "trajectory", "label")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> MHD:
    ds = MHD(size="tiny", seed=0, data_dir=str(tmp_path_factory.mktemp("data")), workers=2)
    ds.prepare(progress=False)
    return ds


@pytest.fixture(scope="module")
def splits(tiny: MHD) -> dict[str, DataSplit]:
    return {s: tiny.load(s) for s in tiny.splits}


def test_shapes_dtypes_and_ranges(splits: dict[str, DataSplit]) -> None:
    for split, n in (("train", 200), ("test", 100)):
        d = splits[split]
        assert set(d.inputs) == set(MODALITIES)
        assert d.inputs["image"].shape == (n, 28, 28, 1)
        assert d.inputs["sound"].shape == (n, 32, 128)
        assert d.inputs["trajectory"].shape == (n, 200)
        assert d.inputs["label"].shape == (n, 10)
        assert all(a.dtype == np.float32 for a in d.inputs.values())
        assert d.labels is not None and d.labels.dtype == np.int64 and d.labels.shape == (n,)
        image = d.inputs["image"]
        assert image.min() == 0.0 and image.max() == 1.0
        sound = d.inputs["sound"]  # standardised per sample
        np.testing.assert_allclose(sound.mean(axis=(1, 2)), 0.0, atol=1e-2)
        np.testing.assert_allclose(sound.std(axis=(1, 2)), 1.0, atol=1e-2)
        assert np.abs(d.inputs["trajectory"]).max() < 1.3
        assert np.isfinite(sound).all() and np.isfinite(d.inputs["trajectory"]).all()


def test_declared_modalities_match_the_data(tiny: MHD, splits: dict[str, DataSplit]) -> None:
    declared = MHD(size=7).info()  # any size declares the same
    for split in tiny.splits:
        data = splits[split]
        assert sorted(data.inputs) == sorted(declared)
        for m, info in declared.items():
            assert (data.inputs[m].shape[1:], str(data.inputs[m].dtype)) == (info.shape, info.dtype), m
            assert np.isfinite(data.inputs[m]).all(), m


def test_labels_agree_and_are_balanced(splits: dict[str, DataSplit]) -> None:
    for d in splits.values():
        onehot = d.inputs["label"]
        assert set(np.unique(onehot)) == {0.0, 1.0} and (onehot.sum(1) == 1).all()
        np.testing.assert_array_equal(onehot.argmax(1), d.labels)
        # labels come in blocks of ten holding each digit once
        np.testing.assert_array_equal(np.bincount(d.labels, minlength=10), len(d) // 10)


def _nearest_centroid_accuracy(train: np.ndarray, y_train: np.ndarray, test: np.ndarray, y_test: np.ndarray) -> float:
    train, test = train.reshape(len(train), -1), test.reshape(len(test), -1)
    centroids = np.stack([train[y_train == k].mean(0) for k in range(10)])
    dist = ((test[:, None, :] - centroids[None]) ** 2).sum(-1)
    return float((dist.argmin(1) == y_test).mean())


def _pool_time(sound: np.ndarray) -> np.ndarray:
    """Per-band mean and spread over frames: the word's spectrum wherever it was said."""
    return np.concatenate([sound.mean(-1), sound.std(-1)], axis=-1)


@pytest.mark.parametrize(
    "modality, features, threshold",
    # measured on tiny, seeds 0-5: image 0.84-0.96, trajectory 0.63-0.73, sound 0.77-0.86
    [("image", None, 0.6), ("trajectory", None, 0.45), ("sound", _pool_time, 0.5)],
)
def test_modalities_are_informative(
    splits: dict[str, DataSplit],
    modality: str,
    features: Callable[[np.ndarray], np.ndarray] | None,
    threshold: float,
) -> None:
    tr, te = splits["train"], splits["test"]
    x_tr, x_te = tr.inputs[modality], te.inputs[modality]
    if features is not None:
        x_tr, x_te = features(x_tr), features(x_te)
    assert _nearest_centroid_accuracy(x_tr, tr.labels, x_te, te.labels) > threshold  # chance: 0.1


def test_same_seed_is_identical_for_any_worker_count(tiny: MHD, tmp_path: Path) -> None:
    again = MHD(size="tiny", seed=0, data_dir=str(tmp_path), workers=1)  # in-process, not 2 workers
    again.prepare(progress=False)
    for split in tiny.splits:
        assert again.cache_path(split).read_bytes() == tiny.cache_path(split).read_bytes()


def test_seed_changes_data_and_sizes_share_samples(splits: dict[str, DataSplit], tmp_path: Path) -> None:
    train = splits["train"]
    small = MHD(size=20, seed=0, data_dir=str(tmp_path), workers=1).load("train")  # load builds
    assert len(small) == 20
    for m in MODALITIES:  # a sample does not depend on the size of the set it is in
        np.testing.assert_array_equal(small.inputs[m], train.inputs[m][:20])
    other = MHD(size=20, seed=1, data_dir=str(tmp_path), workers=1).load("train")
    assert not np.array_equal(other.labels, small.labels)
    for m in ("image", "sound", "trajectory"):
        assert not np.array_equal(other.inputs[m], small.inputs[m])


def test_test_size_takes_the_first_samples_of_a_larger_test_set(splits: dict[str, DataSplit], tmp_path: Path) -> None:
    ds = MHD(size=20, test_size=7, seed=0, data_dir=str(tmp_path), workers=1)
    assert ds.sizes == {"train": 20, "test": 7}
    test = ds.load("test")
    for m in MODALITIES:  # the same arrays as the tiny size's first 7 test samples
        np.testing.assert_array_equal(test.inputs[m], splits["test"].inputs[m][:7])
    with pytest.raises(ValueError, match="MHD: test_size must be a positive int or None, got 0"):
        MHD(size="tiny", test_size=0)


def test_second_prepare_is_a_cache_hit(tiny: MHD, monkeypatch: pytest.MonkeyPatch) -> None:
    stamps = {s: tiny.cache_path(s).stat().st_mtime_ns for s in tiny.splits}

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("prepare rebuilt a cached dataset")

    monkeypatch.setattr(generate, "build", no_build)
    tiny.prepare(progress=False)
    MHD(size="tiny", seed=0, data_dir=str(tiny.cache_dir.parent)).load("test")
    assert {s: tiny.cache_path(s).stat().st_mtime_ns for s in tiny.splits} == stamps
    assert sorted(p.name for p in tiny.cache_dir.iterdir()) == sorted(
        tiny.cache_path(s).name for s in tiny.splits
    )  # no temporary files left behind


def test_interrupted_write_leaves_no_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", crash)
    ds = MHD(size=10, data_dir=str(tmp_path), workers=1)
    with pytest.raises(KeyboardInterrupt):
        ds.prepare(progress=False)
    assert list(ds.cache_dir.iterdir()) == []


def test_cache_location_and_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMKERAS_DATA_DIR", str(tmp_path))
    ds = MHD(seed=3)
    version = generate.FORMAT_VERSION
    assert ds.cache_path("train") == tmp_path / "mhd" / f"mhd_v{version}_train_n50000_seed3.npz"
    assert ds.cache_path("test") == tmp_path / "mhd" / f"mhd_v{version}_test_n10000_seed3.npz"
    assert MHD(size="small").sizes == {"train": 5000, "test": 1000}
    assert MHD(size=1000).sizes == {"train": 1000, "test": 200}
    monkeypatch.delenv("MMKERAS_DATA_DIR")
    assert MHD().cache_dir == Path.home() / ".cache" / "mmkeras" / "mhd"


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"size": "huge"}, "size"),
        ({"size": 4}, "size"),
        ({"size": True}, "size"),
        ({"size": 2.5}, "size"),
        ({"seed": -1}, "seed"),
        ({"seed": "0"}, "seed"),
        ({"data_dir": ""}, "data_dir"),
        ({"data_dir": 5}, "data_dir"),
        ({"workers": 0}, "workers"),
        ({"workers": 1.5}, "workers"),
    ],
)
def test_bad_params_raise(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=rf"\b{name}\b.*(must|one of)"):
        MHD(**kwargs)  # type: ignore[arg-type]


def test_unknown_split_raises(tiny: MHD) -> None:
    with pytest.raises(ValueError, match="validation"):
        tiny.load("validation")


def test_speech_is_real_and_reproducible() -> None:
    with Speaker() as speaker:
        words = {w: speaker.say(w, "en-us", 175, 50) for w in ("one", "seven", "six")}
        for wave in words.values():
            assert wave.dtype == np.int16
            assert 0.2 * SAMPLE_RATE < len(wave) < 1.0 * SAMPLE_RATE
            assert np.sqrt(np.mean(wave.astype(np.float64) ** 2)) > 1000  # clearly not silence
        assert len({len(w) for w in words.values()}) == 3  # different words, different lengths
        slow = speaker.say("seven", "en-us", 100, 50)
        assert len(slow) > 1.3 * len(words["seven"])
        for accent in ACCENTS:
            for variant in VARIANTS:
                assert len(speaker.say("two", voice_name(accent, variant))) > 0.1 * SAMPLE_RATE
        with pytest.raises(ValueError, match="no voice"):
            speaker.say("two", "xx-nonexistent")

    def speak(requests: list[tuple[str, str, int, int, int, int]]) -> list[np.ndarray]:
        with Speaker() as speaker:
            return [speaker.say(*r) for r in requests]

    # after all the speech above, a fresh instance still starts from the same state
    requests = [("six", "en+f3", 150, 60, 50, 7), ("one", "en-gb-x-rp+m2", 200, 40, 70, 8)]
    for a, b in zip(speak(requests), speak(requests), strict=True):
        np.testing.assert_array_equal(a, b)


def test_generate_does_not_import_tensorflow() -> None:
    code = (
        "import sys, mmkeras_mhd.generate; "
        "bad = [m for m in ('tensorflow', 'keras', 'mmkeras') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_entry_point_names_the_class() -> None:
    eps = [ep for ep in md.entry_points(group="mmkeras.datasets") if ep.name == "mhd"]
    if not eps:
        pytest.skip("mmkeras-mhd is not installed (only on PYTHONPATH)")
    assert eps[0].load() is MHD
