"""A small strided 2D convolutional encoder for images and spectrogram-like maps."""

from __future__ import annotations

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="mmkeras")
class Conv2DEncoder(keras.layers.Layer):
    """``len(filters)`` strided convolutions with ``activation``, flattened, then a linear
    projection to ``output_dim``. A rank-3 input ``[B, H, W]`` gets a channel axis.

    GMC's MHD image encoder is ``Conv2DEncoder(filters=[64, 128], kernel_size=4, strides=2,
    activation="swish", use_bias=False)``.
    """

    #: the row shapes (no batch axis) it reads, an image; checked by `mmkeras validate`
    input_layouts = ("H, W, C", "H, W")

    def __init__(
        self,
        output_dim: int,
        filters: list[int] = (64, 128),  # type: ignore[assignment]
        kernel_size: int = 4,
        strides: int = 2,
        activation: str = "swish",
        use_bias: bool = True,
        batch_norm: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.output_dim = int(output_dim)
        self.filters = [int(f) for f in filters]
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.activation = activation
        self.use_bias = bool(use_bias)
        self.batch_norm = bool(batch_norm)
        self.convs = [
            layers.Conv2D(
                f, self.kernel_size, strides=self.strides, padding="same", use_bias=self.use_bias, name=f"conv_{i}"
            )
            for i, f in enumerate(self.filters)
        ]
        self.norms = (
            [layers.BatchNormalization(name=f"bn_{i}") for i in range(len(self.filters))] if self.batch_norm else []
        )
        self.act = layers.Activation(activation)
        self.flatten = layers.Flatten()
        self.out = layers.Dense(self.output_dim, name="projection")

    def call(self, x, training=None):
        if len(x.shape) == 3:
            x = ops.expand_dims(x, -1)
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if self.norms:
                x = self.norms[i](x, training=training)
            x = self.act(x)
        return self.out(self.flatten(x))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "output_dim": self.output_dim,
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "batch_norm": self.batch_norm,
        }
