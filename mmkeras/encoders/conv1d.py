"""A 1D convolutional encoder over time for sequences and spectral features [B, T, C]."""

from __future__ import annotations

import keras
from keras import layers


@keras.saving.register_keras_serializable(package="mmkeras")
class Conv1DEncoder(keras.layers.Layer):
    """Convolutions over the time axis of ``[B, T, C]`` inputs, each optionally followed by
    batch normalisation, then ``activation``; flattened and projected to ``output_dim``.

    ``filters``, ``kernel_sizes`` and ``strides`` give one value per layer. GMC's MHD sound
    encoder reads a 32x128 feature map as 32 steps of 128 features:
    ``filters=[128, 128, 256], kernel_sizes=[1, 4, 4], strides=[1, 2, 2], batch_norm=true,
    activation=relu``.
    """

    #: the row shapes (no batch axis) it reads, a sequence of feature vectors; checked by `mmkeras validate`
    input_layouts = ("T, C",)

    def __init__(
        self,
        output_dim: int,
        filters: list[int] = (128, 128, 256),  # type: ignore[assignment]
        kernel_sizes: list[int] = (1, 4, 4),  # type: ignore[assignment]
        strides: list[int] = (1, 2, 2),  # type: ignore[assignment]
        activation: str = "relu",
        batch_norm: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not len(filters) == len(kernel_sizes) == len(strides):
            raise ValueError(
                f"conv1d: filters, kernel_sizes and strides need one value per layer, got "
                f"{len(filters)}, {len(kernel_sizes)} and {len(strides)}"
            )
        self.output_dim = int(output_dim)
        self.filters = [int(f) for f in filters]
        self.kernel_sizes = [int(k) for k in kernel_sizes]
        self.strides = [int(s) for s in strides]
        self.activation = activation
        self.batch_norm = bool(batch_norm)
        self.convs = [
            layers.Conv1D(f, k, strides=s, padding="same", use_bias=not self.batch_norm, name=f"conv_{i}")
            for i, (f, k, s) in enumerate(zip(self.filters, self.kernel_sizes, self.strides))
        ]
        self.norms = (
            [layers.BatchNormalization(name=f"bn_{i}") for i in range(len(self.convs))] if self.batch_norm else []
        )
        self.act = layers.Activation(activation)
        self.flatten = layers.Flatten()
        self.out = layers.Dense(self.output_dim, name="projection")

    def call(self, x, training=None):
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
            "kernel_sizes": self.kernel_sizes,
            "strides": self.strides,
            "activation": self.activation,
            "batch_norm": self.batch_norm,
        }
