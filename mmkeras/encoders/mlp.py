"""A multilayer perceptron encoder for vectors, tables and flattened signals."""

from __future__ import annotations

import math

import keras
from keras import layers

from mmkeras.encoders.base import Encoder
from mmkeras.layers.mlp import MLP
from mmkeras.params import DropoutRate, PositiveInt


@keras.saving.register_keras_serializable(package="mmkeras")
class MLPEncoder(Encoder, MLP):
    """Flatten, then ``hidden_units`` dense layers with ``activation`` (each followed by
    ``dropout``), then a linear projection to ``output_dim``: an :class:`~mmkeras.layers.MLP`
    over the flattened input.

    GMC's MHD trajectory encoder is ``MLPEncoder(hidden_units=[512, 512], activation="swish")``.

    Args:
        output_dim: the feature size.
        hidden_units: the widths of the hidden layers.
        activation: the hidden layers' activation.
        dropout: the dropout rate after each hidden layer (training only).
    """

    def __init__(
        self,
        output_dim: PositiveInt,
        hidden_units: list[PositiveInt] = (512, 512),  # type: ignore[assignment]
        activation: str = "swish",
        dropout: DropoutRate = 0.0,
        **kwargs,
    ):
        super().__init__(
            hidden_units=hidden_units, output_dim=output_dim, activation=activation, dropout=dropout, **kwargs
        )
        self.flatten = layers.Flatten(dtype=self.dtype_policy)

    def build(self, input_shape):
        super().build((input_shape[0], math.prod(int(d) for d in input_shape[1:])))

    def call(self, x, training=None):
        return super().call(self.flatten(x), training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)
