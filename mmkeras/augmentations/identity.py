"""The explicit "no augmentation"."""

from __future__ import annotations

import keras

from mmkeras.augmentations.base import Augmentation


@keras.saving.register_keras_serializable(package="mmkeras")
class Identity(Augmentation):
    """Returns its input unchanged (an explicit "no augmentation")."""

    def __init__(self, **kwargs):  # declares no parameters: rate and seed mean nothing here
        super().__init__(**kwargs)

    def augment(self, x):
        return x
