"""The multimodal autoencoder (Ngiam et al., ICML 2011, "Multimodal Deep Learning"): a joint code
decoded back to every modality, and each single modality's code decoded to every modality, so
that one modality learns to reconstruct the others ("hearing to see").

With D_t the decoder of target modality t, x_t its un-augmented input, z the joint code
(``outputs.joint``), z_s the latent of modality s alone (``outputs.latents[s]``) and e the
per-row mean squared error (:func:`mmkeras.losses.reconstruction.row_mse`):
    L_joint = 1/|T| sum_t  mean_{i: t present}          e(D_t(z_i),   x_t,i)
    L_cross = 1/|S||T| sum_{s, t} mean_{i: s, t present} e(D_t(z_s,i), x_t,i)
    loss    = joint_weight * L_joint + cross_weight * L_cross
over the targets T (the modalities given a decoder and present in the batch) and the sources
S (the modalities present in the batch; t = s included).

Modality dropout: Ngiam et al. train the bimodal autoencoder on examples with one modality
zeroed that must still reconstruct both. Here the model's forward pass has already fused the
complete observation before the objective sees it, so a second, modality-dropped pass is not
possible inside the objective; the single-modality paths z_s -> D_t train the same ability
directly (every modality's code must reconstruct every modality). To reconstruct from one
modality at inference, decode ``model({s: x_s}).latents[s]``, or set
``model.subset_encoding: mean`` so that ``model.encode`` of one modality is that latent.
All codes share one size (give the model a head), so one decoder per target serves them all.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mmkeras.distribute import local_contribution
from mmkeras.losses.reconstruction import row_mse
from mmkeras.objectives.base import DecodingObjective
from mmkeras.params import NonNegativeFloat


@keras.saving.register_keras_serializable(package="mmkeras")
class MultimodalAutoencoder(DecodingObjective):
    """Reconstruction of every modality from the joint code and from each modality's own code
    (module docstring). Metrics: ``recon_joint``, ``recon_cross`` (with ``cross_modal``) and
    ``recon_<t>`` per decoded modality t.

    Args:
        decoders: ``{modality: {name: dense_decoder | conv2d_decoder | <any head>, params: {...}}}``;
            each is built with ``output_shape`` = its modality's input shape. Modalities without a
            decoder are encoded but not reconstructed.
        cross_modal: add L_cross.
        joint_weight: the weight of L_joint.
        cross_weight: the weight of L_cross.
    """

    def __init__(
        self,
        decoders: dict[str, dict[str, Any]],
        cross_modal: bool = True,
        joint_weight: NonNegativeFloat = 1.0,
        cross_weight: NonNegativeFloat = 1.0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self._keep_decoders(decoders)
        self.cross_modal = cross_modal
        self.joint_weight = joint_weight
        self.cross_weight = cross_weight

    def build(self, outputs_shape, labels_shape=None):
        code_dim = int(outputs_shape.joint[-1])
        sizes = {m: int(s[-1]) for m, s in outputs_shape.latents.items()}
        if any(d != code_dim for d in sizes.values()):
            raise ValueError(
                f"multimodal_autoencoder decodes the joint code and every modality's latent with one decoder per "
                f"target, so they need one size; got joint {code_dim} and latents {sizes}: give the model a head"
            )
        self._make_decoders(code_dim, self._target_shapes(outputs_shape, "multimodal_autoencoder"))

    def _term(self, code, target: str, inputs, weight):
        return local_contribution(row_mse(self.decode(target, code, inputs), inputs[target]), weight)

    def call(self, outputs, labels=None):
        inputs, masks, latents = outputs.inputs, outputs.masks, outputs.latents
        targets = [t for t in sorted(self.decoders) if t in inputs]
        sources = [s for s in sorted(latents) if s in inputs]
        result: dict[str, Any] = {f"recon_{t}": ops.zeros((), "float32") for t in sorted(self.decoders)}
        joint = ops.zeros((), "float32")
        for t in targets:
            result[f"recon_{t}"] = self._term(outputs.joint, t, inputs, ops.cast(masks[t], "float32"))
            joint = joint + result[f"recon_{t}"]
        result["recon_joint"] = joint / max(len(targets), 1)
        loss = self.joint_weight * result["recon_joint"]
        if self.cross_modal:
            cross = ops.zeros((), "float32")
            for s in sources:
                for t in targets:
                    both = ops.cast(masks[s], "float32") * ops.cast(masks[t], "float32")
                    cross = cross + self._term(latents[s], t, inputs, both)
            result["recon_cross"] = cross / max(len(sources) * len(targets), 1)
            loss = loss + self.cross_weight * result["recon_cross"]
        result["loss"] = loss
        return result
