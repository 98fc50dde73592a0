"""The nexus fusion (Vasco, Yin, Melo & Paiva, Neural Networks 2022; the objective is
:mod:`mmkeras.objectives.nexus`)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mmkeras.fusions.base import Fusion
from mmkeras.layers.mlp import MLP
from mmkeras.losses.gaussian import latent_size
from mmkeras.params import DropoutRate, PositiveInt


@keras.saving.register_keras_serializable(package="mmkeras")
class NexusFusion(Fusion):
    """The nexus posterior [mu_n, logvar_n] (2 ``latent_dim`` values) from the mean of messages
    from the modalities the aggregate keeps, K: a message network per modality reads the bottom
    mean mu_m (the first half of its feature [mu_m, logvar_m]), and the nexus encoder g reads the
    mean of the messages,
        [mu_n, logvar_n] = g( 1/|K| sum_{m in K} f_m(mu_m) ).
    Forced perceptual dropout: in training (only), each present modality is left out of the
    aggregate with probability ``dropout_rate`` (at least one kept per row), so the nexus learns to
    infer itself from any subset. A row with no modality gives g(0).

    Args:
        latent_dim: the nexus latent size (default: the modality latent size, half the feature size).
        message_dim: each message network's output size.
        message_units: each message network's hidden layers.
        hidden_units: the nexus encoder's hidden layers.
        activation: the networks' activation.
        dropout_rate: forced perceptual dropout, the probability of leaving a present modality out
            of the aggregate in training.
        stop_gradient: read mu_m as a constant (the top level does not train the modality encoders).
        seed: of the dropout.
    """

    def __init__(
        self,
        latent_dim: PositiveInt | None = None,
        message_dim: PositiveInt = 128,
        message_units: list[PositiveInt] = (),  # type: ignore[assignment]
        hidden_units: list[PositiveInt] = (512, 512),  # type: ignore[assignment]
        activation: str = "swish",
        dropout_rate: DropoutRate = 0.2,
        stop_gradient: bool = True,
        seed: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.latent_dim = latent_dim
        self.message_dim = message_dim
        self.message_units = list(message_units)
        self.hidden_units = list(hidden_units)
        self.activation = activation
        self.dropout_rate = dropout_rate
        self.stop_gradient = stop_gradient
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, features_shape, masks_shape=None):
        self.modality_latent = latent_size(features_shape, "the nexus fusion")
        self.nexus_dim = self.latent_dim or self.modality_latent
        self.messages = {
            m: MLP(self.message_units, self.message_dim, self.activation, dtype=self.dtype_policy, name=f"message_{m}")
            for m in sorted(features_shape)
        }
        for message in self.messages.values():
            message.build((None, self.modality_latent))
        self.encoder = MLP(
            self.hidden_units, 2 * self.nexus_dim, self.activation, dtype=self.dtype_policy, name="nexus"
        )
        self.encoder.build((None, self.message_dim))

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
            message = self.messages[m](mu)
            chosen = ops.expand_dims(keep[m], -1)
            total = total + ops.where(chosen, message, ops.zeros_like(message))  # where: garbage could be inf
            count = count + ops.cast(chosen, message.dtype)
        return self.encoder(total / ops.maximum(count, 1.0))

    def compute_output_shape(self, features_shape, masks_shape=None):
        shape = next(iter(features_shape.values()))
        return (shape[0], 2 * (self.latent_dim or shape[-1] // 2))
