"""The head contract."""

from __future__ import annotations

import keras

from mmkeras.component import Component


class Head(Component, keras.layers.Layer):
    """Base class of heads: ``call(h)`` maps a feature ``[B, d]`` to a latent ``[B, output_dim]``
    (projection heads), or to a modality's shape (decoders, given ``output_shape``).

    A subclass declares its parameters once, in ``__init__``'s signature, and keeps each as an
    attribute of the same name (:class:`~mmkeras.component.Component` derives ``get_config`` and the
    range checks from them).
    """
