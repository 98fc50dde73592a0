"""The mutual_information evaluator: the InfoNCE and NWJ bounds against numpy on small score matrices,
trained critics on correlated Gaussians with a known I = -d/2 log(1 - rho^2), InfoNCE's log(batch)
ceiling, independent variables, and the evaluator end to end on a stub model."""

import math

import numpy as np
import pytest

from mmkeras.data.base import DataSplit
from mmkeras.errors import MMKerasError
from mmkeras.evaluators.mutual_information import (
    MutualInformation,
    build_critic,
    estimate_bound,
    infonce_bound,
    nwj_bound,
    t_interval,
)
from mmkeras.model import MASKS

SCORES = np.array([[2.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, -1.0, 3.0]])


def logsumexp(x, axis=None):
    m = np.max(x, axis=axis, keepdims=True)
    return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(x - m), axis=axis))


def value(tensor):
    from keras import ops

    return float(ops.convert_to_numpy(tensor))


def test_infonce_against_numpy_and_by_hand():
    expected = np.mean(np.diag(SCORES) - logsumexp(SCORES, axis=1)) + np.log(3)
    assert value(infonce_bound(SCORES)) == pytest.approx(expected, rel=1e-6)
    # by hand: row 0: 2 - log(e^2 + 1 + e); row 1: 1 - log(2 + e); row 2: 3 - log(e + e^-1 + e^3)
    e = math.e
    rows = [2 - math.log(e**2 + 1 + e), 1 - math.log(2 + e), 3 - math.log(e + 1 / e + e**3)]
    assert value(infonce_bound(SCORES)) == pytest.approx(sum(rows) / 3 + math.log(3), rel=1e-6)
    # a constant critic certifies nothing
    assert value(infonce_bound(np.full((5, 5), 0.7))) == pytest.approx(0.0, abs=1e-6)


def test_nwj_against_numpy_and_by_hand():
    off = SCORES[~np.eye(3, dtype=bool)]
    expected = np.mean(np.diag(SCORES)) - np.exp(-1) * np.mean(np.exp(off))
    assert value(nwj_bound(SCORES)) == pytest.approx(expected, rel=1e-6)
    # by hand: mean diag 2; off-diagonal 0, 1, 0, 0, 1, -1 -> (3 + 2e + 1/e) / 6, times 1/e
    e = math.e
    assert value(nwj_bound(SCORES)) == pytest.approx(2 - (3 + 2 * e + 1 / e) / (6 * e), rel=1e-6)
    # T = 1 everywhere is the optimal critic of independent variables: exactly 0; T = 0 gives -1/e
    assert value(nwj_bound(np.ones((4, 4)))) == pytest.approx(0.0, abs=1e-6)
    assert value(nwj_bound(np.zeros((4, 4)))) == pytest.approx(-1 / e, rel=1e-6)


def test_infonce_never_exceeds_log_batch():
    rng = np.random.default_rng(0)
    for size in (2, 8, 64):
        for scale in (1.0, 30.0):
            assert value(infonce_bound(scale * rng.normal(size=(size, size)))) <= math.log(size) + 1e-6
        # a critic that picks out every positive perfectly reaches the ceiling, and no further
        assert value(infonce_bound(1e4 * np.eye(size))) == pytest.approx(math.log(size), rel=1e-6)
    # large logits stay finite in float32
    assert math.isfinite(value(nwj_bound(200.0 * np.eye(4) - 100.0)))


def test_t_interval_by_hand():
    # mean 2, s = 1, t(0.975, 2) = 4.302653 -> half width 4.302653 / sqrt(3) = 2.484138
    low, high = t_interval([1.0, 2.0, 3.0])
    assert (low, high) == pytest.approx((2 - 2.484138, 2 + 2.484138), abs=1e-6)
    assert t_interval([1.5]) is None


def gaussians(n, rho, d, seed):
    """x ~ N(0, I_d), y = rho x + sqrt(1 - rho^2) e: I(x; y) = -d/2 log(1 - rho^2)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    return x, rho * x + math.sqrt(1 - rho**2) * rng.normal(size=(n, d))


TRUE_MI = -2 / 2 * math.log(1 - 0.8**2)  # d = 2, rho = 0.8: 1.0217 nats


@pytest.mark.parametrize("estimator, fraction", [("infonce", 0.85), ("nwj", 0.7)])
def test_bounds_on_correlated_gaussians(estimator, fraction):
    assert TRUE_MI == pytest.approx(1.0217, abs=1e-4)
    got, batch = estimate_bound(
        gaussians(3000, 0.8, 2, 0), gaussians(1024, 0.8, 2, 1), estimator, steps=300, learning_rate=3e-3
    )
    # a lower bound: below the truth up to the held-out sampling error (tolerance 0.1 nats), and a
    # trained critic gets most of the way
    assert fraction * TRUE_MI < got < TRUE_MI + 0.1
    assert batch == 128


def test_infonce_saturates_at_log_batch_on_high_information():
    # d = 2, rho = 0.999: I = 6.21 nats, far above log 8 = 2.08
    got, batch = estimate_bound(
        gaussians(2000, 0.999, 2, 0),
        gaussians(512, 0.999, 2, 1),
        "infonce",
        steps=200,
        batch_size=8,
        learning_rate=3e-3,
    )
    assert batch == 8
    assert 0.8 * math.log(8) < got <= math.log(8) + 1e-6


@pytest.mark.parametrize("critic", ["separable", "concat"])
def test_critic_scores_every_pairing(critic):
    from keras import ops

    model = build_critic(critic, hidden_units=[8], embedding_dim=4, seed=0)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 3)).astype("float32"), rng.normal(size=(5, 2)).astype("float32")
    scores = ops.convert_to_numpy(model([a, b]))
    assert scores.shape == (5, 5) and scores.dtype == np.float32
    # entry (i, j) is the critic of the pair (a_i, b_j) alone
    for i, j in ((0, 0), (1, 3), (4, 2)):
        alone = ops.convert_to_numpy(model([a[i : i + 1], b[j : j + 1]]))
        assert alone[0, 0] == pytest.approx(scores[i, j], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("estimator", ["infonce", "nwj"])
def test_independent_variables_give_about_zero(estimator):
    x, _ = gaussians(3000, 0.0, 2, 0)
    y, _ = gaussians(3000, 0.0, 2, 1)
    x_test, _ = gaussians(1024, 0.0, 2, 2)
    y_test, _ = gaussians(1024, 0.0, 2, 3)
    got, _ = estimate_bound((x, y), (x_test, y_test), estimator, steps=200, learning_rate=3e-3)
    assert abs(got) < 0.05


def _shifted(n, mapping, seed):
    """x = 3 onehot(mapping[y]) + noise and y one-hot: the label is in x, but which class goes where
    depends on ``mapping`` (like voices heard only in the test split)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=n)
    x = 3.0 * np.eye(4)[np.asarray(mapping)[labels]] + 0.3 * rng.normal(size=(n, 4))
    return x.astype("float32"), np.eye(4, dtype="float32")[labels]


def test_critic_chosen_on_held_out_rows_of_the_test_distribution():
    train, test = _shifted(2000, [0, 1, 2, 3], 0), _shifted(1000, [1, 0, 3, 2], 1)
    kwargs = dict(estimator="infonce", steps=150, learning_rate=5e-3)
    last = estimate_bound(train, test, **kwargs)[0]
    on_train = estimate_bound(train, test, validation_fraction=0.2, **kwargs)[0]
    on_test, batch = estimate_bound(train, test, validation_fraction=0.2, select_on="test", **kwargs)
    # trained on one mapping, the critic is confidently wrong on the other: far below 0 ...
    assert last < -1.0 and on_train < -1.0
    # ... (-16.6 and -16.1 measured) unless it is chosen on rows of the test split, where a critic that
    # does no harm wins (the untrained one scores about 0; 0.15 measured), still a valid lower bound
    assert -0.1 < on_test < math.log(4) and batch == 128
    # on data like the training rows, the chosen critic is as good as the last one (I = log 4 = 1.386)
    same = _shifted(1000, [0, 1, 2, 3], 2)
    chosen = estimate_bound(train, same, validation_fraction=0.2, **kwargs)[0]
    assert chosen == pytest.approx(math.log(4), abs=0.1)
    with pytest.raises(ValueError, match="select_on must be 'train' or 'test', got 'val'"):
        estimate_bound(train, same, validation_fraction=0.2, select_on="val")
    with pytest.raises(ValueError, match="validation_fraction must be in \\[0, 1\\), got 1.0"):
        MutualInformation(validation_fraction=1.0)


# -- the evaluator ------------------------------------------------------------------------------


class StubModel:
    """Represents one modality by its input, so the test sets the information content."""

    def __init__(self, modalities):
        self.modalities, self.name = list(modalities), "stub"

    def encode(self, inputs, modalities=None, batch_size=512):
        assert set(inputs[MASKS]) == set(self.modalities) and len(modalities) == 1
        return np.asarray(inputs[modalities[0]], np.float32)


def split(n, seed):
    """a = [u, 3 onehot(y) + noise]; b = [0.8 u + 0.6 e, noise]: I(a; b) = 1.02 nats, I(a; y) = log 4,
    I(b; y) = 0. b is missing on the last quarter of the rows."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 4
    u = rng.normal(size=(n, 2))
    a = np.concatenate([u, 3.0 * np.eye(4)[labels] + 0.3 * rng.normal(size=(n, 4))], axis=1)
    b = np.concatenate([0.8 * u + 0.6 * rng.normal(size=(n, 2)), rng.normal(size=(n, 4))], axis=1)
    mask_b = (np.arange(n) < 3 * n // 4).astype("float32")
    return DataSplit({"a": a.astype("float32"), "b": b.astype("float32")}, labels, {"b": mask_b})


def test_evaluator_end_to_end(tmp_path):
    ev = MutualInformation(estimators=["infonce"], steps=100, learning_rate=5e-3, seeds=2)
    res = ev.evaluate(StubModel(["a", "b"]), {"train": split(2000, 0), "test": split(1024, 1)}, tmp_path)
    assert list(res["estimates"]) == ["a; label", "b; label", "a; b"]
    assert res["rows"] == {
        "a; label": {"train": 2000, "test": 1024},
        "b; label": {"train": 1500, "test": 768},
        "a; b": {"train": 1500, "test": 768},
    }
    assert res["label_entropy_nats"] == pytest.approx(math.log(4))
    a_label, b_label, a_b = (res["estimates"][k]["infonce"] for k in res["estimates"])
    assert 0.85 * math.log(4) < a_label["nats"] < math.log(4) + 0.05
    # no information: about 0, a little below where the critic fits the training rows' noise
    assert abs(b_label["nats"]) < 0.1
    assert 0.8 * TRUE_MI < a_b["nats"] < TRUE_MI + 0.1
    for est in (a_label, b_label, a_b):
        assert len(est["runs_nats"]) == 2 and est["nats"] == pytest.approx(np.mean(est["runs_nats"]))
        assert est["bits"] == pytest.approx(est["nats"] / math.log(2))
        low, high = est["ci95_nats"]
        # two seeds: mean +- t(0.975, 1) = 12.706 x |r1 - r2| / 2
        half = 12.7062 * abs(est["runs_nats"][0] - est["runs_nats"][1]) / 2
        assert (low, high) == pytest.approx((est["nats"] - half, est["nats"] + half), abs=1e-4)
        assert est["ci95_bits"] == pytest.approx([low / math.log(2), high / math.log(2)])
        assert est["limit_nats"] == pytest.approx(math.log(128))
    text = ev.report(res)
    assert "| I(·; ·) | infonce (nats) | infonce (bits) |" in text
    assert f"| a; b | {a_b['nats']:.3f} [" in text
    assert "InfoNCE cannot exceed log(batch size) = 4.85 nats" in text
    assert "label entropy H(y) = 1.386 nats" in text


def test_evaluator_pairs_and_errors(tmp_path):
    model = StubModel(["a", "b"])
    with pytest.raises(MMKerasError, match="mutual_information: pairs name 'c', not a modality of the model"):
        MutualInformation(pairs=[["a", "c"]]).evaluate(model, {"train": split(8, 0), "test": split(8, 1)}, tmp_path)
    with pytest.raises(MMKerasError, match="mutual_information needs a train split and a test or validation split"):
        MutualInformation().evaluate(model, {"train": split(8, 0)}, tmp_path)


@pytest.mark.parametrize(
    "params, message",
    [
        (
            {"estimators": ["mine"]},
            "mutual_information: estimators must be a non-empty list of ['infonce', 'nwj'], got ['mine']",
        ),
        ({"pairs": "some"}, "mutual_information: pairs must be 'all' or a list of [a, b] pairs, got 'some'"),
        ({"pairs": [["a", "a"]]}, "mutual_information: each pair must name two different modalities, got ['a', 'a']"),
        ({"critic": "bilinear"}, "mutual_information: critic must be one of ['separable', 'concat'], got 'bilinear'"),
        ({"steps": 0}, "mutual_information: steps must be at least 1, got 0"),
        ({"batch_size": 1}, "mutual_information: batch_size must be at least 2 (a bound needs negatives), got 1"),
        ({"learning_rate": 0.0}, "mutual_information: learning_rate must be positive, got 0.0"),
        ({"hidden_units": [8, 0]}, "mutual_information: hidden_units must be positive, got [8, 0]"),
        ({"max_rows": 1}, "mutual_information: max_rows must be at least 2 (or null for all rows), got 1"),
        ({"pairs": [], "labels": False}, "mutual_information: nothing to estimate: pairs is empty and labels is false"),
    ],
)
def test_parameter_errors(params, message):
    with pytest.raises(ValueError) as err:
        MutualInformation(**params)
    assert str(err.value) == message
