"""Masked mean of modality features."""

from __future__ import annotations

import keras
from keras import ops

from mmkeras.fusions.base import Fusion


@keras.saving.register_keras_serializable(package="mmkeras")
class MeanFusion(Fusion):
    """h = sum_m mask_m * h_m / max(sum_m mask_m, 1): the average of the present modalities'
    features (all modalities must share one feature size). A row with no modality gives zeros.
    Token features [B, T, d] (encoders with ``output: tokens``) are averaged over their tokens first,
    as the head reads them."""

    def call(self, features, masks):
        names = sorted(features)
        features = {n: _token_mean(features[n]) for n in names}  # token features [B, T, d]: their mean
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


def _token_mean(h):
    return ops.mean(h, axis=tuple(range(1, len(h.shape) - 1))) if len(h.shape) > 2 else h
