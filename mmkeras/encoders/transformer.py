"""A transformer encoder for padded sequences [B, T, d] (MultiBench's affect features, MIMIC's time series)."""

from __future__ import annotations

from typing import Literal

import keras
import numpy as np
from keras import layers, ops

from mmkeras.encoders._sequence import SequenceEncoder, last_valid, masked_mean, valid_steps, zero_masked
from mmkeras.layers.transformer import TransformerBlock
from mmkeras.params import DropoutRate, PositiveFloat, PositiveInt


@keras.saving.register_keras_serializable(package="mmkeras")
class TransformerEncoder(SequenceEncoder):
    """A per-step linear projection of ``[B, T, d]`` to ``width``, an optional position embedding,
    ``num_layers`` pre-LN transformer blocks (:class:`~mmkeras.layers.TransformerBlock`) and a final
    LayerNorm; pooled by ``output`` and projected linearly to ``output_dim``.

    CoMM's MultiBench encoders (Dufumier et al., ICLR 2025): the projection is their 1x1 convolution
    to 40 channels, then 5 layers of 5 heads and no position embedding (the defaults).

    Padding steps are zeroed before the projection and removed as attention keys for every query
    (a padding query attends to itself only, so no softmax row is empty); positions count the valid
    steps only, so leading padding does not shift them. ``output``:

    - ``"mean"``: the mean over the valid steps (zeros for a row with no valid step, then projected);
    - ``"cls"``: the output of a learned token prepended to the sequence, which every step may read;
    - ``"last"``: the last valid step's output;
    - ``"tokens"``: every step's output ``[B, T, output_dim]``, padding steps zeroed: token sequences
      for the ``transformer`` fusion.

    Args:
        output_dim: the feature size, or None for the transformer's width itself.
        width: the token width (the per-step projection's size); a multiple of ``num_heads``.
        num_layers: the number of transformer blocks.
        num_heads: the attention heads per block.
        mlp_ratio: each block's MLP width as a multiple of ``width``.
        dropout: the dropout rate on attention weights and after each sublayer (training only).
        positional: "none"; "learned": a learned vector per position (needs a known ``T``);
            "sinusoidal": fixed sine-cosine features of the position (Vaswani et al., 2017).
        output: how the sequence becomes the feature: "mean", "cls", "last" or "tokens".
        padding: "zero_steps": a step whose features are all exactly 0 is padding; "none": every
            step is data. An explicit ``mask`` given to ``call`` takes precedence.
    """

    #: the row shapes (no batch axis) it reads; checked by `mmkeras validate`
    input_layouts = ("T, C",)

    def __init__(
        self,
        output_dim: PositiveInt | None,
        width: PositiveInt = 40,
        num_layers: PositiveInt = 5,
        num_heads: PositiveInt = 5,
        mlp_ratio: PositiveFloat = 4.0,
        dropout: DropoutRate = 0.0,
        positional: Literal["none", "learned", "sinusoidal"] = "none",
        output: Literal["mean", "cls", "last", "tokens"] = "mean",
        padding: Literal["zero_steps", "none"] = "zero_steps",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if width % num_heads:
            raise ValueError(f"width ({width}) must be a multiple of num_heads ({num_heads})")
        if positional == "sinusoidal" and width % 2:
            raise ValueError(f"positional='sinusoidal' needs an even width, got {width}")
        self.output_dim = output_dim
        self.width = width
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio
        self.dropout = dropout
        self.positional = positional
        self.output_mode = output
        self.padding = padding
        dtype = self.dtype_policy
        self.embed = layers.Dense(width, dtype=dtype, name="embed")
        self.blocks = [
            TransformerBlock(width, num_heads, mlp_ratio, dropout, dtype=dtype, name=f"block_{i}")
            for i in range(num_layers)
        ]
        self.final_norm = layers.LayerNormalization(epsilon=1e-6, dtype=dtype, name="final_norm")
        self.out = layers.Dense(output_dim, dtype=dtype, name="projection") if output_dim is not None else None
        # 1 / 10000^(k / (width/2)), k < width/2: the frequencies of the sinusoidal positions
        self._frequencies = (1.0 / 10000 ** (np.arange(width // 2) / (width // 2))).astype("float32")

    def build(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) != 3:
            raise ValueError(f"TransformerEncoder reads sequences [B, T, d], got an input of shape {shape}")
        steps = shape[1]
        self.embed.build((None, steps, shape[2]))
        if self.positional == "learned":
            if steps is None:
                raise ValueError(
                    "TransformerEncoder: positional='learned' needs sequences of a known length, got [B, None, d]; "
                    "use positional='sinusoidal' or 'none' for sequences of varying length"
                )
            self.position_embedding = self.add_weight(
                name="position_embedding", shape=(int(steps), self.width), initializer="random_normal"
            )
        if self.output_mode == "cls":
            self.cls_token = self.add_weight(name="cls_token", shape=(1, 1, self.width), initializer="random_normal")
        tokens = (None, None if steps is None else steps + (self.output_mode == "cls"), self.width)
        for block in self.blocks:
            block.build(tokens)
        self.final_norm.build(tokens)
        if self.out is not None:
            self.out.build((None, self.width))

    def _positions(self, valid, dtype):
        """[B, T, width] position embeddings of the valid steps' ranks (0 for the first valid step)."""
        rank = ops.maximum(ops.cumsum(ops.cast(valid, "int32"), axis=1) - 1, 0)
        if self.positional == "learned":
            return ops.cast(ops.take(self.position_embedding, rank, axis=0), dtype)
        angles = ops.expand_dims(ops.cast(rank, "float32"), -1) * ops.convert_to_tensor(self._frequencies)
        return ops.cast(ops.concatenate([ops.sin(angles), ops.cos(angles)], axis=-1), dtype)

    def call(self, x, mask=None, training=None):
        valid = valid_steps(x, mask, self.padding)
        t = self.embed(zero_masked(x, valid))
        if self.positional != "none":
            t = t + self._positions(valid, t.dtype)
        keys = valid
        if self.output_mode == "cls":
            cls = ops.broadcast_to(ops.cast(self.cls_token, t.dtype), (ops.shape(t)[0], 1, self.width))
            t = ops.concatenate([cls, t], axis=1)
            keys = ops.concatenate([ops.ones((ops.shape(t)[0], 1), "bool"), valid], axis=1)
        steps = ops.arange(ops.shape(t)[1], dtype="int32")
        # a query may read the valid keys, and itself: a padding query's softmax row is then never empty
        attention_mask = ops.logical_or(
            ops.expand_dims(keys, 1), ops.expand_dims(ops.equal(steps[:, None], steps[None, :]), 0)
        )
        for block in self.blocks:
            t = block(t, attention_mask, training=training)
        t = self.final_norm(t)
        if self.output_mode == "cls":
            h = t[:, 0]
        elif self.output_mode == "mean":
            h = masked_mean(t, valid)
        elif self.output_mode == "last":
            h = last_valid(t, valid)
        else:
            return zero_masked(t if self.out is None else self.out(t), valid)
        return h if self.out is None else self.out(h)

    def compute_output_shape(self, input_shape):
        size = self.width if self.out is None else self.output_dim
        if self.output_mode == "tokens":
            return (input_shape[0], input_shape[1], size)
        return (input_shape[0], size)
