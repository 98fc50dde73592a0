"""SigLIP's pairwise sigmoid loss (Zhai, Mustafa, Kolesnikov and Beyer, ICCV 2023, "Sigmoid Loss
for Language Image Pre-Training"). With L2-normalised x_i, y_j, logit scale t and bias b,

    l_ij = t <x_i, y_j> + b,   z_ij = +1 if i == j else -1,
    L = -1/|B| sum_i sum_j log sigmoid(z_ij l_ij),

every (i, j) an independent binary classification, divided by the batch size |B| as in the paper
(not by |B|^2). No softmax couples a row's columns, so the columns can be scored one block at a time
and summed: under tf.distribute each replica gathers every replica's y (N * b rows, with a gradient)
and scores its local x against them in N blocks of b x b logits (``chunks``), never local x global.
Each block is recomputed in the backward pass (``keras.remat``): kept for the gradient, the N
blocks would hold b x N*b floats again (measured: chunking alone left the peak memory unchanged).
On JAX the blocks run in a loop (``ops.scan``) whose checkpointed body keeps only a [b] running sum:
summed in Python, XLA scheduled the blocks side by side (a train step's temporary memory at a global
batch of 4096 on 2 devices, 2 blocks: 84.9 MB against 101.6 unchunked; looped, 51.4 MB, and 26.2 and
13.6 MB with 4 and 8 blocks). TensorFlow runs the Python loop's blocks one after the other.

Computed as -log sigmoid(l) = softplus(-l) = softplus(l) - l: every pair is scored as a negative,
softplus(l_ij) over the present columns, and each present row subtracts its positive logit l_ii,
computed from the local rows. So a block needs no labels and no replica offset, and the result is
the paper's loss exactly. Masks are presence weights: a row missing either modality contributes no
positive and is no one's negative, and |B| counts the present rows of the global batch.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mmkeras.distribute import local_contribution
from mmkeras.losses.contrastive import _mask, _vectors


def _negatives(rows: Any, columns: Any, weights: Any, scale: Any, bias: Any) -> Any:
    """Per row i: sum_j weights_j softplus(scale <rows_i, columns_j> + bias)."""
    logits = scale * ops.matmul(rows, ops.transpose(columns)) + bias
    return ops.sum(ops.softplus(logits) * ops.expand_dims(weights, 0), axis=1)


def _unrolled_negatives(rows: Any, columns: Any, weights: Any, scale: Any, bias: Any, chunks: int) -> Any:
    """:func:`_negatives` summed over ``chunks`` column blocks, each recomputed for the gradient, so the
    backward pass keeps no block's logits."""
    block = keras.remat(_negatives)
    blocks, present = ops.split(columns, chunks, axis=0), ops.split(weights, chunks, axis=0)
    return sum(block(rows, c, w, scale, bias) for c, w in zip(blocks, present))


def _scanned_negatives(rows: Any, columns: Any, weights: Any, scale: Any, bias: Any, chunks: int) -> Any:
    """:func:`_negatives` summed over ``chunks`` column blocks in a loop whose checkpointed body keeps
    only the [b] running sum per step, so one block's logits is alive at a time."""
    size = columns.shape[0] // chunks
    blocks = ops.reshape(columns, (chunks, size, columns.shape[1]))
    present = ops.reshape(weights, (chunks, size))
    block = keras.remat(_negatives)

    def step(total, xs):
        return total + block(rows, xs[0], xs[1], scale, bias), None

    total, _ = ops.scan(step, ops.zeros_like(rows[:, 0], dtype="float32"), (blocks, present))
    return total


def siglip_rows(anchors: Any, others: Any, scale: Any, bias: Any, mask: Any = None, chunks: int = 1) -> Any:
    """Per local anchor row i, sum over the present columns j of ``others`` of -log sigmoid(z_ij l_ij)
    (0 where row i is absent), with l_ij = scale <a_i, b_j> + bias.

    anchors, others: :class:`Gathered` L2-normalised rows, or [b, d] tensors; scale, bias: floats or
    scalar tensors; mask: presence [b] or :class:`Gathered`; chunks: score the columns in this many
    equal blocks, one [b, columns / chunks] logits block at a time (the replica count gives b x b).
    """
    a, b = _vectors(anchors), _vectors(others)
    m = _mask(mask, b)
    if chunks < 1:
        raise ValueError(f"chunks must be at least 1, got {chunks}")
    columns = b.columns.shape[0]
    if columns is not None and columns % chunks:
        raise ValueError(f"chunks must divide the {columns} columns into equal blocks, got {chunks}")
    scale, bias = ops.cast(scale, "float32"), ops.cast(bias, "float32")
    if chunks == 1:
        negatives = _negatives(a.rows, b.columns, m.columns, scale, bias)
    elif keras.backend.backend() == "jax":
        negatives = _scanned_negatives(a.rows, b.columns, m.columns, scale, bias, chunks)
    else:
        negatives = _unrolled_negatives(a.rows, b.columns, m.columns, scale, bias, chunks)
    positive = scale * ops.sum(a.rows * b.rows, axis=-1) + bias
    return ops.where(m.rows > 0, negatives - positive, 0.0)


def siglip(z_a: Any, z_b: Any, scale: Any, bias: Any, mask: Any = None, chunks: int = 1) -> Any:
    """The SigLIP loss of the module docstring between paired rows of z_a and z_b (row i of each a
    positive pair), as this replica's contribution to the global loss: its rows' sums over the
    global columns, divided by the global count of present rows.

    z_a, z_b: [b, d] tensors (L2-normalised and gathered here) or :class:`Gathered`; scale: t (the
    paper learns t = exp(t'), t' initialised at log 10); bias: b (initialised at -10); mask: presence
    [b] or :class:`Gathered`; chunks: how many column blocks to score one after the other (the loss
    and its gradient do not depend on it).
    """
    a = _vectors(z_a)
    m = _mask(mask, a)
    return local_contribution(siglip_rows(a, z_b, scale, bias, m, chunks), m.rows)


__all__ = ["siglip", "siglip_rows"]
