"""A 1D convolutional encoder over time for sequences and spectral features [B, T, C]."""

from __future__ import annotations

import keras
from keras import layers

from mmkeras.encoders.base import ConvolutionEncoder
from mmkeras.params import PositiveInt


@keras.saving.register_keras_serializable(package="mmkeras")
class Conv1DEncoder(ConvolutionEncoder):
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
        output_dim: PositiveInt,
        filters: list[PositiveInt] = (128, 128, 256),  # type: ignore[assignment]
        kernel_sizes: list[PositiveInt] = (1, 4, 4),  # type: ignore[assignment]
        strides: list[PositiveInt] = (1, 2, 2),  # type: ignore[assignment]
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
