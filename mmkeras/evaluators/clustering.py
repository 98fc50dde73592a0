"""k-means clustering of frozen representations, scored against the labels by NMI and ARI, over modality subsets."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from mmkeras.data.base import DataSplit
from mmkeras.errors import MMKerasError
from mmkeras.evaluators.base import Evaluator, check_png_filename, labelled_test_split, modality_subsets, subset_name
from mmkeras.evaluators.downstream import _inputs, _present_rows
from mmkeras.params import PositiveInt

METRICS = ("cosine", "euclidean")


def contingency_table(labels_a: np.ndarray, labels_b: np.ndarray) -> np.ndarray:
    """``n[i, j]``: how many items have the ``i``-th distinct value of ``labels_a`` and the ``j``-th of ``labels_b``."""
    a = np.asarray(labels_a).ravel()
    b = np.asarray(labels_b).ravel()
    if len(a) != len(b):
        raise ValueError(f"clustering: the two labelings differ in length ({len(a)} and {len(b)})")
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    table = np.zeros((ia.max(initial=-1) + 1, ib.max(initial=-1) + 1), np.int64)
    np.add.at(table, (ia, ib), 1)
    return table


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-np.sum(p * np.log(p)))


def normalized_mutual_info(labels_true: np.ndarray, labels_pred: np.ndarray) -> float:
    """NMI with the arithmetic-mean normaliser: ``I(U; V) / ((H(U) + H(V)) / 2)`` from the contingency
    table (Strehl & Ghosh 2002; Vinh, Epps & Bailey 2010, "NMI_sum"; scikit-learn's default).

    Two labelings that each put everything in one cluster score 1 (nothing to disagree on); otherwise
    a labeling with no information (entropy 0) scores 0."""
    table = contingency_table(labels_true, labels_pred)
    if table.shape[0] == table.shape[1] == 1 or table.size == 0:
        return 1.0
    n = table.sum()
    rows, cols = table.sum(axis=1), table.sum(axis=0)
    nz = table > 0
    joint = table[nz] / n
    mi = float(np.sum(joint * (np.log(table[nz] * n) - np.log(np.outer(rows, cols)[nz]))))
    norm = 0.5 * (_entropy(rows) + _entropy(cols))
    if mi <= 0.0 or norm <= 0.0:
        return 0.0
    return float(min(mi / norm, 1.0))


def adjusted_rand_index(labels_true: np.ndarray, labels_pred: np.ndarray) -> float:
    """The Rand index corrected for chance (Hubert & Arabie 1985), from the contingency table ``n_ij``
    with row sums ``a_i``, column sums ``b_j`` and ``C(x) = x (x - 1) / 2`` pairs:

        ARI = (sum_ij C(n_ij) - E) / ((sum_i C(a_i) + sum_j C(b_j)) / 2 - E),
        E = sum_i C(a_i) sum_j C(b_j) / C(n).

    1 for identical partitions (up to renaming), about 0 for independent ones, negative below chance.
    Where the denominator is 0 (both labelings one cluster, or both all singletons) the partitions
    agree and the score is 1."""
    table = contingency_table(labels_true, labels_pred).astype(np.float64)
    n = table.sum()

    def pairs(x: np.ndarray | float) -> np.ndarray | float:
        return x * (x - 1.0) / 2.0

    index = float(np.sum(pairs(table)))
    sum_a, sum_b = float(np.sum(pairs(table.sum(axis=1)))), float(np.sum(pairs(table.sum(axis=0))))
    if n < 2:
        return 1.0
    expected = sum_a * sum_b / pairs(n)
    maximum = 0.5 * (sum_a + sum_b)
    if maximum == expected:
        return 1.0
    return float((index - expected) / (maximum - expected))


def _nearest(x: np.ndarray, x_sq: np.ndarray, centres: np.ndarray, chunk_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's nearest centre and squared distance to it, ``chunk_size`` rows at a time."""
    c_sq = np.sum(centres * centres, axis=1)
    labels = np.empty(len(x), np.int64)
    dist = np.empty(len(x), np.float64)
    for start in range(0, len(x), chunk_size):
        block = x[start : start + chunk_size]
        d = x_sq[start : start + chunk_size, None] - 2.0 * (block @ centres.T) + c_sq[None, :]
        labels[start : start + len(block)] = np.argmin(d, axis=1)
        dist[start : start + len(block)] = np.maximum(np.min(d, axis=1), 0.0)
    return labels, dist


def kmeans(
    x: np.ndarray,
    k: int,
    seed: int = 0,
    max_iter: int = 300,
    tol: float = 1e-6,
    chunk_size: int = 4096,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Lloyd's k-means from a k-means++ start (Arthur & Vassilvitskii 2007): the first centre is a
    uniform row, each next one a row drawn with probability proportional to its squared distance to
    the nearest centre so far. Iterates until no row changes cluster, the centres move less than
    ``tol`` (squared, relative to the data's variance) or ``max_iter``. A cluster left empty takes the
    row farthest from its centre. Distances are computed ``chunk_size`` rows at a time, so memory is
    ``chunk_size`` x ``k``.

    Returns (labels [N], centres [k, D], inertia: the sum of squared distances to the centres)."""
    x = np.asarray(x, np.float64)
    if x.ndim != 2:
        raise ValueError(f"clustering: kmeans needs a [rows, features] array, got shape {x.shape}")
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"clustering: kmeans needs 1 <= k <= rows, got k={k} for {n} rows")
    rng = np.random.default_rng(seed)
    x_sq = np.sum(x * x, axis=1)
    centres = np.empty((k, x.shape[1]))
    centres[0] = x[rng.integers(n)]
    _, closest = _nearest(x, x_sq, centres[:1], chunk_size)
    for j in range(1, k):
        total = closest.sum()
        # all rows already sit on a centre (fewer distinct rows than k): any row will do
        pick = rng.choice(n, p=closest / total) if total > 0 else rng.integers(n)
        centres[j] = x[pick]
        _, d = _nearest(x, x_sq, centres[j : j + 1], chunk_size)
        closest = np.minimum(closest, d)
    scale = tol * max(float(np.mean(np.var(x, axis=0))), 1e-30)
    labels = np.full(n, -1, np.int64)
    for _ in range(max_iter):
        new_labels, dist = _nearest(x, x_sq, centres, chunk_size)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
        counts = np.bincount(labels, minlength=k)
        sums = np.zeros_like(centres)
        np.add.at(sums, labels, x)
        moved = centres.copy()
        for j in np.flatnonzero(counts == 0):
            far = int(np.argmax(dist))
            moved[j], dist[far] = x[far], 0.0
        full = counts > 0
        moved[full] = sums[full] / counts[full, None]
        shift = float(np.sum((moved - centres) ** 2))
        centres = moved
        if shift <= scale:
            labels, dist = _nearest(x, x_sq, centres, chunk_size)
            break
    else:
        labels, dist = _nearest(x, x_sq, centres, chunk_size)
    return labels, centres, float(dist.sum())


class Clustering(Evaluator):
    """k-means on frozen representations (``model.encode``) of each modality subset, scored against
    the class labels: how well the representation's geometry separates the classes without any
    training on the labels.

    For each subset, the representations of the ``test`` split's rows (else ``validation``) where the
    subset's modalities are present are clustered by k-means (k-means++ start, :func:`kmeans`) into
    ``clusters`` groups (default: the number of classes), once per k-means seed (``seed``,
    ``seed + 1``, ...), and the clusters compared with the labels by normalised mutual information
    (arithmetic normaliser, :func:`normalized_mutual_info`) and the adjusted Rand index (Hubert &
    Arabie 1985, :func:`adjusted_rand_index`). Results give the mean and standard deviation over seeds.

    Cost: one ``model.encode`` per subset, then per seed Lloyd iterations of ``rows x k x dim``
    multiply-adds each (NumPy, a few seconds per seed for 10,000 rows); no training.

    Args:
        subsets: ``"all"`` (every non-empty subset), ``"singles"`` (complete and each modality) or
            names like ``complete``, ``image``, ``image+sound``.
        clusters: k, or null for the number of classes in the labels.
        metric: ``cosine`` (rows scaled to unit length before k-means) or ``euclidean`` (as they are).
        seeds: how many k-means runs (seeds ``seed``, ``seed + 1``, ...) per subset.
        max_iter: Lloyd iterations at most per run.
        max_rows: at most this many test rows per subset (drawn with ``seed``), or all.
        seed: the first k-means seed, and the seed of the row draw.
        filename: the heat map of NMI and ARI written into the run's figures.
    """

    def __init__(
        self,
        subsets: list[str] | str = "all",
        clusters: PositiveInt | None = None,
        metric: Literal["cosine", "euclidean"] = "cosine",
        seeds: PositiveInt = 5,
        max_iter: PositiveInt = 300,
        max_rows: PositiveInt | None = None,
        seed: int = 0,
        filename: str = "clustering_subsets.png",
    ):
        if isinstance(subsets, str) and subsets not in ("all", "singles"):
            raise ValueError(f"clustering: subsets must be 'all', 'singles' or a list of names, got {subsets!r}")
        if clusters is not None and clusters < 1:
            raise ValueError(
                f"clustering: clusters must be at least 1 (or null for the number of classes), got {clusters}"
            )
        if metric not in METRICS:
            raise ValueError(f"clustering: metric must be one of {list(METRICS)}, got {metric!r}")
        for name, value in (("seeds", seeds), ("max_iter", max_iter)):
            if value < 1:
                raise ValueError(f"clustering: {name} must be at least 1, got {value}")
        if max_rows is not None and max_rows < 2:
            raise ValueError(f"clustering: max_rows must be at least 2 (or null for all rows), got {max_rows}")
        check_png_filename("clustering", filename)
        self.subsets, self.clusters, self.metric = subsets, clusters, metric
        self.seeds, self.max_iter, self.max_rows = int(seeds), int(max_iter), max_rows
        self.seed, self.filename = int(seed), filename

    def evaluate(self, model: Any, data: dict[str, DataSplit], output_dir: Path) -> dict[str, Any]:
        test = labelled_test_split("clustering", data)
        mods = sorted(model.modalities)
        try:
            subsets = modality_subsets(mods, self.subsets)
        except ValueError as exc:
            raise MMKerasError(f"clustering: {exc}") from None
        labels_all = np.asarray(test.labels).ravel()
        k = self.clusters or len(np.unique(labels_all))
        nmi: dict[str, dict[str, Any]] = {}
        ari: dict[str, dict[str, Any]] = {}
        rows_used: dict[str, int] = {}
        for subset in subsets:
            rows = _present_rows(test, list(subset))
            if self.max_rows is not None and rows.sum() > self.max_rows:
                keep = np.random.default_rng(self.seed).choice(np.flatnonzero(rows), self.max_rows, replace=False)
                rows = np.zeros_like(rows)
                rows[keep] = True
            if rows.sum() < k:
                continue  # fewer rows than clusters: nothing to cluster
            z = np.asarray(model.encode(_inputs(test, mods, rows), list(subset)), np.float64).reshape(
                int(rows.sum()), -1
            )
            if self.metric == "cosine":
                z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
            y = labels_all[rows]
            runs_nmi, runs_ari = [], []
            for s in range(self.seeds):
                assigned, _, _ = kmeans(z, k, seed=self.seed + s, max_iter=self.max_iter)
                runs_nmi.append(normalized_mutual_info(y, assigned))
                runs_ari.append(adjusted_rand_index(y, assigned))
            name = subset_name(subset, mods)
            nmi[name] = _summary(runs_nmi)
            ari[name] = _summary(runs_ari)
            rows_used[name] = int(rows.sum())
        if not nmi:
            raise MMKerasError(
                f"clustering: no requested subset has at least {k} test rows with its modalities present"
            )
        model_name = str(getattr(model, "name", "model"))
        output_dir = Path(output_dir)
        from mmkeras.evaluators.plots import matrix_heatmap, subset_matrix

        columns, values = subset_matrix({"NMI": nmi, "ARI": ari})
        matrix_heatmap(
            values,
            ["NMI", "ARI"],
            columns,
            output_dir / self.filename,
            f"{model_name}: k-means (k={k}, {self.metric}) against the labels",
            xlabel="observed modalities",
            ylabel="score",
            colorbar_label="NMI / ARI",
            value_format="{:.3f}",
            vmin=0.0,
            vmax=1.0,
        )
        return {
            "model": model_name,
            "nmi": nmi,
            "ari": ari,
            "clusters": int(k),
            "classes": int(len(np.unique(labels_all))),
            "metric": self.metric,
            "seeds": self.seeds,
            "rows": rows_used,
            "figure": f"{output_dir.name}/{self.filename}",
        }

    def report(self, results: dict[str, Any]) -> str:
        columns = list(results["nmi"])
        seeds = results["seeds"]
        spread = f"mean ± std over {seeds} k-means seeds" if seeds > 1 else "one k-means seed"

        def cell(score: dict[str, Any]) -> str:
            return f"{score['mean']:.3f} ± {score['std']:.3f}" if seeds > 1 else f"{score['mean']:.3f}"

        lines = [
            f"k-means clustering (k = {results['clusters']}, {results['classes']} classes, {results['metric']} "
            f"geometry) of the test representations with only the observed modalities in each column, "
            f"against the labels: normalised mutual information (arithmetic mean) and adjusted Rand index "
            f"(1 = the classes exactly, 0 = chance); {spread}.",
            "",
            f"| {results['model']} | {' | '.join(columns)} |",
            "|---|" + "---|" * len(columns),
            "| NMI | " + " | ".join(cell(results["nmi"][c]) for c in columns) + " |",
            "| ARI | " + " | ".join(cell(results["ari"][c]) for c in columns) + " |",
        ]
        text = "\n".join(lines) + "\n"
        if results.get("figure"):
            text += f"\n![k-means NMI and ARI over modality subsets]({results['figure']})\n"
        return text


def _summary(runs: list[float]) -> dict[str, Any]:
    return {"mean": float(np.mean(runs)), "std": float(np.std(runs)), "runs": [float(r) for r in runs]}
