"""A transposed-convolution decoder: a code vector back to an image or a 2D map (a reconstruction head)."""

from __future__ import annotations

import math
from typing import Annotated

import keras
from keras import layers, ops

from mmkeras.heads.base import Head
from mmkeras.params import Field, PositiveInt


@keras.saving.register_keras_serializable(package="mmkeras")
class Conv2DDecoder(Head):
    """A dense layer to an (H / s^L, W / s^L, filters[0]) grid, then L = len(filters)
    transposed convolutions of stride s (``strides``) with ``activation``, to filters[1:]
    channels and finally to the target's C channels with ``output_activation``.

    H and W must be multiples of s^L. MHD's 28 x 28 x 1 image with ``filters=[128, 64]``:
    7x7x128 -> 14x14x64 -> 28x28x1.

    Args:
        output_shape: the target's shape (H, W, C), or (H, W) for a map without a channel axis
            (such as MHD's 32 x 128 sound features).
        filters: the channels of the grid and of each transposed convolution but the last.
        kernel_size: the transposed convolutions' kernel size.
        strides: the transposed convolutions' stride s.
        activation: the activation of the stem and of every transposed convolution but the last.
        output_activation: the last transposed convolution's activation (None: linear).
    """

    def __init__(
        self,
        output_shape: Annotated[list[PositiveInt], Field(min_length=2, max_length=3)],
        filters: Annotated[list[PositiveInt], Field(min_length=1)] = (128, 64),  # type: ignore[assignment]
        kernel_size: PositiveInt = 4,
        strides: PositiveInt = 2,
        activation: str = "swish",
        output_activation: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.output_shape = list(output_shape)
        self.filters = list(filters)
        self.kernel_size = kernel_size
        self.strides = strides
        self.activation = activation
        self.output_activation = output_activation
        scale = strides ** len(self.filters)
        height, width = self.output_shape[:2]
        if height % scale or width % scale:
            raise ValueError(
                f"conv2d_decoder: output_shape {self.output_shape} must have H and W divisible by "
                f"strides ** len(filters) = {scale}; use fewer filters or another stride"
            )
        self.grid = (height // scale, width // scale, self.filters[0])
        channels = self.output_shape[2] if len(self.output_shape) == 3 else 1
        self.stem = layers.Dense(math.prod(self.grid), activation=activation, dtype=self.dtype_policy, name="stem")
        widths = self.filters[1:] + [channels]
        self.deconvs = [
            layers.Conv2DTranspose(
                f,
                kernel_size,
                strides=strides,
                padding="same",
                activation=activation if i < len(widths) - 1 else output_activation,
                dtype=self.dtype_policy,
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
        return ops.reshape(x, (-1, *self.output_shape))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.output_shape)
