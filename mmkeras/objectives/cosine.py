"""Strong coordination by cosine similarity over every pair of present modalities: the mean over
pairs a < b of :func:`mmkeras.losses.cosine_distance` (z_a, z_b), 1 - cos averaged over the rows
where both are present. This is the "strong coordination" of Baltrusaitis, Ahuja and Morency
(2019), "Multimodal Machine Learning: A Survey and Taxonomy", as used e.g. by Frome et al. (2013,
DeViSE) with a similarity metric instead of a ranking: the paired representations are pulled to
the same direction, with no negatives.
"""

from __future__ import annotations

import keras
from keras import ops

from mmkeras.losses.contrastive import cosine_distance
from mmkeras.objectives._contrastive import modality_pairs
from mmkeras.objectives.base import Objective


@keras.saving.register_keras_serializable(package="mmkeras")
class CosineCoordination(Objective):
    """1 - cosine similarity of paired latents, averaged over rows and modality pairs."""

    def call(self, outputs, labels=None):
        latents, masks = outputs.latents, outputs.masks
        pairs = modality_pairs(latents, "cosine")
        result = {}
        for a, b in pairs:
            both = ops.cast(masks[a], "float32") * ops.cast(masks[b], "float32")
            result[f"cos_dist_{a}_{b}"] = cosine_distance(latents[a], latents[b], both)
        result["loss"] = sum(result.values()) / len(pairs)
        return result
