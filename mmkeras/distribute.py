"""tf.distribute glue: the strategy a recipe asks for, and the cross-replica reductions every
contrastive objective uses so that N replicas of batch b train exactly like one device with
batch N*b.

Keras 3.15 on TF 2.21 does not scale an overridden ``compute_loss`` by 1/replicas (measured:
2 replicas gave exactly twice the gradient) and sums gradients across replicas. So an objective
returns its *local contribution*: the sum of its local per-row losses divided by the *global*
row count. Summed over replicas that is the global mean, whatever the replica count.
"""

from __future__ import annotations

import keras
from keras import ops

from mmkeras.errors import MMKerasError


def _replica_context():
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return None
    return ctx


def num_replicas() -> int:
    ctx = _replica_context()
    return 1 if ctx is None else int(ctx.num_replicas_in_sync)


def cross_replica_gather(x):
    """All replicas' ``x`` concatenated on axis 0, with a gradient that flows back to each
    replica's own slice, and the offset of this replica's rows in the result.

    On one device it returns ``(x, 0)``.
    """
    ctx = _replica_context()
    if ctx is None:
        return x, 0
    import tensorflow as tf

    gathered = ctx.all_gather(x, axis=0)
    offset = ctx.replica_id_in_sync_group * tf.shape(x)[0]
    return gathered, offset


def global_sum(x):
    """The sum of ``x`` over replicas (no gradient: used for counts)."""
    ctx = _replica_context()
    x = ops.stop_gradient(x)
    if ctx is None:
        return x
    return ctx.all_reduce("sum", x)


def local_contribution(per_row, weights=None):
    """sum(per_row * weights) / global sum(weights): this replica's share of the global
    weighted mean (see the module docstring). Returns 0 when no row has weight."""
    per_row = ops.cast(per_row, "float32")
    w = ops.ones_like(per_row) if weights is None else ops.cast(weights, "float32")
    return ops.sum(per_row * w) / ops.maximum(global_sum(ops.sum(w)), 1.0)


def make_strategy(name: str):
    """The tf.distribute strategy named in ``distribute.strategy`` (None for the default)."""
    if keras.backend.backend() != "tensorflow":
        if name in ("auto", "one_device"):
            return None
        raise MMKerasError(f"distribute.strategy: {name!r} needs the TensorFlow backend")
    import tensorflow as tf

    if name == "auto":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else None
    if name == "one_device":
        return None
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    raise MMKerasError(
        f"distribute.strategy: {name!r} is not supported yet (supported: auto, one_device, mirrored)"
    )
