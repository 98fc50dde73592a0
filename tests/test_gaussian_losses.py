"""The Gaussian-expert and reconstruction losses against numpy references written from their formulas."""

import keras
import numpy as np
import pytest

from mmkeras.losses.gaussian import (
    gaussian_kl,
    latent_size,
    log_normal,
    mixture_mean,
    negative_log_likelihood,
    product_of_experts,
    reparameterize,
    sample_mixture,
    split_experts,
)
from mmkeras.losses.reconstruction import masked_reconstruction, reconstruction_error, row_mse


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype="float64")


def experts(seed=0, n=6, latent=3):
    """Three experts [mu, logvar]; b is missing in rows 1 and 4, where it holds inf and -inf."""
    rng = np.random.default_rng(seed)
    features = {m: rng.normal(size=(n, 2 * latent)).astype("float32") for m in "abc"}
    features["b"][1] = np.inf
    features["b"][4] = -np.inf
    masks = {m: np.ones(n, "float32") for m in "abc"}
    masks["b"][[1, 4]] = 0.0
    return features, masks


def test_product_of_experts_is_the_precision_weighted_mean_with_the_prior():
    features, masks = experts()
    mu, logvar = (numpy(t) for t in product_of_experts(features, masks))
    # T = 1 + sum_m 1/var_m, mu = sum_m mu_m / var_m / T, var = 1/T, over the present experts
    for row in range(6):
        present = [m for m in "abc" if masks[m][row] > 0]
        mus = [features[m][row, :3].astype("float64") for m in present]
        variances = [np.exp(features[m][row, 3:].astype("float64")) for m in present]
        precision = 1.0 + sum(1.0 / v for v in variances)
        np.testing.assert_allclose(mu[row], sum(m / v for m, v in zip(mus, variances)) / precision, rtol=1e-5)
        np.testing.assert_allclose(logvar[row], -np.log(precision), rtol=1e-5)
    assert np.all(np.isfinite(mu)) and np.all(np.isfinite(logvar))  # b's inf never entered
    # no expert at all: the prior N(0, I)
    none = {m: np.zeros(6, "float32") for m in "abc"}
    mu, logvar = (numpy(t) for t in product_of_experts(features, none))
    np.testing.assert_array_equal(mu, 0.0)
    np.testing.assert_array_equal(logvar, 0.0)


def test_a_single_unit_expert_halves_the_variance():
    # N(m, 1) times N(0, 1) is N(m / 2, 1 / 2)
    feature = np.array([[2.0, -4.0, 0.0, 0.0]], "float32")
    mu, logvar = (numpy(t) for t in product_of_experts({"a": feature}, {"a": np.ones(1, "float32")}))
    np.testing.assert_allclose(mu, [[1.0, -2.0]], rtol=1e-6)
    np.testing.assert_allclose(np.exp(logvar), [[0.5, 0.5]], rtol=1e-6)


def test_mixture_mean_is_the_mean_of_the_present_means():
    features, masks = experts()
    got = numpy(mixture_mean(features, masks))
    for row in range(6):
        present = [features[m][row, :3].astype("float64") for m in "abc" if masks[m][row] > 0]
        np.testing.assert_allclose(got[row], np.mean(present, axis=0), rtol=1e-6)


def test_kl_against_the_closed_form():
    rng = np.random.default_rng(1)
    mu, logvar = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    want = 0.5 * (np.exp(logvar) + mu**2 - 1.0 - logvar).sum(-1)
    np.testing.assert_allclose(numpy(gaussian_kl(mu.astype("float32"), logvar.astype("float32"))), want, rtol=1e-5)
    np.testing.assert_allclose(numpy(gaussian_kl(np.zeros((2, 3), "float32"), np.zeros((2, 3), "float32"))), 0.0)


def test_log_normal_against_the_density():
    rng = np.random.default_rng(2)
    z, mu, logvar = (rng.normal(size=(3, 5, 2)) for _ in range(3))
    var = np.exp(logvar)
    want = np.log(np.prod(np.exp(-((z - mu) ** 2) / (2 * var)) / np.sqrt(2 * np.pi * var), axis=-1))
    got = log_normal(*(x.astype("float32") for x in (z, mu, logvar)))
    np.testing.assert_allclose(numpy(got), want, rtol=1e-5)


@pytest.mark.parametrize("kind", ["gaussian", "bernoulli", "categorical"])
def test_likelihoods_against_their_densities(kind):
    rng = np.random.default_rng(3)
    if kind == "gaussian":
        x, p = rng.normal(size=(4, 2, 3)), rng.normal(size=(4, 2, 3))
        density = np.exp(-((x - p) ** 2) / 2) / np.sqrt(2 * np.pi)
    elif kind == "bernoulli":
        x, p = (rng.random((4, 2, 3)) > 0.5) * 1.0, rng.uniform(0.05, 0.95, size=(4, 2, 3))
        density = np.where(x > 0, p, 1 - p)
    else:
        logits = rng.normal(size=(4, 2, 3))
        p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        x = np.eye(3)[rng.integers(0, 3, (4, 2))]
        density = (x * p).sum(-1, keepdims=True)
    want = -np.log(density).reshape(4, -1).sum(1)
    got = negative_log_likelihood(kind, p.astype("float32"), x.astype("float32"))
    np.testing.assert_allclose(numpy(got), want, rtol=1e-5)


def test_saturated_probabilities_stay_finite_and_unknown_kinds_are_refused():
    x = np.array([[1.0, 0.0]], "float32")
    wrong = np.array([[0.0, 1.0]], "float32")  # certain and wrong: clipped to [1e-6, 1 - 1e-6] in float32
    eps = np.float32(1e-6)
    want = -np.log(eps) - np.log(np.float32(1.0) - np.float32(1.0 - eps))
    assert numpy(negative_log_likelihood("bernoulli", wrong, x))[0] == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match=r"unknown likelihood 'poisson'; expected one of \['gaussian', 'bernoulli'"):
        negative_log_likelihood("poisson", x, x)


def test_reparameterize_and_mixture_draws_have_the_right_moments():
    n = 20000
    mu = np.tile(np.array([[1.0, -2.0]], "float32"), (n, 1))
    logvar = np.tile(np.log(np.array([[0.25, 4.0]], "float32")), (n, 1))
    z = numpy(reparameterize(mu, logvar, keras.random.SeedGenerator(0)))
    np.testing.assert_allclose(z.mean(0), [1.0, -2.0], atol=0.05)
    np.testing.assert_allclose(z.std(0), [0.5, 2.0], rtol=0.03)
    # the mixture of N(-3, 0.01) and N(3, 0.01), with the second absent in odd rows
    mus = [np.full((n, 1), -3.0, "float32"), np.full((n, 1), 3.0, "float32")]
    logvars = [np.full((n, 1), np.log(0.01), "float32")] * 2
    masks = [np.ones(n, "float32"), (np.arange(n) % 2 == 0).astype("float32")]
    z = numpy(sample_mixture(mus, logvars, masks, keras.random.SeedGenerator(1)))[:, 0]
    assert np.all(z[1::2] < 0)  # only the first expert where the second is absent
    assert abs(np.mean(z[::2] > 0) - 0.5) < 0.03  # each present expert chosen with probability 1/2
    np.testing.assert_allclose(np.abs(z).mean(), 3.0, atol=0.01)


def test_split_and_latent_size_check_the_feature_size():
    mu, logvar = split_experts(np.arange(8, dtype="float32").reshape(2, 4))
    np.testing.assert_array_equal(numpy(mu), [[0, 1], [4, 5]])
    np.testing.assert_array_equal(numpy(logvar), [[2, 3], [6, 7]])
    assert latent_size({"a": (None, 6), "b": (None, 6)}, "x") == 3
    with pytest.raises(ValueError, match=r"x reads each modality's feature as \[mu, logvar\].*got \{'a': 6, 'b': 5\}"):
        latent_size({"a": (None, 6), "b": (None, 5)}, "x")
    with pytest.raises(ValueError, match="a Gaussian expert needs an even feature size"):
        split_experts(np.zeros((2, 3), "float32"))


def test_reconstruction_errors_against_numpy():
    rng = np.random.default_rng(4)
    x, p = rng.normal(size=(5, 2, 3)).astype("float32"), rng.normal(size=(5, 2, 3)).astype("float32")
    mse = ((p.astype("float64") - x) ** 2).reshape(5, -1).mean(1)
    np.testing.assert_allclose(numpy(row_mse(p, x)), mse, rtol=1e-5)
    np.testing.assert_allclose(numpy(reconstruction_error("mse", p, x)), mse, rtol=1e-5)
    gaussian = (0.5 * (x.astype("float64") - p) ** 2 + 0.5 * np.log(2 * np.pi)).reshape(5, -1).sum(1)
    np.testing.assert_allclose(numpy(reconstruction_error("gaussian", p, x)), gaussian, rtol=1e-5)
    # the mean over the present rows; a missing row's inf never enters
    mask = np.array([1, 0, 1, 1, 0], "float32")
    x[1] = np.inf
    assert float(masked_reconstruction("mse", p, x, mask)) == pytest.approx(mse[mask > 0].mean(), rel=1e-5)
    with pytest.raises(ValueError, match=r"a decoder reconstructs shape \(6,\) but its target has shape \(2, 3\)"):
        reconstruction_error("mse", p.reshape(5, 6), x)
