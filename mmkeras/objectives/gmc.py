"""GMC: Geometric Multimodal Contrastive learning (Poklukar, Vasco et al., ICML 2022,
"Geometric Multimodal Contrastive Representation Learning").

Every modality m has its own encoder, a joint encoder sees all modalities, and one shared head
maps both to the unit sphere: z_m and z_J (the record's ``latents[m]`` and ``joint``). Each
modality is contrasted with the joint representation of the same sample. With
s(a, b) = exp(<a, b> / tau) on L2-normalised vectors and B samples per batch, two forms:

``variant="official"`` (the authors' code, ``gmc_code/unsupervised``): for each modality m,
Z = [z_J,1..B ; z_m,1..B] (2B rows). Row k's positive p(k) is its joint/modality partner and
stays in the denominator; the row itself does not:

    l_m(k) = -log( s(Z_k, Z_p(k)) / sum_{j != k} s(Z_k, Z_j) ),
    L = mean over the 2B rows k of sum_m l_m(k) = sum_m mean_k l_m(k).

``variant="paper"`` (Eq. 2 of the paper): one anchor per sample, the modality, with the
positive excluded from the denominator and the negatives drawn from the modality-joint,
modality-modality and joint-joint similarities of the other samples:

    l_m(i) = -log( s(z_m,i, z_J,i) / sum_{j != i} [ s(z_m,i, z_J,j) + s(z_m,i, z_m,j) + s(z_J,i, z_J,j) ] ),
    L = sum_m mean_i l_m(i)

(the paper sums over i; the mean only rescales by 1/B so the learning rate means the same
thing as in the official code).

Masks: a sample whose modality m is missing drops out of term m entirely (its joint and modality
rows are neither anchors nor negatives there), and each term is the mean over its present
rows, so a term equals the unmasked term on the present rows. Under tf.distribute the local rows
are scored against the columns of the global batch.

Supervised variant (the authors' CMU-MOSEI code): a prediction head on z_J,
y_hat = W (z + P2 relu(P1 z)), trained jointly with cross-entropy (``task: classification``)
or L1 (``task: regression``, as for MOSEI): L + prediction_weight * L_pred.
"""

from __future__ import annotations

from typing import Any, Literal

import keras
from keras import layers, ops

from mmkeras.distribute import cross_replica_gather, local_contribution
from mmkeras.objectives.base import Objective
from mmkeras.params import NonNegativeFloat, PositiveFloat

_NEG = -1e9
VARIANTS = ("official", "paper")


def _normalize(x):
    x = ops.cast(x, "float32")
    return x / ops.maximum(ops.norm(x, axis=-1, keepdims=True), 1e-12)


def _named(values: Any, what: str) -> dict[str, Any]:
    if isinstance(values, dict):
        return dict(values)
    if isinstance(values, (list, tuple)):
        return {str(i): v for i, v in enumerate(values)}
    raise TypeError(f"gmc: {what} must be a list or a dict of [B, d] tensors, got {type(values).__name__}")


def gmc_terms(
    joint: Any,
    modality_reps: Any,
    temperature: float = 0.1,
    mask: Any = None,
    variant: str = "official",
) -> dict[str, Any]:
    """The per-modality GMC terms (see the module docstring), keyed by modality name (list
    inputs are keyed ``"0"``, ``"1"``, ...). Each is this replica's contribution to the global mean.

    joint: [B, d]; modality_reps: list or dict of [B, d]; mask: matching list or dict of [B]
    presence (1.0 present), or None for all present.
    """
    if variant not in VARIANTS:
        raise ValueError(f"gmc: variant must be one of {list(VARIANTS)}, got {variant!r}")
    if temperature <= 0:
        raise ValueError(f"gmc: temperature must be positive, got {temperature}")
    reps = _named(modality_reps, "modality_reps")
    if not reps:
        raise ValueError("gmc: at least one modality representation is needed")
    masks = _named(mask, "mask") if mask is not None else {}
    if mask is not None and sorted(masks) != sorted(reps):
        raise ValueError(f"gmc: mask must name the same modalities as modality_reps: {sorted(masks)} vs {sorted(reps)}")
    inv_tau = 1.0 / float(temperature)
    z_j = _normalize(joint)
    joint_all, offset = cross_replica_gather(z_j)
    rows = ops.arange(ops.shape(z_j)[0]) + offset
    is_self = ops.expand_dims(rows, 1) == ops.expand_dims(ops.arange(ops.shape(joint_all)[0]), 0)
    jj = inv_tau * ops.matmul(z_j, ops.transpose(joint_all))  # joint-joint, shared by every term
    terms = {}
    for name, rep in reps.items():
        z_m = _normalize(rep)
        m = ops.cast(masks[name], "float32") if name in masks else ops.ones((ops.shape(z_m)[0],), "float32")
        m_all, _ = cross_replica_gather(m)
        z_m_all, _ = cross_replica_gather(z_m)
        col_ok = ops.expand_dims(m_all, 0) > 0
        neg_ok = ops.logical_and(col_ok, ops.logical_not(is_self))
        mj = inv_tau * ops.matmul(z_m, ops.transpose(joint_all))
        mm = inv_tau * ops.matmul(z_m, ops.transpose(z_m_all))
        positive = inv_tau * ops.sum(z_j * z_m, axis=-1)
        if variant == "official":
            jm = inv_tau * ops.matmul(z_j, ops.transpose(z_m_all))
            joint_rows = ops.logsumexp(
                ops.concatenate([ops.where(neg_ok, jj, _NEG), ops.where(col_ok, jm, _NEG)], 1), 1
            )
            mod_rows = ops.logsumexp(ops.concatenate([ops.where(col_ok, mj, _NEG), ops.where(neg_ok, mm, _NEG)], 1), 1)
            per_row = ops.concatenate([joint_rows - positive, mod_rows - positive], 0)
            weights = ops.concatenate([m, m], 0)
        else:
            blocks = [ops.where(neg_ok, s, _NEG) for s in (mj, mm, jj)]
            has_negatives = ops.any(neg_ok, axis=1)  # a lone present sample has no negatives: no term
            per_row = ops.where(has_negatives, ops.logsumexp(ops.concatenate(blocks, 1), 1) - positive, 0.0)
            weights = m * ops.cast(has_negatives, "float32")
        terms[name] = local_contribution(ops.where(weights > 0, per_row, 0.0), weights)
    return terms


def gmc_loss(
    joint: Any,
    modality_reps: Any,
    temperature: float = 0.1,
    mask: Any = None,
    variant: str = "official",
) -> Any:
    """The GMC loss: the sum over modalities of :func:`gmc_terms` (formulas in the module docstring)."""
    terms = gmc_terms(joint, modality_reps, temperature, mask, variant)
    return sum(terms.values())


@keras.saving.register_keras_serializable(package="mmkeras")
class ResidualPredictionHead(keras.layers.Layer):
    """y = W (z + P2 relu(P1 z)) + b, with P1, P2 d x d for inputs z of size d: the prediction
    head of GMC's supervised code. ``outputs``: the number of classes, or 1 for regression."""

    def __init__(self, outputs: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.outputs = int(outputs)

    def build(self, input_shape):
        d = int(input_shape[-1])
        self.proj1 = layers.Dense(d, name="proj1", dtype=self.dtype_policy)
        self.proj2 = layers.Dense(d, name="proj2", dtype=self.dtype_policy)
        self.out = layers.Dense(self.outputs, name="out", dtype=self.dtype_policy)
        for dense in (self.proj1, self.proj2, self.out):
            dense.build(input_shape)

    def call(self, z):
        return self.out(z + self.proj2(ops.relu(self.proj1(z))))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.outputs)

    def get_config(self):
        return {**super().get_config(), "outputs": self.outputs}


@keras.saving.register_keras_serializable(package="mmkeras")
class GMC(Objective):
    """GMC's contrastive loss between each modality's latent and the joint latent (module docstring).

    temperature: tau (0.1 on MHD, 0.3 on CMU-MOSEI in the paper). variant: ``official`` (the
    authors' code, the default) or ``paper`` (Eq. 2). supervised: also train a
    :class:`ResidualPredictionHead` on the joint latent against the labels (its weights are
    created when the model is built). task: ``classification`` (cross-entropy over
    ``num_classes``) or ``regression`` (L1 on one output).
    Metrics: ``gmc_<modality>`` per term, and ``prediction`` when supervised.
    """

    def __init__(
        self,
        temperature: PositiveFloat = 0.1,
        variant: Literal["official", "paper"] = "official",
        supervised: bool = False,
        task: Literal["classification", "regression"] = "classification",
        num_classes: int = 10,
        prediction_weight: NonNegativeFloat = 1.0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {list(VARIANTS)}, got {variant!r}")
        if task not in ("classification", "regression"):
            raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
        if supervised and task == "classification" and num_classes < 2:
            raise ValueError(f"num_classes must be at least 2 for classification, got {num_classes}")
        self.temperature = float(temperature)
        self.variant = variant
        self.supervised = bool(supervised)
        self.task = task
        self.num_classes = int(num_classes)
        self.prediction_weight = float(prediction_weight)
        self.prediction_head = None
        if self.supervised:
            outputs = self.num_classes if task == "classification" else 1
            self.prediction_head = ResidualPredictionHead(outputs, name="prediction_head", dtype="float32")

    def metric_names(self, modalities: list[str]) -> list[str]:
        return [f"gmc_{m}" for m in sorted(modalities)] + (["prediction"] if self.supervised else [])

    def predict_from_joint(self, joint: Any) -> Any:
        """The prediction head's output for joint latents [B, d]: logits, or [B, 1] regression values."""
        if self.prediction_head is None:
            raise ValueError("this GMC objective has no prediction head; set supervised: true")
        return self.prediction_head(ops.cast(joint, "float32"))

    def prediction_loss(self, joint: Any, labels: Any, present: Any) -> Any:
        """Cross-entropy (classification) or L1 (regression) of the prediction head, as this
        replica's contribution to the mean over rows with ``present`` > 0."""
        if labels is None:
            raise ValueError("gmc: supervised: true needs labels; the data set gave none")
        out = self.predict_from_joint(joint)
        if self.task == "classification":
            targets = ops.cast(ops.reshape(labels, (-1,)), "int32")
            per_row = keras.losses.sparse_categorical_crossentropy(targets, out, from_logits=True)
        else:
            per_row = ops.abs(out[:, 0] - ops.cast(ops.reshape(labels, (-1,)), "float32"))
        return local_contribution(ops.where(present > 0, per_row, 0.0), present)

    def call(self, outputs, labels=None):
        masks = outputs["masks"]
        terms = gmc_terms(outputs["joint"], outputs["latents"], self.temperature, masks, self.variant)
        result = {f"gmc_{m}": t for m, t in terms.items()}
        loss = sum(terms.values())
        if self.supervised:
            present = ops.max(ops.stack([ops.cast(masks[m], "float32") for m in sorted(masks)], 0), 0)
            result["prediction"] = self.prediction_loss(outputs["joint"], labels, present)
            loss = loss + self.prediction_weight * result["prediction"]
        result["loss"] = loss
        return result

    def get_build_config(self):
        return None  # MultimodalModel.build calls the objective, which builds the prediction head

    def get_config(self):
        return {
            **super().get_config(),
            "temperature": self.temperature,
            "variant": self.variant,
            "supervised": self.supervised,
            "task": self.task,
            "num_classes": self.num_classes,
            "prediction_weight": self.prediction_weight,
        }
