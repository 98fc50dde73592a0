"""CoMM's contrastive baselines (Dufumier et al., ICLR 2025): Cross (CLIP), Cross+Self, CMC, and
supervised contrastive fine-tuning (SupCon).

- ``clip``, Cross: symmetric InfoNCE between the modalities' latents with a learned logit scale
  s = exp(t), t kept in [0, ln 100] by clipping the variable after each optimizer update (Radford
  et al., 2021); see mmkeras.objectives.infonce.
- ``cross_self``, Cross+Self: the cross-modal NCE plus ``ssl_scale`` times the mean over
  modalities of each modality's SimCLR loss between its two augmented views (the official
  ``CrossSelfLoss``: cross + 1/2 (ssl_1 + ssl_2) for two modalities).
- ``cmc``: the mean of NCE over every pair of modalities (Tian et al., 2020, "Contrastive
  Multiview Coding"), for n >= 2 modalities.
- ``supcon``: Khosla et al., 2020, "Supervised Contrastive Learning", L^sup_out on the joint
  latents of every view.

NCE is SimCLR's NT-Xent (as in the official code) or the CLIP form, see mmkeras.objectives.comm.
"""

from __future__ import annotations

import itertools

import keras
from keras import ops

from mmkeras.distribute import cross_replica_gather, local_contribution
from mmkeras.objectives.base import Objective
from mmkeras.objectives.comm import check_form, contrast, two_views
from mmkeras.objectives.infonce import InfoNCE, l2_normalize
from mmkeras.params import NonNegativeFloat, PositiveFloat, PositiveInt

_NEG = -1e9


def _both(masks, a: str, b: str):
    return ops.cast(masks[a], "float32") * ops.cast(masks[b], "float32")


@keras.saving.register_keras_serializable(package="mmkeras")
class CrossCLIP(InfoNCE):
    """Cross: CLIP's symmetric InfoNCE between every pair of modalities' latents (for two
    modalities, the CLIP loss), with the logit scale s = exp(t) learned from s = 1/temperature and
    t kept in [0, ln 100] as in CLIP: the optimizer clips the variable after each update
    (:class:`~mmkeras.objectives.infonce.ClipLogScale`) and the loss reads it unclamped, so its
    gradient never vanishes at a bound. ``learnable_temperature: false`` fixes s = 1/temperature.
    """

    def __init__(self, temperature: PositiveFloat = 0.07, learnable_temperature: bool = True, **kwargs):
        super().__init__(temperature=temperature, learnable_temperature=learnable_temperature, **kwargs)


@keras.saving.register_keras_serializable(package="mmkeras")
class CrossSelf(Objective):
    """Cross+Self: loss = mean over pairs (a, b) of 1/2 [NCE(z'_a, z'_b) + NCE(z''_a, z''_b)]
    + ssl_scale * mean over modalities m of NCE(z'_m, z''_m), on the per-modality latents of two
    augmented views ' and ''. The cross term is averaged over the two views (both are computed
    anyway). Rows where a modality is missing drop out of the terms that use it.

    temperature: tau of every NCE (0.1 in the official code). nce: ``ntxent`` or ``clip``.
    """

    num_views = 2

    def __init__(
        self, temperature: PositiveFloat = 0.1, ssl_scale: NonNegativeFloat = 1.0, nce: str = "ntxent", **kwargs
    ):
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)
        self.ssl_scale = float(ssl_scale)
        self.nce = check_form(nce)

    def metric_names(self, modalities):
        mods = sorted(modalities)
        return [f"cross_{a}_{b}" for a, b in itertools.combinations(mods, 2)] + [f"self_{m}" for m in mods]

    def call(self, outputs, labels=None):
        first, second = two_views(outputs, "cross_self")
        masks = first["masks"]
        mods = sorted(masks)
        pairs = list(itertools.combinations(mods, 2))
        if not pairs:
            raise ValueError("cross_self needs at least two modalities")
        result = {}
        for a, b in pairs:
            both = _both(masks, a, b)
            result[f"cross_{a}_{b}"] = 0.5 * sum(
                contrast(v["latents"][a], v["latents"][b], self.temperature, both, self.nce) for v in (first, second)
            )
        for m in mods:
            result[f"self_{m}"] = contrast(
                first["latents"][m], second["latents"][m], self.temperature, masks[m], self.nce
            )
        cross = sum(result[f"cross_{a}_{b}"] for a, b in pairs) / len(pairs)
        own = sum(result[f"self_{m}"] for m in mods) / len(mods)
        return {"loss": cross + self.ssl_scale * own, **result}

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature, "ssl_scale": self.ssl_scale, "nce": self.nce}


@keras.saving.register_keras_serializable(package="mmkeras")
class CMC(Objective):
    """CMC: loss = mean over pairs a < b of NCE(z_a, z_b) on the modalities' latents, at a fixed
    temperature. nce: ``ntxent`` (the official CoMM baseline) or ``clip`` (then this equals
    ``infonce``). Rows where a or b is missing drop out of that pair."""

    def __init__(self, temperature: PositiveFloat = 0.1, nce: str = "ntxent", **kwargs):
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)
        self.nce = check_form(nce)

    def metric_names(self, modalities):
        return [f"cmc_{a}_{b}" for a, b in itertools.combinations(sorted(modalities), 2)]

    def call(self, outputs, labels=None):
        latents, masks = outputs["latents"], outputs["masks"]
        pairs = list(itertools.combinations(sorted(latents), 2))
        if not pairs:
            raise ValueError("cmc needs at least two modalities")
        result = {
            f"cmc_{a}_{b}": contrast(latents[a], latents[b], self.temperature, _both(masks, a, b), self.nce)
            for a, b in pairs
        }
        return {"loss": sum(result.values()) / len(pairs), **result}

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature, "nce": self.nce}


@keras.saving.register_keras_serializable(package="mmkeras")
class SupCon(Objective):
    """Supervised contrastive loss (Khosla et al., NeurIPS 2020, Eq. 2, L^sup_out) on the joint
    latents of ``views`` augmented views. With the V*N L2-normalised rows z_k, labels y_k,
    A(k) = every other row and P(k) = the rows of A(k) with label y_k:

        l(k) = -1/|P(k)| sum_{p in P(k)} log( exp(z_k.z_p / tau) / sum_{a in A(k)} exp(z_k.z_a / tau) ),

    loss = the mean of l(k) over the anchors that have a positive. Rows with no modality present
    are neither anchors nor in any A(k). Used to fine-tune a pretrained model (CoMM's fine-tuning).
    """

    def __init__(self, temperature: PositiveFloat = 0.1, views: PositiveInt = 2, **kwargs):
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if views < 1:
            raise ValueError(f"views must be at least 1, got {views}")
        self.temperature = float(temperature)
        self.views = int(views)
        self.num_views = self.views  # the model reads this: one forward pass per view

    def call(self, outputs, labels=None):
        if labels is None:
            raise ValueError("supcon needs labels: the data set gave none")
        records = outputs.get("views") or [outputs]
        if len(records) != self.views:
            raise ValueError(f"supcon: expected {self.views} views, the model gave {len(records)}")
        masks = records[0]["masks"]
        valid = ops.cast(sum(ops.cast(m, "float32") for m in masks.values()) > 0, "float32")
        y = ops.reshape(ops.cast(labels, "int32"), (-1,))
        z = [l2_normalize(r["joint"]) for r in records]
        gathered = [cross_replica_gather(v) for v in z]
        offset = gathered[0][1]
        columns = ops.concatenate([g for g, _ in gathered], axis=0)  # [V * G, d]
        all_y, _ = cross_replica_gather(y)
        all_valid, _ = cross_replica_gather(valid)
        col_y = ops.tile(all_y, (self.views,))
        col_valid = ops.tile(all_valid, (self.views,)) > 0
        size = ops.shape(all_y)[0]
        col_index = ops.arange(ops.shape(columns)[0])
        per_row, weight = [], []
        for v in range(self.views):
            own = ops.arange(ops.shape(y)[0]) + offset + v * size
            others = col_valid[None, :] & (ops.expand_dims(own, 1) != col_index[None, :])
            logits = ops.where(others, ops.matmul(z[v], ops.transpose(columns)) / self.temperature, _NEG)
            log_prob = logits - ops.logsumexp(logits, axis=1, keepdims=True)
            positive = ops.cast(others & (ops.expand_dims(y, 1) == col_y[None, :]), "float32")
            count = ops.sum(positive, axis=1)
            mean_positive = ops.sum(ops.where(positive > 0, log_prob, 0.0), axis=1) / ops.maximum(count, 1.0)
            per_row.append(-mean_positive)
            weight.append(valid * ops.cast(count > 0, "float32"))
        return {"loss": local_contribution(ops.concatenate(per_row, 0), ops.concatenate(weight, 0))}

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature, "views": self.views}
