"""A small strided 2D convolutional encoder for images and spectrogram-like maps."""

from __future__ import annotations

import keras
from keras import layers, ops

from mmkeras.encoders.base import ConvolutionEncoder
from mmkeras.params import PositiveInt


@keras.saving.register_keras_serializable(package="mmkeras")
class Conv2DEncoder(ConvolutionEncoder):
    """``len(filters)`` strided convolutions with ``activation``, flattened, then a linear
    projection to ``output_dim``. A rank-3 input ``[B, H, W]`` gets a channel axis.

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

    def call(self, x, training=None):
        if len(x.shape) == 3:
            x = ops.expand_dims(x, -1)
        return super().call(x, training=training)
