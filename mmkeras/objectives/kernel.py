"""Kernel similarity alignment objective: 1 - centred kernel alignment (CKA) of two views' batch
kernels, averaged over modality pairs (Cortes, Mohri and Rostamizadeh, 2012; Kornblith et al.,
2019). The formulas are in :mod:`mmkeras.losses.kernel`. The kernels are over the global batch
under tf.distribute.
"""

from __future__ import annotations

from typing import Literal

import keras
from keras import ops

from mmkeras.distribute import num_replicas
from mmkeras.losses.cca import global_batch
from mmkeras.losses.kernel import centred_kernel_alignment, kernel_matrix
from mmkeras.objectives._contrastive import modality_pairs
from mmkeras.objectives.base import Objective
from mmkeras.params import PositiveFloat, PositiveInt


@keras.saving.register_keras_serializable(package="mmkeras")
class KernelAlignment(Objective):
    """1 - centred kernel alignment of paired latents' batch kernels, averaged over modality pairs.

    kernel: linear | polynomial (degree, c) | exponential (gamma) | rbf (gamma).
    """

    def __init__(
        self,
        kernel: Literal["linear", "polynomial", "exponential", "rbf"] = "linear",
        degree: PositiveInt = 2,
        c: float = 1.0,
        gamma: PositiveFloat = 1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.kernel = kernel
        self.degree = int(degree)
        self.c = float(c)
        self.gamma = float(gamma)

    def call(self, outputs, labels=None):
        pairs = modality_pairs(outputs.latents, "kernel")
        latents, masks = outputs.latents, outputs.masks
        modalities = sorted({m for pair in pairs for m in pair})
        kernels = {
            m: kernel_matrix(global_batch(ops.cast(latents[m], "float32")), **self._params()) for m in modalities
        }
        present = {m: global_batch(ops.cast(masks[m], "float32")) for m in modalities}
        replicas = float(num_replicas())  # every replica computes the global value: each adds 1/replicas
        result = {}
        total = 0.0
        for a, b in pairs:
            w = present[a] * present[b]
            cka = centred_kernel_alignment(kernels[a], kernels[b], w)
            enough = ops.cast(ops.sum(w) >= 2.0, "float32")
            result[f"cka_{a}_{b}"] = cka * enough / replicas
            total = total + (1.0 - cka) * enough / replicas
        result["loss"] = total / len(pairs)
        return result

    def _params(self) -> dict:
        return {"kernel": self.kernel, "degree": self.degree, "c": self.c, "gamma": self.gamma}
