"""AE^2-Nets (Zhang, Liu and Fu, CVPR 2019, "AE^2-Nets: Autoencoder in Autoencoder Networks"): an
inner auto-encoder per view, whose code z_v (the modality encoder's feature) a decoder D_v turns back
into x_v, and an outer "auto-encoder" whose code is a per-sample intact representation H that the
degradation networks g_v map to every view's code.

Per batch, as the paper's alternating optimisation does per epoch:

1. H is inferred (the ``ae2net`` fusion, :class:`mmkeras.fusions.ae2net.AE2NetFusion`): ``inner_steps``
   steps of gradient descent (step ``inner_lr``, optional momentum) from H = 0 on
       E(H) = sum_v m_v 1/d_v ||g_v(H) - z_v||^2 + l2 ||H||^2,
   with the codes z_v held constant and the gradient wrt H written out (backpropagation through
   g_v by hand, :func:`mmkeras.losses.ae2net.intact_gradient`);
2. with H held constant, the encoders, decoders and degradation networks take one optimiser step on
       loss = mean_i sum_v m_v [ recon_weight e(D_v(z_v), x_v) + degradation_weight e(g_v(H), z_v) ],
   e the mean squared error over a view's elements (:func:`mmkeras.losses.ae2net.ae2net_loss`).

A missing view (m_v = 0) contributes nothing, neither to H's inference nor to the loss. ``encode`` of
any subset is H inferred from that subset's views alone (the missing-view case), at the cost of
``inner_steps`` x (a forward and a hand-written backward pass of every g_v) per sample.

Where this departs from the paper (say so when comparing numbers): the paper keeps one H per training
row and updates it across epochs, alternating with the networks; here H is not stored: it is
re-inferred for every batch from H = 0 by a fixed number of steps, so the model needs no row index,
encodes unseen samples the same way it trains, and the steps bound how closely H minimises E. The
paper's norms are Frobenius norms (sums), here means over each view's elements, so views of different
sizes weigh alike; the degradation networks have one hidden layer.

Give the model the ``ae2net`` fusion and no head: ``encode`` then returns H (a head would be applied to
it), and each modality's latent is its code z_v.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mmkeras.distribute import local_contribution
from mmkeras.fusions.ae2net import AE2NetFusion
from mmkeras.losses.ae2net import ae2net_loss
from mmkeras.objectives.base import DecodingObjective
from mmkeras.params import NonNegativeFloat


@keras.saving.register_keras_serializable(package="mmkeras")
class AE2Net(DecodingObjective):
    """The AE^2-Nets loss with H held constant (module docstring), over the modality features (the
    codes z_v), the ``ae2net`` fusion's H (the joint feature) and its degradation networks. Metrics:
    ``recon_<v>`` per decoded modality and ``degradation_<v>`` per modality (each the mean over the
    samples where v is present).

    Args:
        decoders: ``{modality: {name: <head>, params: {...}}}``, each built with ``output_shape`` = its
            modality's input shape; a modality without a decoder still informs H (degradation term)
            but is not reconstructed.
        recon_weight: the weight of the inner auto-encoders' reconstruction errors.
        degradation_weight: the weight of the degradation errors e(g_v(H), z_v) (lambda in the paper).
    """

    def __init__(
        self,
        decoders: dict[str, dict[str, Any]],
        recon_weight: NonNegativeFloat = 1.0,
        degradation_weight: NonNegativeFloat = 1.0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self._keep_decoders(decoders)
        self.recon_weight = recon_weight
        self.degradation_weight = degradation_weight
        self._degrade = None

    def attach_encoder(self, encoder: Any) -> None:
        """Keep the encoder's ``ae2net`` fusion's :meth:`~mmkeras.fusions.ae2net.AE2NetFusion.degrade`
        (the degradation networks are the encoder's: it needs them to infer H, and saves them)."""
        if not isinstance(encoder.fusion, AE2NetFusion):
            raise ValueError(
                f"ae2net: the model's fusion must be the ae2net fusion (model.fusion: {{name: ae2net}}), which holds "
                f"the degradation networks and infers H; got {type(encoder.fusion).__name__}"
            )
        self._degrade = encoder.fusion.degrade  # a method, not a layer: the encoder saves the networks

    def build(self, outputs_shape, labels_shape=None):
        targets = self._target_shapes(outputs_shape, "ae2net")  # first: it names a decoder without a modality
        sizes = {m: tuple(s) for m, s in outputs_shape.features.items() if m in self.decoders}
        vectors = [m for m, s in sizes.items() if len(s) != 2]
        if vectors:
            raise ValueError(f"ae2net decodes each modality's code [B, d]; {vectors[0]} gives {sizes[vectors[0]]}")
        # one decoder input size is kept for the build config; each decoder reads its own modality's code
        codes = {m: int(s[-1]) for m, s in sizes.items()}
        if len(set(codes.values())) > 1:
            raise ValueError(f"ae2net: the decoded modalities' codes need one size (model.feature_dim); got {codes}")
        self._make_decoders(next(iter(codes.values())), targets)

    def call(self, outputs, labels=None):
        if self._degrade is None:
            raise ValueError("ae2net needs the model's encoder (MultimodalModel attaches it); call it inside a model")
        inputs, masks = outputs.inputs, {m: ops.cast(k, "float32") for m, k in outputs.masks.items()}
        codes = {m: ops.cast(z, "float32") for m, z in outputs.features.items()}
        decoded = [t for t in sorted(self.decoders) if t in inputs]
        reconstructions = {t: self.decode(t, codes[t], inputs) for t in decoded}
        h = ops.stop_gradient(ops.cast(outputs.joint_feature, "float32"))  # held constant (module docstring)
        degraded = {m: g for m, g in self._degrade(h).items() if m in codes}
        terms = ae2net_loss(reconstructions, inputs, degraded, codes, masks, self.recon_weight, self.degradation_weight)
        zero = ops.zeros((), "float32")
        result = {f"recon_{t}": zero for t in sorted(self.decoders)}
        result.update({f"recon_{t}": local_contribution(terms.recon[t], masks[t]) for t in decoded})
        result.update({f"degradation_{m}": local_contribution(d, masks[m]) for m, d in terms.degradation.items()})
        result["loss"] = terms.loss
        return result
