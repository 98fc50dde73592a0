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

NCE (``nce="ntxent"``, the default) is SimCLR's symmetric NT-Xent (Chen et al., 2020), which is
what the official code computes: the 2N rows of [a; b] are L2-normalised and each is an anchor
whose positive is its partner in the other view and whose negatives are the other 2N - 2 rows
(cross-view and intra-view), at temperature tau:

    l(k) = -log( exp(s_k,p(k) / tau) / sum_{j != k} exp(s_k,j / tau) ),   NCE = mean over the 2N rows.

``nce="clip"`` uses the CLIP form instead (only cross-view negatives; mmkeras.objectives.infonce).

Masks: a row with no modality present has no L term; a row whose modality i is missing has no
L_i term (in either direction it is neither an anchor nor a negative), so each term is the mean
over its present rows. Under tf.distribute the local rows are scored against the columns of the
global batch (gathered with gradient), as in the official code's all-gather.
"""

from __future__ import annotations

import keras
from keras import ops

from mmkeras.objectives.base import Objective
from mmkeras.objectives.gmc import gmc_terms
from mmkeras.objectives.infonce import info_nce_scaled
from mmkeras.params import PositiveFloat

NCE_FORMS = ("ntxent", "clip")


def nt_xent(z_a, z_b, temperature: float = 0.1, mask=None):
    """SimCLR's symmetric NT-Xent between two [B, d] views (row i of each is a positive pair):
    the mean over the 2B anchors of [a; b] of the cross-entropy against the 2B - 1 other rows.
    Returns this replica's contribution to the mean; ``mask`` [B] marks the rows that take part.

    GMC's official loss term is this same NT-Xent (with the joint as one view), so it is computed
    by :func:`mmkeras.objectives.gmc.gmc_terms` (global negatives, masks, float32)."""
    return gmc_terms(z_a, [z_b], temperature, None if mask is None else [mask], variant="official")["0"]


def contrast(z_a, z_b, temperature: float, mask, form: str):
    """NCE(z_a, z_b) in the named form: ``ntxent`` (SimCLR) or ``clip`` (cross-view negatives only)."""
    if form == "ntxent":
        return nt_xent(z_a, z_b, temperature, mask)
    return info_nce_scaled(z_a, z_b, 1.0 / temperature, mask)


def check_form(nce: str) -> str:
    if nce not in NCE_FORMS:
        raise ValueError(f"nce must be one of {list(NCE_FORMS)}, got {nce!r}")
    return nce


def two_views(outputs, who: str) -> tuple[dict, dict]:
    views = outputs.get("views")
    if views is None or len(views) != 2:
        raise ValueError(f"{who} needs the records of two augmented views (outputs['views']); the model gave none")
    return views[0], views[1]


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
        self, temperature: PositiveFloat = 0.1, nce: str = "ntxent", weights: dict[str, float] | None = None, **kwargs
    ):
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)
        self.nce = check_form(nce)
        self.term_weights = {str(k): float(v) for k, v in (weights or {}).items()}

    def metric_names(self, modalities):
        return ["comm_joint"] + [f"comm_{m}" for m in sorted(modalities)]

    def call(self, outputs, labels=None):
        first, second = two_views(outputs, "comm")
        masks = {m: ops.cast(v, "float32") for m, v in first["masks"].items()}
        modalities = sorted(masks)
        unknown = sorted(set(self.term_weights) - {"joint", *modalities})
        if unknown:
            raise ValueError(f"comm: weights has keys {unknown}; expected 'joint' or modalities {modalities}")
        anyone = masks[modalities[0]]
        for m in modalities[1:]:
            anyone = ops.maximum(anyone, masks[m])
        terms = {"joint": contrast(first["joint"], second["joint"], self.temperature, anyone, self.nce)}
        for m in modalities:
            terms[m] = 0.5 * (
                contrast(first["joint_single"][m], second["joint"], self.temperature, masks[m], self.nce)
                + contrast(second["joint_single"][m], first["joint"], self.temperature, masks[m], self.nce)
            )
        total = sum(self.term_weights.get(k, 1.0) * v for k, v in terms.items())
        return {"loss": total / len(terms), **{f"comm_{k}": v for k, v in terms.items()}}

    def get_config(self):
        return {
            **super().get_config(),
            "temperature": self.temperature,
            "nce": self.nce,
            "weights": self.term_weights or None,
        }
