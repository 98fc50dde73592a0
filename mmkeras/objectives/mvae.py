"""The multimodal variational autoencoder, MVAE (Wu & Goodman, NeurIPS 2018, "Multimodal
Generative Models for Scalable Weakly-Supervised Learning"), and its product-of-experts fusion.

Each modality encoder outputs 2L values, read as the Gaussian expert q(z | x_m) = N(mu_m, var_m)
with [mu_m, logvar_m] = h_m (first half mu, second half log-variance). The joint posterior of a
subset X of the present modalities is the product of those experts and the prior expert
p(z) = N(0, I), itself Gaussian:
    T_X   = 1 + sum_{m in X} 1 / var_m                 (precision; the 1 is the prior's)
    mu_X  = (sum_{m in X} mu_m / var_m) / T_X,   var_X = 1 / T_X
A missing modality (mask 0) is not an expert: its terms are exactly zero.

The objective draws z = mu_X + sqrt(var_X) * eps (the reparameterisation trick; ``sample=False``
takes z = mu_X) and decodes every modality of X with decoders it owns. Per row,
    ELBO(X) = sum_{m in X} lambda_m log p(x_m | z) - beta_t KL(N(mu_X, var_X) || N(0, I))
    KL      = 1/2 sum_j (var_j + mu_j^2 - 1 - log var_j)
with likelihoods summed over each modality's elements: gaussian (unit variance)
-log p = 1/2 (x - x^)^2 + 1/2 log 2 pi; bernoulli (x^ a probability) -log p = -x log x^ - (1-x) log(1-x^);
categorical (x^ probabilities over the last axis, x one-hot) -log p = -sum x log x^. The paper's
sub-sampled training objective sums the negative ELBO over the complete set, each single modality
and k random subsets (``random_subsets``):
    loss = -ELBO(X_1:M) - sum_m ELBO(x_m) - sum_{j<=k} ELBO(X_j)
each term averaged over the rows where X has a present modality. Here each random subset is drawn
per row (every modality kept with probability 1/2), a finer version of the paper's per-batch draw.
beta_t = beta * min(1, t / anneal_steps) anneals the KL weight linearly (the paper anneals it
from 0 over the first epochs); t counts the objective's training calls (``training=True``,
as ``model.fit`` passes it; the build call, validation and direct calls do not count).

For evaluation, give the model the ``poe`` fusion: the joint feature is then mu_X of the present
modalities, and ``model.encode_output: feature`` makes ``encode`` of any subset return it.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from mmkeras.distribute import local_contribution, num_replicas
from mmkeras.errors import RecipeError
from mmkeras.fusions.base import Fusion
from mmkeras.objectives.autoencoder import _check_decoders
from mmkeras.objectives.base import DecodingObjective
from mmkeras.params import NonNegativeFloat, NonNegativeInt

LIKELIHOODS = ("gaussian", "bernoulli", "categorical")
EPS = 1e-6  # keeps log(probability) finite for decoders that saturate


def split_experts(feature) -> tuple[Any, Any]:
    """[mu, logvar] halves of an encoder output [B, 2L], in float32."""
    feature = ops.cast(feature, "float32")
    size = feature.shape[-1]
    if size is None or size % 2:
        raise ValueError(f"a Gaussian expert needs an even feature size (mu and logvar halves), got {size}")
    return feature[:, : size // 2], feature[:, size // 2 :]


def product_of_experts(features: dict[str, Any], masks: dict[str, Any]) -> tuple[Any, Any]:
    """(mu, logvar) [B, L] of the prior N(0, I) times the experts whose mask is 1, in float32."""
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


def gaussian_kl(mu, logvar):
    """KL(N(mu, exp(logvar)) || N(0, I)) per row, summed over the latent axis."""
    return 0.5 * ops.sum(ops.exp(logvar) + mu * mu - 1.0 - logvar, axis=-1)


def negative_log_likelihood(kind: str, prediction, target):
    """-log p(target | prediction) per row, summed over every non-batch axis, in float32."""
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


def check_likelihoods(
    decoders: dict[str, Any],
    likelihoods: dict[str, str] | None,
    lambdas: dict[str, float] | None = None,
    allowed: tuple[str, ...] = LIKELIHOODS,
) -> tuple[dict[str, str], dict[str, float]]:
    """The validated ``likelihoods`` and ``lambdas`` tables of a decoding objective: names from
    ``allowed``, and only modalities that have a decoder."""
    kinds = {str(m): str(k) for m, k in (likelihoods or {}).items()}
    for m, kind in kinds.items():
        if kind not in allowed:
            raise ValueError(f"likelihoods.{m}: expected one of {list(allowed)}, got {kind!r}")
    weights = {str(m): float(w) for m, w in (lambdas or {}).items()}
    for name, table in (("likelihoods", kinds), ("lambdas", weights)):
        extra = sorted(set(table) - set(decoders))
        if extra:
            raise ValueError(f"{name}.{extra[0]}: this modality has no decoder; decoders are for {sorted(decoders)}")
    return kinds, weights


@keras.saving.register_keras_serializable(package="mmkeras")
class ProductOfExperts(Fusion):
    """The mean mu_X of the product of the present modalities' Gaussian experts and the prior
    N(0, I) (see the module docstring): each feature is [mu_m, logvar_m], the output has half
    its size. A row with no modality gives the prior's mean, zeros."""

    def call(self, features, masks):
        mu, _ = product_of_experts(features, masks)
        return ops.cast(mu, self.compute_dtype)

    def compute_output_shape(self, features_shape, masks_shape=None):
        shape = next(iter(features_shape.values()))
        return (shape[0], shape[-1] // 2)


@keras.saving.register_keras_serializable(package="mmkeras")
class MVAE(DecodingObjective):
    """The MVAE negative ELBO over the complete set, each single modality and ``random_subsets``
    random subsets (module docstring).

    decoders: ``{modality: {name: <head>, params: {...}}}``, each built with ``output_shape`` = its
    modality's input shape; a modality without a decoder is an expert but is not reconstructed.
    likelihoods: ``{modality: gaussian | bernoulli | categorical}`` (gaussian by default); the
    bernoulli and categorical decoders must output probabilities (sigmoid, softmax). lambdas:
    ``{modality: weight}`` of its log-likelihood (1 by default). beta: the KL weight after
    annealing; anneal_steps: training calls (optimisation steps) over which it rises linearly from 0 (0: no annealing).
    sample: draw z (training) or take z = mu (deterministic, for tests). seed: of the noise.
    """

    def __init__(
        self,
        decoders: dict[str, dict[str, Any]],
        likelihoods: dict[str, str] | None = None,
        lambdas: dict[str, float] | None = None,
        beta: NonNegativeFloat = 1.0,
        anneal_steps: NonNegativeInt = 0,
        random_subsets: NonNegativeInt = 0,
        sample: bool = True,
        seed: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.decoders = _check_decoders(decoders)
        self.likelihoods, self.lambdas = check_likelihoods(self.decoders, likelihoods, lambdas)
        if beta < 0 or anneal_steps < 0 or random_subsets < 0:
            raise ValueError(
                f"beta, anneal_steps, random_subsets must be non-negative, got {beta}, {anneal_steps}, {random_subsets}"
            )
        self.beta = float(beta)
        self.anneal_steps = int(anneal_steps)
        self.random_subsets = int(random_subsets)
        self.sample = bool(sample)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.step = self.add_weight(
            shape=(),
            initializer="zeros",
            dtype="float32",
            trainable=False,
            name="step",
            aggregation="only_first_replica",
        )
        self.decoder_layers: dict[str, keras.layers.Layer] = {}
        self._shapes: dict[str, Any] | None = None

    def metric_names(self, modalities):
        unknown = sorted(set(self.decoders) - set(modalities))
        if unknown:
            raise RecipeError(
                [f"objective.params.decoders.{unknown[0]}: no such modality; the model has {sorted(modalities)}"]
            )
        return ["kl", "kl_weight"] + [f"nll_{m}" for m in sorted(self.decoders)]

    # -- state -------------------------------------------------------------------------
    def build(self, outputs_shape, labels_shape=None):
        latent, targets = self._gaussian_experts(outputs_shape, "mvae")
        self._make_decoders(latent, targets)

    # -- loss ----------------------------------------------------------------------------
    def kl_weight(self):
        """beta_t: beta, rising linearly from 0 over the first ``anneal_steps`` training calls."""
        if self.anneal_steps == 0:
            return ops.convert_to_tensor(self.beta, "float32")
        return self.beta * ops.minimum(1.0, ops.convert_to_tensor(self.step) / float(self.anneal_steps))

    def subset_elbo(self, features, masks, inputs, kl_weight):
        """(-ELBO contribution, KL contribution, {target: NLL contribution}) of the subset ``masks``."""
        mu, logvar = product_of_experts(features, masks)
        z = mu
        if self.sample:
            z = mu + ops.exp(0.5 * logvar) * keras.random.normal(ops.shape(mu), seed=self.seed_generator)
        any_present = None
        for m in masks:
            present = ops.cast(ops.cast(masks[m], "float32") > 0, "float32")
            any_present = present if any_present is None else ops.maximum(any_present, present)
        per_row = kl_weight * gaussian_kl(mu, logvar)
        nll = {}
        for t in sorted(self.decoders):
            if t not in inputs:
                continue
            prediction = self.decoder_layers[t](z)
            if tuple(prediction.shape[1:]) != tuple(inputs[t].shape[1:]):
                raise ValueError(
                    f"decoders.{t} reconstructs shape {tuple(prediction.shape[1:])} but the input {t} has shape "
                    f"{tuple(inputs[t].shape[1:])}"
                )
            row = negative_log_likelihood(self.likelihoods.get(t, "gaussian"), prediction, inputs[t])
            # where, not a product: a missing row's garbage input could give inf * 0 = nan
            row = ops.where(ops.cast(masks[t], "float32") > 0, row, 0.0)
            nll[t] = local_contribution(row, any_present)
            per_row = per_row + self.lambdas.get(t, 1.0) * row
        return local_contribution(per_row, any_present), local_contribution(gaussian_kl(mu, logvar), any_present), nll

    def call(self, outputs, labels=None, training=None):
        inputs = outputs["inputs"]
        present = [m for m in sorted(outputs["features"]) if m in inputs]
        masks = {m: ops.cast(outputs["masks"][m], "float32") for m in present}
        features = {m: outputs["features"][m] for m in present}
        kl_weight = self.kl_weight()
        if training:
            self.step.assign_add(1.0)
        loss, kl, nll = self.subset_elbo(features, masks, inputs, kl_weight)
        if len(present) > 1:  # the single-modality ELBOs; one modality's equals the complete one
            for m in present:
                single = {k: masks[k] if k == m else ops.zeros_like(masks[k]) for k in present}
                loss = loss + self.subset_elbo(features, single, inputs, kl_weight)[0]
        for _ in range(self.random_subsets):
            drawn = {
                m: masks[m]
                * ops.cast(keras.random.uniform(ops.shape(masks[m]), seed=self.seed_generator) < 0.5, "float32")
                for m in present
            }
            loss = loss + self.subset_elbo(features, drawn, inputs, kl_weight)[0]
        zero = ops.zeros((), "float32")
        return {
            "loss": loss,
            "kl": kl,
            "kl_weight": kl_weight / num_replicas(),  # the model sums metrics over replicas
            **{f"nll_{t}": nll.get(t, zero) for t in sorted(self.decoders)},
        }

    def generate(self, outputs, target: str, sample: bool = False):
        """Decode ``target`` from the product of the given modalities' experts and the prior: its
        mean mu_X, or with ``sample`` a draw z = mu_X + sqrt(var_X) * eps."""
        if target not in self.decoder_layers:
            raise ValueError(f"mvae has no decoder for {target!r}; decoders are for {sorted(self.decoders)}")
        present = [m for m in sorted(outputs["features"]) if m in outputs["inputs"]]
        mu, logvar = product_of_experts(
            {m: outputs["features"][m] for m in present}, {m: outputs["masks"][m] for m in present}
        )
        z = mu
        if sample:
            z = mu + ops.exp(0.5 * logvar) * keras.random.normal(ops.shape(mu), seed=self.seed_generator)
        return self.decoder_layers[target](z)

    def get_config(self):
        return {
            **super().get_config(),
            "decoders": self.decoders,
            "likelihoods": self.likelihoods,
            "lambdas": self.lambdas,
            "beta": self.beta,
            "anneal_steps": self.anneal_steps,
            "random_subsets": self.random_subsets,
            "sample": self.sample,
            "seed": self.seed,
        }
