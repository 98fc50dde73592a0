"""The ``alexnet`` encoder: AlexNet's convolutional features (Krizhevsky et al., NeurIPS 2012), the
common single-GPU layout, as CoMM's image encoder on Trifeatures (Dufumier et al., ICLR 2025).

Layout (each convolution followed by optional batch normalisation, then ReLU)::

    zero-pad 2, conv 11x11 / 4 (64)  -> max-pool 3 / 2
    conv 5x5, pad 2 (192)            -> max-pool 3 / 2
    conv 3x3, pad 1 (384)
    conv 3x3, pad 1 (256)
    conv 3x3, pad 1 (channels)       -> max-pool 3 / 2

Every pooling is unpadded ("valid"); the 5x5 and 3x3 convolutions are "same" (stride 1, so the
symmetric padding of 2 and 1 pixels). A side of S pixels becomes, in turn,
``a = (S - 7) // 4 + 1``, ``b = (a - 3) // 2 + 1``, ``c = (b - 3) // 2 + 1``, ``(c - 3) // 2 + 1``:
224 -> 55 -> 27 -> 13 -> **6** (36 positions), as in the paper's 224-px runs; 227 gives 6 too,
256 -> 7, 192 -> 5, 128 -> 3, 96 -> 2, 64 -> 1; under 63 pixels nothing is left (an error).
"""

from __future__ import annotations

import inspect
from typing import Literal

import keras
from keras import layers, ops

from mmkeras.plugin import Component, Encoder, PositiveInt

#: ImageNet's per-channel mean and standard deviation of [0, 1] pixels (torchvision's Normalize)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: (filters, kernel, stride) of the first four convolutions; the fifth has ``channels`` filters
CONVS = ((64, 11, 4), (192, 5, 1), (384, 3, 1), (256, 3, 1))
#: the convolutions (by index) followed by a 3x3 / 2 max-pool
POOLED = (0, 1, 4)
#: the smallest image side that leaves a 1x1 map
MIN_SIDE = 63


def feature_map_side(side: int) -> int:
    """The side of the last feature map for an input side of ``side`` pixels (0: nothing left)."""
    n = (side + 4 - 11) // 4 + 1  # conv 1: zero-padded by 2, stride 4
    for _ in POOLED:
        n = (n - 3) // 2 + 1 if n >= 3 else 0
    return max(n, 0)


@keras.saving.register_keras_serializable(package="mmkeras_vision")
class AlexNetEncoder(Encoder):
    """AlexNet's five convolutions over images ``[B, H, W, 3]`` in [0, 1] (see the module docstring
    for the layout and the map sizes: 224 x 224 gives a 6 x 6 map).

    ``output`` chooses what is returned from the last map ``[B, H', W', channels]``:

    - ``vector``: its global average, projected linearly to ``[B, output_dim]``;
    - ``tokens``: each position projected linearly, ``[B, H' * W', output_dim]`` (row-major; 36
      tokens at 224 px), read by the ``transformer`` fusion as a sequence, without positions;
    - ``map``: each position projected linearly, kept as ``[B, H', W', output_dim]``; the
      ``transformer`` fusion then makes one token per position with a 2D sin-cos position
      embedding, as CoMM's ``PatchedInputAdapter`` (patch size 1) does.

    Args:
        output_dim: the size of the projected feature (per position for ``tokens`` and ``map``).
        channels: filters of the fifth convolution (AlexNet and CoMM's code: 256; 512 gives a map
            of 512-d positions).
        batch_norm: batch normalisation after each convolution (AlexNet has none).
        normalize: standardise the [0, 1] input with ImageNet's channel means and deviations, as
            torchvision's Normalize in CoMM's pipeline (needs 3 channels).
        output: ``vector``, ``tokens`` or ``map`` (above).
    """

    #: the row shapes (no batch axis) it reads; checked by `mmkeras validate`
    input_layouts = ("H, W, C",)

    def __init__(
        self,
        output_dim: PositiveInt,
        channels: PositiveInt = 512,
        batch_norm: bool = False,
        normalize: bool = True,
        output: Literal["vector", "tokens", "map"] = "vector",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.output_dim = output_dim
        self.channels = channels
        self.batch_norm = batch_norm
        self.normalize = normalize
        self.output_mode = output  # Keras's Layer owns ``output``
        dtype = self.dtype_policy
        self.pad = layers.ZeroPadding2D(2, dtype=dtype, name="pad_0")
        specs = [*CONVS, (channels, 3, 1)]
        self.convs = [
            layers.Conv2D(f, k, strides=s, padding="valid" if i == 0 else "same", dtype=dtype, name=f"conv_{i}")
            for i, (f, k, s) in enumerate(specs)
        ]
        norm = layers.BatchNormalization
        self.norms = [norm(dtype=dtype, name=f"bn_{i}") for i in range(len(specs))] if batch_norm else []
        self.pools = {i: layers.MaxPooling2D(3, 2, padding="valid", dtype=dtype, name=f"pool_{i}") for i in POOLED}
        self.out = layers.Dense(output_dim, dtype=dtype, name="projection")

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"{self.name}: expects images [B, H, W, C], got shape {tuple(input_shape)}")
        height, width, depth = input_shape[1:]
        if self.normalize and depth != 3:
            raise ValueError(f"{self.name}: normalize: true standardises RGB images, got {depth} channels; set false")
        small = [s for s in (height, width) if s is not None and s < MIN_SIDE]
        if small:
            raise ValueError(
                f"{self.name}: images of {height}x{width} leave no feature map; AlexNet needs sides of at "
                f"least {MIN_SIDE} pixels (224 gives 6x6)"
            )
        self.pad.build(input_shape)
        shape = self.pad.compute_output_shape(input_shape)
        for i, conv in enumerate(self.convs):
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            if self.norms:
                self.norms[i].build(shape)
            if i in self.pools:
                self.pools[i].build(shape)
                shape = self.pools[i].compute_output_shape(shape)
        self.out.build(shape)

    def features(self, x, training=None):
        """The last activated, pooled map ``[B, H', W', channels]``."""
        if self.normalize:
            mean = ops.cast(ops.convert_to_tensor(IMAGENET_MEAN), x.dtype)
            std = ops.cast(ops.convert_to_tensor(IMAGENET_STD), x.dtype)
            x = (x - mean) / std
        x = self.pad(x)
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if self.norms:
                x = self.norms[i](x, training=training)
            x = ops.relu(x)
            if i in self.pools:
                x = self.pools[i](x)
        return x

    def call(self, x, training=None):
        x = self.features(x, training=training)
        if self.output_mode == "vector":
            return self.out(ops.mean(x, axis=(1, 2)))
        x = self.out(x)  # a Dense reads the last axis: one projection per position
        if self.output_mode == "map":
            return x
        height, width = x.shape[1:3]
        if height is None or width is None:
            return ops.reshape(x, (ops.shape(x)[0], -1, self.output_dim))
        return ops.reshape(x, (-1, height * width, self.output_dim))  # -1: a symbolic batch axis may be None

    def compute_output_shape(self, input_shape):
        batch, height, width = input_shape[:3]
        if self.output_mode == "vector":
            return (batch, self.output_dim)
        sides = [None if s is None else feature_map_side(s) for s in (height, width)]
        if self.output_mode == "map":
            return (batch, *sides, self.output_dim)
        return (batch, None if None in sides else sides[0] * sides[1], self.output_dim)

    def get_config(self):
        config = super(Component, self).get_config()  # Keras's base config; every parameter follows
        for name in inspect.signature(type(self).__init__).parameters:
            if name not in ("self", "kwargs"):
                config[name] = getattr(self, "output_mode" if name == "output" else name)
        return config
