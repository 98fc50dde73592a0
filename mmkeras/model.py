"""The multimodal model: encoders by modality, a fusion, a shared head and an objective."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from mmkeras.distribute import num_replicas

MASKS = "masks"


@keras.saving.register_keras_serializable(package="mmkeras")
class MultimodalModel(keras.Model):
    """Encode any subset of modalities; train with ``model.fit`` through the objective.

    Inputs are a dict ``{modality: tensor}``, optionally with ``"masks": {modality: [B]}``
    (1.0 present, 0.0 missing). A modality absent from the dict is missing in every row:
    its encoder is skipped. The forward pass returns a record (a dict):

    - ``features``: ``{modality: h_m}``, the encoder outputs;
    - ``latents``: ``{modality: z_m}``, the head applied to each ``h_m``;
    - ``joint_feature``: the fusion of the features, ``joint``: the head applied to it;
    - ``masks``: ``{modality: [B]}`` float32 presence;
    - ``inputs``: ``{modality: x_m}``, the given inputs before augmentation (reconstruction targets);
    - ``joint_single``: ``{modality: z}``, the head applied to the fusion of that modality alone,
      when the objective sets ``needs_single_modality_joints``;
    - ``views``: a list of per-view records (all of the above but ``inputs``), when the objective
      sets ``num_views`` > 1: each view is a separate pass with its own augmentation draw.

    The objective turns the record into the loss (``compute_loss``), so ``fit`` trains it.
    ``joint_encoders`` (GMC's joint encoder f_1:M): a second set of encoders, one per
    modality, whose outputs feed the fusion instead of the modality encoders' outputs, so the
    joint representation shares no weights with the modality-specific ones.
    ``subset_encoding="mean"`` makes :meth:`encode` of an incomplete subset return the mean of
    the present modalities' latents (GMC's evaluation protocol) instead of the fused joint;
    ``encode_output="feature"`` makes it return the representation before the head (CoMM's probes).
    """

    def __init__(
        self,
        encoders: dict[str, keras.layers.Layer],
        fusion: keras.layers.Layer,
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
        if subset_encoding not in ("fusion", "mean"):
            raise ValueError(f"subset_encoding must be 'fusion' or 'mean', got {subset_encoding!r}")
        self.modalities = sorted(encoders)
        self.encoders = dict(encoders)
        self.fusion = fusion
        self.head = head
        self.objective = objective
        self.augmentations = {m: list(a) for m, a in (augmentations or {}).items() if a}
        self.joint_encoders = dict(joint_encoders) if joint_encoders else None
        if self.joint_encoders is not None and sorted(self.joint_encoders) != self.modalities:
            raise ValueError(
                f"joint_encoders must cover the modalities {self.modalities}, got {sorted(self.joint_encoders)}"
            )
        self.input_shapes = {m: [int(d) for d in s] for m, s in (input_shapes or {}).items()}
        self.subset_encoding = subset_encoding
        if encode_output not in ("latent", "feature"):
            raise ValueError(f"encode_output must be 'latent' or 'feature', got {encode_output!r}")
        self.encode_output = encode_output
        self.feature_shapes: dict[str, list[int]] = {}  # "image" or "joint/image" -> feature shape
        # what the objective asks of the forward pass (CoMM: two augmented views, single-modality joints)
        self.num_views = int(getattr(objective, "num_views", 1))
        self.single_modality_joints = bool(getattr(objective, "needs_single_modality_joints", False))
        names = (
            objective.metric_names(self.modalities)
            if objective is not None and hasattr(objective, "metric_names")
            else []
        )
        self.objective_trackers = {n: keras.metrics.Mean(name=n) for n in names}

    # -- forward -------------------------------------------------------------------------
    def build(self, input_shape=None):
        if self.built:
            return
        missing = [m for m in self.modalities if m not in self.input_shapes]
        if missing:
            raise ValueError(f"input_shapes has no shape for modalities {missing}")
        zeros = {m: ops.zeros([2] + self.input_shapes[m]) for m in self.modalities}
        record = self._forward(zeros, training=False)
        if self.objective is not None:  # objectives with weights of their own (decoders) build here
            self.objective(record, ops.zeros((2,), "int32"))
        self.built = True

    def call(self, inputs, training=None):
        return self._forward(inputs, training=training)

    def _forward(self, inputs, training=None, for_objective=True):
        unknown = [k for k in inputs if k != MASKS and k not in self.encoders]
        if unknown:
            raise ValueError(
                f"inputs have modalities {unknown} this model has no encoder for; it has {self.modalities}"
            )
        present = [m for m in self.modalities if m in inputs]
        if not present:
            raise ValueError(f"no modality given; expected some of {self.modalities}")
        # the objective's extra views and single-modality fusions are skipped when only the
        # representation is wanted (encode, generate)
        num_views = self.num_views if for_objective else 1
        views = [self._view(inputs, present, training, for_objective) for _ in range(num_views)]
        record = views[0]
        if num_views > 1:
            record = {**record, "views": views}
        record["inputs"] = {m: inputs[m] for m in present}
        return record

    def _view(self, inputs, present, training, for_objective=True):
        """One pass over the inputs (one augmented view in training)."""
        given = inputs.get(MASKS, {}) or {}
        batch = ops.shape(inputs[present[0]])[0]
        features, joint_inputs, masks = {}, {}, {}
        for m in self.modalities:
            if m in inputs:
                x = inputs[m]
                if training:
                    for aug in self.augmentations.get(m, []):
                        x = aug(x, training=True)
                features[m] = self.encoders[m](x, training=training)
                if self.joint_encoders is not None:
                    joint_inputs[m] = self.joint_encoders[m](x, training=training)
                masks[m] = ops.cast(given[m], "float32") if m in given else ops.ones((batch,), "float32")
            else:
                masks[m] = ops.zeros((batch,), "float32")
        self._fill_missing(features, "", batch)
        fusion_inputs = features
        if self.joint_encoders is not None:
            self._fill_missing(joint_inputs, "joint/", batch)
            fusion_inputs = joint_inputs
        project = self.head if self.head is not None else (lambda h: h)
        joint_feature = self.fusion(fusion_inputs, masks)
        record = {
            "features": features,
            "latents": {m: project(features[m]) for m in self.modalities},
            "joint_feature": joint_feature,
            "joint": project(joint_feature),
            "masks": masks,
        }
        if self.single_modality_joints and for_objective:
            record["joint_single"] = {
                m: project(
                    self.fusion(fusion_inputs, {k: masks[k] if k == m else ops.zeros_like(masks[k]) for k in masks})
                )
                for m in self.modalities
            }
        return record

    def _fill_missing(self, features, prefix, batch):
        """Zeros for each missing modality (the fusion ignores them by their mask)."""
        for m in self.modalities:
            if m in features:
                self.feature_shapes[prefix + m] = [int(d) for d in features[m].shape[1:]]
            else:
                features[m] = ops.zeros([batch] + self.feature_shapes[prefix + m], dtype=self.compute_dtype)

    # -- training ------------------------------------------------------------------------
    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras reduces the first distributed batch to build the model symbolically; under
        # MultiWorkerMirroredStrategy that reduce fails for dict inputs. This model is built at
        # construction, so only the optimizer's variables are left to create.
        if not (self.built and all(layer.built for layer in self._flatten_layers())):
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        if self.optimizer is not None and not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)

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
        return super().fit(x, *args, **kwargs)

    # -- inference -----------------------------------------------------------------------
    def encode(self, inputs: dict[str, Any], modalities: list[str] | None = None, batch_size: int = 512) -> np.ndarray:
        """The joint representation of ``inputs`` (numpy arrays or tensors), using only
        ``modalities`` (default: every modality of the model given in ``inputs``; inputs the
        model has no encoder for are ignored). Returns a numpy array [N, latent]."""
        chosen = list(modalities) if modalities is not None else [m for m in self.modalities if m in inputs]
        if not chosen:
            raise ValueError(f"no modality of this model ({self.modalities}) is in the inputs ({sorted(inputs)})")
        bad = [m for m in chosen if m not in self.encoders]
        if bad:
            raise ValueError(f"unknown modalities {bad}; this model has {self.modalities}")
        missing = [m for m in chosen if m not in inputs]
        if missing:
            raise ValueError(f"modalities {missing} were asked for but are not in the inputs")
        n = int(ops.shape(inputs[chosen[0]])[0])
        complete = set(chosen) == set(self.modalities)
        out = []
        for start in range(0, n, batch_size):
            batch = {m: inputs[m][start : start + batch_size] for m in chosen}
            if MASKS in inputs:
                batch[MASKS] = {m: inputs[MASKS][m][start : start + batch_size] for m in chosen if m in inputs[MASKS]}
            batch = keras.tree.map_structure(ops.convert_to_tensor, batch)
            record = self._forward(batch, training=False, for_objective=False)
            per_modality, joint = (
                (record["latents"], record["joint"])
                if self.encode_output == "latent"
                else (record["features"], record["joint_feature"])
            )
            if self.subset_encoding == "mean" and not complete:
                z = sum(per_modality[m] * ops.expand_dims(record["masks"][m], -1) for m in chosen)
                z = z / ops.maximum(ops.expand_dims(sum(record["masks"][m] for m in chosen), -1), 1.0)
            else:
                z = joint
            out.append(ops.convert_to_numpy(ops.cast(z, "float32")))
        return np.concatenate(out, axis=0)

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
            record = self._forward(batch, training=False, for_objective=False)
            generated = self.objective.generate(record, target, sample=sample)
            out.append(ops.convert_to_numpy(ops.cast(generated, "float32")))
        return np.concatenate(out, axis=0)

    # -- serialisation -------------------------------------------------------------------
    def get_config(self):
        def ser(layer):
            # the model builds its parts itself (build()); Keras must not "build" them from shapes
            config = keras.saving.serialize_keras_object(layer)
            config.pop("build_config", None)
            return config

        return {
            "name": self.name,
            "encoders": {m: ser(e) for m, e in self.encoders.items()},
            "fusion": ser(self.fusion),
            "head": ser(self.head) if self.head is not None else None,
            "objective": ser(self.objective) if self.objective is not None else None,
            "augmentations": {m: [ser(a) for a in augs] for m, augs in self.augmentations.items()},
            "joint_encoders": {m: ser(e) for m, e in self.joint_encoders.items()} if self.joint_encoders else None,
            "input_shapes": self.input_shapes,
            "subset_encoding": self.subset_encoding,
            "encode_output": self.encode_output,
        }

    @classmethod
    def from_config(cls, config):
        de = keras.saving.deserialize_keras_object
        config = dict(config)
        config["encoders"] = {m: de(e) for m, e in config["encoders"].items()}
        config["fusion"] = de(config["fusion"])
        config["head"] = de(config["head"]) if config.get("head") else None
        config["objective"] = de(config["objective"]) if config.get("objective") else None
        config["joint_encoders"] = {m: de(e) for m, e in (config.get("joint_encoders") or {}).items()} or None
        config["augmentations"] = {m: [de(a) for a in augs] for m, augs in (config.get("augmentations") or {}).items()}
        model = cls(**config)
        model.build()
        return model
