"""An MLP projection head, optionally ending in L2 normalisation."""

from __future__ import annotations

import keras
from keras import ops

from mmkeras.heads.base import Head
from mmkeras.layers.mlp import MLP
from mmkeras.params import PositiveInt


@keras.saving.register_keras_serializable(package="mmkeras")
class MLPHead(Head, MLP):
    """z = normalize(W_out act(... act(W_1 h))) when ``normalize``; else without the normalisation.

    GMC's shared MHD head is ``MLPHead(hidden_units=[512, 512], activation="swish", normalize=True)``.

    Args:
        output_dim: the latent size.
        hidden_units: the widths of the hidden layers (none: a linear head).
        activation: the hidden layers' activation.
        normalize: divide the output by its L2 norm.
    """

    def __init__(
        self,
        output_dim: PositiveInt,
        hidden_units: list[PositiveInt] = (),  # type: ignore[assignment]
        activation: str = "swish",
        normalize: bool = False,
        **kwargs,
    ):
        super().__init__(hidden_units=hidden_units, output_dim=output_dim, activation=activation, **kwargs)
        self.normalize = normalize

    def call(self, h, training=None):
        z = super().call(h, training=training)
        if self.normalize:
            z32 = ops.cast(z, "float32")  # the norm in float32: float16 squares overflow
            z = ops.cast(z32 / ops.maximum(ops.norm(z32, axis=-1, keepdims=True), 1e-12), z.dtype)
        return z
