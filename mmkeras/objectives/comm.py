"""CoMM: contrastive multimodal learning of fused views (Dufumier, Castillo-Navarro, Tuia and
Thiran, ICLR 2025, "What to align in multimodal contrastive learning?").

Two augmented views X', X'' of each sample go through the per-modality encoders once each; the
fusion runs on all present modalities and on each modality alone, and one shared head projects
every result. With Z', Z'' the fused views (the records' ``joint``) and Z'_i, Z''_i the
single-modality ones (``joint_single[i]``), for n modalities:

    L   = NCE(Z', Z''),
    L_i = 1/2 [ NCE(Z'_i, Z'') + NCE(Z''_i, Z') ],
    loss = (w_joint L + sum_i w_i L_i) / (n + 1)        (all weights 1 by default).

The paper writes the objective as L + sum_i L_i; the official code averages the n + 1 terms,
which only rescales it, and so do we.

NCE is :func:`mmkeras.losses.nce_loss`: SimCLR's symmetric NT-Xent (``nce="ntxent"``, the default,
what the official code computes: cross- and intra-view negatives) or the CLIP form (``nce="clip"``,
cross-view negatives only).

Masks: a row with no modality present has no L term; a row whose modality i is missing has no
L_i term (in either direction it is neither an anchor nor a negative), so each term is the mean
over its present rows. Under tf.distribute the local rows are scored against the columns of the
global batch (gathered with gradient), as in the official code's all-gather; each view's fused
and single-modality latents and each mask are gathered once per step.
"""

from __future__ import annotations

from typing import Literal

import keras
from keras import ops

from mmkeras.losses.contrastive import any_present, gather, gather_normalized, nce_loss
from mmkeras.objectives._contrastive import two_views
from mmkeras.objectives.base import Objective
from mmkeras.params import PositiveFloat


@keras.saving.register_keras_serializable(package="mmkeras")
class CoMM(Objective):
    """The CoMM loss (see the module docstring): the fused views aligned with each other and each
    single-modality view aligned with the other fused view.

    temperature: tau (0.1 in CoMM). nce: ``ntxent`` (the official code) or ``clip``.
    weights: optional per-term weights keyed ``joint`` and modality names (missing keys weigh 1).
    """

    num_views = 2
    needs_single_modality_joints = True

    def __init__(
        self,
        temperature: PositiveFloat = 0.1,
        nce: Literal["ntxent", "clip"] = "ntxent",
        weights: dict[str, float] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.temperature = float(temperature)
        self.nce = nce
        self.term_weights = {str(k): float(v) for k, v in (weights or {}).items()}

    def call(self, outputs, labels=None):
        first, second = two_views(outputs, "comm")
        modalities = sorted(first.masks)
        unknown = sorted(set(self.term_weights) - {"joint", *modalities})
        if unknown:
            raise ValueError(f"comm: weights has keys {unknown}; expected 'joint' or modalities {modalities}")
        masks = {m: gather(ops.cast(first.masks[m], "float32")) for m in modalities}  # the views share them
        joints = [gather_normalized(first.joint), gather_normalized(second.joint)]
        singles = [{m: gather_normalized(v.joint_single[m]) for m in modalities} for v in (first, second)]
        anyone = any_present(masks.values())
        terms = {"joint": nce_loss(joints[0], joints[1], self.temperature, anyone, self.nce)}
        for m in modalities:
            terms[m] = 0.5 * (
                nce_loss(singles[0][m], joints[1], self.temperature, masks[m], self.nce)
                + nce_loss(singles[1][m], joints[0], self.temperature, masks[m], self.nce)
            )
        total = sum(self.term_weights.get(k, 1.0) * v for k, v in terms.items())
        return {"loss": total / len(terms), **{f"comm_{k}": v for k, v in terms.items()}}

    def get_config(self):
        # ``weights`` is kept as ``term_weights``: a Keras layer's ``weights`` is its variables
        return {**super().get_config(), "weights": self.term_weights or None}
