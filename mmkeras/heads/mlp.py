"""An MLP projection head, optionally ending in L2 normalisation."""

from __future__ import annotations

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="mmkeras")
class MLPHead(keras.layers.Layer):
    """z = normalize(W_out act(... act(W_1 h))) when ``normalize``; else without the normalisation.

    GMC's shared MHD head is ``MLPHead(hidden_units=[512, 512], activation="swish", normalize=True)``.
    """

    def __init__(
        self,
        output_dim: int,
        hidden_units: list[int] = (),  # type: ignore[assignment]
        activation: str = "swish",
        normalize: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.output_dim = int(output_dim)
        self.hidden_units = [int(u) for u in hidden_units]
        self.activation = activation
        self.normalize = bool(normalize)
        self.hidden = [
            layers.Dense(u, activation=activation, name=f"dense_{i}") for i, u in enumerate(self.hidden_units)
        ]
        self.out = layers.Dense(self.output_dim, name="projection")

    def call(self, h):
        for dense in self.hidden:
            h = dense(h)
        z = self.out(h)
        if self.normalize:
            z32 = ops.cast(z, "float32")  # the norm in float32: float16 squares overflow
            z = ops.cast(z32 / ops.maximum(ops.norm(z32, axis=-1, keepdims=True), 1e-12), z.dtype)
        return z

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "output_dim": self.output_dim,
            "hidden_units": self.hidden_units,
            "activation": self.activation,
            "normalize": self.normalize,
        }
