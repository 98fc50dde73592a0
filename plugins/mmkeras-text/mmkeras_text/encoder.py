"""``text_transformer``: a small transformer encoder of token ids that ignores padding."""

from __future__ import annotations

from typing import Annotated

import keras
from keras import layers, ops
from pydantic import Field, Strict

import mmkeras.plugin as mm

PAD_ID, UNK_ID = 0, 1  # as in mmkeras_text.tokenizer (not imported: this module needs Keras only)


@keras.saving.register_keras_serializable(package="mmkeras")
class TextTransformer(mm.Encoder):
    """A transformer encoder of token ids ``[B, L]`` (id 0 = padding), pooled to ``[B, output_dim]``.

    With ``t_i`` the id at position ``i`` and ``p_i = [t_i != 0]`` the padding mask:

    - ``x_i = E[t_i] + P[i]``: a learned token embedding ``E`` (``vocab_size`` x ``width``) plus a
      learned position embedding ``P`` (``max_length`` x ``width``);
    - ``num_layers`` pre-LN blocks, ``x <- x + MHA(LN x)``, ``x <- x + MLP(LN x)`` (``num_heads``
      heads, MLP of ``4 * width`` with GELU, ``dropout``), where every query attends only to the
      keys with ``p_j = 1``, so padding tokens never reach a real token;
    - a final LayerNorm, the masked mean ``h = sum_i p_i x_i / max(1, sum_i p_i)`` over the real
      tokens, and a linear projection to ``output_dim``.

    The output does not depend on the padding positions (their ids, their number, or the padding
    embedding ``E[0]``); an all-padding row gives the projection of zero. Inputs are cast to
    int32, so float ids work too (as the conformance kit feeds them); ids outside
    ``[0, vocab_size)`` are read as the unknown id 1. ``L`` may be at most ``max_length``.
    """

    #: the row shapes (no batch axis) it reads, token ids; checked by `mmkeras validate`
    input_layouts = ("L",)

    def __init__(
        self,
        output_dim: mm.PositiveInt,
        # ids 0 (padding) and 1 (unknown) are reserved: a vocabulary holds at least one word besides them
        vocab_size: Annotated[int, Strict(), Field(ge=2)] = 1000,
        max_length: mm.PositiveInt = 32,
        width: mm.PositiveInt = 64,
        num_layers: mm.NonNegativeInt = 2,
        num_heads: mm.PositiveInt = 4,
        dropout: mm.DropoutRate = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if width % num_heads:
            raise ValueError(f"TextTransformer: width ({width}) must be a multiple of num_heads ({num_heads})")
        self.output_dim = output_dim
        self.vocab_size = vocab_size
        self.max_length = max_length
        self.width = width
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.dropout = dropout
        self.blocks = [
            mm.layers.TransformerBlock(self.width, self.num_heads, 4.0, self.dropout, name=f"block_{i}")
            for i in range(self.num_layers)
        ]
        self.final_norm = layers.LayerNormalization(epsilon=1e-6, name="final_norm")
        self.out = layers.Dense(self.output_dim, name="projection")

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"text_transformer takes token ids of shape [B, L], got shape {tuple(input_shape)}")
        length = input_shape[1]
        if length is not None and length > self.max_length:
            raise ValueError(
                f"text_transformer: sequences of length {length} exceed max_length={self.max_length}; "
                "raise the encoder's max_length or shorten the sequences"
            )
        self.token_embedding = self.add_weight(
            name="token_embedding", shape=(self.vocab_size, self.width), initializer="random_normal"
        )
        self.position_embedding = self.add_weight(
            name="position_embedding", shape=(self.max_length, self.width), initializer="random_normal"
        )
        tokens = (None, length, self.width)
        for block in self.blocks:
            block.build(tokens)
        self.final_norm.build(tokens)
        self.out.build((None, self.width))

    def call(self, ids, training=None):
        ids = ops.cast(ids, "int32")
        ids = ops.where((ids >= 0) & (ids < self.vocab_size), ids, ops.full_like(ids, UNK_ID))
        present = ids != PAD_ID  # [B, L]
        length = ids.shape[1]
        x = ops.take(ops.cast(self.token_embedding, self.compute_dtype), ids, axis=0)
        x = x + ops.cast(self.position_embedding[:length], self.compute_dtype)[None]
        # query i may attend key j iff j is a real token
        attention_mask = ops.repeat(ops.expand_dims(present, 1), length, axis=1)
        for block in self.blocks:
            x = block(x, attention_mask, training=training)
        x = self.final_norm(x)
        weight = ops.cast(ops.expand_dims(present, -1), x.dtype)
        pooled = ops.sum(x * weight, axis=1) / ops.maximum(ops.sum(weight, axis=1), ops.cast(1.0, x.dtype))
        return self.out(pooled)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)
