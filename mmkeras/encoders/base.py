"""The encoder contract."""

from __future__ import annotations

import keras

from mmkeras.component import Component


class Encoder(Component, keras.layers.Layer):
    """Base class of modality encoders: ``call(x)`` maps one modality's batch ``[B, ...]`` to its
    feature ``[B, output_dim]`` (or a token sequence ``[B, T, output_dim]``).

    A subclass declares its parameters once, in ``__init__``'s signature, and keeps each as an
    attribute of the same name (:class:`~mmkeras.component.Component` derives ``get_config`` and the
    range checks from them). An optional class attribute ``input_layouts`` (such as ``("H, W, C",)``)
    names the row shapes it reads, which ``mmkeras validate`` checks against the dataset.
    """


class ConvolutionEncoder(Encoder):
    """The shared body of the convolution encoders: ``self.convs`` (each optionally followed by batch
    normalisation), each then ``activation``; flattened and projected to ``output_dim``."""

    def _finish_stack(self, convs: list[keras.layers.Layer], batch_norm: bool, activation: str) -> None:
        """Keep ``convs`` and make the normalisations, activation and projection that follow them."""
        dtype = self.dtype_policy
        self.convs = convs
        norm = keras.layers.BatchNormalization
        self.norms = [norm(dtype=dtype, name=f"bn_{i}") for i in range(len(convs))] if batch_norm else []
        self.act = keras.layers.Activation(activation, dtype=dtype)
        self.flatten = keras.layers.Flatten(dtype=dtype)
        self.out = keras.layers.Dense(self.output_dim, dtype=dtype, name="projection")

    def call(self, x, training=None):
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if self.norms:
                x = self.norms[i](x, training=training)
            x = self.act(x)
        return self.out(self.flatten(x))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)
