"""tf.distribute glue: the strategy a recipe asks for, and the cross-replica reductions every
contrastive objective uses so that N replicas of batch b train exactly like one device with
batch N*b.

Keras 3.15 on TF 2.21 does not scale an overridden ``compute_loss`` by 1/replicas (measured:
2 replicas gave exactly twice the gradient) and sums gradients across replicas. So an objective
returns its *local contribution*: the sum of its local per-row losses divided by the *global*
row count. Summed over replicas that is the global mean, whatever the replica count.
"""

from __future__ import annotations

import os

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

    # a constant (an all-present mask of ones) may carry no device, which MultiWorkerMirroredStrategy's
    # all-gather refuses ("destinations can not be empty"); its identity is placed on this replica's device
    gathered = ctx.all_gather(tf.identity(x), axis=0)
    if x.shape[0] is not None:  # keep the static batch size: [N * b, ...]
        gathered = tf.ensure_shape(gathered, [ctx.num_replicas_in_sync * x.shape[0]] + list(x.shape[1:]))
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


def patch_keras_multi_worker_logs() -> None:
    """Keras 3.15 reduces per-replica logs under MultiWorkerMirroredStrategy with
    ``strategy.reduce("MEAN", v, axis=0)``, which fails for the scalar loss and metrics every
    train step returns. Reduce scalars with ``axis=None`` instead (idempotent)."""
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica
    if getattr(original, "_mmkeras_patched", False):
        return
    import tensorflow as tf

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(strategy):

            def mean(v):
                if not isinstance(v, tf.distribute.DistributedValues) and not tf_trainer._is_per_replica_instance(v):
                    return v
                rank = len(strategy.experimental_local_results(v)[0].shape)
                return strategy.reduce("MEAN", v, axis=0 if rank else None)

            return tf.nest.map_structure(mean, values)
        return original(values, strategy, reduction)

    reduce_per_replica._mmkeras_patched = True  # type: ignore[attr-defined]
    tf_trainer.reduce_per_replica = reduce_per_replica


def worker_index() -> int:
    """This process's index in a multi-worker cluster (TF_CONFIG); 0 (the chief) otherwise."""
    import json

    try:
        task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    except json.JSONDecodeError:
        raise MMKerasError("TF_CONFIG is not valid JSON") from None
    return 0 if task.get("type", "worker") == "chief" else int(task.get("index", 0))


def cluster_config(workers: list[str], index: int) -> str:
    """TF_CONFIG for worker ``index`` of ``workers`` (host:port strings)."""
    import json

    if not 0 <= index < len(workers):
        raise MMKerasError(f"--worker-index {index} is not in 0..{len(workers) - 1} for {len(workers)} workers")
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


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
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise MMKerasError(
                "distribute.strategy: multi_worker needs the cluster in TF_CONFIG, or "
                "`mmkeras train ... --workers host:port,host:port --worker-index I`"
            )
        patch_keras_multi_worker_logs()
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.NotFoundError) as exc:
            raise MMKerasError(f"distribute.strategy: tpu, but no TPU was found: {exc}") from None
        return tf.distribute.TPUStrategy(resolver)
    raise MMKerasError(f"distribute.strategy: unknown strategy {name!r}")
