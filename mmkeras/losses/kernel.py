"""Kernel alignment maths: centred kernel alignment (CKA) of two views' batch kernels.

For modalities a, b, the n rows where both are present, and a kernel k,
    K^a_ij = k(z_a,i , z_a,j),   K^b_ij = k(z_b,i , z_b,j)           (n x n),
    Kc = H K H,  H = I - 1 1^T / n                                    (centring),
    CKA(K^a, K^b) = <Kc^a, Kc^b>_F / (||Kc^a||_F ||Kc^b||_F),
    L_ab = 1 - CKA(K^a, K^b),
and the loss is the mean of L_ab over all pairs a < b (a pair with fewer than two rows adds 0).
The kernels:
    linear       k(x, y) = <x, y>
    polynomial   k(x, y) = (<x, y> + c)^degree
    exponential  k(x, y) = exp(-gamma ||x - y||)
    rbf          k(x, y) = exp(-gamma ||x - y||^2)
Centred alignment is from Cortes, Mohri and Rostamizadeh (2012), "Algorithms for Learning
Kernels Based on Centered Alignment" (JMLR); as a similarity of representations, Kornblith et
al. (2019), "Similarity of Neural Network Representations Revisited". Aligning the two views'
kernels asks that rows similar in one modality be similar in the other (coordination by
kernel similarity). The kernels are over the global batch under tf.distribute.
"""

from __future__ import annotations

from keras import ops

KERNELS = ("linear", "polynomial", "exponential", "rbf")
_EPS = 1e-12


def kernel_matrix(x, kernel: str = "linear", degree: int = 2, c: float = 1.0, gamma: float = 1.0):
    """The [n, n] kernel matrix of the rows of ``x`` [n, d], in float32."""
    x = ops.cast(x, "float32")
    gram = ops.matmul(x, ops.transpose(x))
    if kernel == "linear":
        return gram
    if kernel == "polynomial":
        return (gram + c) ** degree
    sq = ops.diagonal(gram)
    d2 = ops.maximum(ops.expand_dims(sq, 1) + ops.expand_dims(sq, 0) - 2.0 * gram, 0.0)
    d2 = d2 * (1.0 - ops.eye(ops.shape(x)[0], dtype="float32"))  # exact zeros where rounding leaves a residue
    if kernel == "rbf":
        return ops.exp(-gamma * d2)
    if kernel == "exponential":
        return ops.exp(-gamma * ops.sqrt(ops.maximum(d2, _EPS)))  # the floor keeps sqrt's gradient finite at 0
    raise ValueError(f"unknown kernel {kernel!r}; expected one of {list(KERNELS)}")


def _centre(k, w):
    """H K H restricted to the rows with weight 1 (zeros elsewhere)."""
    n = ops.maximum(ops.sum(w), 1.0)
    row = ops.sum(k * ops.expand_dims(w, 0), axis=1) / n
    grand = ops.sum(row * w) / n
    centred = k - ops.expand_dims(row, 1) - ops.expand_dims(row, 0) + grand
    return centred * ops.expand_dims(w, 1) * ops.expand_dims(w, 0)


def centred_kernel_alignment(k_a, k_b, mask=None):
    """CKA of two [n, n] kernel matrices over the rows where ``mask`` [n] is 1."""
    w = ops.ones((ops.shape(k_a)[0],), "float32") if mask is None else ops.cast(mask, "float32")
    ca, cb = _centre(k_a, w), _centre(k_b, w)
    norms = ops.sqrt(ops.maximum(ops.sum(ca * ca) * ops.sum(cb * cb), _EPS))
    return ops.sum(ca * cb) / norms
