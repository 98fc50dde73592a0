"""GMC: Geometric Multimodal Contrastive learning (Poklukar, Vasco et al., ICML 2022,
"Geometric Multimodal Contrastive Representation Learning").

Every modality m has its own encoder, a joint encoder sees all modalities, and one shared head
maps both to the unit sphere: z_m and z_J (the record's ``latents[m]`` and ``joint``). Each
modality is contrasted with the joint representation of the same sample: L = sum_m l_m, with the
terms of :func:`mmkeras.losses.gmc_terms` in one of two forms, ``variant="official"`` (the
authors' code, ``gmc_code/unsupervised``: NT-Xent between the joint and the modality, the
positive kept in the denominator) or ``variant="paper"`` (Eq. 2: the modality as the only anchor,
the positive excluded). A sample whose modality m is missing drops out of term m. The joint and
each modality's latents and mask are gathered once per step; under tf.distribute the local rows
are scored against the global batch.

Supervised variant (the authors' CMU-MOSEI code): a prediction head on z_J,
y_hat = W (z + P2 relu(P1 z)) (:class:`~mmkeras.layers.prediction.ResidualPredictionHead`),
trained jointly with cross-entropy (``task: classification``) or L1 (``task: regression``, as for
MOSEI): L + prediction_weight * L_pred.
"""

from __future__ import annotations

from typing import Any, Literal

import keras
from keras import ops

from mmkeras.layers.prediction import ResidualPredictionHead
from mmkeras.losses.contrastive import gather, gather_normalized, gmc_terms
from mmkeras.losses.supervised import prediction_loss
from mmkeras.objectives.base import Objective
from mmkeras.params import NonNegativeFloat, PositiveFloat


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
        return prediction_loss(self.predict_from_joint(joint), labels, present, self.task, "l1")

    def call(self, outputs, labels=None):
        masks = outputs.masks
        latents = {m: gather_normalized(z) for m, z in outputs.latents.items()}
        gathered_masks = {m: gather(ops.cast(masks[m], "float32")) for m in latents}
        terms = gmc_terms(gather_normalized(outputs.joint), latents, self.temperature, gathered_masks, self.variant)
        result = {f"gmc_{m}": t for m, t in terms.items()}
        loss = sum(terms.values())
        if self.supervised:
            present = ops.max(ops.stack([ops.cast(masks[m], "float32") for m in sorted(masks)], 0), 0)
            result["prediction"] = self.prediction_loss(outputs.joint, labels, present)
            loss = loss + self.prediction_weight * result["prediction"]
        result["loss"] = loss
        return result

    def get_build_config(self):
        return None  # MultimodalModel.build calls the objective, which builds the prediction head
