"""Gated fusion: each modality's features scaled by a gate computed from every modality."""

from __future__ import annotations

import keras
from keras import layers, ops

from mmkeras.fusions.base import Fusion
from mmkeras.params import PositiveInt


def masked(h, mask):
    """``h`` where the modality is present, zeros where it is missing (whatever ``h`` holds there)."""
    return ops.where(ops.expand_dims(ops.cast(mask, "float32") > 0, -1), h, ops.zeros_like(h))


@keras.saving.register_keras_serializable(package="mmkeras")
class GatedFusion(Fusion):
    """h = act( sum_{m present} U_m (g_m * h_m) + b ),   g_m = sigmoid(W_m [h~_1; ...; h~_M] + c_m),

    where h~_k is h_k for a present modality and 0 for a missing one, and modalities are in
    sorted name order. So with two modalities z_A = g_A(x_A, x_B) * x_A: each modality is
    gated by what all of them show (the gated multimodal unit of Arevalo et al., 2017,
    "Gated Multimodal Units for Information Fusion", with a gate per modality instead of a
    convex pair). U_m is a modality-specific linear map to ``output_dim`` (modalities may
    differ in size), summed over the present modalities.
    """

    def __init__(self, output_dim: PositiveInt, activation: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.output_dim = output_dim
        self.activation = activation
        self.act = keras.activations.get(activation)

    def build(self, features_shape, masks_shape=None):
        names = sorted(features_shape)
        total = sum(int(features_shape[n][-1]) for n in names)
        self.gates = {
            n: layers.Dense(int(features_shape[n][-1]), activation="sigmoid", dtype=self.dtype_policy, name=f"gate_{n}")
            for n in names
        }
        self.projections = {
            n: layers.Dense(self.output_dim, use_bias=False, dtype=self.dtype_policy, name=f"projection_{n}")
            for n in names
        }
        for n in names:
            self.gates[n].build((None, total))
            self.projections[n].build(tuple(features_shape[n]))
        self.bias = self.add_weight(name="bias", shape=(self.output_dim,), initializer="zeros")

    def call(self, features, masks):
        names = sorted(features)
        kept = {n: masked(features[n], masks[n]) for n in names}
        context = ops.concatenate([kept[n] for n in names], axis=-1)
        total = 0.0
        for n in names:
            gated = self.gates[n](context) * kept[n]
            total = total + self.projections[n](gated)  # a missing modality's gated features are already 0
        return self.act(total + self.bias)

    def compute_output_shape(self, features_shape, masks_shape=None):
        return (next(iter(features_shape.values()))[0], self.output_dim)
