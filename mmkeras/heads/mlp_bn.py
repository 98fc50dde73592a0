"""A projection head with batch normalisation: (Linear-BN-ReLU) x k, then Linear (SimCLR, CoMM)."""

from __future__ import annotations

import keras
from keras import layers

from mmkeras.params import PositiveFloat, UnitFloat


@keras.saving.register_keras_serializable(package="mmkeras")
class MLPBNHead(keras.layers.Layer):
    """z = W_out relu(BN(W_k ... relu(BN(W_1 h)))).

    CoMM's head (Dufumier et al., ICLR 2025) is ``hidden_units=[512, 512]``, ``output_dim=256``,
    shared by the fused and single-modality embeddings; SimCLR's (Chen et al., 2020) has one
    hidden layer. The hidden linear layers have no bias: the batch norm's beta takes its place.
    """

    def __init__(
        self,
        output_dim: int,
        hidden_units: list[int] = (512, 512),  # type: ignore[assignment]
        momentum: UnitFloat = 0.9,
        epsilon: PositiveFloat = 1e-5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.output_dim = int(output_dim)
        self.hidden_units = [int(u) for u in hidden_units]
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.hidden = [layers.Dense(u, use_bias=False, name=f"dense_{i}") for i, u in enumerate(self.hidden_units)]
        self.norms = [
            layers.BatchNormalization(momentum=self.momentum, epsilon=self.epsilon, name=f"bn_{i}")
            for i in range(len(self.hidden_units))
        ]
        self.out = layers.Dense(self.output_dim, name="projection")

    def build(self, input_shape):
        size = input_shape[-1]
        for dense, norm in zip(self.hidden, self.norms):
            dense.build((None, size))
            norm.build((None, dense.units))
            size = dense.units
        self.out.build((None, size))

    def call(self, h, training=None):
        for dense, norm in zip(self.hidden, self.norms):
            h = keras.activations.relu(norm(dense(h), training=training))
        return self.out(h)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "output_dim": self.output_dim,
            "hidden_units": self.hidden_units,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
        }
