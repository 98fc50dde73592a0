"""DMC, deep multimodal clustering (Hu, Nie and Li, CVPR 2019, "Deep Multimodal Clustering for
Unsupervised Audiovisual Learning"): each modality's token features (an encoder with ``output:
tokens``: image patches, sequence steps) are clustered per sample into K centres by ``iterations``
soft k-means steps at ``temperature``, and for every pair of modalities a < b the loss is the
max-margin loss aligning centre k of a with centre k of b of the same sample against the other
samples' centres (margin alpha), averaged over the pairs. The maths, and where it departs from the
paper, is in :mod:`mmkeras.losses.dmc`.

The loss reads ``record.features`` (the tokens), not the latents: the head and the fusion get no
gradient from it. Each modality's centres are gathered once per step; under tf.distribute the local
rows are ranked against the global batch. A row where either modality of a pair is missing is
neither an anchor nor a negative for that pair.
"""

from __future__ import annotations

from typing import Annotated, Literal

import keras
from pydantic import Field

from mmkeras.errors import RecipeError
from mmkeras.losses.contrastive import both_present, gather
from mmkeras.losses.dmc import centre_similarity, centre_vectors, dmc_loss, soft_kmeans
from mmkeras.objectives._contrastive import chosen_pairs
from mmkeras.objectives.base import Objective, validated_pairs
from mmkeras.params import NonNegativeFloat, PositiveFloat, PositiveInt


@keras.saving.register_keras_serializable(package="mmkeras")
class DMC(Objective):
    """Deep multimodal clustering: per-sample soft k-means of each modality's tokens, then a
    max-margin loss aligning matching centres of paired modalities. Metrics: ``dmc_{a}_{b}`` (the
    pair's hinge loss) and ``sim_{a}_{b}`` (the mean cosine of matching centres over present rows).

    Args:
        clusters: K, the centres per sample and modality (at most the tokens per sample).
        iterations: the soft k-means rounds (assignment, then centre update).
        temperature: tau of the soft assignment softmax over cosine similarities.
        margin: alpha of the max-margin loss.
        pairs: ``all`` (every pair a < b of the model's modalities) or a list of ``[a, b]`` pairs.
    """

    def __init__(
        self,
        clusters: PositiveInt = 2,
        iterations: PositiveInt = 3,
        temperature: PositiveFloat = 0.1,
        margin: NonNegativeFloat = 0.2,
        pairs: Literal["all"] | list[Annotated[list[str], Field(min_length=2, max_length=2)]] = "all",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.clusters = int(clusters)
        self.iterations = int(iterations)
        self.temperature = float(temperature)
        self.margin = float(margin)
        self.pairs = validated_pairs(pairs)

    def modality_pairs(self, modalities: list[str]) -> list[tuple[str, str]]:
        """The pairs this objective scores, each sorted, checked against the model's modalities."""
        return chosen_pairs(self.pairs, modalities, "dmc")

    def build(self, outputs_shape, labels_shape=None):
        # checked here: Keras re-raises errors from call() with one string, garbling a RecipeError
        pairs = self.modality_pairs(list(outputs_shape.masks))
        used = sorted({m for p in pairs for m in p})
        shapes = {m: tuple(outputs_shape.features[m]) for m in used}
        problems = [
            f"modalities.{m}.encoder: dmc clusters token features [B, T, d]; this encoder gives shape {s}: "
            "give it `output: tokens` (conv2d, conv1d) or another encoder that returns tokens"
            for m, s in shapes.items()
            if len(s) != 3 or s[1] is None
        ]
        problems += [
            f"objective.params.clusters: {self.clusters} clusters but modality {m} has {s[1]} tokens per sample"
            for m, s in shapes.items()
            if len(s) == 3 and s[1] is not None and s[1] < self.clusters
        ]
        sizes = {m: s[-1] for m, s in shapes.items()}
        if not problems and len(set(sizes.values())) > 1:
            problems.append(
                f"model.feature_dim: dmc compares centres across modalities, which need one token size; got {sizes}"
            )
        if problems:
            raise RecipeError(problems)
        self.built = True

    def build_from_config(self, config):
        self.built = True  # no weights: nothing to rebuild from the saved shapes

    def call(self, outputs, labels=None):
        pairs = self.modality_pairs(list(outputs.masks))
        used = sorted({m for p in pairs for m in p})
        centres = {
            m: centre_vectors(soft_kmeans(outputs.features[m], self.clusters, self.iterations, self.temperature)[1])
            for m in used
        }
        masks = {m: gather(keras.ops.cast(outputs.masks[m], "float32")) for m in used}
        result = {}
        for a, b in pairs:
            both = both_present(masks[a], masks[b])
            result[f"dmc_{a}_{b}"] = dmc_loss(centres[a], centres[b], self.margin, both)
            result[f"sim_{a}_{b}"] = centre_similarity(centres[a], centres[b], both)
        result["loss"] = sum(result[f"dmc_{a}_{b}"] for a, b in pairs) / len(pairs)
        return result
