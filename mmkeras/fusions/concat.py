"""Concatenation of modality features followed by a linear layer (late fusion by concatenation)."""

from __future__ import annotations

import keras
from keras import layers, ops

from mmkeras.fusions.base import Fusion
from mmkeras.params import PositiveInt


@keras.saving.register_keras_serializable(package="mmkeras")
class ConcatFusion(Fusion):
    """h = W [mask_1 h_1; ...; mask_M h_M] + b, modalities in sorted name order.

    A missing modality contributes zeros, so the same weights serve every subset.
    This is the form of GMC's joint encoder head (concatenated features, one linear layer).
    """

    def __init__(self, output_dim: PositiveInt, activation: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.output_dim = output_dim
        self.activation = activation
        self.dense = layers.Dense(output_dim, activation=activation, dtype=self.dtype_policy, name="projection")

    def call(self, features, masks):
        parts = [features[n] * ops.expand_dims(ops.cast(masks[n], features[n].dtype), -1) for n in sorted(features)]
        return self.dense(ops.concatenate(parts, axis=-1))
