"""The clustering evaluator: NMI and ARI against hand-computed values, k-means on well-separated blobs,
and the evaluator end to end on a stub model whose representations are its inputs."""

import math

import numpy as np
import pytest

from mmkeras.data.base import DataSplit
from mmkeras.errors import MMKerasError
from mmkeras.evaluators.clustering import (
    Clustering,
    adjusted_rand_index,
    contingency_table,
    kmeans,
    normalized_mutual_info,
)
from mmkeras.model import MASKS

# the worked example: classes 0,0,0,1,1,1 against clusters 0,0,1,1,2,2
TRUE6 = np.array([0, 0, 0, 1, 1, 1])
PRED6 = np.array([0, 0, 1, 1, 2, 2])


def test_contingency_table_of_the_worked_example():
    np.testing.assert_array_equal(contingency_table(TRUE6, PRED6), [[2, 1, 0], [0, 1, 2]])


def test_nmi_of_the_worked_example_by_hand():
    # H(U) = log 2, H(V) = log 3; I = 2 cells of p 1/3 with p_i p_j = 1/6 -> (2/3) log 2, the n=1 cells add 0
    expected = (2 / 3) * math.log(2) / ((math.log(2) + math.log(3)) / 2)
    assert expected == pytest.approx(0.515804, abs=1e-6)
    assert normalized_mutual_info(TRUE6, PRED6) == pytest.approx(expected, rel=1e-12)
    assert normalized_mutual_info(PRED6, TRUE6) == pytest.approx(expected, rel=1e-12)  # symmetric


def test_ari_of_the_worked_example_by_hand():
    # sum C(n_ij) = 1 + 1 = 2; sum C(a_i) = 3 + 3 = 6; sum C(b_j) = 1 + 1 + 1 = 3; C(6) = 15
    # E = 6 * 3 / 15 = 1.2; max = (6 + 3) / 2 = 4.5 -> (2 - 1.2) / (4.5 - 1.2) = 8 / 33
    assert adjusted_rand_index(TRUE6, PRED6) == pytest.approx(8 / 33, rel=1e-12)
    assert adjusted_rand_index(PRED6, TRUE6) == pytest.approx(8 / 33, rel=1e-12)


def test_identical_and_renamed_labelings_score_one():
    y = np.array([0, 0, 1, 1, 2, 2, 2, 3])
    renamed = np.array([7, 7, 3, 3, 0, 0, 0, 5])  # the same partition with other cluster ids
    for other in (y, renamed):
        assert normalized_mutual_info(y, other) == pytest.approx(1.0)
        assert adjusted_rand_index(y, other) == pytest.approx(1.0)


def test_degenerate_labelings():
    ones = np.zeros(5, int)
    singletons = np.arange(5)
    # both one cluster, or both all singletons: the partitions agree
    assert normalized_mutual_info(ones, ones) == 1.0 and adjusted_rand_index(ones, ones) == 1.0
    assert adjusted_rand_index(singletons, singletons) == 1.0
    # one cluster against anything else carries no information: NMI 0; ARI: sum C(n_ij) = 0 = E -> 0
    assert normalized_mutual_info(ones, singletons) == 0.0
    assert adjusted_rand_index(ones, singletons) == 0.0
    # a worse-than-chance pairing is negative: [0,0,1,1] vs [0,1,0,1]: index 0, E = 2 * 2 / 6, max 2
    assert adjusted_rand_index([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx((0 - 2 / 3) / (2 - 2 / 3))
    with pytest.raises(ValueError, match="clustering: the two labelings differ in length"):
        adjusted_rand_index([0, 1], [0, 1, 1])


def test_independent_random_labelings_score_near_zero():
    rng = np.random.default_rng(0)
    aris = [adjusted_rand_index(rng.integers(0, 5, 2000), rng.integers(0, 5, 2000)) for _ in range(5)]
    assert max(abs(a) for a in aris) < 0.005
    assert abs(np.mean(aris)) < 0.002
    # NMI is not chance-corrected, but 2000 rows in 5 x 5 cells leave little spurious information
    assert normalized_mutual_info(rng.integers(0, 5, 2000), rng.integers(0, 5, 2000)) < 0.01


def test_agrees_with_sklearn_on_random_labelings():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    for size, ka, kb in ((10, 2, 3), (50, 4, 4), (200, 6, 3)):
        a, b = rng.integers(0, ka, size), rng.integers(0, kb, size)
        assert normalized_mutual_info(a, b) == pytest.approx(metrics.normalized_mutual_info_score(a, b), abs=1e-12)
        assert adjusted_rand_index(a, b) == pytest.approx(metrics.adjusted_rand_score(a, b), abs=1e-12)


def blobs(per_blob=50, seed=0):
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), per_blob)
    return centres[labels] + 0.5 * rng.normal(size=(3 * per_blob, 2)), labels, centres


@pytest.mark.parametrize("seed", range(5))
def test_kmeans_recovers_three_separated_blobs_exactly(seed):
    x, labels, centres = blobs(seed=seed)
    assigned, found, inertia = kmeans(x, 3, seed=seed, chunk_size=16)  # chunks of 16 cross the 150 rows
    assert adjusted_rand_index(labels, assigned) == 1.0
    assert normalized_mutual_info(labels, assigned) == pytest.approx(1.0)
    # each centre found is its blob's sample mean; the inertia the within-blob sum of squares
    for c in range(3):
        members = x[labels == c]
        j = assigned[labels == c][0]
        np.testing.assert_allclose(found[j], members.mean(axis=0), atol=1e-12)
        assert np.linalg.norm(found[j] - centres[c]) < 0.3
    within = sum(((x[labels == c] - x[labels == c].mean(axis=0)) ** 2).sum() for c in range(3))
    assert inertia == pytest.approx(within, rel=1e-9)


def test_kmeans_is_seeded_and_checks_k():
    x, _, _ = blobs(per_blob=20)
    np.testing.assert_array_equal(kmeans(x, 4, seed=3)[0], kmeans(x, 4, seed=3)[0])
    # k = rows: every row its own cluster, inertia 0
    assigned, _, inertia = kmeans(x[:5], 5, seed=0)
    assert sorted(assigned.tolist()) == [0, 1, 2, 3, 4] and inertia == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match=r"clustering: kmeans needs 1 <= k <= rows, got k=7 for 5 rows"):
        kmeans(x[:5], 7)


# -- the evaluator ------------------------------------------------------------------------------


class StubModel:
    """Represents a subset by the mean of its inputs, so the test chooses the geometry."""

    def __init__(self, modalities):
        self.modalities, self.name = list(modalities), "stub"

    def encode(self, inputs, modalities=None, batch_size=512):
        assert set(inputs[MASKS]) == set(self.modalities)
        return np.mean([np.asarray(inputs[m], np.float32) for m in modalities], axis=0)


def split(n=120, seed=0):
    """Modality a sits at its class's corner (3 classes, far apart); b is noise carrying no class;
    b is missing on the last 20 rows."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    a = 8.0 * np.eye(8)[labels] + 0.2 * rng.normal(size=(n, 8))
    b = rng.normal(size=(n, 8))
    mask_b = np.ones(n, np.float32)
    mask_b[-20:] = 0
    return DataSplit({"a": a.astype("float32"), "b": b.astype("float32")}, labels, {"b": mask_b})


def test_evaluator_end_to_end(tmp_path):
    ev = Clustering(seeds=3)
    res = ev.evaluate(StubModel(["a", "b"]), {"train": split(seed=1), "test": split()}, tmp_path)
    assert list(res["nmi"]) == ["complete", "a", "b"]
    assert res["clusters"] == 3 and res["classes"] == 3 and res["seeds"] == 3
    assert res["rows"] == {"complete": 100, "a": 120, "b": 100}
    # a alone is the classes exactly, on every seed
    assert res["nmi"]["a"]["runs"] == pytest.approx([1.0, 1.0, 1.0])
    assert res["ari"]["a"] == {"mean": 1.0, "std": 0.0, "runs": [1.0, 1.0, 1.0]}
    # b is noise: near chance
    assert abs(res["ari"]["b"]["mean"]) < 0.05 and res["nmi"]["b"]["mean"] < 0.1
    assert len(res["nmi"]["b"]["runs"]) == 3
    assert res["nmi"]["b"]["std"] == pytest.approx(np.std(res["nmi"]["b"]["runs"]))
    assert (tmp_path / "clustering_subsets.png").stat().st_size > 0
    assert res["figure"] == f"{tmp_path.name}/clustering_subsets.png"
    text = ev.report(res)
    assert "| stub | complete | a | b |" in text
    assert "| ARI | " in text and "1.000 ± 0.000" in text
    assert "mean ± std over 3 k-means seeds" in text


def test_evaluator_clusters_max_rows_and_subset_names(tmp_path):
    ev = Clustering(subsets=["a"], clusters=6, seeds=1, max_rows=60, metric="euclidean")
    res = ev.evaluate(StubModel(["a", "b"]), {"test": split()}, tmp_path)
    assert list(res["nmi"]) == ["a"] and res["rows"] == {"a": 60} and res["clusters"] == 6
    # 6 clusters split the 3 classes: every cluster is pure, so NMI is high but ARI below 1
    assert res["nmi"]["a"]["mean"] > 0.7 and res["ari"]["a"]["mean"] < 1.0
    assert "one k-means seed" in ev.report(res)


def test_evaluator_errors(tmp_path):
    model = StubModel(["a", "b"])
    with pytest.raises(MMKerasError, match="clustering: subset 'c' names unknown modalities"):
        Clustering(subsets=["c"]).evaluate(model, {"test": split()}, tmp_path)
    unlabelled = DataSplit({"a": np.zeros((4, 2), "float32"), "b": np.zeros((4, 2), "float32")})
    with pytest.raises(MMKerasError, match="clustering needs labelled data"):
        Clustering().evaluate(model, {"test": unlabelled}, tmp_path)
    with pytest.raises(MMKerasError, match="clustering needs a test or validation split; got \\['train'\\]"):
        Clustering().evaluate(model, {"train": split()}, tmp_path)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"subsets": "some"}, "clustering: subsets must be 'all', 'singles' or a list of names, got 'some'"),
        ({"clusters": 0}, "clustering: clusters must be at least 1 (or null for the number of classes), got 0"),
        ({"metric": "manhattan"}, "clustering: metric must be one of ['cosine', 'euclidean'], got 'manhattan'"),
        ({"seeds": 0}, "clustering: seeds must be at least 1, got 0"),
        ({"max_rows": 1}, "clustering: max_rows must be at least 2 (or null for all rows), got 1"),
        ({"filename": "a/b.png"}, "clustering: filename must be a plain file name ending in .png, got 'a/b.png'"),
    ],
)
def test_parameter_errors(params, message):
    with pytest.raises(ValueError) as err:
        Clustering(**params)
    assert str(err.value) == message
