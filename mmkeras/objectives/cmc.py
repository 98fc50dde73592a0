"""CMC: the mean of NCE over every pair of modalities (Tian, Krishnan and Isola, 2020, "Contrastive
Multiview Coding"), for n >= 2 modalities; CoMM's baseline. NCE is :func:`mmkeras.losses.nce_loss`:
SimCLR's NT-Xent (the official CoMM baseline) or the CLIP form.
"""

from __future__ import annotations

from typing import Literal

import keras

from mmkeras.losses.contrastive import both_present, nce_loss
from mmkeras.objectives._contrastive import gathered_latents, modality_pairs
from mmkeras.objectives.base import Objective
from mmkeras.params import PositiveFloat


@keras.saving.register_keras_serializable(package="mmkeras")
class CMC(Objective):
    """CMC: loss = mean over pairs a < b of NCE(z_a, z_b) on the modalities' latents, at a fixed
    temperature. nce: ``ntxent`` (the official CoMM baseline) or ``clip`` (then this equals
    ``infonce``). Rows where a or b is missing drop out of that pair."""

    def __init__(self, temperature: PositiveFloat = 0.1, nce: Literal["ntxent", "clip"] = "ntxent", **kwargs):
        super().__init__(**kwargs)
        self.temperature = float(temperature)
        self.nce = nce

    def call(self, outputs, labels=None):
        pairs = modality_pairs(outputs.latents, "cmc")
        z, masks = gathered_latents(outputs)
        result = {
            f"cmc_{a}_{b}": nce_loss(z[a], z[b], self.temperature, both_present(masks[a], masks[b]), self.nce)
            for a, b in pairs
        }
        return {"loss": sum(result.values()) / len(pairs), **result}
