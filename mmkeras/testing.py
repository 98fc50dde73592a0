"""The conformance kit: check a component the way the core relies on it, one call per kind.

    from mmkeras.testing import check_encoder

    def test_my_encoder():
        check_encoder(MyEncoder, {"output_dim": 8, "units": 16}, input_shape=(12,))

Each ``check_*`` builds the component from ``params`` (recipe parameters; ``output_dim`` and
``seed`` are filled in when the class declares them and ``params`` leaves them out, as the
builder does) and raises :class:`AssertionError` naming the check that failed and why:

- **parameters**: every ``__init__`` parameter has a type hint and ``params`` validate against them
  (recipes are validated that way); Keras components are ``register_keras_serializable``.
- **forward**: output shape and dtype (the compute dtype; objectives float32), finite values.
- **config round trip**: ``get_config()`` names every constructor argument, is JSON, and
  ``from_config(get_config())`` with the same weights gives the same outputs.
- **keras.ops only**: the call runs inside ``tf.function(jit_compile=True)`` (how Keras trains
  with XLA) and gives the eager result; numpy or ``.numpy()`` in ``call`` fails here.
- **gradients**: every trainable weight gets a gradient that is not None and not all zero.
- **mixed precision**: under ``mixed_float16`` outputs are float16 and finite; objectives float32.
- **masks**: fusions ignore a masked modality's features (change them: the output does not move) and
  survive a row with no modality; objectives drop masked rows (change a missing modality's inputs
  in those rows: the loss and metrics do not move).
- **2 replicas** (objectives): under ``tf.distribute.MirroredStrategy`` on two devices, each with
  half the batch, the replicas' loss and metrics summed and their gradients summed equal one device's
  on the whole batch (float32 tolerance), as :mod:`mmkeras.distribute` requires: negatives and batch
  statistics come from the global batch (``cross_replica_gather``) and each replica returns its local
  contribution (``local_contribution``). Two devices: GPUs if there are two, else the CPU split in two
  by :func:`use_logical_devices`, which must run before TensorFlow does (at the top of the test
  module or ``conftest.py``). ``replicas=None`` (the default) runs this check when two devices are
  there and warns that it was skipped otherwise; ``True`` requires it; ``False`` leaves it out.
- **save and reload**: inside a :class:`~mmkeras.model.MultimodalModel` saved to ``.keras`` and
  loaded with :func:`mmkeras.load_model`, outputs are identical.

The XLA and gradient checks need the TensorFlow backend (mmkeras's default) and are skipped on others.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import typing
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import ops

from mmkeras.data.base import DataSplit
from mmkeras.fusions.base import Fusion
from mmkeras.recipe import params_model
from mmkeras.registry import parameters

BATCH = 6
_OPS_HINT = (
    ": call() fails inside tf.function(jit_compile=True), which is how Keras trains; compute with keras.ops "
    "only (numpy, .numpy() and Python branches on tensor values fail there)"
)


@keras.saving.register_keras_serializable(package="mmkeras.testing")
class MaskedSumFusion(Fusion):
    """sum_m mask_m h_m, the mask broadcast over every feature axis: the neutral fusion of the kit's models."""

    def call(self, features, masks):
        total = 0.0
        for n in sorted(features):
            h = features[n]
            total = total + h * ops.reshape(ops.cast(masks[n], h.dtype), [-1] + [1] * (len(h.shape) - 1))
        return total


class _Checker:
    """Turns any failure inside ``check(name)`` into an AssertionError naming the component and the check."""

    def __init__(self, kind: str, cls: type):
        self.what = f"{kind} {getattr(cls, '__name__', cls)}"

    @contextlib.contextmanager
    def check(self, name: str, hint: str = "") -> Iterator[None]:
        try:
            yield
        except AssertionError as exc:
            raise AssertionError(f"{self.what}: {name}{hint}: {exc}") from None
        except Exception as exc:
            raise AssertionError(f"{self.what}: {name}{hint}: {type(exc).__name__}: {exc}") from exc


# -- helpers -----------------------------------------------------------------------------------
def _on_tf() -> bool:
    return keras.backend.backend() == "tensorflow"


def _random(shape: Sequence[int], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=tuple(shape)).astype("float32")


def _np(x: Any) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(ops.cast(x, "float32")))


def _dtype(x: Any) -> str:
    return keras.backend.standardize_dtype(x.dtype)


@contextlib.contextmanager
def _policy(name: str) -> Iterator[None]:
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _assert_close(a: Any, b: Any, what: str, atol: float = 1e-5) -> None:
    flat_a, flat_b = keras.tree.flatten(a), keras.tree.flatten(b)
    assert len(flat_a) == len(flat_b), f"{what}: {len(flat_a)} tensors against {len(flat_b)}"
    for x, y in zip(flat_a, flat_b, strict=True):
        x, y = _np(x), _np(y)
        assert x.shape == y.shape, f"{what}: shapes {x.shape} and {y.shape}"
        if not np.allclose(x, y, rtol=1e-5, atol=atol):
            raise AssertionError(f"{what} differ by up to {np.max(np.abs(x - y)):.3g}")


def _assert_finite(x: Any, what: str) -> None:
    for t in keras.tree.flatten(x):
        assert np.all(np.isfinite(_np(t))), f"{what} has inf or nan values"


def _fill(cls: type, params: dict[str, Any] | None, defaults: dict[str, Any]) -> dict[str, Any]:
    """``params`` plus the values the builder injects (those ``cls`` declares and ``params`` omit)."""
    out = dict(params or {})
    declared = parameters(cls)
    for key, value in defaults.items():
        if key in declared and key not in out:
            out[key] = value
    return out


def _check_parameters(ck: _Checker, cls: type, params: dict[str, Any], serializable: bool = True) -> None:
    with ck.check("parameters"):
        declared = parameters(cls)
        hints = typing.get_type_hints(cls.__init__) if declared else {}
        untyped = [n for n in declared if n not in hints]
        assert not untyped, f"__init__ parameters {untyped} have no type hint; recipes are validated against the hints"
        unknown = [k for k in params if k not in declared]
        assert not unknown, f"params {unknown} are not __init__ parameters (it declares {sorted(declared)})"
        params_model(cls)(**params)
    if serializable:
        with ck.check("registered serializable"):
            registered = keras.saving.get_registered_name(cls)
            assert keras.saving.get_registered_object(registered) is cls, (
                "decorate the class with @keras.saving.register_keras_serializable(package=<your package>): "
                "a saved model finds its classes by that name"
            )


def _clone(ck: _Checker, cls: type, layer: Any) -> Any:
    """``cls.from_config(layer.get_config())``, after checking the config names every parameter and is JSON."""
    with ck.check("config round trip"):
        config = layer.get_config()
        missing = [n for n in parameters(cls) if n not in config]
        assert not missing, (
            f"get_config() lacks {missing}: return every constructor argument, "
            "or from_config(get_config()) builds a different component"
        )
        json.dumps(keras.saving.serialize_keras_object(layer))
        return cls.from_config(config)


def _same_after_round_trip(ck: _Checker, cls: type, layer: Any, run: Callable[[Any], Any], expected: Any) -> None:
    clone = _clone(ck, cls, layer)
    with ck.check("config round trip"):
        run(clone)  # builds it
        clone.set_weights(layer.get_weights())
        _assert_close(run(clone), expected, "outputs of from_config(get_config()) (same weights) and the original's")


def _xla(ck: _Checker, fn: Callable[..., Any], args: tuple, expected: Any | None) -> None:
    if not _on_tf():
        return
    import tensorflow as tf

    with ck.check("keras.ops only", _OPS_HINT):
        out = tf.function(fn, jit_compile=True)(*args)
    if expected is not None:
        with ck.check("keras.ops only"):
            _assert_close(out, expected, "outputs under tf.function(jit_compile=True) and eager", atol=1e-4)


def _probe_loss(y: Any, seed: int = 7) -> Any:
    """A scalar that depends on every output value, with fixed random weights."""
    total = 0.0
    for i, t in enumerate(keras.tree.flatten(y)):
        t = ops.cast(t, "float32")
        total = total + ops.sum(t * _random(t.shape, seed + i))
    return total


def _gradients(ck: _Checker, variables: list[Any], loss_fn: Callable[[], Any], what: str = "trainable weight") -> None:
    if not _on_tf() or not variables:
        return
    import tensorflow as tf

    with ck.check("gradients flow"):
        with tf.GradientTape() as tape:
            loss = loss_fn()
        grads = tape.gradient(loss, variables)
        none = [v.path for v, g in zip(variables, grads, strict=True) if g is None]
        assert not none, (
            f"no gradient reaches {what}s {none}: the output does not depend on them, or they are used "
            "through numpy or a non-differentiable op"
        )
        zero = [v.path for v, g in zip(variables, grads, strict=True) if not np.any(_np(g))]
        assert not zero, f"the gradient of {what}s {zero} is exactly zero"


def _expect(y: Any, batch: int, output_dim: int | None, dtype: str, what: str = "output") -> None:
    assert hasattr(y, "shape") and hasattr(y, "dtype"), f"{what} is {type(y).__name__}, expected one tensor"
    shape = tuple(y.shape)
    assert len(shape) >= 2 and shape[0] == batch, f"{what} shape {shape}, expected [batch={batch}, ...]"
    if output_dim is not None:
        assert shape[-1] == output_dim, f"{what} shape {shape}, expected the last axis to be output_dim={output_dim}"
    assert _dtype(y) == dtype, f"{what} dtype {_dtype(y)}, expected the compute dtype {dtype}"
    _assert_finite(y, what)


def _model(encoders: dict[str, Any], fusion: Any, input_shapes: dict[str, Sequence[int]], **kwargs: Any) -> Any:
    from mmkeras.model import MultimodalModel

    model = MultimodalModel(
        encoders, fusion, input_shapes={m: list(s) for m, s in input_shapes.items()}, name="conformance", **kwargs
    )
    model.build()
    return model


def _dense_encoders(input_shapes: dict[str, Sequence[int]], dim: int | None = None) -> dict[str, Any]:
    """A Dense encoder per modality (the last axis mapped to ``dim``, default unchanged)."""
    return {m: keras.layers.Dense(dim or int(s[-1]), name=f"{m}_encoder") for m, s in input_shapes.items()}


def _record(model: Any, x: dict[str, Any]) -> dict[str, Any]:
    out = model(x, training=False)
    return {k: out[k] for k in ("features", "latents", "joint_feature", "joint")}


def _save_reload(ck: _Checker, model: Any, outputs: Callable[[Any], Any]) -> Any:
    """Save ``model`` to .keras, load it with mmkeras.load_model and compare ``outputs(model)``."""
    import mmkeras

    with ck.check("save and reload in a .keras model"):
        expected = outputs(model)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.keras")
            model.save(path)
            reloaded = mmkeras.load_model(path, compile=False)
        _assert_close(outputs(reloaded), expected, "outputs of the reloaded model and the original's", atol=1e-6)
    return reloaded


def _masks(names: Sequence[str], batch: int, missing: str | None = None) -> dict[str, np.ndarray]:
    """All present, except ``missing`` in the odd rows."""
    out = {m: np.ones(batch, "float32") for m in names}
    if missing is not None:
        out[missing][1::2] = 0.0
    return out


def _perturbed(x: np.ndarray, mask: np.ndarray, seed: int) -> np.ndarray:
    """``x`` with large different values in the rows where ``mask`` is 0."""
    out = x.copy()
    rows = mask == 0
    out[rows] = 100.0 * _random(x[rows].shape, seed) + 50.0
    return out


# -- encoders ----------------------------------------------------------------------------------
def check_encoder(
    cls: type, params: dict[str, Any] | None = None, input_shape: Sequence[int] = (16,), batch_size: int = BATCH
) -> None:
    """Check an encoder: ``[B, *input_shape]`` -> ``[B, ..., output_dim]`` (see the module docstring)."""
    ck = _Checker("encoder", cls)
    params = _fill(cls, params, {"output_dim": 8})
    _check_parameters(ck, cls, params)
    output_dim = params.get("output_dim")
    x = _random((batch_size, *input_shape), 0)
    with ck.check("forward"):
        layer = cls(**params)
        y = layer(x, training=False)
        _expect(y, batch_size, output_dim, layer.compute_dtype)
    _same_after_round_trip(ck, cls, layer, lambda e: e(x, training=False), y)
    _xla(ck, lambda t: layer(t, training=False), (x,), y)
    _gradients(ck, layer.trainable_variables, lambda: _probe_loss(layer(x, training=True)))
    with ck.check("mixed precision"), _policy("mixed_float16"):
        half = cls(**params)
        _expect(half(x, training=False), batch_size, output_dim, "float16")
    with ck.check("masks"):
        model = _model({"a": cls(**params, name="a_encoder")}, MaskedSumFusion(name="fusion"), {"a": input_shape})
        inputs = {"a": x, "masks": _masks(["a"], batch_size, "a")}
        features = model(inputs, training=False)["features"]["a"]
        _expect(features, batch_size, output_dim, "float32", "features in a model")
    _save_reload(ck, model, lambda m: _record(m, inputs))


# -- fusions -----------------------------------------------------------------------------------
def check_fusion(
    cls: type,
    params: dict[str, Any] | None = None,
    feature_shapes: dict[str, Sequence[int]] | None = None,
    batch_size: int = BATCH,
) -> None:
    """Check a fusion: ``({modality: [B, *shape]}, {modality: [B]})`` -> ``[B, output_dim]``; a masked
    modality's features must not change the output (see the module docstring)."""
    ck = _Checker("fusion", cls)
    params = _fill(cls, params, {"output_dim": 8})
    _check_parameters(ck, cls, params)
    shapes = dict(feature_shapes or {"a": (8,), "b": (6,)})
    names = sorted(shapes)
    output_dim = params.get("output_dim")
    features = {m: _random((batch_size, *shapes[m]), i) for i, m in enumerate(names)}
    present = _masks(names, batch_size)
    with ck.check("forward"):
        layer = cls(**params)
        y = layer(features, present)
        _expect(y, batch_size, output_dim, layer.compute_dtype)
    _same_after_round_trip(ck, cls, layer, lambda f: f(features, present), y)
    _xla(ck, lambda f, m: layer(f, m), (features, present), y)
    _gradients(ck, layer.trainable_variables, lambda: _probe_loss(layer(features, present)))
    for i, m in enumerate(names):
        masks = _masks(names, batch_size, m)
        with ck.check("masks"):
            before = layer(features, masks)
            _expect(before, batch_size, output_dim, layer.compute_dtype, f"output with {m!r} masked")
            after = layer({**features, m: _perturbed(features[m], masks[m], 10 + i)}, masks)
            try:
                _assert_close(after, before, f"outputs before and after changing {m!r} features where it is masked")
            except AssertionError as exc:
                raise AssertionError(f"the fusion does not ignore a masked modality: {exc}") from None
    with ck.check("masks"):
        none = {m: np.where(np.arange(batch_size) == 0, 0.0, 1.0).astype("float32") for m in names}
        _assert_finite(layer(features, none), "the output for a row with no modality present")
    with ck.check("mixed precision"), _policy("mixed_float16"):
        half = cls(**params)
        out = half({m: ops.cast(f, "float16") for m, f in features.items()}, present)
        _expect(out, batch_size, output_dim, "float16")
    with ck.check("save and reload in a .keras model"):
        model = _model(_dense_encoders(shapes), cls(**params, name="fusion"), shapes)
    inputs = {**features, "masks": _masks(names, batch_size, names[-1])}
    _save_reload(ck, model, lambda mdl: _record(mdl, inputs))


# -- heads -------------------------------------------------------------------------------------
def check_head(cls: type, params: dict[str, Any] | None = None, feature_dim: int = 8, batch_size: int = BATCH) -> None:
    """Check a projection head: ``[B, feature_dim]`` -> ``[B, output_dim]`` (see the module docstring)."""
    ck = _Checker("head", cls)
    params = _fill(cls, params, {"output_dim": 8})
    _check_parameters(ck, cls, params)
    output_dim = params.get("output_dim")
    h = _random((batch_size, feature_dim), 0)
    with ck.check("forward"):
        layer = cls(**params)
        y = layer(h)
        _expect(y, batch_size, output_dim, layer.compute_dtype)
    _same_after_round_trip(ck, cls, layer, lambda head: head(h), y)
    _xla(ck, lambda t: layer(t), (h,), y)
    _gradients(ck, layer.trainable_variables, lambda: _probe_loss(layer(h, training=True)))
    with ck.check("mixed precision"), _policy("mixed_float16"):
        half = cls(**params)
        _expect(half(ops.cast(h, "float16")), batch_size, output_dim, "float16")
    shapes = {"a": (5,), "b": (7,)}
    with ck.check("masks"):
        head = cls(**params, name="head")
        model = _model(_dense_encoders(shapes, feature_dim), MaskedSumFusion(name="fusion"), shapes, head=head)
        inputs = {m: _random((batch_size, *s), i) for i, (m, s) in enumerate(shapes.items())}
        inputs["masks"] = _masks(sorted(shapes), batch_size, "b")
        record = _record(model, inputs)
        for m in shapes:
            _expect(record["latents"][m], batch_size, output_dim, "float32", f"latents of {m!r} in a model")
    _save_reload(ck, model, lambda mdl: _record(mdl, inputs))


# -- objectives --------------------------------------------------------------------------------
def use_logical_devices(count: int = 2) -> bool:
    """Split the CPU into ``count`` logical devices for the 2-replica check of :func:`check_objective`.

    TensorFlow fixes its devices when it first runs anything, so call this before (at the top of a
    test module or ``conftest.py``). Returns whether ``count`` devices of one type are available."""
    if not _on_tf():
        return False
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]  # listing physical devices starts nothing
    with contextlib.suppress(RuntimeError):  # TensorFlow already started: keep the devices it has
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    return _replica_devices(count) is not None


_STRATEGIES: dict[tuple[str, ...], Any] = {}


def _mirrored(devices: tuple[str, ...]) -> Any:
    """One MirroredStrategy per device set and process: a second one reuses the first's collective
    instance keys, and TensorFlow then aborts a later check ("Collective instance 100 expected type ...")."""
    import tensorflow as tf

    if devices not in _STRATEGIES:
        _STRATEGIES[devices] = tf.distribute.MirroredStrategy(list(devices))
    return _STRATEGIES[devices]


def _replica_devices(count: int = 2) -> list[str] | None:
    import tensorflow as tf

    for kind in ("GPU", "CPU"):
        found = tf.config.list_logical_devices(kind)
        if len(found) >= count:
            return [d.name for d in found[:count]]
    return None


def _sum_replicas(strategy: Any, values: tuple[dict[str, Any], list[Any]]) -> tuple[dict[str, Any], list[Any]]:
    """Per-replica ``(results, gradients)`` summed over replicas (a None gradient stays None)."""
    parts = strategy.experimental_local_results(values)
    results = {k: sum(_np(out[k]) for out, _ in parts) for k in parts[0][0]}
    grads = [None if gs[0] is None else sum(_np(g) for g in gs) for gs in zip(*(g for _, g in parts), strict=True)]
    return results, grads


def _check_replicas(
    ck: _Checker, build: Callable[[], Any], inputs: dict[str, Any], labels: np.ndarray, required: bool
) -> None:
    """Two replicas with half the batch each against one device with the whole batch (module docstring)."""
    if not _on_tf():
        return
    import tensorflow as tf

    with ck.check("2 replicas"):
        devices = _replica_devices(2)
        advice = (
            "call mmkeras.plugin.use_logical_devices(2) before TensorFlow runs anything "
            "(at the top of the test module or conftest.py)"
        )
        if devices is None and not required:
            warnings.warn(
                f"{ck.what}: the 2-replica check did not run, TensorFlow has one device: {advice}", stacklevel=3
            )
            return
        assert devices is not None, f"needs two devices, and TensorFlow started with one: {advice}"
        strategy = _mirrored(tuple(devices))
        with strategy.scope():
            model = build()
        variables = model.trainable_variables
        half = len(labels) // 2

        def step(x: Any, y: Any) -> tuple[dict[str, Any], list[Any]]:
            with tf.GradientTape() as tape:
                out = dict(model.objective(model(x, training=False), y))
            return out, tape.gradient(out["loss"], variables)

        one_out, one_grads = tf.function(step)(inputs, labels)
        one_out, one_grads = keras.tree.map_structure(_np, one_out), [None if g is None else _np(g) for g in one_grads]

        batch = tf.data.Dataset.from_tensor_slices((inputs, labels)).batch(2 * half)  # split as Keras's fit does
        shards = next(iter(strategy.experimental_distribute_dataset(batch)))
        two_out, two_grads = _sum_replicas(strategy, tf.function(lambda s: strategy.run(step, args=s))(shards))
    hint = (
        ": compute batch statistics and negatives over the global batch (cross_replica_gather) and return each "
        "replica's local contribution (local_contribution, or a global statistic / num_replicas())"
    )
    with ck.check("2 replicas", hint):
        for key in sorted(one_out):
            a, b = float(two_out[key]), float(one_out[key])
            assert np.isclose(a, b, rtol=1e-4, atol=1e-5), (
                f"{key!r} summed over 2 replicas of {half} rows is {a:.6g}; one device with all {2 * half} rows "
                f"gives {b:.6g}"
            )
        for v, a, b in zip(variables, two_grads, one_grads, strict=True):
            assert (a is None) == (b is None), f"the gradient of {v.path} is None on one side only"
            if a is not None and not np.allclose(a, b, rtol=1e-4, atol=1e-5):
                raise AssertionError(
                    f"the gradient of {v.path} summed over 2 replicas differs from one device's by up to "
                    f"{np.max(np.abs(a - b)):.3g} (largest entry {np.max(np.abs(b)):.3g})"
                )


def check_objective(
    cls: type,
    params: dict[str, Any] | None = None,
    modalities: Sequence[str] = ("a", "b"),
    latent_dim: int = 8,
    num_classes: int = 3,
    batch_size: int = 8,
    replicas: bool | None = None,
) -> None:
    """Check an objective inside a small :class:`~mmkeras.model.MultimodalModel` (Dense encoders to
    ``latent_dim``, no head): a float32 scalar ``loss`` and its metrics, masked rows dropped,
    gradients to its own weights and to every encoder, and 2 replicas equal to one device on the
    global batch (``replicas``: None when two devices are there, True always, False never; see the
    module docstring)."""
    ck = _Checker("objective", cls)
    params = dict(params or {})
    _check_parameters(ck, cls, params)
    names = sorted(modalities)
    shapes = {m: (3 + 2 * i,) for i, m in enumerate(names)}
    x = {m: _random((batch_size, *shapes[m]), i) for i, m in enumerate(names)}
    labels = np.arange(batch_size) % num_classes

    def build(objective: Any) -> Any:
        return _model(_dense_encoders(shapes, latent_dim), MaskedSumFusion(name="fusion"), shapes, objective=objective)

    def result(model: Any, inputs: dict[str, Any]) -> dict[str, Any]:
        return dict(model.objective(model(inputs, training=False), labels))

    inputs = {**x, "masks": _masks(names, batch_size)}
    with ck.check("forward"):
        model = build(cls(**params, name="objective"))
        out = result(model, inputs)
        assert "loss" in out, f"call() returned keys {sorted(out)}, expected 'loss' among them"
        for key, value in out.items():
            assert tuple(value.shape) == (), f"{key!r} has shape {tuple(value.shape)}, expected a scalar"
            assert _dtype(value) == "float32", f"{key!r} is {_dtype(value)}, expected float32"
        _assert_finite(out, "the loss and metrics")
    objective = model.objective
    clone = _clone(ck, cls, objective)
    with ck.check("config round trip"):
        record = model(inputs, training=False)
        clone(record, labels)
        clone.set_weights(objective.get_weights())
        _assert_close(dict(clone(record, labels)), out, "results of from_config(get_config()) and the original's")
    _xla(ck, lambda i, y: dict(objective(model(i, training=False), y)), (inputs, labels), out)

    def loss() -> Any:
        return objective(model(inputs, training=True), labels)["loss"]

    _gradients(ck, objective.trainable_variables, loss)
    # the loss must train every modality's representation
    _gradients(ck, [v for m in names for v in model.encoders[m].trainable_variables], loss, "encoder weight")
    for i, m in enumerate(names):
        masks = _masks(names, batch_size, m)
        with ck.check("masks"):
            before = result(model, {**x, "masks": masks})
            _assert_finite(before, f"the loss with {m!r} masked")
            after = result(model, {**x, m: _perturbed(x[m], masks[m], 20 + i), "masks": masks})
            try:
                _assert_close(after, before, f"the loss and metrics before and after changing {m!r} where it is masked")
            except AssertionError as exc:
                raise AssertionError(f"the objective does not drop masked rows: {exc}") from None
    with ck.check("mixed precision", " (objectives subclass mmkeras.objectives.base.Objective, which forces float32)"):
        with _policy("mixed_float16"):
            half = build(cls(**params, name="objective"))
            assert half.objective.compute_dtype == "float32", (
                f"the objective computes in {half.objective.compute_dtype} under mixed_float16, expected float32"
            )
            out16 = result(half, inputs)
        for key, value in out16.items():
            assert _dtype(value) == "float32", f"{key!r} is {_dtype(value)} under mixed_float16, expected float32"
        _assert_finite(out16, "the loss under mixed_float16")
    _save_reload(ck, model, lambda mdl: result(mdl, inputs))
    if replicas is not False:
        masked = {**x, "masks": _masks(names, batch_size, names[-1])}
        _check_replicas(ck, lambda: build(cls(**params, name="objective")), masked, labels, bool(replicas))


# -- augmentations -----------------------------------------------------------------------------
def check_augmentation(
    cls: type, params: dict[str, Any] | None = None, input_shape: Sequence[int] = (16,), batch_size: int = BATCH
) -> None:
    """Check an augmentation: identity unless ``training``; in training the input's shape and dtype;
    seeded (two layers with one seed draw alike); in a model's ``augment`` list (see the module docstring)."""
    ck = _Checker("augmentation", cls)
    params = _fill(cls, params, {"seed": 0})
    _check_parameters(ck, cls, params)
    x = np.abs(_random((batch_size, *input_shape), 0))  # non-negative, as images and spectrograms are
    with ck.check("forward"):
        layer = cls(**params)
    clone = _clone(ck, cls, layer)  # before either draws: a seeded pair must draw alike
    with ck.check("forward"):
        np.testing.assert_array_equal(_np(layer(x, training=False)), x, "not the identity with training=False")
        y = layer(x, training=True)
        assert tuple(y.shape) == x.shape, f"output shape {tuple(y.shape)} in training, expected the input's {x.shape}"
        assert _dtype(y) == "float32", f"output dtype {_dtype(y)} for a float32 input, expected float32"
        _assert_finite(y, "the output in training")
    if "seed" in params:
        with ck.check("config round trip", " (a seeded augmentation must draw the same with the same seed)"):
            _assert_close(clone(x, training=True), y, "first draws of from_config(get_config()) and of the original")
    _xla(ck, lambda t: layer(t, training=False), (x,), x)
    _xla(ck, lambda t: layer(t, training=True), (x,), None)
    _gradients(ck, layer.trainable_variables, lambda: _probe_loss(layer(x, training=True)))
    with ck.check("mixed precision"), _policy("mixed_float16"):
        half = cls(**params)
        out = half(x, training=True)
        assert _dtype(out) in ("float32", "float16"), f"output dtype {_dtype(out)} under mixed_float16"
        _assert_finite(out, "the output under mixed_float16")
    with ck.check("in a model"):
        shapes = {"a": tuple(input_shape)}
        augmentations = {"a": [cls(**params, name="augment_0")]}
        model = _model(_dense_encoders(shapes, 4), MaskedSumFusion(name="fusion"), shapes, augmentations=augmentations)
        inputs = {"a": x, "masks": _masks(["a"], batch_size, "a")}
        _expect(model(inputs, training=True)["joint"], batch_size, 4, "float32", "joint in a model, in training")
    reloaded = _save_reload(ck, model, lambda mdl: _record(mdl, inputs))
    with ck.check("save and reload in a .keras model"):
        got = reloaded.augmentations["a"][0].get_config()
        want = model.augmentations["a"][0].get_config()
        assert got == want, f"the reloaded augmentation's config {got} differs from the original's {want}"


# -- datasets and evaluators (plain Python objects, not Keras layers) -------------------------------
def check_dataset(cls: type, params: dict[str, Any] | None = None) -> None:
    """Check a dataset: typed parameters, an idempotent ``prepare``, a ``train`` split, every split a
    consistent :class:`~mmkeras.data.base.DataSplit` (float inputs, integer labels, 0/1 masks of known
    modalities), and the same arrays from a second instance made with the same parameters."""
    ck = _Checker("dataset", cls)
    params = dict(params or {})
    _check_parameters(ck, cls, params, serializable=False)
    with ck.check("prepare"):
        dataset = cls(**params)
        dataset.prepare(progress=False)
        dataset.prepare(progress=False)
        assert "train" in dataset.splits, f"splits {dataset.splits} has no 'train'"
    for split in dataset.splits:
        with ck.check("load", f" (split {split!r})"):
            data = dataset.load(split)
            assert isinstance(data, DataSplit), f"load() returned {type(data).__name__}, expected a DataSplit"
            assert data.inputs and len(data) > 0, "no modality arrays or no rows"
            for m, a in data.inputs.items():
                assert m != "masks" and "/" not in m, f"modality name {m!r} is reserved"
                assert np.issubdtype(a.dtype, np.floating), f"modality {m!r} is {a.dtype}, expected float32"
                assert np.all(np.isfinite(a)), f"modality {m!r} has inf or nan values"
            if data.labels is not None:
                assert data.labels.ndim == 1 and np.issubdtype(data.labels.dtype, np.integer), (
                    f"labels have shape {data.labels.shape} and dtype {data.labels.dtype}, expected [N] integers"
                )
            for m, mask in data.masks.items():
                assert m in data.inputs, f"a mask for {m!r}, which is not a modality ({sorted(data.inputs)})"
                assert set(np.unique(mask)) <= {0.0, 1.0}, f"mask of {m!r} holds values other than 0 and 1"
    with ck.check("deterministic"):
        again = cls(**params)
        again.prepare(progress=False)
        for split in dataset.splits:
            a, b = dataset.load(split), again.load(split)
            for m in a.inputs:
                np.testing.assert_array_equal(a.inputs[m], b.inputs[m], f"split {split!r}, modality {m!r} differs")


def check_evaluator(cls: type, params: dict[str, Any] | None = None, num_classes: int = 3) -> None:
    """Check an evaluator on a small two-modality model and labelled train and test splits (with a
    masked modality in some rows): ``evaluate`` returns JSON-serialisable results and ``report`` a string."""
    ck = _Checker("evaluator", cls)
    params = dict(params or {})
    _check_parameters(ck, cls, params, serializable=False)
    shapes = {"a": (5,), "b": (7,)}
    model = _model(_dense_encoders(shapes, 4), MaskedSumFusion(name="fusion"), shapes)
    splits = {}
    for j, (split, n) in enumerate((("train", 48), ("test", 24))):
        labels = np.arange(n) % num_classes
        inputs = {m: _random((n, *s), 10 * j + i) + labels[:, None] for i, (m, s) in enumerate(shapes.items())}
        splits[split] = DataSplit(inputs, labels.astype("int64"), {"b": (np.arange(n) % 4 != 0).astype("float32")})
    with ck.check("evaluate"), tempfile.TemporaryDirectory() as tmp:
        evaluator = cls(**params)
        results = evaluator.evaluate(model, splits, Path(tmp))
        assert isinstance(results, dict), f"evaluate() returned {type(results).__name__}, expected a dict"
        json.dumps(results)
    with ck.check("report"):
        text = evaluator.report(results)
        assert isinstance(text, str), f"report() returned {type(text).__name__}, expected Markdown text"
