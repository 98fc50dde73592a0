"""The generative baselines: MMVAE, Nexus, MUSE (and MVAE's generation and annealing counter)."""

from itertools import combinations
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import mmkeras
from mmkeras.errors import RecipeError
from mmkeras.fusions.moe import MixtureOfExperts
from mmkeras.fusions.muse import MuseFusion
from mmkeras.fusions.nexus import NexusFusion
from mmkeras.fusions.poe import ProductOfExperts
from mmkeras.heads.gaussian_mean import GaussianMean
from mmkeras.losses.gaussian import mixture_mean
from mmkeras.objectives.mmvae import MMVAE
from mmkeras.objectives.muse import MUSE
from mmkeras.objectives.mvae import MVAE
from mmkeras.objectives.nexus import Nexus
from mmkeras.record import Record
from mmkeras.registry import registry
from mmkeras.testing import check_fusion, check_head, check_objective, use_logical_devices

use_logical_devices(2)  # check_objective's 2-replica check; before any TensorFlow op runs

ROOT = Path(__file__).resolve().parent.parent
LATENT = 2
DECODERS = {
    "a": {"name": "dense_decoder", "params": {"hidden_units": []}},
    "b": {"name": "dense_decoder", "params": {"hidden_units": [], "output_activation": "sigmoid"}},
    "c": {"name": "dense_decoder", "params": {"hidden_units": [], "output_activation": "softmax"}},
}
LIKELIHOODS = {"a": "gaussian", "b": "bernoulli", "c": "categorical"}
LAMBDAS = {"a": 2.0, "c": 5.0}
SIZES = {"a": 3, "b": 4, "c": 3}


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype="float64")


def as_record(fields):
    """The forward-pass record of ``fields``; the fields a test leaves out are empty."""
    return Record(**{"features": {}, "latents": {}, "joint_feature": None, "joint": None, "masks": {}, **fields})


def tiny_record(seed=0, n=5):
    """Latent 2 (features of 4); a: 3-vector, b: 4 binary pixels missing in rows 1 and 3 (garbage
    features and inputs there), c: one-hot of 3 classes."""
    rng = np.random.default_rng(seed)
    features = {m: rng.normal(size=(n, 2 * LATENT)).astype("float32") for m in "abc"}
    features["b"][[1, 3]] = 1e4
    features["b"][3, LATENT:] = -1e4
    inputs = {
        "a": rng.normal(size=(n, 3)).astype("float32"),
        "b": (rng.random((n, 4)) > 0.5).astype("float32"),
        "c": np.eye(3, dtype="float32")[rng.integers(0, 3, n)],
    }
    inputs["b"][[1, 3]] = 1e3
    masks = {"a": np.ones(n, "float32"), "b": np.array([1, 0, 1, 0, 1], "float32")[:n], "c": np.ones(n, "float32")}
    return as_record({"features": features, "inputs": inputs, "masks": masks})


def dense_layers(mlp):
    """The dense layers of an :class:`~mmkeras.layers.mlp.MLP`, in order."""
    return [*mlp.hidden, mlp.out]


def set_dense(layer, rng, fan_in, fan_out):
    layer.set_weights(
        [rng.normal(size=(fan_in, fan_out)).astype("float32"), rng.normal(size=fan_out).astype("float32")]
    )


def fix_decoders(obj, seed=2):
    """Random weights for the one-layer decoders (and top decoders) of ``obj``."""
    rng = np.random.default_rng(seed)
    for t in "abc":
        set_dense(obj.decoder_layers[t], rng, LATENT, SIZES[t])
    for decoder in getattr(obj, "top_decoders", {}).values():
        set_dense(decoder, rng, obj._shapes["top_dim"], LATENT)


def dense(obj_layer, z):
    w, b = (numpy(v) for v in obj_layer.weights)
    return z @ w + b


def np_nll(t, logits, x):
    if t == "a":
        return (0.5 * (x - logits) ** 2 + 0.5 * np.log(2 * np.pi)).sum(-1)
    if t == "b":
        p = 1 / (1 + np.exp(-logits))
        return -(x * np.log(p) + (1 - x) * np.log(1 - p)).sum(-1)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return -(x * np.log(p)).sum(-1)


def np_log_normal(z, mu, logvar):
    return -0.5 * (np.log(2 * np.pi) + logvar + (z - mu) ** 2 * np.exp(-logvar)).sum(-1)


def np_kl(mu, logvar):
    return 0.5 * (np.exp(logvar) + mu**2 - 1 - logvar).sum(-1)


def np_logsumexp(x, axis):
    top = x.max(axis=axis, keepdims=True)
    return (top + np.log(np.exp(x - top).sum(axis=axis, keepdims=True))).squeeze(axis)


def np_poe(experts, masks):
    """(mu, logvar) of the prior N(0, I) times the experts [mu, logvar] whose mask is 1."""
    n, size = next(iter(experts.values())).shape
    precision, weighted = np.ones((n, size // 2)), np.zeros((n, size // 2))
    for m, e in experts.items():
        keep = masks[m][:, None] > 0
        mu, logvar = e[:, : size // 2].astype("float64"), np.where(keep, e[:, size // 2 :], 0.0)
        precision += np.where(keep, np.exp(-logvar), 0.0)
        weighted += np.where(keep, mu * np.exp(-logvar), 0.0)
    return weighted / precision, -np.log(precision)


def clean_experts(rec):
    """{m: (mu, logvar)} in float64 with a missing row's expert replaced by N(0, I)."""
    out = {}
    for m, f in rec.features.items():
        keep = rec.masks[m][:, None] > 0
        out[m] = (np.where(keep, f[:, :LATENT], 0.0).astype("float64"), np.where(keep, f[:, LATENT:], 0.0))
    return out


# -- the mixture and the product of experts ------------------------------------------------------
def test_mixture_mean_is_the_mean_of_the_present_experts():
    rec = tiny_record()
    got = numpy(mixture_mean(rec.features, rec.masks))
    f = rec.features
    expected = np.stack([f[m][:, :LATENT] for m in "abc"]).mean(0)
    expected[[1, 3]] = (f["a"][[1, 3], :LATENT] + f["c"][[1, 3], :LATENT]) / 2  # b missing there, garbage ignored
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    np.testing.assert_allclose(numpy(MixtureOfExperts()(rec.features, rec.masks)), expected, rtol=1e-6)
    none = {m: np.zeros(5, "float32") for m in "abc"}
    np.testing.assert_array_equal(numpy(mixture_mean(rec.features, none)), np.zeros((5, LATENT)))


def test_mixture_density_and_moments_against_closed_form():
    """log q of the uniform mixture (the objective's log_weights at the prior-free part) against
    a numpy mixture, and its mean against a Monte Carlo estimate from the mixture."""
    rec = tiny_record()
    obj = MMVAE(DECODERS, likelihoods=LIKELIHOODS, sample=False)
    obj(rec)
    z = np.random.default_rng(3).normal(size=(1, 2, 5, LATENT)).astype("float32")
    strata, masks, mus, logvars = obj.experts(rec)
    log_w, _ = obj.log_weights(z, strata, masks, mus, logvars, {})  # no targets: log p(z) - log q(z)
    experts = clean_experts(rec)
    present = [rec.masks[m] > 0 for m in "abc"]
    density = sum(np.where(p, np.exp(np_log_normal(z, *experts[m])), 0.0) for p, m in zip(present, "abc"))
    log_q = np.log(density / sum(p.astype(float) for p in present))
    np.testing.assert_allclose(numpy(log_w), np_log_normal(z, 0.0, 0.0) - log_q, rtol=1e-5)
    # the mixture mean (what encode returns) is the mean of a draw from the mixture
    rng = np.random.default_rng(4)
    pick = rng.integers(2, size=20000)[:, None]  # row 1: b missing, a and c equally likely
    mu = np.where(pick, experts["a"][0][1], experts["c"][0][1])
    logvar = np.where(pick, experts["a"][1][1], experts["c"][1][1])
    draws = mu + np.exp(0.5 * logvar) * rng.normal(size=mu.shape)
    mean = numpy(mixture_mean(rec.features, rec.masks))[1]
    spread = np.std(draws, axis=0) / np.sqrt(len(draws))
    assert np.all(np.abs(np.mean(draws, axis=0) - mean) < 5 * spread)


def test_muse_fusion_is_the_product_of_its_experts_and_the_prior():
    rec = tiny_record()
    fusion = MuseFusion(latent_dim=3, hidden_units=[5])
    out = numpy(fusion(rec.features, rec.masks))
    assert out.shape == (5, 2 * 3 * 4)
    experts = {}
    for i, m in enumerate("abc"):
        h = rec.features[m][:, :LATENT].astype("float64")
        (w1, b1), (w2, b2) = ((numpy(v) for v in d.weights) for d in dense_layers(fusion.experts[m]))
        hidden = h @ w1 + b1
        e = (hidden / (1 + np.exp(-hidden))) @ w2 + b2  # swish
        keep = rec.masks[m][:, None] > 0
        np.testing.assert_allclose(out[:, 6 * (i + 1) : 6 * (i + 2)], np.where(keep, e, 0.0), rtol=1e-4, atol=1e-6)
        experts[m] = e
    mu, logvar = np_poe(experts, rec.masks)
    np.testing.assert_allclose(out[:, :3], mu, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out[:, 3:6], logvar, rtol=1e-4, atol=1e-6)
    # one expert and the prior, row 0, by hand: precision 1 + 1/var
    e = experts["a"][0]
    single = numpy(fusion({"a": rec.features["a"]}, {"a": rec.masks["a"]}))[0]
    precision = 1 + np.exp(-e[3:])
    np.testing.assert_allclose(single[:3], e[:3] * np.exp(-e[3:]) / precision, rtol=1e-4)


# -- MMVAE -----------------------------------------------------------------------------------------
def np_mmvae(rec, obj, eps):
    """(loss, {t: nll metric}) of the stratified IWAE bound in numpy."""
    experts = clean_experts(rec)
    masks = rec.masks
    k = eps.shape[1]
    count = sum((masks[m] > 0).astype(float) for m in "abc")
    bounds, nll_rows = [], {t: 0.0 for t in "abc"}
    for s, m in enumerate("abc"):
        mu, logvar = experts[m]
        z = mu + np.exp(0.5 * logvar) * eps[s]  # [K, B, L]
        comps = [np.where(masks[j] > 0, np_log_normal(z, *experts[j]), -np.inf) for j in "abc"]
        log_q = np_logsumexp(np.stack(comps), 0) - np.log(count)
        log_w = np_log_normal(z, 0.0, 0.0) - log_q
        for t in "abc":
            nll = np.where(masks[t] > 0, np_nll(t, dense(obj.decoder_layers[t], z), rec.inputs[t]), 0.0)
            log_w = log_w - LAMBDAS.get(t, 1.0) * nll
            nll_rows[t] = nll_rows[t] + np.where(masks[m] > 0, nll.mean(0), 0.0)
        bounds.append(np.where(masks[m] > 0, np_logsumexp(log_w, 0) - np.log(k), 0.0))
    rows = -np.sum(bounds, axis=0) / count
    return rows.mean(), {t: (v / count).mean() for t, v in nll_rows.items()}


def mmvae(num_samples, sample=False):
    obj = MMVAE(DECODERS, likelihoods=LIKELIHOODS, lambdas=LAMBDAS, num_samples=num_samples, sample=sample)
    obj(tiny_record())
    fix_decoders(obj)
    return obj


@pytest.mark.parametrize("num_samples", [1, 3])
def test_mmvae_bound_matches_numpy(num_samples):
    obj = mmvae(num_samples)
    rec = tiny_record()
    eps = np.random.default_rng(5).normal(size=(3, num_samples, 5, LATENT)).astype("float32")
    loss, nll = obj.negative_bound(rec, eps)
    expected, expected_nll = np_mmvae(rec, obj, eps)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    for t in "abc":
        assert float(nll[t]) == pytest.approx(expected_nll[t], rel=1e-5)
    # sample=False is the bound at eps = 0; call returns the loss and each nll metric
    out = obj(rec)
    zero, zero_nll = np_mmvae(rec, obj, np.zeros_like(eps))
    assert float(out["loss"]) == pytest.approx(zero, rel=1e-5)
    assert sorted(out) == ["loss", "nll_a", "nll_b", "nll_c"]
    assert float(out["nll_b"]) == pytest.approx(zero_nll["b"], rel=1e-5)


def test_mmvae_gradients_are_dreg():
    """Decoders get the IWAE gradient sum_k w~ grad log w; the encoders' features get
    sum_k w~^2 d log w / dz dz/dphi, with the posterior parameters constant inside log q."""
    obj = mmvae(3)
    rec = tiny_record()
    eps = tf.constant(np.random.default_rng(6).normal(size=(3, 3, 5, LATENT)).astype("float32"))
    feats = {m: tf.Variable(f) for m, f in rec.features.items()}
    decoder_vars = [v for t in "abc" for v in obj.decoder_layers[t].trainable_variables]

    def record():
        return rec._replace(features={m: v + 0.0 for m, v in feats.items()})

    def log_w_of(z_fn):
        strata, masks, mus, logvars = obj.experts(record())
        mu, logvar = tf.stack([mus[m] for m in strata]), tf.stack([logvars[m] for m in strata])
        z = z_fn(mu[:, None] + tf.exp(0.5 * logvar)[:, None] * eps)
        present = tf.stack([masks[m] for m in strata]) > 0
        count = tf.reduce_sum(tf.cast(present, "float32"), 0)
        return obj.log_weights(z, strata, masks, mus, logvars, rec.inputs)[0], present, count

    def rows(per_stratum, present, count):
        return -tf.reduce_mean(tf.reduce_sum(tf.where(present, per_stratum, 0.0), 0) / count)

    with tf.GradientTape(persistent=True) as tape:
        loss, _ = obj.negative_bound(record(), eps)
    got_features = tape.gradient(loss, list(feats.values()))
    got_decoders = tape.gradient(loss, decoder_vars)
    with tf.GradientTape() as tape:  # the decoders' reference: IWAE with z constant
        log_w, present, count = log_w_of(tf.stop_gradient)
        iwae = rows(tf.reduce_logsumexp(log_w, 1), present, count)
    want_decoders = tape.gradient(iwae, decoder_vars)
    with tf.GradientTape(persistent=True) as tape:  # the encoders' reference: weights w~^2 through z
        log_w, present, count = log_w_of(lambda z: z)
        w = tf.stop_gradient(tf.nn.softmax(log_w, axis=1))
        dreg = rows(tf.reduce_sum(w**2 * log_w, 1), present, count)
        plain = rows(tf.reduce_sum(w * log_w, 1), present, count)  # what DReG is not
    want_features = tape.gradient(dreg, list(feats.values()))
    plain_features = tape.gradient(plain, list(feats.values()))
    for g, w in zip(got_decoders, want_decoders):
        np.testing.assert_allclose(numpy(g), numpy(w), rtol=1e-4, atol=1e-6)
    for g, w, p in zip(got_features, want_features, plain_features):
        np.testing.assert_allclose(numpy(g), numpy(w), rtol=1e-4, atol=1e-6)
        assert not np.allclose(numpy(g), numpy(p), rtol=1e-3)
    assert not np.any(numpy(got_features[1])[[1, 3]])  # b's garbage rows get no gradient


def test_mmvae_config_and_errors():
    obj = MMVAE(DECODERS, likelihoods=LIKELIHOODS, lambdas={"b": 3.0}, num_samples=4, seed=2)
    assert MMVAE.from_config(obj.get_config()).get_config() == obj.get_config()
    with pytest.raises(ValueError, match="MMVAE: num_samples: expected a number > 0, got 0"):
        MMVAE(DECODERS, num_samples=0)
    with pytest.raises(ValueError, match=r"likelihoods.a: expected one of"):
        MMVAE(DECODERS, likelihoods={"a": "poisson"})


# -- Nexus and MUSE ----------------------------------------------------------------------------
def two_level_record(top_dim, joint_extra=None, seed=1):
    rec = tiny_record()
    rng = np.random.default_rng(seed)
    joint = rng.normal(size=(5, 2 * top_dim)).astype("float32")
    if joint_extra is not None:
        joint = joint_extra
    return rec._replace(joint_feature=joint)


def np_bottom(rec, obj, beta):
    experts = clean_experts(rec)
    per_row, kl = 0.0, 0.0
    nll = {}
    for m in "abc":
        keep = rec.masks[m] > 0
        nll[m] = np.where(keep, np_nll(m, dense(obj.decoder_layers[m], experts[m][0]), rec.inputs[m]), 0.0)
        kl_m = np.where(keep, np_kl(*experts[m]), 0.0)
        kl = kl + kl_m
        per_row = per_row + LAMBDAS.get(m, 1.0) * nll[m] + beta * kl_m
    return per_row, kl, nll


def np_top_reconstruction(rec, obj, z_top):
    experts = clean_experts(rec)
    total = 0.0
    for m in "abc":
        mu_hat = dense(obj.top_decoders[m], z_top)
        row = (0.5 * (experts[m][0] - mu_hat) ** 2 + 0.5 * np.log(2 * np.pi)).sum(-1)
        total = total + np.where(rec.masks[m] > 0, row, 0.0)
    return total


def test_nexus_loss_matches_numpy():
    params = {"beta": 0.5, "gamma": 2.0, "top_beta": 0.25}
    obj = Nexus(DECODERS, likelihoods=LIKELIHOODS, lambdas=LAMBDAS, top_hidden_units=[], sample=False, **params)
    rec = two_level_record(3)
    obj(rec)
    fix_decoders(obj)
    out = obj(rec)
    per_row, kl, nll = np_bottom(rec, obj, 0.5)
    mu_n, logvar_n = rec.joint_feature[:, :3].astype("float64"), rec.joint_feature[:, 3:]
    top_nll = np_top_reconstruction(rec, obj, mu_n)
    expected = (per_row + 2.0 * top_nll + 0.25 * np_kl(mu_n, logvar_n)).mean()
    assert float(out["loss"]) == pytest.approx(expected, rel=1e-5)
    assert float(out["kl"]) == pytest.approx(kl.mean(), rel=1e-5)
    assert float(out["top_kl"]) == pytest.approx(np_kl(mu_n, logvar_n).mean(), rel=1e-5)
    assert float(out["top_nll"]) == pytest.approx(top_nll.mean(), rel=1e-5)
    for t in "abc":
        assert float(out[f"nll_{t}"]) == pytest.approx(nll[t].mean(), rel=1e-5)
    assert float(out["loss"]) < 1e3  # b's garbage never entered


def test_muse_loss_matches_numpy():
    rng = np.random.default_rng(7)
    rec = tiny_record()
    experts = {m: rng.normal(size=(5, 6)).astype("float32") for m in "abc"}
    experts["b"][[1, 3]] = 0.0  # as the fusion leaves a missing expert
    mu, logvar = np_poe(experts, rec.masks)
    rec = rec._replace(
        joint_feature=np.concatenate([mu, logvar] + [experts[m] for m in "abc"], axis=1).astype("float32")
    )
    obj = MUSE(
        DECODERS, likelihoods=LIKELIHOODS, lambdas=LAMBDAS, top_hidden_units=[], sample=False, gamma=3.0, top_beta=0.5
    )
    obj(rec)
    fix_decoders(obj)
    out = obj(rec)
    assert obj._shapes["top_dim"] == 3
    per_row, _, _ = np_bottom(rec, obj, 1.0)
    complete = 3.0 * np_top_reconstruction(rec, obj, mu) + 0.5 * np_kl(mu, logvar)
    expected = per_row.mean() + complete.mean()
    for m in "abc":
        keep = rec.masks[m] > 0
        s_mu, s_logvar = np_poe({m: experts[m]}, rec.masks)
        single = 3.0 * np_top_reconstruction(rec, obj, s_mu) + 0.5 * np_kl(s_mu, s_logvar)
        expected += single[keep].mean()
    assert float(out["loss"]) == pytest.approx(expected, rel=1e-5)
    assert float(out["top_kl"]) == pytest.approx(np_kl(mu, logvar).mean(), rel=1e-5)
    with pytest.raises(ValueError, match="not a multiple of 8: use the muse fusion"):
        MUSE(DECODERS)(rec._replace(joint_feature=rec.joint_feature[:, :6]))


def message_forward(fusion, features):
    """{m: message [B, message_dim]} and the nexus encoder g as numpy functions of the fusion's weights."""

    def run(stack, h):
        for i, d in enumerate(stack):
            w, b = (numpy(v) for v in d.weights)
            h = h @ w + b
            if i < len(stack) - 1:
                h = h / (1 + np.exp(-h))  # swish
        return h

    messages = {m: run(dense_layers(fusion.messages[m]), features[m][:, :LATENT].astype("float64")) for m in "abc"}
    return messages, lambda h: run(dense_layers(fusion.encoder), h)


def test_nexus_fusion_forced_dropout_only_in_training():
    rng = np.random.default_rng(8)
    n = 60
    features = {m: rng.normal(size=(n, 2 * LATENT)).astype("float32") for m in "abc"}
    masks = {m: (rng.random(n) > 0.3).astype("float32") for m in "abc"}
    masks["a"][~((masks["b"] > 0) | (masks["c"] > 0))] = 1.0  # every row has a modality
    fusion = NexusFusion(latent_dim=3, message_dim=4, message_units=[5], hidden_units=[6], dropout_rate=0.5, seed=0)
    inference = numpy(fusion(features, masks))
    messages, encode = message_forward(fusion, features)

    def aggregate(subset, row):
        return encode(np.mean([messages[m][row] for m in subset], axis=0)[None])[0]

    present = [[m for m in "abc" if masks[m][i] > 0] for i in range(n)]
    for i in range(n):
        np.testing.assert_allclose(inference[i], aggregate(present[i], i), rtol=1e-4, atol=1e-5)
    trained = numpy(fusion(features, masks, training=True))
    dropped = 0
    for i in range(n):  # each row: the aggregate of a non-empty subset of its present modalities
        subsets = [s for r in range(1, len(present[i]) + 1) for s in combinations(present[i], r)]
        matches = [s for s in subsets if np.allclose(trained[i], aggregate(s, i), rtol=1e-4, atol=1e-5)]
        assert matches, f"row {i}: not the aggregate of any subset of {present[i]}"
        dropped += len(matches[0]) < len(present[i])
    assert dropped > n // 5


def test_two_level_errors():
    four = as_record({"masks": {m: np.ones(2, "float32") for m in "abcd"}})
    with pytest.raises(RecipeError, match=r"nexus needs a decoder for every modality \(its VAE\); none for \['d'\]"):
        Nexus(DECODERS)(four)
    with pytest.raises(ValueError, match=r"NexusFusion: dropout_rate: expected a number < 1, got 1.0"):
        NexusFusion(dropout_rate=1.0)
    with pytest.raises(ValueError, match="gaussian_mean: the feature has 6 values, fewer than"):
        GaussianMean(4)(np.zeros((2, 6), "float32"))
    obj = MUSE(DECODERS, beta=0.5, gamma=2.0, top_beta=0.1, top_hidden_units=[7], seed=1)
    assert MUSE.from_config(obj.get_config()).get_config() == obj.get_config()


# -- conformance -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, params",
    [
        ("moe", {}),
        ("poe", {}),
        ("nexus", {"latent_dim": 3, "message_dim": 6, "hidden_units": [8], "dropout_rate": 0.3}),
        ("muse", {"latent_dim": 3, "hidden_units": [8]}),
    ],
)
def test_fusions_pass_the_conformance_kit(name, params):
    check_fusion(registry.get("fusions", name), params, feature_shapes={"a": (8,), "b": (8,), "c": (8,)})


def test_gaussian_mean_head_passes_the_conformance_kit():
    check_head(registry.get("heads", "gaussian_mean"), {"output_dim": 4})


@pytest.mark.parametrize("name, extra", [("mmvae", {"num_samples": 2}), ("nexus", {"top_hidden_units": [6]})])
def test_objectives_pass_the_conformance_kit(name, extra):
    decoders = {m: {"name": "dense_decoder", "params": {"hidden_units": [6]}} for m in "abc"}
    params = {"decoders": decoders, "sample": False, **extra}
    check_objective(registry.get("objectives", name), params, modalities=("a", "b", "c"))


# -- models: generate, masks, save and reload ------------------------------------------------------
SMALL_DECODERS = {
    "a": {"name": "dense_decoder", "params": {"hidden_units": [16]}},
    "b": {"name": "conv2d_decoder", "params": {"filters": [8, 4], "output_activation": "sigmoid"}},
}


def small_model(kind, objective=None):
    from mmkeras.encoders.conv2d import Conv2DEncoder
    from mmkeras.encoders.mlp import MLPEncoder
    from mmkeras.model import MultimodalModel

    keras.utils.set_random_seed(0)
    common = {"decoders": SMALL_DECODERS, "likelihoods": {"b": "bernoulli"}, "seed": 0, "name": "objective"}
    head, encode_output = None, "feature"
    if kind == "mvae":
        fusion, default = ProductOfExperts(name="fusion"), MVAE(**common)
    elif kind == "mmvae":
        fusion, default = MixtureOfExperts(name="fusion"), MMVAE(**common, num_samples=2)
    elif kind == "nexus":
        fusion = NexusFusion(message_dim=8, hidden_units=[16], dropout_rate=0.3, seed=0, name="fusion")
        default, head, encode_output = Nexus(**common, top_hidden_units=[16]), GaussianMean(4, name="head"), "latent"
    else:
        fusion = MuseFusion(hidden_units=[16], name="fusion")
        default, head, encode_output = MUSE(**common, top_hidden_units=[16]), GaussianMean(4, name="head"), "latent"
    model = MultimodalModel(
        {
            "a": MLPEncoder(8, hidden_units=[16], name="a_encoder"),
            "b": Conv2DEncoder(8, filters=[4], kernel_size=3, name="b_encoder"),
        },
        fusion,
        head,
        objective or default,
        input_shapes={"a": [16], "b": [8, 8, 1]},
        encode_output=encode_output,
    )
    model.build()
    return model


@pytest.fixture(scope="module")
def data():
    split = mmkeras.load_dataset("arrays", synthetic=True, num_samples=320).load("train")
    inputs = {m: split.inputs[m] for m in "ab"}
    inputs["b"] = (inputs["b"] - inputs["b"].min()) / (inputs["b"].max() - inputs["b"].min())  # Bernoulli targets
    return inputs


def fixed_loss(model, inputs):
    """The objective with its means instead of draws (nothing random)."""
    model.objective.sample = False
    try:
        return {k: float(v) for k, v in model.objective(model(inputs)).items()}
    finally:
        model.objective.sample = True


@pytest.mark.parametrize("kind", ["mvae", "mmvae", "nexus", "muse"])
def test_training_generation_and_reload(kind, data, tmp_path):
    model = small_model(kind)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=False)
    before = fixed_loss(model, data)["loss"]
    model.fit(data, np.zeros(len(data["a"])), batch_size=32, epochs=3, verbose=0)
    after = fixed_loss(model, data)["loss"]
    assert after < 0.95 * before, (before, after)

    # generate: shapes, and the decoding it promises
    given = {"a": data["a"][:6]}
    image = model.generate("b", given)
    assert image.shape == (6, 8, 8, 1) and np.all((image >= 0) & (image <= 1))
    assert model.generate("a", {"b": data["b"][:600]}, batch_size=100).shape == (240, 16)
    record = model(given)
    objective = model.objective
    if kind in ("mvae", "mmvae"):  # one modality: the PoE of it and the prior, or its own mean
        z = model.encode(given)
        np.testing.assert_allclose(image, numpy(objective.decoder_layers["b"](z)), rtol=1e-5, atol=1e-6)
    else:  # through the top latent: x_b = decoder_b(D_b(mu_top))
        z = numpy(record.joint)
        np.testing.assert_allclose(z, model.encode(given), rtol=1e-6)
        want = objective.decoder_layers["b"](objective.top_decoders["b"](z))
        np.testing.assert_allclose(image, numpy(want), rtol=1e-5, atol=1e-6)
    sampled = model.generate("b", given, sample=True)
    assert sampled.shape == image.shape and not np.allclose(sampled, image)

    # a masked modality's inputs do not move the loss
    masks = {"a": np.ones(64, "float32"), "b": (np.arange(64) % 2).astype("float32")}
    batch = {m: data[m][:64] for m in "ab"}
    garbage = {**batch, "b": np.where(masks["b"][:, None, None, None] > 0, batch["b"], 1e3).astype("float32")}
    np.testing.assert_allclose(
        list(fixed_loss(model, {**batch, "masks": masks}).values()),
        list(fixed_loss(model, {**garbage, "masks": masks}).values()),
        rtol=1e-6,
    )

    path = tmp_path / f"{kind}.keras"
    model.save(path)
    loaded = mmkeras.load_model(str(path))
    for subset in (["a", "b"], ["a"], ["b"]):
        np.testing.assert_array_equal(loaded.encode(data, subset), model.encode(data, subset))
    np.testing.assert_array_equal(loaded.generate("b", given), image)


def test_forced_dropout_reaches_the_fusion_in_training_only(data):
    model = small_model("nexus")
    x = {m: data[m][:32] for m in "ab"}
    inference = numpy(model(x).joint_feature)
    np.testing.assert_array_equal(numpy(model(x, training=False).joint_feature), inference)
    trained = numpy(model(x, training=True).joint_feature)
    assert 3 <= np.sum(np.abs(trained - inference).max(1) > 1e-6) < 32


def test_generate_errors(data):
    model = small_model("mmvae")
    with pytest.raises(ValueError, match=r"unknown target modality 'c'; this model has \['a', 'b'\]"):
        model.generate("c", {"a": data["a"][:2]})
    with pytest.raises(ValueError, match=r"given must hold some of the modalities \['a', 'b'\], got \['z'\]"):
        model.generate("a", {"z": data["a"][:2]})
    model = small_model("mmvae", MMVAE({"a": SMALL_DECODERS["a"]}, name="objective"))
    with pytest.raises(ValueError, match=r"mmvae has no decoder for 'b'; decoders are for \['a'\]"):
        model.generate("b", {"a": data["a"][:2]})
    from mmkeras.objectives.infonce import InfoNCE

    model = small_model("mmvae", InfoNCE(name="objective"))
    with pytest.raises(ValueError, match="InfoNCE cannot generate: generate\\(\\) needs a generative objective"):
        model.generate("b", {"a": data["a"][:2]})


def test_mvae_anneals_over_training_steps_only(data):
    model = small_model("mvae")
    model.objective.anneal_steps = 100
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
    assert float(model.objective.step) == 0.0  # the build call does not count
    train = {m: v[:192] for m, v in data.items()}
    valid = {m: v[192:] for m, v in data.items()}
    model.fit(train, np.zeros(192), validation_data=(valid, np.zeros(48)), batch_size=32, epochs=2, verbose=0)
    assert float(model.objective.step) == 2 * 6  # 6 training batches per epoch; the 2 validation ones do not count
    model.evaluate(valid, np.zeros(48), batch_size=16, verbose=0)
    model.objective(model(valid))
    assert float(model.objective.step) == 12
    out = model.objective(model(valid), training=True)
    assert float(out["kl_weight"]) == pytest.approx(0.12)  # beta * 12 / 100, then the step counts
    assert float(model.objective.step) == 13


# -- recipes ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "recipe, objective, fusion, head",
    [
        ("mmvae_mhd", "mmvae", "moe", None),
        ("nexus_mhd", "nexus", "nexus", "gaussian_mean"),
        ("muse_mhd", "muse", "muse", "gaussian_mean"),
    ],
)
def test_recipes_validate(recipe, objective, fusion, head):
    r = mmkeras.load_recipe(ROOT / "recipes" / f"{recipe}.yaml")
    assert (r.objective.name, r.model.fusion.name) == (objective, fusion)
    assert (r.model.head.name if r.model.head else None) == head
    assert r.model.feature_dim == 2 * r.model.latent_dim == 128
    assert sorted(r.objective.params["decoders"]) == sorted(r.modalities) == ["image", "label", "sound", "trajectory"]
    assert r.description
