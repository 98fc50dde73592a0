"""Masked mean of modality features."""

from __future__ import annotations

import keras
from keras import ops

from mmkeras.fusions.base import Fusion


@keras.saving.register_keras_serializable(package="mmkeras")
class MeanFusion(Fusion):
    """h = sum_m mask_m * h_m / max(sum_m mask_m, 1): the average of the present modalities'
    features (all modalities must share one feature size). A row with no modality gives zeros."""

    def call(self, features, masks):
        names = sorted(features)
        dims = {n: features[n].shape[-1] for n in names}
        if len(set(dims.values())) > 1:
            raise ValueError(f"mean fusion needs equal feature sizes, got {dims}; use the concat fusion")
        total = 0.0
        count = 0.0
        for n in names:
            m = ops.expand_dims(ops.cast(masks[n], features[n].dtype), -1)
            total = total + features[n] * m
            count = count + m
        return total / ops.maximum(count, 1.0)
