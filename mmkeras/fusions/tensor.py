"""Tensor fusion (Zadeh et al., 2017, "Tensor Fusion Network for Multimodal Sentiment Analysis")."""

from __future__ import annotations

import keras
from keras import layers, ops

from mmkeras.fusions.base import Fusion
from mmkeras.params import PositiveInt


def with_one(h, mask):
    """[h; 1] where the modality is present, [0 ... 0; 1] where it is missing."""
    keep = ops.expand_dims(ops.cast(mask, "float32") > 0, -1)
    h = ops.where(keep, h, ops.zeros_like(h))
    return ops.concatenate([h, ops.ones_like(h[:, :1])], axis=-1)


@keras.saving.register_keras_serializable(package="mmkeras")
class TensorFusion(Fusion):
    """h = act(W vec([h_1; 1] (x) [h_2; 1] (x) ... (x) [h_M; 1]) + b), modalities in sorted name order.

    The appended 1 keeps every unimodal and lower-order interaction term in the outer
    product next to the full M-way one. A missing modality enters as [0 ... 0; 1], which
    keeps exactly the terms that do not involve it. The flattened product has
    prod_m (d_m + 1) entries: more than ``max_features`` is refused (use ``low_rank``).
    """

    def __init__(
        self, output_dim: PositiveInt, activation: str | None = None, max_features: PositiveInt = 1_000_000, **kwargs
    ):
        super().__init__(**kwargs)
        self.output_dim = output_dim
        self.activation = activation
        self.max_features = max_features
        self.dense = layers.Dense(output_dim, activation=activation, dtype=self.dtype_policy, name="projection")

    def build(self, features_shape, masks_shape=None):
        dims = {n: int(features_shape[n][-1]) for n in sorted(features_shape)}
        size = 1
        for d in dims.values():
            size *= d + 1
        if size > self.max_features:
            raise ValueError(
                f"tensor fusion of feature sizes {dims} has {size} features (the product of d_m + 1), more than "
                f"max_features={self.max_features}; lower model.feature_dim or use the low_rank fusion"
            )
        self.dense.build((None, size))

    def call(self, features, masks):
        names = sorted(features)
        product = None
        for n in names:
            v = with_one(features[n], masks[n])
            if product is None:
                product = v
            else:
                outer = ops.expand_dims(product, 2) * ops.expand_dims(v, 1)
                product = ops.reshape(outer, (-1, int(product.shape[-1]) * int(v.shape[-1])))
        return self.dense(product)

    def compute_output_shape(self, features_shape, masks_shape=None):
        return (next(iter(features_shape.values()))[0], self.output_dim)
