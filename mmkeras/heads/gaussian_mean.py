"""The mean of a Gaussian parameter vector: the head of the hierarchical generative models."""

from __future__ import annotations

import keras

from mmkeras.heads.base import Head
from mmkeras.params import PositiveInt


@keras.saving.register_keras_serializable(package="mmkeras")
class GaussianMean(Head):
    """z = h[:, :output_dim]: the mean mu of a feature laid out as [mu, logvar, ...].

    A parameter-free head. Applied to a modality's Gaussian expert [mu_m, logvar_m] (2L values,
    ``output_dim`` = L) it gives mu_m; applied to the joint feature of the ``nexus`` and ``muse``
    fusions, whose first 2L values are [mu, logvar] of the top latent, it gives that posterior
    mean, which the encoder's ``encode`` then returns (``encode_output: latent``).

    Args:
        output_dim: L, the size of the mean.
    """

    def __init__(self, output_dim: PositiveInt, **kwargs):
        super().__init__(**kwargs)
        self.output_dim = output_dim

    def build(self, input_shape):
        size = input_shape[-1]
        if size is not None and size < 2 * self.output_dim:
            raise ValueError(
                f"gaussian_mean: the feature has {size} values, fewer than [mu, logvar] of "
                f"output_dim={self.output_dim}; set model.latent_dim to at most half the feature size"
            )

    def call(self, h):
        return h[:, : self.output_dim]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)
