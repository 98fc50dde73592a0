"""The fusion contract."""

from __future__ import annotations

import keras


class Fusion(keras.layers.Layer):
    """Base class of fusions.

    ``call(features, masks)`` takes ``features: {modality: [B, d_m]}`` and
    ``masks: {modality: [B]}`` (1.0 present, 0.0 missing; the model always passes every
    modality, zeros where missing) and returns the joint feature ``[B, output_dim]``.
    A fusion must ignore a missing modality's features entirely.
    """

    def call(self, features, masks):
        raise NotImplementedError
