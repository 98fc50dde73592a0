"""Low-rank multimodal fusion (Liu et al., 2018, "Efficient Low-rank Multimodal Fusion with
Modality-Specific Factors")."""

from __future__ import annotations

import keras
from keras import ops

from mmkeras.fusions.base import Fusion
from mmkeras.fusions.tensor import with_one
from mmkeras.params import PositiveInt


@keras.saving.register_keras_serializable(package="mmkeras")
class LowRankFusion(Fusion):
    """h = act( sum_{i=1}^r lambda_i prod_m (W_m^(i) [h_m; 1]) + b ), the product elementwise
    over modalities (sorted by name), W_m^(i) a (d_m + 1) x output_dim factor.

    This is the tensor fusion ``W vec(prod-outer [h_m; 1])`` with the weight tensor W
    constrained to rank r, computed without forming the outer product: cost linear in the
    number of modalities. A missing modality enters as [0 ... 0; 1], so its factor is the
    last row of W_m^(i) alone (the factor of the constant 1), as in tensor fusion.
    """

    def __init__(self, output_dim: PositiveInt, rank: PositiveInt = 4, activation: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.output_dim = output_dim
        self.rank = rank
        self.activation = activation
        self.act = keras.activations.get(activation)

    def build(self, features_shape, masks_shape=None):
        self.factors = {
            n: self.add_weight(
                name=f"factor_{n}",
                shape=(self.rank, int(features_shape[n][-1]) + 1, self.output_dim),
                initializer="glorot_normal",
            )
            for n in sorted(features_shape)
        }
        self.rank_weights = self.add_weight(name="rank_weights", shape=(self.rank,), initializer="glorot_normal")
        self.bias = self.add_weight(name="bias", shape=(self.output_dim,), initializer="zeros")

    def call(self, features, masks):
        product = None
        for n in sorted(features):
            factor = ops.einsum("bd,rdo->bro", with_one(features[n], masks[n]), self.factors[n])
            product = factor if product is None else product * factor
        return self.act(ops.einsum("r,bro->bo", self.rank_weights, product) + self.bias)

    def compute_output_shape(self, features_shape, masks_shape=None):
        return (next(iter(features_shape.values()))[0], self.output_dim)
