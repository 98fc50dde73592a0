"""Factorized multimodal representations, MFM-style (Tsai, Liang, Zadeh, Morency and
Salakhutdinov, ICLR 2019, "Learning Factorized Multimodal Representations").

The factors, read from the model's record:
- the shared multimodal discriminative factor z_y = ``outputs.joint`` [B, d_y], the head
  applied to the fusion (give the model ``joint_encoders: separate`` so that, as in MFM, it comes
  from encoders of its own rather than from the specific factors);
- one modality-specific generative factor per modality, z_m = ``outputs.features[m]`` [B, d_m],
  the modality encoder's output before the (shared) head.

The objective owns a classifier C (``classifier_units`` hidden ReLU layers, then ``num_classes``
logits) and one decoder D_m per reconstructed modality, which reads the concatenation
[z_y; z_m] (MFM's generative factorisation: x_m is generated from the shared and its specific
factor). With masks, the terms are means over the rows where their factors exist:
    L_disc  = mean_{i: labelled, some modality present} CE(C(z_y,i), y_i)
    L_gen   = sum_m mean_{i: m present} e_m(D_m([z_y,i; z_m,i]), x_m,i)
    L_prior = MMD^2(z_y, N(0, I)) + sum_m MMD^2(z_m, N(0, I))
    L_ortho = sum_m || Corr(z_y, z_m) ||_F^2 / (d_y d_m)
    loss    = discriminative_weight L_disc + generative_weight L_gen + prior_weight L_prior
              + orthogonality_weight L_ortho
e_m as in :func:`mmkeras.losses.reconstruction.reconstruction_error` (``likelihoods``: mse by default).

The prior term is the squared MMD between each factor's rows and N(0, I), with a Gaussian kernel
and both prior expectations in closed form (:func:`mmkeras.losses.factorized.mmd_to_standard_normal`,
with the formula); the no-overlap term (our choice; MFM's factorisation has none explicitly) is
the mean squared Pearson correlation between the shared and each specific factor's dimensions
over the rows where m is present (:func:`mmkeras.losses.factorized.cross_correlation_penalty`).
Both are batch statistics, computed over the global batch.

Labels: ``call`` needs them (``labels=None`` is an error). A row whose label is negative (-1) is
unlabelled: its discriminative term has weight zero, its other terms count. Note that the core data
pipeline gives label 0 to every row of a data set without labels, which the objective cannot tell
from class 0: train ``factorized`` on labelled data, or set ``discriminative_weight: 0``.
"""

from __future__ import annotations

from typing import Annotated, Any

import keras
from keras import layers, ops

from mmkeras.distribute import local_contribution, num_replicas
from mmkeras.losses.cca import global_batch
from mmkeras.losses.factorized import cross_correlation_penalty, mmd_to_standard_normal
from mmkeras.losses.reconstruction import RECONSTRUCTIONS, masked_reconstruction
from mmkeras.objectives.base import DecodingObjective, check_likelihoods
from mmkeras.params import Field, Int, NonNegativeFloat, PositiveFloat, PositiveInt


@keras.saving.register_keras_serializable(package="mmkeras")
class Factorized(DecodingObjective):
    """MFM-style factorised objective: a shared discriminative factor (the joint latent) that
    predicts the labels, modality-specific generative factors (the modality features), each
    modality reconstructed from [shared; specific], both factors matched to N(0, I) by MMD, and
    a no-overlap penalty between them (module docstring). Metrics: ``discriminative``,
    ``generative``, ``prior``, ``orthogonality`` and ``recon_<m>`` per decoder.

    Args:
        decoders: ``{modality: {name: <head>, params: {...}}}``, built with ``output_shape`` = its
            input shape.
        num_classes: the classifier's outputs.
        likelihoods: ``{modality: mse | gaussian | bernoulli | categorical}`` (mse by default).
        classifier_units: the classifier's hidden ReLU layers.
        discriminative_weight: the weight of L_disc.
        generative_weight: the weight of L_gen.
        prior_weight: the weight of L_prior.
        orthogonality_weight: the weight of L_ortho.
        bandwidth: of the MMD kernel.
    """

    def __init__(
        self,
        decoders: dict[str, dict[str, Any]],
        num_classes: Annotated[Int, Field(ge=2)],
        likelihoods: dict[str, str] | None = None,
        classifier_units: list[PositiveInt] = (),  # type: ignore[assignment]
        discriminative_weight: NonNegativeFloat = 1.0,
        generative_weight: NonNegativeFloat = 1.0,
        prior_weight: NonNegativeFloat = 1.0,
        orthogonality_weight: NonNegativeFloat = 1.0,
        bandwidth: PositiveFloat = 1.0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self._keep_decoders(decoders)
        self.likelihoods, _ = check_likelihoods(self.decoders, likelihoods, allowed=RECONSTRUCTIONS)
        self.num_classes = num_classes
        self.classifier_units = list(classifier_units)
        self.discriminative_weight = discriminative_weight
        self.generative_weight = generative_weight
        self.prior_weight = prior_weight
        self.orthogonality_weight = orthogonality_weight
        self.bandwidth = bandwidth
        self.classifier = [
            layers.Dense(u, activation="relu", name=f"classifier_{i}", dtype="float32")
            for i, u in enumerate(self.classifier_units)
        ] + [layers.Dense(self.num_classes, name="classifier_logits", dtype="float32")]

    # -- state -------------------------------------------------------------------------
    def build(self, outputs_shape, labels_shape=None):
        shared = int(outputs_shape.joint[-1])
        sizes = {m: int(s[-1]) for m, s in outputs_shape.features.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(
                f"factorized decodes [shared; specific] with one decoder per modality, so the modality features "
                f"(the specific factors) need one size; got {sizes}"
            )
        targets = self._target_shapes(outputs_shape, "factorized")
        self._make_decoders(shared + next(iter(sizes.values())), targets)
        self._build_classifier(shared)
        self._shapes["shared_dim"] = shared

    def _build_classifier(self, shared_dim: int) -> None:
        shape = (None, shared_dim)
        for dense in self.classifier:
            dense.build(shape)
            shape = (None, dense.units)

    def build_from_config(self, config):
        if config:
            super().build_from_config(config)
            self._build_classifier(int(config["shared_dim"]))
            self._shapes["shared_dim"] = int(config["shared_dim"])

    # -- loss ----------------------------------------------------------------------------
    def logits(self, shared):
        """The classifier's logits [B, num_classes] for shared factors [B, d_y]."""
        h = ops.cast(shared, "float32")
        for dense in self.classifier:
            h = dense(h)
        return h

    def _discriminative(self, shared, labels, any_present):
        if labels is None:
            raise ValueError(
                "factorized: the discriminative term needs labels; the data gave none (set discriminative_weight: 0 "
                "and pass labels of -1 for unlabelled training)"
            )
        labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
        labelled = ops.cast(labels >= 0, "float32") * any_present
        per_row = keras.losses.sparse_categorical_crossentropy(
            ops.maximum(labels, 0), self.logits(shared), from_logits=True
        )
        return local_contribution(ops.where(labelled > 0, per_row, 0.0), labelled)

    def call(self, outputs, labels=None):
        inputs = outputs.inputs
        masks = {m: ops.cast(outputs.masks[m], "float32") for m in sorted(outputs.features)}
        any_present = ops.max(ops.stack([masks[m] for m in masks], 0), axis=0)
        shared = ops.cast(outputs.joint, "float32")
        specific = {m: ops.cast(outputs.features[m], "float32") for m in masks}
        result: dict[str, Any] = {"discriminative": self._discriminative(shared, labels, any_present)}

        generative = ops.zeros((), "float32")
        for t in sorted(self.decoders):
            if t not in inputs:  # missing from the whole batch
                result[f"recon_{t}"] = ops.zeros((), "float32")
                continue
            code = ops.concatenate([shared, ops.where(ops.expand_dims(masks[t], 1) > 0, specific[t], 0.0)], axis=-1)
            try:
                result[f"recon_{t}"] = masked_reconstruction(
                    self.likelihoods.get(t, "mse"), self.decoder_layers[t](code), inputs[t], masks[t]
                )
            except ValueError as exc:
                raise ValueError(f"decoders.{t}: {exc}") from None
            generative = generative + result[f"recon_{t}"]
        result["generative"] = generative

        # batch statistics: over the global batch, the same value on every replica
        replicas = float(num_replicas())
        global_shared, global_any = global_batch(shared), global_batch(any_present)
        prior = mmd_to_standard_normal(global_shared, global_any, self.bandwidth)
        orthogonality = ops.zeros((), "float32")
        for m in masks:
            global_specific, global_mask = global_batch(specific[m]), global_batch(masks[m])
            prior = prior + mmd_to_standard_normal(global_specific, global_mask, self.bandwidth)
            orthogonality = orthogonality + cross_correlation_penalty(global_shared, global_specific, global_mask)
        result["prior"] = prior / replicas
        result["orthogonality"] = orthogonality / replicas

        result["loss"] = (
            self.discriminative_weight * result["discriminative"]
            + self.generative_weight * result["generative"]
            + self.prior_weight * result["prior"]
            + self.orthogonality_weight * result["orthogonality"]
        )
        return result
