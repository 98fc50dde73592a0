"""Tests of the avmnist dataset: a tiny folder in the published layout, its errors, and the stand-in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mmkeras_multibench.avmnist import AVMNIST, write_avmnist_standin

from mmkeras.plugin import DataError, check_dataset

N_TRAIN, N_TEST = 24, 6


def _folder(root: Path, image_width: int = 784) -> tuple[Path, dict[str, np.ndarray]]:
    """A tiny AV-MNIST folder of uint8 values 0-255 (images ``image_width`` wide) and its arrays."""
    rng = np.random.default_rng(0)
    folder = root / "avmnist"
    (folder / "image").mkdir(parents=True)
    (folder / "audio").mkdir()
    arrays = {}
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        arrays[f"image/{split}_data.npy"] = rng.integers(0, 256, (n, image_width), dtype=np.uint8)
        arrays[f"audio/{split}_data.npy"] = rng.integers(0, 256, (n, 112, 112), dtype=np.uint8)
        arrays[f"{split}_labels.npy"] = rng.integers(0, 10, n)
    for name, values in arrays.items():
        np.save(folder / name, values)
    return folder, arrays


def test_values_are_divided_by_255_and_the_last_rows_are_validation(tmp_path: Path) -> None:
    folder, raw = _folder(tmp_path)
    ds = AVMNIST(path=str(folder))
    held = N_TRAIN // 12  # fewer than 60,000 training rows: 1/12 of them
    rows = {"train": ("train", slice(0, N_TRAIN - held)), "validation": ("train", slice(N_TRAIN - held, N_TRAIN))}
    rows["test"] = ("test", slice(0, N_TEST))
    for split, (source, r) in rows.items():
        d = ds.load(split)
        n = r.stop - r.start
        assert d.inputs["image"].shape == (n, 28, 28, 1) and d.inputs["audio"].shape == (n, 112, 112, 1)
        assert d.inputs["image"].dtype == np.float32 and d.inputs["audio"].dtype == np.float32
        image = raw[f"image/{source}_data.npy"][r].astype(np.float32) / 255
        audio = raw[f"audio/{source}_data.npy"][r].astype(np.float32) / 255
        np.testing.assert_array_equal(d.inputs["image"], image.reshape(n, 28, 28, 1))
        np.testing.assert_array_equal(d.inputs["audio"][..., 0], audio)
        np.testing.assert_array_equal(d.labels, raw[f"{source}_labels.npy"][r])
        assert d.labels is not None and d.labels.dtype == np.int64
    assert len(AVMNIST(path=str(folder), validation_rows=5).load("validation")) == 5
    info = ds.info()
    assert info["image"].shape == (28, 28, 1) and info["audio"].shape == (112, 112, 1)
    assert ds.label_info() == "int64 digit 0-9"


def test_a_missing_file_is_named_with_the_layout(tmp_path: Path) -> None:
    folder, _ = _folder(tmp_path)
    (folder / "audio" / "test_data.npy").unlink()
    with pytest.raises(DataError) as err:
        AVMNIST(path=str(folder)).load("train")  # every file is checked before any split is read
    message = str(err.value)
    assert message.startswith(f"{folder / 'audio' / 'test_data.npy'}: no such file")
    assert "image/train_data.npy, image/test_data.npy, audio/train_data.npy" in message


def test_a_wrong_image_width_is_named(tmp_path: Path) -> None:
    folder, _ = _folder(tmp_path, image_width=783)
    with pytest.raises(
        DataError, match=r"image/train_data\.npy: the array has shape \[24, 783\]; expected \[\*, 784\]"
    ):
        AVMNIST(path=str(folder)).load("test")


def test_a_pickled_object_array_is_refused(tmp_path: Path) -> None:
    folder, _ = _folder(tmp_path)
    objects = np.empty(N_TRAIN, dtype=object)
    objects[:] = [{"digit": i % 10} for i in range(N_TRAIN)]
    np.save(folder / "train_labels.npy", objects, allow_pickle=True)
    with pytest.raises(DataError, match=r"train_labels\.npy: not a numeric \.npy array .*pickled arrays are refused"):
        AVMNIST(path=str(folder)).load("train")


def test_disagreeing_rows_and_bad_labels(tmp_path: Path) -> None:
    folder, raw = _folder(tmp_path)
    np.save(folder / "test_labels.npy", raw["test_labels.npy"][:5])
    with pytest.raises(DataError, match=r"the test files disagree .*audio/test_data\.npy: 6, test_labels\.npy: 5"):
        AVMNIST(path=str(folder)).load("test")
    labels = raw["train_labels.npy"].copy()
    labels[3] = 10
    np.save(folder / "train_labels.npy", labels)
    np.save(folder / "test_labels.npy", raw["test_labels.npy"])
    with pytest.raises(DataError, match=r"train_labels\.npy: row 3 is 10; expected a digit 0-9"):
        AVMNIST(path=str(folder)).load("train")


def test_too_many_validation_rows(tmp_path: Path) -> None:
    folder, _ = _folder(tmp_path)
    with pytest.raises(DataError, match=r"24 training rows, so validation_rows=24 .* between 1 and 23"):
        AVMNIST(path=str(folder), validation_rows=24).load("validation")


def test_the_cli_prints_the_file_and_exits_2(tmp_path: Path) -> None:
    # the installed command, not mmkeras.cli: plugin tests import only mmkeras.plugin and mmkeras's top level
    folder, _ = _folder(tmp_path)
    (folder / "audio" / "test_data.npy").unlink()
    command = [str(Path(sys.executable).parent / "mmkeras"), "data", "build", "avmnist", "--param", f"path={folder}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"error: {folder / 'audio' / 'test_data.npy'}: no such file; an AV-MNIST folder holds " + (
        "image/train_data.npy, image/test_data.npy, audio/train_data.npy, audio/test_data.npy, train_labels.npy, "
        "test_labels.npy\n"
    )


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_avmnist_standin(tmp_path_factory.mktemp("standin") / "avmnist", seed=0)


def test_standin_layout_and_determinism(standin: Path, tmp_path: Path) -> None:
    files = sorted(str(p.relative_to(standin)) for p in standin.rglob("*.npy"))
    assert files == sorted(
        ["audio/test_data.npy", "audio/train_data.npy", "image/test_data.npy", "image/train_data.npy"]
        + ["test_labels.npy", "train_labels.npy"]
    )
    assert np.load(standin / "audio" / "train_data.npy").shape == (1200, 112, 112)
    assert np.load(standin / "image" / "test_data.npy").shape == (200, 784)
    first = write_avmnist_standin(tmp_path / "first", seed=0, rows=60)
    again = write_avmnist_standin(tmp_path / "a", seed=0, rows=60)
    other = write_avmnist_standin(tmp_path / "b", seed=1, rows=60)
    for name in files:
        assert (again / name).read_bytes() == (first / name).read_bytes(), name
    assert (other / "image" / "train_data.npy").read_bytes() != (first / "image" / "train_data.npy").read_bytes()
    write_avmnist_standin(again, seed=1, rows=60)  # over an existing folder
    assert (again / "audio" / "test_data.npy").read_bytes() == (other / "audio" / "test_data.npy").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "first"]  # no temporary folders left


def test_standin_loads_without_a_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds = AVMNIST(data_dir=str(tmp_path), standin_rows=24)
    assert [len(ds.load(s)) for s in ds.splits] == [22, 2, 4]
    out = capsys.readouterr().out
    assert out.count("synthetic stand-in") == 1 and "data.params.path" in out and str(ds.folder()) in out
    check_dataset(AVMNIST, {"data_dir": str(tmp_path), "standin_rows": 24})
    assert capsys.readouterr().out == ""  # written once


def _centroid_distances(train: np.ndarray, y: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Squared distances [test rows, 10] to each digit's training mean, standardised per row."""
    centroids = np.stack([train[y == k].mean(0) for k in range(10)])
    d = ((test[:, None] - centroids[None]) ** 2).sum(-1)
    return (d - d.mean(1, keepdims=True)) / d.std(1, keepdims=True)


def test_standin_carries_the_digit_in_both_modalities(standin: Path) -> None:
    ds = AVMNIST(path=str(standin))
    train, test = ds.load("train"), ds.load("test")
    assert train.inputs["audio"].min() == 0.0 and train.inputs["image"].max() == 1.0

    def features(d):  # the image's pixels; the audio's spectrum averaged over time (wherever the word is)
        return {"image": d.inputs["image"].reshape(len(d), -1), "audio": d.inputs["audio"][..., 0].mean(2)}

    x, xt = features(train), features(test)
    d = {m: _centroid_distances(x[m], train.labels, xt[m]) for m in x}
    acc = {m: float((d[m].argmin(1) == test.labels).mean()) for m in d}
    acc["both"] = float(((d["image"] + d["audio"]).argmin(1) == test.labels).mean())
    assert 0.4 < acc["image"] < 0.8 and 0.4 < acc["audio"] < 0.8, acc  # chance is 0.1
    assert acc["both"] > max(acc["image"], acc["audio"]) + 0.1, acc
