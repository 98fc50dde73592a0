"""check_objective's 2-replica check, on a third-party-style objective that uses batch statistics.

The objective here is written as a plugin would be (it imports only `mmkeras.plugin`): VICReg
(Bardes, Ponce & LeCun, ICLR 2022) between every pair of modalities. Its variance and covariance
terms are statistics of the batch; gathered across replicas they equal one device's on the global
batch, and the check passes. The same terms over each replica's own rows (a natural first attempt)
give a different loss, and the check fails saying so.
"""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest
from keras import ops

from mmkeras.plugin import (
    NonNegativeFloat,
    Objective,
    PositiveFloat,
    Record,
    check_objective,
    cross_replica_gather,
    local_contribution,
    num_replicas,
    use_logical_devices,
)

use_logical_devices(2)  # before any TensorFlow op runs in this process (pytest imports modules first)


def batch_statistics_terms(z: object, mask: object, gamma: float, gather: bool) -> tuple[object, object]:
    """VICReg's variance and covariance terms of ``z`` [B, D] over the rows where ``mask`` > 0:
    v = mean_d relu(gamma - sqrt(Var_d + 1e-4)), c = sum_{i != j} Cov_ij^2 / D, with the unbiased
    estimates over the global batch (``gather``) or over this replica's rows only."""
    if gather:
        z, _ = cross_replica_gather(z)
        mask, _ = cross_replica_gather(mask)
    w = ops.expand_dims(mask, 1)
    n = ops.sum(mask)
    mean = ops.sum(w * z, axis=0) / ops.maximum(n, 1.0)
    centred = (z - mean) * w
    cov = ops.matmul(ops.transpose(centred), centred) / ops.maximum(n - 1.0, 1.0)
    dim = ops.shape(z)[1]
    variance = ops.mean(ops.relu(gamma - ops.sqrt(ops.diagonal(cov) + 1e-4)))
    off_diagonal = cov * (1.0 - ops.eye(dim))
    covariance = ops.sum(ops.square(off_diagonal)) / ops.cast(dim, "float32")
    return variance, covariance


@keras.saving.register_keras_serializable(package="test_vicreg")
class VICReg(Objective):
    """loss = lam * invariance + mu * variance + nu * covariance, averaged over modality pairs
    (invariance) and modalities (variance, covariance); batch statistics from the global batch.

    lam, mu, nu: the weights of the three terms (25, 25, 1 in the paper). gamma: the target std.
    """

    #: False is the deliberate mistake of :class:`LocalVICReg`
    global_statistics = True

    def __init__(
        self,
        lam: NonNegativeFloat = 25.0,
        mu: NonNegativeFloat = 25.0,
        nu: NonNegativeFloat = 1.0,
        gamma: PositiveFloat = 1.0,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        self.lam, self.mu, self.nu, self.gamma = lam, mu, nu, gamma

    def call(self, outputs: Record, labels: object = None) -> dict[str, object]:
        names = sorted(outputs.latents)
        z = {m: ops.cast(outputs.latents[m], "float32") for m in names}
        mask = {m: ops.cast(outputs.masks[m], "float32") for m in names}
        pairs = list(itertools.combinations(names, 2))
        invariance = sum(
            local_contribution(ops.mean(ops.square(z[a] - z[b]), axis=1), mask[a] * mask[b]) for a, b in pairs
        ) / len(pairs)
        terms = [batch_statistics_terms(z[m], mask[m], self.gamma, self.global_statistics) for m in names]
        # a global statistic is the same on every replica: each contributes its 1/N share of it
        variance = sum(v for v, _ in terms) / len(names) / num_replicas()
        covariance = sum(c for _, c in terms) / len(names) / num_replicas()
        loss = self.lam * invariance + self.mu * variance + self.nu * covariance
        return {"loss": loss, "invariance": invariance, "variance": variance, "covariance": covariance}


@keras.saving.register_keras_serializable(package="test_vicreg")
class LocalVICReg(VICReg):
    """VICReg with each replica's own batch statistics: right on one device, wrong on two."""

    global_statistics = False


def reference(z_a: np.ndarray, z_b: np.ndarray, gamma: float = 1.0) -> tuple[float, float, float]:
    """invariance, variance, covariance of two modalities, every row present, in numpy."""
    invariance = np.mean(np.mean((z_a - z_b) ** 2, axis=1))

    def terms(z: np.ndarray) -> tuple[float, float]:
        cov = np.cov(z, rowvar=False)
        variance = np.mean(np.maximum(0.0, gamma - np.sqrt(np.diag(cov) + 1e-4)))
        return variance, (np.sum(cov**2) - np.sum(np.diag(cov) ** 2)) / z.shape[1]

    (va, ca), (vb, cb) = terms(z_a), terms(z_b)
    return invariance, (va + vb) / 2, (ca + cb) / 2


def test_vicreg_matches_a_numpy_reference():
    rng = np.random.default_rng(0)
    z_a, z_b = rng.normal(size=(10, 4)).astype("float32"), rng.normal(size=(10, 4)).astype("float32")
    ones = np.ones(10, "float32")
    record = Record({}, {"a": z_a, "b": z_b}, None, None, {"a": ones, "b": ones})
    out = VICReg(lam=2.0, mu=3.0, nu=0.5)(record)
    invariance, variance, covariance = reference(z_a, z_b)
    np.testing.assert_allclose(float(out["invariance"]), invariance, rtol=1e-5)
    np.testing.assert_allclose(float(out["variance"]), variance, rtol=1e-5)
    np.testing.assert_allclose(float(out["covariance"]), covariance, rtol=1e-5)
    np.testing.assert_allclose(float(out["loss"]), 2 * invariance + 3 * variance + 0.5 * covariance, rtol=1e-5)


def test_an_objective_with_global_batch_statistics_passes_on_two_replicas():
    check_objective(VICReg, {"lam": 1.0, "mu": 1.0, "nu": 1.0}, replicas=True)


def test_local_batch_statistics_fail_on_two_replicas_saying_what_differs():
    check_objective(LocalVICReg, {"lam": 1.0, "mu": 1.0, "nu": 1.0}, replicas=False)  # fine on one device
    with pytest.raises(AssertionError) as err:
        check_objective(LocalVICReg, {"lam": 1.0, "mu": 1.0, "nu": 1.0}, replicas=True)
    msg = str(err.value)
    assert msg.startswith("objective LocalVICReg: 2 replicas: compute batch statistics"), msg
    assert "summed over 2 replicas of 4 rows is" in msg and "one device with all 8 rows gives" in msg, msg
