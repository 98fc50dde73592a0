"""The mixture-of-experts multimodal VAE, MMVAE (Shi, Siddharth, Paige & Torr, NeurIPS 2019,
"Variational Mixture-of-Experts Autoencoders for Multi-Modal Deep Generative Models").

Each modality encoder outputs 2L values, the Gaussian expert q_m(z | x_m) = N(mu_m, var_m) with
[mu_m, logvar_m] = h_m. The joint posterior of the present modalities S is their uniform mixture
    q(z | X_S) = 1/|S| sum_{m in S} q_m(z | x_m)
whose mean is the mean of the present mu_m (:func:`mmkeras.losses.gaussian.mixture_mean`; the
``moe`` fusion, what ``encode`` returns).

The objective is the stratified importance-weighted bound: K samples from each present expert
(one stratum per modality), each sample decoding every present modality t with the decoders the
objective owns:
    z_{m,k} = mu_m + sqrt(var_m) * eps_{m,k}                                 k = 1..K
    log w_{m,k} = log p(z_{m,k}) + sum_{t in S} lambda_t log p(x_t | z_{m,k}) - log q(z_{m,k} | X_S)
    L(X_S) = 1/|S| sum_{m in S} [ logsumexp_k log w_{m,k} - log K ]
with p(z) = N(0, I), log N of :func:`mmkeras.losses.gaussian.log_normal` and the likelihoods of
:func:`mmkeras.losses.gaussian.negative_log_likelihood` (gaussian, bernoulli, categorical).
The loss is -L averaged over the rows with a present modality; a missing modality is neither a
stratum, nor a mixture component, nor a reconstruction target in its rows.

Gradients follow the doubly reparameterised estimator (DReG; Tucker et al. 2019), the one the
paper trains with: the posterior parameters inside log q are held constant (stop-gradient), the
normalised weights w~_{m,k} = softmax_k(log w_{m,k}) are constants, and
    grad_encoders = -sum_k w~_{m,k}^2 d log w_{m,k} / dz_{m,k} * dz_{m,k} / d phi
    grad_decoders = -sum_k w~_{m,k}   d log w_{m,k} / d theta
(per stratum, averaged like the bound). The two weightings differ, so the weights are decoded
twice, once from stop_gradient(z) (decoder path, weight w~ - w~^2) and once from z (both paths,
weight w~^2); with K = 1 (w~ = 1) one pass suffices. The loss's *value* is -L itself.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from mmkeras.distribute import local_contribution
from mmkeras.losses.gaussian import (
    log_normal,
    mixture_mean,
    negative_log_likelihood,
    sample_mixture,
    split_experts,
)
from mmkeras.objectives.base import DecodingObjective, check_likelihoods
from mmkeras.params import PositiveInt

NEGATIVE = -1e9  # log-density of an absent mixture component: exp() of it is exactly 0, and it stays finite


@keras.saving.register_keras_serializable(package="mmkeras")
class MMVAE(DecodingObjective):
    """The MMVAE stratified importance-weighted bound with DReG gradients (module docstring).
    Metrics: ``nll_<t>`` per decoded modality t.

    Args:
        decoders: ``{modality: {name: <head>, params: {...}}}``, each built with ``output_shape`` =
            its modality's input shape; a modality without a decoder is a mixture component and a
            stratum but is not reconstructed.
        likelihoods: ``{modality: gaussian | bernoulli | categorical}`` (gaussian by default).
        lambdas: ``{modality: weight}`` of its log-likelihood (1 by default; the paper's
            likelihood scaling).
        num_samples: K, samples per stratum.
        sample: draw z (training) or take z = mu_m (deterministic, for tests).
        seed: of the noise.
    """

    def __init__(
        self,
        decoders: dict[str, dict[str, Any]],
        likelihoods: dict[str, str] | None = None,
        lambdas: dict[str, float] | None = None,
        num_samples: PositiveInt = 1,
        sample: bool = True,
        seed: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self._keep_decoders(decoders)
        self.likelihoods, self.lambdas = check_likelihoods(self.decoders, likelihoods, lambdas)
        self.num_samples = num_samples
        self._keep_sampling(sample, seed)

    def build(self, outputs_shape, labels_shape=None):
        latent, targets = self._gaussian_experts(outputs_shape, "mmvae")
        self._make_decoders(latent, targets)

    # -- the bound ---------------------------------------------------------------------------
    @staticmethod
    def experts(
        outputs, strata: list[str] | None = None
    ) -> tuple[list[str], dict[str, Any], dict[str, Any], dict[str, Any]]:
        """(strata, masks, mus, logvars) of the modalities ``strata`` (default: those given in the
        batch, with an input); a missing row's expert is replaced by N(0, I) so that nothing
        computed from it is inf or nan."""
        if strata is None:
            strata = [m for m in sorted(outputs.features) if m in outputs.inputs]
        masks, mus, logvars = {}, {}, {}
        for m in strata:
            masks[m] = ops.cast(outputs.masks[m], "float32")
            mu, logvar = split_experts(outputs.features[m])
            present = ops.expand_dims(masks[m], -1) > 0
            mus[m], logvars[m] = ops.where(present, mu, 0.0), ops.where(present, logvar, 0.0)
        return strata, masks, mus, logvars

    def log_weights(self, z, strata, masks, mus, logvars, inputs):
        """log w [S, N, B] of samples z [S, N, B, L] (S strata, N samples each), and per target the
        NLL [S, N, B] (0 where the target is missing). The experts' parameters enter log q
        through stop_gradient."""
        shape = ops.shape(z)
        num_strata, num, batch = shape[0], shape[1], shape[2]
        log_q = ops.stack(
            [
                ops.where(
                    masks[m] > 0, log_normal(z, ops.stop_gradient(mus[m]), ops.stop_gradient(logvars[m])), NEGATIVE
                )
                for m in strata
            ]
        )
        count = sum(ops.cast(masks[m] > 0, "float32") for m in strata)
        log_q = ops.logsumexp(log_q, axis=0) - ops.log(ops.maximum(count, 1.0))
        log_w = log_normal(z, 0.0, 0.0) - log_q
        flat = ops.reshape(z, (-1, shape[3]))
        nll = {}
        for t in sorted(self.decoders):
            if t not in inputs:
                continue
            prediction = self.decode(t, flat, inputs)
            target = inputs[t]
            repeats = [num_strata * num] + [1] * (len(target.shape) - 1)
            row = negative_log_likelihood(self.likelihoods.get(t, "gaussian"), prediction, ops.tile(target, repeats))
            row = ops.reshape(row, (num_strata, num, batch))
            nll[t] = ops.where(masks[t] > 0, row, 0.0)  # where: a missing row's garbage input could be inf
            log_w = log_w - self.lambdas.get(t, 1.0) * nll[t]
        return log_w, nll

    def negative_bound(self, outputs, eps):
        """(loss, {target: NLL contribution}) for the noise ``eps`` [S, K, B, L] (S strata in
        sorted order): the loss's value is -L, its gradient DReG's (module docstring)."""
        strata, masks, mus, logvars = self.experts(outputs)
        inputs = outputs.inputs
        stack = ops.stack
        mu, logvar = stack([mus[m] for m in strata]), stack([logvars[m] for m in strata])
        z = ops.expand_dims(mu, 1) + ops.expand_dims(ops.exp(0.5 * logvar), 1) * eps
        k = self.num_samples
        if k == 1:
            log_w, nll = self.log_weights(z, strata, masks, mus, logvars, inputs)
            bound = log_w[:, 0]
            surrogate = bound
        else:  # decoder path from stop_gradient(z), both paths from z: one decoder call for the two
            both, nll = self.log_weights(
                ops.concatenate([ops.stop_gradient(z), z], axis=1), strata, masks, mus, logvars, inputs
            )
            decoder_path, full = both[:, :k], both[:, k:]
            nll = {t: v[:, :k] for t, v in nll.items()}
            bound = ops.logsumexp(decoder_path, axis=1) - math.log(k)
            weights = ops.stop_gradient(ops.softmax(decoder_path, axis=1))
            surrogate = ops.sum((weights - weights**2) * decoder_path + weights**2 * full, axis=1)
        present = stack([ops.cast(masks[m] > 0, "float32") for m in strata])  # [S, B]
        count = ops.sum(present, axis=0)
        any_present = ops.cast(count > 0, "float32")

        def per_row(per_stratum):  # [S, B] -> the mean over the present strata, [B]
            return ops.sum(ops.where(present > 0, per_stratum, 0.0), axis=0) / ops.maximum(count, 1.0)

        value = -per_row(bound)
        gradient = -per_row(surrogate)
        rows = ops.stop_gradient(value) + gradient - ops.stop_gradient(gradient)
        loss = local_contribution(rows, any_present)
        metrics = {t: local_contribution(per_row(ops.mean(v, axis=1)), any_present) for t, v in nll.items()}
        return loss, metrics

    def call(self, outputs, labels=None):
        strata = [m for m in sorted(outputs.features) if m in outputs.inputs]
        mu, _ = split_experts(outputs.features[strata[0]])
        shape = (len(strata), self.num_samples, ops.shape(mu)[0], mu.shape[-1])
        eps = keras.random.normal(shape, seed=self.seed_generator) if self.sample else ops.zeros(shape)
        loss, nll = self.negative_bound(outputs, eps)
        zero = ops.zeros((), "float32")
        return {"loss": loss, **{f"nll_{t}": nll.get(t, zero) for t in sorted(self.decoders)}}

    # -- generation ----------------------------------------------------------------------------
    def generate(self, outputs, target: str, sample: bool = False):
        """Decode ``target`` from the mixture posterior of the given modalities: its mean (the mean
        of the present mu_m), or with ``sample`` a draw (a present expert chosen uniformly per row,
        then z from it)."""
        if target not in self.decoder_layers:
            raise ValueError(f"mmvae has no decoder for {target!r}; decoders are for {sorted(self.decoders)}")
        strata, masks, mus, logvars = self.experts(outputs, sorted(outputs.features))  # absent ones have mask 0
        if not sample:
            z = mixture_mean({m: outputs.features[m] for m in strata}, masks)
        else:
            z = sample_mixture(
                [mus[m] for m in strata], [logvars[m] for m in strata], [masks[m] for m in strata], self.seed_generator
            )
        return self.decoder_layers[target](z)
