"""Cross+Self, CoMM's baseline (Dufumier et al., ICLR 2025): the cross-modal NCE plus ``ssl_scale``
times the mean over modalities of each modality's SimCLR loss between its two augmented views (the
official ``CrossSelfLoss``: cross + 1/2 (ssl_1 + ssl_2) for two modalities). NCE is
:func:`mmkeras.losses.nce_loss`: SimCLR's NT-Xent (the official code) or the CLIP form.
"""

from __future__ import annotations

from typing import Literal

import keras

from mmkeras.losses.contrastive import both_present, gather_normalized, nce_loss
from mmkeras.objectives._contrastive import gathered_latents, modality_pairs, two_views
from mmkeras.objectives.base import Objective
from mmkeras.params import NonNegativeFloat, PositiveFloat


@keras.saving.register_keras_serializable(package="mmkeras")
class CrossSelf(Objective):
    """Cross+Self: loss = mean over pairs (a, b) of 1/2 [NCE(z'_a, z'_b) + NCE(z''_a, z''_b)]
    + ssl_scale * mean over modalities m of NCE(z'_m, z''_m), on the per-modality latents of two
    augmented views ' and ''. The cross term is averaged over the two views (both are computed
    anyway). Rows where a modality is missing drop out of the terms that use it.

    temperature: tau of every NCE (0.1 in the official code). nce: ``ntxent`` or ``clip``.
    """

    num_views = 2

    def __init__(
        self,
        temperature: PositiveFloat = 0.1,
        ssl_scale: NonNegativeFloat = 1.0,
        nce: Literal["ntxent", "clip"] = "ntxent",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.temperature = float(temperature)
        self.ssl_scale = float(ssl_scale)
        self.nce = nce

    def call(self, outputs, labels=None):
        first, second = two_views(outputs, "cross_self")
        pairs = modality_pairs(first.latents, "cross_self")
        z1, masks = gathered_latents(first)  # the views share their masks: gathered once
        z2 = {m: gather_normalized(z) for m, z in sorted(second.latents.items())}
        result = {}
        for a, b in pairs:
            both = both_present(masks[a], masks[b])
            result[f"cross_{a}_{b}"] = 0.5 * sum(
                nce_loss(z[a], z[b], self.temperature, both, self.nce) for z in (z1, z2)
            )
        for m in sorted(masks):
            result[f"self_{m}"] = nce_loss(z1[m], z2[m], self.temperature, masks[m], self.nce)
        cross = sum(result[f"cross_{a}_{b}"] for a, b in pairs) / len(pairs)
        own = sum(result[f"self_{m}"] for m in sorted(masks)) / len(masks)
        return {"loss": cross + self.ssl_scale * own, **result}
