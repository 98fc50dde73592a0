"""Delaunay Component Analysis (Poklukar, Polianskii et al., ICLR 2022): how well a set of
representations E covers the geometry of a reference set R, from the Delaunay graph of R ∪ E."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from mmkeras.data.base import DataSplit
from mmkeras.errors import MMKerasError
from mmkeras.evaluators._delaunay import edge_lengths, euclidean_mst, hdbscan_labels, ray_edges, undirected
from mmkeras.evaluators.base import Evaluator
from mmkeras.params import PositiveInt

#: the scores DCA reports, in the report's column order
SCORES = ("precision", "recall", "network_consistency", "network_quality")

#: the report's sentence on F1 and on the GMC paper's Table 2 "DCA score" (see the DCA class)
PAPER_SCORE_NOTE = (
    "F1 is the harmonic mean of P and R. Which DCA summary the GMC paper's Table 2 calls its 'DCA score' "
    "(0.86 to 1.00 for GMC) is not settled: the paper's text could not be read here, and the released GMC "
    "code (miguelsvasco/gmc, dca_evaluation_trainer.py) logs only P, R, q and c. For the label's 10 points "
    "against 10,000, c is 0.002 and q at most the small share of edges touching those 10 points, so scores "
    "near 1 there can only be P, R or their F1: all three are reported."
)


def f1_score(precision: float, recall: float) -> float:
    """The harmonic mean 2PR / (P + R) of DCA precision and recall (0 where both are 0)."""
    total = precision + recall
    return float(2.0 * precision * recall / total) if total > 0 else 0.0


def distinct_rows(points: np.ndarray, decimals: int = 4) -> np.ndarray:
    """The distinct rows of ``points`` after rounding to ``decimals`` (sorted, as ``np.unique``):
    GMC's DCA protocol reduces the label modality's representations to its 10 distinct points."""
    return np.unique(np.round(np.asarray(points, np.float64), decimals), axis=0)


def _consistency(num_r: np.ndarray, num_e: np.ndarray) -> np.ndarray:
    total = num_r + num_e
    return np.where(total > 0, 1.0 - np.abs(num_r - num_e) / np.maximum(total, 1), 0.0)


def delaunay_component_analysis(
    reference: np.ndarray,
    evaluated: np.ndarray,
    rays: int = 32,
    min_cluster_size: int = 10,
    consistency_threshold: float = 0.0,
    quality_threshold: float = 0.0,
    allow_single_cluster: bool = False,
    seed: int = 0,
    max_components: int = 20,
) -> dict[str, Any]:
    """DCA scores of ``evaluated`` (E, [n_E, dim]) against ``reference`` (R, [n_R, dim]).

    1. **Graph.** G is an approximate Delaunay graph of R ∪ E: the edges found by ``rays``
       random rays from every point (:func:`~mmkeras.evaluators._delaunay.ray_edges`), together
       with the Euclidean minimum spanning tree, whose edges are all Delaunay edges.
    2. **Components.** G is distilled into components by HDBSCAN on its minimum spanning tree
       (= the Euclidean one; min_samples 1, ``min_cluster_size``); each noise point is a
       component of its own (an outlier). Only edges inside a component are kept (G_DD).
    3. **Scores.** For a component G_i with vertices R_i ∪ E_i and edges (R-R, E-E, R-E):
       consistency c(G_i) = 1 - | |R_i| - |E_i| | / (|R_i| + |E_i|) and quality
       q(G_i) = (number of R-E edges) / (number of edges) (0 without edges). G_i is
       *fundamental* when c(G_i) > ``consistency_threshold`` and q(G_i) > ``quality_threshold``.
       precision = |E in fundamental components| / |E|, recall = |R in fundamental components| / |R|,
       network consistency = c over all of R ∪ E, network quality = R-E edges / edges of G_DD.
       ``f1`` is the harmonic mean of precision and recall (:func:`f1_score`).

    Returns the four scores and F1, counts (components, fundamental components, outliers, edges), the
    largest ``max_components`` components with their own scores, the parameters and the time taken.
    """
    r = np.asarray(reference, np.float64)
    e = np.asarray(evaluated, np.float64)
    for name, a in (("reference", r), ("evaluated", e)):
        if a.ndim != 2 or len(a) == 0:
            raise ValueError(f"dca: {name} must be a non-empty 2-D array [n, dim]; got shape {list(a.shape)}")
    if r.shape[1] != e.shape[1]:
        raise ValueError(f"dca: reference and evaluated differ in dimension: {r.shape[1]} and {e.shape[1]}")
    if rays < 1:
        raise ValueError(f"dca: rays must be at least 1, got {rays}")
    if min_cluster_size < 2:
        raise ValueError(f"dca: min_cluster_size must be at least 2, got {min_cluster_size}")
    started = time.perf_counter()
    x = np.concatenate([r, e])
    n, n_r = len(x), len(r)
    is_e = np.arange(n) >= n_r
    tree = euclidean_mst(x)
    tree_seconds = time.perf_counter() - started
    found, _ = ray_edges(x, rays, seed)
    ray_seconds = time.perf_counter() - started - tree_seconds
    edges, _ = undirected(np.concatenate([found, tree]), n)
    labels = hdbscan_labels(n, tree, edge_lengths(x, tree), min_cluster_size, allow_single_cluster)
    num_clusters = int(labels.max()) + 1
    noise = labels < 0
    component = labels.copy()
    component[noise] = num_clusters + np.arange(int(noise.sum()))  # each outlier is its own component
    k = num_clusters + int(noise.sum())
    num_r = np.bincount(component[~is_e], minlength=k).astype(np.float64)
    num_e = np.bincount(component[is_e], minlength=k).astype(np.float64)
    a, b = edges[:, 0], edges[:, 1]
    inside = component[a] == component[b]
    mixed = inside & (is_e[a] != is_e[b])
    num_edges = np.bincount(component[a][inside], minlength=k).astype(np.float64)
    num_mixed = np.bincount(component[a][mixed], minlength=k).astype(np.float64)
    consistency = _consistency(num_r, num_e)
    quality = np.where(num_edges > 0, num_mixed / np.maximum(num_edges, 1), 0.0)
    fundamental = (consistency > consistency_threshold) & (quality > quality_threshold)
    largest = np.argsort(-(num_r + num_e)[:num_clusters], kind="stable")[:max_components]
    precision = float(num_e[fundamental].sum() / len(e))
    recall = float(num_r[fundamental].sum() / len(r))
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1_score(precision, recall),
        "network_consistency": float(_consistency(np.float64(len(r)), np.float64(len(e)))),
        "network_quality": float(num_mixed.sum() / num_edges.sum()) if num_edges.sum() else 0.0,
        "num_reference": len(r),
        "num_evaluated": len(e),
        "num_components": num_clusters,
        "num_fundamental": int(fundamental.sum()),
        "num_outliers": {"reference": int(np.sum(noise & ~is_e)), "evaluated": int(np.sum(noise & is_e))},
        "num_edges": {"graph": len(edges), "rays": len(found), "distilled": int(inside.sum())},
        "components": [
            {
                "num_reference": int(num_r[c]),
                "num_evaluated": int(num_e[c]),
                "consistency": float(consistency[c]),
                "quality": float(quality[c]),
                "fundamental": bool(fundamental[c]),
            }
            for c in largest
        ],
        "parameters": {
            "rays": int(rays),
            "min_cluster_size": int(min_cluster_size),
            "consistency_threshold": float(consistency_threshold),
            "quality_threshold": float(quality_threshold),
            "allow_single_cluster": bool(allow_single_cluster),
            "seed": int(seed),
        },
        "seconds": {
            "spanning_tree": tree_seconds,
            "rays": ray_seconds,
            "total": time.perf_counter() - started,
        },
    }


class DCA(Evaluator):
    """Delaunay Component Analysis of each modality's representations against the joint ones:
    the geometric alignment of the GMC paper's Table 2 (Poklukar, Vasco et al., ICML 2022).

    On the rows of ``split`` (``test``, else ``validation``) with every modality present (at most
    ``max_points``, drawn with ``seed``), R is the joint representation of the complete
    observations (``model.encode(x)``) and, for each modality m in ``modalities`` (default:
    all), E is the representation from m alone (``model.encode(x, [m])``) on the same rows.
    Precision is the fraction of E in components shared with R, recall the fraction of R in
    components shared with E, network consistency the balance of R and E over the graph and
    network quality the fraction of graph edges joining R to E (see
    :func:`delaunay_component_analysis`). Representations that coincide in geometry score
    precision, recall and consistency 1 and quality about 0.5 (in a well-mixed graph about half
    of the edges join R to E); as E drifts away from R, all fall toward 0.

    The Delaunay graph is approximated with ``rays`` random rays per point (the paper casts
    10^4 on a GPU; the spanning tree that decides the components is exact here, the rays only
    affect network quality and the components' quality); ``min_cluster_size`` is HDBSCAN's;
    a component is fundamental when its consistency and quality exceed the thresholds (0, as in
    the paper's released code). Time grows as (2 max_points)^2 (rays + dim): 10,000 + 10,000
    points of dimension 64 with 32 rays took 16.7 s on one CPU thread, 2,000 + 2,000 took 0.8 s
    (``python benchmarks/dca_runtime.py --threads 1``).

    Each modality's results also hold ``f1``, the harmonic mean of precision and recall. The GMC
    paper's Table 2 reports one "DCA score" per modality; its definition could not be read from
    the paper here, and the released GMC code logs only P, R, q and c, so P, R and F1 are all
    reported: the candidates that the table's range, 0.86 to 1.00, leaves (issue 20).

    ``deduplicate`` names modalities whose E is reduced to its distinct rows (rounded to
    ``deduplicate_decimals``) before DCA, as GMC's code does for the MHD label: its 10 one-hot values
    give 10 distinct points, each repeated, and coincident points have no Delaunay edges between
    them. R is not reduced.
    GMC's own MHD protocol: 10,000 test rows drawn with seed 1212, min_cluster_size 10, the label
    deduplicated (``max_points: 10000, deduplicate: [label]``; the draw differs from GMC's).
    """

    def __init__(
        self,
        modalities: list[str] | None = None,
        split: str = "test",
        max_points: int = 5000,
        rays: PositiveInt = 32,
        min_cluster_size: int = 10,
        consistency_threshold: float = 0.0,
        quality_threshold: float = 0.0,
        allow_single_cluster: bool = False,
        seed: int = 0,
        deduplicate: list[str] | None = None,
        deduplicate_decimals: int = 4,
    ):
        if max_points < 2:
            raise ValueError(f"dca: max_points must be at least 2, got {max_points}")
        if rays < 1:
            raise ValueError(f"dca: rays must be at least 1, got {rays}")
        if min_cluster_size < 2:
            raise ValueError(f"dca: min_cluster_size must be at least 2, got {min_cluster_size}")
        for name, value in (("consistency_threshold", consistency_threshold), ("quality_threshold", quality_threshold)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"dca: {name} must be in [0, 1), got {value}")
        self.modalities = None if modalities is None else list(modalities)
        self.split, self.max_points, self.rays = split, int(max_points), int(rays)
        self.min_cluster_size = int(min_cluster_size)
        self.consistency_threshold, self.quality_threshold = float(consistency_threshold), float(quality_threshold)
        self.allow_single_cluster, self.seed = bool(allow_single_cluster), int(seed)
        if deduplicate_decimals < 0:
            raise ValueError(f"dca: deduplicate_decimals must be at least 0, got {deduplicate_decimals}")
        self.deduplicate = [] if deduplicate is None else list(deduplicate)
        self.deduplicate_decimals = int(deduplicate_decimals)

    def evaluate(self, model: Any, data: dict[str, DataSplit], output_dir: Path) -> dict[str, Any]:
        # imported here so that delaunay_component_analysis works without loading the model code (TensorFlow)
        from mmkeras.evaluators.downstream import _inputs, _present_rows

        mods = sorted(model.modalities)
        chosen = self.modalities if self.modalities is not None else mods
        unknown = [m for m in chosen if m not in mods]
        if unknown:
            raise MMKerasError(f"dca: modalities {unknown} are not among the model's modalities {mods}")
        unknown = [m for m in self.deduplicate if m not in chosen]
        if unknown:
            raise MMKerasError(
                f"dca: deduplicate names {unknown}, which are not among the evaluated modalities {chosen}"
            )
        split = data.get(self.split) or data.get("validation")
        if split is None:
            raise MMKerasError(f"dca: no {self.split!r} or validation split; have {sorted(data)}")
        rows = np.flatnonzero(_present_rows(split, mods))
        if len(rows) < 2:
            raise MMKerasError(f"dca: fewer than 2 rows of the {self.split!r} split have every modality present")
        if len(rows) > self.max_points:
            rows = np.sort(np.random.default_rng(self.seed).choice(rows, self.max_points, replace=False))
        selected = np.zeros(len(split), bool)
        selected[rows] = True
        x = _inputs(split, mods, selected)
        joint = model.encode(x, mods)
        scores = {}
        for m in chosen:
            evaluated = model.encode(x, [m])
            if m in self.deduplicate:
                evaluated = distinct_rows(evaluated, self.deduplicate_decimals)
            scores[m] = delaunay_component_analysis(
                joint,
                evaluated,
                rays=self.rays,
                min_cluster_size=self.min_cluster_size,
                consistency_threshold=self.consistency_threshold,
                quality_threshold=self.quality_threshold,
                allow_single_cluster=self.allow_single_cluster,
                seed=self.seed,
            )
            scores[m]["deduplicated"] = m in self.deduplicate
        return {
            "model": str(getattr(model, "name", "model")),
            "split": self.split,
            "points": len(rows),
            "scores": scores,
        }

    def report(self, results: dict[str, Any]) -> str:
        lines = [
            f"Delaunay Component Analysis on {results['points']} {results['split']} observations: R = joint "
            "representations of the complete observations, E = representations from one modality alone "
            "(P precision, R recall, F1 their harmonic mean, C network consistency, Q network quality: the fraction "
            "of edges joining R to E, about 0.5 where R and E mix well, 0 where they are apart).",
            "",
            "| E | P | R | F1 | C | Q | E points | components | fundamental | outliers (R / E) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for m, s in results["scores"].items():
            out = s["num_outliers"]
            f1 = s.get("f1", f1_score(s["precision"], s["recall"]))  # results written before F1 was added
            distinct = " (distinct)" if s.get("deduplicated") else ""
            lines.append(
                f"| {m} | {s['precision']:.3f} | {s['recall']:.3f} | {f1:.3f} | "
                + " | ".join(f"{s[k]:.3f}" for k in SCORES[2:])
                + f" | {s['num_evaluated']}{distinct} | {s['num_components']} | {s['num_fundamental']} | "
                f"{out['reference']} / {out['evaluated']} |"
            )
        first = next(iter(results["scores"].values()))["parameters"]
        lines += [
            "",
            f"Parameters: {first['rays']} rays per point, HDBSCAN min_cluster_size {first['min_cluster_size']}, "
            f"fundamental when consistency > {first['consistency_threshold']:g} and quality > "
            f"{first['quality_threshold']:g}."
            + (
                " (distinct): E reduced to its distinct rows, as GMC does for the label."
                if any(s.get("deduplicated") for s in results["scores"].values())
                else ""
            ),
            "",
            PAPER_SCORE_NOTE,
        ]
        return "\n".join(lines) + "\n"
