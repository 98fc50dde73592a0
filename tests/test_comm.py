import json
import math

import keras
import numpy as np
import pytest
from conftest import ROOT, run_cli

import mmkeras
from mmkeras.losses import nt_xent
from mmkeras.objectives.comm import CoMM
from mmkeras.record import Record


def rec(**fields):
    """A forward-pass record with the given fields (the others empty)."""
    return Record(**{"features": {}, "latents": {}, "joint_feature": None, "joint": None, "masks": {}, **fields})


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def np_ntxent(a, b, t):
    """SimCLR NT-Xent: each of the 2N rows of [a; b] against the 2N - 1 others."""
    z = unit(np.concatenate([a, b]).astype("float64"))
    n = len(a)
    s = z @ z.T / t
    np.fill_diagonal(s, -np.inf)
    pos = np.concatenate([np.arange(n) + n, np.arange(n)])
    return float(np.mean([np.log(np.exp(s[k]).sum()) - s[k, pos[k]] for k in range(2 * n)]))


def np_clip(a, b, t):
    s = unit(a.astype("float64")) @ unit(b.astype("float64")).T / t

    def ce(lg):
        return np.mean([np.log(np.exp(row).sum()) - row[i] for i, row in enumerate(lg)])

    return 0.5 * (ce(s) + ce(s.T))


def np_comm(v1, v2, masks, t, nce, weights=None):
    f = np_ntxent if nce == "ntxent" else np_clip
    weights = weights or {}
    terms = {"joint": f(v1["joint"], v2["joint"], t)}
    for m in sorted(masks):
        keep = masks[m] > 0
        terms[m] = 0.5 * (
            f(v1["joint_single"][m][keep], v2["joint"][keep], t) + f(v2["joint_single"][m][keep], v1["joint"][keep], t)
        )
    return sum(weights.get(k, 1.0) * v for k, v in terms.items()) / len(terms), terms


def record(rng, n, d, mods):
    return {
        "joint": rng.normal(size=(n, d)).astype("float32"),
        "joint_single": {m: rng.normal(size=(n, d)).astype("float32") for m in mods},
    }


def test_ntxent_hand_computed():
    # a = b = [e1, e2] at t = 1: every anchor sees its positive (cos 1) and two orthogonal rows (cos 0)
    e = np.eye(2, dtype="float32")
    assert float(nt_xent(e, e, 1.0)) == pytest.approx(math.log(math.e + 2) - 1, rel=1e-6)
    # one pair: the positive is the only other row, so the loss is 0
    assert float(nt_xent(e[:1], e[1:], 0.1)) == pytest.approx(0.0, abs=1e-6)


def test_ntxent_matches_numpy_and_masks_drop_rows():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 5)).astype("float32"), rng.normal(size=(6, 5)).astype("float32")
    assert float(nt_xent(a, b, 0.1)) == pytest.approx(np_ntxent(a, b, 0.1), rel=1e-5)
    mask = np.array([1, 0, 1, 1, 0, 1], "float32")
    keep = mask > 0
    assert float(nt_xent(a, b, 0.3, mask)) == pytest.approx(np_ntxent(a[keep], b[keep], 0.3), rel=1e-5)


def test_comm_hand_computed_tiny_example():
    # n = 1 modality, N = 2, t = 1; view 1 joint = [e1, e2], view 2 joint = [e1, e2],
    # singles: view 1 = [e1, e1], view 2 = [e2, e2]
    e = np.eye(2, dtype="float32")
    v1 = rec(joint=e, joint_single={"x": np.stack([e[0], e[0]])}, masks={"x": np.ones(2, "float32")})
    v2 = rec(joint=e, joint_single={"x": np.stack([e[1], e[1]])}, masks={"x": np.ones(2, "float32")})
    loss = CoMM(temperature=1.0)(rec(views=(v1, v2)))
    joint = math.log(math.e + 2) - 1
    # NCE([e1, e1], [e1, e2]): rows a1 = a2 = e1, b1 = e1, b2 = e2.
    # a1: pos b1 (1); others a2 (1), b2 (0) -> log(2e + 1) - 1.  a2: pos b2 (0); others a1 (1), b1 (1) -> log(2e + 1).
    # b1: pos a1 (1); others b2 (0), a2 (1) -> log(2e + 1) - 1.  b2: pos a2 (0); others b1 (0), a1 (0) -> log 3.
    first = (3 * math.log(2 * math.e + 1) - 2 + math.log(3)) / 4
    # NCE([e2, e2], [e1, e2]) is the same with e1 and e2 swapped and the rows swapped: equal value
    single = 0.5 * (first + first)
    assert float(loss["comm_joint"]) == pytest.approx(joint, rel=1e-6)
    assert float(loss["comm_x"]) == pytest.approx(single, rel=1e-6)
    assert float(loss["loss"]) == pytest.approx((joint + single) / 2, rel=1e-6)


@pytest.mark.parametrize("nce", ["ntxent", "clip"])
def test_comm_matches_numpy_with_masks_and_weights(nce):
    rng = np.random.default_rng(1)
    mods = ["image", "text"]
    v1, v2 = record(rng, 8, 4, mods), record(rng, 8, 4, mods)
    masks = {"image": np.ones(8, "float32"), "text": np.array([1, 1, 0, 1, 1, 0, 1, 1], "float32")}
    for v in (v1, v2):
        v["masks"] = masks
    weights = {"joint": 2.0, "text": 0.5}
    out = CoMM(temperature=0.1, nce=nce, weights=weights)(rec(views=(rec(**v1), rec(**v2))))
    expected, terms = np_comm(v1, v2, masks, 0.1, nce, weights)
    assert float(out["loss"]) == pytest.approx(expected, rel=1e-5)
    for k, v in terms.items():
        assert float(out[f"comm_{k}"]) == pytest.approx(v, rel=1e-5)


def test_comm_rejects_unknown_weight_and_missing_views():
    rng = np.random.default_rng(2)
    v = rec(**record(rng, 4, 3, ["a"]), masks={"a": np.ones(4, "float32")})
    with pytest.raises(ValueError, match=r"weights has keys \['b'\]; expected 'joint' or modalities \['a'\]"):
        CoMM(weights={"b": 1.0})(rec(views=(v, v)))
    with pytest.raises(ValueError, match="comm needs the records of two augmented views"):
        CoMM()(v)
    with pytest.raises(ValueError, match=r"CoMM: nce: Input should be .ntxent. or .clip., got .triplet."):
        CoMM(nce="triplet")


def comm_recipe(**train):
    return mmkeras.recipe_from_dict(
        {
            "name": "comm-tiny",
            "seed": 0,
            "data": {"dataset": "arrays", "params": {"synthetic": True, "num_samples": 64}, "batch_size": 16},
            "modalities": {
                "a": {
                    "encoder": {"name": "mlp", "params": {"hidden_units": [8]}},
                    "augment": [{"name": "gaussian_noise", "params": {"stddev": 0.1}}],
                },
                "b": {"encoder": {"name": "conv2d", "params": {"filters": [4], "kernel_size": 3}}},
            },
            "model": {
                "feature_dim": 8,
                "latent_dim": 6,
                "encode_output": "feature",
                "fusion": {"name": "transformer", "params": {"width": 8, "num_heads": 2}},
                "head": {"name": "mlp_bn", "params": {"hidden_units": [16, 16]}},
            },
            "objective": {"name": "comm", "params": {"temperature": 0.1}},
            "train": {"jit_compile": False, **train},
        }
    )


def test_model_trains_with_two_views_and_reloads(tmp_path):
    from mmkeras.data.pipeline import make_dataset

    recipe = comm_recipe(optimizer={"name": "adamw", "learning_rate": 1e-3, "weight_decay": 0.1})
    model = mmkeras.build_model(recipe, {"a": [16], "b": [8, 8, 1]})
    assert model.num_views == 2 and model.single_modality_joints
    train = mmkeras.load_dataset("arrays", synthetic=True, num_samples=64).load("train")
    x = {m: train.inputs[m][:16] for m in ("a", "b")}
    rec = model(x, training=True)
    assert len(rec["views"]) == 2
    # the two views differ in training (independent noise draws) and agree at inference
    assert (
        np.abs(np.asarray(rec["views"][0]["features"]["a"]) - np.asarray(rec["views"][1]["features"]["a"])).max() > 1e-4
    )
    history = model.fit(make_dataset(train, ["a", "b"], 16, seed=0), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert {"comm_joint", "comm_a", "comm_b"} <= set(history.history)
    # AdamW decays kernels but not biases or norm parameters
    opt = model.optimizer
    names = {v.path: opt._use_weight_decay(v) for v in model.trainable_variables}
    assert any(p.endswith("kernel") and d for p, d in names.items())
    assert all(not d for p, d in names.items() if p.endswith(("bias", "gamma", "beta")))
    path = tmp_path / "comm.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.encode(x), model.encode(x), rtol=1e-5, atol=1e-6)
    assert model.encode(x).shape == (16, 8)  # encode_output: feature gives the pre-head fused feature


@pytest.mark.slow
@pytest.mark.parametrize(
    "objective",
    [{"name": "comm", "params": {"temperature": 0.2}}, {"name": "cross_self"}, {"name": "supcon"}],
    ids=["comm", "cross_self", "supcon"],
)
def test_two_replicas_match_one_device(tmp_path, objective):
    from test_distribute import run  # the shared 2-logical-CPU harness

    one, two = run(tmp_path, 1, objective), run(tmp_path, 2, objective)
    assert float(two["loss"]) == pytest.approx(float(one["loss"]), rel=1e-5)
    for k in (k for k in one if k != "loss"):
        np.testing.assert_allclose(two[k], one[k], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_comm_trifeatures_learns_redundancy(tmp_path):
    """80 steps of comm_trifeatures (about 40 s on 2 cores; an epoch is 157): the shape (R) probe is
    well above its 10% chance (measured: 33% after 80 steps, 32% after 60, 40% after 1 epoch, 58% after 4)."""
    proc = run_cli(
        "train",
        ROOT / "recipes" / "comm_trifeatures.yaml",
        "--output",
        tmp_path / "run",
        "--set",
        "train.epochs=1",
        "--set",
        "train.steps_per_epoch=80",
        "--set",
        'evaluate.0.params.tasks={"R": {"task": "shared"}}',
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    r = metrics["evaluation"]["logistic_probe"]["tasks"]["R"]["balanced_accuracy"]
    assert r > 0.25, metrics["evaluation"]


# -- the CoMM probe protocol (evaluator logistic_probe) ------------------------------------------
def test_balanced_accuracy_hand_computed():
    from mmkeras.evaluators.logistic_probe import balanced_accuracy

    y = np.array([0, 0, 0, 1])
    assert balanced_accuracy(y, np.zeros(4, int)) == pytest.approx(0.5)
    assert balanced_accuracy(y, np.array([0, 1, 0, 1])) == pytest.approx((2 / 3 + 1) / 2)


def test_logistic_solution_is_stationary_and_shrinks_with_l2():
    from mmkeras.evaluators.logistic_probe import fit_logistic

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype("float32")
    y = (x[:, 0] + 0.5 * rng.normal(size=300) > 0).astype(int) + (x[:, 1] > 1).astype(int)
    norms = []
    sw = rng.uniform(0.5, 2.0, size=300)
    for l2 in (1.0, 0.1, 0.01):
        w, b = fit_logistic(x, y, 3, l2, iterations=5000, tol=1e-6)
        logits = x @ w + b
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        err = p - np.eye(3)[y]
        # the gradient of mean CE + l2/2 |W|^2 vanishes at the returned solution
        assert np.abs(x.T @ err / len(x) + l2 * w).max() < 1e-5
        assert np.abs(err.mean(0)).max() < 1e-5
        norms.append(np.linalg.norm(w))
    assert norms[0] < norms[1] < norms[2]
    # with sample weights: the weighted-mean gradient vanishes
    w, b = fit_logistic(x, y, 3, 0.1, iterations=5000, tol=1e-6, sample_weight=sw)
    logits = x @ w + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    err = sw[:, None] * (p / p.sum(1, keepdims=True) - np.eye(3)[y])
    assert np.abs(x.T @ err / sw.sum() + 0.1 * w).max() < 1e-5


def test_balanced_class_weights_find_the_rare_class():
    from mmkeras.evaluators.logistic_probe import LogisticProbe

    # 10% positives shifted by one standard deviation: the unweighted fit predicts "negative" almost everywhere
    rng = np.random.default_rng(3)
    y = (rng.random(2000) < 0.1).astype(int)
    z = rng.normal(size=(2000, 1)) + y[:, None]
    plain = LogisticProbe(l2_grid=[1e-3]).probe(z[:1500], y[:1500], z[1500:], y[1500:])
    weighted = LogisticProbe(l2_grid=[1e-3], class_weight="balanced").probe(z[:1500], y[:1500], z[1500:], y[1500:])
    assert plain["balanced_accuracy"] == pytest.approx(0.5, abs=0.02)
    assert weighted["balanced_accuracy"] > 0.6  # the best threshold gives Phi(0.5) = 0.69
    with pytest.raises(ValueError, match="class_weight must be one of"):
        LogisticProbe(class_weight="auto")


def test_probe_chooses_l2_without_looking_at_test():
    from mmkeras.evaluators.logistic_probe import LogisticProbe

    rng = np.random.default_rng(1)
    z = rng.normal(size=(400, 6))
    y = (z[:, 0] > 0).astype(int)
    z_test = rng.normal(size=(100, 6))
    probe = LogisticProbe(l2_grid=[1.0, 1e-2, 1e-4], iterations=300)
    right = probe.probe(z, y, z_test, (z_test[:, 0] > 0).astype(int))
    scrambled = probe.probe(z, y, z_test, rng.integers(0, 2, 100))
    assert (
        right["l2"] == scrambled["l2"]
        and right["validation_balanced_accuracy"] == scrambled["validation_balanced_accuracy"]
    )
    assert right["balanced_accuracy"] > 0.9 > scrambled["balanced_accuracy"]
    assert right["num_train"] == 400 and right["chance"] == 0.5


def test_probe_reads_each_task_from_the_named_dataset():
    from mmkeras.evaluators.logistic_probe import LogisticProbe

    model = mmkeras.build_model(comm_recipe(), {"a": [16], "b": [8, 8, 1]}, compile=False)
    params = {"synthetic": True, "num_samples": 96}
    probe = LogisticProbe(
        tasks={"four": {"num_classes": 4}, "two": {"num_classes": 2}},
        dataset="arrays",
        dataset_params=params,
        iterations=50,
    )
    out = probe.evaluate(model, {}, None)
    assert {k: v["chance"] for k, v in out["tasks"].items()} == {"four": 0.25, "two": 0.5}
    assert out["tasks"]["four"]["num_train"] == 72 and out["tasks"]["four"]["num_test"] == 24
    assert "| four |" in probe.report(out)
    split = mmkeras.load_dataset("arrays", **params).load("train")
    x = {m: split.inputs[m][:5] for m in ("a", "b")}
    assert LogisticProbe(representation="modalities")._encode(model, x, ["a", "b"]).shape == (5, 16)
    assert LogisticProbe()._encode(model, x, ["a", "b"]).shape == (5, 8)
    with pytest.raises(ValueError, match="tasks need a dataset"):
        LogisticProbe(tasks={"t": {}})
    with pytest.raises(mmkeras.errors.MMKerasError, match="needs a train split and a test or validation split"):
        LogisticProbe().evaluate(model, {"train": split}, None)
