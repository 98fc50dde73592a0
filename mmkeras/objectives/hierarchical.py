"""The shared bottom level of the two-level generative models Nexus and MUSE (Vasco et al. 2022):
one VAE per modality, and decoders from the top latent back to each modality's latent.

Each modality encoder outputs [mu_m, logvar_m] (2L values), the expert q(z_m | x_m) = N(mu_m, var_m)
of that modality's own latent z_m, decoded by the modality's decoder p(x_m | z_m). The bottom
loss of a row sums the negative ELBO of each present modality:
    L_bottom = sum_{m present} [ lambda_m (-log p(x_m | z_m)) + beta KL(N(mu_m, var_m) || N(0, I)) ]
with z_m = mu_m + sqrt(var_m) * eps (``sample=False``: z_m = mu_m), the likelihoods of
:func:`mmkeras.losses.gaussian.negative_log_likelihood` and the KL of
:func:`mmkeras.losses.gaussian.gaussian_kl`. The top level (the fusion's output, a Gaussian
[mu_top, logvar_top] of a latent z_top) is decoded back to the bottom latents by a dense decoder
per modality, D_m:
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
from keras import ops

from mmkeras.distribute import local_contribution
from mmkeras.errors import RecipeError
from mmkeras.heads.dense_decoder import DenseDecoder
from mmkeras.losses.gaussian import gaussian_kl, negative_log_likelihood, reparameterize, split_experts
from mmkeras.objectives.base import DecodingObjective, check_likelihoods
from mmkeras.params import NonNegativeFloat, PositiveInt


class TwoLevelVAE(DecodingObjective):
    """Base of Nexus and MUSE: the modality VAEs, the top decoders and generation (module docstring).

    Subclasses set ``name_`` (for errors), implement ``top_latent_size(joint_size, num_modalities)``
    and may extend ``top_terms(outputs, experts, masks, any_present) -> (loss contribution, {metric: value})``.
    Metrics: ``kl`` (the modality KLs), ``top_kl``, ``top_nll`` and ``nll_<m>`` per modality.

    Args:
        decoders: ``{modality: {name: <head>, params: {...}}}``, one per modality (its VAE's decoder).
        likelihoods: ``{modality: gaussian | bernoulli | categorical}`` (gaussian by default).
        lambdas: ``{modality: weight}`` of its log-likelihood (1 by default).
        beta: the modality KLs' weight.
        gamma: the top-level reconstruction's weight.
        top_beta: the top KLs' weight.
        top_hidden_units: hidden layers of the dense decoders from the top latent to each
            modality's latent.
        sample: draw the latents (training) or take their means (deterministic, for tests).
        seed: of the noise.
    """

    def __init__(
        self,
        decoders: dict[str, dict[str, Any]],
        likelihoods: dict[str, str] | None = None,
        lambdas: dict[str, float] | None = None,
        beta: NonNegativeFloat = 1.0,
        gamma: NonNegativeFloat = 1.0,
        top_beta: NonNegativeFloat = 1.0,
        top_hidden_units: list[PositiveInt] = (512, 512),  # type: ignore[assignment]
        sample: bool = True,
        seed: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self._keep_decoders(decoders)
        self.likelihoods, self.lambdas = check_likelihoods(self.decoders, likelihoods, lambdas)
        self.beta, self.gamma, self.top_beta = beta, gamma, top_beta
        self.top_hidden_units = list(top_hidden_units)
        self._keep_sampling(sample, seed)
        self.top_decoders: dict[str, keras.layers.Layer] = {}

    def top_latent_size(self, joint_size: int, num_modalities: int) -> int:
        raise NotImplementedError

    # -- state -------------------------------------------------------------------------
    def build(self, outputs_shape, labels_shape=None):
        missing = sorted(set(outputs_shape.masks) - set(self.decoders))
        if missing:
            raise RecipeError(
                [
                    f"objective.params.decoders: {self.name_} needs a decoder for every modality (its VAE); none for "
                    f"{missing}"
                ]
            )
        latent, targets = self._gaussian_experts(outputs_shape, self.name_)
        top = self.top_latent_size(int(outputs_shape.joint_feature[-1]), len(outputs_shape.features))
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
        inputs = outputs.inputs
        present = [m for m in sorted(outputs.features) if m in inputs]
        masks, experts, nll = {}, {}, {}
        per_row, kl = 0.0, 0.0
        for m in present:
            masks[m] = ops.cast(outputs.masks[m], "float32")
            keep = ops.expand_dims(masks[m], -1) > 0
            mu, logvar = split_experts(outputs.features[m])
            mu, logvar = ops.where(keep, mu, 0.0), ops.where(keep, logvar, 0.0)
            experts[m] = (mu, logvar)
            prediction = self.decode(m, self.draw(mu, logvar), inputs)
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
        return reparameterize(mu, logvar, self.seed_generator) if self.sample else mu

    def top_posterior(self, outputs):
        """(mu_top, logvar_top) [B, L_top] in float32: the first 2 L_top values of the joint feature."""
        size = self._shapes["top_dim"]
        joint = ops.cast(outputs.joint_feature, "float32")
        return joint[:, :size], joint[:, size : 2 * size]

    def top_terms(self, outputs, experts, masks, any_present):
        """(loss contribution, metrics) of the top level: here the negative ELBO of the top posterior
        of the joint feature, gamma L_rec(z_top) + top_beta KL; subclasses add their own terms."""
        mu, logvar = self.top_posterior(outputs)
        reconstruction = self.top_reconstruction(self.draw(mu, logvar), experts, masks)
        kl = gaussian_kl(mu, logvar)
        loss = local_contribution(self.gamma * reconstruction + self.top_beta * kl, any_present)
        metrics = {
            "top_kl": local_contribution(kl, any_present),
            "top_nll": local_contribution(reconstruction, any_present),
        }
        return loss, metrics

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
        z_top = reparameterize(mu, logvar, self.seed_generator) if sample else mu
        return self.decoder_layers[target](self.top_decoders[target](z_top))
