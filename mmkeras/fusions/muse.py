"""The MUSE posterior fusion (Vasco, Yin, Melo & Paiva, AAMAS 2022; the objective is
:mod:`mmkeras.objectives.muse`)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mmkeras.fusions.base import Fusion
from mmkeras.layers.mlp import MLP
from mmkeras.losses.gaussian import latent_size, product_of_experts
from mmkeras.params import PositiveInt


@keras.saving.register_keras_serializable(package="mmkeras")
class MuseFusion(Fusion):
    """The MUSE posterior of the present modalities X: a network per modality maps the bottom mean
    mu_m (the first half of its feature [mu_m, logvar_m]) to a Gaussian expert
    [mu_pi,m, logvar_pi,m] = e_m(mu_m) of z_pi, and the posterior is the product of those experts
    and the prior N(0, I) (:func:`mmkeras.losses.gaussian.product_of_experts`).

    The output is [mu_X, logvar_X], then each modality's expert in sorted name order, zeros where
    missing: 2 ``latent_dim`` (M + 1) values, so the objective can form the single-modality
    posteriors. A row with no modality gives the prior.

    Args:
        latent_dim: the size of z_pi (default: the modality latent size, half the feature size).
        hidden_units: each expert network's hidden layers.
        activation: their activation.
        stop_gradient: read mu_m as a constant (the top level does not train the modality encoders).
    """

    def __init__(
        self,
        latent_dim: PositiveInt | None = None,
        hidden_units: list[PositiveInt] = (512, 512),  # type: ignore[assignment]
        activation: str = "swish",
        stop_gradient: bool = True,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.latent_dim = latent_dim
        self.hidden_units = list(hidden_units)
        self.activation = activation
        self.stop_gradient = stop_gradient

    def build(self, features_shape, masks_shape=None):
        self.modality_latent = latent_size(features_shape, "the muse fusion")
        self.top_dim = self.latent_dim or self.modality_latent
        self.experts = {
            m: MLP(self.hidden_units, 2 * self.top_dim, self.activation, dtype=self.dtype_policy, name=f"expert_{m}")
            for m in sorted(features_shape)
        }
        for expert in self.experts.values():
            expert.build((None, self.modality_latent))

    def call(self, features, masks):
        experts = {}
        for m in sorted(features):
            mu = features[m][:, : self.modality_latent]
            if self.stop_gradient:
                mu = ops.stop_gradient(mu)
            present = ops.expand_dims(ops.cast(masks[m], "float32"), -1) > 0
            expert = ops.cast(self.experts[m](mu), "float32")
            experts[m] = ops.where(present, expert, 0.0)  # where: garbage could be inf
        mu, logvar = product_of_experts(experts, masks)
        joint = ops.concatenate([mu, logvar] + [experts[m] for m in sorted(features)], axis=-1)
        return ops.cast(joint, self.compute_dtype)

    def compute_output_shape(self, features_shape, masks_shape=None):
        shape = next(iter(features_shape.values()))
        return (shape[0], 2 * (self.latent_dim or shape[-1] // 2) * (len(features_shape) + 1))
