"""Symmetric InfoNCE (the CLIP loss) over every pair of present modalities.

For modalities a, b with L2-normalised latents and scale s = 1/temperature,
    logits_ij = s * <z_a,i , z_b,j>,
    L_ab = 1/2 [ CE(logits, diag) + CE(logits^T, diag) ],
and the loss is the mean of L_ab over all pairs a < b (Radford et al., 2021, "Learning
Transferable Visual Models From Natural Language Supervision"; van den Oord et al., 2018).
Rows where a or b is missing are neither anchors nor negatives. Under tf.distribute the
columns come from the global batch (local rows against gathered columns).

A learned scale is s = exp(t) with t kept in [0, ln 100] (CLIP's bounds: 1 <= s <= 100) by a
weight constraint the optimizer applies after each update. The forward pass reads t unclamped:
clamping it there (``clip``/``minimum`` in the graph) would zero the gradient of t for good once
an update carried it past a bound.
"""

from __future__ import annotations

import itertools
import math

import keras
from keras import ops

from mmkeras.distribute import cross_replica_gather, local_contribution
from mmkeras.objectives.base import Objective
from mmkeras.params import PositiveFloat

_NEG = -1e9
#: CLIP's bounds on the learned log logit scale t = ln s: 1 <= s <= 100
LOG_SCALE_BOUNDS = (0.0, math.log(100.0))


@keras.saving.register_keras_serializable(package="mmkeras")
class ClipLogScale(keras.constraints.Constraint):
    """Clips a learned log logit scale to [low, high] (CLIP's [0, ln 100] by default). Keras
    optimizers apply it to the variable after each update, so the forward pass uses the raw
    variable and its gradient never vanishes at a bound.

    Args:
        low: the lower bound of t = ln s.
        high: the upper bound of t = ln s.
    """

    def __init__(self, low: float = LOG_SCALE_BOUNDS[0], high: float = LOG_SCALE_BOUNDS[1]):
        if not low <= high:
            raise ValueError(f"low must be at most high, got {low} > {high}")
        self.low, self.high = float(low), float(high)

    def __call__(self, w):
        return ops.clip(ops.convert_to_tensor(w), self.low, self.high)

    def get_config(self) -> dict[str, float]:
        return {"low": self.low, "high": self.high}


def l2_normalize(x):
    x = ops.cast(x, "float32")
    return x / ops.maximum(ops.norm(x, axis=-1, keepdims=True), 1e-12)


def _one_direction(anchors, others, scale, row_mask, col_mask):
    """Per-row cross-entropy of ``anchors`` (local) against ``others`` gathered globally."""
    cols, offset = cross_replica_gather(others)
    col_valid, _ = cross_replica_gather(col_mask)
    logits = scale * ops.matmul(anchors, ops.transpose(cols))
    logits = ops.where(ops.expand_dims(col_valid, 0) > 0, logits, _NEG)
    targets = ops.arange(ops.shape(anchors)[0]) + offset
    positive = ops.take_along_axis(logits, ops.expand_dims(targets, 1), axis=1)[:, 0]
    per_row = ops.logsumexp(logits, axis=1) - positive
    return ops.where(row_mask > 0, per_row, 0.0)


def info_nce(z_a, z_b, temperature=0.07, mask=None):
    """Symmetric InfoNCE between two [B, d] batches (row i of each is a positive pair); returns
    this replica's contribution to the mean loss. ``mask`` [B] marks rows where both are present."""
    if mask is None:
        mask = ops.ones((ops.shape(z_a)[0],), "float32")
    return info_nce_scaled(z_a, z_b, 1.0 / temperature, mask)


def info_nce_scaled(z_a, z_b, scale, mask):
    """:func:`info_nce` with a (possibly learned) logit scale instead of a temperature."""
    a, b = l2_normalize(z_a), l2_normalize(z_b)
    m = ops.cast(mask, "float32")
    return 0.5 * (
        local_contribution(_one_direction(a, b, scale, m, m), m)
        + local_contribution(_one_direction(b, a, scale, m, m), m)
    )


@keras.saving.register_keras_serializable(package="mmkeras")
class InfoNCE(Objective):
    """CLIP-style symmetric InfoNCE over every pair of modalities' latents.

    temperature: the softmax temperature (0.07 in CLIP). learnable_temperature: learn
    t = log(1/temperature), kept in [0, ln 100] as in CLIP (temperature in [0.01, 1]) by a
    :class:`ClipLogScale` constraint applied after each optimizer update; a temperature outside
    that range starts at the nearest bound. The loss reads t unclamped, so a value assigned by
    hand outside the bounds is used as is until the next update.
    """

    def __init__(self, temperature: PositiveFloat = 0.07, learnable_temperature: bool = False, **kwargs):
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)
        self.learnable_temperature = bool(learnable_temperature)
        self.log_scale = None
        if self.learnable_temperature:
            self.log_scale = self.add_weight(
                name="log_scale",
                shape=(),
                initializer=keras.initializers.Constant(
                    min(max(math.log(1.0 / self.temperature), LOG_SCALE_BOUNDS[0]), LOG_SCALE_BOUNDS[1])
                ),
                dtype="float32",
                constraint=ClipLogScale(*LOG_SCALE_BOUNDS),
            )

    def scale(self):
        if self.log_scale is None:
            return 1.0 / self.temperature
        return ops.exp(self.log_scale)  # unclamped: ClipLogScale bounds the variable after each update

    def metric_names(self, modalities):
        return [f"nce_{a}_{b}" for a, b in itertools.combinations(sorted(modalities), 2)]

    def call(self, outputs, labels=None):
        latents, masks = outputs["latents"], outputs["masks"]
        pairs = list(itertools.combinations(sorted(latents), 2))
        if not pairs:
            raise ValueError("infonce needs at least two modalities")
        result = {}
        total = 0.0
        for a, b in pairs:
            both = ops.cast(masks[a], "float32") * ops.cast(masks[b], "float32")
            loss = info_nce_scaled(latents[a], latents[b], self.scale(), both)
            result[f"nce_{a}_{b}"] = loss
            total = total + loss
        result["loss"] = total / len(pairs)
        return result

    def get_config(self):
        return {
            **super().get_config(),
            "temperature": self.temperature,
            "learnable_temperature": self.learnable_temperature,
        }
