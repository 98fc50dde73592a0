"""Data checks at load (NaN/Inf, all-zero modalities) and what each dataset declares (``info()``)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, run_cli

from mmkeras.data.arrays import ArraysDataset
from mmkeras.data.base import DataSplit, ModalityInfo
from mmkeras.data.checks import check_finite, info_mismatches, nonfinite_rows
from mmkeras.data.files import FilesDataset
from mmkeras.data.reference import SHIPPED, USER_DATA, datasets_markdown
from mmkeras.errors import DataError


def split_of(n=6, **over):
    rng = np.random.default_rng(0)
    inputs = {"a": rng.normal(size=(n, 3)).astype("float32"), "b": rng.normal(size=(n, 2, 2)).astype("float32")}
    inputs.update(over)
    return DataSplit(inputs, np.arange(n) % 2)


# -- check_finite ---------------------------------------------------------------------------


def test_nonfinite_rows_finds_nan_and_inf_and_ignores_overflowing_sums():
    a = np.zeros((5, 4), dtype="float32")
    a[1, 2], a[3, 0] = np.nan, -np.inf
    a[4] = [3e38, 3e38, 0, 0]  # its float32 sum overflows to inf, yet every value is finite
    np.testing.assert_array_equal(nonfinite_rows(a), [False, True, False, True, False])


def test_raise_names_dataset_split_modality_first_row_and_count():
    split = split_of()
    split.inputs["b"][4, 1, 0] = np.nan
    split.inputs["b"][2, 0, 0] = np.inf
    with pytest.raises(DataError) as err:
        check_finite(split, "train", "mhd")
    assert str(err.value) == (
        "dataset mhd, split 'train': modality 'b' has NaN or infinite values in 2 of 6 rows (first: row 2); "
        "fix or remove those rows (a row whose mask is 0 may hold anything)"
    )


def test_missing_rows_may_hold_anything_and_clean_data_is_returned_as_is():
    split = split_of()
    split.inputs["a"][1] = np.nan
    split.masks["a"] = np.array([1, 0, 1, 1, 1, 1], dtype="float32")
    checked, dropped = check_finite(split, "train", "x")
    assert checked is split and dropped == []


def test_skip_drops_bad_rows_and_describes_each():
    split = split_of()
    split.inputs["a"][1, 0] = np.nan
    split.inputs["b"][1, 0, 0] = np.inf
    split.inputs["b"][4, 1, 1] = np.nan
    checked, dropped = check_finite(split, "test", "files", on_error="skip")
    assert dropped == [
        "dataset files, split 'test', row 1: NaN or infinite values in modality 'a', 'b'",
        "dataset files, split 'test', row 4: NaN or infinite values in modality 'b'",
    ]
    np.testing.assert_array_equal(checked.labels, [0, 0, 1, 1])  # rows 0, 2, 3, 5
    np.testing.assert_array_equal(checked.inputs["a"], split.inputs["a"][[0, 2, 3, 5]])
    with pytest.raises(DataError, match=r"every row has NaN or infinite values; first: .*row 0"):
        check_finite(split_of(2, a=np.full((2, 3), np.nan, dtype="float32")), "train", "x", on_error="skip")


def test_integer_modalities_are_not_checked_for_finite_values():
    tokens = np.array([[3, 4], [5, 0]], dtype="int32")
    checked, _ = check_finite(split_of(2, t=tokens), "train", "x")
    assert checked.inputs["t"] is tokens


def test_a_modality_of_zeros_carries_no_signal():
    zeros = np.zeros((6, 3), dtype="float32")
    with pytest.raises(DataError) as err:
        check_finite(split_of(a=zeros), "train", "mhd")
    assert str(err.value).startswith(
        "dataset mhd, split 'train': modality 'a' is 0 in every present row: it carries no signal; "
        "a modality of zeros makes normalised features undefined"
    )
    # values only in missing rows do not count; one present non-zero value does
    split = split_of(a=zeros.copy())
    split.inputs["a"][2, 1] = 5.0
    split.masks["a"] = np.array([1, 1, 0, 1, 1, 1], dtype="float32")
    with pytest.raises(DataError, match="modality 'a' is 0 in every present row"):
        check_finite(split, "train", "x")
    split.masks["a"][2] = 1.0
    assert check_finite(split, "train", "x")[1] == []
    # missing in every row: nothing to normalise, not an error here
    split.masks["a"][:] = 0.0
    assert check_finite(split, "train", "x")[1] == []


def test_all_zero_check_runs_after_skipping():
    a = np.zeros((3, 2), dtype="float32")
    a[1] = [np.nan, 1.0]  # the only non-zero row is the one dropped
    with pytest.raises(DataError, match="modality 'a' is 0 in every present row"):
        check_finite(split_of(3, a=a), "train", "x", on_error="skip")


# -- info(): declared without loading, and what loading gives -------------------------------


def _arrays_npz(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "d.npz"
    np.savez_compressed(
        path,
        **{
            "train/img": rng.random((7, 5, 4, 2)).astype("float16"),
            "train/vec": rng.normal(size=(7, 3)),
            "train/labels": np.arange(7) % 3,
            "train/mask_vec": np.ones(7),
            "test/img": rng.random((2, 5, 4, 2)),
            "test/vec": rng.normal(size=(2, 3)),
        },
    )
    return ArraysDataset(path=str(path))


def _files(tmp_path):
    from PIL import Image

    for i in range(4):
        Image.new("RGB", (5 + i, 4), (40 * i, 10, 200)).save(tmp_path / f"{i}.png")
        np.save(tmp_path / f"{i}.npy", np.full((2, 3), i + 1.0))
    rows = [f"{i}.png,{i}.npy,word {i},{i % 2}" for i in range(4)]
    rows[2] = "2.png,,only words,0"  # a missing array cell
    (tmp_path / "m.csv").write_text("pic,arr,caption,y\n" + "\n".join(rows) + "\n")
    return FilesDataset(str(tmp_path / "m.csv"), label="y", image_size=[3, 3], text={"max_tokens": 5})


def _tfrecord(tmp_path):
    from mmkeras.data.tfrecord import TFRecordData, export_all

    export_all(ArraysDataset(synthetic=True, num_samples=16), tmp_path / "tfr")
    return TFRecordData(str(tmp_path / "tfr"))


def _plugin(module, cls, cached=False, **params):
    def make(tmp_path):
        dataset_class = getattr(pytest.importorskip(module), cls)
        return dataset_class(**params, **({"data_dir": str(tmp_path)} if cached else {}))

    return make


MAKERS = {
    "arrays-synthetic": lambda tmp_path: ArraysDataset(synthetic=True, num_samples=20),
    "arrays-npz": _arrays_npz,
    "arrays-in-memory": lambda tmp_path: ArraysDataset(arrays={"x": np.zeros((3, 2, 2), dtype="int8") + 1}),
    "files": _files,
    "tfrecord": _tfrecord,
    "digit_captions": _plugin("mmkeras_text.digit_captions", "DigitCaptions", num_train=20, num_test=5, length=7),
    "pendulum": _plugin("mmkeras_pendulum.dataset", "Pendulum", cached=True, size=10),
    "trifeatures": _plugin("mmkeras_vision.trifeatures", "Trifeatures", cached=True, size=5, image_size=16),
    # mhd: in plugins/mmkeras-mhd/tests/test_mhd.py, on the data its module builds once
}


@pytest.mark.parametrize("which", list(MAKERS))
def test_info_matches_the_loaded_train_split(which, tmp_path):
    dataset = MAKERS[which](tmp_path)
    info = dataset.info()
    assert info and all(isinstance(i, ModalityInfo) for i in info.values())
    assert info_mismatches(info, dataset.load("train")) == []


def test_declared_shapes_by_hand():
    """The numbers, not just agreement: a None axis where only the files know (no image_size)."""
    assert ArraysDataset(synthetic=True).info() == {
        "a": ModalityInfo((16,), "float32", "a noisy linear view of the class signal"),
        "b": ModalityInfo((8, 8, 1), "float32", "another noisy linear view, as an 8x8 one-channel image"),
    }


def test_files_info_shapes(tmp_path):
    data = _files(tmp_path)
    assert {m: (i.shape, i.dtype) for m, i in data.info().items()} == {
        "pic": ((3, 3, 3), "float32"),
        "arr": ((2, 3), "float32"),
        "caption": ((5,), "int32"),
    }
    free = FilesDataset(str(tmp_path / "m.csv"), label="y", image_mode="gray")
    assert free.info()["pic"].shape == (None, None, 1)  # sizes differ per file: only loading tells
    assert data.label_info() == "int64 class ids (column 'y', integers)"


def test_info_mismatches_names_each_difference():
    split = split_of(2, c=np.zeros((2, 4), dtype="int32"))
    info = {
        "a": ModalityInfo((None,)),
        "b": ModalityInfo((2, 3)),
        "c": ModalityInfo((4,), "float32"),
        "d": ModalityInfo((1,)),
    }
    assert info_mismatches(info, split) == [
        "modality 'd' is declared but not loaded",
        "modality 'b': declared shape (2, 3), loaded (2, 2)",
        "modality 'c': declared dtype float32, loaded int32",
    ]


def test_arrays_with_a_path_reads_no_array_until_load(tmp_path, monkeypatch):
    dataset = _arrays_npz(tmp_path)
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("np.load called before load()"))
    again = ArraysDataset(path=str(tmp_path / "d.npz"))
    assert again.splits == ("train", "test") and again.info()["img"].shape == (5, 4, 2)
    monkeypatch.undo()
    assert dataset.load("test").inputs["img"].shape == (2, 5, 4, 2)


def test_arrays_constructor_errors_still_come_first(tmp_path):
    with pytest.raises(ValueError, match="give exactly one of path, arrays or synthetic"):
        ArraysDataset()
    with pytest.raises(DataError, match="file not found"):
        ArraysDataset(path=str(tmp_path / "none.npz"))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"cannot read .*bad\.npz as \.npz"):
        ArraysDataset(path=str(tmp_path / "bad.npz"))
    np.savez(tmp_path / "t.npz", **{"test/x": np.zeros((2, 1))})
    with pytest.raises(DataError, match="no train split"):
        ArraysDataset(path=str(tmp_path / "t.npz"))


def test_constructing_and_declaring_imports_no_tensorflow(tmp_path):
    """What `mmkeras validate` does with a dataset: build it from recipe params and ask for info()."""
    specs = [("arrays", {"synthetic": True}), ("files", {"manifest": str(tmp_path / "m.csv"), "label": "y"})]
    specs += [(name, {"size": "full"}) for name in ("mhd", "pendulum", "trifeatures")] + [("digit_captions", {})]
    _files(tmp_path)
    code = (
        "import json, sys\nfrom mmkeras.builder import instantiate\nfrom mmkeras.recipe import ComponentSpec\n"
        "from mmkeras.registry import registry\nout = {}\n"
        f"for name, params in {specs!r}:\n"
        "    if name in registry.names('datasets'):\n"
        "        ds = instantiate('datasets', ComponentSpec(name=name, params=params), 'data.dataset')\n"
        "        out[name] = sorted(ds.info())\n"
        "print(json.dumps([out, sorted(m for m in ('tensorflow', 'keras') if m in sys.modules)]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    declared, heavy = json.loads(result.stdout)
    assert heavy == [] and declared["arrays"] == ["a", "b"] and declared["files"] == ["arr", "caption", "pic"]


# -- docs and the CLI ------------------------------------------------------------------------


def test_datasets_page_is_current():
    from mmkeras.registry import registry

    missing = [n for n in SHIPPED if n not in registry.names("datasets")]
    if missing:
        pytest.skip(f"first-party plugins not installed: {missing}")
    current = (ROOT / "docs" / "datasets.md").read_text()
    assert current == datasets_markdown(), "docs/datasets.md is stale; regenerate it (command at its top)"


def test_every_first_party_dataset_is_documented():
    from mmkeras.registry import registry

    first_party = {
        e.name for e in registry.all_entries() if e.kind == "datasets" and e.distribution.startswith("mmkeras")
    }
    assert first_party <= {*SHIPPED, *USER_DATA}


def test_data_info_prints_modalities_without_building(tmp_path):
    out = run_cli("data", "info", "arrays", "--param", "synthetic=true", "--param", "num_samples=40")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines()[1:] == [
        "splits: train, test",
        "modality  shape      dtype    description",
        "a         [16]       float32  a noisy linear view of the class signal",
        "b         [8, 8, 1]  float32  another noisy linear view, as an 8x8 one-channel image",
        "labels: int64 class labels",
    ]
    bad = run_cli("data", "info", "arrays")
    assert bad.returncode == 2 and "give exactly one of path, arrays or synthetic" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_data_info_with_size_builds_nothing(tmp_path):
    from mmkeras.registry import registry

    if "trifeatures" not in registry.names("datasets"):
        pytest.skip("the mmkeras-vision plugin is not installed")
    args = ("data", "info", "trifeatures", "--size", "small", "--param", "image_size=48", "--param", "task=synergy")
    out = run_cli(*args, "--param", f"data_dir={tmp_path}")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "splits: train (2,000 rows), test (500 rows)" in out.stdout
    assert "image1    [48, 48, 3]  float32" in out.stdout and "labels: int64 0/1" in out.stdout
    assert not any(tmp_path.iterdir())
