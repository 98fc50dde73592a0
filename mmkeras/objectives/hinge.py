"""The visual-semantic embedding max-margin (hinge) loss, in both directions, over every pair
of present modalities.

For modalities a, b with s(u, v) the cosine similarity, margin alpha, and rows i where both
are present, the negatives of row i are the other present rows j != i of the (global) batch:
    sum:      l_i = sum_j [alpha - s(a_i, b_i) + s(a_i, b_j)]_+  +  sum_j [alpha - s(a_i, b_i) + s(a_j, b_i)]_+
    hardest:  l_i = max_j [alpha - s(a_i, b_i) + s(a_i, b_j)]_+  +  max_j [alpha - s(a_i, b_i) + s(a_j, b_i)]_+
L_ab is the mean of l_i over the rows, and the loss the mean of L_ab over pairs a < b.
The sum over negatives is Kiros, Salakhutdinov and Zemel (2014), "Unifying Visual-Semantic
Embeddings with Multimodal Neural Language Models"; the hardest negative is VSE++ (Faghri et
al., 2018, "VSE++: Improving Visual-Semantic Embeddings with Hard Negatives"). Both papers sum
l_i over the batch; the mean used here only rescales the learning rate and keeps the loss
independent of the batch size. Negatives come from the global batch under tf.distribute.
"""

from __future__ import annotations

import itertools
from typing import Literal

import keras
from keras import ops

from mmkeras.distribute import cross_replica_gather, local_contribution
from mmkeras.objectives.base import Objective
from mmkeras.objectives.infonce import l2_normalize
from mmkeras.params import NonNegativeFloat


def _violations(anchors, others, positive, margin, col_mask, negatives):
    """Per local anchor row: the hinge over the global columns of ``others`` except its own."""
    cols, offset = cross_replica_gather(others)
    col_valid, _ = cross_replica_gather(col_mask)
    sim = ops.matmul(anchors, ops.transpose(cols))
    own = ops.one_hot(ops.arange(ops.shape(anchors)[0]) + offset, ops.shape(cols)[0], dtype="float32")
    valid = ops.expand_dims(col_valid, 0) * (1.0 - own)
    hinge = ops.relu(margin - ops.expand_dims(positive, 1) + sim) * valid
    return ops.max(hinge, axis=1) if negatives == "hardest" else ops.sum(hinge, axis=1)


def vse_hinge(z_a, z_b, margin: float = 0.2, negatives: str = "sum", mask=None):
    """This replica's contribution to the bidirectional VSE hinge loss between two [B, d] batches
    (row i of each is a positive pair); ``mask`` [B] marks rows where both are present."""
    a, b = l2_normalize(z_a), l2_normalize(z_b)
    m = ops.ones((ops.shape(a)[0],), "float32") if mask is None else ops.cast(mask, "float32")
    positive = ops.sum(a * b, axis=-1)
    per_row = _violations(a, b, positive, margin, m, negatives) + _violations(b, a, positive, margin, m, negatives)
    return local_contribution(per_row, m)


@keras.saving.register_keras_serializable(package="mmkeras")
class VSEHinge(Objective):
    """Bidirectional max-margin ranking loss over cosine similarities of paired latents.

    margin: alpha (0.2 in VSE++). negatives: ``sum`` over all negatives (VSE) or the
    ``hardest`` negative only (VSE++).
    """

    def __init__(self, margin: NonNegativeFloat = 0.2, negatives: Literal["sum", "hardest"] = "sum", **kwargs):
        super().__init__(**kwargs)
        if margin < 0:
            raise ValueError(f"margin must be non-negative, got {margin}")
        if negatives not in ("sum", "hardest"):
            raise ValueError(f"negatives must be 'sum' or 'hardest', got {negatives!r}")
        self.margin = float(margin)
        self.negatives = negatives

    def metric_names(self, modalities):
        return [f"hinge_{a}_{b}" for a, b in itertools.combinations(sorted(modalities), 2)]

    def call(self, outputs, labels=None):
        latents, masks = outputs["latents"], outputs["masks"]
        pairs = list(itertools.combinations(sorted(latents), 2))
        if not pairs:
            raise ValueError("hinge needs at least two modalities")
        result = {}
        total = 0.0
        for a, b in pairs:
            both = ops.cast(masks[a], "float32") * ops.cast(masks[b], "float32")
            result[f"hinge_{a}_{b}"] = vse_hinge(latents[a], latents[b], self.margin, self.negatives, both)
            total = total + result[f"hinge_{a}_{b}"]
        result["loss"] = total / len(pairs)
        return result

    def get_config(self):
        return {**super().get_config(), "margin": self.margin, "negatives": self.negatives}
