"""Linear CCA of frozen representations: how linearly related each pair of modalities' codes is."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from mmkeras.data.base import DataSplit
from mmkeras.evaluators.base import Evaluator
from mmkeras.params import NonNegativeFloat, PositiveInt


def _inverse_sqrt(s: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(s)
    return (vectors / np.sqrt(np.maximum(values, 1e-12))) @ vectors.T


def canonical_correlations(x: np.ndarray, y: np.ndarray, ridge: float = 1e-4) -> np.ndarray:
    """The min(dx, dy) canonical correlations of ``x`` [n, dx] and ``y`` [n, dy], descending:
    the singular values of S_xx^{-1/2} S_xy S_yy^{-1/2}, each covariance with ``ridge`` times its
    mean variance added to its diagonal (scale-free regularisation)."""
    x = np.asarray(x, np.float64) - np.mean(x, axis=0)
    y = np.asarray(y, np.float64) - np.mean(y, axis=0)
    n = max(len(x) - 1, 1)
    sxx, syy, sxy = x.T @ x / n, y.T @ y / n, x.T @ y / n
    sxx += ridge * max(float(np.trace(sxx)) / len(sxx), 1e-12) * np.eye(len(sxx))
    syy += ridge * max(float(np.trace(syy)) / len(syy), 1e-12) * np.eye(len(syy))
    t = _inverse_sqrt(sxx) @ sxy @ _inverse_sqrt(syy)
    return np.clip(np.linalg.svd(t, compute_uv=False), 0.0, 1.0)


class LinearCCA(Evaluator):
    """Canonical correlations between the single-modality representations of every pair of
    modalities (``model.encode`` with one modality) on the rows of ``split`` where both are
    present; reports the top ``top_k`` and their mean. ``ridge`` regularises the covariances
    relative to their scale."""

    def __init__(
        self,
        top_k: PositiveInt = 10,
        ridge: NonNegativeFloat = 1e-4,
        split: str = "test",
        max_samples: int | None = None,
    ):
        if top_k < 1:
            raise ValueError(f"linear_cca: top_k must be positive, got {top_k}")
        if ridge < 0:
            raise ValueError(f"linear_cca: ridge must be non-negative, got {ridge}")
        self.top_k, self.ridge, self.split, self.max_samples = int(top_k), float(ridge), split, max_samples

    def evaluate(self, model: Any, data: dict[str, DataSplit], output_dir: Path) -> dict[str, Any]:
        if self.split not in data:
            raise ValueError(f"linear_cca: no {self.split!r} split; available: {sorted(data)}")
        split = data[self.split]
        if self.max_samples is not None:
            split = split.take(self.max_samples)
        mods = sorted(model.modalities)
        codes = {m: model.encode(split.inputs, [m]) for m in mods}
        pairs = {}
        for a, b in itertools.combinations(mods, 2):
            rows = (split.mask(a) > 0) & (split.mask(b) > 0)
            if rows.sum() < 2:
                continue
            rho = canonical_correlations(codes[a][rows], codes[b][rows], self.ridge)[: self.top_k]
            pairs[f"{a}+{b}"] = {
                "correlations": [float(r) for r in rho],
                "mean": float(rho.mean()),
                "rows": int(rows.sum()),
            }
        return {"pairs": pairs, "top_k": self.top_k, "split": self.split}

    def report(self, results: dict[str, Any]) -> str:
        shown = min(5, results["top_k"])
        head = " | ".join(f"rho_{i + 1}" for i in range(shown))
        rows = "\n".join(
            f"| {pair} | {r['mean']:.3f} | "
            + " | ".join(
                [f"{c:.3f}" for c in r["correlations"][:shown]] + [""] * (shown - len(r["correlations"][:shown]))
            )
            + " |"
            for pair, r in results["pairs"].items()
        )
        return (
            f"Canonical correlations of single-modality representations ({results['split']} split); "
            f"mean of the top {results['top_k']}.\n\n| pair | mean top-{results['top_k']} | {head} |\n"
            f"|---|---|{'---|' * shown}\n{rows}\n"
        )
