"""Deep CCA objective: the negative sum of the top-k canonical correlations of two modalities'
latents (Andrew, Arora, Bilmes and Livescu, 2013); the maths and its float64 reasons are in
:mod:`mmkeras.losses.cca`. DCCA is defined for two views: give exactly two modalities or
``pair: [a, b]``.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mmkeras.distribute import num_replicas
from mmkeras.errors import RecipeError
from mmkeras.losses.cca import global_batch, top_k_correlation
from mmkeras.objectives.base import Objective
from mmkeras.params import NonNegativeFloat, PositiveFloat, PositiveInt


@keras.saving.register_keras_serializable(package="mmkeras")
class DeepCCA(Objective):
    """Negative sum of the top-k canonical correlations of two modalities' latents.

    pair: the two modalities (default: the model's two modalities). top_k: how many
    correlations (default, or more than min(o1, o2): all), capped at n - 1 for n rows where
    both views are present (the rest are exactly 0). r1, r2: ridge added to each view's
    covariance (at least 1e-10 times its mean variance). epsilon: floor on the squared
    correlations. Computed in float64. Use a batch larger than the latent size: below it the
    covariances are singular and only the ridge keeps the correlations below 1.
    """

    def __init__(
        self,
        pair: list[str] | None = None,
        top_k: PositiveInt | None = None,
        r1: NonNegativeFloat = 1e-3,
        r2: NonNegativeFloat = 1e-3,
        epsilon: PositiveFloat = 1e-6,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if pair is not None and (len(pair) != 2 or pair[0] == pair[1]):
            raise ValueError(f"pair must name two different modalities, got {pair!r}")
        self.pair = list(pair) if pair is not None else None
        self.top_k = int(top_k) if top_k is not None else None
        self.r1, self.r2, self.epsilon = float(r1), float(r2), float(epsilon)

    def views(self, modalities: list[str]) -> tuple[str, str]:
        """The two modalities this objective correlates, checked against the model's."""
        mods = sorted(modalities)
        if self.pair is None:
            if len(mods) != 2:
                problem = (
                    f"objective.params.pair: dcca is defined for two views and the model has {len(mods)} "
                    f"modalities {mods}; name two of them, e.g. pair: [{mods[0]}, {mods[-1]}]"
                )
                raise RecipeError([problem])
            return mods[0], mods[1]
        unknown = [m for m in self.pair if m not in mods]
        if unknown:
            raise RecipeError([f"objective.params.pair: unknown modalities {unknown}; the model has {mods}"])
        return self.pair[0], self.pair[1]

    def call(self, outputs, labels=None):
        a, b = self.views(list(outputs.latents))
        latents, masks = outputs.latents, outputs.masks
        both = ops.cast(masks[a], "float32") * ops.cast(masks[b], "float32")
        h1, h2 = global_batch(ops.cast(latents[a], "float32")), global_batch(ops.cast(latents[b], "float32"))
        total = top_k_correlation(h1, h2, self.top_k, self.r1, self.r2, global_batch(both), self.epsilon)
        corr = total / float(num_replicas())  # every replica computes the global value
        return {"loss": -corr, f"corr_{a}_{b}": corr}
