"""The batch-statistic terms of factorised multimodal representations, MFM-style (Tsai, Liang,
Zadeh, Morency and Salakhutdinov, ICLR 2019, "Learning Factorized Multimodal Representations"):
matching a factor to the prior N(0, I) by MMD, and a no-overlap penalty between two factors.

Both take a weight per row (1 present, 0 missing): a missing row's garbage never enters. Under
tf.distribute the objective passes the global batch (:func:`mmkeras.losses.cca.global_batch`).
"""

from __future__ import annotations

from keras import ops

from mmkeras.losses.kernel import kernel_matrix

VARIANCE_EPSILON = 1e-6


def mmd_to_standard_normal(z, weights=None, bandwidth: float = 1.0):
    """The squared MMD between the rows of ``z`` [n, d] whose weight is 1 and the prior N(0, I_d).

    MFM matches its factors to the prior by MMD, as the Wasserstein autoencoder does. With the
    Gaussian kernel k(u, v) = exp(-||u - v||^2 / (bandwidth * d)) and s = bandwidth * d / 2,
        MMD^2 = 1/(n(n-1)) sum_{i != j} k(z_i, z_j) - 2/n sum_i E_p k(z_i, p) + E_{p, p'} k(p, p')
        E_p k(z, p)       = (s / (s + 1))^{d/2} exp(-||z||^2 / (2 (s + 1)))
        E_{p,p'} k(p, p') = (s / (s + 2))^{d/2}
    the unbiased within-sample term and both prior expectations in closed form (no sampling
    noise). Scaling the squared distance by d keeps the kernel's width matched to the prior's
    spread whatever the factor's size. Zero when fewer than two rows are present.
    """
    z = ops.cast(z, "float32")
    d = int(z.shape[-1])
    w = ops.ones((ops.shape(z)[0],), "float32") if weights is None else ops.cast(weights, "float32")
    present = w > 0
    z = ops.where(ops.expand_dims(present, 1), z, 0.0)  # a missing row's garbage never enters
    w = ops.where(present, w, 0.0)
    s = bandwidth * d / 2.0
    kernel = kernel_matrix(z, "rbf", gamma=1.0 / (2.0 * s))
    pair_weights = ops.expand_dims(w, 1) * ops.expand_dims(w, 0)
    count = ops.sum(w)
    pairs = count * count - ops.sum(w * w)
    within = (ops.sum(kernel * pair_weights) - ops.sum(w * w)) / ops.maximum(pairs, 1.0)  # k(z_i, z_i) = 1
    to_prior = (s / (s + 1.0)) ** (d / 2.0) * ops.exp(-ops.sum(z * z, axis=1) / (2.0 * (s + 1.0)))
    cross = ops.sum(w * to_prior) / ops.maximum(count, 1.0)
    prior = (s / (s + 2.0)) ** (d / 2.0)
    return ops.where(pairs > 0, within - 2.0 * cross + prior, 0.0)


def cross_correlation_penalty(a, b, weights=None):
    """The mean squared entry of the Pearson correlation matrix between the columns of ``a``
    [n, d_a] and ``b`` [n, d_b] over the rows whose weight is 1:
        L = || Corr(a, b) ||_F^2 / (d_a d_b)
    each column centred and scaled to unit variance (+1e-6 in the variance). It is zero exactly
    when no column of ``b`` is linearly correlated with a column of ``a``: a no-overlap term
    between a shared and a specific factor (our choice; MFM's factorisation has none explicitly).
    """
    a, b = ops.cast(a, "float32"), ops.cast(b, "float32")
    w = ops.ones((ops.shape(a)[0],), "float32") if weights is None else ops.cast(weights, "float32")
    present = ops.expand_dims(w > 0, 1)
    col = ops.expand_dims(ops.where(w > 0, w, 0.0), 1)
    n = ops.maximum(ops.sum(col), 1.0)

    def standardise(x):
        x = ops.where(present, x, 0.0)
        centred = (x - ops.sum(x * col, axis=0, keepdims=True) / n) * col
        return centred / ops.sqrt(ops.sum(centred * centred, axis=0, keepdims=True) / n + VARIANCE_EPSILON)

    corr = ops.matmul(ops.transpose(standardise(a)), standardise(b)) / n
    return ops.mean(corr * corr)


__all__ = ["cross_correlation_penalty", "mmd_to_standard_normal"]
