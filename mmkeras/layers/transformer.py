"""The pre-LN transformer block shared by the transformer fusion and sequence encoders."""

from __future__ import annotations

import keras
from keras import layers

from mmkeras.component import Component
from mmkeras.params import DropoutRate, PositiveFloat, PositiveInt


@keras.saving.register_keras_serializable(package="mmkeras")
class TransformerBlock(Component, keras.layers.Layer):
    """x <- x + Drop(MHA(LN x)), then x <- x + Drop(MLP(LN x)): a pre-LN transformer block
    (Vaswani et al., 2017, with the normalisation moved before each sublayer as in Xiong et al., 2020).

    The MLP is ``round(mlp_ratio * width)`` wide with GELU and dropout after its activation;
    ``call(x, attention_mask)`` takes ``x`` of shape ``[B, L, width]`` and an optional boolean
    ``attention_mask`` ``[B, L, L]`` saying which keys each query may attend to.

    Args:
        width: the token width (the model dimension); a multiple of ``num_heads``.
        num_heads: the number of attention heads, each ``width / num_heads`` wide.
        mlp_ratio: the MLP's hidden width as a multiple of ``width``.
        dropout: the dropout rate on the attention weights and after each sublayer.
    """

    def __init__(
        self,
        width: PositiveInt,
        num_heads: PositiveInt,
        mlp_ratio: PositiveFloat = 4.0,
        dropout: DropoutRate = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if width % num_heads:
            raise ValueError(f"TransformerBlock: width ({width}) must be a multiple of num_heads ({num_heads})")
        self.width = width
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio
        self.dropout = dropout
        self.norm1 = layers.LayerNormalization(epsilon=1e-6, dtype=self.dtype_policy, name="norm1")
        self.attention = layers.MultiHeadAttention(
            num_heads, width // num_heads, dropout=dropout, dtype=self.dtype_policy, name="attention"
        )
        self.norm2 = layers.LayerNormalization(epsilon=1e-6, dtype=self.dtype_policy, name="norm2")
        # two dense layers rather than an MLP sublayer: the weights keep the paths of saved models
        self.mlp_in = layers.Dense(round(width * mlp_ratio), activation="gelu", dtype=self.dtype_policy, name="mlp_in")
        self.mlp_out = layers.Dense(width, dtype=self.dtype_policy, name="mlp_out")
        self.drop = layers.Dropout(dropout, dtype=self.dtype_policy, name="dropout")

    def build(self, input_shape):
        shape = tuple(input_shape)
        self.norm1.build(shape)
        self.attention.build(shape, shape)
        self.norm2.build(shape)
        self.mlp_in.build(shape)
        self.mlp_out.build(shape[:-1] + (self.mlp_in.units,))

    def call(self, x, attention_mask=None, training=None):
        h = self.norm1(x)
        x = x + self.drop(self.attention(h, h, attention_mask=attention_mask, training=training), training=training)
        h = self.mlp_out(self.drop(self.mlp_in(self.norm2(x)), training=training))
        return x + self.drop(h, training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)
