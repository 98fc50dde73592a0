"""The visual-semantic embedding max-margin (hinge) loss, in both directions, over every pair of
present modalities: the mean over pairs a < b of :func:`mmkeras.losses.vse_hinge` (z_a, z_b), with
the sum over negatives of Kiros, Salakhutdinov and Zemel (2014) or the hardest negative of VSE++
(Faghri et al., 2018). Each modality's latents and mask are gathered once per step; the negatives
come from the global batch under tf.distribute.
"""

from __future__ import annotations

from typing import Literal

import keras

from mmkeras.losses.contrastive import both_present, vse_hinge
from mmkeras.objectives._contrastive import gathered_latents, modality_pairs
from mmkeras.objectives.base import Objective
from mmkeras.params import NonNegativeFloat


@keras.saving.register_keras_serializable(package="mmkeras")
class VSEHinge(Objective):
    """Bidirectional max-margin ranking loss over cosine similarities of paired latents.

    margin: alpha (0.2 in VSE++). negatives: ``sum`` over all negatives (VSE) or the
    ``hardest`` negative only (VSE++).
    """

    def __init__(self, margin: NonNegativeFloat = 0.2, negatives: Literal["sum", "hardest"] = "sum", **kwargs):
        super().__init__(**kwargs)
        self.margin = float(margin)
        self.negatives = negatives

    def call(self, outputs, labels=None):
        pairs = modality_pairs(outputs.latents, "hinge")
        z, masks = gathered_latents(outputs)
        result = {
            f"hinge_{a}_{b}": vse_hinge(z[a], z[b], self.margin, self.negatives, both_present(masks[a], masks[b]))
            for a, b in pairs
        }
        result["loss"] = sum(result.values()) / len(pairs)
        return result
