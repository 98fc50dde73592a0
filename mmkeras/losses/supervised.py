"""Prediction losses of a head trained on a representation against the labels, per row and as a
replica's share of the mean over the rows that count.

- classification: the cross-entropy of the logits y^ [B, C] against the class c,
  e = -log softmax(y^)_c;
- regression, ``l1``: e = |y^ - y| (the L1 loss of GMC's supervised CMU-MOSEI experiment, Poklukar,
  Vasco et al., ICML 2022, "Geometric Multimodal Contrastive Representation Learning");
- regression, ``mse``: e = (y^ - y)^2.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mmkeras.distribute import local_contribution

#: the tasks a prediction head is trained for
PREDICTION_TASKS = ("classification", "regression")
#: the per-row errors of a regression head
REGRESSION_LOSSES = ("l1", "mse")


def prediction_errors(prediction: Any, labels: Any, task: str = "regression", loss: str = "l1") -> Any:
    """The per-row error [B] in float32 of a head's ``prediction`` (logits [B, C] for
    ``classification``, values [B, 1] for ``regression``) against ``labels`` [B] (or [B, 1]):
    the cross-entropy, or the ``loss`` (``l1`` or ``mse``) of a regression (module docstring)."""
    if task not in PREDICTION_TASKS:
        raise ValueError(f"task must be one of {list(PREDICTION_TASKS)}, got {task!r}")
    if task == "classification":
        targets = ops.cast(ops.reshape(labels, (-1,)), "int32")
        return keras.losses.sparse_categorical_crossentropy(targets, ops.cast(prediction, "float32"), from_logits=True)
    if loss not in REGRESSION_LOSSES:
        raise ValueError(f"loss must be one of {list(REGRESSION_LOSSES)}, got {loss!r}")
    diff = ops.cast(prediction, "float32")[:, 0] - ops.cast(ops.reshape(labels, (-1,)), "float32")
    return ops.abs(diff) if loss == "l1" else diff * diff


def prediction_loss(prediction: Any, labels: Any, present: Any, task: str = "regression", loss: str = "l1") -> Any:
    """The mean of :func:`prediction_errors` over the rows with ``present`` > 0 (a row with no
    modality has no representation to predict from), as this replica's contribution to the global
    mean (:func:`mmkeras.distribute.local_contribution`); an absent row's error never enters, even
    when it is not finite."""
    present = ops.cast(present > 0, "float32")
    errors = prediction_errors(prediction, labels, task, loss)
    return local_contribution(ops.where(present > 0, errors, 0.0), present)
