"""Decoders: a code vector back to a modality's input shape (reconstruction heads)."""

from __future__ import annotations

import math

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="mmkeras")
class DenseDecoder(keras.layers.Layer):
    """``hidden_units`` dense layers with ``activation``, then a dense layer to
    prod(output_shape) values with ``output_activation``, reshaped to ``output_shape``
    (the target's shape without the batch axis)."""

    def __init__(
        self,
        output_shape: list[int],
        hidden_units: list[int] = (512, 512),  # type: ignore[assignment]
        activation: str = "swish",
        output_activation: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.target_shape = [int(d) for d in output_shape]
        if not self.target_shape or min(self.target_shape) < 1:
            raise ValueError(f"output_shape must be a non-empty list of positive sizes, got {output_shape!r}")
        self.hidden_units = [int(u) for u in hidden_units]
        self.activation = activation
        self.output_activation = output_activation
        self.hidden = [
            layers.Dense(u, activation=activation, name=f"dense_{i}") for i, u in enumerate(self.hidden_units)
        ]
        self.out = layers.Dense(math.prod(self.target_shape), activation=output_activation, name="reconstruction")

    def build(self, input_shape):
        shape = tuple(input_shape)
        for dense in self.hidden:
            dense.build(shape)
            shape = (shape[0], dense.units)
        self.out.build(shape)

    def call(self, z):
        for dense in self.hidden:
            z = dense(z)
        return ops.reshape(self.out(z), (-1, *self.target_shape))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.target_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "output_shape": self.target_shape,
            "hidden_units": self.hidden_units,
            "activation": self.activation,
            "output_activation": self.output_activation,
        }


@keras.saving.register_keras_serializable(package="mmkeras")
class Conv2DDecoder(keras.layers.Layer):
    """A dense layer to an (H / s^L, W / s^L, filters[0]) grid, then L = len(filters)
    transposed convolutions of stride s (``strides``) with ``activation``, to filters[1:]
    channels and finally to the target's C channels with ``output_activation``.

    ``output_shape`` is (H, W, C), or (H, W) for a map without a channel axis (such as MHD's
    32 x 128 sound features); H and W must be multiples of s^L. MHD's 28 x 28 x 1 image with
    ``filters=[128, 64]``: 7x7x128 -> 14x14x64 -> 28x28x1.
    """

    def __init__(
        self,
        output_shape: list[int],
        filters: list[int] = (128, 64),  # type: ignore[assignment]
        kernel_size: int = 4,
        strides: int = 2,
        activation: str = "swish",
        output_activation: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.target_shape = [int(d) for d in output_shape]
        if len(self.target_shape) not in (2, 3) or min(self.target_shape) < 1:
            raise ValueError(f"conv2d_decoder: output_shape must be [H, W] or [H, W, C], got {output_shape!r}")
        if not filters:
            raise ValueError("conv2d_decoder: filters needs at least one value")
        self.filters = [int(f) for f in filters]
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.activation = activation
        self.output_activation = output_activation
        scale = self.strides ** len(self.filters)
        height, width = self.target_shape[:2]
        if height % scale or width % scale:
            raise ValueError(
                f"conv2d_decoder: output_shape {self.target_shape} must have H and W divisible by "
                f"strides ** len(filters) = {scale}; use fewer filters or another stride"
            )
        self.grid = (height // scale, width // scale, self.filters[0])
        channels = self.target_shape[2] if len(self.target_shape) == 3 else 1
        self.stem = layers.Dense(math.prod(self.grid), activation=activation, name="stem")
        widths = self.filters[1:] + [channels]
        self.deconvs = [
            layers.Conv2DTranspose(
                f,
                self.kernel_size,
                strides=self.strides,
                padding="same",
                activation=activation if i < len(widths) - 1 else output_activation,
                name=f"deconv_{i}",
            )
            for i, f in enumerate(widths)
        ]

    def build(self, input_shape):
        self.stem.build(tuple(input_shape))
        shape = (input_shape[0], *self.grid)
        for deconv in self.deconvs:
            deconv.build(shape)
            shape = deconv.compute_output_shape(shape)

    def call(self, z):
        x = ops.reshape(self.stem(z), (-1, *self.grid))
        for deconv in self.deconvs:
            x = deconv(x)
        return ops.reshape(x, (-1, *self.target_shape))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.target_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "output_shape": self.target_shape,
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "activation": self.activation,
            "output_activation": self.output_activation,
        }
