"""Deep canonically correlated autoencoders, DCCAE (Wang, Arora, Livescu and Bilmes, ICML 2015,
"On Deep Multi-View Representation Learning").

Deep CCA (:mod:`mmkeras.objectives.dcca`) between the latents z_a, z_b of two views, plus the
reconstruction of each view from its own latent through a decoder the objective owns:
    loss = - sum_{i <= k} rho_i(z_a, z_b)  +  lambda * sum_{v in {a, b}} mean_{i: v present} e_v(D_v(z_v,i), x_v,i)
with rho_i the canonical correlations of the rows where both views are present (computed by
:class:`~mmkeras.objectives.dcca.DeepCCA`, ridge-regularised, over the global batch), x_v the
view's un-augmented input and e_v a per-row reconstruction error, by ``likelihoods``:
``mse`` (the default: the mean squared error over the view's elements), or the MVAE negative
log-likelihoods summed over its elements (``gaussian`` with unit variance, ``bernoulli`` for a
decoder that outputs probabilities, ``categorical`` for softmax outputs and one-hot targets).
The paper's reconstruction term is the squared error summed over each view's elements, averaged
over the rows and weighted by lambda; ``mse`` differs from it by the constant factor 1/size of the
view (so that views of different sizes weigh alike), which lambda absorbs. A view without a
decoder is not reconstructed (lambda = 0 for it).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mmkeras.distribute import local_contribution
from mmkeras.errors import RecipeError
from mmkeras.objectives.autoencoder import _check_decoders, _row_mse
from mmkeras.objectives.base import DecodingObjective
from mmkeras.objectives.dcca import DeepCCA
from mmkeras.objectives.mvae import LIKELIHOODS, check_likelihoods, negative_log_likelihood
from mmkeras.params import NonNegativeFloat, PositiveFloat, PositiveInt

RECONSTRUCTIONS = ("mse", *LIKELIHOODS)


def reconstruction_error(kind: str, prediction, target):
    """Per-row error in float32: ``mse`` the mean squared error over every non-batch axis, else
    the negative log-likelihood of that kind summed over them (see
    :func:`mmkeras.objectives.mvae.negative_log_likelihood`)."""
    if tuple(prediction.shape[1:]) != tuple(target.shape[1:]):
        raise ValueError(
            f"a decoder reconstructs shape {tuple(prediction.shape[1:])} but its target has shape "
            f"{tuple(target.shape[1:])}"
        )
    if kind == "mse":
        return _row_mse(prediction, target)
    return negative_log_likelihood(kind, prediction, target)


def masked_reconstruction(kind: str, prediction, target, mask):
    """This replica's contribution to the mean of :func:`reconstruction_error` over the rows where
    ``mask`` is 1; a missing row's garbage never enters (``where``, not a product)."""
    present = ops.cast(mask, "float32")
    row = ops.where(present > 0, reconstruction_error(kind, prediction, target), 0.0)
    return local_contribution(row, present)


@keras.saving.register_keras_serializable(package="mmkeras")
class DCCAE(DeepCCA, DecodingObjective):
    """Deep CCA between two modalities' latents plus lambda times the reconstruction of each from
    its own latent (module docstring).

    pair, top_k, r1, r2, epsilon: as :class:`~mmkeras.objectives.dcca.DeepCCA`. decoders:
    ``{modality: {name: <head>, params: {...}}}`` for one or both views of the pair, each built
    with ``output_shape`` = its input shape. likelihoods: ``{modality: mse | gaussian | bernoulli
    | categorical}`` (mse by default). reconstruction_weight: lambda. Metrics: the correlation
    sum ``corr_<a>_<b>`` and ``recon_<v>`` per decoded view.
    """

    def __init__(
        self,
        decoders: dict[str, dict[str, Any]],
        likelihoods: dict[str, str] | None = None,
        reconstruction_weight: NonNegativeFloat = 1.0,
        pair: list[str] | None = None,
        top_k: PositiveInt | None = None,
        r1: NonNegativeFloat = 1e-3,
        r2: NonNegativeFloat = 1e-3,
        epsilon: PositiveFloat = 1e-6,
        **kwargs: Any,
    ):
        super().__init__(pair=pair, top_k=top_k, r1=r1, r2=r2, epsilon=epsilon, **kwargs)
        self.decoders = _check_decoders(decoders)
        if self.pair is not None:
            outside = sorted(set(self.decoders) - set(self.pair))
            if outside:
                raise ValueError(f"decoders.{outside[0]}: not one of the pair {self.pair}; dccae decodes its two views")
        self.likelihoods, _ = check_likelihoods(self.decoders, likelihoods, allowed=RECONSTRUCTIONS)
        if reconstruction_weight < 0:
            raise ValueError(f"reconstruction_weight must be non-negative, got {reconstruction_weight}")
        self.reconstruction_weight = float(reconstruction_weight)
        self.decoder_layers: dict[str, keras.layers.Layer] = {}
        self._shapes: dict[str, Any] | None = None

    def metric_names(self, modalities):
        views = self.views(modalities)
        outside = sorted(set(self.decoders) - set(views))
        if outside:
            raise RecipeError(
                [f"objective.params.decoders.{outside[0]}: dccae decodes its two views {list(views)} only"]
            )
        return super().metric_names(modalities) + [f"recon_{v}" for v in sorted(self.decoders)]

    def build(self, outputs_shape, labels_shape=None):
        sizes = {v: int(outputs_shape["latents"][v][-1]) for v in sorted(self.decoders)}
        if len(set(sizes.values())) != 1:
            raise ValueError(
                f"dccae decodes the views' latents, which need one size; got {sizes}: give the model a head"
            )
        missing = sorted(set(self.decoders) - set(outputs_shape["inputs"]))
        if missing:
            raise ValueError(f"dccae: no input for decoder targets {missing} to take their shapes from")
        targets = {v: [int(d) for d in outputs_shape["inputs"][v][1:]] for v in sorted(self.decoders)}
        self._make_decoders(next(iter(sizes.values())), targets)

    def call(self, outputs, labels=None):
        result = dict(super().call(outputs, labels))  # {"loss": -corr, "corr_a_b": corr}
        inputs, masks, latents = outputs["inputs"], outputs["masks"], outputs["latents"]
        for v in sorted(self.decoders):
            if v not in inputs:  # the view is missing from the whole batch
                result[f"recon_{v}"] = ops.zeros((), "float32")
                continue
            prediction = self.decoder_layers[v](ops.cast(latents[v], "float32"))
            kind = self.likelihoods.get(v, "mse")
            try:
                result[f"recon_{v}"] = masked_reconstruction(kind, prediction, inputs[v], masks[v])
            except ValueError as exc:
                raise ValueError(f"decoders.{v}: {exc}") from None
            result["loss"] = result["loss"] + self.reconstruction_weight * result[f"recon_{v}"]
        return result

    def get_config(self):
        return {
            **super().get_config(),
            "decoders": self.decoders,
            "likelihoods": self.likelihoods,
            "reconstruction_weight": self.reconstruction_weight,
        }
