"""Supervised contrastive fine-tuning (Khosla et al., NeurIPS 2020, "Supervised Contrastive
Learning", L^sup_out) on the joint latents of every augmented view, as in CoMM's fine-tuning;
the formula is :func:`mmkeras.losses.supervised_contrastive`.
"""

from __future__ import annotations

import keras
from keras import ops

from mmkeras.losses.contrastive import gather, gather_normalized, supervised_contrastive
from mmkeras.objectives.base import Objective
from mmkeras.params import PositiveFloat, PositiveInt


@keras.saving.register_keras_serializable(package="mmkeras")
class SupCon(Objective):
    """Supervised contrastive loss L^sup_out (:func:`mmkeras.losses.supervised_contrastive`) on the
    joint latents of ``views`` augmented views, with temperature tau. Rows with no modality present
    are neither anchors nor negatives. Used to fine-tune a pretrained model (CoMM's fine-tuning).
    """

    def __init__(self, temperature: PositiveFloat = 0.1, views: PositiveInt = 2, **kwargs):
        super().__init__(**kwargs)
        self.temperature = float(temperature)
        self.views = int(views)
        self.num_views = self.views  # the model reads this: one forward pass per view

    def call(self, outputs, labels=None):
        if labels is None:
            raise ValueError("supcon needs labels: the data set gave none")
        records = outputs.views or (outputs,)
        if len(records) != self.views:
            raise ValueError(f"supcon: expected {self.views} views, the model gave {len(records)}")
        masks = records[0].masks
        valid = ops.cast(sum(ops.cast(m, "float32") for m in masks.values()) > 0, "float32")
        y = ops.reshape(ops.cast(labels, "int32"), (-1,))
        z = [gather_normalized(r.joint) for r in records]
        return {"loss": supervised_contrastive(z, gather(y), self.temperature, gather(valid))}
