"""An LSTM encoder for padded sequences [B, T, d] (MultiBench's affect features, MIMIC's time series)."""

from __future__ import annotations

import keras
from keras import layers

from mmkeras.encoders._sequence import RecurrentEncoder


@keras.saving.register_keras_serializable(package="mmkeras")
class LSTMEncoder(RecurrentEncoder):
    """Stacked LSTM layers (Hochreiter and Schmidhuber, 1997) over ``[B, T, d]``, padding steps skipped,
    pooled by ``output`` and projected to ``output_dim`` (see
    :class:`~mmkeras.encoders._sequence.RecurrentEncoder` for the parameters)."""

    recurrent = layers.LSTM
