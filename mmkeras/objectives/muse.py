"""MUSE (Vasco, Yin, Melo & Paiva, AAMAS 2022, "How to Sense the World: Leveraging Hierarchy in
Multimodal Perception for Robust Reinforcement Learning Agents"): modality VAEs below, and above
them a multimodal latent z_pi whose posterior is a product of experts of modality-specific
top-level experts.

Bottom: each modality's VAE (see :mod:`mmkeras.objectives.hierarchical`), the encoder giving
[mu_m, logvar_m]. Top, the ``muse`` fusion: a network per modality maps mu_m to a Gaussian
expert [mu_pi,m, logvar_pi,m] = e_m(mu_m) of z_pi; the posterior of the present modalities X is
the product of their experts and the prior N(0, I) (:func:`mmkeras.losses.gaussian.product_of_experts`):
    T_X = 1 + sum_{m in X} 1 / var_pi,m,   mu_X = (sum_{m in X} mu_pi,m / var_pi,m) / T_X,   var_X = 1 / T_X
The fusion outputs [mu_X, logvar_X] followed by every modality's expert (zeros where missing),
so the objective can form the single-modality posteriors (:class:`mmkeras.fusions.muse.MuseFusion`);
the ``gaussian_mean`` head takes mu_X,
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

import keras
from keras import ops

from mmkeras.distribute import local_contribution
from mmkeras.losses.gaussian import gaussian_kl, product_of_experts
from mmkeras.objectives.hierarchical import TwoLevelVAE


@keras.saving.register_keras_serializable(package="mmkeras")
class MUSE(TwoLevelVAE):
    """The MUSE loss (module docstring): the modality VAEs' negative ELBOs, and the top-level ELBO
    of the complete set and of each single modality, from the ``muse`` fusion's joint feature.
    Parameters and metrics: those of :class:`~mmkeras.objectives.hierarchical.TwoLevelVAE`
    (top_beta weighs the top KLs; top_hidden_units are the layers of the decoders z_pi -> modality
    latent).
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
        loss, metrics = super().top_terms(outputs, experts, masks, any_present)  # the complete set's
        size = self._shapes["top_dim"]
        joint = ops.cast(outputs.joint_feature, "float32")
        if len(experts) > 1:  # one modality's term equals the complete one
            for i, m in enumerate(sorted(outputs.features)):
                if m not in experts:
                    continue
                start = 2 * size * (i + 1)
                single_mu, single_logvar = product_of_experts({m: joint[:, start : start + 2 * size]}, {m: masks[m]})
                term = self.gamma * self.top_reconstruction(self.draw(single_mu, single_logvar), experts, masks)
                term = term + self.top_beta * gaussian_kl(single_mu, single_logvar)
                loss = loss + local_contribution(term, ops.cast(masks[m] > 0, "float32"))
        return loss, metrics
