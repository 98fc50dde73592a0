"""The multilayer perceptron stack that encoders, heads, decoders and plugins build on."""

from __future__ import annotations

import keras
from keras import layers

from mmkeras.component import Component
from mmkeras.params import DropoutRate, PositiveFloat, PositiveInt, UnitFloat


@keras.saving.register_keras_serializable(package="mmkeras")
class MLP(Component, keras.layers.Layer):
    """y = W_out g(... g(W_1 x)) + b_out, where each hidden layer g(W_i x) is a dense layer, an
    optional batch normalisation, the activation and an optional dropout, in that order.

    The hidden dense layers have a bias unless ``batch_norm`` (the normalisation's beta takes its
    place). ``MLP([512, 512], output_dim=64, activation="swish")`` is GMC's MHD head;
    ``MLP([512, 512], output_dim=256, batch_norm=True)`` is SimCLR's and CoMM's.

    Args:
        hidden_units: the widths of the hidden layers, in order (none: a single linear layer).
        output_dim: the width of the final linear layer; None ends the stack at the last hidden layer.
        activation: the hidden layers' activation (a Keras activation name; None for linear).
        output_activation: the activation of the final layer (None: linear).
        batch_norm: batch normalisation after each hidden dense layer, before the activation.
        momentum: the batch normalisation's moving-average momentum.
        epsilon: the batch normalisation's variance epsilon.
        dropout: the dropout rate after each hidden layer's activation (training only).
    """

    def __init__(
        self,
        hidden_units: list[PositiveInt] = (),  # type: ignore[assignment]
        output_dim: PositiveInt | None = None,
        activation: str | None = "relu",
        output_activation: str | None = None,
        batch_norm: bool = False,
        momentum: UnitFloat = 0.99,
        epsilon: PositiveFloat = 1e-3,
        dropout: DropoutRate = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_units = list(hidden_units)
        self.output_dim = output_dim
        self.activation = activation
        self.output_activation = output_activation
        self.batch_norm = batch_norm
        self.momentum = momentum
        self.epsilon = epsilon
        self.dropout = dropout
        # the activation sits in the dense layer unless a normalisation comes between them
        dense_activation = None if batch_norm else activation
        self.hidden = [
            layers.Dense(
                u, activation=dense_activation, use_bias=not batch_norm, dtype=self.dtype_policy, name=f"dense_{i}"
            )
            for i, u in enumerate(self.hidden_units)
        ]
        self.norms = [
            layers.BatchNormalization(momentum=momentum, epsilon=epsilon, dtype=self.dtype_policy, name=f"bn_{i}")
            for i in range(len(self.hidden_units) if batch_norm else 0)
        ]
        self.act = layers.Activation(activation, dtype=self.dtype_policy, name="activation") if batch_norm else None
        self.drop = layers.Dropout(dropout, dtype=self.dtype_policy, name="dropout") if dropout else None
        self.out = (
            layers.Dense(output_dim, activation=output_activation, dtype=self.dtype_policy, name="projection")
            if output_dim is not None
            else None
        )

    def build(self, input_shape):
        shape = tuple(input_shape)
        for i, dense in enumerate(self.hidden):
            dense.build(shape)
            shape = shape[:-1] + (dense.units,)
            if self.norms:
                self.norms[i].build(shape)
        if self.out is not None:
            self.out.build(shape)

    def call(self, x, training=None):
        for i, dense in enumerate(self.hidden):
            x = dense(x)
            if self.act is not None:
                x = self.act(self.norms[i](x, training=training))
            if self.drop is not None:
                x = self.drop(x, training=training)
        return x if self.out is None else self.out(x)

    def compute_output_shape(self, input_shape):
        width = self.output_dim if self.output_dim is not None else (self.hidden_units or [input_shape[-1]])[-1]
        return tuple(input_shape[:-1]) + (width,)
