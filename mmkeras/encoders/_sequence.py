"""What the sequence encoders (``gru``, ``lstm``, ``transformer``) share: padding masks over ``[B, T, d]``
inputs, pooling over valid steps only, and the recurrent encoder body.

The sequences they read (MultiBench's affect features, MIMIC's time series) are front-padded with steps
whose features are all exactly 0; such a step is padding. A step is also padding where an explicit
``[B, T]`` boolean mask is False (``call(x, mask=...)``, which takes precedence).
"""

from __future__ import annotations

from typing import Any, Literal

from keras import layers, ops

from mmkeras.component import Component
from mmkeras.encoders.base import Encoder
from mmkeras.params import DropoutRate, PositiveInt


def valid_steps(x, mask, padding: str):
    """[B, T] bool, True where a step of ``x`` [B, T, d] is data: the explicit ``mask`` when given, else
    (``padding="zero_steps"``) the steps with a nonzero feature, else every step."""
    if mask is not None:
        return ops.cast(mask, "bool")
    if padding == "zero_steps":
        return ops.any(ops.not_equal(x, 0), axis=-1)
    return ops.ones(ops.shape(x)[:2], "bool")


def zero_masked(h, valid):
    """``h`` [B, T, ...] with the invalid steps set to 0 (by selection: a padding step holding inf or nan
    cannot leak through a product)."""
    keep = valid
    for _ in range(len(h.shape) - 2):
        keep = ops.expand_dims(keep, -1)
    return ops.where(keep, h, ops.zeros_like(h))


def masked_mean(h, valid):
    """The mean of ``h`` [B, T, c] over the valid steps, in float32 (0 for a row with no valid step)."""
    h32 = zero_masked(ops.cast(h, "float32"), valid)
    count = ops.sum(ops.cast(valid, "float32"), axis=1, keepdims=True)
    return ops.cast(ops.sum(h32, axis=1) / ops.maximum(count, 1.0), h.dtype)


def last_valid(h, valid):
    """``h`` [B, T, c] at each row's last valid step (0 for a row with no valid step)."""
    steps = ops.arange(ops.shape(valid)[1], dtype="int32")
    last = ops.max(ops.where(valid, steps[None, :], -1), axis=1)
    return ops.sum(zero_masked(h, ops.equal(steps[None, :], last[:, None])), axis=1)


class SequenceEncoder(Encoder):
    """An encoder whose ``output`` parameter is kept as ``self.output_mode`` (Keras's Layer owns
    ``output`` as a read-only property); ``get_config`` maps it back. A Keras mask given with the
    input is read as the padding mask and not passed on: the output has no padding steps to mask."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self) -> dict[str, Any]:
        from mmkeras.registry import parameters

        config = super(Component, self).get_config()  # Keras's base config; the parameters follow
        for name in parameters(type(self)):
            config[name] = getattr(self, "output_mode" if name == "output" else name)
        return config


class RecurrentEncoder(SequenceEncoder):
    """The body of the ``gru`` and ``lstm`` encoders; a subclass names its Keras layer in ``recurrent``.

    ``num_layers`` stacked recurrent layers of ``units`` (``bidirectional``: a forward and a backward
    layer each, their outputs concatenated), each followed by ``dropout``, read ``[B, T, d]``; padding
    steps are skipped by Keras masking (the state is carried over them unchanged), so they cannot
    change the output. ``output`` makes the feature:

    - ``"last"``: the top layer's state after the last valid step (zeros for a row with no valid step);
    - ``"mean"``: the top layer's outputs averaged over the valid steps;
    - ``"flatten"``: the top layer's output sequence, padding steps zeroed, flattened to
      ``[B, T * units]`` (needs a known ``T``): GMC's affect encoders (Poklukar et al., ICML 2022), a GRU
      of 30 units whose output sequence is flattened and projected to the latent size.

    Then a linear projection to ``output_dim`` (None: no projection).
    """

    #: the Keras recurrent layer class (``keras.layers.GRU`` or ``keras.layers.LSTM``)
    recurrent: type = layers.GRU
    #: the row shapes (no batch axis) it reads; checked by `mmkeras validate`
    input_layouts = ("T, C",)

    def __init__(
        self,
        output_dim: PositiveInt | None,
        units: PositiveInt = 64,
        num_layers: PositiveInt = 1,
        bidirectional: bool = False,
        dropout: DropoutRate = 0.0,
        output: Literal["last", "mean", "flatten"] = "last",
        padding: Literal["zero_steps", "none"] = "zero_steps",
        **kwargs,
    ):
        """A recurrent sequence encoder.

        Args:
            output_dim: the feature size, or None for the pooled recurrent output itself.
            units: the width of each recurrent layer (per direction).
            num_layers: the number of stacked recurrent layers.
            bidirectional: also run each layer backwards in time and concatenate both directions.
            dropout: the dropout rate after each recurrent layer (training only).
            output: how the output sequence becomes one feature: "last", "mean" or "flatten".
            padding: "zero_steps": a step whose features are all exactly 0 is padding; "none": every
                step is data. An explicit ``mask`` given to ``call`` takes precedence.
        """
        super().__init__(**kwargs)
        self.output_dim = output_dim
        self.units = units
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.dropout = dropout
        self.output_mode = output
        self.padding = padding
        dtype = self.dtype_policy
        self.rnns = []
        for i in range(num_layers):
            sequences = i < num_layers - 1 or output != "last"
            # cuDNN refuses front-padded masks and rows with no valid step, and it turns XLA off
            rnn = self.recurrent(units, return_sequences=sequences, use_cudnn=False, dtype=dtype, name=f"rnn_{i}")
            self.rnns.append(
                layers.Bidirectional(rnn, dtype=dtype, name=f"bidirectional_{i}") if bidirectional else rnn
            )
        self.drop = layers.Dropout(dropout, dtype=dtype, name="dropout")
        self.out = layers.Dense(output_dim, dtype=dtype, name="projection") if output_dim is not None else None

    @property
    def _width(self) -> int:
        return self.units * (2 if self.bidirectional else 1)

    def _pooled_size(self, steps) -> int:
        if self.output_mode != "flatten":
            return self._width
        if steps is None:
            raise ValueError(
                f"{type(self).__name__}: output='flatten' needs sequences of a known length, got [B, None, d]; "
                "use output='last' or 'mean' for sequences of varying length"
            )
        return int(steps) * self._width

    def build(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) != 3:
            raise ValueError(f"{type(self).__name__} reads sequences [B, T, d], got an input of shape {shape}")
        size = self._pooled_size(shape[1])
        for i, rnn in enumerate(self.rnns):
            rnn.build((shape[0], shape[1], shape[2] if i == 0 else self._width))
        if self.out is not None:
            self.out.build((shape[0], size))

    def call(self, x, mask=None, training=None):
        valid = valid_steps(x, mask, self.padding)
        h = zero_masked(x, valid)
        for rnn in self.rnns:
            h = self.drop(rnn(h, mask=valid, training=training), training=training)
        if self.output_mode == "mean":
            h = masked_mean(h, valid)
        elif self.output_mode == "flatten":
            h = ops.reshape(zero_masked(h, valid), (-1, self._pooled_size(x.shape[1])))
        return h if self.out is None else self.out(h)

    def compute_output_shape(self, input_shape):
        size = self.output_dim if self.out is not None else self._pooled_size(input_shape[1])
        return (input_shape[0], size)
