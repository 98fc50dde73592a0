"""A GRU encoder for padded sequences [B, T, d] (MultiBench's affect features, MIMIC's time series)."""

from __future__ import annotations

import keras
from keras import layers

from mmkeras.encoders._sequence import RecurrentEncoder


@keras.saving.register_keras_serializable(package="mmkeras")
class GRUEncoder(RecurrentEncoder):
    """Stacked GRU layers (Cho et al., 2014; Keras's ``reset_after`` form) over ``[B, T, d]``, padding
    steps skipped, pooled by ``output`` and projected to ``output_dim`` (see
    :class:`~mmkeras.encoders._sequence.RecurrentEncoder` for the parameters).

    GMC's affect encoders: ``units=30, output="flatten"`` with ``output_dim`` 60; CoMM's MIMIC
    time-series encoder: ``units=512``.
    """

    recurrent = layers.GRU
