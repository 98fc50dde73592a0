"""TFRecord export and the tfrecord dataset: exact round trips, file sharding, errors, the CLI."""

import json

import numpy as np
import pytest

from mmkeras.data.arrays import ArraysDataset
from mmkeras.data.base import DataSplit
from mmkeras.data.tfrecord import SPEC, TFRecordData, export, export_all
from mmkeras.errors import DataError


@pytest.fixture(scope="module")
def masked():
    """The synthetic arrays set with a missing-modality mask on each modality (zeros where missing)."""
    flat = {}
    rng = np.random.default_rng(0)
    synthetic = ArraysDataset(synthetic=True, num_samples=200, seed=2)
    for split in synthetic.splits:
        data = synthetic.load(split)
        for m, x in data.inputs.items():
            mask = (rng.random(len(data)) > 0.3).astype("float32")
            flat[f"{split}/{m}"] = x * mask.reshape(-1, *[1] * (x.ndim - 1))
            flat[f"{split}/mask_{m}"] = mask
        flat[f"{split}/labels"] = data.labels
    return ArraysDataset(arrays=flat)


def assert_same(a: DataSplit, b: DataSplit):
    assert sorted(a.inputs) == sorted(b.inputs)
    for m in a.inputs:
        assert a.inputs[m].dtype == b.inputs[m].dtype
        np.testing.assert_array_equal(a.inputs[m], b.inputs[m])
        np.testing.assert_array_equal(a.mask(m), b.mask(m))
    np.testing.assert_array_equal(a.labels, b.labels)


def test_round_trip_is_exact(masked, tmp_path):
    spec = export_all(masked, tmp_path, shards=3)
    assert spec["modalities"] == {
        "a": {"shape": [16], "dtype": "float32"},
        "b": {"shape": [8, 8, 1], "dtype": "float32"},
    }
    assert spec["labels"] == "int64"
    assert spec["splits"]["train"] == {
        "count": 150,
        "files": [f"train-0000{k}-of-00003.tfrecord" for k in range(3)],
    }
    assert spec["splits"]["test"]["count"] == 50
    assert json.loads((tmp_path / SPEC).read_text()) == spec
    back = TFRecordData(str(tmp_path))
    assert back.splits == ("train", "test")
    for split in ("train", "test"):
        original = masked.load(split)
        assert original.mask("a").min() == 0.0  # the masks really are exercised
        assert_same(back.load(split), original)


def test_tf_dataset_is_unbatched_and_shards_by_file(masked, tmp_path):
    import tensorflow as tf
    from tensorflow.python.data.experimental.ops.distribute import _AutoShardDataset

    export(masked, "train", tmp_path, shards=3)
    data = TFRecordData(str(tmp_path))
    ds = data.tf_dataset("train")
    assert ds.options().experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.FILE
    x, y = next(iter(ds))
    assert x["a"].shape == (16,) and x["b"].shape == (8, 8, 1) and x["masks"]["a"].shape == () and y.dtype == tf.int64
    original = masked.load("train")

    def rows(dataset):
        return sorted((int(y), float(x["masks"]["a"]), *x["a"].numpy().round(5).tolist()) for x, y in dataset)

    everything = rows(ds)
    expected = sorted(
        (int(original.labels[i]), float(original.mask("a")[i]), *original.inputs["a"][i].round(5).tolist())
        for i in range(len(original))
    )
    assert everything == expected
    # worker 1 of 3 reads exactly the rows of the second file (rows 50..99)
    worker = rows(_AutoShardDataset(ds, num_workers=3, index=1))
    second = sorted(
        (int(original.labels[i]), float(original.mask("a")[i]), *original.inputs["a"][i].round(5).tolist())
        for i in range(50, 100)
    )
    assert worker == second


def test_int_tokens_and_unlabelled_data(tmp_path):
    tokens = np.arange(24, dtype="int32").reshape(6, 4)
    split = DataSplit({"text": tokens}, None, {"text": np.array([1, 1, 0, 1, 1, 1], "float32")})
    export(split, "train", tmp_path, shards=4)
    back = TFRecordData(str(tmp_path))
    loaded = back.load("train")
    assert loaded.labels is None and loaded.inputs["text"].dtype == np.int32
    np.testing.assert_array_equal(loaded.inputs["text"], tokens)
    np.testing.assert_array_equal(loaded.mask("text"), [1, 1, 0, 1, 1, 1])
    assert sorted(int(y) for _, y in back.tf_dataset("train")) == [0] * 6  # unlabelled: label 0, as the pipeline does


def test_re_export_replaces_a_split_and_refuses_other_shapes(masked, tmp_path):
    export(masked, "train", tmp_path, shards=3)
    export(masked, "train", tmp_path, shards=2)
    assert sorted(p.name for p in tmp_path.glob("train-*")) == [f"train-0000{k}-of-00002.tfrecord" for k in range(2)]
    assert_same(TFRecordData(str(tmp_path)).load("train"), masked.load("train"))
    other = DataSplit({"a": np.zeros((4, 3), "float32")}, np.zeros(4, "int64"))
    with pytest.raises(DataError, match=r"split 'test' has modalities .* but the splits already there have"):
        export(other, "test", tmp_path)


def test_errors_name_the_directory_and_file(masked, tmp_path):
    with pytest.raises(DataError, match=r"no spec.json in .*; write one with `mmkeras data export NAME --out"):
        TFRecordData(str(tmp_path))
    export(masked, "train", tmp_path, shards=2)
    shard = tmp_path / "train-00001-of-00002.tfrecord"
    shard.write_bytes(shard.read_bytes()[:-100])  # a truncated copy
    with pytest.raises(DataError, match=r"split 'train': corrupt records"):
        TFRecordData(str(tmp_path)).load("train")
    shard.unlink()
    with pytest.raises(DataError, match=r"file train-00001-of-00002.tfrecord of split 'train' is missing"):
        TFRecordData(str(tmp_path))


def test_cli_exports_every_split_and_the_registry_reads_them(tmp_path, capsys):
    from mmkeras.builder import instantiate
    from mmkeras.cli import main
    from mmkeras.recipe import ComponentSpec

    out = tmp_path / "records"
    args = ["data", "export", "arrays", "--param", "synthetic=true", "--param", "num_samples=64", "--out", str(out)]
    assert main([*args, "--shards", "2"]) == 0  # in process: a subprocess would pay another TensorFlow import
    printed = capsys.readouterr().out
    assert f"arrays train: 48 rows -> 2 TFRecord files in {out}" in printed
    assert f"arrays test: 16 rows -> 2 TFRecord files in {out}" in printed
    data = instantiate("datasets", ComponentSpec(name="tfrecord", params={"path": str(out)}), "data.dataset")
    original = ArraysDataset(synthetic=True, num_samples=64)
    for split in ("train", "test"):
        assert_same(data.load(split), original.load(split))
    assert main([*args, "--shards", "0"]) == 2
    assert "error: --shards must be at least 1, got 0" in capsys.readouterr().err
