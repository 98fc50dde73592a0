"""Any dataset to sharded TFRecord files, and the ``tfrecord`` dataset that reads them back.

TFRecords are the way to data larger than memory and to multi-worker training: each worker
reads its own files (``tf.data.experimental.AutoShardPolicy.FILE``).

An export directory holds, per split, ``<split>-00000-of-00004.tfrecord`` ... (contiguous
blocks of rows, in order) and one ``spec.json``::

    {"format": "mmkeras-tfrecord", "version": 1,
     "modalities": {"image": {"shape": [28, 28, 1], "dtype": "float32"}, ...},
     "labels": "int64" or null,
     "splits": {"train": {"count": 50000, "files": ["train-00000-of-00004.tfrecord", ...]}, ...}}

Each row is one ``tf.train.Example``: ``x/<modality>`` (bytes: the row's array, little-endian,
in the spec's dtype and shape), ``mask/<modality>`` (float, 1 present, 0 missing) and ``label``
(int64, when the data are labelled).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mmkeras.data.base import Dataset, DataSplit, ModalityInfo
from mmkeras.errors import DataError

SPEC = "spec.json"
FORMAT = "mmkeras-tfrecord"
VERSION = 1
MASKS = "masks"  # mmkeras.model.MASKS, repeated so reading needs no Keras import
READ_BATCH = 1024


def shard_name(split: str, index: int, shards: int) -> str:
    return f"{split}-{index:05d}-of-{shards:05d}.tfrecord"


def _spec_of(data: DataSplit) -> dict[str, Any]:
    return {
        "modalities": {m: {"shape": list(a.shape[1:]), "dtype": a.dtype.name} for m, a in data.inputs.items()},
        "labels": None if data.labels is None else "int64",
    }


def export(dataset: Dataset | DataSplit, split: str, out_dir: str | os.PathLike, shards: int = 1) -> dict[str, Any]:
    """Write ``split`` of ``dataset`` (inputs, masks, labels) to ``shards`` TFRecord files in ``out_dir``.

    Re-exporting a split replaces its files; other splits already in ``out_dir`` are kept, and
    must agree on modalities, shapes and dtypes. Returns the updated spec.
    """
    import tensorflow as tf

    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    data = dataset if isinstance(dataset, DataSplit) else dataset.load(split)
    n = len(data)
    if n == 0:
        raise DataError(f"tfrecord export: split {split!r} has no rows")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec = _read_spec(out) if (out / SPEC).exists() else {"format": FORMAT, "version": VERSION, "splits": {}}
    mine = _spec_of(data)
    for key in ("modalities", "labels"):
        if key in spec and spec[key] != mine[key]:
            raise DataError(
                f"tfrecord export to {out}: split {split!r} has {key} {mine[key]}, but the splits already there "
                f"have {spec[key]}; export to an empty directory"
            )
    spec.update(mine)
    shards = min(shards, n)
    for old in out.glob(f"{split}-*-of-*.tfrecord"):
        old.unlink()
    arrays = {m: np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")) for m, a in data.inputs.items()}
    masks = {m: data.mask(m) for m in data.inputs}
    files = []
    for k in range(shards):
        name = shard_name(split, k, shards)
        with tf.io.TFRecordWriter(str(out / name)) as writer:
            for i in range(k * n // shards, (k + 1) * n // shards):
                writer.write(_example(arrays, masks, data.labels, i))
        files.append(name)
    spec["splits"][split] = {"count": n, "files": files}
    tmp = out / (SPEC + ".tmp")
    tmp.write_text(json.dumps(spec, indent=2) + "\n")
    os.replace(tmp, out / SPEC)  # a reader never sees a half-written spec
    return spec


def export_all(dataset: Dataset, out_dir: str | os.PathLike, shards: int = 1) -> dict[str, Any]:
    """Export every split of ``dataset``; returns the spec."""
    spec = {}
    for split in dataset.splits:
        spec = export(dataset, split, out_dir, shards)
    return spec


def _example(arrays: dict[str, np.ndarray], masks: dict[str, np.ndarray], labels: np.ndarray | None, i: int) -> bytes:
    import tensorflow as tf

    feature = {}
    for m, a in arrays.items():
        feature[f"x/{m}"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[a[i].tobytes()]))
        feature[f"mask/{m}"] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(masks[m][i])]))
    if labels is not None:
        feature["label"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(labels[i])]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _read_spec(path: Path) -> dict[str, Any]:
    file = path / SPEC
    if not file.is_file():
        raise DataError(
            f"tfrecord dataset: no {SPEC} in {path}; write one with `mmkeras data export NAME --out {path}`"
        )
    try:
        spec = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"tfrecord dataset: {file} is not valid JSON: {exc}") from None
    if spec.get("format") != FORMAT or spec.get("version") != VERSION:
        raise DataError(
            f"tfrecord dataset: {file} is not an mmkeras TFRecord spec of version {VERSION} "
            f"(format {spec.get('format')!r}, version {spec.get('version')!r})"
        )
    return spec


class TFRecordData(Dataset):
    """Splits exported to sharded TFRecords by `mmkeras data export`, read back from `path` (in memory, or streamed).

    :meth:`load` reads a whole split into memory; :meth:`tf_dataset` streams it for data larger
    than memory, sharded by file across workers.
    """

    def __init__(self, path: str):
        self.path = Path(path).expanduser()
        self.spec = _read_spec(self.path)
        if "train" not in self.spec["splits"]:
            raise DataError(f"tfrecord dataset {self.path}: no train split (splits: {sorted(self.spec['splits'])})")
        self.splits = tuple(sorted(self.spec["splits"], key=lambda s: (s != "train", s)))
        for m, s in self.spec.get("modalities", {}).items():
            shape = s.get("shape") if isinstance(s, dict) else None
            if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
                raise DataError(f"tfrecord dataset {self.path / SPEC}: modalities.{m}.shape: expected a list of ints")
            if not isinstance(s.get("dtype"), str):
                raise DataError(f"tfrecord dataset {self.path / SPEC}: modalities.{m}.dtype: expected a dtype name")
        for split in self.splits:
            for name in self.spec["splits"][split]["files"]:
                if not (self.path / name).is_file():
                    raise DataError(f"tfrecord dataset {self.path}: file {name} of split {split!r} is missing")

    def info(self) -> dict[str, ModalityInfo]:
        """The modalities of ``spec.json``: each row's shape and dtype as exported."""
        return {
            m: ModalityInfo(tuple(s["shape"]), s["dtype"], f"exported to {self.path}")
            for m, s in self.spec["modalities"].items()
        }

    def label_info(self) -> str | None:
        return None if self.spec["labels"] is None else f"{self.spec['labels']} class labels"

    def files(self, split: str) -> list[str]:
        self._check_split(split)
        return [str(self.path / name) for name in self.spec["splits"][split]["files"]]

    def _parse(self, serialized, batched: bool):
        """Serialized Example(s) -> ``({modality: x, "masks": {modality: m}}, label)``."""
        import tensorflow as tf

        modalities, labelled = self.spec["modalities"], self.spec["labels"] is not None
        features = {}
        for m in modalities:
            features[f"x/{m}"] = tf.io.FixedLenFeature([], tf.string)
            features[f"mask/{m}"] = tf.io.FixedLenFeature([], tf.float32)
        if labelled:
            features["label"] = tf.io.FixedLenFeature([], tf.int64)
        parsed = (tf.io.parse_example if batched else tf.io.parse_single_example)(serialized, features)
        lead = [-1] if batched else []
        x = {
            m: tf.reshape(
                tf.io.decode_raw(parsed[f"x/{m}"], tf.dtypes.as_dtype(s["dtype"]), little_endian=True),
                lead + s["shape"],
            )
            for m, s in modalities.items()
        }
        x[MASKS] = {m: parsed[f"mask/{m}"] for m in modalities}
        y = parsed["label"] if labelled else tf.zeros(tf.shape(parsed[f"mask/{next(iter(modalities))}"]), tf.int64)
        return x, y

    def load(self, split: str) -> DataSplit:
        import tensorflow as tf

        files = self.files(split)
        ds = tf.data.TFRecordDataset(files).batch(READ_BATCH).map(lambda r: self._parse(r, batched=True))
        chunks = []
        try:
            chunks = [tf.nest.map_structure(lambda t: t.numpy(), batch) for batch in ds]
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as exc:
            raise DataError(f"tfrecord dataset {self.path}, split {split!r}: corrupt records: {exc.message}") from None
        expected = self.spec["splits"][split]["count"]
        got = sum(len(y) for _, y in chunks)
        if got != expected:
            raise DataError(
                f"tfrecord dataset {self.path}, split {split!r}: {got} rows in the files, {SPEC} says {expected}"
            )
        modalities = list(self.spec["modalities"])
        inputs = {m: np.concatenate([x[m] for x, _ in chunks]) for m in modalities}
        masks = {m: np.concatenate([x[MASKS][m] for x, _ in chunks]) for m in modalities}
        labels = np.concatenate([y for _, y in chunks]) if self.spec["labels"] is not None else None
        return DataSplit(inputs, labels, masks)

    def tf_dataset(self, split: str, shuffle_files: bool = False, seed: int | None = None, deterministic: bool = True):
        """An unbatched ``tf.data.Dataset`` of ``({modality: x, "masks": {...}}, label)`` over ``split``.

        Under a multi-worker strategy each worker reads only its own files
        (``AutoShardPolicy.FILE``), so export at least as many shards as workers.
        """
        import tensorflow as tf

        files = tf.data.Dataset.from_tensor_slices(self.files(split))
        if shuffle_files:
            files = files.shuffle(len(self.files(split)), seed=seed, reshuffle_each_iteration=True)
        ds = files.interleave(
            tf.data.TFRecordDataset,
            cycle_length=tf.data.AUTOTUNE,
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=deterministic,
        )
        ds = ds.map(
            lambda r: self._parse(r, batched=False), num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic
        )
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.FILE
        options.deterministic = deterministic
        return ds.with_options(options)
