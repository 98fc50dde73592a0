"""Symmetric InfoNCE (the CLIP loss) over every pair of present modalities: the mean over pairs
a < b of :func:`mmkeras.losses.info_nce` (z_a, z_b) at logit scale s = 1/temperature (Radford et
al., 2021; van den Oord et al., 2018). Rows where a or b is missing are neither anchors nor
negatives. Each modality's latents and mask are gathered once per step; under tf.distribute the
local rows are scored against the global batch.

A learned scale is s = exp(t) with t kept in [0, ln 100] (CLIP's bounds: 1 <= s <= 100) by a
weight constraint the optimizer applies after each update. The forward pass reads t unclamped:
clamping it there (``clip``/``minimum`` in the graph) would zero the gradient of t for good once
an update carried it past a bound.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from mmkeras.losses.contrastive import both_present, info_nce
from mmkeras.objectives._contrastive import gathered_latents, modality_pairs
from mmkeras.objectives.base import Objective
from mmkeras.params import PositiveFloat

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

    def call(self, outputs, labels=None):
        pairs = modality_pairs(outputs.latents, "infonce")
        z, masks = gathered_latents(outputs)
        scale = self.scale()
        result = {f"nce_{a}_{b}": info_nce(z[a], z[b], scale, both_present(masks[a], masks[b])) for a, b in pairs}
        result["loss"] = sum(result.values()) / len(pairs)
        return result
