"""Delaunay Component Analysis: its geometry (Delaunay edges, spanning tree, HDBSCAN) against
independent computations, its known answers, and the evaluator."""

import json

import numpy as np
import pytest

from mmkeras.data.base import DataSplit
from mmkeras.errors import MMKerasError
from mmkeras.evaluators._delaunay import edge_lengths, euclidean_mst, hdbscan_labels, ray_edges
from mmkeras.evaluators.dca import DCA, delaunay_component_analysis, distinct_rows, f1_score

DIM = 8
CENTRES = np.random.default_rng(5).normal(size=(4, DIM)) * 6.0


def clusters(which, n, seed, dim=DIM):
    """n points around the chosen centres (unit-variance Gaussians, well separated)."""
    rng = np.random.default_rng(seed)
    return CENTRES[np.asarray(which)[rng.integers(0, len(which), n)], :dim] + rng.normal(size=(n, dim))


# -- geometry -------------------------------------------------------------------------------


def test_ray_edges_are_delaunay_edges_and_find_most_of_them_in_2d():
    spatial = pytest.importorskip("scipy.spatial")
    points = np.random.default_rng(0).uniform(size=(150, 2))
    triangles = spatial.Delaunay(points).simplices
    exact = {tuple(sorted((int(t[i]), int(t[j])))) for t in triangles for i, j in ((0, 1), (1, 2), (0, 2))}
    found, hits = ray_edges(points, rays=200, seed=0)
    found = {tuple(e) for e in found.tolist()}
    assert found <= exact  # every first Voronoi boundary a ray crosses is a Delaunay edge
    assert len(found) > 0.95 * len(exact)
    assert hits.sum() <= 150 * 200


def test_ray_edges_skip_coincident_points():
    points = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    found, _ = ray_edges(points, rays=64, seed=1)
    assert [0, 1] not in found.tolist()
    assert np.all(found[:, 0] < found[:, 1])


def brute_force_mst_length(points):
    """Kruskal over every pair, with a dict union-find: an independent spanning tree."""
    n = len(points)
    pairs = sorted((np.linalg.norm(points[i] - points[j]), i, j) for i in range(n) for j in range(i + 1, n))
    root = list(range(n))

    def find(i):
        while root[i] != i:
            i = root[i]
        return i

    total = 0.0
    for d, i, j in pairs:
        a, b = find(i), find(j)
        if a != b:
            root[a] = b
            total += d
    return total


def test_euclidean_mst_is_a_minimum_spanning_tree():
    points = np.random.default_rng(2).normal(size=(60, 5))
    tree = euclidean_mst(points)
    assert tree.shape == (59, 2)
    assert len(np.unique(tree)) == 60  # spans every point
    assert edge_lengths(points, tree).sum() == pytest.approx(brute_force_mst_length(points), rel=1e-9)


def test_hdbscan_labels_match_scikit_learns_hdbscan():
    cluster = pytest.importorskip("sklearn.cluster")
    rng = np.random.default_rng(3)
    points = np.concatenate(
        [
            c + rng.normal(size=(m, 3)) * s
            for c, m, s in zip(rng.normal(size=(5, 3)) * 3, (80, 40, 120, 25, 60), (0.4, 0.8, 1.0, 0.3, 1.5))
        ]
    )
    tree = euclidean_mst(points)
    for min_cluster_size in (5, 15):
        for single in (False, True):
            ours = hdbscan_labels(len(points), tree, edge_lengths(points, tree), min_cluster_size, single)
            theirs = (
                cluster.HDBSCAN(
                    min_cluster_size=min_cluster_size, min_samples=1, allow_single_cluster=single, copy=True
                )
                .fit(points)
                .labels_
            )
            assert np.array_equal(ours == -1, theirs == -1)
            pairs = set(zip(ours[ours >= 0].tolist(), theirs[theirs >= 0].tolist()))
            assert len(pairs) == len(set(ours[ours >= 0])) == len(set(theirs[theirs >= 0]))  # the same partition


def test_hdbscan_splits_two_blobs_and_keeps_one_blob_only_when_allowed():
    rng = np.random.default_rng(4)
    two = np.concatenate([rng.normal(size=(50, 2)), rng.normal(size=(50, 2)) + 20])
    tree = euclidean_mst(two)
    labels = hdbscan_labels(100, tree, edge_lengths(two, tree), 10)
    assert len(set(labels[:50])) == 1 and len(set(labels[50:])) == 1 and labels[0] != labels[50]
    one = rng.normal(size=(40, 2))
    tree = euclidean_mst(one)
    assert np.all(hdbscan_labels(40, tree, edge_lengths(one, tree), 40) == -1)  # the root is no candidate
    assert np.all(hdbscan_labels(40, tree, edge_lengths(one, tree), 40, allow_single_cluster=True) == 0)


# -- known answers ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference():
    return clusters([0, 1, 2, 3], 400, seed=0)


def test_evaluated_equal_to_reference_scores_one(reference):
    result = delaunay_component_analysis(reference, reference.copy(), rays=16)
    assert result["precision"] > 0.95 and result["recall"] > 0.95
    assert result["network_consistency"] == 1.0
    assert result["num_components"] == 4 and result["num_fundamental"] == 4
    shuffled = delaunay_component_analysis(reference, reference[::-1].copy(), rays=16)  # DCA ignores the pairing
    assert (shuffled["precision"], shuffled["recall"]) == (result["precision"], result["recall"])


def test_evaluated_from_the_same_distribution_scores_near_one(reference):
    result = delaunay_component_analysis(reference, clusters([0, 1, 2, 3], 400, seed=1), rays=16)
    assert result["precision"] > 0.95 and result["recall"] > 0.95
    assert 0.3 < result["network_quality"] < 0.7  # R-E edges are about half of the edges of a well-mixed graph


def test_evaluated_far_from_reference_scores_zero(reference):
    result = delaunay_component_analysis(reference, reference + 100.0, rays=16)
    assert result["precision"] == 0.0 and result["recall"] == 0.0
    assert result["network_quality"] == 0.0 and result["num_fundamental"] == 0


def test_evaluated_covering_half_of_the_clusters_has_half_recall(reference):
    result = delaunay_component_analysis(reference, clusters([0, 1], 400, seed=2), rays=16)
    covered = np.mean(np.linalg.norm(reference[:, None] - CENTRES[None, :2], axis=-1).min(axis=1) < 5.0)
    assert result["recall"] == pytest.approx(covered, abs=0.05) and 0.4 < result["recall"] < 0.6
    assert result["precision"] > 0.95
    assert result["num_fundamental"] == 2


def test_consistency_counts_points_by_hand():
    r = clusters([0], 30, seed=0)
    e = clusters([0], 10, seed=1)
    result = delaunay_component_analysis(r, e, rays=8, allow_single_cluster=True, min_cluster_size=20)
    assert result["network_consistency"] == pytest.approx(1 - 20 / 40)
    component = result["components"][0]
    assert (component["num_reference"], component["num_evaluated"]) == (30, 10)
    assert component["consistency"] == pytest.approx(0.5)
    assert result["precision"] == 1.0 and result["recall"] == 1.0


def test_every_score_and_f1_by_hand_on_a_line():
    """In one dimension the Delaunay graph is the path through the sorted points (and the spanning
    tree already holds it), so every DCA score can be counted by hand. Three blobs, far apart:
    A = R R E R E E R E (4 R, 4 E; of its 7 edges 5 join R to E), B = 6 R, C = 3 E (fewer than
    min_cluster_size 5: three outliers). Only A is fundamental (B's consistency is 0)."""
    spots = np.array([0.0, 1.1, 2.0, 3.2, 4.1, 5.3, 6.0, 7.2])
    in_r = np.array([c == "R" for c in "RREREERE"])
    r = np.concatenate([spots[in_r], 100 + np.array([0.0, 1.2, 2.1, 3.3, 4.0, 5.4])])[:, None]
    e = np.concatenate([spots[~in_r], 300 + np.array([0.0, 1.1, 2.3])])[:, None]
    result = delaunay_component_analysis(r, e, rays=8, min_cluster_size=5)
    assert result["precision"] == pytest.approx(4 / 7)  # A's 4 E of the 7
    assert result["recall"] == pytest.approx(4 / 10)  # A's 4 R of the 10
    assert result["f1"] == pytest.approx(8 / 17)  # 2 (4/7)(2/5) / (4/7 + 2/5)
    assert result["f1"] == f1_score(result["precision"], result["recall"])
    assert result["network_consistency"] == pytest.approx(1 - 3 / 17)
    assert result["network_quality"] == pytest.approx(5 / 12)  # A's 5 R-E edges of A's 7 and B's 5
    assert (result["num_components"], result["num_fundamental"]) == (2, 1)
    assert result["num_outliers"] == {"reference": 0, "evaluated": 3}
    a, b = result["components"]
    assert (a["num_reference"], a["num_evaluated"], a["consistency"]) == (4, 4, 1.0)
    assert a["quality"] == pytest.approx(5 / 7) and a["fundamental"]
    assert (b["num_reference"], b["num_evaluated"], b["quality"], b["fundamental"]) == (6, 0, 0.0, False)


def test_f1_is_the_harmonic_mean_of_precision_and_recall():
    assert f1_score(1.0, 1.0) == 1.0
    assert f1_score(0.0, 0.0) == 0.0 and f1_score(1.0, 0.0) == 0.0
    assert f1_score(0.9, 0.6) == pytest.approx(2 * 0.9 * 0.6 / 1.5)  # 0.72


def test_distinct_rows_rounds_before_deduplicating():
    points = np.array([[1.0, 0.0], [0.0, 1.0], [1.00001, 0.0], [0.0, 1.0], [0.5, 0.5], [0.50004, 0.5]])
    assert distinct_rows(points).tolist() == [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]  # 4 decimals, as GMC
    assert distinct_rows(points, decimals=5).tolist() == [
        [0.0, 1.0],
        [0.5, 0.5],
        [0.50004, 0.5],
        [1.0, 0.0],
        [1.00001, 0.0],
    ]


def test_thresholds_decide_what_is_fundamental(reference):
    e = clusters([0, 1, 2, 3], 100, seed=3)  # a quarter as many points: each component's consistency is about 0.4
    loose = delaunay_component_analysis(reference, e, rays=8)
    strict = delaunay_component_analysis(reference, e, rays=8, consistency_threshold=0.6)
    assert loose["recall"] > 0.95 and strict["recall"] == 0.0 and strict["precision"] == 0.0


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="differ in dimension: 8 and 3"):
        delaunay_component_analysis(np.zeros((5, 8)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"evaluated must be a non-empty 2-D array \[n, dim\]; got shape \[0, 8\]"):
        delaunay_component_analysis(np.zeros((5, 8)), np.zeros((0, 8)))
    with pytest.raises(ValueError, match="min_cluster_size must be at least 2"):
        delaunay_component_analysis(np.zeros((5, 8)), np.ones((5, 8)), min_cluster_size=1)


# -- the evaluator ----------------------------------------------------------------------------


class StubModel:
    """Complete observations are represented by modality a; one modality alone by its input."""

    modalities = ["a", "b", "c"]
    name = "stub"

    def encode(self, inputs, modalities=None, batch_size=512):
        chosen = modalities or self.modalities
        return np.asarray(inputs["a" if len(chosen) == 3 else chosen[0]], np.float32)


def test_the_evaluator_scores_an_aligned_a_far_and_a_half_covering_modality(tmp_path):
    a = clusters([0, 1, 2, 3], 300, seed=0)
    half = clusters([0, 1], 300, seed=1)
    split = DataSplit({"a": a + 0.01, "b": a + 100.0, "c": half})
    dca = DCA(max_points=250, rays=8)
    results = dca.evaluate(StubModel(), {"test": split}, tmp_path)
    scores = results["scores"]
    assert results["points"] == 250 and list(scores) == ["a", "b", "c"]
    assert scores["a"]["precision"] > 0.95 and scores["a"]["recall"] > 0.95
    assert scores["b"]["precision"] == 0.0 and scores["b"]["recall"] == 0.0
    assert scores["c"]["precision"] > 0.9 and 0.35 < scores["c"]["recall"] < 0.65
    report = dca.report(json.loads(json.dumps(results)))
    assert "| E | P | R | F1 | C | Q | E points | components | fundamental | outliers (R / E) |" in report
    s = scores["b"]
    assert f"| b | 0.000 | 0.000 | 0.000 | 1.000 | 0.000 | 250 | {s['num_components']} | 0 |" in report
    assert "8 rays per point" in report
    assert "(distinct)" not in report and "Table 2" in report  # the note on the GMC paper's 'DCA score'
    assert scores["a"]["f1"] == f1_score(scores["a"]["precision"], scores["a"]["recall"]) > 0.95


def test_the_evaluator_reduces_a_label_like_modality_to_its_distinct_points(tmp_path):
    """As GMC's DCA protocol does for the MHD label: E from c alone takes 4 values (one per
    cluster centre, up to float noise), so it is 4 points against 250 complete ones."""
    rng = np.random.default_rng(7)
    which = rng.integers(0, 4, 300)
    a = CENTRES[which] + rng.normal(size=(300, DIM))
    label = CENTRES[which] + rng.normal(size=(300, DIM)) * 1e-7
    split = DataSplit({"a": a, "b": a + 100.0, "c": label})
    dca = DCA(max_points=250, rays=8, modalities=["c"], deduplicate=["c"])
    results = dca.evaluate(StubModel(), {"test": split}, tmp_path)
    s = results["scores"]["c"]
    assert s["deduplicated"] and (s["num_reference"], s["num_evaluated"]) == (250, 4)
    assert s["precision"] == 1.0 and s["recall"] > 0.95  # each centre lies in its cluster of R
    assert s["network_consistency"] == pytest.approx(1 - 246 / 254)
    report = dca.report(json.loads(json.dumps(results)))
    assert "| 4 (distinct) |" in report and "E reduced to its distinct rows" in report
    kept = DCA(max_points=250, rays=8, modalities=["c"]).evaluate(StubModel(), {"test": split}, tmp_path)
    assert kept["scores"]["c"]["num_evaluated"] == 250 and not kept["scores"]["c"]["deduplicated"]  # the default


def test_the_evaluator_checks_its_inputs(tmp_path):
    split = DataSplit({m: clusters([0], 20, seed=0) for m in "abc"})
    with pytest.raises(MMKerasError, match=r"dca: modalities \['d'\] are not among the model's modalities"):
        DCA(modalities=["d"]).evaluate(StubModel(), {"test": split}, tmp_path)
    with pytest.raises(MMKerasError, match="dca: no 'test' or validation split"):
        DCA().evaluate(StubModel(), {"train": split}, tmp_path)
    with pytest.raises(ValueError, match=r"consistency_threshold must be in \[0, 1\)"):
        DCA(consistency_threshold=1.0)
    with pytest.raises(ValueError, match="max_points must be at least 2"):
        DCA(max_points=1)
    with pytest.raises(MMKerasError, match=r"dca: deduplicate names \['a'\], which are not among the evaluated"):
        DCA(modalities=["b"], deduplicate=["a"]).evaluate(StubModel(), {"test": split}, tmp_path)
    with pytest.raises(ValueError, match="deduplicate_decimals must be at least 0"):
        DCA(deduplicate_decimals=-1)
