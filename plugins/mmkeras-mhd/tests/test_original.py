"""Tests of the torch file reader and of the mhd_original dataset (tiny files in tmp_path)."""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from mmkeras_mhd import original
from mmkeras_mhd.dataset import MODALITIES
from mmkeras_mhd.original import MHDOriginal, write_standin
from mmkeras_mhd.torch_format import TorchTensor, read_torch, write_torch

from mmkeras.plugin import DataError, check_dataset

HAS_TORCH = importlib.util.find_spec("torch") is not None


def _sample() -> tuple[object, object]:
    """An object to write (arrays and strided views of flat storages) and what reading it must give."""
    base = np.arange(24, dtype=np.float32) * 0.5
    ints = np.arange(-6, 6, dtype=np.int64).reshape(3, 4)
    pixels = np.array([[0, 7, 255], [1, 2, 3]], np.uint8)
    bf16 = np.array([1.0, -2.5, 0.15625], np.float32)  # exact in bfloat16: the upper 16 bits of each float32
    written = (
        ints,
        {
            "pixels": pixels,
            "nested": [TorchTensor(base, 0, (6, 4), (1, 6)), ("deep", 3, 2.5, None, True)],  # transposed view
            "window": TorchTensor(base, 5, (2, 3), (3, 1)),  # starts at element 5 of the same storage
            "half": np.array([0.5, -1.0], np.float16),
            "bf16": TorchTensor((bf16.view(np.uint32) >> 16).astype(np.uint16), 0, (3,), (1,), "BFloat16Storage"),
            "scalar": np.array(7.25, np.float64),
            "mask": np.array([True, False]),
            "empty": np.zeros((0, 5), np.int32),
        },
    )
    expected = (
        ints,
        {
            "pixels": pixels,
            "nested": [base.reshape(4, 6).T, ("deep", 3, 2.5, None, True)],
            "window": base[5:11].reshape(2, 3),
            "half": np.array([0.5, -1.0], np.float16),
            "bf16": bf16,
            "scalar": np.array(7.25),
            "mask": np.array([True, False]),
            "empty": np.zeros((0, 5), np.int32),
        },
    )
    return written, expected


def _assert_same(got: object, expected: object) -> None:
    assert type(got) is type(expected), (type(got), type(expected))
    if isinstance(expected, np.ndarray):
        assert got.dtype == expected.dtype and got.shape == expected.shape, (got.dtype, got.shape, expected.shape)
        np.testing.assert_array_equal(got, expected)
    elif isinstance(expected, (tuple, list)):
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            _assert_same(g, e)
    elif isinstance(expected, dict):
        assert list(got) == list(expected)
        for k in expected:
            _assert_same(got[k], expected[k])
    else:
        assert got == expected


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_reader_rebuilds_tensors_and_containers(tmp_path: Path, legacy: bool) -> None:
    written, expected = _sample()
    path = tmp_path / "x.pt"
    write_torch(path, written, legacy=legacy)
    assert zipfile.is_zipfile(path) != legacy
    got = read_torch(path)
    _assert_same(got, expected)
    assert got[1]["nested"][0].flags.writeable and got[1]["nested"][0].flags.c_contiguous


def test_zip_layout_and_big_endian_storages(tmp_path: Path) -> None:
    values = np.array([[1.5, -2.0, 3.25]], np.float32)
    path = tmp_path / "x.pt"
    write_torch(path, {"v": values, "n": np.array([258, -3], np.int64)}, root="mhd_train")
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == [
            "mhd_train/byteorder",
            "mhd_train/data.pkl",
            "mhd_train/data/0",
            "mhd_train/data/1",
            "mhd_train/version",
        ]
        entries = {n: zf.read(n) for n in zf.namelist()}
    # the same file as a big-endian machine writes it
    entries["mhd_train/byteorder"] = b"big"
    entries["mhd_train/data/0"] = values.astype(">f4").tobytes()
    entries["mhd_train/data/1"] = np.array([258, -3], ">i8").tobytes()
    big = tmp_path / "big.pt"
    with zipfile.ZipFile(big, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    got = read_torch(big)
    np.testing.assert_array_equal(got["v"], values)
    np.testing.assert_array_equal(got["n"], [258, -3])


def _global_call_pickle(module: str, name: str, arg: str) -> bytes:
    """A protocol-2 pickle that calls ``module.name(arg)`` when loaded by an unrestricted unpickler."""
    text = arg.encode()
    return (
        pickle.PROTO
        + b"\x02"
        + pickle.GLOBAL
        + f"{module}\n{name}\n".encode()
        + pickle.BINUNICODE
        + struct.pack("<I", len(text))
        + text
        + pickle.TUPLE1
        + pickle.REDUCE
        + pickle.STOP
    )


def test_a_pickle_naming_os_system_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    payload = _global_call_pickle("os", "system", f"touch {marker}")
    in_zip = tmp_path / "evil.pt"
    with zipfile.ZipFile(in_zip, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
    bare = tmp_path / "evil_legacy.pt"
    bare.write_bytes(payload)
    for path in (in_zip, bare):
        with pytest.raises(DataError, match=r"names os\.system") as err:
            read_torch(path)
        assert str(path) in str(err.value)
    assert not marker.exists()


@pytest.mark.skipif(HAS_TORCH, reason="with torch installed such files go to torch.load")
def test_files_outside_the_reader_need_torch(tmp_path: Path) -> None:
    sparse = tmp_path / "sparse.pt"
    with zipfile.ZipFile(sparse, "w") as zf:
        zf.writestr("archive/data.pkl", _global_call_pickle("torch._utils", "_rebuild_sparse_tensor", "x"))
    with pytest.raises(DataError, match=r"torch\._utils\._rebuild_sparse_tensor.*`pip install torch`"):
        read_torch(sparse)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file at all")
    with pytest.raises(DataError, match=r"garbage\.pt: not a readable torch file.*`pip install torch`"):
        read_torch(garbage)
    with pytest.raises(DataError, match=r"missing\.pt: no such file"):
        read_torch(tmp_path / "missing.pt")


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_reads_a_file_torch_save_wrote(tmp_path: Path) -> None:
    import torch

    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    obj = (torch.tensor([3, 1], dtype=torch.int64), {"t": base.t(), "slice": base[1:, 2:]}, "x", 2)
    for legacy in (False, True):
        path = tmp_path / f"t{legacy}.pt"
        torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
        got = read_torch(path)
        np.testing.assert_array_equal(got[0], [3, 1])
        np.testing.assert_array_equal(got[1]["t"], base.numpy().T)
        np.testing.assert_array_equal(got[1]["slice"], base.numpy()[1:, 2:])
        assert got[2:] == ("x", 2)


# -- mhd_original -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> MHDOriginal:
    ds = MHDOriginal(data_dir=str(tmp_path_factory.mktemp("data")), standin_rows=40)
    ds.prepare(progress=False)
    return ds


def test_standin_has_the_mhd_layout(standin: MHDOriginal) -> None:
    assert standin.info() == MODALITIES and standin.label_info() == "int64 digit 0-9"
    for split, n in (("train", 40), ("test", 8)):
        data = standin.load(split)
        assert {m: (a.shape[1:], str(a.dtype)) for m, a in data.inputs.items()} == {
            m: (info.shape, info.dtype) for m, info in MODALITIES.items()
        }
        assert len(data) == n and data.labels.dtype == np.int64
        np.testing.assert_array_equal(data.labels, np.arange(n) % 10)
        np.testing.assert_array_equal(data.inputs["label"], np.eye(10, dtype=np.float32)[data.labels])
        image = data.inputs["image"]
        assert 0.0 <= image.min() and image.max() <= 1.0


def test_sound_chunks_joined_along_time_then_transposed(standin: MHDOriginal) -> None:
    raw = read_torch(standin.source("train"))
    sounds = raw[3]  # [N, C=4, Tc=32, 32 bands]
    assert sounds.shape == (40, 4, 32, 32)
    sound = standin.load("train").inputs["sound"]  # [N, 32 bands, 128 frames]
    # frame t of the joined clip is frame t % 32 of chunk t // 32
    for n, band, frame in ((0, 0, 0), (3, 5, 31), (3, 5, 32), (7, 31, 127), (39, 10, 70)):
        assert sound[n, band, frame] == sounds[n, frame // 32, frame % 32, band]
    joined = np.concatenate([sounds[:, c] for c in range(4)], axis=1)  # [N, 128, 32]
    np.testing.assert_array_equal(sound, joined.transpose(0, 2, 1))
    np.testing.assert_array_equal(standin.load("train").inputs["image"][..., 0], raw[1][:, 0])
    np.testing.assert_array_equal(standin.load("train").inputs["trajectory"], raw[2])


def test_standin_is_a_conforming_dataset(tmp_path: Path) -> None:
    check_dataset(MHDOriginal, {"data_dir": str(tmp_path), "standin_rows": 20})


def _official(n: int = 20, seed: int = 0, **changes: object) -> list:
    """A small tuple in the official layout (chunks C=2 x Tc=64), with entries replaced by ``changes``."""
    rng = np.random.default_rng(seed)
    entries = {
        "labels": (np.arange(n) % 10).astype(np.int64),
        "images": rng.uniform(0, 1, (n, 1, 28, 28)).astype(np.float32),
        "trajectories": rng.normal(0, 1, (n, 200)).astype(np.float32),
        "sounds": rng.normal(0, 1, (n, 2, 64, 32)).astype(np.float32),
        "trajectory_normalization": {"max": np.array([2.0, 3.0], np.float32)},
        "sound_normalization": np.array(1.5, np.float64),
    }
    entries.update(changes)
    return list(entries.values())


def _folder(root: Path, train: list | tuple | None = None, test: list | tuple | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, entries in (("mhd_train.pt", train), ("mhd_test.pt", test)):
        if entries is not None:
            write_torch(root / name, tuple(entries))
    return root


def test_original_files_converted_once_and_again_when_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    labels = np.eye(10, dtype=np.float32)[np.arange(20) % 10][::-1].copy()  # one-hot, rows reversed
    images = np.round(np.random.default_rng(1).uniform(0, 255, (20, 1, 28, 28))).astype(np.float32)
    folder = _folder(tmp_path / "mhd", _official(labels=labels, images=images), _official(10, seed=2))
    ds = MHDOriginal(path=str(folder), data_dir=str(tmp_path / "data"))
    train = ds.load("train")
    caches = {split: ds.cache_path(split) for split in ds.splits}
    np.testing.assert_array_equal(train.labels, (np.arange(20) % 10)[::-1])
    np.testing.assert_allclose(train.inputs["image"][..., 0], images[:, 0] / 255.0, rtol=1e-6)
    assert train.inputs["sound"][4, 7, 100] == _official()[3][4, 1, 36, 7]  # chunk 100 // 64, frame 100 % 64
    assert ds.normalization("test") == {"trajectory_normalization": {"max": [2.0, 3.0]}, "sound_normalization": 1.5}

    def fail(path: object) -> None:
        raise AssertionError(f"converted again: {path}")

    monkeypatch.setattr(original, "read_torch", fail)
    again = MHDOriginal(path=str(folder), data_dir=str(tmp_path / "data")).load("train")
    np.testing.assert_array_equal(again.inputs["sound"], train.inputs["sound"])
    monkeypatch.undo()

    _folder(folder, test=_official(10, seed=3))  # a replaced test file: a new cache for it alone
    replaced = MHDOriginal(path=str(folder), data_dir=str(tmp_path / "data"))
    assert replaced.cache_path("train") == caches["train"]
    assert replaced.cache_path("test") != caches["test"]
    np.testing.assert_array_equal(replaced.load("test").inputs["trajectory"], _official(10, seed=3)[2])


@pytest.mark.parametrize(
    ("train", "message"),
    [
        (_official()[:5], r"mhd_train\.pt: expected a tuple of 6 entries .* found a 5-tuple"),
        (_official(labels=np.eye(11)[np.arange(20) % 11]), r"entry 0 \(labels\) .* 11\], expected \[N\] or \[N, 10\]"),
        (_official(labels=np.arange(20) % 11), r"entry 0 \(labels\) holds 10 at row 10, expected digits 0-9"),
        (_official(images=np.zeros((20, 28, 28))), r"entry 1 \(images\) .* \[20, 28, 28\], expected \[N, 1, 28, 28\]"),
        (_official(sounds=np.zeros((20, 3, 40, 32), np.float32)), r"entry 3 \(sounds\) .* C \* Tc = 128"),
        (_official(trajectories=np.zeros((19, 200), np.float32)), r"entries 0-3 disagree on the number of rows"),
        (_official(trajectories=np.full((20, 200), np.nan, np.float32)), r"entry 2 \(trajectories\) has non-finite"),
    ],
    ids=["5-tuple", "11-classes", "label-10", "image-shape", "sound-chunks", "row-counts", "nan"],
)
def test_malformed_files_name_the_file_and_entry(tmp_path: Path, train: list, message: str) -> None:
    folder = _folder(tmp_path / "mhd", train, _official(10))
    with pytest.raises(DataError, match=message) as err:
        MHDOriginal(path=str(folder), data_dir=str(tmp_path / "data")).prepare(progress=False)
    assert str(folder / "mhd_train.pt") in str(err.value)


def test_missing_files_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    # the `mmkeras` command's own function, in process (plugin tests import mmkeras only through its API)
    (main,) = [ep.load() for ep in md.entry_points(group="console_scripts") if ep.name == "mmkeras"]
    monkeypatch.setenv("MMKERAS_DATA_DIR", str(tmp_path / "data"))
    folder = _folder(tmp_path / "mhd", _official())
    assert main(["data", "build", "mhd_original", "--param", f"path={folder}"]) == 2
    assert f"{folder / 'mhd_test.pt'}: no such file" in capsys.readouterr().err
    assert main(["data", "build", "mhd_original", "--param", f"path={tmp_path / 'nowhere'}"]) == 2
    assert f"{tmp_path / 'nowhere'}: no such folder" in capsys.readouterr().err
    _folder(folder, test=_official(10, labels=np.arange(10) + 1))
    assert main(["data", "build", "mhd_original", "--param", f"path={folder}"]) == 2
    assert "mhd_test.pt: entry 0 (labels) holds 10 at row 9" in capsys.readouterr().err


def test_write_standin_rows(tmp_path: Path) -> None:
    folder = write_standin(tmp_path / "s", rows=30, seed=1)
    assert [len(read_torch(folder / f)[0]) for f in ("mhd_train.pt", "mhd_test.pt")] == [30, 6]


def test_an_mhd_recipe_trains_on_the_original_files_by_switching_the_dataset(tmp_path: Path) -> None:
    # what docs/real_data.md tells a user to type: the mhd recipe's own `size` is dropped with its dataset
    import mmkeras

    root = Path(__file__).resolve().parents[3]
    folder = tmp_path / "mhd"
    folder.mkdir()
    write_standin(folder, rows=64, seed=1)
    overrides = [
        "data.dataset=mhd_original",
        f"data.params.path={folder}",
        f"data.params.data_dir={tmp_path / 'cache'}",
        "data.batch_size=16",
        "train.epochs=1",
        "train.jit_compile=false",
        "evaluate=[]",
    ]
    recipe = mmkeras.load_recipe(root / "recipes" / "gmc_mhd.yaml", overrides)
    assert recipe.data.params == {"path": str(folder), "data_dir": str(tmp_path / "cache")}
    run = mmkeras.train(recipe, str(tmp_path / "run"), verbose=0)
    model = mmkeras.load_model(str(run.model_file))
    test = MHDOriginal(path=str(folder), data_dir=str(tmp_path / "cache")).load("test")
    z = model.encode({m: test.inputs[m] for m in ("image", "sound", "trajectory", "label")})
    assert z.shape == (len(test), 64) and np.all(np.isfinite(z))
