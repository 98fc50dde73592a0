"""Deep multimodal clustering (DMC; Hu, Nie and Li, CVPR 2019, "Deep Multimodal Clustering for
Unsupervised Audiovisual Learning"): each sample's token features (image patches, the steps of a sound sequence) are
clustered into K centres by a few differentiable soft k-means steps, and the centres of two
modalities of the same sample are aligned, centre k with centre k, by a max-margin loss against the
other samples' centres.

Clustering one sample's tokens u_1..u_T [T, d], with cos the cosine similarity and temperature tau:

    s_ik = exp(cos(u_i, c_k) / tau) / sum_l exp(cos(u_i, c_l) / tau)    (soft assignment)
    c_k  = sum_i s_ik u_i / sum_i s_ik                                  (centre update)

repeated ``iterations`` times (the paper's distance is d = -cos, so s_ik = softmax_k(-d_ik / tau)).
The similarity of two samples' centre sets is the mean cosine of matching centres,

    S(a_i, b_j) = 1/K sum_k cos(c^a_ik, c^b_jk),

and the loss is the bidirectional max-margin (hinge) loss over the global batch with margin alpha,

    l_i = sum_{j != i} [alpha - S(a_i, b_i) + S(a_i, b_j)]_+ + sum_{j != i} [alpha - S(a_i, b_i) + S(a_j, b_i)]_+,

averaged over the rows where both modalities are present; a row where either is missing is neither
an anchor nor a negative. S is the dot product of the unit centres flattened and scaled by 1/sqrt(K),
so the hinge is :func:`mmkeras.losses.vse_hinge` on those vectors.

Where this departs from the paper (say so when comparing numbers): the initial centres are the means
of K contiguous blocks of tokens (token i starts in block floor(i K / T)), a deterministic choice so
that centre k starts on the same region or time segment in every sample and every modality; both
modalities take the anchor's role (the paper's hinge ranks mismatched pairs for one anchor); and the
loss is the mean over anchors, not the sum, so it does not grow with the batch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from keras import ops

from mmkeras.losses.contrastive import Gathered, gather, vse_hinge


def unit(x: Any, axis: int = -1) -> Any:
    """x / ||x|| along ``axis`` in float32, with a gradient that stays finite at x = 0 (zero rows:
    a missing modality's features)."""
    x = ops.cast(x, "float32")
    return x * ops.rsqrt(ops.maximum(ops.sum(x * x, axis=axis, keepdims=True), 1e-12))


def initial_blocks(tokens: int, clusters: int) -> np.ndarray:
    """[T, K] weights whose column k averages the k-th of K contiguous token blocks (token i is in
    block floor(i K / T)): the initial centres are ``tokens^T @ blocks``."""
    if clusters > tokens:
        raise ValueError(f"dmc: {clusters} clusters need at least as many tokens per sample, got {tokens}")
    block = (np.arange(tokens) * clusters) // tokens
    weights = np.eye(clusters, dtype="float32")[block]
    return weights / weights.sum(0, keepdims=True)


def soft_kmeans(tokens: Any, clusters: int, iterations: int = 3, temperature: float = 0.1) -> tuple[Any, Any]:
    """Soft k-means of each sample's tokens [B, T, d] (the module docstring): ``iterations`` rounds of
    soft assignment and centre update, from the means of K contiguous token blocks. Returns the last
    round's assignments [B, T, K] (rows sum to 1) and the centres they give [B, K, d], in float32."""
    u = ops.cast(tokens, "float32")
    if len(u.shape) != 3 or u.shape[1] is None:
        raise ValueError(f"dmc: expected token features [B, T, d] with a known T, got shape {tuple(u.shape)}")
    centres = ops.einsum("btd,tk->bkd", u, ops.convert_to_tensor(initial_blocks(int(u.shape[1]), clusters)))
    unit_tokens = unit(u)
    assignments = None
    for _ in range(iterations):
        similarity = ops.einsum("btd,bkd->btk", unit_tokens, unit(centres))
        assignments = ops.softmax(similarity / temperature, axis=-1)
        mass = ops.sum(assignments, axis=1)  # [B, K]
        centres = ops.einsum("btk,btd->bkd", assignments, u) / ops.expand_dims(ops.maximum(mass, 1e-12), -1)
    if assignments is None:  # no update: the assignments to the initial centres
        assignments = ops.softmax(ops.einsum("btd,bkd->btk", unit_tokens, unit(centres)) / temperature, axis=-1)
    return assignments, centres


def centre_vectors(centres: Any) -> Any:
    """[B, K, d] centres as [B, K d] vectors whose dot product is the mean cosine of matching centres
    (each centre made a unit vector, all scaled by 1/sqrt(K)), gathered across replicas."""
    k = int(centres.shape[1])
    flat = ops.reshape(unit(centres), (-1, k * int(centres.shape[2])))
    return gather(flat / math.sqrt(k))


def centre_similarity(a: Gathered, b: Gathered, mask: Gathered) -> Any:
    """The mean over this replica's present rows of S(a_i, b_i), the mean cosine of matching centres
    (this replica's contribution to the global mean): how well the two modalities' clusters agree."""
    from mmkeras.distribute import local_contribution

    return local_contribution(ops.sum(a.rows * b.rows, axis=-1), mask.rows)


def dmc_loss(centres_a: Any, centres_b: Any, margin: float = 0.2, mask: Any = None) -> Any:
    """The DMC max-margin loss between two modalities' centres (the module docstring): [B, K, d]
    tensors, or :func:`centre_vectors` already gathered; ``mask``: [B] presence of both (or a
    :class:`~mmkeras.losses.Gathered`). Returns this replica's contribution to the mean over rows."""
    a = centres_a if isinstance(centres_a, Gathered) else centre_vectors(centres_a)
    b = centres_b if isinstance(centres_b, Gathered) else centre_vectors(centres_b)
    return vse_hinge(a, b, margin, "sum", mask)
