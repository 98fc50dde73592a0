"""The multimodal variational autoencoder, MVAE (Wu & Goodman, NeurIPS 2018, "Multimodal
Generative Models for Scalable Weakly-Supervised Learning").

Each modality encoder outputs 2L values, the Gaussian expert q(z | x_m) = N(mu_m, var_m); the
joint posterior of a subset X of the present modalities is the product of those experts and the
prior (:func:`mmkeras.losses.gaussian.product_of_experts`, with the formula), N(mu_X, var_X). The
objective draws z from it (:func:`~mmkeras.losses.gaussian.reparameterize`; ``sample=False``
takes z = mu_X) and decodes every modality of X with decoders it owns. Per row,
    ELBO(X) = sum_{m in X} lambda_m log p(x_m | z) - beta_t KL(N(mu_X, var_X) || N(0, I))
with the likelihoods of :func:`~mmkeras.losses.gaussian.negative_log_likelihood` and the KL of
:func:`~mmkeras.losses.gaussian.gaussian_kl`. The paper's sub-sampled training objective sums
the negative ELBO over the complete set, each single modality and k random subsets
(``random_subsets``):
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

from typing import Any

import keras
from keras import ops

from mmkeras.distribute import local_contribution, num_replicas
from mmkeras.losses.gaussian import gaussian_kl, negative_log_likelihood, product_of_experts, reparameterize
from mmkeras.objectives.base import DecodingObjective, check_likelihoods
from mmkeras.params import NonNegativeFloat, NonNegativeInt


@keras.saving.register_keras_serializable(package="mmkeras")
class MVAE(DecodingObjective):
    """The MVAE negative ELBO over the complete set, each single modality and ``random_subsets``
    random subsets (module docstring). Metrics: ``kl`` (of the complete set), ``kl_weight`` and
    ``nll_<t>`` per decoded modality t.

    Args:
        decoders: ``{modality: {name: <head>, params: {...}}}``, each built with ``output_shape`` =
            its modality's input shape; a modality without a decoder is an expert but is not
            reconstructed.
        likelihoods: ``{modality: gaussian | bernoulli | categorical}`` (gaussian by default); the
            bernoulli and categorical decoders must output probabilities (sigmoid, softmax).
        lambdas: ``{modality: weight}`` of its log-likelihood (1 by default).
        beta: the KL weight after annealing.
        anneal_steps: training calls (optimisation steps) over which the KL weight rises linearly
            from 0 (0: no annealing).
        random_subsets: k, the random subsets per batch.
        sample: draw z (training) or take z = mu (deterministic, for tests).
        seed: of the noise.
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
        self._keep_decoders(decoders)
        self.likelihoods, self.lambdas = check_likelihoods(self.decoders, likelihoods, lambdas)
        self.beta = beta
        self.anneal_steps = anneal_steps
        self.random_subsets = random_subsets
        self._keep_sampling(sample, seed)
        self.step = self.add_weight(
            shape=(),
            initializer="zeros",
            dtype="float32",
            trainable=False,
            name="step",
            aggregation="only_first_replica",
        )

    def build(self, outputs_shape, labels_shape=None):
        latent, targets = self._gaussian_experts(outputs_shape, "mvae")
        self._make_decoders(latent, targets)

    def kl_weight(self):
        """beta_t: beta, rising linearly from 0 over the first ``anneal_steps`` training calls."""
        if self.anneal_steps == 0:
            return ops.convert_to_tensor(self.beta, "float32")
        return self.beta * ops.minimum(1.0, ops.convert_to_tensor(self.step) / float(self.anneal_steps))

    def subset_elbo(self, features, masks, inputs, kl_weight):
        """(-ELBO contribution, KL contribution, {target: NLL contribution}) of the subset ``masks``."""
        mu, logvar = product_of_experts(features, masks)
        z = reparameterize(mu, logvar, self.seed_generator) if self.sample else mu
        any_present = None
        for m in masks:
            present = ops.cast(ops.cast(masks[m], "float32") > 0, "float32")
            any_present = present if any_present is None else ops.maximum(any_present, present)
        kl = gaussian_kl(mu, logvar)
        per_row = kl_weight * kl
        nll = {}
        for t in sorted(self.decoders):
            if t not in inputs:
                continue
            row = negative_log_likelihood(self.likelihoods.get(t, "gaussian"), self.decode(t, z, inputs), inputs[t])
            # where, not a product: a missing row's garbage input could give inf * 0 = nan
            row = ops.where(ops.cast(masks[t], "float32") > 0, row, 0.0)
            nll[t] = local_contribution(row, any_present)
            per_row = per_row + self.lambdas.get(t, 1.0) * row
        return local_contribution(per_row, any_present), local_contribution(kl, any_present), nll

    def call(self, outputs, labels=None, training=None):
        inputs = outputs.inputs
        present = [m for m in sorted(outputs.features) if m in inputs]
        masks = {m: ops.cast(outputs.masks[m], "float32") for m in present}
        features = {m: outputs.features[m] for m in present}
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
        mu, logvar = product_of_experts(outputs.features, outputs.masks)  # a modality not given has mask 0
        z = reparameterize(mu, logvar, self.seed_generator) if sample else mu
        return self.decoder_layers[target](z)
