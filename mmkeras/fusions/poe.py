"""The product-of-experts fusion of MVAE (Wu & Goodman, NeurIPS 2018)."""

from __future__ import annotations

import keras
from keras import ops

from mmkeras.fusions.base import Fusion
from mmkeras.losses.gaussian import product_of_experts


@keras.saving.register_keras_serializable(package="mmkeras")
class ProductOfExperts(Fusion):
    """The mean mu_X of the product of the present modalities' Gaussian experts and the prior
    N(0, I) (:func:`mmkeras.losses.gaussian.product_of_experts`): each feature is [mu_m, logvar_m],
    the output has half its size. A row with no modality gives the prior's mean, zeros."""

    def call(self, features, masks):
        mu, _ = product_of_experts(features, masks)
        return ops.cast(mu, self.compute_dtype)

    def compute_output_shape(self, features_shape, masks_shape=None):
        shape = next(iter(features_shape.values()))
        return (shape[0], shape[-1] // 2)
