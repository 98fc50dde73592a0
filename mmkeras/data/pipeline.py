"""DataSplit -> batched ``tf.data.Dataset`` of ``({modality: x, "masks": {modality: m}}, label)``.

Shuffling is done on row indices and each batch is gathered in one op, which is much faster
than shuffling and batching row by row.
"""

from __future__ import annotations

import numpy as np

from mmkeras.data.base import DataSplit
from mmkeras.errors import DataError
from mmkeras.model import MASKS


def select(split: DataSplit, modalities: list[str], where: str = "dataset") -> tuple[dict, np.ndarray]:
    """The arrays of ``modalities`` (plus masks) and labels, checked against the data."""
    missing = [m for m in modalities if m not in split.inputs]
    if missing:
        raise DataError(
            f"{where} has no modality {missing[0]!r} (recipe key modalities.{missing[0]}); "
            f"it provides {sorted(split.inputs)}"
        )
    x = {m: split.inputs[m] for m in modalities}
    x[MASKS] = {m: split.mask(m) for m in modalities}
    y = split.labels if split.labels is not None else np.zeros(len(split), dtype="int64")
    return x, y


def split_validation(split: DataSplit, fraction: float, seed: int) -> tuple[DataSplit, DataSplit | None]:
    """Hold out a seeded random ``fraction`` of rows as validation data."""
    if fraction <= 0:
        return split, None
    order = np.random.default_rng(seed).permutation(len(split))
    cut = len(split) - max(1, int(round(fraction * len(split))))
    return split.subset(np.sort(order[:cut])), split.subset(np.sort(order[cut:]))


def make_dataset(
    split: DataSplit,
    modalities: list[str],
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    drop_remainder: bool = True,
    deterministic: bool = False,
    where: str = "dataset",
):
    """A batched, prefetched ``tf.data.Dataset`` over ``split`` (on Keras backends other than
    TensorFlow, an :class:`ArrayBatches` with the same batches)."""
    import keras

    x, y = select(split, modalities, where)
    n = len(y)
    if drop_remainder and n < batch_size:
        raise DataError(f"{where} has {n} rows, fewer than data.batch_size={batch_size}; lower data.batch_size")
    from mmkeras.distribute import jax_process_count

    # several JAX processes: keras.distribution shards a tf.data.Dataset per process, and nothing else
    if keras.backend.backend() != "tensorflow" and jax_process_count() == 1:
        return ArrayBatches(x, y, batch_size, shuffle, seed, drop_remainder)
    import tensorflow as tf

    tensors = tf.nest.map_structure(tf.convert_to_tensor, (x, y))
    ds = tf.data.Dataset.range(n)
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(
        lambda idx: tf.nest.map_structure(lambda t: tf.gather(t, idx), tensors),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic or None,
    )
    options = tf.data.Options()
    options.deterministic = bool(deterministic)
    # workers see the same shuffled order and each takes its share of every global batch
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def _array_batches_base():
    import keras

    return keras.utils.PyDataset


class ArrayBatches(_array_batches_base()):
    """Batches of in-memory arrays for Keras backends without tf.data (JAX, PyTorch): the rows
    of each epoch in a seeded random order (``shuffle``), the last partial batch dropped when
    ``drop_remainder``. ``x`` is the ``{modality: array, "masks": {...}}`` dict of :func:`select`."""

    def __init__(self, x, y, batch_size: int, shuffle: bool, seed: int, drop_remainder: bool):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, int(batch_size)
        self.shuffle, self.drop_remainder = shuffle, drop_remainder
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(y)) if shuffle else np.arange(len(y))

    def __len__(self) -> int:
        n = len(self.y)
        return n // self.batch_size if self.drop_remainder else -(-n // self.batch_size)

    def __getitem__(self, index: int):
        rows = np.sort(self.order[index * self.batch_size : (index + 1) * self.batch_size])

        def take(node):
            return {k: take(v) for k, v in node.items()} if isinstance(node, dict) else node[rows]

        return take(self.x), self.y[rows]

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self.order = self.rng.permutation(len(self.y))
