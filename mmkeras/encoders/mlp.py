"""A multilayer perceptron encoder for vectors, tables and flattened signals."""

from __future__ import annotations

import keras
from keras import layers

from mmkeras.params import DropoutRate


@keras.saving.register_keras_serializable(package="mmkeras")
class MLPEncoder(keras.layers.Layer):
    """Flatten, then ``hidden_units`` dense layers with ``activation``, then a linear
    projection to ``output_dim``.

    GMC's MHD trajectory encoder is ``MLPEncoder(hidden_units=[512, 512], activation="swish")``.
    """

    def __init__(
        self,
        output_dim: int,
        hidden_units: list[int] = (512, 512),  # type: ignore[assignment]
        activation: str = "swish",
        dropout: DropoutRate = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.output_dim = int(output_dim)
        self.hidden_units = [int(u) for u in hidden_units]
        self.activation = activation
        self.dropout = float(dropout)
        self.flatten = layers.Flatten()
        self.hidden = [
            layers.Dense(u, activation=activation, name=f"dense_{i}") for i, u in enumerate(self.hidden_units)
        ]
        self.drop = layers.Dropout(self.dropout) if self.dropout else None
        self.out = layers.Dense(self.output_dim, name="projection")

    def call(self, x, training=None):
        h = self.flatten(x)
        for dense in self.hidden:
            h = dense(h)
            if self.drop is not None:
                h = self.drop(h, training=training)
        return self.out(h)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "output_dim": self.output_dim,
            "hidden_units": self.hidden_units,
            "activation": self.activation,
            "dropout": self.dropout,
        }
