"""The mixture-of-experts fusion of MMVAE (Shi, Siddharth, Paige & Torr, NeurIPS 2019)."""

from __future__ import annotations

import keras
from keras import ops

from mmkeras.fusions.base import Fusion
from mmkeras.losses.gaussian import mixture_mean


@keras.saving.register_keras_serializable(package="mmkeras")
class MixtureOfExperts(Fusion):
    """The mean of the uniform mixture of the present modalities' Gaussian experts
    (:func:`mmkeras.losses.gaussian.mixture_mean`): each feature is [mu_m, logvar_m], the output
    has half its size and is the mean of the present mu_m. A row with no modality gives zeros."""

    def call(self, features, masks):
        return ops.cast(mixture_mean(features, masks), self.compute_dtype)

    def compute_output_shape(self, features_shape, masks_shape=None):
        shape = next(iter(features_shape.values()))
        return (shape[0], shape[-1] // 2)
