"""Deep canonically correlated autoencoders, DCCAE (Wang, Arora, Livescu and Bilmes, ICML 2015,
"On Deep Multi-View Representation Learning").

Deep CCA (:mod:`mmkeras.objectives.dcca`) between the latents z_a, z_b of two views, plus the
reconstruction of each view from its own latent through a decoder the objective owns:
    loss = - sum_{i <= k} rho_i(z_a, z_b)  +  lambda * sum_{v in {a, b}} mean_{i: v present} e_v(D_v(z_v,i), x_v,i)
with rho_i the canonical correlations of the rows where both views are present (computed by
:class:`~mmkeras.objectives.dcca.DeepCCA`, ridge-regularised, over the global batch), x_v the
view's un-augmented input and e_v a per-row reconstruction error, by ``likelihoods``
(:func:`mmkeras.losses.reconstruction.reconstruction_error`): ``mse`` (the default: the mean
squared error over the view's elements), or a negative log-likelihood summed over its elements
(``gaussian`` with unit variance, ``bernoulli`` for a decoder that outputs probabilities,
``categorical`` for softmax outputs and one-hot targets).
The paper's reconstruction term is the squared error summed over each view's elements, averaged
over the rows and weighted by lambda; ``mse`` differs from it by the constant factor 1/size of the
view (so that views of different sizes weigh alike), which lambda absorbs. A view without a
decoder is not reconstructed (lambda = 0 for it).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mmkeras.errors import RecipeError
from mmkeras.losses.reconstruction import RECONSTRUCTIONS, masked_reconstruction
from mmkeras.objectives.base import DecodingObjective, check_likelihoods
from mmkeras.objectives.dcca import DeepCCA
from mmkeras.params import NonNegativeFloat, PositiveFloat, PositiveInt


@keras.saving.register_keras_serializable(package="mmkeras")
class DCCAE(DeepCCA, DecodingObjective):
    """Deep CCA between two modalities' latents plus lambda times the reconstruction of each from
    its own latent (module docstring). Metrics: the correlation sum ``corr_<a>_<b>`` and
    ``recon_<v>`` per decoded view.

    Args:
        decoders: ``{modality: {name: <head>, params: {...}}}`` for one or both views of the pair,
            each built with ``output_shape`` = its input shape.
        likelihoods: ``{modality: mse | gaussian | bernoulli | categorical}`` (mse by default).
        reconstruction_weight: lambda.
        pair: as :class:`~mmkeras.objectives.dcca.DeepCCA`.
        top_k: as :class:`~mmkeras.objectives.dcca.DeepCCA`.
        r1: as :class:`~mmkeras.objectives.dcca.DeepCCA`.
        r2: as :class:`~mmkeras.objectives.dcca.DeepCCA`.
        epsilon: as :class:`~mmkeras.objectives.dcca.DeepCCA`.
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
        self._keep_decoders(decoders)
        if self.pair is not None:
            outside = sorted(set(self.decoders) - set(self.pair))
            if outside:
                raise ValueError(f"decoders.{outside[0]}: not one of the pair {self.pair}; dccae decodes its two views")
        self.likelihoods, _ = check_likelihoods(self.decoders, likelihoods, allowed=RECONSTRUCTIONS)
        self.reconstruction_weight = reconstruction_weight

    def build(self, outputs_shape, labels_shape=None):
        views = self.views(list(outputs_shape.masks))
        outside = sorted(set(self.decoders) - set(views))
        if outside:
            raise RecipeError(
                [f"objective.params.decoders.{outside[0]}: dccae decodes its two views {list(views)} only"]
            )
        sizes = {v: int(outputs_shape.latents[v][-1]) for v in sorted(self.decoders)}
        if len(set(sizes.values())) != 1:
            raise ValueError(
                f"dccae decodes the views' latents, which need one size; got {sizes}: give the model a head"
            )
        self._make_decoders(next(iter(sizes.values())), self._target_shapes(outputs_shape, "dccae"))

    def call(self, outputs, labels=None):
        result = dict(super().call(outputs, labels))  # {"loss": -corr, "corr_a_b": corr}
        inputs, masks, latents = outputs.inputs, outputs.masks, outputs.latents
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
