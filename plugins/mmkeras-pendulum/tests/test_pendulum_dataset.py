"""Tests of the pendulum dataset (size "tiny", built once into a temporary data_dir)."""

from __future__ import annotations

import importlib.metadata as md
from pathlib import Path

import numpy as np
import pytest
from mmkeras_pendulum import env, generate
from mmkeras_pendulum.dataset import Pendulum

from mmkeras.plugin import DataSplit, check_dataset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Pendulum:
    ds = Pendulum(size="tiny", seed=0, data_dir=str(tmp_path_factory.mktemp("data")))
    ds.prepare(progress=False)
    return ds


@pytest.fixture(scope="module")
def splits(tiny: Pendulum) -> dict[str, DataSplit]:
    return {s: tiny.load(s) for s in tiny.splits}


def test_shapes_dtypes_and_labels(tiny: Pendulum, splits: dict[str, DataSplit]) -> None:
    for split, n in (("train", 300), ("test", 100)):
        d = splits[split]
        assert set(d.inputs) == {"image", "sound"}
        assert d.inputs["image"].shape == (n, 60, 60, 2) and d.inputs["image"].dtype == np.float32
        assert set(np.unique(d.inputs["image"])) == {0.0, 1.0}
        assert d.inputs["sound"].shape == (n, 12) and d.inputs["sound"].dtype == np.float32
        assert d.labels is not None and d.labels.dtype == np.int64 and d.labels.shape == (n,)
        state = tiny.states(split)
        np.testing.assert_array_equal(d.labels, generate.angle_bins(state[:, 0]))
        assert d.labels.min() >= 0 and d.labels.max() < generate.ANGLE_BINS
        # the current frame is the rod at the stored angle
        np.testing.assert_array_equal(d.inputs["image"][:, :, :, 1], env.render(state[:, 0]))
    assert len(np.unique(splits["train"].labels)) == generate.ANGLE_BINS


def test_conformance_kit(tiny: Pendulum) -> None:
    check_dataset(Pendulum, {"size": "tiny", "data_dir": str(tiny.cache_dir.parent)})


def test_angle_bins() -> None:
    theta = np.array([-np.pi, -0.01, 0.0, 0.5, np.pi - 1e-9, np.pi, 2 * np.pi + 0.1])
    np.testing.assert_array_equal(generate.angle_bins(theta), [0, 3, 4, 4, 7, 0, 4])


def test_sound_is_standardised_with_the_training_statistics(tiny: Pendulum, splits: dict[str, DataSplit]) -> None:
    mean, std = tiny.sound_stats()
    assert mean.shape == std.shape == (6,)
    assert 300 < mean[:3].min() and mean[:3].max() < 600  # frequencies near 440 Hz
    assert 0.0 < mean[3:].min() and mean[3:].max() < 1.0  # amplitudes 1 / d^2, d in [1.2, 4.2]
    train = splits["train"].inputs["sound"].reshape(-1, 6)
    np.testing.assert_allclose(train.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(train.std(0), 1.0, atol=1e-4)
    # rows are the env's sound of the stored state: the current frame, standardised
    state = tiny.states("test")
    raw = env.sound_frame(state[:, 0].astype(np.float64), state[:, 1].astype(np.float64))
    np.testing.assert_allclose(splits["test"].inputs["sound"][:, 6:], (raw - mean) / std, atol=1e-3)


def test_observations_match_the_environment(tiny: Pendulum, splits: dict[str, DataSplit]) -> None:
    """A row at step t is what VectorPendulumSound shows after t steps of the same torques."""
    rng = np.random.default_rng([0, generate.SPLIT_IDS["train"], 0])  # chunk 0 of train, as generated
    theta0 = rng.uniform(-np.pi, np.pi, generate.CHUNK)
    thetadot0 = rng.uniform(-1.0, 1.0, generate.CHUNK)
    steps = rng.integers(0, env.EPISODE_STEPS, generate.CHUNK)
    torques = rng.uniform(-2.0, 2.0, (env.EPISODE_STEPS, generate.CHUNK))
    rows = [int(np.argmin(steps)), int(np.argmax(steps)), 7]
    mean, std = tiny.sound_stats()
    e = env.VectorPendulumSound(len(rows), mean, std)
    obs, _ = e.reset(options={"state": np.stack([theta0[rows], thetadot0[rows]], -1)})
    seen = {i: obs for i in range(len(rows)) if steps[rows[i]] == 0}
    for t in range(int(steps[rows].max())):
        obs, *_ = e.step(torques[t, rows])
        seen.update({i: obs for i in range(len(rows)) if steps[rows[i]] == t + 1})
    train = splits["train"]
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(seen[i]["image"][i], train.inputs["image"][row])
        np.testing.assert_allclose(seen[i]["sound"][i], train.inputs["sound"][row], atol=1e-4)


def test_same_seed_is_identical_and_sizes_share_rows(
    tiny: Pendulum, splits: dict[str, DataSplit], tmp_path: Path
) -> None:
    again = Pendulum(size="tiny", seed=0, data_dir=str(tmp_path))
    again.prepare(progress=False)
    for split in tiny.splits:
        assert again.cache_path(split).read_bytes() == tiny.cache_path(split).read_bytes()
    smaller = Pendulum(size=150, seed=0, data_dir=str(tmp_path))
    part = smaller.load("train")
    np.testing.assert_array_equal(part.inputs["image"], splits["train"].inputs["image"][:150])
    np.testing.assert_array_equal(smaller.states("train"), tiny.states("train")[:150])
    other = Pendulum(size="tiny", seed=1, data_dir=str(tmp_path))
    assert not np.array_equal(other.states("train"), tiny.states("train"))


def test_second_prepare_is_a_cache_hit(tiny: Pendulum, monkeypatch: pytest.MonkeyPatch) -> None:
    stamps = {s: tiny.cache_path(s).stat().st_mtime_ns for s in tiny.splits}

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("prepare rebuilt a cached dataset")

    monkeypatch.setattr(generate, "build", no_build)
    tiny.prepare(progress=False)
    Pendulum(size="tiny", seed=0, data_dir=str(tiny.cache_dir.parent)).load("test")
    assert {s: tiny.cache_path(s).stat().st_mtime_ns for s in tiny.splits} == stamps
    assert sorted(p.name for p in tiny.cache_dir.iterdir()) == sorted(tiny.cache_path(s).name for s in tiny.splits)


def test_interrupted_write_leaves_no_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", crash)
    ds = Pendulum(size=10, data_dir=str(tmp_path))
    with pytest.raises(KeyboardInterrupt):
        ds.prepare(progress=False)
    assert list(ds.cache_dir.iterdir()) == []


def test_cache_location_and_sizes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMKERAS_DATA_DIR", str(tmp_path))
    ds = Pendulum(seed=3)
    v = generate.FORMAT_VERSION
    assert ds.cache_path("train") == tmp_path / "pendulum" / f"pendulum_v{v}_train_n20000_seed3.npz"
    assert ds.cache_path("test") == tmp_path / "pendulum" / f"pendulum_v{v}_test_n2000_seed3.npz"
    assert Pendulum(size="small").sizes == {"train": 4000, "test": 400}
    assert Pendulum(size=1000).sizes == {"train": 1000, "test": 100}
    monkeypatch.delenv("MMKERAS_DATA_DIR")
    assert Pendulum().cache_dir == Path.home() / ".cache" / "mmkeras" / "pendulum"


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"size": "huge"}, "size"),
        ({"size": 9}, "size"),
        ({"size": True}, "size"),
        ({"seed": -1}, "seed"),
        ({"seed": "0"}, "seed"),
        ({"data_dir": ""}, "data_dir"),
    ],
)
def test_bad_params_raise(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=rf"\b{name}\b.*(must|one of)"):
        Pendulum(**kwargs)  # type: ignore[arg-type]


def test_unknown_split_raises(tiny: Pendulum) -> None:
    with pytest.raises(ValueError, match="validation"):
        tiny.load("validation")


def test_entry_points_name_the_classes() -> None:
    datasets = [ep for ep in md.entry_points(group="mmkeras.datasets") if ep.name == "pendulum"]
    evaluators = [ep for ep in md.entry_points(group="mmkeras.evaluators") if ep.name == "control"]
    if not datasets or not evaluators:
        pytest.skip("mmkeras-pendulum is not installed (only on PYTHONPATH)")
    from mmkeras_pendulum.control import Control

    assert datasets[0].load() is Pendulum and evaluators[0].load() is Control
