"""The objective contract."""

from __future__ import annotations

import keras


class Objective(keras.layers.Layer):
    """Base class of objectives: ``call(outputs, labels=None) -> {"loss": scalar, **metrics}``.

    ``outputs`` is the :class:`~mmkeras.model.MultimodalModel` record: ``features`` and
    ``latents`` (per modality), ``joint_feature`` and ``joint``, ``masks``, and ``inputs`` (the un-augmented inputs). Objectives run
    in float32 whatever the mixed-precision policy, and return this replica's *local
    contribution* to the loss (see :mod:`mmkeras.distribute`).
    """

    def __init__(self, **kwargs):
        kwargs["dtype"] = "float32"  # similarities and logits in float32 under mixed precision
        super().__init__(**kwargs)

    def metric_names(self, modalities: list[str]) -> list[str]:
        """Names of the extra scalars ``call`` returns besides ``loss``."""
        return []

    def call(self, outputs, labels=None):
        raise NotImplementedError
