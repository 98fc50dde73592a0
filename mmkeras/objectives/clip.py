"""Cross: CLIP's symmetric InfoNCE between every pair of modalities' latents with a learned logit
scale s = exp(t), t kept in [0, ln 100] by clipping the variable after each optimizer update
(Radford et al., 2021); CoMM's "Cross" baseline (Dufumier et al., ICLR 2025). The loss is
:class:`~mmkeras.objectives.infonce.InfoNCE`'s; only the defaults differ.
"""

from __future__ import annotations

import keras

from mmkeras.objectives.infonce import InfoNCE
from mmkeras.params import PositiveFloat


@keras.saving.register_keras_serializable(package="mmkeras")
class CrossCLIP(InfoNCE):
    """Cross: CLIP's symmetric InfoNCE between every pair of modalities' latents (for two
    modalities, the CLIP loss), with the logit scale s = exp(t) learned from s = 1/temperature and
    t kept in [0, ln 100] as in CLIP: the optimizer clips the variable after each update
    (:class:`~mmkeras.objectives.infonce.ClipLogScale`) and the loss reads it unclamped, so its
    gradient never vanishes at a bound. ``learnable_temperature: false`` fixes s = 1/temperature.
    """

    def __init__(self, temperature: PositiveFloat = 0.07, learnable_temperature: bool = True, **kwargs):
        super().__init__(temperature=temperature, learnable_temperature=learnable_temperature, **kwargs)
