"""Supervised: a prediction head on the joint representation, trained alone against the labels (the
baseline without contrastive terms for GMC's supervised experiment, Poklukar, Vasco et al., ICML 2022,
Table 4, and for MultiBench's late-fusion models).

The head reads the record's joint latent z_J and predicts y^ = head(z_J); the loss is the mean over
the rows that have at least one modality present of

    e = -log softmax(y^)_y          (task: classification)
    e = |y^ - y|   or   (y^ - y)^2  (task: regression, loss: l1 or mse)

(:func:`mmkeras.losses.prediction_errors`). ``head: residual`` is GMC's
y^ = W (z + P2 relu(P1 z)) + b (:class:`~mmkeras.layers.prediction.ResidualPredictionHead`);
``head: linear`` is y^ = W z + b.
"""

from __future__ import annotations

from typing import Any, Literal

import keras
from keras import layers, ops

from mmkeras.layers.prediction import ResidualPredictionHead
from mmkeras.losses.supervised import prediction_loss
from mmkeras.objectives.base import Objective


@keras.saving.register_keras_serializable(package="mmkeras")
class Supervised(Objective):
    """A prediction head on the joint latent trained with the labels alone, no contrastive terms:
    cross-entropy, L1 or squared error over the rows with a modality present (module docstring).

    Args:
        task: ``regression`` (one output, the ``loss`` below) or ``classification`` (cross-entropy
            over ``num_classes`` logits).
        num_classes: the number of classes, at least 2 (classification only).
        loss: the regression error: ``l1`` (as GMC's CMU-MOSEI code) or ``mse``.
        head: ``residual`` (GMC's residual prediction head) or ``linear``.

    Metrics: ``prediction`` (equal to ``loss``). Its weights are created when the model is built.
    """

    def __init__(
        self,
        task: Literal["classification", "regression"] = "regression",
        num_classes: int = 2,
        loss: Literal["l1", "mse"] = "l1",
        head: Literal["residual", "linear"] = "residual",
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if task == "classification" and num_classes < 2:
            raise ValueError(f"num_classes must be at least 2 for classification, got {num_classes}")
        self.task = task
        self.num_classes = int(num_classes)
        self.loss = loss
        self.head = head
        outputs = self.num_classes if task == "classification" else 1
        if head == "residual":
            self.prediction_head = ResidualPredictionHead(outputs, name="prediction_head", dtype="float32")
        else:
            self.prediction_head = layers.Dense(outputs, name="prediction_head", dtype="float32")

    def predict_from_joint(self, joint: Any) -> Any:
        """The prediction head's output for joint latents [B, d]: logits, or [B, 1] regression values."""
        return self.prediction_head(ops.cast(joint, "float32"))

    def call(self, outputs, labels=None):
        if labels is None:
            raise ValueError("supervised: the objective needs labels; the data set gave none")
        masks = outputs.masks
        present = ops.max(ops.stack([ops.cast(masks[m], "float32") for m in sorted(masks)], 0), 0)
        prediction = prediction_loss(self.predict_from_joint(outputs.joint), labels, present, self.task, self.loss)
        return {"prediction": prediction, "loss": prediction}

    def get_build_config(self):
        return None  # MultimodalModel.build calls the objective, which builds the prediction head
