"""A dense decoder: a code vector back to a modality's input shape (a reconstruction head)."""

from __future__ import annotations

import math
from typing import Annotated

import keras
from keras import ops

from mmkeras.heads.base import Head
from mmkeras.layers.mlp import MLP
from mmkeras.params import Field, PositiveInt


@keras.saving.register_keras_serializable(package="mmkeras")
class DenseDecoder(Head, MLP):
    """``hidden_units`` dense layers with ``activation``, then a dense layer to
    prod(output_shape) values with ``output_activation``, reshaped to ``output_shape``.

    Args:
        output_shape: the target's shape without the batch axis.
        hidden_units: the widths of the hidden layers.
        activation: the hidden layers' activation.
        output_activation: the last layer's activation (None: linear).
    """

    def __init__(
        self,
        output_shape: Annotated[list[PositiveInt], Field(min_length=1)],
        hidden_units: list[PositiveInt] = (512, 512),  # type: ignore[assignment]
        activation: str = "swish",
        output_activation: str | None = None,
        **kwargs,
    ):
        super().__init__(
            hidden_units=hidden_units,
            output_dim=math.prod(output_shape),
            activation=activation,
            output_activation=output_activation,
            **kwargs,
        )
        self.output_shape = list(output_shape)

    def call(self, z, training=None):
        return ops.reshape(super().call(z, training=training), (-1, *self.output_shape))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.output_shape)
