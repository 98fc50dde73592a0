"""Strong coordination by cosine similarity over every pair of present modalities.

For modalities a, b and rows i where both are present,
    L_ab = 1/N_ab * sum_i (1 - cos(z_a,i , z_b,i)),   cos(u, v) = <u, v> / (|u| |v|),
and the loss is the mean of L_ab over all pairs a < b. This is the "strong coordination"
of Baltrusaitis, Ahuja and Morency (2019), "Multimodal Machine Learning: A Survey and
Taxonomy", as used e.g. by Frome et al. (2013, DeViSE) with a similarity metric instead of
a ranking: the paired representations are pulled to the same direction, with no negatives.
"""

from __future__ import annotations

import itertools

import keras
from keras import ops

from mmkeras.distribute import local_contribution
from mmkeras.objectives.base import Objective
from mmkeras.objectives.infonce import l2_normalize


def cosine_distance(z_a, z_b, mask=None):
    """This replica's contribution to the mean of 1 - cos(z_a,i, z_b,i) over rows with ``mask`` 1."""
    per_row = 1.0 - ops.sum(l2_normalize(z_a) * l2_normalize(z_b), axis=-1)
    return local_contribution(per_row, mask)


@keras.saving.register_keras_serializable(package="mmkeras")
class CosineCoordination(Objective):
    """1 - cosine similarity of paired latents, averaged over rows and modality pairs."""

    def metric_names(self, modalities):
        return [f"cos_dist_{a}_{b}" for a, b in itertools.combinations(sorted(modalities), 2)]

    def call(self, outputs, labels=None):
        latents, masks = outputs["latents"], outputs["masks"]
        pairs = list(itertools.combinations(sorted(latents), 2))
        if not pairs:
            raise ValueError("cosine needs at least two modalities")
        result = {}
        total = 0.0
        for a, b in pairs:
            both = ops.cast(masks[a], "float32") * ops.cast(masks[b], "float32")
            result[f"cos_dist_{a}_{b}"] = cosine_distance(latents[a], latents[b], both)
            total = total + result[f"cos_dist_{a}_{b}"]
        result["loss"] = total / len(pairs)
        return result
