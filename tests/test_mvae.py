from pathlib import Path

import keras
import numpy as np
import pytest

import mmkeras
from mmkeras.fusions.poe import ProductOfExperts
from mmkeras.losses.gaussian import gaussian_kl, product_of_experts
from mmkeras.objectives.mvae import MVAE
from mmkeras.record import Record

ROOT = Path(__file__).resolve().parent.parent
DECODERS = {
    "a": {"name": "dense_decoder", "params": {"hidden_units": []}},
    "b": {"name": "dense_decoder", "params": {"hidden_units": [], "output_activation": "sigmoid"}},
    "c": {"name": "dense_decoder", "params": {"hidden_units": [], "output_activation": "softmax"}},
}
LIKELIHOODS = {"a": "gaussian", "b": "bernoulli", "c": "categorical"}


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def as_record(fields):
    """The forward-pass record of ``fields``; the fields a test leaves out are empty."""
    return Record(**{"features": {}, "latents": {}, "joint_feature": None, "joint": None, "masks": {}, **fields})


def tiny_record(seed=0):
    """Latent 2 (features of 4); a: 3-vector, b: 4 binary pixels missing in rows 1 and 3 (garbage there),
    c: one-hot of 3 classes."""
    rng = np.random.default_rng(seed)
    n = 5
    features = {m: rng.normal(size=(n, 4)).astype("float32") for m in "abc"}
    features["b"][[1, 3]] = 1e4  # garbage in the missing rows: exp(-1e4) * 0 would still be fine, -1e4 would not
    features["b"][3, 2:] = -1e4
    inputs = {
        "a": rng.normal(size=(n, 3)).astype("float32"),
        "b": (rng.random((n, 4)) > 0.5).astype("float32"),
        "c": np.eye(3, dtype="float32")[rng.integers(0, 3, n)],
    }
    inputs["b"][[1, 3]] = 1e3
    masks = {"a": np.ones(n, "float32"), "b": np.array([1, 0, 1, 0, 1], "float32"), "c": np.ones(n, "float32")}
    return as_record({"features": features, "inputs": inputs, "masks": masks})


def np_poe(features, masks):
    precision, weighted = np.ones((len(masks["a"]), 2)), np.zeros((len(masks["a"]), 2))
    for m, f in features.items():
        keep = masks[m][:, None] > 0
        mu, logvar = f[:, :2].astype("float64"), f[:, 2:].astype("float64")
        precision += np.where(keep, np.exp(-np.where(keep, logvar, 0.0)), 0.0)
        weighted += np.where(keep, mu * np.exp(-np.where(keep, logvar, 0.0)), 0.0)
    return weighted / precision, 1.0 / precision


def np_kl(mu, var):
    return 0.5 * (var + mu**2 - 1.0 - np.log(var)).sum(1)


def test_product_of_experts_matches_numpy_and_a_masked_expert_drops_out():
    rec = tiny_record()
    mu, logvar = (numpy(t) for t in product_of_experts(rec.features, rec.masks))
    ref_mu, ref_var = np_poe(rec.features, rec.masks)
    np.testing.assert_allclose(mu, ref_mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.exp(logvar), ref_var, rtol=1e-5)
    # rows 1 and 3 lack b: identical to the PoE of a and c alone, garbage notwithstanding
    without_b = {m: rec.features[m] for m in "ac"}
    mu_ac, logvar_ac = (numpy(t) for t in product_of_experts(without_b, rec.masks))
    np.testing.assert_array_equal(mu[[1, 3]], mu_ac[[1, 3]])
    np.testing.assert_array_equal(logvar[[1, 3]], logvar_ac[[1, 3]])
    # two experts and the prior by hand, row 0: T = 1 + 1/var_a + 1/var_c
    f = {m: rec.features[m][0].astype("float64") for m in "ac"}
    t = 1 + sum(np.exp(-f[m][2:]) for m in "ac")
    np.testing.assert_allclose(mu_ac[0], sum(f[m][:2] * np.exp(-f[m][2:]) for m in "ac") / t, rtol=1e-5)
    # the fusion returns that mean; no modality at all gives the prior's mean
    fused = numpy(ProductOfExperts()(rec.features, rec.masks))
    np.testing.assert_allclose(fused, ref_mu, rtol=1e-5, atol=1e-6)
    none = {m: np.zeros(5, "float32") for m in "abc"}
    np.testing.assert_array_equal(numpy(ProductOfExperts()(rec.features, none)), np.zeros((5, 2)))


def test_kl_matches_closed_form():
    rng = np.random.default_rng(1)
    mu, logvar = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    np.testing.assert_allclose(
        numpy(gaussian_kl(mu.astype("float32"), logvar.astype("float32"))), np_kl(mu, np.exp(logvar)), rtol=1e-5
    )


def fixed_objective(**params):
    obj = MVAE(DECODERS, likelihoods=LIKELIHOODS, sample=False, **params)
    obj(tiny_record())
    rng = np.random.default_rng(2)
    for t, size in (("a", 3), ("b", 4), ("c", 3)):
        obj.decoder_layers[t].set_weights(
            [rng.normal(size=(2, size)).astype("float32"), rng.normal(size=size).astype("float32")]
        )
    return obj


def np_negative_elbo(rec, obj, lambdas, beta):
    weights = {t: [numpy(w) for w in obj.decoder_layers[t].weights] for t in "abc"}

    def nll(t, z):
        w, b = weights[t]
        logits = z @ w + b
        x = rec.inputs[t]
        if t == "a":
            return (0.5 * (x - logits) ** 2 + 0.5 * np.log(2 * np.pi)).sum(1)
        if t == "b":
            p = 1 / (1 + np.exp(-logits))
            return -(x * np.log(p) + (1 - x) * np.log(1 - p)).sum(1)
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        return -(x * np.log(p)).sum(1)

    def elbo(masks):
        mu, var = np_poe(rec.features, masks)
        rows = np.max([masks[m] for m in "abc"], axis=0) > 0
        per_row = beta * np_kl(mu, var)
        for t in "abc":
            per_row += lambdas.get(t, 1.0) * np.where(masks[t] > 0, nll(t, mu), 0.0)
        return (
            per_row[rows].mean(),
            np_kl(mu, var)[rows].mean(),
            {t: np.where(masks[t] > 0, nll(t, mu), 0.0).mean() for t in "abc"},
        )

    m = rec.masks
    total, kl, nlls = elbo(m)
    for s in "abc":
        total += elbo({k: m[k] if k == s else np.zeros_like(m[k]) for k in "abc"})[0]
    return total, kl, nlls


def test_elbo_with_fixed_decoders_matches_numpy():
    lambdas = {"a": 2.0, "c": 50.0}
    obj = fixed_objective(lambdas=lambdas, beta=0.5)
    rec = tiny_record()
    out = obj(rec)
    total, kl, nlls = np_negative_elbo(rec, obj, lambdas, 0.5)
    assert float(out["loss"]) == pytest.approx(total, rel=1e-5)
    assert float(out["kl"]) == pytest.approx(kl, rel=1e-5)
    for t in "abc":
        assert float(out[f"nll_{t}"]) == pytest.approx(nlls[t], rel=1e-5)
    assert total < 1e3  # b's garbage in rows 1 and 3 never entered
    assert sorted(out) == ["kl", "kl_weight", "loss", "nll_a", "nll_b", "nll_c"]


def test_kl_annealing_is_linear_in_training_calls():
    obj = fixed_objective(beta=2.0, anneal_steps=4)  # the build call does not count
    weights = [float(obj(tiny_record(), training=True)["kl_weight"]) for _ in range(6)]
    np.testing.assert_allclose(weights, [0.0, 0.5, 1.0, 1.5, 2.0, 2.0])


def test_config_round_trip_and_errors():
    obj = MVAE(
        DECODERS, likelihoods=LIKELIHOODS, lambdas={"b": 3.0}, beta=0.25, anneal_steps=10, random_subsets=2, seed=3
    )
    clone = MVAE.from_config(obj.get_config())
    assert clone.get_config() == obj.get_config()
    with pytest.raises(ValueError, match=r"likelihoods.a: expected one of \['gaussian', 'bernoulli', 'categorical'\]"):
        MVAE(DECODERS, likelihoods={"a": "poisson"})
    with pytest.raises(ValueError, match=r"lambdas.z: this modality has no decoder"):
        MVAE(DECODERS, lambdas={"z": 1.0})


def small_model(objective, encode_output="feature"):
    from mmkeras.encoders.conv2d import Conv2DEncoder
    from mmkeras.encoders.mlp import MLPEncoder
    from mmkeras.model import MultimodalModel

    keras.utils.set_random_seed(0)
    model = MultimodalModel(
        {
            "a": MLPEncoder(8, hidden_units=[16], name="a_encoder"),
            "b": Conv2DEncoder(8, filters=[4], kernel_size=3, name="b_encoder"),
        },
        ProductOfExperts(name="fusion"),
        None,
        objective,
        input_shapes={"a": [16], "b": [8, 8, 1]},
        encode_output=encode_output,
    )
    model.build()
    return model


@pytest.fixture(scope="module")
def data():
    split = mmkeras.load_dataset("arrays", synthetic=True, num_samples=320).load("train")
    return {m: split.inputs[m] for m in "ab"}


def test_training_lowers_the_loss_and_reloaded_encodings_match(data, tmp_path):
    decoders = {
        "a": {"name": "dense_decoder", "params": {"hidden_units": [16]}},
        "b": {"name": "conv2d_decoder", "params": {"filters": [8, 4]}},
    }
    model = small_model(MVAE(decoders, random_subsets=1, seed=0))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=False)

    def loss():  # z = mu: the same noise-free objective before and after
        model.objective.sample = False
        value = float(model.objective(model(data))["loss"])
        model.objective.sample = True
        return value

    before = loss()
    model.fit(data, np.zeros(len(data["a"])), batch_size=32, epochs=4, verbose=0)
    after = loss()
    assert after < 0.9 * before, (before, after)

    path = tmp_path / "mvae.keras"
    model.save(path)
    loaded = mmkeras.load_model(str(path))
    for subset in (["a", "b"], ["a"], ["b"]):
        np.testing.assert_array_equal(loaded.encode(data, subset), model.encode(data, subset))
    # encode of one modality is the PoE mean of that expert and the prior
    features = model({"a": data["a"][:4]}).features
    mu, _ = product_of_experts({"a": features["a"]}, {"a": np.ones(4, "float32")})
    np.testing.assert_allclose(model.encode({"a": data["a"][:4]}), numpy(mu), rtol=1e-6)


def test_recipe_validates():
    recipe = mmkeras.load_recipe(ROOT / "recipes" / "mvae_mhd.yaml")
    assert recipe.objective.name == "mvae" and recipe.model.fusion.name == "poe"
    assert recipe.model.feature_dim == 2 * 64 and recipe.model.encode_output == "feature"
    assert sorted(recipe.objective.params["decoders"]) == ["image", "label", "sound", "trajectory"]
