"""Factorized multimodal representations, MFM-style (Tsai, Liang, Zadeh, Morency and
Salakhutdinov, ICLR 2019, "Learning Factorized Multimodal Representations").

The factors, read from the model's record:
- the shared multimodal discriminative factor z_y = ``outputs["joint"]`` [B, d_y], the head
  applied to the fusion (give the model ``joint_encoders: separate`` so that, as in MFM, it comes
  from encoders of its own rather than from the specific factors);
- one modality-specific generative factor per modality, z_m = ``outputs["features"][m]`` [B, d_m],
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
e_m as in :mod:`mmkeras.objectives.dccae` (``likelihoods``: mse by default).

Prior matching (MFM uses MMD, as the Wasserstein autoencoder): with the Gaussian kernel
k(u, v) = exp(-||u - v||^2 / (bandwidth * d)) on d-dimensional factors, the squared MMD between
the factor's rows z_1..z_n and the prior P = N(0, I_d) is
    MMD^2 = 1/(n(n-1)) sum_{i != j} k(z_i, z_j) - 2/n sum_i E_{p~P} k(z_i, p) + E_{p, p'~P} k(p, p')
(the unbiased estimate of the within-factor term). Both expectations over the prior are taken in
closed form rather than from prior samples: with s = bandwidth * d / 2,
    E_p k(z, p)     = (s / (s + 1))^{d/2} exp(-||z||^2 / (2 (s + 1)))
    E_{p,p'} k(p, p') = (s / (s + 2))^{d/2}
so the term has no sampling noise. Scaling the squared distance by d keeps the kernel's width
matched to the prior's spread whatever the factor's size. Computed over the global batch.

No-overlap term (our choice; MFM's factorisation has none explicitly): Corr(z_y, z_m) is the
d_y x d_m matrix of Pearson correlations between the factors' dimensions over the rows where m is
present (each dimension centred and scaled to unit variance, +1e-6 in the variance); its mean
squared entry is zero exactly when no dimension of the specific factor is linearly correlated
with a dimension of the shared one. Computed over the global batch.

Labels: ``call`` needs them (``labels=None`` is an error). A row whose label is negative (-1) is
unlabelled: its discriminative term has weight zero, its other terms count. Note that the core data
pipeline gives label 0 to every row of a data set without labels, which the objective cannot tell
from class 0: train ``factorized`` on labelled data, or set ``discriminative_weight: 0``.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers, ops

from mmkeras.distribute import local_contribution, num_replicas
from mmkeras.errors import RecipeError
from mmkeras.objectives.autoencoder import _check_decoders
from mmkeras.objectives.base import DecodingObjective
from mmkeras.objectives.dcca import global_batch
from mmkeras.objectives.dccae import RECONSTRUCTIONS, masked_reconstruction
from mmkeras.objectives.kernel import kernel_matrix
from mmkeras.objectives.mvae import check_likelihoods
from mmkeras.params import NonNegativeFloat, PositiveFloat

VARIANCE_EPSILON = 1e-6


def mmd_to_standard_normal(z, weights=None, bandwidth: float = 1.0):
    """The squared MMD between the rows of ``z`` [n, d] where ``weights`` [n] is 1 and N(0, I_d),
    Gaussian kernel exp(-||u - v||^2 / (bandwidth d)), prior expectations in closed form (module
    docstring). Zero when fewer than two rows are present."""
    z = ops.cast(z, "float32")
    d = int(z.shape[-1])
    w = ops.ones((ops.shape(z)[0],), "float32") if weights is None else ops.cast(weights, "float32")
    present = w > 0
    z = ops.where(ops.expand_dims(present, 1), z, 0.0)  # a missing row's garbage never enters
    w = ops.where(present, w, 0.0)
    s = bandwidth * d / 2.0
    kernel = kernel_matrix(z, "rbf", gamma=1.0 / (2.0 * s))
    pair_weights = ops.expand_dims(w, 1) * ops.expand_dims(w, 0)
    count = ops.sum(w)
    pairs = count * count - ops.sum(w * w)
    within = (ops.sum(kernel * pair_weights) - ops.sum(w * w)) / ops.maximum(pairs, 1.0)  # k(z_i, z_i) = 1
    to_prior = (s / (s + 1.0)) ** (d / 2.0) * ops.exp(-ops.sum(z * z, axis=1) / (2.0 * (s + 1.0)))
    cross = ops.sum(w * to_prior) / ops.maximum(count, 1.0)
    prior = (s / (s + 2.0)) ** (d / 2.0)
    return ops.where(pairs > 0, within - 2.0 * cross + prior, 0.0)


def cross_correlation_penalty(a, b, weights=None):
    """The mean squared entry of the Pearson correlation matrix between the columns of ``a``
    [n, d_a] and ``b`` [n, d_b] over the rows where ``weights`` is 1 (module docstring)."""
    a, b = ops.cast(a, "float32"), ops.cast(b, "float32")
    w = ops.ones((ops.shape(a)[0],), "float32") if weights is None else ops.cast(weights, "float32")
    present = ops.expand_dims(w > 0, 1)
    col = ops.expand_dims(ops.where(w > 0, w, 0.0), 1)
    n = ops.maximum(ops.sum(col), 1.0)

    def standardise(x):
        x = ops.where(present, x, 0.0)
        centred = (x - ops.sum(x * col, axis=0, keepdims=True) / n) * col
        return centred / ops.sqrt(ops.sum(centred * centred, axis=0, keepdims=True) / n + VARIANCE_EPSILON)

    corr = ops.matmul(ops.transpose(standardise(a)), standardise(b)) / n
    return ops.mean(corr * corr)


@keras.saving.register_keras_serializable(package="mmkeras")
class Factorized(DecodingObjective):
    """MFM-style factorised objective: a shared discriminative factor (the joint latent) that
    predicts the labels, modality-specific generative factors (the modality features), each
    modality reconstructed from [shared; specific], both factors matched to N(0, I) by MMD, and
    a no-overlap penalty between them (module docstring).

    decoders: ``{modality: {name: <head>, params: {...}}}``, built with ``output_shape`` = its
    input shape. likelihoods: ``{modality: mse | gaussian | bernoulli | categorical}`` (mse by
    default). num_classes: the classifier's outputs; classifier_units: its hidden ReLU layers.
    bandwidth: of the MMD kernel. The four ``*_weight`` parameters weigh the terms. Metrics:
    ``discriminative``, ``generative``, ``prior``, ``orthogonality`` and ``recon_<m>`` per decoder.
    """

    def __init__(
        self,
        decoders: dict[str, dict[str, Any]],
        num_classes: int,
        likelihoods: dict[str, str] | None = None,
        classifier_units: list[int] = (),  # type: ignore[assignment]
        discriminative_weight: NonNegativeFloat = 1.0,
        generative_weight: NonNegativeFloat = 1.0,
        prior_weight: NonNegativeFloat = 1.0,
        orthogonality_weight: NonNegativeFloat = 1.0,
        bandwidth: PositiveFloat = 1.0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.decoders = _check_decoders(decoders)
        self.likelihoods, _ = check_likelihoods(self.decoders, likelihoods, allowed=RECONSTRUCTIONS)
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        self.num_classes = int(num_classes)
        self.classifier_units = [int(u) for u in classifier_units]
        if any(u < 1 for u in self.classifier_units):
            raise ValueError(f"classifier_units must be positive sizes, got {list(classifier_units)}")
        weights = {
            "discriminative_weight": discriminative_weight,
            "generative_weight": generative_weight,
            "prior_weight": prior_weight,
            "orthogonality_weight": orthogonality_weight,
        }
        negative = {k: v for k, v in weights.items() if v < 0}
        if negative:
            raise ValueError(f"the term weights must be non-negative, got {negative}")
        if bandwidth <= 0:
            raise ValueError(f"bandwidth must be positive, got {bandwidth}")
        self.discriminative_weight = float(discriminative_weight)
        self.generative_weight = float(generative_weight)
        self.prior_weight = float(prior_weight)
        self.orthogonality_weight = float(orthogonality_weight)
        self.bandwidth = float(bandwidth)
        self.classifier = [
            layers.Dense(u, activation="relu", name=f"classifier_{i}", dtype="float32")
            for i, u in enumerate(self.classifier_units)
        ] + [layers.Dense(self.num_classes, name="classifier_logits", dtype="float32")]
        self.decoder_layers: dict[str, keras.layers.Layer] = {}
        self._shapes: dict[str, Any] | None = None

    def metric_names(self, modalities):
        unknown = sorted(set(self.decoders) - set(modalities))
        if unknown:
            raise RecipeError(
                [f"objective.params.decoders.{unknown[0]}: no such modality; the model has {sorted(modalities)}"]
            )
        return ["discriminative", "generative", "prior", "orthogonality"] + [
            f"recon_{m}" for m in sorted(self.decoders)
        ]

    # -- state -------------------------------------------------------------------------
    def build(self, outputs_shape, labels_shape=None):
        shared = int(outputs_shape["joint"][-1])
        sizes = {m: int(s[-1]) for m, s in outputs_shape["features"].items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(
                f"factorized decodes [shared; specific] with one decoder per modality, so the modality features "
                f"(the specific factors) need one size; got {sizes}"
            )
        missing = sorted(set(self.decoders) - set(outputs_shape["inputs"]))
        if missing:
            raise ValueError(f"factorized: no input for decoder targets {missing} to take their shapes from")
        targets = {t: [int(d) for d in outputs_shape["inputs"][t][1:]] for t in sorted(self.decoders)}
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
        inputs = outputs["inputs"]
        masks = {m: ops.cast(outputs["masks"][m], "float32") for m in sorted(outputs["features"])}
        any_present = ops.max(ops.stack([masks[m] for m in masks], 0), axis=0)
        shared = ops.cast(outputs["joint"], "float32")
        specific = {m: ops.cast(outputs["features"][m], "float32") for m in masks}
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

    def get_config(self):
        return {
            **super().get_config(),
            "decoders": self.decoders,
            "num_classes": self.num_classes,
            "likelihoods": self.likelihoods,
            "classifier_units": self.classifier_units,
            "discriminative_weight": self.discriminative_weight,
            "generative_weight": self.generative_weight,
            "prior_weight": self.prior_weight,
            "orthogonality_weight": self.orthogonality_weight,
            "bandwidth": self.bandwidth,
        }
