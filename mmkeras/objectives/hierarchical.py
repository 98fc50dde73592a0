"""The shared bottom level of the two-level generative models Nexus and MUSE (Vasco et al. 2022):
one VAE per modality, and decoders from the top latent back to each modality's latent.

Each modality encoder outputs [mu_m, logvar_m] (2L values), the expert q(z_m | x_m) = N(mu_m, var_m)
of that modality's own latent z_m, decoded by the modality's decoder p(x_m | z_m). The bottom
loss of a row sums the negative ELBO of each present modality:
    L_bottom = sum_{m present} [ lambda_m (-log p(x_m | z_m)) + beta KL(N(mu_m, var_m) || N(0, I)) ]
with z_m = mu_m + sqrt(var_m) * eps (``sample=False``: z_m = mu_m) and the likelihoods of
:mod:`mmkeras.objectives.mvae`. The top level (the fusion's output, a Gaussian [mu_top, logvar_top]
of a latent z_top) is decoded back to the bottom latents by a dense decoder per modality, D_m:
    L_rec(z_top) = gamma sum_{m present} (1/2 ||mu_m - D_m(z_top)||^2 + L/2 log 2 pi)
(a unit-variance Gaussian likelihood of the bottom latent's mean mu_m, held constant:
stop_gradient). Subclasses add the top-level terms (:mod:`mmkeras.objectives.nexus`,
:mod:`mmkeras.objectives.muse`).

Generation of a modality t from the given ones: z_top = mu_top of the given modalities (or a
draw with ``sample``), z_t = D_t(z_top), x_t = decoder_t(z_t) (the mean of p(x_t | z_t)).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers, ops

from mmkeras.distribute import local_contribution
from mmkeras.errors import RecipeError
from mmkeras.heads.decoders import DenseDecoder
from mmkeras.objectives.autoencoder import _check_decoders
from mmkeras.objectives.base import DecodingObjective
from mmkeras.objectives.mvae import check_likelihoods, gaussian_kl, negative_log_likelihood, split_experts
from mmkeras.params import NonNegativeFloat


def dense_stack(units: list[int], output: int, activation: str, name: str, input_dim: int) -> list[layers.Dense]:
    """Built Dense layers: ``units`` hidden with ``activation``, then a linear one to ``output``."""
    stack = [layers.Dense(u, activation=activation, name=f"{name}_{i}") for i, u in enumerate(units)]
    stack.append(layers.Dense(output, name=f"{name}_out"))
    size = input_dim
    for dense in stack:
        dense.build((None, size))
        size = dense.units
    return stack


def run_stack(stack: list[layers.Dense], h):
    for dense in stack:
        h = dense(h)
    return h


def check_features(features_shape: dict[str, Any], who: str) -> int:
    """The common latent size L of features [mu, logvar] (2L values each)."""
    sizes = {m: int(s[-1]) for m, s in features_shape.items()}
    if len(set(sizes.values())) != 1 or next(iter(sizes.values())) % 2:
        raise ValueError(
            f"{who} reads each modality's feature as [mu, logvar] of its latent, so the features need one even size "
            f"(feature_dim = 2 * latent); got {sizes}"
        )
    return next(iter(sizes.values())) // 2


class TwoLevelVAE(DecodingObjective):
    """Base of Nexus and MUSE: the modality VAEs, the top decoders and generation (module docstring).

    Subclasses set ``name_`` (for errors), implement ``top_latent_size(joint_size, num_modalities)``
    and ``top_terms(outputs, bottom, masks, any_present) -> (loss contribution, {metric: value})``.
    """

    name_ = "two-level VAE"

    def __init__(
        self,
        decoders: dict[str, dict[str, Any]],
        likelihoods: dict[str, str] | None = None,
        lambdas: dict[str, float] | None = None,
        beta: NonNegativeFloat = 1.0,
        gamma: NonNegativeFloat = 1.0,
        top_beta: NonNegativeFloat = 1.0,
        top_hidden_units: list[int] = (512, 512),  # type: ignore[assignment]
        sample: bool = True,
        seed: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.decoders = _check_decoders(decoders)
        self.likelihoods, self.lambdas = check_likelihoods(self.decoders, likelihoods, lambdas)
        if min(beta, gamma, top_beta) < 0:
            raise ValueError(f"beta, gamma, top_beta must be non-negative, got {beta}, {gamma}, {top_beta}")
        self.beta, self.gamma, self.top_beta = float(beta), float(gamma), float(top_beta)
        self.top_hidden_units = [int(u) for u in top_hidden_units]
        self.sample = bool(sample)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.decoder_layers: dict[str, keras.layers.Layer] = {}
        self.top_decoders: dict[str, keras.layers.Layer] = {}
        self._shapes: dict[str, Any] | None = None

    def metric_names(self, modalities):
        unknown = sorted(set(self.decoders) - set(modalities))
        if unknown:
            raise RecipeError(
                [f"objective.params.decoders.{unknown[0]}: no such modality; the model has {sorted(modalities)}"]
            )
        missing = sorted(set(modalities) - set(self.decoders))
        if missing:
            raise RecipeError(
                [
                    f"objective.params.decoders: {self.name_} needs a decoder for every modality (its VAE); none for "
                    f"{missing}"
                ]
            )
        return ["kl", "top_kl", "top_nll"] + [f"nll_{m}" for m in sorted(self.decoders)]

    def top_latent_size(self, joint_size: int, num_modalities: int) -> int:
        raise NotImplementedError

    # -- state -------------------------------------------------------------------------
    def build(self, outputs_shape, labels_shape=None):
        latent, targets = self._gaussian_experts(outputs_shape, self.name_)
        top = self.top_latent_size(int(outputs_shape["joint_feature"][-1]), len(outputs_shape["features"]))
        self._make_levels(latent, top, targets)

    def _make_levels(self, code_dim: int, top_dim: int, target_shapes: dict[str, list[int]]) -> None:
        self._make_decoders(code_dim, target_shapes)
        for t in sorted(target_shapes):
            decoder = DenseDecoder([code_dim], hidden_units=self.top_hidden_units, name=f"{t}_top_decoder")
            decoder.build((None, top_dim))
            self.top_decoders[t] = decoder
        self._shapes = {"code_dim": code_dim, "top_dim": top_dim, "target_shapes": target_shapes}

    def build_from_config(self, config):
        if config:
            shapes = {t: list(s) for t, s in config["target_shapes"].items()}
            self._make_levels(int(config["code_dim"]), int(config["top_dim"]), shapes)

    # -- loss ----------------------------------------------------------------------------
    def bottom(self, outputs):
        """(present modalities, masks, {m: (mu_m, logvar_m)}, per-row bottom loss [B], per-row KL [B],
        {m: per-row NLL [B]}); a missing row's expert is replaced by N(0, I) (nothing inf or nan)."""
        inputs = outputs["inputs"]
        present = [m for m in sorted(outputs["features"]) if m in inputs]
        masks, experts, nll = {}, {}, {}
        per_row, kl = 0.0, 0.0
        for m in present:
            masks[m] = ops.cast(outputs["masks"][m], "float32")
            keep = ops.expand_dims(masks[m], -1) > 0
            mu, logvar = split_experts(outputs["features"][m])
            mu, logvar = ops.where(keep, mu, 0.0), ops.where(keep, logvar, 0.0)
            experts[m] = (mu, logvar)
            prediction = self.decoder_layers[m](self.draw(mu, logvar))
            if tuple(prediction.shape[1:]) != tuple(inputs[m].shape[1:]):
                raise ValueError(
                    f"decoders.{m} reconstructs shape {tuple(prediction.shape[1:])} but the input {m} has shape "
                    f"{tuple(inputs[m].shape[1:])}"
                )
            row = negative_log_likelihood(self.likelihoods.get(m, "gaussian"), prediction, inputs[m])
            nll[m] = ops.where(masks[m] > 0, row, 0.0)  # where: a missing row's garbage input could be inf
            kl_m = ops.where(masks[m] > 0, gaussian_kl(mu, logvar), 0.0)
            kl = kl + kl_m
            per_row = per_row + self.lambdas.get(m, 1.0) * nll[m] + self.beta * kl_m
        return present, masks, experts, per_row, kl, nll

    def top_reconstruction(self, z_top, experts, masks):
        """Per row, the NLL of the present bottom means mu_m under N(D_m(z_top), I), summed over m."""
        total = 0.0
        for m, (mu, _) in experts.items():
            row = negative_log_likelihood("gaussian", self.top_decoders[m](z_top), ops.stop_gradient(mu))
            total = total + ops.where(masks[m] > 0, row, 0.0)
        return total

    def draw(self, mu, logvar):
        """mu + sqrt(var) * eps, or mu with ``sample=False``."""
        if not self.sample:
            return mu
        return mu + ops.exp(0.5 * logvar) * keras.random.normal(ops.shape(mu), seed=self.seed_generator)

    def top_posterior(self, outputs):
        """(mu_top, logvar_top) [B, L_top] in float32: the first 2 L_top values of the joint feature."""
        size = self._shapes["top_dim"]
        joint = ops.cast(outputs["joint_feature"], "float32")
        return joint[:, :size], joint[:, size : 2 * size]

    def top_terms(self, outputs, experts, masks, any_present):
        raise NotImplementedError

    def call(self, outputs, labels=None):
        present, masks, experts, per_row, kl, nll = self.bottom(outputs)
        any_present = None
        for m in present:
            p = ops.cast(masks[m] > 0, "float32")
            any_present = p if any_present is None else ops.maximum(any_present, p)
        top_loss, top_metrics = self.top_terms(outputs, experts, masks, any_present)
        zero = ops.zeros((), "float32")
        return {
            "loss": local_contribution(per_row, any_present) + top_loss,
            "kl": local_contribution(kl, any_present),
            **top_metrics,
            **{
                f"nll_{t}": local_contribution(nll[t], any_present) if t in nll else zero for t in sorted(self.decoders)
            },
        }

    # -- generation ----------------------------------------------------------------------------
    def generate(self, outputs, target: str, sample: bool = False):
        """Decode ``target`` through the top latent of the given modalities (module docstring)."""
        if target not in self.decoder_layers:
            raise ValueError(f"{self.name_} has no decoder for {target!r}; decoders are for {sorted(self.decoders)}")
        mu, logvar = self.top_posterior(outputs)
        z_top = mu
        if sample:
            z_top = mu + ops.exp(0.5 * logvar) * keras.random.normal(ops.shape(mu), seed=self.seed_generator)
        return self.decoder_layers[target](self.top_decoders[target](z_top))

    def get_config(self):
        return {
            **super().get_config(),
            "decoders": self.decoders,
            "likelihoods": self.likelihoods,
            "lambdas": self.lambdas,
            "beta": self.beta,
            "gamma": self.gamma,
            "top_beta": self.top_beta,
            "top_hidden_units": self.top_hidden_units,
            "sample": self.sample,
            "seed": self.seed,
        }
