"""AE^2-Nets: the hand-written gradient of H's energy against finite differences and GradientTape, the
inner loop against the ridge solution, the loss against numpy written from the formulas, masks,
save/reload, errors, and the MHD recipe."""

from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest

import mmkeras
from mmkeras.encoders.mlp import MLPEncoder
from mmkeras.fusions.ae2net import AE2NetFusion
from mmkeras.losses.ae2net import Degradation, infer_intact, intact_energy, intact_gradient
from mmkeras.model import MultimodalModel
from mmkeras.objectives.ae2net import AE2Net
from mmkeras.record import Record
from mmkeras.registry import registry

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module", autouse=True)
def ae2net_registered():
    """``ae2net`` (objective and fusion) by their entry points once pyproject declares them; registered
    in this process until then."""
    added = []
    if "ae2net" not in registry.names("objectives"):
        mmkeras.register_objective("ae2net")(AE2Net)
        added.append("objectives")
    if "ae2net" not in registry.names("fusions"):
        mmkeras.register_fusion("ae2net")(AE2NetFusion)
        added.append("fusions")
    yield
    for kind in added:
        registry.remove(kind, "ae2net")


def value(x):
    return float(keras.ops.convert_to_numpy(x))


def numpy(x):
    return keras.ops.convert_to_numpy(x)


# -- numpy, from the formulas (float64) ----------------------------------------------------------
def np_degrade(h, net, activation="tanh"):
    u = h @ net.w1 + net.b1
    u = np.tanh(u) if activation == "tanh" else u
    return u @ net.w2 + net.b2


def np_energy(h, codes, masks, nets, l2, activation="tanh"):
    """E(H) per row: sum_v m_v 1/d_v ||g_v(H) - z_v||^2 + l2 ||H||^2 (a missing view's code is ignored)."""
    e = l2 * (h * h).sum(-1)
    for v, z in codes.items():
        r = np_degrade(h, nets[v], activation) - np.where(masks[v][:, None] > 0, z, 0.0)
        e = e + masks[v] * (r * r).mean(-1)
    return e


def np_fd_gradient(h, codes, masks, nets, l2, activation="tanh", eps=1e-6):
    """dE/dH by central differences (each row's E depends on its own H only)."""
    grad = np.zeros_like(h)
    for k in range(h.shape[1]):
        step = np.zeros_like(h)
        step[:, k] = eps
        up = np_energy(h + step, codes, masks, nets, l2, activation)
        down = np_energy(h - step, codes, masks, nets, l2, activation)
        grad[:, k] = (up - down) / (2 * eps)
    return grad


def np_infer(codes, masks, nets, dim, steps, lr, momentum, l2, activation="tanh"):
    """H by gradient descent with heavy-ball momentum from 0, the gradients by finite differences."""
    n = len(next(iter(codes.values())))
    h, velocity = np.zeros((n, dim)), np.zeros((n, dim))
    for _ in range(steps):
        velocity = momentum * velocity - lr * np_fd_gradient(h, codes, masks, nets, l2, activation)
        h = h + velocity
    return h


def random_nets(rng, dim, hidden, sizes, scale=0.6):
    return {
        v: Degradation(
            rng.normal(size=(dim, hidden)) * scale,
            rng.normal(size=hidden) * 0.2,
            rng.normal(size=(hidden, d)) * scale,
            rng.normal(size=d) * 0.2,
        )
        for v, d in sizes.items()
    }


def as32(nets):
    return {v: Degradation(*(w.astype("float32") for w in n)) for v, n in nets.items()}


RNG = np.random.default_rng(0)
NETS = random_nets(RNG, 3, 4, {"a": 2, "b": 5})
CODES = {"a": RNG.normal(size=(4, 2)), "b": RNG.normal(size=(4, 5))}
MASKS = {"a": np.ones(4), "b": np.array([1.0, 0.0, 1.0, 1.0])}
H = RNG.normal(size=(4, 3))


def f32(tree):
    return {k: np.asarray(v, "float32") for k, v in tree.items()}


@pytest.mark.parametrize("activation", ["tanh", "linear"])
def test_hand_gradient_equals_finite_differences_and_the_tape(activation):
    import tensorflow as tf

    codes = f32(CODES)
    codes["b"][1] = np.inf  # a missing view's code must not reach the gradient
    l2 = 0.3
    fd = np_fd_gradient(H, CODES, MASKS, NETS, l2, activation)
    hand = numpy(intact_gradient(H.astype("float32"), codes, f32(MASKS), as32(NETS), l2, activation))
    assert np.abs(fd).max() > 0.5  # the example tests a gradient, not a zero
    np.testing.assert_allclose(hand, fd, rtol=1e-4, atol=1e-5)
    # row 1 without view b: its gradient is that of view a alone
    alone = np_fd_gradient(H[1:2], {"a": CODES["a"][1:2]}, {"a": np.ones(1)}, NETS, l2, activation)
    np.testing.assert_allclose(hand[1:2], alone, rtol=1e-4, atol=1e-5)
    h = tf.Variable(H.astype("float32"))
    with tf.GradientTape() as tape:
        energy = tf.reduce_sum(intact_energy(h, codes, f32(MASKS), as32(NETS), l2, activation))
    np.testing.assert_allclose(hand, tape.gradient(energy, h).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        numpy(intact_energy(H, codes, f32(MASKS), as32(NETS), l2, activation)),
        np_energy(H, CODES, MASKS, NETS, l2, activation),
        rtol=1e-5,
    )


def test_linear_networks_give_the_ridge_solution():
    # g_v(H) = H A_v + c_v: E is a ridge regression,
    # H = [sum_v m_v/d_v (z_v - c_v) A_v^T] [sum_v m_v/d_v A_v A_v^T + l2 I]^-1
    l2 = 0.05
    h = numpy(infer_intact(f32(CODES), f32(MASKS), as32(NETS), 3, 150, 0.2, 0.7, l2, "linear"))
    expected = []
    for i in range(4):
        lhs, rhs = l2 * np.eye(3), np.zeros(3)
        for v, net in NETS.items():
            a, c, d = net.w1 @ net.w2, net.b1 @ net.w2 + net.b2, net.w2.shape[1]
            lhs += MASKS[v][i] / d * a @ a.T
            rhs += MASKS[v][i] / d * (CODES[v][i] - c) @ a.T
        expected.append(np.linalg.solve(lhs, rhs))
    assert np.abs(expected).max() > 0.5
    np.testing.assert_allclose(h, expected, rtol=1e-4, atol=1e-4)


def test_the_energy_falls_at_every_step_to_a_stationary_point():
    def energy(steps):
        h = numpy(infer_intact(f32(CODES), f32(MASKS), as32(NETS), 3, steps, 0.2, 0.0, 0.01))
        return np_energy(h, CODES, MASKS, NETS, 0.01)

    energies = [energy(s) for s in range(0, 61, 5)]
    assert np.all(np.diff(energies, axis=0) < 0)
    assert energies[-1] == pytest.approx(
        np_energy(np_infer(CODES, MASKS, NETS, 3, 60, 0.2, 0.0, 0.01), CODES, MASKS, NETS, 0.01), rel=1e-4
    )
    h = infer_intact(f32(CODES), f32(MASKS), as32(NETS), 3, 150, 0.2, 0.5, 0.1)  # with momentum, to a stationary H
    assert np.abs(numpy(intact_gradient(h, f32(CODES), f32(MASKS), as32(NETS), 0.1))).max() < 1e-5
    assert energies[-1].sum() < 0.9 * energies[0].sum()  # H = 0 was not already the answer


def test_the_inner_loop_runs_in_float32_under_mixed_precision():
    codes = {v: z.astype("float16") for v, z in f32(CODES).items()}
    out = {}
    for policy in ("float32", "mixed_float16"):
        fusion = AE2NetFusion(intact_dim=3, hidden_dim=4, inner_steps=30, inner_lr=0.2, l2=0.01, dtype=policy)
        fusion.build({"a": (None, 2), "b": (None, 5)})
        fusion.set_weights([w for n in as32(NETS).values() for w in n])
        out[policy] = fusion({v: z.astype(fusion.compute_dtype) for v, z in codes.items()}, f32(MASKS))
    assert out["mixed_float16"].dtype == "float16"
    # float16 steps would drift by far more than the output's rounding (2^-11 relative)
    np.testing.assert_allclose(numpy(out["mixed_float16"]), numpy(out["float32"]), rtol=2e-3, atol=2e-3)


# -- the objective against numpy -----------------------------------------------------------------
def parts(seed=0, inner_steps=6, recon_weight=0.7, degradation_weight=1.3):
    """An ae2net fusion (D = 3, K = 4) over codes of size 2 and its objective decoding a [4] and b [2, 3]
    with linear decoders, every weight drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    fusion = AE2NetFusion(intact_dim=3, hidden_dim=4, inner_steps=inner_steps, inner_lr=0.3, momentum=0.4, l2=0.02)
    fusion.build({"a": (None, 2), "b": (None, 2)})
    fusion.set_weights([rng.normal(size=w.shape).astype("float32") * 0.7 for w in fusion.weights])
    linear = {"name": "dense_decoder", "params": {"hidden_units": []}}
    objective = AE2Net(
        decoders={"a": linear, "b": linear}, recon_weight=recon_weight, degradation_weight=degradation_weight
    )
    objective.attach_encoder(SimpleNamespace(fusion=fusion))
    return fusion, objective


def outputs_of(fusion, codes, inputs, masks):
    joint = fusion(codes, masks)
    return Record(features=codes, latents=codes, joint_feature=joint, joint=joint, masks=masks, inputs=inputs)


def np_loss(fusion, objective, codes, inputs, masks, recon_weight, degradation_weight):
    nets = {v: Degradation(*(np.asarray(w, "float64") for w in n)) for v, n in fusion.networks.items()}
    h = np_infer(codes, masks, nets, 3, fusion.inner_steps, fusion.inner_lr, fusion.momentum, fusion.l2)
    rows = np.zeros(len(h))
    for v in ("a", "b"):
        kernel, bias = objective.decoder_layers[v].get_weights()
        x_hat = (codes[v] @ kernel + bias).reshape(inputs[v].shape)
        recon = ((x_hat - inputs[v]) ** 2).reshape(len(h), -1).mean(1)
        degradation = ((np_degrade(h, nets[v]) - codes[v]) ** 2).mean(1)
        rows += np.where(masks[v] > 0, recon_weight * recon + degradation_weight * degradation, 0.0)
    present = np.maximum(masks["a"], masks["b"]) > 0
    return rows[present].mean(), h


def test_loss_matches_numpy_on_two_samples():
    rng = np.random.default_rng(1)
    codes = {"a": rng.normal(size=(2, 2)), "b": rng.normal(size=(2, 2))}
    inputs = {"a": rng.normal(size=(2, 4)), "b": rng.normal(size=(2, 2, 3))}
    masks = {"a": np.ones(2), "b": np.ones(2)}
    fusion, objective = parts()
    record = outputs_of(fusion, f32(codes), f32(inputs), f32(masks))
    result = objective(record)
    ref, h = np_loss(fusion, objective, codes, inputs, masks, 0.7, 1.3)
    np.testing.assert_allclose(numpy(record.joint_feature), h, rtol=1e-4, atol=1e-5)
    assert np.abs(h).max() > 0.1
    assert value(result["loss"]) == pytest.approx(ref, rel=1e-5)
    assert sorted(result) == ["degradation_a", "degradation_b", "loss", "recon_a", "recon_b"]
    terms = 0.7 * (value(result["recon_a"]) + value(result["recon_b"]))
    terms += 1.3 * (value(result["degradation_a"]) + value(result["degradation_b"]))
    assert terms == pytest.approx(ref, rel=1e-5)  # every view present: the loss is the weighted sum of the metrics


def test_a_missing_view_counts_for_nothing():
    rng = np.random.default_rng(2)
    codes = {"a": rng.normal(size=(3, 2)), "b": rng.normal(size=(3, 2))}
    inputs = {"a": rng.normal(size=(3, 4)), "b": rng.normal(size=(3, 2, 3))}
    masks = {"a": np.ones(3), "b": np.array([1.0, 0.0, 1.0])}
    fusion, objective = parts()
    garbage = {k: v.copy() for k, v in codes.items()}, {k: v.copy() for k, v in inputs.items()}
    garbage[0]["b"][1], garbage[1]["b"][1] = 1e30, np.inf  # what a missing view holds must not matter
    record = outputs_of(fusion, f32(garbage[0]), f32(garbage[1]), f32(masks))
    loss = value(objective(record)["loss"])
    ref, _ = np_loss(fusion, objective, codes, inputs, masks, 0.7, 1.3)
    assert loss == pytest.approx(ref, rel=1e-5)
    # row 1 as a batch of its own without view b: the same H; the loss is the mean of the rows' losses
    # (as the model passes a modality missing from the inputs: zero features under a zero mask)
    alone = outputs_of(
        fusion,
        f32({"a": codes["a"][1:2], "b": np.zeros((1, 2))}),
        f32({"a": inputs["a"][1:2]}),
        f32({"a": np.ones(1), "b": np.zeros(1)}),
    )
    np.testing.assert_allclose(numpy(record.joint_feature)[1:2], numpy(alone.joint_feature), rtol=1e-6)

    def row_loss(i):
        if i == 1:
            return value(objective(alone)["loss"])
        row = outputs_of(
            fusion,
            f32({k: v[i : i + 1] for k, v in codes.items()}),
            f32({k: v[i : i + 1] for k, v in inputs.items()}),
            f32({k: np.ones(1) for k in codes}),
        )
        return value(objective(row)["loss"])

    rows = [row_loss(i) for i in range(3)]
    assert loss == pytest.approx(np.mean(rows), rel=1e-5)


def test_gradients_skip_h_and_reach_every_network():
    import tensorflow as tf

    rng = np.random.default_rng(3)
    codes = tf.Variable(rng.normal(size=(3, 2)).astype("float32"))
    fusion, objective = parts()
    inputs = f32({"a": rng.normal(size=(3, 4)), "b": rng.normal(size=(3, 2, 3))})
    masks = f32({"a": np.ones(3), "b": np.ones(3)})
    objective(outputs_of(fusion, {"a": codes * 1.0, "b": codes * 2.0}, inputs, masks))  # build
    with tf.GradientTape(persistent=True) as tape:
        record = outputs_of(fusion, {"a": codes * 1.0, "b": codes * 2.0}, inputs, masks)
        loss = objective(record)["loss"]
    assert tape.gradient(record.joint_feature, codes) is None  # H is a constant
    grads = tape.gradient(loss, [codes, *fusion.trainable_weights, *objective.trainable_weights])
    assert all(g is not None and np.abs(g.numpy()).sum() > 0 for g in grads)


# -- a model -------------------------------------------------------------------------------------
SHAPES = {"a": [6], "b": [5]}


def tiny_model():
    keras.utils.set_random_seed(0)
    linear = {"name": "dense_decoder", "params": {"hidden_units": [8]}}
    model = MultimodalModel(
        {m: MLPEncoder(4, hidden_units=[8], name=f"{m}_encoder") for m in SHAPES},
        AE2NetFusion(intact_dim=3, hidden_dim=8, inner_steps=5, name="fusion"),
        None,
        AE2Net(decoders={"a": linear, "b": linear}, name="objective"),
        input_shapes=SHAPES,
    )
    model.build()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    return model


def test_a_trained_model_reloads_with_the_same_encodings(tmp_path):
    rng = np.random.default_rng(4)
    x = {m: rng.normal(size=(32, *s)).astype("float32") for m, s in SHAPES.items()}
    model = tiny_model()
    before = model.encode(x)
    history = model.fit(x, epochs=1, batch_size=16, verbose=0).history
    assert sorted(history) == ["degradation_a", "degradation_b", "loss", "recon_a", "recon_b"]
    assert np.isfinite(history["loss"][0])
    encodings = {s: model.encode(x, list(s)) for s in (("a", "b"), ("a",), ("b",))}
    assert all(e.shape == (32, 3) and np.all(np.isfinite(e)) for e in encodings.values())
    assert not np.allclose(encodings["a", "b"], before)  # trained
    assert not np.allclose(encodings["a", "b"], encodings["a",])  # H depends on the subset's views
    model.save(tmp_path / "model.keras")
    model.encoder.save(tmp_path / "encoder.keras")
    loaded = mmkeras.load_model(str(tmp_path / "model.keras"))
    encoder = mmkeras.load_encoder(tmp_path / "encoder.keras")
    for subset, expected in encodings.items():
        np.testing.assert_allclose(loaded.encode(x, list(subset)), expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(encoder.encode(x, list(subset)), expected, rtol=1e-5, atol=1e-6)
    # the reloaded objective uses the reloaded fusion's networks
    assert value(loaded.compute_loss(y_pred=loaded(x))) == pytest.approx(value(model.compute_loss(y_pred=model(x))))


def test_errors_name_ae2net_and_the_parameter():
    linear = {"a": {"name": "dense_decoder"}}
    with pytest.raises(ValueError, match=r"AE2Net: recon_weight: expected a number >= 0, got -1.0"):
        AE2Net(decoders=linear, recon_weight=-1.0)
    with pytest.raises(ValueError, match=r"AE2NetFusion: inner_steps: expected a number > 0, got 0"):
        AE2NetFusion(inner_steps=0)
    with pytest.raises(ValueError, match=r"AE2NetFusion: momentum: expected a number < 1, got 1.0"):
        AE2NetFusion(momentum=1.0)
    with pytest.raises(ValueError, match=r"AE2NetFusion: activation: Input should be 'tanh' or 'linear', got 'relu'"):
        AE2NetFusion(activation="relu")
    with pytest.raises(ValueError, match=r"ae2net: the model's fusion must be the ae2net fusion .* got MeanFusion"):
        from mmkeras.fusions.mean import MeanFusion

        MultimodalModel({"a": MLPEncoder(4, name="a_encoder")}, MeanFusion(), None, AE2Net(decoders=linear))


def test_config_round_trip():
    fusion = AE2NetFusion(intact_dim=7, hidden_dim=9, activation="linear", inner_steps=3, inner_lr=0.1, momentum=0.2)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(fusion))
    assert clone.get_config() == fusion.get_config()
    assert (clone.intact_dim, clone.activation, clone.inner_steps, clone.momentum) == (7, "linear", 3, 0.2)
    objective = AE2Net(decoders={"a": {"name": "dense_decoder"}}, recon_weight=0.5, degradation_weight=2.0)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(objective))
    assert clone.get_config() == objective.get_config() and clone.degradation_weight == 2.0


# -- the recipe ----------------------------------------------------------------------------------
def test_recipe_validates_and_trains_an_epoch_on_mhd_tiny():
    pytest.importorskip("mmkeras_mhd")
    from mmkeras.builder import input_shapes_of
    from mmkeras.data.pipeline import make_dataset
    from mmkeras.runs import load_splits

    modalities = ["image", "sound", "trajectory"]
    # without XLA: its compile of the inner loop's graph is most of this test's time on a CPU
    overrides = ["data.params.size=tiny", "data.params.workers=1", "data.batch_size=32", "train.epochs=1"]
    overrides.append("train.jit_compile=false")
    recipe = mmkeras.load_recipe(ROOT / "recipes" / "ae2net_mhd.yaml", overrides=overrides)
    assert recipe.objective.name == "ae2net" and recipe.model.fusion.name == "ae2net"
    _, splits = load_splits(recipe)
    model = mmkeras.build_model(recipe, input_shapes=input_shapes_of(splits["train"], sorted(recipe.modalities)))
    intact_dim = model.fusion.intact_dim
    data = make_dataset(splits["train"], sorted(recipe.modalities), 32)
    history = model.fit(data, epochs=1, steps_per_epoch=2, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    test = splits.get("test") or splits["train"]
    x = {m: test.inputs[m][:40] for m in modalities}
    for m in modalities:
        h = model.encode(x, [m])
        assert h.shape == (40, intact_dim) and np.all(np.isfinite(h))
