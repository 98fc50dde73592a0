"""Canonical correlations: the maths of Deep CCA (Andrew, Arora, Bilmes and Livescu, 2013,
"Deep Canonical Correlation Analysis").

For two views' representations H1 [n, o1], H2 [n, o2] over the n rows where both are present,
centred (H = H - mean), with ridges r1, r2:
    S11 = H1^T H1 / (n - 1) + r1 I,   S22 = H2^T H2 / (n - 1) + r2 I,   S12 = H1^T H2 / (n - 1),
    T = S11^{-1/2} S12 S22^{-1/2},
the canonical correlations are the singular values rho_1 >= rho_2 >= ... of T, and
    loss = - sum_{i <= k} rho_i,   k = min(top_k, n - 1)   (top_k default: all min(o1, o2)).
The paper's objective with k = o is the trace norm of T; "top-k" is its Section 3 variant.
k is capped at n - 1 because S12 has rank at most n - 1 (the rows are centred), so rho_i = 0
exactly for i > n - 1: summing those would only add rounding noise and the ``epsilon`` floor.

Computed in float64 whatever the inputs' dtype (where the backend has it; JAX needs
``jax_enable_x64``), and returned in float32. With a batch smaller than the width and large
activations S11 has eigenvalues from r1 to ~n * var, a ratio past float32's precision: its
Cholesky factor was NaN and its null space leaked ~1e-5 eigenvalues into T^T T. Any whitening
gives the singular values of T, so S11 and S22 are whitened by their Cholesky factors L
(L^{-1} S L^{-T} = I), whose gradient does not divide by eigenvalue gaps as an
eigendecomposition's does (the gaps vanish when the batch is smaller than the dimension). Each
ridge is raised to at least 1e-10 times its view's mean variance, the least that keeps the factor
finite in float64 (r1 = r2 = 0 included); at the default ridges this only acts on views whose
variance exceeds 1e7. rho_i^2 are the eigenvalues of the symmetric T^T T (eigh), floored at
``epsilon`` before the square root so its gradient stays finite. Under tf.distribute the
inputs are the global batch (:func:`global_batch`).
"""

from __future__ import annotations

from keras import ops

from mmkeras.distribute import cross_replica_gather


def global_batch(x):
    """The global batch of ``x``, with the static feature sizes all_gather loses."""
    gathered, _ = cross_replica_gather(x)
    return ops.reshape(gathered, (-1, *x.shape[1:]))


_DTYPE = "float64"  # float32 cannot whiten a covariance whose eigenvalues span r to n * var
_MIN_RELATIVE_RIDGE = 1e-10  # keeps a float64 Cholesky factor finite (condition < ~1e13)


def _ridged(s, r: float):
    """``s`` + max(r, 1e-10 * mean variance) I: the ridge r, raised only where float64 needs it."""
    eye = ops.eye(ops.shape(s)[0], dtype=_DTYPE)
    mean_variance = ops.mean(ops.diagonal(s))
    return s + ops.maximum(r, _MIN_RELATIVE_RIDGE * mean_variance + 1e-300) * eye


def _covariances(h1, h2, w, r1: float, r2: float):
    n = ops.sum(w)
    col = ops.expand_dims(w, 1)
    h1 = (h1 - ops.sum(h1 * col, axis=0, keepdims=True) / ops.maximum(n, 1.0)) * col
    h2 = (h2 - ops.sum(h2 * col, axis=0, keepdims=True) / ops.maximum(n, 1.0)) * col
    denom = ops.maximum(n - 1.0, 1.0)
    s11 = _ridged(ops.matmul(ops.transpose(h1), h1) / denom, r1)
    s22 = _ridged(ops.matmul(ops.transpose(h2), h2) / denom, r2)
    s12 = ops.matmul(ops.transpose(h1), h2) / denom
    return s11, s22, s12


def _correlations(h1, h2, r1: float, r2: float, mask, epsilon: float):
    """The canonical correlations in float64, descending, and the number of rows n they use."""
    h1, h2 = ops.cast(h1, _DTYPE), ops.cast(h2, _DTYPE)
    w = ops.ones((ops.shape(h1)[0],), _DTYPE) if mask is None else ops.cast(mask, _DTYPE)
    s11, s22, s12 = _covariances(h1, h2, w, r1, r2)
    l1 = ops.cholesky(s11)
    l2 = ops.cholesky(s22)
    a = ops.solve_triangular(l1, s12, lower=True)  # L1^{-1} S12
    t = ops.transpose(ops.solve_triangular(l2, ops.transpose(a), lower=True))  # L1^{-1} S12 L2^{-T}
    o1, o2 = h1.shape[1], h2.shape[1]
    m = ops.matmul(ops.transpose(t), t) if o2 <= o1 else ops.matmul(t, ops.transpose(t))
    eigenvalues, _ = ops.eigh(0.5 * (m + ops.transpose(m)))  # ascending
    return ops.sqrt(ops.maximum(ops.flip(eigenvalues, axis=0), epsilon)), ops.sum(w)


def canonical_correlations(h1, h2, r1: float = 1e-3, r2: float = 1e-3, mask=None, epsilon: float = 1e-6):
    """All min(o1, o2) canonical correlations of ``h1`` [n, o1] and ``h2`` [n, o2], descending,
    over the rows where ``mask`` [n] is 1 (every row by default); computed in float64, returned
    in float32. Those past the first n - 1 are 0 up to rounding and read sqrt(epsilon)."""
    rho, _ = _correlations(h1, h2, r1, r2, mask, epsilon)
    return ops.cast(rho, "float32")


def top_k_correlation(
    h1, h2, k: int | None = None, r1: float = 1e-3, r2: float = 1e-3, mask=None, epsilon: float = 1e-6
):
    """The sum of the ``k`` largest canonical correlations (all by default), with k capped at
    n - 1 for the n rows where ``mask`` is 1, beyond which they are exactly 0; float32."""
    rho, n = _correlations(h1, h2, r1, r2, mask, epsilon)
    size = int(rho.shape[0])
    k = min(size, k or size)
    keep = ops.arange(size, dtype=_DTYPE) < ops.minimum(float(k), n - 1.0)
    return ops.cast(ops.sum(ops.where(keep, rho, 0.0)), "float32")
