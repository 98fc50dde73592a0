"""The objective contract."""

from __future__ import annotations

import keras


class Objective(keras.layers.Layer):
    """Base class of objectives: ``call(outputs, labels=None) -> {"loss": scalar, **metrics}``.

    ``outputs`` is the :class:`~mmkeras.model.MultimodalModel` record: ``features`` and
    ``latents`` (per modality), ``joint_feature`` and ``joint``, ``masks``, and ``inputs`` (the
    un-augmented inputs). Objectives run in float32 whatever the mixed-precision policy, and
    return this replica's *local contribution* to the loss (see :mod:`mmkeras.distribute`).
    """

    #: forward passes per batch, each with its own augmentation draw (the record gets ``views``)
    num_views: int = 1
    #: ask the model for the fusion of each single modality (the record gets ``joint_single``)
    needs_single_modality_joints: bool = False

    def __init__(self, **kwargs):
        kwargs["dtype"] = "float32"  # similarities and logits in float32 under mixed precision
        super().__init__(**kwargs)

    def metric_names(self, modalities: list[str]) -> list[str]:
        """Names of the extra scalars ``call`` returns besides ``loss``."""
        return []

    def call(self, outputs, labels=None):
        raise NotImplementedError
