"""Gaussian experts: the maths of the generative objectives (MVAE, MMVAE, Nexus, MUSE).

An encoder output h [B, 2L] is read as a diagonal Gaussian expert q(z | x) = N(mu, var) with
[mu, logvar] = h (first half mu, second half log-variance), so var = exp(logvar). Every function
computes in float32 and treats a missing modality (mask 0) as no expert at all: ``where``, never
a product with the mask, so a missing row's garbage (even inf) never reaches a result.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

#: the decoders' likelihoods p(x | z) that :func:`negative_log_likelihood` knows
LIKELIHOODS = ("gaussian", "bernoulli", "categorical")
EPS = 1e-6  # keeps log(probability) finite for decoders that saturate


def latent_size(features_shape: dict[str, Any], who: str) -> int:
    """The common latent size L of the Gaussian experts whose features [mu, logvar] (2L values
    each) have the shapes ``features_shape``; ``who`` names the reader in the error."""
    sizes = {m: int(s[-1]) for m, s in features_shape.items()}
    if len(set(sizes.values())) != 1 or next(iter(sizes.values())) % 2:
        raise ValueError(
            f"{who} reads each modality's feature as [mu, logvar] of its latent, so the features need one even size "
            f"(feature_dim = 2 * latent); got {sizes}"
        )
    return next(iter(sizes.values())) // 2


def split_experts(feature) -> tuple[Any, Any]:
    """The [mu, logvar] halves of an encoder output [B, 2L], in float32."""
    feature = ops.cast(feature, "float32")
    size = feature.shape[-1]
    if size is None or size % 2:
        raise ValueError(f"a Gaussian expert needs an even feature size (mu and logvar halves), got {size}")
    return feature[:, : size // 2], feature[:, size // 2 :]


def product_of_experts(features: dict[str, Any], masks: dict[str, Any]) -> tuple[Any, Any]:
    """(mu_X, logvar_X) [B, L] of the product of the prior N(0, I) and the experts present in each row.

    A product of Gaussians is Gaussian (Wu & Goodman, NeurIPS 2018, "Multimodal Generative
    Models for Scalable Weakly-Supervised Learning", Section 3.1): over the present experts X,
        T_X   = 1 + sum_{m in X} 1 / var_m                 (precision; the 1 is the prior's)
        mu_X  = (sum_{m in X} mu_m / var_m) / T_X,   var_X = 1 / T_X
    A row with no expert gives the prior, (0, 0).

    Args:
        features: ``{modality: [B, 2L]}``, each expert's [mu, logvar].
        masks: ``{modality: [B]}``, 1 where the expert is present.
    """
    precision_sum, weighted_mu = None, None
    for m in sorted(features):
        mu, logvar = split_experts(features[m])
        present = ops.expand_dims(ops.cast(masks[m], "float32"), -1) > 0
        # where, not a product: a missing row's garbage logvar could give inf * 0 = nan
        precision = ops.where(present, ops.exp(-logvar), 0.0)
        term = ops.where(present, mu * precision, 0.0)
        precision_sum = precision if precision_sum is None else precision_sum + precision
        weighted_mu = term if weighted_mu is None else weighted_mu + term
    total = 1.0 + precision_sum
    return weighted_mu / total, -ops.log(total)


def mixture_mean(features: dict[str, Any], masks: dict[str, Any]):
    """The mean [B, L] of the uniform mixture of the experts present in each row.

    The mixture-of-experts posterior (Shi, Siddharth, Paige & Torr, NeurIPS 2019, "Variational
    Mixture-of-Experts Autoencoders for Multi-Modal Deep Generative Models"), over the present
    experts S,
        q(z | X_S) = 1/|S| sum_{m in S} N(z; mu_m, var_m),   its mean 1/|S| sum_{m in S} mu_m.
    A row with no expert gives zeros.
    """
    total, count = None, None
    for m in sorted(features):
        mu, _ = split_experts(features[m])
        present = ops.expand_dims(ops.cast(masks[m], "float32"), -1) > 0
        term = ops.where(present, mu, 0.0)  # where, not a product: garbage could be inf
        weight = ops.cast(present, "float32")
        total = term if total is None else total + term
        count = weight if count is None else count + weight
    return total / ops.maximum(count, 1.0)


def reparameterize(mu, logvar, seed: Any = None):
    """A draw z = mu + sqrt(var) * eps, eps ~ N(0, I), differentiable in mu and logvar (the
    reparameterisation trick: Kingma & Welling, ICLR 2014, "Auto-Encoding Variational Bayes").

    Args:
        mu, logvar: the Gaussian's mean and log-variance, one shape.
        seed: a ``keras.random.SeedGenerator`` (or an int) for eps.
    """
    return mu + ops.exp(0.5 * logvar) * keras.random.normal(ops.shape(mu), seed=seed)


def sample_mixture(mus: list[Any], logvars: list[Any], masks: list[Any], seed: Any = None):
    """A draw [B, L] from the uniform mixture of the present experts of each row: an expert chosen
    uniformly among the row's present ones, then z from it (:func:`reparameterize`). Shi et al.
    (2019) sample the MMVAE posterior this way.

    Args:
        mus, logvars: one [B, L] per expert (a missing row's values must be finite).
        masks: one [B] per expert, 1 where present; a row needs one present expert.
        seed: a ``keras.random.SeedGenerator`` (or an int).
    """
    # a uniform score per present expert, -1 for an absent one: the argmax picks uniformly
    scores = ops.stack(
        [ops.where(ops.cast(k, "float32") > 0, keras.random.uniform(ops.shape(k), seed=seed), -1.0) for k in masks]
    )
    chosen = ops.expand_dims(ops.transpose(ops.one_hot(ops.argmax(scores, axis=0), len(masks))), -1)
    mu = ops.sum(chosen * ops.stack(mus), axis=0)
    logvar = ops.sum(chosen * ops.stack(logvars), axis=0)
    return reparameterize(mu, logvar, seed)


def gaussian_kl(mu, logvar):
    """KL(N(mu, var) || N(0, I)) per row [B], summed over the latent axis:
        KL = 1/2 sum_j (var_j + mu_j^2 - 1 - log var_j)
    (Kingma & Welling, ICLR 2014, "Auto-Encoding Variational Bayes", Appendix B)."""
    mu, logvar = ops.cast(mu, "float32"), ops.cast(logvar, "float32")
    return 0.5 * ops.sum(ops.exp(logvar) + mu * mu - 1.0 - logvar, axis=-1)


def log_normal(z, mu, logvar):
    """log N(z; mu, var) of a diagonal Gaussian, summed over the last axis (broadcasting over the
    leading ones):
        log N(z; mu, var) = -1/2 sum_j (log 2 pi + log var_j + (z_j - mu_j)^2 / var_j)"""
    return -0.5 * ops.sum(math.log(2.0 * math.pi) + logvar + (z - mu) ** 2 * ops.exp(-logvar), axis=-1)


def negative_log_likelihood(kind: str, prediction, target):
    """-log p(target | prediction) per row [B], summed over every non-batch axis, in float32.

    With x the target and x^ the decoder's output, per element:
        gaussian     (unit variance, x^ the mean)   1/2 (x - x^)^2 + 1/2 log 2 pi
        bernoulli    (x^ a probability)             -x log x^ - (1 - x) log(1 - x^)
        categorical  (x^ probabilities over the last axis, x one-hot)   -x log x^
    Probabilities are clipped to [1e-6, 1 - 1e-6] so a saturated decoder stays finite.
    """
    if kind not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {kind!r}; expected one of {list(LIKELIHOODS)}")
    x = ops.cast(target, "float32")
    p = ops.cast(prediction, "float32")
    if kind == "gaussian":
        nll = 0.5 * (x - p) ** 2 + 0.5 * math.log(2.0 * math.pi)
    elif kind == "bernoulli":
        p = ops.clip(p, EPS, 1.0 - EPS)
        nll = -(x * ops.log(p) + (1.0 - x) * ops.log(1.0 - p))
    else:
        nll = -x * ops.log(ops.clip(p, EPS, 1.0))
    return ops.sum(ops.reshape(nll, (ops.shape(nll)[0], -1)), axis=1)


__all__ = [
    "LIKELIHOODS",
    "gaussian_kl",
    "latent_size",
    "log_normal",
    "mixture_mean",
    "negative_log_likelihood",
    "product_of_experts",
    "reparameterize",
    "sample_mixture",
    "split_experts",
]
