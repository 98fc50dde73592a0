"""The intact-space fusion of AE^2-Nets (Zhang, Liu and Fu, CVPR 2019; the objective is
:mod:`mmkeras.objectives.ae2net`, the maths :mod:`mmkeras.losses.ae2net`).

The fusion holds the degradation networks g_v: H -> z_v and infers each sample's intact
representation H from the codes z_v of its present views (the modality features), so the encoder
alone (``encoder.keras``) encodes any subset: ``encode`` of a subset is H inferred from those views.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import keras
from keras import ops
from pydantic import Field

from mmkeras.fusions.base import Fusion
from mmkeras.losses.ae2net import Degradation, degrade, infer_intact
from mmkeras.params import NonNegativeFloat, PositiveFloat, PositiveInt


@keras.saving.register_keras_serializable(package="mmkeras")
class AE2NetFusion(Fusion):
    """H [B, ``intact_dim``], inferred per sample by ``inner_steps`` steps of gradient descent from
    H = 0 on sum_v m_v 1/d_v ||g_v(H) - z_v||^2 + l2 ||H||^2 over the present views, z_v the
    modality features (:func:`mmkeras.losses.ae2net.infer_intact`). H carries no gradient: the
    degradation networks are trained by the ``ae2net`` objective through :meth:`degrade`.

    Cost: ``inner_steps`` x (a forward and a hand-written backward pass of every g_v) per sample, in
    training and in every ``encode``; in float32 whatever the mixed-precision policy. A sample with
    no view gives H = 0.

    Args:
        intact_dim: D, the size of H.
        hidden_dim: K, the hidden units of each degradation network.
        activation: ``tanh`` (the networks of the paper) or ``linear`` (then H is a ridge regression).
        inner_steps: gradient steps on H.
        inner_lr: their step size.
        momentum: heavy-ball momentum of the steps (0: plain gradient descent).
        l2: the weight of ||H||^2.
    """

    def __init__(
        self,
        intact_dim: PositiveInt = 64,
        hidden_dim: PositiveInt = 128,
        activation: Literal["tanh", "linear"] = "tanh",
        inner_steps: PositiveInt = 20,
        inner_lr: PositiveFloat = 0.5,
        momentum: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] = 0.5,
        l2: NonNegativeFloat = 1.0e-3,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.intact_dim = intact_dim
        self.hidden_dim = hidden_dim
        self.activation = activation
        self.inner_steps = inner_steps
        self.inner_lr = inner_lr
        self.momentum = momentum
        self.l2 = l2
        self.networks: dict[str, Degradation] = {}

    def build(self, features_shape, masks_shape=None):
        for m in sorted(features_shape):
            shape = tuple(features_shape[m])
            if len(shape) != 2 or shape[-1] is None:
                raise ValueError(
                    f"the ae2net fusion reads each modality's code as a vector [B, d]; modality {m} gives shape "
                    f"{shape} (an encoder with `output: tokens`?)"
                )
            d = int(shape[-1])

            def weight(name, shape, init, m=m):
                return self.add_weight(shape=shape, initializer=init, dtype="float32", name=f"{m}_{name}")

            self.networks[m] = Degradation(
                weight("w1", (self.intact_dim, self.hidden_dim), "glorot_uniform"),
                weight("b1", (self.hidden_dim,), "zeros"),
                weight("w2", (self.hidden_dim, d), "glorot_uniform"),
                weight("b2", (d,), "zeros"),
            )
        self.built = True

    def call(self, features, masks):
        h = infer_intact(
            features,
            masks,
            self.networks,
            self.intact_dim,
            self.inner_steps,
            self.inner_lr,
            self.momentum,
            self.l2,
            self.activation,
        )
        return ops.cast(h, self.compute_dtype)

    def degrade(self, h) -> dict[str, Any]:
        """{modality: g_v(H)} [B, d_v] in float32, with gradients to the networks' weights."""
        return {m: degrade(h, self.networks[m], self.activation)[0] for m in sorted(self.networks)}

    def compute_output_shape(self, features_shape, masks_shape=None):
        return (next(iter(features_shape.values()))[0], self.intact_dim)
