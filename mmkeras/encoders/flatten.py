"""The raw input, flattened and placed in a shared vector: the encoder of very early fusion."""

from __future__ import annotations

import math

import keras
from keras import ops

from mmkeras.encoders.base import Encoder
from mmkeras.params import NonNegativeInt, PositiveInt


@keras.saving.register_keras_serializable(package="mmkeras")
class FlattenEncoder(Encoder):
    """h = [0_offset; vec(x); 0_(output_dim - offset - n)]: the modality's raw input x, flattened to
    its n values, at positions offset .. offset + n - 1 of a zero vector of ``output_dim``. No weights.

    Very early fusion (concatenation of the raw modalities before any encoder): give every
    modality a ``flatten`` encoder, with offsets that tile ``model.feature_dim`` = the total
    number of raw values without overlap, and the ``early_concat`` fusion. The fused feature is then the
    concatenation [x_1; ...; x_M] of the present modalities' raw inputs, zeros for the missing ones,
    and the model's head is the joint encoder; each modality's latent is that joint encoder applied
    to the modality alone. MHD (modalities in sorted order): image 784 values at offset 0, label
    10 at 784, sound 4096 at 794, trajectory 200 at 4890; feature_dim 5090.
    """

    def __init__(self, output_dim: PositiveInt, offset: NonNegativeInt = 0, **kwargs):
        super().__init__(**kwargs)
        self.output_dim = output_dim
        self.offset = offset

    def _size(self, input_shape) -> int:
        n = math.prod(int(d) for d in input_shape[1:])
        if self.offset + n > self.output_dim:
            raise ValueError(
                f"flatten: the input's {n} values at offset {self.offset} end at {self.offset + n}, beyond "
                f"output_dim {self.output_dim} (the recipe's model.feature_dim): make feature_dim the total size "
                "of the raw modalities and give each modality the offset where the previous ones end"
            )
        return n

    def build(self, input_shape):
        self._size(input_shape)

    def call(self, x):
        n = self._size(x.shape)
        flat = ops.reshape(ops.cast(x, self.compute_dtype), (-1, n))
        return ops.pad(flat, [[0, 0], [self.offset, self.output_dim - self.offset - n]])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)
