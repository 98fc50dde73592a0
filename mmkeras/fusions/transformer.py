"""Fusion transformer: every modality's feature becomes tokens, a CLS token reads them all."""

from __future__ import annotations

from typing import Literal

import keras
import numpy as np
from keras import layers, ops

from mmkeras.fusions.base import Fusion
from mmkeras.layers.transformer import TransformerBlock
from mmkeras.params import DropoutRate, NonNegativeInt, PositiveFloat, PositiveInt


def sincos_2d(height: int, width: int, dim: int) -> np.ndarray:
    """[height * width, dim] fixed 2D sine-cosine position embedding (row-major grid): half of the
    channels encode the row, half the column, each as sin/cos at frequencies 1 / 10000^(k / (dim/4))
    (Vaswani et al., 2017, extended to 2D as in MAE, He et al., 2022)."""
    if dim % 4:
        raise ValueError(f"the 2D sin-cos position embedding needs a width divisible by 4, got {dim}")
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim // 4))
    rows, cols = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")

    def encode(pos):
        angles = pos.reshape(-1, 1) * omega[None, :]
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    return np.concatenate([encode(rows), encode(cols)], axis=1).astype("float32")


@keras.saving.register_keras_serializable(package="mmkeras")
class TransformerFusion(Fusion):
    """CoMM's fusion transformer (Dufumier et al., ICLR 2025, "What to align in multimodal
    contrastive learning?"): the joint feature is the CLS output of a small transformer that
    reads the tokens of every present modality.

    Each modality's feature becomes tokens of size ``width`` through an adapter chosen by its rank:

    - a map ``[B, H, W, C]``: non-overlapping ``patch_size`` x ``patch_size`` patches (1: pixels),
      flattened, projected linearly, plus a fixed 2D sin-cos position embedding;
    - a vector ``[B, d]``: ``vector_tokens="one"``, one token ``W h + b``; ``"per_feature"``, one
      token per feature, ``t_j = h_j w_j + b_j`` (learned ``w_j``, ``b_j`` per feature);
    - a sequence ``[B, T, d]``: its tokens as they are, projected linearly to ``width`` (no position
      embedding: the sequence encoder carries the order).

    ``modality_embeddings`` adds a learned vector per modality to its tokens (the official code has
    none). A learned CLS token is prepended; ``num_layers`` pre-LN blocks (``num_heads`` heads, MLP
    of ``mlp_ratio * width`` with GELU, ``dropout``) follow, then a LayerNorm; the CLS output is
    projected linearly to ``output_dim``.

    Missing modalities: a real attention mask removes a missing modality's tokens as keys, for
    every query, in training and inference alike (the official code's padding mask added +1
    instead of masking and was dropped in training); the CLS token always attends to itself, so a
    row with no modality gives the CLS token's own transform. A missing modality's features are
    also zeroed before tokenising, so no value it holds (even inf or nan) can reach the output.
    """

    def __init__(
        self,
        output_dim: PositiveInt,
        width: PositiveInt = 64,
        num_layers: NonNegativeInt = 1,
        num_heads: PositiveInt = 8,
        mlp_ratio: PositiveFloat = 4.0,
        dropout: DropoutRate = 0.0,
        vector_tokens: Literal["one", "per_feature"] = "one",
        patch_size: PositiveInt = 1,
        modality_embeddings: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if width % num_heads:
            raise ValueError(f"width ({width}) must be a multiple of num_heads ({num_heads})")
        self.output_dim = output_dim
        self.width = width
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio
        self.dropout = dropout
        self.vector_tokens = vector_tokens
        self.patch_size = patch_size
        self.modality_embeddings = modality_embeddings
        dtype = self.dtype_policy
        self.blocks = [
            TransformerBlock(width, num_heads, mlp_ratio, dropout, dtype=dtype, name=f"block_{i}")
            for i in range(num_layers)
        ]
        self.final_norm = layers.LayerNormalization(epsilon=1e-6, dtype=dtype, name="final_norm")
        self.out = layers.Dense(output_dim, dtype=dtype, name="projection")

    # -- building ----------------------------------------------------------------------------
    def build(self, features_shape, masks_shape=None):
        self.names = sorted(features_shape)
        self.token_counts: dict[str, int] = {}
        self.projections: dict[str, layers.Dense] = {}
        self.positions: dict[str, np.ndarray] = {}
        self.feature_weights: dict[str, keras.Variable] = {}
        for n in self.names:
            shape = tuple(features_shape[n])
            if len(shape) == 2 and self.vector_tokens == "per_feature":
                d = int(shape[1])
                self.feature_weights[n] = (
                    self.add_weight(name=f"{n}_token_kernel", shape=(d, self.width), initializer="glorot_uniform"),
                    self.add_weight(name=f"{n}_token_bias", shape=(d, self.width), initializer="zeros"),
                )
                self.token_counts[n] = d
                continue
            if len(shape) == 2:
                self.token_counts[n], size = 1, int(shape[1])
            elif len(shape) == 3:
                self.token_counts[n], size = int(shape[1]), int(shape[2])
            elif len(shape) == 4:
                h, w, c = (int(s) for s in shape[1:])
                p = self.patch_size
                if h % p or w % p:
                    raise ValueError(f"modality {n!r}: feature map {h}x{w} is not divisible by patch_size {p}")
                self.token_counts[n], size = (h // p) * (w // p), p * p * c
                self.positions[n] = sincos_2d(h // p, w // p, self.width)
            else:
                raise ValueError(
                    f"modality {n!r}: the transformer fusion takes [B, d], [B, T, d] or [B, H, W, C] "
                    f"features, got {shape}"
                )
            self.projections[n] = layers.Dense(self.width, dtype=self.dtype_policy, name=f"tokens_{n}")
            self.projections[n].build((None, size))
        self.cls_token = self.add_weight(name="cls_token", shape=(1, 1, self.width), initializer="random_normal")
        if self.modality_embeddings:
            self.modality_embedding = self.add_weight(
                name="modality_embedding", shape=(len(self.names), self.width), initializer="random_normal"
            )
        tokens = (None, 1 + sum(self.token_counts.values()), self.width)
        for block in self.blocks:
            block.build(tokens)
        self.final_norm.build(tokens)
        self.out.build((None, self.width))

    # -- forward -----------------------------------------------------------------------------
    def _tokens(self, n: str, h):
        """[B, T_n, width] tokens of modality ``n``."""
        if n in self.feature_weights:
            kernel, bias = self.feature_weights[n]
            return ops.expand_dims(h, -1) * ops.cast(kernel, h.dtype) + ops.cast(bias, h.dtype)
        if len(h.shape) == 2:
            return ops.expand_dims(self.projections[n](h), 1)
        if len(h.shape) == 4:
            _, height, width, channels = h.shape
            p = self.patch_size
            h = ops.reshape(h, (-1, height // p, p, width // p, p, channels))
            h = ops.reshape(ops.transpose(h, (0, 1, 3, 2, 4, 5)), (-1, self.token_counts[n], p * p * channels))
            t = self.projections[n](h)
            return t + ops.cast(ops.convert_to_tensor(self.positions[n]), t.dtype)[None]
        return self.projections[n](h)

    def call(self, features, masks, training=None):
        batch = ops.shape(features[self.names[0]])[0]
        parts, present = [], [ops.ones((batch, 1), "bool")]  # the CLS token is always a key
        for i, n in enumerate(self.names):
            h = features[n]
            keep = ops.cast(masks[n], "float32") > 0
            # zeroed, not multiplied: 0 * inf would still be nan
            h = ops.where(ops.reshape(keep, (-1,) + (1,) * (len(h.shape) - 1)), h, ops.zeros_like(h))
            t = self._tokens(n, h)
            if self.modality_embeddings:
                t = t + ops.cast(self.modality_embedding[i], t.dtype)
            parts.append(t)
            present.append(ops.repeat(ops.expand_dims(keep, 1), self.token_counts[n], axis=1))
        cls = ops.broadcast_to(ops.cast(self.cls_token, parts[0].dtype), (batch, 1, self.width))
        x = ops.concatenate([cls] + parts, axis=1)
        keys = ops.concatenate(present, axis=1)  # [B, N] which tokens may be attended to
        attention_mask = ops.repeat(ops.expand_dims(keys, 1), x.shape[1], axis=1)  # [B, queries, keys]
        for block in self.blocks:
            x = block(x, attention_mask, training=training)
        return self.out(self.final_norm(x)[:, 0])

    def compute_output_shape(self, features_shape, masks_shape=None):
        return (next(iter(features_shape.values()))[0], self.output_dim)
