"""A small strided 2D convolutional encoder for images and spectrogram-like maps."""

from __future__ import annotations

import math
from typing import Any, Literal

import keras
from keras import layers, ops

from mmkeras.component import Component
from mmkeras.encoders.base import ConvolutionEncoder
from mmkeras.params import PositiveInt

#: what a convolution encoder returns: one vector, or the last feature map's positions as tokens
CONV_OUTPUTS = ("vector", "tokens")


def keep_output(encoder: ConvolutionEncoder, output: str) -> None:
    """Keep ``output`` as ``encoder.output_mode`` (Keras's Layer owns ``output``). For tokens the
    flatten layer goes unused: it holds no state, so it is marked built, and Keras's automatic
    build then finds no unbuilt sublayer."""
    encoder.output_mode = output
    if output == "tokens":
        encoder.flatten.build(None)


def feature_map_tokens(encoder: ConvolutionEncoder, x: Any, training: Any = None) -> Any:
    """The last convolution's activated feature map ``[B, ..., C]`` (``[B, H', W', C]`` or ``[B, T', C]``)
    as tokens ``[B, N, output_dim]``: the projection applied to each position, positions in row-major order."""
    for i, conv in enumerate(encoder.convs):
        x = conv(x)
        if encoder.norms:
            x = encoder.norms[i](x, training=training)
        x = encoder.act(x)
    tokens = encoder.out(x)  # a Dense layer reads the last axis: one projection per position
    positions = tokens.shape[1:-1]
    if any(n is None for n in positions):
        return ops.reshape(tokens, (ops.shape(tokens)[0], -1, encoder.output_dim))
    # static positions: a batch axis of None (Keras's symbolic build) needs -1 there
    return ops.reshape(tokens, (-1, math.prod(positions), encoder.output_dim))


def token_count(lengths: list[Any], strides: list[int]) -> int | None:
    """The positions left by ``"same"``-padded convolutions of ``strides`` over axes of ``lengths``
    (``ceil(L / s)`` per layer and axis); None when a length is unknown."""
    if any(n is None for n in lengths):
        return None
    count = 1
    for n in lengths:
        for s in strides:
            n = math.ceil(n / s)
        count *= n
    return count


def conv_config(encoder: Any) -> dict[str, Any]:
    """``get_config`` of a convolution encoder whose ``output`` parameter is kept as ``output_mode``
    (Keras's Layer owns ``output`` as a property)."""
    from mmkeras.registry import parameters

    config = super(Component, encoder).get_config()  # Keras's base config; the parameters follow
    for name in parameters(type(encoder)):
        config[name] = getattr(encoder, "output_mode" if name == "output" else name)
    return config


@keras.saving.register_keras_serializable(package="mmkeras")
class Conv2DEncoder(ConvolutionEncoder):
    """``len(filters)`` strided convolutions with ``activation``, flattened, then a linear
    projection to ``output_dim``. A rank-3 input ``[B, H, W]`` gets a channel axis.

    ``output: tokens`` keeps the spatial parts: the last feature map ``[B, H', W', C]`` becomes
    ``[B, H' * W', output_dim]``, the projection applied to each position (row-major), for objectives
    that read regions (``dmc``) and the ``transformer`` fusion. ``output: vector`` (the default) is
    the flattened map projected to ``[B, output_dim]``, with the same layers as before the option.

    GMC's MHD image encoder is ``Conv2DEncoder(filters=[64, 128], kernel_size=4, strides=2,
    activation="swish", use_bias=False)``.
    """

    #: the row shapes (no batch axis) it reads, an image; checked by `mmkeras validate`
    input_layouts = ("H, W, C", "H, W")

    def __init__(
        self,
        output_dim: PositiveInt,
        filters: list[PositiveInt] = (64, 128),  # type: ignore[assignment]
        kernel_size: PositiveInt = 4,
        strides: PositiveInt = 2,
        activation: str = "swish",
        use_bias: bool = True,
        batch_norm: bool = False,
        output: Literal["vector", "tokens"] = "vector",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.output_dim = output_dim
        self.filters = list(filters)
        self.kernel_size = kernel_size
        self.strides = strides
        self.activation = activation
        self.use_bias = use_bias
        self.batch_norm = batch_norm
        dtype = self.dtype_policy
        convs = [
            layers.Conv2D(
                f, kernel_size, strides=strides, padding="same", use_bias=use_bias, dtype=dtype, name=f"conv_{i}"
            )
            for i, f in enumerate(self.filters)
        ]
        self._finish_stack(convs, batch_norm, activation)
        keep_output(self, output)

    def call(self, x, training=None):
        if len(x.shape) == 3:
            x = ops.expand_dims(x, -1)
        if self.output_mode == "tokens":
            return feature_map_tokens(self, x, training)
        return super().call(x, training=training)

    def compute_output_shape(self, input_shape):
        if self.output_mode == "vector":
            return super().compute_output_shape(input_shape)
        strides = [self.strides] * len(self.filters)
        return (input_shape[0], token_count(list(input_shape[1:3]), strides), self.output_dim)

    def get_config(self):
        return conv_config(self)
