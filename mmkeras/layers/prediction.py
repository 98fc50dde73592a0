"""Prediction heads trained beside a representation (GMC's supervised head)."""

from __future__ import annotations

from typing import Any

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="mmkeras")
class ResidualPredictionHead(keras.layers.Layer):
    """y = W (z + P2 relu(P1 z)) + b, with P1, P2 d x d for inputs z of size d: the prediction head
    of GMC's supervised code (Poklukar, Vasco et al., 2022).

    Args:
        outputs: the number of classes, or 1 for regression.
    """

    def __init__(self, outputs: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.outputs = int(outputs)

    def build(self, input_shape):
        d = int(input_shape[-1])
        self.proj1 = layers.Dense(d, name="proj1", dtype=self.dtype_policy)
        self.proj2 = layers.Dense(d, name="proj2", dtype=self.dtype_policy)
        self.out = layers.Dense(self.outputs, name="out", dtype=self.dtype_policy)
        for dense in (self.proj1, self.proj2, self.out):
            dense.build(input_shape)

    def call(self, z):
        return self.out(z + self.proj2(ops.relu(self.proj1(z))))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.outputs)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "outputs": self.outputs}
