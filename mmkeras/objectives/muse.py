"""MUSE (Vasco, Yin, Melo & Paiva, AAMAS 2022, "How to Sense the World: Leveraging Hierarchy in
Multimodal Perception for Robust Reinforcement Learning Agents"): modality VAEs below, and above
them a multimodal latent z_pi whose posterior is a product of experts of modality-specific
top-level experts.

Bottom: each modality's VAE (see :mod:`mmkeras.objectives.hierarchical`), the encoder giving
[mu_m, logvar_m]. Top, the ``muse`` fusion: a network per modality maps mu_m to a Gaussian
expert [mu_pi,m, logvar_pi,m] = e_m(mu_m) of z_pi; the posterior of the present modalities X is
the product of their experts and the prior N(0, I) (:func:`~mmkeras.objectives.mvae.product_of_experts`):
    T_X = 1 + sum_{m in X} 1 / var_pi,m,   mu_X = (sum_{m in X} mu_pi,m / var_pi,m) / T_X,   var_X = 1 / T_X
The fusion outputs [mu_X, logvar_X] followed by every modality's expert (zeros where missing),
so the objective can form the single-modality posteriors; the ``gaussian_mean`` head takes mu_X,
so ``encode`` of any subset gives its posterior mean.

Objective, per row, with z_X = mu_X + sqrt(var_X) * eps:
    top(X) = gamma sum_{m present} (-log N(mu_m; D_m(z_X), I)) + top_beta KL(N(mu_X, var_X) || N(0, I))
    loss   = L_bottom + top(complete) + sum_m top({m})
each term averaged over the rows where X has a present modality: the single-modality terms
train each expert to infer z_pi, and decode every modality's latent, on its own.

Differences from the paper: the top experts read the bottom posterior means mu_m (not samples)
and the top level decodes mu_m; with ``stop_gradient`` (default) the top level does not train
the modality encoders (the paper's levels are trained by separate terms); no KL annealing.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mmkeras.distribute import local_contribution
from mmkeras.fusions.base import Fusion
from mmkeras.objectives.hierarchical import TwoLevelVAE, check_features, dense_stack, run_stack
from mmkeras.objectives.mvae import gaussian_kl, product_of_experts
from mmkeras.params import PositiveInt


@keras.saving.register_keras_serializable(package="mmkeras")
class MuseFusion(Fusion):
    """The MUSE posterior: [mu_X, logvar_X] of the product of the present modalities' top experts
    and the prior, then each modality's expert [mu_pi,m, logvar_pi,m] in sorted name order, zeros
    where missing: 2 ``latent_dim`` (M + 1) values (module docstring :mod:`mmkeras.objectives.muse`).

    latent_dim: the size of z_pi (default: the modality latent size, half the feature size).
    hidden_units: each expert network's hidden layers. stop_gradient: read mu_m as a constant
    (the top level does not train the modality encoders). A row with no modality gives the prior.
    """

    def __init__(
        self,
        latent_dim: PositiveInt | None = None,
        hidden_units: list[int] = (512, 512),  # type: ignore[assignment]
        activation: str = "swish",
        stop_gradient: bool = True,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if latent_dim is not None and latent_dim < 1:
            raise ValueError(f"latent_dim must be positive, got {latent_dim}")
        self.latent_dim = None if latent_dim is None else int(latent_dim)
        self.hidden_units = [int(u) for u in hidden_units]
        self.activation = activation
        self.stop_gradient = bool(stop_gradient)

    def build(self, features_shape, masks_shape=None):
        self.modality_latent = check_features(features_shape, "the muse fusion")
        self.top_dim = self.latent_dim or self.modality_latent
        self.experts = {
            m: dense_stack(self.hidden_units, 2 * self.top_dim, self.activation, f"expert_{m}", self.modality_latent)
            for m in sorted(features_shape)
        }

    def call(self, features, masks):
        experts = {}
        for m in sorted(features):
            mu = features[m][:, : self.modality_latent]
            if self.stop_gradient:
                mu = ops.stop_gradient(mu)
            present = ops.expand_dims(ops.cast(masks[m], "float32"), -1) > 0
            expert = ops.cast(run_stack(self.experts[m], mu), "float32")
            experts[m] = ops.where(present, expert, 0.0)  # where: garbage could be inf
        mu, logvar = product_of_experts(experts, masks)
        joint = ops.concatenate([mu, logvar] + [experts[m] for m in sorted(features)], axis=-1)
        return ops.cast(joint, self.compute_dtype)

    def compute_output_shape(self, features_shape, masks_shape=None):
        shape = next(iter(features_shape.values()))
        return (shape[0], 2 * (self.latent_dim or shape[-1] // 2) * (len(features_shape) + 1))

    def get_config(self):
        return {
            **super().get_config(),
            "latent_dim": self.latent_dim,
            "hidden_units": self.hidden_units,
            "activation": self.activation,
            "stop_gradient": self.stop_gradient,
        }


@keras.saving.register_keras_serializable(package="mmkeras")
class MUSE(TwoLevelVAE):
    """The MUSE loss (module docstring): the modality VAEs' negative ELBOs, and the top-level ELBO
    of the complete set and of each single modality, from the ``muse`` fusion's joint feature.

    decoders: ``{modality: {name: <head>, params: {...}}}``, one per modality (its VAE's decoder).
    likelihoods, lambdas: as in ``mvae`` (per modality). beta: the modality KLs' weight; gamma:
    the top-level reconstruction's; top_beta: the top KLs'. top_hidden_units: hidden layers of
    the dense decoders z_pi -> modality latent. sample: draw the latents (training) or take
    their means (deterministic, for tests). seed: of the noise.
    """

    name_ = "muse"

    def top_latent_size(self, joint_size, num_modalities):
        parts = 2 * (num_modalities + 1)
        if joint_size % parts:
            raise ValueError(
                f"muse reads the joint feature as [mu, logvar] of the product and of each of the "
                f"{num_modalities} experts ({parts} equal parts); its size {joint_size} is not a multiple of "
                f"{parts}: use the muse fusion"
            )
        return joint_size // parts

    def top_terms(self, outputs, experts, masks, any_present):
        size = self._shapes["top_dim"]
        joint = ops.cast(outputs["joint_feature"], "float32")
        mu, logvar = self.top_posterior(outputs)
        reconstruction = self.top_reconstruction(self.draw(mu, logvar), experts, masks)
        kl = gaussian_kl(mu, logvar)
        loss = local_contribution(self.gamma * reconstruction + self.top_beta * kl, any_present)
        metrics = {
            "top_kl": local_contribution(kl, any_present),
            "top_nll": local_contribution(reconstruction, any_present),
        }
        if len(experts) > 1:  # one modality's term equals the complete one
            for i, m in enumerate(sorted(outputs["features"])):
                if m not in experts:
                    continue
                start = 2 * size * (i + 1)
                single_mu, single_logvar = product_of_experts({m: joint[:, start : start + 2 * size]}, {m: masks[m]})
                term = self.gamma * self.top_reconstruction(self.draw(single_mu, single_logvar), experts, masks)
                term = term + self.top_beta * gaussian_kl(single_mu, single_logvar)
                loss = loss + local_contribution(term, ops.cast(masks[m] > 0, "float32"))
        return loss, metrics
