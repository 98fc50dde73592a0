"""The fusion contract."""

from __future__ import annotations

import keras

from mmkeras.component import Component


class Fusion(Component, keras.layers.Layer):
    """Base class of fusions.

    ``call(features, masks)`` takes ``features: {modality: [B, d_m]}`` and
    ``masks: {modality: [B]}`` (1.0 present, 0.0 missing; the model always passes every
    modality, zeros where missing) and returns the joint feature ``[B, output_dim]``.
    A fusion must ignore a missing modality's features entirely. A subclass declares its
    parameters once, in ``__init__``'s signature, and keeps each as an attribute of the same name
    (:class:`~mmkeras.component.Component` derives ``get_config`` and the range checks from them).
    """

    def call(self, features, masks):
        raise NotImplementedError
