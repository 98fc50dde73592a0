"""The multimodal encoder: the trained representation, saved and loaded on its own."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import ops

from mmkeras.errors import MMKerasError
from mmkeras.record import Record

MASKS = "masks"
OUTPUTS = ("latent", "feature")
#: batches a subset of modalities is encoded eagerly before its compiled function pays for its trace
EAGER_BATCHES = 32


@keras.saving.register_keras_serializable(package="mmkeras")
class MultimodalEncoder(keras.Model):
    """Encoders by modality, optional joint encoders, a fusion and a head: any subset of
    modalities in, one representation out. It holds no objective and no augmentation, so it
    is what a user takes away from training (``model.encoder``, ``encoder.keras`` in a run
    directory, :func:`load_encoder`), to evaluate, to put inside another model, or to fine-tune.

    Inputs are a dict ``{modality: tensor}``, optionally with ``"masks": {modality: [B]}``
    (1.0 present, 0.0 missing). A modality absent from the dict is missing in every row: its
    encoder is skipped and the fusion sees zeros under a zero mask. ``call`` returns a
    :class:`~mmkeras.record.Record`; :meth:`encode` returns numpy arrays.

    Args:
        encoders: ``{modality: layer}``, each mapping a batch of that modality to ``[B, d]``.
        fusion: a fusion layer, ``fusion(features, masks) -> [B, d]``.
        head: applied to every modality's feature and to the fused one; None: identity.
        joint_encoders: GMC's joint encoder f_1:M, a second set of encoders whose outputs feed the
            fusion instead of the modality encoders', so the joint representation shares no
            weights with the modality-specific ones.
        input_shapes: ``{modality: shape without the batch axis}``; the encoder builds from them.
        subset_encoding: ``"fusion"`` (an incomplete subset is fused like the complete one) or
            ``"mean"`` (the mean of the present modalities' representations, GMC's protocol).
        encode_output: what :meth:`encode` returns by default: ``"latent"`` (after the head) or
            ``"feature"`` (before it, as CoMM's probes read).
    """

    def __init__(
        self,
        encoders: dict[str, keras.layers.Layer],
        fusion: keras.layers.Layer,
        head: keras.layers.Layer | None = None,
        joint_encoders: dict[str, keras.layers.Layer] | None = None,
        input_shapes: dict[str, list[int]] | None = None,
        subset_encoding: str = "fusion",
        encode_output: str = "latent",
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if subset_encoding not in ("fusion", "mean"):
            raise ValueError(f"subset_encoding must be 'fusion' or 'mean', got {subset_encoding!r}")
        if encode_output not in OUTPUTS:
            raise ValueError(f"encode_output must be 'latent' or 'feature', got {encode_output!r}")
        self.modalities = sorted(encoders)
        self.encoders = dict(encoders)
        self.fusion = fusion
        self.head = head
        self.joint_encoders = dict(joint_encoders) if joint_encoders else None
        if self.joint_encoders is not None and sorted(self.joint_encoders) != self.modalities:
            raise ValueError(
                f"joint_encoders must cover the modalities {self.modalities}, got {sorted(self.joint_encoders)}"
            )
        self.input_shapes = {m: [int(d) for d in s] for m, s in (input_shapes or {}).items()}
        self.subset_encoding = subset_encoding
        self.encode_output = encode_output
        self.feature_shapes: dict[str, list[int]] = {}  # "image" or "joint/image" -> feature shape
        self._predict_functions: dict[tuple, Any] = {}  # (modalities, masked modalities) -> compiled forward
        self._eager_batches: dict[tuple, int] = {}  # subset -> batches encoded eagerly so far

    # -- forward -------------------------------------------------------------------------
    def build(self, input_shape: Any = None) -> None:
        if self.built:
            return
        missing = [m for m in self.modalities if m not in self.input_shapes]
        if missing:
            raise ValueError(f"input_shapes has no shape for modalities {missing}")
        self.call({m: ops.zeros([2] + self.input_shapes[m]) for m in self.modalities}, training=False)
        self.built = True

    def call(self, inputs: dict[str, Any], training: Any = None, single_modality_joints: bool = False) -> Record:
        """One pass: ``inputs`` (already augmented, in training) to a :class:`Record` without
        ``inputs`` and ``views``. ``single_modality_joints``: also fuse each modality alone."""
        present = self.present(inputs)
        given = inputs.get(MASKS, {}) or {}
        batch = ops.shape(inputs[present[0]])[0]
        features, joint_inputs, masks = {}, {}, {}
        for m in self.modalities:
            if m in inputs:
                features[m] = self.encoders[m](inputs[m], training=training)
                if self.joint_encoders is not None:
                    joint_inputs[m] = self.joint_encoders[m](inputs[m], training=training)
                masks[m] = ops.cast(given[m], "float32") if m in given else ops.ones((batch,), "float32")
            else:
                masks[m] = ops.zeros((batch,), "float32")
        self._fill_missing(features, "", batch)
        fusion_inputs = features
        if self.joint_encoders is not None:
            self._fill_missing(joint_inputs, "joint/", batch)
            fusion_inputs = joint_inputs
        joint_feature = self.fusion(fusion_inputs, masks)
        joint_single = {}
        if single_modality_joints:
            joint_single = {
                m: self.project(
                    self.fusion(fusion_inputs, {k: masks[k] if k == m else ops.zeros_like(masks[k]) for k in masks})
                )
                for m in self.modalities
            }
        return Record(
            features=features,
            latents={m: self.project(_pooled(features[m])) for m in self.modalities},
            joint_feature=joint_feature,
            joint=self.project(joint_feature),
            masks=masks,
            joint_single=joint_single,
        )

    def project(self, h: Any) -> Any:
        """The head applied to a feature vector (the identity without a head)."""
        return self.head(h) if self.head is not None else h

    def present(self, inputs: dict[str, Any]) -> list[str]:
        """The modalities given in ``inputs``, checked: unknown ones and an empty set raise."""
        unknown = [k for k in inputs if k != MASKS and k not in self.encoders]
        if unknown:
            raise ValueError(
                f"inputs have modalities {unknown} this model has no encoder for; it has {self.modalities}"
            )
        present = [m for m in self.modalities if m in inputs]
        if not present:
            raise ValueError(f"no modality given; expected some of {self.modalities}")
        return present

    def _fill_missing(self, features: dict[str, Any], prefix: str, batch: Any) -> None:
        """Zeros for each missing modality (the fusion ignores them by their mask)."""
        for m in self.modalities:
            if m in features:
                self.feature_shapes[prefix + m] = [int(d) for d in features[m].shape[1:]]
            else:
                features[m] = ops.zeros([batch] + self.feature_shapes[prefix + m], dtype=self.compute_dtype)

    # -- inference -----------------------------------------------------------------------
    def encode(
        self,
        inputs: dict[str, Any],
        modalities: list[str] | None = None,
        *,
        output: str | None = None,
        batch_size: int = 512,
        verbose: int | str = 0,
    ) -> np.ndarray:
        """The joint representation of ``inputs`` (numpy arrays or tensors, optionally with
        ``"masks"``) from ``modalities`` only (default: every modality of the encoder given in
        ``inputs``; other inputs are ignored). ``output``: ``"latent"`` or ``"feature"`` (default:
        ``encode_output``). Returns a float32 numpy array [N, d].

        Runs in batches of ``batch_size`` through a compiled function (``predict``), traced once
        per set of modalities and cached. A trace costs as much as encoding a few dozen batches, so a
        subset is encoded eagerly until it has encoded ``EAGER_BATCHES`` batches, then compiled. With
        ``subset_encoding="mean"`` an incomplete subset's representation is the mean of its present
        modalities' representations."""
        chosen, record = self._predict(inputs, modalities, batch_size, verbose)
        per_modality, joint = self._pick(record, output)
        if self.subset_encoding == "mean" and set(chosen) != set(self.modalities):
            masks = {m: record.masks[m].astype(np.float32)[:, None] for m in chosen}
            total = sum(per_modality[m].astype(np.float32) * masks[m] for m in chosen)
            return total / np.maximum(sum(masks.values()), 1.0)
        return joint.astype(np.float32)

    def encode_each(
        self,
        inputs: dict[str, Any],
        modalities: list[str] | None = None,
        *,
        output: str | None = None,
        batch_size: int = 512,
        verbose: int | str = 0,
    ) -> dict[str, np.ndarray]:
        """Each modality's own representation, ``{modality: [N, d]}`` (float32 numpy), for the
        modalities chosen as in :meth:`encode`; same compiled function."""
        chosen, record = self._predict(inputs, modalities, batch_size, verbose)
        per_modality, _ = self._pick(record, output)
        return {m: per_modality[m].astype(np.float32) for m in chosen}

    def _pick(self, record: Record, output: str | None) -> tuple[dict[str, np.ndarray], np.ndarray]:
        output = output or self.encode_output
        if output not in OUTPUTS:
            raise ValueError(f"output must be 'latent' or 'feature', got {output!r}")
        if output == "latent":
            return record.latents, record.joint
        return record.features, record.joint_feature

    def _predict(
        self, inputs: dict[str, Any], modalities: list[str] | None, batch_size: int, verbose: int | str
    ) -> tuple[list[str], Record]:
        chosen = list(modalities) if modalities is not None else [m for m in self.modalities if m in inputs]
        if not chosen:
            raise ValueError(f"no modality of this model ({self.modalities}) is in the inputs ({sorted(inputs)})")
        bad = [m for m in chosen if m not in self.encoders]
        if bad:
            raise ValueError(f"unknown modalities {bad}; this model has {self.modalities}")
        missing = [m for m in chosen if m not in inputs]
        if missing:
            raise ValueError(f"modalities {missing} were asked for but are not in the inputs")
        x = {m: inputs[m] for m in chosen}
        given = {m: inputs[MASKS][m] for m in chosen if m in (inputs.get(MASKS) or {})}
        if given:
            x[MASKS] = given
        key = (tuple(chosen), tuple(given))
        rows = int(ops.shape(x[chosen[0]])[0])
        batches = -(-rows // batch_size)
        if key not in self._predict_functions and self._eager_batches.get(key, 0) + batches <= EAGER_BATCHES:
            # a trace costs about as much as 20-30 batches encoded eagerly (measured on gmc_mhd_quick,
            # docs/performance.md): a subset runs eagerly until it has encoded EAGER_BATCHES batches
            self._eager_batches[key] = self._eager_batches.get(key, 0) + batches
            return chosen, self._eager(x, rows, batch_size)
        # one compiled forward pass (Keras's predict function) per input structure, kept between calls
        self.predict_function = self._predict_functions.get(key)
        # TensorFlow counts the traces of every model's predict function together and warns past
        # five; one trace per subset is by design here
        tf_logger = logging.getLogger("tensorflow")
        level = tf_logger.level
        tf_logger.setLevel(logging.ERROR)
        try:
            if rows <= batch_size and getattr(self, "_distribute_strategy", None) is None:
                # one batch (a controller encoding every step): the compiled function without
                # predict's per-call set-up of a data pipeline and callbacks
                return chosen, self.predict_on_batch(x)
            return chosen, self.predict(x, batch_size=batch_size, verbose=verbose)
        finally:
            tf_logger.setLevel(level)
            self._predict_functions[key] = self.predict_function

    def _eager(self, x: dict[str, Any], rows: int, batch_size: int) -> Record:
        """The forward pass batch by batch, uncompiled, as numpy arrays."""
        parts = []
        for start in range(0, rows, batch_size):
            rows_here = slice(start, start + batch_size)
            batch = keras.tree.map_structure(lambda a, r=rows_here: ops.convert_to_tensor(a[r]), x)
            parts.append(keras.tree.map_structure(ops.convert_to_numpy, self(batch, training=False)))
        return keras.tree.map_structure(lambda *arrays: np.concatenate(arrays, axis=0), *parts)

    # -- serialisation -------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "encoders": {m: _serialize(e) for m, e in self.encoders.items()},
            "fusion": _serialize(self.fusion),
            "head": _serialize(self.head) if self.head is not None else None,
            "joint_encoders": {m: _serialize(e) for m, e in self.joint_encoders.items()}
            if self.joint_encoders
            else None,
            "input_shapes": self.input_shapes,
            "subset_encoding": self.subset_encoding,
            "encode_output": self.encode_output,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MultimodalEncoder:
        de = keras.saving.deserialize_keras_object
        config = dict(config)
        config["encoders"] = {m: de(e) for m, e in config["encoders"].items()}
        config["fusion"] = de(config["fusion"])
        config["head"] = de(config["head"]) if config.get("head") else None
        config["joint_encoders"] = {m: de(e) for m, e in (config.get("joint_encoders") or {}).items()} or None
        encoder = cls(**config)
        encoder.build()
        return encoder


def _serialize(layer: keras.layers.Layer) -> dict[str, Any]:
    # the encoder builds its parts itself (build()); Keras must not "build" them from shapes
    config = keras.saving.serialize_keras_object(layer)
    config.pop("build_config", None)
    return config


def load_encoder(source: str | Path, compile: bool = False) -> MultimodalEncoder:
    """The trained :class:`MultimodalEncoder` of ``source``: a run directory (its
    ``encoder.keras``, or the encoder inside its ``model.keras``), an ``encoder.keras`` file, a
    full model's ``.keras`` file (its encoder is taken out; the objective is dropped), or a preset
    directory (:func:`mmkeras.preset.load_preset`; a one-modality preset gives that encoder under a
    ``mean`` fusion with no head)."""
    from mmkeras import load_model

    path = Path(source)
    if path.is_dir() and (path / "metadata.json").is_file():  # a preset (a run directory has none)
        from mmkeras.preset import load_preset

        return load_preset(path)
    if path.is_dir():
        path = path / "encoder.keras" if (path / "encoder.keras").is_file() else path / "model.keras"
    if not path.is_file():
        raise MMKerasError(
            f"{source}: no saved encoder there (expected a run directory, a preset directory, an encoder.keras "
            "or a model's .keras file)"
        )
    loaded = load_model(str(path), compile=compile)
    if isinstance(loaded, MultimodalEncoder):
        return loaded
    encoder = getattr(loaded, "encoder", None)
    if not isinstance(encoder, MultimodalEncoder):
        raise MMKerasError(f"{path} holds a {type(loaded).__name__}, not an mmkeras model or encoder")
    return encoder


def _pooled(h: Any) -> Any:
    """A modality's feature as one vector for the head: a token sequence [B, T, d] (encoders with
    ``output: tokens``, read token by token by the fusion) is averaged over its tokens."""
    return ops.mean(h, axis=tuple(range(1, len(h.shape) - 1))) if len(h.shape) > 2 else h
