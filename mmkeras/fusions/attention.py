"""Cross-modal attention fusion: modalities as tokens of a multi-head attention layer."""

from __future__ import annotations

import keras
from keras import layers, ops

from mmkeras.fusions.base import Fusion
from mmkeras.fusions.gated import masked
from mmkeras.params import PositiveInt


@keras.saving.register_keras_serializable(package="mmkeras")
class AttentionFusion(Fusion):
    """Each modality m becomes a token t_m = P_m h_m + e_m (a linear map to ``token_dim`` plus a
    learned modality embedding). Every token attends to the tokens of the present modalities
    (multi-head attention whose key mask drops missing modalities), with a residual and layer
    normalisation: u_m = LN(t_m + MHA(t_m, {t_k : k present})). The joint feature is
    h = act(W mean_{m present} u_m + b).

    This is the cross-modal attention of multimodal transformers (Tsai et al., 2019,
    "Multimodal Transformer for Unaligned Multimodal Language Sequences"; Vaswani et al.,
    2017) with one token per modality. A missing modality is neither a key nor pooled, so
    the output ignores its features.
    """

    def __init__(
        self,
        output_dim: PositiveInt,
        num_heads: PositiveInt = 4,
        token_dim: PositiveInt | None = None,
        activation: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.output_dim = output_dim
        self.num_heads = num_heads
        self.token_dim = token_dim
        width = token_dim if token_dim is not None else output_dim
        if width % num_heads:
            raise ValueError(f"token_dim ({width}) must be a multiple of num_heads ({num_heads}); set token_dim")
        self.width = width
        self.activation = activation
        dtype = self.dtype_policy
        self.attention = layers.MultiHeadAttention(num_heads, width // num_heads, dtype=dtype, name="attention")
        self.norm = layers.LayerNormalization(dtype=dtype, name="norm")
        self.out = layers.Dense(output_dim, activation=activation, dtype=dtype, name="projection")

    def build(self, features_shape, masks_shape=None):
        names = sorted(features_shape)
        self.tokenizers = {n: layers.Dense(self.width, dtype=self.dtype_policy, name=f"token_{n}") for n in names}
        for n in names:
            self.tokenizers[n].build(tuple(features_shape[n]))
        self.modality_embedding = self.add_weight(
            name="modality_embedding", shape=(len(names), self.width), initializer="glorot_uniform"
        )
        tokens = (None, len(names), self.width)
        self.attention.build(tokens, tokens)
        self.norm.build(tokens)
        self.out.build((None, self.width))

    def call(self, features, masks):
        names = sorted(features)
        tokens = ops.stack([self.tokenizers[n](masked(features[n], masks[n])) for n in names], axis=1)
        tokens = tokens + ops.cast(self.modality_embedding, tokens.dtype)
        present = ops.stack([ops.cast(masks[n], "float32") > 0 for n in names], axis=1)  # [B, M]
        key_mask = ops.repeat(ops.expand_dims(present, 1), len(names), axis=1)  # [B, queries, keys]
        mixed = self.norm(tokens + self.attention(tokens, tokens, attention_mask=key_mask))
        weight = ops.expand_dims(ops.cast(present, mixed.dtype), -1)
        pooled = ops.sum(mixed * weight, axis=1) / ops.maximum(ops.sum(weight, axis=1), 1.0)
        return self.out(pooled)

    def compute_output_shape(self, features_shape, masks_shape=None):
        return (next(iter(features_shape.values()))[0], self.output_dim)
