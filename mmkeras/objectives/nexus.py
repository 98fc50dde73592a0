"""Nexus (Vasco, Yin, Melo & Paiva, Neural Networks 2022, "Leveraging hierarchy in multimodal
generative models for effective cross-modality inference"): modality VAEs below, a "nexus"
latent above them computed from the mean of messages from the modality latents.

Bottom: each modality's VAE (see :mod:`mmkeras.objectives.hierarchical`), the encoder giving
[mu_m, logvar_m]. Top, the ``nexus`` fusion: a message network per modality, a_m = f_m(mu_m); their
mean over the modalities the aggregate keeps, K, feeds the nexus encoder g:
    [mu_n, logvar_n] = g( 1/|K| sum_{m in K} f_m(mu_m) ),     q(z_n | z_K) = N(mu_n, var_n)
Forced perceptual dropout: in training (only), each present modality is left out of the
aggregate with probability ``dropout_rate`` (at least one kept per row), so the nexus learns to
infer itself from any subset. The ``gaussian_mean`` head takes mu_n, so ``encode`` of any subset
gives the nexus posterior mean of that subset.

Objective, per row, with z_n = mu_n + sqrt(var_n) * eps:
    loss = L_bottom + gamma sum_{m present} (-log N(mu_m; D_m(z_n), I)) + top_beta KL(q(z_n | .) || N(0, I))
decoding the nexus back to *every* present modality's latent, dropped from the aggregate or not.

Differences from the paper: the messages and the top-level targets are the bottom posterior
means mu_m rather than samples of z_m; with ``stop_gradient`` (default) the top level does not
train the modality encoders, as the paper trains the two levels with separate terms; no KL
annealing; the dropout is drawn per row and modality.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mmkeras.distribute import local_contribution
from mmkeras.fusions.base import Fusion
from mmkeras.objectives.hierarchical import TwoLevelVAE, check_features, dense_stack, run_stack
from mmkeras.objectives.mvae import gaussian_kl
from mmkeras.params import DropoutRate, PositiveInt


@keras.saving.register_keras_serializable(package="mmkeras")
class NexusFusion(Fusion):
    """The nexus posterior [mu_n, logvar_n] (2 ``latent_dim`` values) from the mean of the messages
    f_m(mu_m) of the modalities kept (module docstring :mod:`mmkeras.objectives.nexus`).

    latent_dim: the nexus latent size (default: the modality latent size, half the feature size).
    message_dim, message_units: each message network's output size and hidden layers.
    hidden_units: the nexus encoder's hidden layers. dropout_rate: forced perceptual dropout, the
    probability of leaving a present modality out of the aggregate in training. stop_gradient:
    read mu_m as a constant (the top level does not train the modality encoders). seed: of the dropout.
    A row with no modality gives g(0).
    """

    def __init__(
        self,
        latent_dim: PositiveInt | None = None,
        message_dim: PositiveInt = 128,
        message_units: list[int] = (),  # type: ignore[assignment]
        hidden_units: list[int] = (512, 512),  # type: ignore[assignment]
        activation: str = "swish",
        dropout_rate: DropoutRate = 0.2,
        stop_gradient: bool = True,
        seed: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if (latent_dim is not None and latent_dim < 1) or message_dim < 1:
            raise ValueError(f"latent_dim and message_dim must be positive, got {latent_dim}, {message_dim}")
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate}")
        self.latent_dim = None if latent_dim is None else int(latent_dim)
        self.message_dim = int(message_dim)
        self.message_units = [int(u) for u in message_units]
        self.hidden_units = [int(u) for u in hidden_units]
        self.activation = activation
        self.dropout_rate = float(dropout_rate)
        self.stop_gradient = bool(stop_gradient)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, features_shape, masks_shape=None):
        self.modality_latent = check_features(features_shape, "the nexus fusion")
        self.nexus_dim = self.latent_dim or self.modality_latent
        self.messages = {
            m: dense_stack(self.message_units, self.message_dim, self.activation, f"message_{m}", self.modality_latent)
            for m in sorted(features_shape)
        }
        self.encoder = dense_stack(self.hidden_units, 2 * self.nexus_dim, self.activation, "nexus", self.message_dim)

    def kept(self, masks, training=None):
        """{m: [B] bool} the modalities the aggregate keeps: the present ones, less the forced
        dropout in training (never all of a row's present modalities)."""
        names = sorted(masks)
        present = {m: ops.cast(masks[m], "float32") > 0 for m in names}
        if not training or self.dropout_rate == 0.0:
            return present
        draws = {m: keras.random.uniform(ops.shape(masks[m]), seed=self.seed_generator) for m in names}
        keep = {m: ops.logical_and(present[m], draws[m] >= self.dropout_rate) for m in names}
        none_kept = ops.logical_not(ops.any(ops.stack([keep[m] for m in names]), axis=0))
        # a row that lost every modality keeps the present one with the largest draw
        best = ops.argmax(ops.stack([ops.where(present[m], draws[m], -1.0) for m in names]), axis=0)
        return {
            m: ops.logical_or(keep[m], ops.logical_and(ops.logical_and(none_kept, present[m]), best == i))
            for i, m in enumerate(names)
        }

    def call(self, features, masks, training=None):
        keep = self.kept(masks, training)
        total, count = 0.0, 0.0
        for m in sorted(features):
            mu = features[m][:, : self.modality_latent]
            if self.stop_gradient:
                mu = ops.stop_gradient(mu)
            message = run_stack(self.messages[m], mu)
            chosen = ops.expand_dims(keep[m], -1)
            total = total + ops.where(chosen, message, ops.zeros_like(message))  # where: garbage could be inf
            count = count + ops.cast(chosen, message.dtype)
        return run_stack(self.encoder, total / ops.maximum(count, 1.0))

    def compute_output_shape(self, features_shape, masks_shape=None):
        shape = next(iter(features_shape.values()))
        return (shape[0], 2 * (self.latent_dim or shape[-1] // 2))

    def get_config(self):
        return {
            **super().get_config(),
            "latent_dim": self.latent_dim,
            "message_dim": self.message_dim,
            "message_units": self.message_units,
            "hidden_units": self.hidden_units,
            "activation": self.activation,
            "dropout_rate": self.dropout_rate,
            "stop_gradient": self.stop_gradient,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="mmkeras")
class Nexus(TwoLevelVAE):
    """The Nexus loss (module docstring): the modality VAEs' negative ELBOs, and the nexus latent
    (the model's joint feature, [mu_n, logvar_n], from the ``nexus`` fusion) decoded back to every
    present modality's latent, with its KL.

    decoders: ``{modality: {name: <head>, params: {...}}}``, one per modality (its VAE's decoder).
    likelihoods, lambdas: as in ``mvae`` (per modality). beta: the modality KLs' weight; gamma:
    the top-level reconstruction's; top_beta: the nexus KL's. top_hidden_units: hidden layers of
    the dense decoders nexus -> modality latent. sample: draw the latents (training) or take
    their means (deterministic, for tests). seed: of the noise.
    """

    name_ = "nexus"

    def top_latent_size(self, joint_size, num_modalities):
        if joint_size % 2:
            raise ValueError(f"nexus reads the joint feature as [mu_n, logvar_n]; its size {joint_size} is odd")
        return joint_size // 2

    def top_terms(self, outputs, experts, masks, any_present):
        mu, logvar = self.top_posterior(outputs)
        reconstruction = self.top_reconstruction(self.draw(mu, logvar), experts, masks)
        kl = gaussian_kl(mu, logvar)
        loss = local_contribution(self.gamma * reconstruction + self.top_beta * kl, any_present)
        metrics = {
            "top_kl": local_contribution(kl, any_present),
            "top_nll": local_contribution(reconstruction, any_present),
        }
        return loss, metrics
