"""Distribution glue: the strategy a recipe asks for, and the cross-replica reductions every
contrastive objective uses so that N replicas of batch b train exactly like one device with
batch N*b.

TensorFlow (``tf.distribute``): Keras 3.15 on TF 2.21 does not scale an overridden ``compute_loss``
by 1/replicas (measured: 2 replicas gave exactly twice the gradient) and sums gradients across
replicas. So an objective returns its *local contribution*: the sum of its local per-row losses
divided by the *global* row count. Summed over replicas that is the global mean, whatever the
replica count.

JAX (``keras.distribution``, ``data_parallel``): the train step is one program over the global
batch, split along axis 0 over the device mesh by the compiler (GSPMD). An objective sees the whole
batch, so :func:`num_replicas` is 1 there, the gather is the identity and a local contribution is
already the global mean (tested against one device in tests/test_jax_distribute.py).

This module imports Keras only inside its functions: ``mmkeras validate`` checks the strategy
against the backend without importing Keras.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmkeras.errors import MMKerasError

#: the strategies each backend runs; ``auto`` and ``one_device`` run everywhere
STRATEGIES = {
    "tensorflow": ("auto", "one_device", "mirrored", "multi_worker", "tpu"),
    "jax": ("auto", "one_device", "data_parallel"),
}


def _replica_context():
    import keras

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
    from keras import ops

    ctx = _replica_context()
    x = ops.stop_gradient(x)
    if ctx is None:
        return x
    return ctx.all_reduce("sum", x)


def local_contribution(per_row, weights=None):
    """sum(per_row * weights) / global sum(weights): this replica's share of the global
    weighted mean (see the module docstring). Returns 0 when no row has weight."""
    from keras import ops

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


def keras_backend_name() -> str:
    """The Keras backend of this process, read without importing Keras when it is not loaded yet:
    ``KERAS_BACKEND``, else ``backend`` in ``$KERAS_HOME/keras.json`` (``~/.keras``), else tensorflow."""
    if "keras" in sys.modules:
        import keras

        return keras.backend.backend()
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = Path(os.environ.get("KERAS_HOME") or Path("~/.keras").expanduser())
    try:
        return str(json.loads((home / "keras.json").read_text()).get("backend") or "tensorflow")
    except (OSError, ValueError, AttributeError):  # no file, or not a JSON object: Keras's default
        return "tensorflow"


def strategy_problem(name: str, backend: str | None = None) -> str | None:
    """Why ``distribute.strategy: NAME`` cannot run on ``backend`` (default: this process's), or None."""
    backend = backend or keras_backend_name()
    runs_here = STRATEGIES.get(backend, ("auto", "one_device"))
    if name in runs_here:
        return None
    needs = [b for b, names in STRATEGIES.items() if name in names]
    if not needs:
        return f"distribute.strategy: unknown strategy {name!r}"
    return (
        f"distribute.strategy: {name} needs the {needs[0]} backend (KERAS_BACKEND={needs[0]}), but this process "
        f"uses the {backend} backend, where distribute.strategy is one of: {', '.join(runs_here)}"
    )


def check_strategy(name: str) -> None:
    """Raise :class:`MMKerasError` when ``distribute.strategy: NAME`` cannot run on this backend."""
    problem = strategy_problem(name)
    if problem:
        raise MMKerasError(problem)


def _jax_processes() -> bool:
    """Whether this process joined several JAX processes (without starting JAX's backends)."""
    if "jax" not in sys.modules:
        return False
    import jax

    return jax.distributed.is_initialized()


def jax_process_count() -> int:
    """The JAX processes training together: 1 unless :func:`initialize_processes` joined several."""
    if not _jax_processes():
        return 1
    import jax

    return jax.process_count()


@contextlib.contextmanager
def chief_alone() -> Iterator[None]:
    """Work the chief does alone (checkpoints, the saved model, evaluation) with no
    ``keras.distribution`` set while several JAX processes train: making or assigning a variable
    under a distribution that spans processes is a collective the others never join (and Keras's
    saving makes a throwaway optimizer). Does nothing in a single process."""
    if jax_process_count() == 1:
        yield
        return
    import keras

    current = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(current)


def worker_index() -> int:
    """This process's index among the processes training together: JAX's process index after
    :func:`initialize_processes`, else the TF_CONFIG task's; 0 (the chief) otherwise. Only the chief
    writes the run directory."""
    if _jax_processes():
        import jax

        return jax.process_index()
    try:
        task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    except json.JSONDecodeError:
        raise MMKerasError("TF_CONFIG is not valid JSON") from None
    return 0 if task.get("type", "worker") == "chief" else int(task.get("index", 0))


def _check_worker_index(workers: list[str], index: int) -> None:
    if not 0 <= index < len(workers):
        raise MMKerasError(f"--worker-index {index} is not in 0..{len(workers) - 1} for {len(workers)} workers")


def cluster_config(workers: list[str], index: int) -> str:
    """TF_CONFIG for worker ``index`` of ``workers`` (host:port strings)."""
    _check_worker_index(workers, index)
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


def initialize_processes(workers: list[str], index: int) -> None:
    """Join the JAX processes ``workers`` (host:port strings) as process ``index``, with
    ``keras.distribution.initialize``. JAX needs only the first address: process 0 serves the
    coordinator there. Must run before any JAX computation; a second identical call does nothing."""
    _check_worker_index(workers, index)
    where = f"--workers {','.join(workers)} --worker-index {index}"
    if _jax_processes():
        import jax

        if (jax.process_count(), jax.process_index()) != (len(workers), index):
            raise MMKerasError(
                f"{where}: this process already joined {jax.process_count()} JAX processes as process "
                f"{jax.process_index()}"
            )
        return
    import keras

    try:
        keras.distribution.initialize(job_addresses=",".join(workers), num_processes=len(workers), process_id=index)
    except (RuntimeError, ValueError) as exc:  # JAX already computing, a bad address, the coordinator gone
        raise MMKerasError(f"{where}: cannot join the JAX processes: {str(exc).splitlines()[0]}") from None


def is_data_parallel(strategy: Any) -> bool:
    """Whether ``strategy`` is a ``keras.distribution`` distribution (``data_parallel`` on JAX, or
    one the user set before ``auto`` kept it)."""
    if "keras" not in sys.modules:
        return False
    import keras

    return isinstance(strategy, (keras.distribution.DataParallel, keras.distribution.ModelParallel))


def data_parallel_devices(strategy: Any) -> int:
    """The devices a global batch is split over under ``strategy``: the mesh's batch axis (1 when
    it is not a ``keras.distribution`` distribution)."""
    if not is_data_parallel(strategy):
        return 1
    mesh = strategy.device_mesh
    return int(mesh.shape[list(mesh.axis_names).index(strategy.batch_dim_name)])


def check_global_batch(strategy: Any, batch_size: int, key: str = "data.batch_size") -> None:
    """Under ``data_parallel`` a global batch splits evenly over the devices of every process:
    otherwise an error naming ``key`` now, rather than JAX's failure at the first step."""
    devices = data_parallel_devices(strategy)
    if devices == 1:
        return
    import jax

    processes = jax.process_count()
    if batch_size % devices or batch_size % processes:
        multiple = math.lcm(devices, processes)
        raise MMKerasError(
            f"{key}: {batch_size} rows do not split evenly over data_parallel's {devices} devices"
            + (f" in {processes} processes" if processes > 1 else "")
            + f"; use a multiple of {multiple} (the global batch is split along its first axis)"
        )


def make_strategy(name: str) -> Any:
    """The strategy named in ``distribute.strategy`` (None for the default). TensorFlow: a
    ``tf.distribute`` strategy. JAX: ``data_parallel`` sets (and returns) a
    ``keras.distribution.DataParallel`` over every device of every process, so build the model
    after this call; ``auto`` keeps a distribution already set and otherwise picks ``data_parallel``
    when there are several JAX processes or several accelerators (host CPUs stay one device, as
    TensorFlow's ``auto`` leaves logical CPUs alone); ``one_device`` clears any distribution."""
    check_strategy(name)
    import keras

    if keras.backend.backend() == "jax":
        return _jax_distribution(name)
    if keras.backend.backend() != "tensorflow":
        return None
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


def _jax_distribution(name: str) -> Any:
    import jax
    import keras

    current = keras.distribution.distribution()
    if name == "auto":
        if current is not None:
            return current
        several = jax.process_count() > 1 or (jax.default_backend() != "cpu" and jax.device_count() > 1)
        name = "data_parallel" if several else "one_device"
    if name == "one_device":
        if jax.process_count() > 1:
            raise MMKerasError(
                f"distribute.strategy: one_device, but this process is one of {jax.process_count()} JAX "
                "processes (--workers); use data_parallel to train them together"
            )
        keras.distribution.set_distribution(None)
        return None
    distribution = keras.distribution.DataParallel()  # every device of every process, variables replicated
    keras.distribution.set_distribution(distribution)
    return distribution
