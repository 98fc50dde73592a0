"""Heat maps shared by the evaluators: a labelled, annotated matrix of scores written as a PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def save_figure(fig: Any, path: str | Path) -> Path:
    """Lay out ``fig``, write it to ``path`` (PNG, 100 dpi; folders made), close it; returns the path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def score_of(value: Any) -> float | None:
    """A cell's number: a float, or the ``mean`` of a ``{"mean": ..., "std": ...}`` record (the
    downstream evaluator's form); ``None`` for a missing cell."""
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get("mean")
        if value is None:
            return None
    return float(value)


def matrix_heatmap(
    values: np.ndarray,
    row_labels: list[str],
    column_labels: list[str],
    path: Path | str,
    title: str,
    xlabel: str,
    ylabel: str,
    colorbar_label: str,
    value_format: str = "{:.1f}",
    vmin: float | None = None,
    vmax: float | None = None,
) -> Path:
    """Write ``values`` [rows, columns] as an annotated heat map PNG at ``path``.

    NaN cells are drawn blank (light grey) and annotated with an en dash; every other cell
    carries its value in ``value_format``, in black or white for contrast with its colour.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = np.asarray(values, dtype=float)
    if values.shape != (len(row_labels), len(column_labels)):
        raise ValueError(
            f"heat map values have shape {values.shape}, but there are {len(row_labels)} row and "
            f"{len(column_labels)} column labels"
        )
    if not values.size:
        raise ValueError("a heat map needs at least one row and one column")
    finite = values[np.isfinite(values)]
    lo = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    if hi <= lo:
        hi = lo + 1.0
    width = min(2.8 + 0.85 * len(column_labels) + 0.08 * max(len(r) for r in row_labels), 24.0)
    longest = max(len(c) for c in column_labels)  # the rotated column labels need room below the cells
    height = min(1.5 + 0.5 * len(row_labels) + 0.06 * longest, 18.0)
    fig, ax = plt.subplots(figsize=(max(width, 5.0, 1.5 + 0.085 * len(title)), max(height, 3.4)))
    cmap = plt.get_cmap("viridis").with_extremes(bad="#e6e6e6")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
    ax.set_xticks(range(len(column_labels)), labels=column_labels, rotation=30, ha="right")
    ax.set_yticks(range(len(row_labels)), labels=row_labels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            if not np.isfinite(v):
                ax.text(j, i, "–", ha="center", va="center", color="#555555", fontsize=9)
                continue
            shade = (v - lo) / (hi - lo)
            color = "black" if shade > 0.6 else "white"  # viridis is dark at the bottom, light at the top
            ax.text(j, i, value_format.format(v), ha="center", va="center", color=color, fontsize=9)
    fig.colorbar(image, ax=ax, label=colorbar_label, fraction=0.046, pad=0.04)
    return save_figure(fig, path)


def subset_matrix(results_by_model: dict[str, dict[str, Any]], scale: float = 1.0) -> tuple[list[str], np.ndarray]:
    """The columns (modality subsets, in order of first appearance) and the values [models, subsets]
    (times ``scale``; NaN where a model lacks a subset) of :func:`subset_heatmap`."""
    if not results_by_model:
        raise ValueError("subset_heatmap: results_by_model is empty; give at least one model's scores")
    columns: list[str] = []
    for scores in results_by_model.values():
        columns += [c for c in scores if c not in columns]
    if not columns:
        raise ValueError("subset_heatmap: no model has any subset scores")
    values = np.full((len(results_by_model), len(columns)), np.nan)
    for i, scores in enumerate(results_by_model.values()):
        for j, column in enumerate(columns):
            score = score_of(scores.get(column))
            if score is not None:
                values[i, j] = scale * score
    return columns, values


def subset_heatmap(
    results_by_model: dict[str, dict[str, Any]],
    path: Path | str,
    title: str,
    value_label: str = "accuracy (%)",
    percent: bool = True,
) -> Path:
    """The modality-subset matrix as a heat map: one row per model (or probe), one column per
    observed modality subset (in order of first appearance), each cell annotated.

    ``results_by_model`` maps a row name to ``{subset name: score}``; a score is a float in
    [0, 1] (shown as a percentage when ``percent``) or a ``{"mean": ...}`` record, so the
    ``accuracy`` entries of the ``knn``, ``linear_probe`` and ``downstream`` results can be
    passed as they are. A subset a row lacks is drawn blank.
    """
    columns, values = subset_matrix(results_by_model, 100.0 if percent else 1.0)
    return matrix_heatmap(
        values,
        list(results_by_model),
        columns,
        path,
        title,
        xlabel="observed modalities",
        ylabel="model",
        colorbar_label=value_label,
        value_format="{:.1f}" if percent else "{:.3f}",
        vmin=0.0 if percent else None,
        vmax=100.0 if percent else None,
    )
