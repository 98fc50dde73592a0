"""The training model: a multimodal encoder plus augmentations, an objective and its views."""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import keras
import numpy as np
from keras import ops

from mmkeras.distribute import num_replicas
from mmkeras.encoder import MASKS, MultimodalEncoder
from mmkeras.record import Record

__all__ = ["MASKS", "MultimodalModel", "build_optimizer"]

#: the training model's attributes that name the encoder's parts (saved under these names, as before the split)
_ENCODER_PARTS = ("encoders", "fusion", "head", "joint_encoders")


def build_optimizer(model: Any) -> None:
    """Build ``model``'s optimizer (if it has one, not yet built) over ``model.optimizer_variables()``
    (a :class:`MultimodalModel`) or its trainable variables: the one place the optimizer's layout is set."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or optimizer.built:
        return
    variables = model.optimizer_variables() if hasattr(model, "optimizer_variables") else model.trainable_variables
    optimizer.build(variables)


def _delegated(method: Any) -> Any:
    """``method`` of :class:`MultimodalEncoder`, called on the training model's encoder."""

    @functools.wraps(method)
    def call_encoder(self: MultimodalModel, *args: Any, **kwargs: Any) -> Any:
        return method(self._encoder, *args, **kwargs)

    return call_encoder


@keras.saving.register_keras_serializable(package="mmkeras")
class MultimodalModel(keras.Model):
    """A :class:`~mmkeras.encoder.MultimodalEncoder` trained with ``model.fit`` through an objective.

    ``model.encoder`` is the trained representation; this model adds what training needs: the
    per-modality augmentations, the objective and the extra views it asks for. Its forward pass
    returns a :class:`~mmkeras.record.Record` with ``inputs`` (the given inputs before
    augmentation, the reconstruction targets), plus ``joint_single`` when the objective sets
    ``needs_single_modality_joints`` and ``views`` (one record per view, each a separate pass
    with its own augmentation draw) when it sets ``num_views`` > 1. The objective turns the
    record into the loss and named metrics (``compute_loss``), so ``fit`` trains it.

    Built from an encoder (``MultimodalModel(encoder, objective=...)``) or from its parts
    (``MultimodalModel(encoders, fusion, head, objective, joint_encoders=..., input_shapes=...,
    subset_encoding=..., encode_output=...)``, the arguments of :class:`MultimodalEncoder`).
    """

    def __init__(
        self,
        encoders: MultimodalEncoder | dict[str, keras.layers.Layer],
        fusion: keras.layers.Layer | None = None,
        head: keras.layers.Layer | None = None,
        objective: keras.layers.Layer | None = None,
        augmentations: dict[str, list[keras.layers.Layer]] | None = None,
        joint_encoders: dict[str, keras.layers.Layer] | None = None,
        input_shapes: dict[str, list[int]] | None = None,
        subset_encoding: str = "fusion",
        encode_output: str = "latent",
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if isinstance(encoders, MultimodalEncoder):
            encoder = encoders
        else:
            if fusion is None:
                raise ValueError("MultimodalModel needs a MultimodalEncoder, or encoders and a fusion")
            encoder = MultimodalEncoder(
                encoders,
                fusion,
                head,
                joint_encoders=joint_encoders,
                input_shapes=input_shapes,
                subset_encoding=subset_encoding,
                encode_output=encode_output,
                name="encoder",
            )
        self._encoder = encoder
        self.objective = objective
        if callable(getattr(objective, "attach_encoder", None)):  # an objective that uses the encoder's parts (ae2net)
            objective.attach_encoder(encoder)
        self.augmentations = {m: list(a) for m, a in (augmentations or {}).items() if a}
        # what the objective asks of the forward pass (CoMM: two augmented views, single-modality joints)
        self.num_views = int(getattr(objective, "num_views", 1))
        self.single_modality_joints = bool(getattr(objective, "needs_single_modality_joints", False))
        self.objective_trackers: dict[str, keras.metrics.Metric] = {}

    # -- the encoder and its parts ---------------------------------------------------------
    @property
    def encoder(self) -> MultimodalEncoder:
        """The trained representation: encoders, joint encoders, fusion and head."""
        return self._encoder

    # the parts are saved under the training model's own names (encoders/..., fusion, head,
    # joint_encoders), as before the encoder/task split, so models and checkpoints written then
    # still load; Keras walks the public attributes in dir() order, so `encoder` must not come first
    def __dir__(self) -> list[str]:
        return [a for a in super().__dir__() if a != "encoder"]

    encoders = property(lambda self: self._encoder.encoders, doc="The encoder's modality encoders.")
    fusion = property(lambda self: self._encoder.fusion, doc="The encoder's fusion.")
    head = property(lambda self: self._encoder.head, doc="The encoder's head (None: identity).")
    joint_encoders = property(lambda self: self._encoder.joint_encoders, doc="The encoder's joint encoders.")
    modalities = property(lambda self: self._encoder.modalities, doc="The modalities, sorted.")
    input_shapes = property(lambda self: self._encoder.input_shapes, doc="Input shape by modality.")
    subset_encoding = property(lambda self: self._encoder.subset_encoding, doc="'fusion' or 'mean'.")
    encode_output = property(lambda self: self._encoder.encode_output, doc="'latent' or 'feature'.")
    feature_shapes = property(lambda self: self._encoder.feature_shapes, doc="Feature shape by modality.")

    # -- forward -------------------------------------------------------------------------
    def build(self, input_shape: Any = None) -> None:
        if self.built:
            return
        self._encoder.build()
        zeros = {m: ops.zeros([2] + self.input_shapes[m]) for m in self.modalities}
        record = self.call(zeros, training=False)
        if self.objective is not None:  # objectives with weights of their own (decoders) build here
            result = self.objective(record, ops.zeros((2,), "int32"))
            # the metrics are what the objective returns besides the loss, named once, in its call
            self.objective_trackers = {n: keras.metrics.Mean(name=n) for n in sorted(result) if n != "loss"}
        self.built = True

    def call(self, inputs: dict[str, Any], training: Any = None) -> Record:
        present = self._encoder.present(inputs)
        views = tuple(self._view(inputs, training) for _ in range(self.num_views))
        record = views[0]
        if self.num_views > 1:
            record = record._replace(views=views)
        return record._replace(inputs={m: inputs[m] for m in present})

    def _view(self, inputs: dict[str, Any], training: Any) -> Record:
        """One pass over the inputs (one augmented view in training)."""
        x = dict(inputs)
        if training:
            for m, augs in self.augmentations.items():
                if m in x:
                    for aug in augs:
                        x[m] = aug(x[m], training=True)
        return self._encoder(x, training=training, single_modality_joints=self.single_modality_joints)

    # -- training ------------------------------------------------------------------------
    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras reduces the first distributed batch to build the model symbolically; under
        # MultiWorkerMirroredStrategy that reduce fails for dict inputs. This model is built at
        # construction, so only the optimizer's variables are left to create.
        if not (self.built and all(layer.built for layer in self._flatten_layers())):
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        with self.distribute_strategy.scope():
            build_optimizer(self)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if self.objective is None:
            raise ValueError("this model has no objective; build it from a recipe or pass objective=")
        result = self.objective(y_pred, y, training=training)  # dropped for objectives whose call has no training
        replicas = num_replicas()  # trackers are averaged over replicas: show the global value
        for name, tracker in self.objective_trackers.items():
            tracker.update_state(result[name] * replicas)
        return result["loss"]

    def fit(self, x=None, *args, **kwargs):
        # mmkeras pipelines shuffle themselves; for a tf.data dataset Keras's default
        # shuffle=True is ignored with a warning on every call
        if hasattr(x, "element_spec"):
            kwargs.setdefault("shuffle", False)
        if self.built:
            # built here, not inside the first traced step: a variable created there makes TensorFlow
            # trace the whole train step a second time (seconds to a minute for large graphs)
            strategy = getattr(self, "distribute_strategy", None)
            with strategy.scope() if strategy is not None else contextlib.nullcontext():
                build_optimizer(self)
        scheduled = self.scheduled_layers()
        if scheduled:  # layers that unfreeze after some epochs: from Python as from `mmkeras train`
            from mmkeras.encoders.keras_model import TrainableSchedule

            callbacks = list(kwargs.get("callbacks") or [])
            if not any(isinstance(c, TrainableSchedule) for c in callbacks):
                callbacks.append(TrainableSchedule(scheduled, initial_epoch=kwargs.get("initial_epoch", 0)))
            kwargs["callbacks"] = callbacks
        return super().fit(x, *args, **kwargs)

    def scheduled_layers(self) -> list[keras.layers.Layer]:
        """The layers whose trainable weights change with the epoch (an encoder's ``unfreeze_after``)."""
        return [layer for layer in self._flatten_layers() if getattr(layer, "trainable_schedule", False)]

    def optimizer_variables(self) -> list[keras.Variable]:
        """The variables the optimizer is built over: the trainable ones plus those a schedule will
        unfreeze, in the model's weight order, so its state has one layout before and after
        unfreezing and on resume (Keras's optimizer is built once and knows no variable added later)."""
        later = {id(v) for layer in self.scheduled_layers() for v in layer.scheduled_weights()}
        if not later:
            return self.trainable_variables
        now = {id(v) for v in self.trainable_variables}
        return [v for v in self.weights if id(v) in now or id(v) in later]

    # -- inference -----------------------------------------------------------------------
    # the representation is the encoder's: the same methods, with the same arguments
    encode = _delegated(MultimodalEncoder.encode)
    encode_each = _delegated(MultimodalEncoder.encode_each)

    def generate(self, target: str, given: dict[str, Any], sample: bool = False, batch_size: int = 512) -> np.ndarray:
        """``target`` generated from the modalities in ``given`` (numpy arrays or tensors, any subset,
        optionally with ``"masks"``) by the objective's decoders: the given modalities are encoded
        and ``objective.generate(record, target, sample=sample)`` decodes. Returns a numpy array
        [N, *target shape]."""
        if self.objective is None or not callable(getattr(self.objective, "generate", None)):
            name = type(self.objective).__name__ if self.objective is not None else "no objective"
            raise ValueError(
                f"{name} cannot generate: generate() needs a generative objective (mvae, mmvae, nexus, muse)"
            )
        if target not in self.encoders:
            raise ValueError(f"unknown target modality {target!r}; this model has {self.modalities}")
        chosen = [k for k in given if k != MASKS]
        bad = [m for m in chosen if m not in self.encoders]
        if bad or not chosen:
            raise ValueError(f"given must hold some of the modalities {self.modalities}, got {sorted(given)}")
        n = int(ops.shape(given[chosen[0]])[0])
        out = []
        for start in range(0, n, batch_size):
            batch = {m: given[m][start : start + batch_size] for m in chosen}
            if MASKS in given:
                batch[MASKS] = {m: given[MASKS][m][start : start + batch_size] for m in chosen if m in given[MASKS]}
            batch = keras.tree.map_structure(ops.convert_to_tensor, batch)
            record = self._encoder(batch, training=False)
            generated = self.objective.generate(record, target, sample=sample)
            out.append(ops.convert_to_numpy(ops.cast(generated, "float32")))
        return np.concatenate(out, axis=0)

    # -- serialisation -------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        def ser(layer: keras.layers.Layer) -> dict[str, Any]:
            # the model builds its parts itself (build()); Keras must not "build" them from shapes
            config = keras.saving.serialize_keras_object(layer)
            config.pop("build_config", None)
            return config

        return {
            "name": self.name,
            "encoder": ser(self._encoder),
            "objective": ser(self.objective) if self.objective is not None else None,
            "augmentations": {m: [ser(a) for a in augs] for m, augs in self.augmentations.items()},
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MultimodalModel:
        de = keras.saving.deserialize_keras_object
        config = dict(config)
        if "encoder" in config:
            encoder = de(config.pop("encoder"))
        else:  # saved before the encoder/task split (mmkeras 0.1): the encoder's parts at the top level
            parts = {k: config.pop(k, None) for k in ("encoders", "fusion", "head", "joint_encoders")}
            encoder = MultimodalEncoder.from_config(
                {
                    **parts,
                    "name": "encoder",
                    **{k: config.pop(k) for k in ("input_shapes", "subset_encoding", "encode_output") if k in config},
                }
            )
        objective = de(config.pop("objective")) if config.get("objective") else None
        augmentations = {m: [de(a) for a in augs] for m, augs in (config.pop("augmentations", None) or {}).items()}
        config.pop("objective", None)
        model = cls(encoder, objective=objective, augmentations=augmentations, **config)
        model.build()
        return model
