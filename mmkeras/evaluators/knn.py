"""k-nearest-neighbour classification on frozen representations, over every modality subset."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from mmkeras.data.base import DataSplit
from mmkeras.errors import MMKerasError
from mmkeras.evaluators.base import Evaluator, modality_subsets, subset_name
from mmkeras.evaluators.downstream import _inputs, _present_rows
from mmkeras.params import PositiveInt

METRICS = ("cosine", "euclidean")
TRAIN_ON = ("complete", "each")


def knn_predict(
    train: np.ndarray,
    labels: np.ndarray,
    queries: np.ndarray,
    k: int,
    metric: str = "cosine",
    chunk_size: int = 1024,
) -> np.ndarray:
    """The majority label of each query's ``k`` nearest training rows.

    ``metric``: ``cosine`` (largest cosine similarity) or ``euclidean`` (smallest distance).
    Ties in the vote go to the tied class whose nearest member is closest to the query.
    Queries are scored ``chunk_size`` at a time, so memory is ``chunk_size`` x ``len(train)``.
    """
    if metric not in METRICS:
        raise ValueError(f"knn: metric must be one of {list(METRICS)}, got {metric!r}")
    train = np.asarray(train, np.float32)
    queries = np.asarray(queries, np.float32)
    labels = np.asarray(labels, np.int64)
    k = min(int(k), len(train))
    num_classes = int(labels.max()) + 1
    if metric == "cosine":
        train = train / np.maximum(np.linalg.norm(train, axis=1, keepdims=True), 1e-12)
        queries = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    else:
        train_sq = np.sum(train * train, axis=1)
    out = np.empty(len(queries), np.int64)
    for start in range(0, len(queries), chunk_size):
        q = queries[start : start + chunk_size]
        score = q @ train.T  # larger is nearer
        if metric == "euclidean":
            score = 2.0 * score - train_sq  # -||q - x||^2 up to the query's own norm
        nearest = np.argpartition(-score, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(score, nearest, axis=1), axis=1, kind="stable")
        neighbours = labels[np.take_along_axis(nearest, order, axis=1)]  # [chunk, k], nearest first
        onehot = neighbours[:, :, None] == np.arange(num_classes)
        votes = onehot.sum(axis=1)
        first = np.where(onehot.any(axis=1), onehot.argmax(axis=1), k)  # rank of each class's nearest member
        out[start : start + len(q)] = np.argmax(votes * (k + 1) - first, axis=1)
    return out


class KNN(Evaluator):
    """k-nearest-neighbour classification on frozen representations (``model.encode``), for
    every modality subset: a matrix of accuracies.

    ``train_on="complete"`` uses as neighbours the representations of the ``train`` split's
    complete observations (every modality present) and classifies the representations of each
    subset on the ``test`` split (else ``validation``), on the rows where the subset's
    modalities are present: how well a subset's representation lands among the complete
    ones. ``"each"`` takes the neighbours from the same subset on the training rows where it is
    present.

    k: neighbours per vote (majority; ties to the class with the nearest member).
    metric: ``cosine`` or ``euclidean``.
    subsets: ``"all"`` (every non-empty subset), ``"singles"`` (complete and each modality) or
    names like ``complete``, ``image``, ``image+sound``.
    max_train: at most this many training rows (drawn with ``seed``), or all.
    filename: the heat map of the accuracies written into the run's figures.
    """

    def __init__(
        self,
        k: PositiveInt = 5,
        metric: Literal["cosine", "euclidean"] = "cosine",
        subsets: list[str] | str = "all",
        train_on: Literal["complete", "each"] = "complete",
        max_train: PositiveInt | None = None,
        seed: int = 0,
        filename: str = "knn_subsets.png",
    ):
        if k < 1:
            raise ValueError(f"knn: k must be at least 1, got {k}")
        if metric not in METRICS:
            raise ValueError(f"knn: metric must be one of {list(METRICS)}, got {metric!r}")
        if train_on not in TRAIN_ON:
            raise ValueError(f"knn: train_on must be one of {list(TRAIN_ON)}, got {train_on!r}")
        if isinstance(subsets, str) and subsets not in ("all", "singles"):
            raise ValueError(f"knn: subsets must be 'all', 'singles' or a list of names, got {subsets!r}")
        if max_train is not None and max_train < 1:
            raise ValueError(f"knn: max_train must be at least 1 (or null for all rows), got {max_train}")
        if not filename.endswith(".png") or "/" in filename or "\\" in filename:
            raise ValueError(f"knn: filename must be a plain file name ending in .png, got {filename!r}")
        self.k, self.metric, self.subsets, self.train_on = int(k), metric, subsets, train_on
        self.max_train, self.seed, self.filename = max_train, int(seed), filename

    def evaluate(self, model: Any, data: dict[str, DataSplit], output_dir: Path) -> dict[str, Any]:
        train, test = data.get("train"), data.get("test") or data.get("validation")
        if train is None or test is None:
            raise MMKerasError(f"knn needs a train split and a test or validation split; got {sorted(data)}")
        if train.labels is None or test.labels is None:
            raise MMKerasError("knn needs labelled data; the data set gave no labels")
        mods = sorted(model.modalities)
        try:
            subsets = modality_subsets(mods, self.subsets)
        except ValueError as exc:
            raise MMKerasError(f"knn: {exc}") from None
        neighbours = None
        if self.train_on == "complete":
            neighbours = self._neighbours(model, train, mods, mods)
        accuracy, test_rows, train_rows = {}, {}, {}
        for subset in subsets:
            name = subset_name(subset, mods)
            z_train, y_train = neighbours or self._neighbours(model, train, mods, list(subset))
            rows = _present_rows(test, list(subset))
            if not rows.any() or not len(y_train):
                continue
            z = model.encode(_inputs(test, mods, rows), list(subset))
            predicted = knn_predict(z_train, y_train, z, self.k, self.metric)
            accuracy[name] = float(np.mean(predicted == test.labels[rows]))
            test_rows[name], train_rows[name] = int(rows.sum()), len(y_train)
        if not accuracy:
            raise MMKerasError("knn: no test row has the modalities of any requested subset present")
        model_name = str(getattr(model, "name", "model"))
        output_dir = Path(output_dir)
        from mmkeras.evaluators.plots import subset_heatmap

        subset_heatmap(
            {model_name: accuracy},
            output_dir / self.filename,
            f"{self.k}-NN accuracy ({self.metric}), neighbours from {self.train_on} observations",
        )
        return {
            "model": model_name,
            "accuracy": accuracy,
            "k": self.k,
            "metric": self.metric,
            "train_on": self.train_on,
            "chance": float(np.bincount(test.labels).max() / len(test.labels)),
            "train_rows": train_rows,
            "test_rows": test_rows,
            "figure": f"{output_dir.name}/{self.filename}",
        }

    def _neighbours(
        self, model: Any, split: DataSplit, mods: list[str], subset: list[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        rows = _present_rows(split, subset)
        if self.max_train is not None and rows.sum() > self.max_train:
            keep = np.random.default_rng(self.seed).choice(np.flatnonzero(rows), self.max_train, replace=False)
            rows = np.zeros_like(rows)
            rows[keep] = True
        if not rows.any():
            if set(subset) == set(mods):
                raise MMKerasError("knn: no training row has every modality present")
            return np.zeros((0, 1), np.float32), np.zeros(0, np.int64)
        return model.encode(_inputs(split, mods, rows), subset), np.asarray(split.labels)[rows]

    def report(self, results: dict[str, Any]) -> str:
        columns = list(results["accuracy"])
        measure = "similarity" if results["metric"] == "cosine" else "distance"
        cells = " | ".join(f"{100 * results['accuracy'][c]:.2f}" for c in columns)
        text = (
            f"{results['k']}-nearest-neighbour accuracy (%) by {results['metric']} {measure}, neighbours from the "
            f"{results['train_on']} training observations' representations, tested with only the observed "
            f"modalities in each column; chance {100 * results['chance']:.1f}%.\n\n"
            f"| model | {' | '.join(columns)} |\n|---|{'---|' * len(columns)}\n| {results['model']} | {cells} |\n"
        )
        if results.get("figure"):
            text += f"\n![{results['k']}-NN accuracy over modality subsets]({results['figure']})\n"
        return text
