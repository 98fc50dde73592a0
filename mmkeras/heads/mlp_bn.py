"""A projection head with batch normalisation: (Linear-BN-ReLU) x k, then Linear (SimCLR, CoMM)."""

from __future__ import annotations

import keras

from mmkeras.heads.base import Head
from mmkeras.layers.mlp import MLP
from mmkeras.params import PositiveFloat, PositiveInt, UnitFloat


@keras.saving.register_keras_serializable(package="mmkeras")
class MLPBNHead(Head, MLP):
    """z = W_out relu(BN(W_k ... relu(BN(W_1 h)))).

    CoMM's head (Dufumier et al., ICLR 2025) is ``hidden_units=[512, 512]``, ``output_dim=256``,
    shared by the fused and single-modality embeddings; SimCLR's (Chen et al., 2020) has one
    hidden layer. The hidden linear layers have no bias: the batch norm's beta takes its place.

    Args:
        output_dim: the latent size.
        hidden_units: the widths of the hidden layers.
        momentum: the batch normalisation's moving-average momentum.
        epsilon: the batch normalisation's variance epsilon.
    """

    def __init__(
        self,
        output_dim: PositiveInt,
        hidden_units: list[PositiveInt] = (512, 512),  # type: ignore[assignment]
        momentum: UnitFloat = 0.9,
        epsilon: PositiveFloat = 1e-5,
        **kwargs,
    ):
        super().__init__(
            hidden_units=hidden_units,
            output_dim=output_dim,
            activation="relu",
            batch_norm=True,
            momentum=momentum,
            epsilon=epsilon,
            **kwargs,
        )
