"""The information measures against closed forms (XOR, copy, two independent bits, AND), the BROJA
solver against an independent alternating-minimisation reference, the O-information of copies and
parity, and the pid evaluator end to end on designed representations."""

import json

import numpy as np
import pytest
from PIL import Image

from mmkeras.data.base import DataSplit
from mmkeras.errors import MMKerasError
from mmkeras.evaluators.information import (
    broja_minimum,
    conditional_mutual_information,
    entropy,
    entropy_of_counts,
    mutual_information,
    o_information,
    pid,
    pid_of_distribution,
)
from mmkeras.evaluators.pid import PID
from mmkeras.model import MASKS

TABLE_TOL = 1e-6  # bits: exact tables, solver tolerance 1e-7 nats
BITS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])  # every (x1, x2) once: the uniform distribution


def table(y_of, ny):
    p = np.zeros((2, 2, ny))
    for x1, x2 in BITS:
        p[x1, x2, y_of(x1, x2)] += 0.25
    return p


def test_entropies_by_hand():
    assert entropy_of_counts(np.array([1, 1, 2])) == pytest.approx(1.5)
    x, y = BITS[:, 0], BITS[:, 1]
    assert entropy(x) == pytest.approx(1.0) and entropy(x, y) == pytest.approx(2.0)
    assert mutual_information(x, y) == pytest.approx(0.0, abs=1e-12)
    assert mutual_information(x, x) == pytest.approx(1.0)
    assert conditional_mutual_information(x, y, x ^ y) == pytest.approx(1.0)  # XOR: dependent given the parity
    # joint values (0,0) twice, (1,1) once, (1,0) once: probabilities 1/2, 1/4, 1/4 -> 1.5 bits
    assert entropy(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 0])) == pytest.approx(1.5)


@pytest.mark.parametrize(
    "name, y_of, ny, expected",
    [
        ("xor", lambda a, b: a ^ b, 2, dict(redundancy=0, unique1=0, unique2=0, synergy=1, total=1)),
        ("copy", None, 2, dict(redundancy=1, unique1=0, unique2=0, synergy=0, total=1)),
        # Williams-Beer I_min gives R = 1, S = 1 here; BROJA gives the two unique bits
        ("two bits", lambda a, b: 2 * a + b, 4, dict(redundancy=0, unique1=1, unique2=1, synergy=0, total=2)),
        # AND: R = I(X1;Y) = H(Y) - H(Y|X1) = (2 - 3/4 log2 3) - 1/2, U = 0, S = H(Y) - R = 1/2
        (
            "and",
            lambda a, b: a & b,
            2,
            dict(redundancy=1.5 - 0.75 * np.log2(3), unique1=0, unique2=0, synergy=0.5, total=2 - 0.75 * np.log2(3)),
        ),
    ],
)
def test_broja_decomposition_of_closed_form_tables(name, y_of, ny, expected):
    if name == "copy":  # X1 = X2 = Y, a uniform bit
        p = np.zeros((2, 2, 2))
        p[0, 0, 0] = p[1, 1, 1] = 0.5
    else:
        p = table(y_of, ny)
    got = pid_of_distribution(p)
    assert got == pytest.approx(expected, abs=TABLE_TOL)
    if name == "and":
        assert got["redundancy"] == pytest.approx(0.311278, abs=1e-6)


def test_the_and_gate_minimiser_is_the_diagonal_coupling():
    q, value = broja_minimum(table(lambda a, b: a & b, 2))
    # given y = 0 the marginals are (2/3, 1/3) each; U = 0 forces X1 = X2 there
    assert q[:, :, 0] == pytest.approx(np.array([[0.5, 0.0], [0.0, 0.25]]), abs=1e-6)
    assert q[1, 1, 1] == pytest.approx(0.25, abs=1e-6)
    assert value == pytest.approx(1.5 - 0.75 * np.log2(3), abs=TABLE_TOL)  # I_Q(Y;X1,X2) = I(X2;Y) + U1


def alternating_minimum(p, iterations=4000):
    """An independent reference: min over Delta_P of KL(Q || R(x1, x2) P(y)) by alternating
    R = Q(x1, x2) with per-y Sinkhorn projections (converges as 1/iterations)."""
    p = p / p.sum()
    p1, p2, py = p.sum(1), p.sum(0), p.sum((0, 1))
    q = (p1 / py)[:, None, :] * (p2 / py)[None, :, :] * py
    for _ in range(iterations):
        r = q.sum(2, keepdims=True) * py
        u, v = np.ones_like(p1), np.ones_like(p2)
        for _ in range(30):
            u = p1 / np.einsum("ijy,jy->iy", r, v)
            v = p2 / np.einsum("ijy,iy->jy", r, u)
        q = r * u[:, None, :] * v[None, :, :]
    outer = q.sum(2, keepdims=True) * py
    return float(np.sum(q * np.log2(q / outer)))


def test_broja_solver_agrees_with_alternating_minimisation_and_keeps_the_marginals():
    p = np.random.default_rng(3).random((3, 4, 3)) + 0.05
    p /= p.sum()
    q, value = broja_minimum(p)
    assert q.sum(1) == pytest.approx(p.sum(1), abs=1e-7) and q.sum(0) == pytest.approx(p.sum(0), abs=1e-7)
    assert value == pytest.approx(alternating_minimum(p, 1500), abs=1e-3)
    x = np.random.default_rng(4).choice(36, size=3000, p=p.ravel())
    x1, x2, y = np.unravel_index(x, p.shape)
    parts = pid(x1, x2, y)
    assert sum(parts[k] for k in ("redundancy", "unique1", "unique2", "synergy")) == pytest.approx(parts["total"])
    # R - S is the co-information, which the O-information of three variables equals
    assert parts["redundancy"] - parts["synergy"] == pytest.approx(o_information([x1, x2, y]), abs=1e-6)
    # the minimum over Delta_P is at most the value at P itself
    assert parts["unique1"] <= conditional_mutual_information(y, x1, x2) + 1e-9


def test_broja_on_a_20_x_20_x_10_table():
    p = np.random.default_rng(0).random((20, 20, 10)) ** 4
    p /= p.sum()
    q, _ = broja_minimum(p)
    assert q.sum(1) == pytest.approx(p.sum(1), abs=1e-7)
    parts = pid_of_distribution(p)
    assert min(parts.values()) >= 0
    small = p[:8, :8, :4] / p[:8, :8, :4].sum()  # a tighter tolerance moves the answer by less than the looser one
    assert pid_of_distribution(small, tolerance=1e-10) == pytest.approx(pid_of_distribution(small), abs=1e-6)


def test_xor_from_20000_samples():
    rng = np.random.default_rng(0)
    x1, x2 = rng.integers(0, 2, 20000), rng.integers(0, 2, 20000)
    parts = pid(x1, x2, x1 ^ x2)
    # plug-in estimates of 2 x 2 x 2 cells from 20,000 rows are off by ~1e-4 bits
    assert parts["synergy"] == pytest.approx(1.0, abs=2e-3)
    assert max(parts["redundancy"], parts["unique1"], parts["unique2"]) < 2e-3


def test_o_information_of_copies_and_parity():
    x1, x2 = BITS[:, 0], BITS[:, 1]
    assert o_information([x1, x1, x1]) == pytest.approx(1.0)
    assert o_information(np.stack([x1, x2, x1 ^ x2], axis=1)) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="o_information needs at least 3 variables, got 2"):
        o_information([x1, x2])


# -- the evaluator ---------------------------------------------------------------------------------


class StubModel:
    """encode gives the modality's input itself: each test designs the representations."""

    def __init__(self, modalities):
        self.modalities, self.name = list(modalities), "stub"

    def encode(self, inputs, modalities):
        assert len(modalities) == 1 and MASKS in inputs
        return np.asarray(inputs[modalities[0]], np.float32)


def noisy_codes(bits, rng):
    """A bit as a 4-d point near one of two far-apart centres."""
    centres = np.array([[0.0, 0, 0, 0], [5.0, 5, 0, 0]])
    return (centres[bits] + 0.1 * rng.normal(size=(len(bits), 4))).astype("float32")


def parity_split(n, modalities, seed=0):
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2, size=(n, len(modalities)))
    inputs = {m: noisy_codes(bits[:, i], rng) for i, m in enumerate(modalities)}
    return DataSplit(inputs, np.bitwise_xor.reduce(bits, axis=1))


def test_pid_evaluator_finds_synergy_in_an_xor_construction(tmp_path):
    data = {"train": parity_split(10, ["a", "b"]), "test": parity_split(3000, ["a", "b"], seed=1)}
    evaluator = PID(clusters=2, seeds=2)
    results = evaluator.evaluate(StubModel(["a", "b"]), data, tmp_path / "figures")
    pair = results["pairs"]["a+b"]
    assert pair["modalities"] == ["a", "b"] and results["rows"] == 3000
    assert pair["bits"]["synergy"]["mean"] == pytest.approx(1.0, abs=3e-3)
    assert pair["fraction"]["synergy"] > 0.99
    assert pair["baseline"]["total"] < 3e-3  # permuted labels: only the plug-in bias remains
    assert results["o_information"]["mean"] == pytest.approx(-1.0, abs=3e-3)  # R - S
    with Image.open(tmp_path / "figures" / "pid.png") as image:
        assert image.format == "PNG"
    report = evaluator.report(json.loads(json.dumps(results)))
    assert "| pair | redundancy | unique (first) | unique (second) | synergy | I(Z1,Z2;Y) | permuted |" in report
    # synergy 0.9995 of a plug-in total 0.9998 bits (rows not exactly balanced)
    assert "| a+b | 0.000 ± 0.000 (0%) | 0.000 ± 0.000 (0%) | 0.000 ± 0.000 (0%) | 0.999 ± 0.000 (100%) |" in report
    assert "![Partial information decomposition](figures/pid.png)" in report


def test_pid_evaluator_over_three_modalities_sees_parity_only_jointly(tmp_path):
    mods = ["a", "b", "c"]
    data = {"test": parity_split(4000, mods, seed=2)}
    results = PID(clusters=2, max_rows=3500).evaluate(StubModel(mods), data, tmp_path)
    assert list(results["pairs"]) == ["a+b", "a+c", "b+c"] and results["rows"] == 3500
    for pair in results["pairs"].values():  # any two bits say nothing about the parity of three
        assert pair["bits"]["total"]["mean"] < 3e-3
    # four variables, any three independent bits, the fourth their parity: 2 H(X) + 4 (1 - 3) = -2
    assert results["o_information"]["mean"] == pytest.approx(-2.0, abs=1e-2)


def test_pid_parameter_and_data_errors(tmp_path):
    with pytest.raises(ValueError, match=r"pid: modalities must name two or more different modalities, got \['a'\]"):
        PID(modalities=["a"])
    with pytest.raises(ValueError, match="pid: clusters must be at least 2, got 1"):
        PID(clusters=1)
    with pytest.raises(ValueError, match="pid: filename must be a plain file name ending in .png"):
        PID(filename="out/pid.png")
    data = {"test": parity_split(20, ["a", "b"])}
    with pytest.raises(MMKerasError, match=r"pid: 'c' is not a modality of the model \(modalities: a, b\)"):
        PID(modalities=["a", "c"]).evaluate(StubModel(["a", "b"]), data, tmp_path)
    with pytest.raises(MMKerasError, match="pid needs labelled data"):
        PID().evaluate(StubModel(["a", "b"]), {"test": DataSplit(data["test"].inputs)}, tmp_path)
    assert PID.check_recipe({"modalities": ["a", "x"]}, ["a", "b"]) == [
        ("modalities", "'x' is not a modality of this recipe (modalities: a, b)")
    ]


#: counts of (image code, sound code, digit) from k-means codes of a trained GMC on MHD (1,000 test rows):
#: a sparse table on which the Newton path leaves the feasible region, so the solver falls back
SPARSE_CODES = [
    (0, 2, 0, 2),
    (0, 3, 0, 1),
    (0, 4, 0, 1),
    (0, 5, 4, 1),
    (0, 6, 0, 3),
    (0, 7, 0, 91),
    (0, 9, 0, 2),
    (0, 9, 7, 6),
    (1, 2, 9, 2),
    (1, 4, 1, 25),
    (1, 5, 1, 1),
    (1, 5, 4, 1),
    (2, 0, 3, 1),
    (2, 1, 3, 91),
    (2, 3, 3, 1),
    (2, 6, 3, 1),
    (2, 7, 3, 2),
    (2, 8, 3, 4),
    (3, 0, 8, 2),
    (3, 1, 8, 1),
    (3, 2, 8, 1),
    (3, 3, 8, 2),
    (3, 6, 5, 1),
    (3, 6, 8, 2),
    (3, 8, 8, 89),
    (3, 9, 7, 1),
    (3, 9, 8, 3),
    (4, 3, 2, 94),
    (4, 3, 7, 1),
    (4, 4, 2, 3),
    (4, 7, 2, 1),
    (4, 7, 7, 1),
    (4, 9, 2, 2),
    (4, 9, 7, 23),
    (5, 2, 5, 8),
    (5, 2, 9, 1),
    (5, 4, 5, 7),
    (5, 6, 5, 81),
    (5, 8, 5, 1),
    (5, 9, 5, 1),
    (5, 9, 7, 3),
    (6, 4, 4, 2),
    (6, 5, 4, 96),
    (7, 2, 1, 2),
    (7, 2, 9, 2),
    (7, 3, 1, 4),
    (7, 4, 1, 57),
    (7, 4, 9, 1),
    (7, 5, 1, 5),
    (7, 6, 1, 5),
    (7, 9, 1, 1),
    (7, 9, 7, 4),
    (8, 0, 6, 98),
    (8, 3, 7, 1),
    (8, 5, 6, 1),
    (8, 6, 5, 1),
    (8, 9, 6, 1),
    (8, 9, 7, 1),
    (9, 2, 9, 78),
    (9, 3, 9, 1),
    (9, 4, 9, 6),
    (9, 6, 9, 8),
    (9, 7, 7, 2),
    (9, 8, 7, 1),
    (9, 8, 9, 1),
    (9, 9, 7, 56),
]  # noqa: E501


def test_a_sparse_table_of_codes_gives_a_valid_decomposition():
    p = np.zeros((10, 10, 10))
    for a, b, y, count in SPARSE_CODES:
        p[a, b, y] = count
    p /= p.sum()
    q, value = broja_minimum(p)
    assert np.isfinite(value) and q.min() >= -1e-9
    # Q stays in Delta_P: the fallback (alternating projections) holds the marginals to 1e-5
    np.testing.assert_allclose(q.sum(1), p.sum(1), atol=1e-5)
    np.testing.assert_allclose(q.sum(0), p.sum(0), atol=1e-5)
    parts = pid_of_distribution(p)
    assert all(np.isfinite(v) and v >= -1e-3 for v in parts.values()), parts
    assert sum(parts[k] for k in ("redundancy", "unique1", "unique2", "synergy")) == pytest.approx(parts["total"])
    # the minimum lies below the value of any other member of Delta_P, here P itself
    assert value <= _mi(p) + 1e-9


def _mi(p):
    """I(X1, X2; Y) in bits of a table p[x1, x2, y]."""
    outer, on = p.sum(2, keepdims=True) * p.sum((0, 1), keepdims=True), p > 0
    return float(np.sum(p[on] * np.log2(p[on] / outer[on])))


def test_pid_evaluator_decomposes_each_task_of_the_same_inputs(tmp_path, monkeypatch):
    import mmkeras.evaluators.pid as pid_module

    rng = np.random.default_rng(3)
    bits = rng.integers(0, 2, size=(2000, 2))
    inputs = {m: noisy_codes(bits[:, i], rng) for i, m in enumerate("ab")}
    labels = {"S": bits[:, 0] ^ bits[:, 1], "U1": bits[:, 0], "R": bits[:, 0] * 0}
    asked = []

    def fake_splits(evaluator, dataset, params, task, splits=("test",)):
        asked.append((evaluator, dataset, params, task, splits))
        return [DataSplit(inputs, labels[params["label"]])]

    monkeypatch.setattr(pid_module, "load_task_splits", fake_splits)

    class CountingModel(StubModel):
        calls = 0

        def encode(self, inputs, modalities):
            CountingModel.calls += 1
            return super().encode(inputs, modalities)

    evaluator = PID(
        clusters=2,
        tasks={"S": {"label": "S"}, "U1": {"label": "U1"}},
        dataset="toy",
        dataset_params={"size": 7, "label": "R"},
    )
    results = evaluator.evaluate(CountingModel(["a", "b"]), {}, tmp_path)
    assert asked == [("pid", "toy", {"size": 7, "label": "S"}, "S", ("test",))] + [
        ("pid", "toy", {"size": 7, "label": "U1"}, "U1", ("test",))
    ]
    assert CountingModel.calls == 2  # one encode per modality: the second task reuses the codes
    s, u1 = results["tasks"]["S"]["pairs"]["a+b"]["bits"], results["tasks"]["U1"]["pairs"]["a+b"]["bits"]
    assert s["synergy"]["mean"] == pytest.approx(1.0, abs=3e-3) and s["unique1"]["mean"] < 3e-3
    assert u1["unique1"]["mean"] == pytest.approx(1.0, abs=3e-3) and u1["synergy"]["mean"] < 3e-3
    report = evaluator.report(json.loads(json.dumps(results)))
    assert "| task | H(Y) | pair | redundancy |" in report
    # U1: H(bit 0) of these 2,000 rows is 0.999 bits, all of it unique to a
    assert "| U1 | 0.999 | a+b | 0.000 ± 0.000 (0%) | 0.999 ± 0.000 (100%) | 0.000 ± 0.000 (0%) |" in report
    assert "O-information of (a, b, label S)" in report
    with Image.open(tmp_path / "pid.png") as image:
        assert image.format == "PNG"
    with pytest.raises(ValueError, match="pid: tasks need a dataset"):
        PID(tasks={"S": {}})
