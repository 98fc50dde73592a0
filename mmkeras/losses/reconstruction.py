"""Reconstruction errors: how far a decoder's output x^ is from its target x, per row.

The autoencoding objectives (multimodal autoencoder, DCCAE, factorized) decode a modality from a
code and score the result with one of these; the generative ones use the likelihoods of
:mod:`mmkeras.losses.gaussian` directly.
"""

from __future__ import annotations

from keras import ops

from mmkeras.distribute import local_contribution
from mmkeras.losses.gaussian import LIKELIHOODS, negative_log_likelihood

#: the per-row errors :func:`reconstruction_error` knows: the mean squared error and the likelihoods
RECONSTRUCTIONS = ("mse", *LIKELIHOODS)


def row_mse(prediction, target):
    """The mean squared error per row [B], over every non-batch axis, in float32:
        e(x^, x) = 1/D sum_{d <= D} (x^_d - x_d)^2
    (the reconstruction error of Ngiam et al., ICML 2011, "Multimodal Deep Learning", up to the
    constant 1/D that lets modalities of different sizes weigh alike)."""
    diff = ops.cast(prediction, "float32") - ops.cast(target, "float32")
    return ops.mean(ops.reshape(diff * diff, (ops.shape(diff)[0], -1)), axis=1)


def reconstruction_error(kind: str, prediction, target):
    """The per-row error [B] in float32: ``mse`` is :func:`row_mse`, any other kind the negative
    log-likelihood of that kind summed over the non-batch axes
    (:func:`mmkeras.losses.gaussian.negative_log_likelihood`).

    Raises ``ValueError`` when the prediction's shape is not the target's."""
    if tuple(prediction.shape[1:]) != tuple(target.shape[1:]):
        raise ValueError(
            f"a decoder reconstructs shape {tuple(prediction.shape[1:])} but its target has shape "
            f"{tuple(target.shape[1:])}"
        )
    if kind == "mse":
        return row_mse(prediction, target)
    return negative_log_likelihood(kind, prediction, target)


def masked_reconstruction(kind: str, prediction, target, mask):
    """This replica's contribution to the mean of :func:`reconstruction_error` over the rows
    where ``mask`` [B] is 1 (the global batch's mean once the replicas' contributions are summed,
    :func:`mmkeras.distribute.local_contribution`); a missing row's garbage never enters
    (``where``, not a product)."""
    present = ops.cast(mask, "float32")
    row = ops.where(present > 0, reconstruction_error(kind, prediction, target), 0.0)
    return local_contribution(row, present)


__all__ = ["RECONSTRUCTIONS", "masked_reconstruction", "reconstruction_error", "row_mse"]
