"""A 1D convolutional encoder over time for sequences and spectral features [B, T, C]."""

from __future__ import annotations

from typing import Literal

import keras
from keras import layers

from mmkeras.encoders.base import ConvolutionEncoder
from mmkeras.encoders.conv2d import conv_config, feature_map_tokens, keep_output, token_count
from mmkeras.params import PositiveInt


@keras.saving.register_keras_serializable(package="mmkeras")
class Conv1DEncoder(ConvolutionEncoder):
    """Convolutions over the time axis of ``[B, T, C]`` inputs, each optionally followed by
    batch normalisation, then ``activation``; flattened and projected to ``output_dim``.

    ``filters``, ``kernel_sizes`` and ``strides`` give one value per layer. GMC's MHD sound
    encoder reads a 32x128 feature map as 32 steps of 128 features:
    ``filters=[128, 128, 256], kernel_sizes=[1, 4, 4], strides=[1, 2, 2], batch_norm=true,
    activation=relu``.

    A ``[B, T]`` input is read as T steps of one feature (``[B, T, 1]``): the pendulum's 12 sound
    values with ``kernel_sizes: [3, ...], strides: [3, ...]`` become 4 steps (each frame's 3
    frequencies, then its 3 amplitudes).

    ``output: tokens`` keeps the time steps: the last feature map ``[B, T', C]`` becomes
    ``[B, T', output_dim]``, the projection applied to each step, for objectives that read frames
    (``dmc``) and the ``transformer`` fusion. ``output: vector`` (the default) is the flattened map
    projected to ``[B, output_dim]``, with the same layers as before the option.
    """

    #: the row shapes (no batch axis) it reads, a sequence of feature vectors; checked by `mmkeras validate`
    input_layouts = ("T, C", "T")

    def __init__(
        self,
        output_dim: PositiveInt,
        filters: list[PositiveInt] = (128, 128, 256),  # type: ignore[assignment]
        kernel_sizes: list[PositiveInt] = (1, 4, 4),  # type: ignore[assignment]
        strides: list[PositiveInt] = (1, 2, 2),  # type: ignore[assignment]
        activation: str = "relu",
        batch_norm: bool = True,
        output: Literal["vector", "tokens"] = "vector",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not len(filters) == len(kernel_sizes) == len(strides):
            raise ValueError(
                f"conv1d: filters, kernel_sizes and strides need one value per layer, got "
                f"{len(filters)}, {len(kernel_sizes)} and {len(strides)}"
            )
        self.output_dim = output_dim
        self.filters = list(filters)
        self.kernel_sizes = list(kernel_sizes)
        self.strides = list(strides)
        self.activation = activation
        self.batch_norm = batch_norm
        dtype = self.dtype_policy
        convs = [
            layers.Conv1D(f, k, strides=s, padding="same", use_bias=not batch_norm, dtype=dtype, name=f"conv_{i}")
            for i, (f, k, s) in enumerate(zip(self.filters, self.kernel_sizes, self.strides))
        ]
        self._finish_stack(convs, batch_norm, activation)
        keep_output(self, output)

    def call(self, x, training=None):
        if len(x.shape) == 2:
            x = keras.ops.expand_dims(x, -1)
        if self.output_mode == "tokens":
            return feature_map_tokens(self, x, training)
        return super().call(x, training=training)

    def compute_output_shape(self, input_shape):
        if self.output_mode == "vector":
            return super().compute_output_shape(input_shape)
        return (input_shape[0], token_count([input_shape[1]], self.strides), self.output_dim)

    def get_config(self):
        return conv_config(self)
