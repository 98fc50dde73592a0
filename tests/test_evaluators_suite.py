"""The knn, regression_probe and retrieval evaluators and the subset heat map, on representations
with a known answer: perfectly aligned, random and shuffled modalities."""

import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from mmkeras.data.base import DataSplit
from mmkeras.errors import MMKerasError
from mmkeras.model import MASKS

NUM_CLASSES = 4


class StubModel:
    """A model whose representation of a subset is the mean of the subset's inputs: the inputs
    are the representations, so each test chooses the geometry it needs."""

    def __init__(self, modalities, name="stub"):
        self.modalities, self.name = list(modalities), name
        self.calls = []

    def encode(self, inputs, modalities=None, batch_size=512):
        chosen = list(modalities or [k for k in inputs if k != MASKS])
        self.calls.append(chosen)
        return np.mean([np.asarray(inputs[m], np.float32) for m in chosen], axis=0)


def classes_split(n, seed, b="aligned"):
    """Modality a is its class centre + small noise; b is the same (aligned), independent noise
    (random), or a's rows in another order (shuffled)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, size=n)
    centres = np.random.default_rng(123).normal(size=(NUM_CLASSES, 8)) * 4.0
    a = centres[labels] + 0.1 * rng.normal(size=(n, 8))
    if b == "aligned":
        other = centres[labels] + 0.1 * rng.normal(size=(n, 8))
    elif b == "random":
        other = rng.normal(size=(n, 8)) * 4.0
    else:
        other = a[rng.permutation(n)]
    return DataSplit({"a": a.astype("float32"), "b": other.astype("float32")}, labels)


# -- knn --------------------------------------------------------------------------------------


def brute_force_knn(train, labels, queries, k, metric):
    if metric == "cosine":
        t = train / np.linalg.norm(train, axis=1, keepdims=True)
        q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        distance = -(q @ t.T)
    else:
        distance = ((queries[:, None, :] - train[None, :, :]) ** 2).sum(-1)
    out = []
    for row in distance:
        nearest = labels[np.argsort(row, kind="stable")[:k]]
        counts = Counter(nearest.tolist())
        top = max(counts.values())
        out.append(next(c for c in nearest.tolist() if counts[c] == top))  # tie: the nearest tied class
    return np.array(out)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("k", [1, 4, 7])
def test_knn_predict_matches_a_brute_force_vote(metric, k):
    from mmkeras.evaluators.knn import knn_predict

    rng = np.random.default_rng(k)
    train = rng.normal(size=(60, 5))
    labels = rng.integers(0, 3, size=60)
    queries = rng.normal(size=(25, 5))
    got = knn_predict(train, labels, queries, k, metric, chunk_size=7)  # chunks of 7 cross the 25 queries
    np.testing.assert_array_equal(got, brute_force_knn(train, labels, queries, k, metric))


def test_knn_aligned_modalities_score_perfectly_and_a_random_one_near_chance(tmp_path):
    from mmkeras.evaluators.knn import KNN

    model = StubModel(["a", "b"])
    data = {"train": classes_split(200, 1, b="random"), "test": classes_split(120, 2, b="random")}
    results = KNN(k=5).evaluate(model, data, tmp_path / "figures")
    assert list(results["accuracy"]) == ["complete", "a", "b"]
    assert results["accuracy"]["a"] == 1.0  # a alone lands among the complete ones' classes
    assert results["accuracy"]["b"] < 0.5  # chance is about 0.25
    aligned = {"train": classes_split(200, 1), "test": classes_split(120, 2)}
    results = KNN(k=5, metric="euclidean").evaluate(model, aligned, tmp_path / "figures")
    assert results["accuracy"] == {"complete": 1.0, "a": 1.0, "b": 1.0}
    assert results["chance"] == pytest.approx(np.bincount(aligned["test"].labels).max() / 120)


def test_knn_shuffled_modality_falls_to_chance_and_each_fits_per_subset(tmp_path):
    from mmkeras.evaluators.knn import KNN

    model = StubModel(["a", "b"])
    data = {"train": classes_split(200, 1, b="shuffled"), "test": classes_split(160, 2, b="shuffled")}
    each = KNN(k=3, train_on="each", subsets=["a", "b"]).evaluate(model, data, tmp_path)
    assert each["accuracy"]["a"] == 1.0
    assert 0.1 < each["accuracy"]["b"] < 0.45  # b's rows carry other rows' classes
    # with neighbours from b itself (each), the training rows' b are encoded with b alone
    assert ["b"] in model.calls and each["train_on"] == "each"


def test_knn_uses_complete_training_rows_and_present_test_rows(tmp_path):
    from mmkeras.evaluators.knn import KNN

    train, test = classes_split(100, 1), classes_split(50, 2)
    b_missing = np.ones(100, "float32")
    b_missing[:30] = 0
    a_missing = np.ones(50, "float32")
    a_missing[:20] = 0
    data = {
        "train": DataSplit(train.inputs, train.labels, {"b": b_missing}),
        "test": DataSplit(test.inputs, test.labels, {"a": a_missing}),
    }
    results = KNN(k=1).evaluate(StubModel(["a", "b"]), data, tmp_path)
    assert results["train_rows"] == {"complete": 70, "a": 70, "b": 70}
    assert results["test_rows"] == {"complete": 30, "a": 30, "b": 50}
    each = KNN(k=1, train_on="each", max_train=50).evaluate(StubModel(["a", "b"]), data, tmp_path)
    assert each["train_rows"] == {"complete": 50, "a": 50, "b": 50}


def test_knn_writes_a_heat_map_and_a_report(tmp_path):
    from mmkeras.evaluators.knn import KNN

    figures = tmp_path / "figures"
    knn = KNN(k=5, filename="knn.png")
    results = knn.evaluate(
        StubModel(["a", "b"], name="gmc"), {"train": classes_split(80, 1), "test": classes_split(40, 2)}, figures
    )
    assert results["figure"] == "figures/knn.png"
    with Image.open(figures / "knn.png") as image:
        assert image.format == "PNG"
    report = knn.report(json.loads(json.dumps(results)))
    assert "| model | complete | a | b |" in report
    assert "| gmc | 100.00 | 100.00 | 100.00 |" in report
    assert "![5-NN accuracy over modality subsets](figures/knn.png)" in report


def test_knn_errors_name_the_problem(tmp_path):
    from mmkeras.evaluators.knn import KNN

    with pytest.raises(ValueError, match="knn: metric must be one of"):
        KNN(metric="manhattan")
    with pytest.raises(ValueError, match="knn: k must be at least 1"):
        KNN(k=0)
    with pytest.raises(ValueError, match="knn: subsets must be 'all', 'singles' or a list"):
        KNN(subsets="pairs")
    data = {"train": classes_split(20, 1), "test": classes_split(10, 2)}
    with pytest.raises(MMKerasError, match=r"knn: subset 'c' names unknown modalities \['c'\]"):
        KNN(subsets=["c"]).evaluate(StubModel(["a", "b"]), data, tmp_path)
    with pytest.raises(MMKerasError, match="knn needs a train split and a test or validation split"):
        KNN().evaluate(StubModel(["a", "b"]), {"train": data["train"]}, tmp_path)
    unlabelled = DataSplit(data["test"].inputs)
    with pytest.raises(MMKerasError, match="knn needs labelled data"):
        KNN().evaluate(StubModel(["a", "b"]), {"train": data["train"], "test": unlabelled}, tmp_path)


# -- regression_probe -------------------------------------------------------------------------


def regression_split(n, seed, b="random"):
    """a carries the target ``age`` linearly (plus a little noise); b is random or a's rows shuffled."""
    rng = np.random.default_rng(seed)
    age = rng.normal(40.0, 10.0, size=n)
    w = np.random.default_rng(7).normal(size=6)
    a = np.outer((age - 40.0) / 10.0, w) + 0.01 * rng.normal(size=(n, 6))
    other = rng.normal(size=(n, 6)) if b == "random" else a[rng.permutation(n)]
    return DataSplit({"a": a.astype("float32"), "b": other.astype("float32"), "age": age.astype("float32")[:, None]})


def test_ridge_fit_matches_the_normal_equations():
    from mmkeras.evaluators.regression_probe import RidgeFit

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 5)) * [1, 2, 3, 4, 5], rng.normal(size=40)
    alpha = 0.3
    xs = (x - x.mean(0)) / (x.std(0) + 1e-8)
    w = np.linalg.solve(xs.T @ xs + 40 * alpha * np.eye(5), xs.T @ (y - y.mean()))
    fit = RidgeFit(x, y)
    np.testing.assert_allclose(fit.weights(alpha), w, rtol=1e-8)
    np.testing.assert_allclose(fit.predict(x[:3], alpha), xs[:3] @ w + y.mean(), rtol=1e-8)


def test_regression_reads_the_target_from_the_informative_modality_only(tmp_path):
    from mmkeras.evaluators.regression_probe import RegressionProbe

    data = {"train": regression_split(300, 1), "test": regression_split(100, 2)}
    model = StubModel(["a", "b"])
    results = RegressionProbe(target="age", subsets="singles", train_on="each").evaluate(model, data, tmp_path)
    a, b = results["subsets"]["a"], results["subsets"]["b"]
    assert a["pearson"] > 0.999 and a["mae"] < 0.05 * a["baseline_mae"]
    assert abs(b["pearson"]) < 0.3 and b["mae"] > 0.8 * b["baseline_mae"]
    y = data["test"].inputs["age"][:, 0]
    assert b["baseline_mae"] == pytest.approx(np.mean(np.abs(y - data["train"].inputs["age"].mean())), rel=1e-5)
    # noise-free features: the weakest penalty wins on the validation rows
    assert a["alpha"] == 1e-4 and list(results["subsets"]) == ["complete", "a", "b"]
    # one regressor fitted on complete observations (the mean of a and b here) still ranks a's rows right
    complete = RegressionProbe(target="age", subsets=["a"]).evaluate(model, data, tmp_path)
    assert complete["subsets"]["a"]["pearson"] > 0.99 and complete["train_on"] == "complete"


def test_regression_on_shuffled_rows_and_on_labels(tmp_path):
    from mmkeras.evaluators.regression_probe import RegressionProbe, pearson

    data = {"train": regression_split(300, 1, b="shuffled"), "test": regression_split(100, 2, b="shuffled")}
    each = RegressionProbe(target="age", train_on="each", subsets=["b"]).evaluate(StubModel(["a", "b"]), data, tmp_path)
    assert abs(each["subsets"]["b"]["pearson"]) < 0.3
    labelled = {"train": classes_split(200, 1), "test": classes_split(80, 2)}
    results = RegressionProbe().evaluate(StubModel(["a", "b"]), labelled, tmp_path)
    assert results["target"] == "label" and results["subsets"]["complete"]["pearson"] > 0.9
    assert pearson(np.ones(4), np.arange(4)) is None


def test_regression_report_and_errors(tmp_path):
    from mmkeras.evaluators.regression_probe import RegressionProbe

    data = {"train": regression_split(60, 1), "test": regression_split(30, 2)}
    probe = RegressionProbe(target="age", subsets=["a"])
    results = json.loads(json.dumps(probe.evaluate(StubModel(["a", "b"]), data, tmp_path)))
    report = probe.report(results)
    assert "| modalities | MAE | Pearson r | baseline MAE | test rows |" in report
    assert f"| a | {results['subsets']['a']['mae']:.4g} | {results['subsets']['a']['pearson']:.3f} |" in report
    with pytest.raises(MMKerasError, match="target 'a' is one of the model's modalities"):
        RegressionProbe(target="a").evaluate(StubModel(["a", "b"]), data, tmp_path)
    with pytest.raises(
        MMKerasError, match=r"target 'height' is not in the train split; use 'label' or one of \['age'\]"
    ):
        RegressionProbe(target="height").evaluate(StubModel(["a", "b"]), data, tmp_path)
    wide = {k: DataSplit({**s.inputs, "pair": np.zeros((len(s), 2))}) for k, s in data.items()}
    with pytest.raises(MMKerasError, match=r"shape \[N\] or \[N, 1\]\); got dtype float64 and shape \[60, 2\]"):
        RegressionProbe(target="pair").evaluate(StubModel(["a", "b"]), wide, tmp_path)
    with pytest.raises(MMKerasError, match="target 'label' but the train split has no labels"):
        RegressionProbe().evaluate(StubModel(["a", "b"]), data, tmp_path)
    with pytest.raises(ValueError, match="validation_fraction must be in"):
        RegressionProbe(validation_fraction=1.0)


# -- retrieval --------------------------------------------------------------------------------


def brute_force_ranks(queries, gallery):
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    order = np.argsort(-(q @ g.T), axis=1)
    return np.array([int(np.flatnonzero(order[i] == i)[0]) + 1 for i in range(len(q))])


def test_true_match_ranks_match_a_full_sort_across_chunks():
    from mmkeras.evaluators.retrieval import true_match_ranks

    rng = np.random.default_rng(0)
    queries, gallery = rng.normal(size=(50, 6)), rng.normal(size=(50, 6))
    gallery[:10] = queries[:10] + 0.01 * rng.normal(size=(10, 6))
    ranks = true_match_ranks(queries, gallery, chunk_size=7)
    np.testing.assert_array_equal(ranks, brute_force_ranks(queries, gallery))
    assert np.all(ranks[:10] == 1)
    # collapsed representations: every gallery row ties with the match, and ties count against it
    assert np.all(true_match_ranks(np.ones((5, 3)), np.ones((5, 3))) == 5)


def test_retrieval_aligned_shuffled_and_random_modalities(tmp_path):
    from mmkeras.evaluators.retrieval import Retrieval

    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 8)).astype("float32")
    perm = rng.permutation(200)
    split = DataSplit({"a": a, "b": a + 0.01 * rng.normal(size=a.shape).astype("float32"), "c": a[perm]})
    results = Retrieval(chunk_size=64).evaluate(StubModel(["a", "b", "c"]), {"test": split}, tmp_path / "figures")
    pairs = results["pairs"]
    assert sorted(pairs) == ["a->b", "a->c", "b->a", "b->c", "c->a", "c->b"]
    for aligned in ("a->b", "b->a"):
        assert pairs[aligned]["recall@1"] == 1.0 and pairs[aligned]["median_rank"] == 1.0
    expected = brute_force_ranks(a, a[perm])  # shuffled: the match is row i, the geometry says row perm^-1(i)
    assert pairs["a->c"]["recall@5"] == pytest.approx(np.mean(expected <= 5))
    assert pairs["a->c"]["median_rank"] == pytest.approx(np.median(expected))
    assert pairs["a->c"]["recall@10"] < 0.2  # chance is 10 / 200
    assert pairs["a->c"]["gallery_size"] == 200
    with Image.open(tmp_path / "figures" / "retrieval.png") as image:
        assert image.format == "PNG"
    report = Retrieval().report(json.loads(json.dumps(results)))
    assert "| query | gallery | R@1 | R@5 | R@10 | median rank | gallery size |" in report
    assert "| a | b | 100.00 | 100.00 | 100.00 | 1 | 200 |" in report
    assert "(figures/retrieval.png)" in report


def test_retrieval_uses_rows_where_both_are_present_and_checks_its_inputs(tmp_path):
    from mmkeras.evaluators.retrieval import Retrieval

    a = np.random.default_rng(1).normal(size=(40, 4)).astype("float32")
    mask = np.ones(40, "float32")
    mask[:15] = 0
    split = DataSplit({"a": a, "b": a.copy()}, masks={"b": mask})
    results = Retrieval(max_rows=20).evaluate(StubModel(["a", "b"]), {"test": split}, tmp_path)
    assert results["pairs"]["a->b"]["gallery_size"] == 20 and results["pairs"]["a->b"]["recall@1"] == 1.0
    with pytest.raises(MMKerasError, match="retrieval needs at least two modalities"):
        Retrieval().evaluate(StubModel(["a"]), {"test": split}, tmp_path)
    with pytest.raises(MMKerasError, match="retrieval: no 'test' or validation split; have \\['train'\\]"):
        Retrieval().evaluate(StubModel(["a", "b"]), {"train": split}, tmp_path)
    with pytest.raises(ValueError, match="ks must be a non-empty list of positive integers"):
        Retrieval(ks=[0, 5])


# -- heat map ---------------------------------------------------------------------------------


def test_subset_heatmap_takes_floats_and_mean_records(tmp_path):
    from mmkeras.evaluators.plots import score_of, subset_heatmap, subset_matrix

    runs = {
        "gmc": {"complete": 0.99, "image": 0.97, "sound": 0.8},
        "clip (downstream)": {"complete": {"mean": 0.95, "std": 0.01}, "label": {"mean": 0.5, "std": 0.0}},
    }
    columns, values = subset_matrix(runs, 100.0)
    assert columns == ["complete", "image", "sound", "label"]
    np.testing.assert_allclose(values, [[99.0, 97.0, 80.0, np.nan], [95.0, np.nan, np.nan, 50.0]])
    path = subset_heatmap(runs, tmp_path / "subsets.png", "accuracy over subsets")
    with Image.open(path) as image:
        assert image.format == "PNG"
        wide = image.size[0]
    path = subset_heatmap({"gmc": {"complete": 0.99}}, tmp_path / "one.png", "one model")
    with Image.open(path) as image:
        assert image.size[0] < wide  # one column: a narrower figure
    assert score_of({"mean": 0.5}) == 0.5 and score_of(None) is None and score_of(0.25) == 0.25
    with pytest.raises(ValueError, match="results_by_model is empty"):
        subset_heatmap({}, tmp_path / "x.png", "t")


def test_matrix_heatmap_checks_its_labels(tmp_path):
    from mmkeras.evaluators.plots import matrix_heatmap

    with pytest.raises(ValueError, match=r"shape \(2, 2\), but there are 2 row and 3 column labels"):
        matrix_heatmap(np.zeros((2, 2)), ["a", "b"], ["x", "y", "z"], tmp_path / "m.png", "t", "x", "y", "c")


def test_the_evaluators_are_registered():
    from mmkeras.registry import registry

    names = registry.names("evaluators")
    for name in ("knn", "regression_probe", "retrieval", "dca"):
        assert name in names
