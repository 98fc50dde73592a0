"""Nexus (Vasco, Yin, Melo & Paiva, Neural Networks 2022, "Leveraging hierarchy in multimodal
generative models for effective cross-modality inference"): modality VAEs below, a "nexus"
latent above them computed from the mean of messages from the modality latents.

Bottom: each modality's VAE (see :mod:`mmkeras.objectives.hierarchical`), the encoder giving
[mu_m, logvar_m]. Top, the ``nexus`` fusion (:class:`mmkeras.fusions.nexus.NexusFusion`): a message
network per modality, a_m = f_m(mu_m); their
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

import keras

from mmkeras.objectives.hierarchical import TwoLevelVAE


@keras.saving.register_keras_serializable(package="mmkeras")
class Nexus(TwoLevelVAE):
    """The Nexus loss (module docstring): the modality VAEs' negative ELBOs, and the nexus latent
    (the model's joint feature, [mu_n, logvar_n], from the ``nexus`` fusion) decoded back to every
    present modality's latent, with its KL. Parameters and metrics: those of
    :class:`~mmkeras.objectives.hierarchical.TwoLevelVAE` (top_beta weighs the nexus KL;
    top_hidden_units are the layers of the decoders nexus -> modality latent).
    """

    name_ = "nexus"

    def top_latent_size(self, joint_size, num_modalities):
        if joint_size % 2:
            raise ValueError(f"nexus reads the joint feature as [mu_n, logvar_n]; its size {joint_size} is odd")
        return joint_size // 2
