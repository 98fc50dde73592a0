"""A 2-D map of the representations of complete and single-modality observations, coloured by label."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mmkeras.data.base import DataSplit
from mmkeras.errors import MMKerasError
from mmkeras.evaluators.base import Evaluator
from mmkeras.model import MASKS
from mmkeras.params import NonNegativeFloat, PositiveInt

DEFAULT_FILENAME = "umap.png"
NO_UMAP_NOTE = 'umap-learn is not installed, so this map is PCA, not UMAP; for UMAP: pip install "mmkeras[umap]"'


def umap_available() -> bool:
    try:
        import umap
    except ImportError:
        return False
    return hasattr(umap, "UMAP")  # an uninstall can leave an empty namespace package named umap


class UMAPPlot(Evaluator):
    """Writes a PNG with two panels: the joint representations of complete observations and
    the representations of ``modality`` alone, embedded in 2-D by one map fitted on the
    complete ones (so positions are comparable across panels), coloured by label. This is the
    figure GMC's paper uses to show that single-modality representations land in the clusters
    of the complete ones.

    method: ``umap`` (needs ``pip install "mmkeras[umap]"``), ``pca``, or ``auto`` (UMAP when
    installed, else PCA, named for what it is: result ``method: pca``, the default file name
    becomes ``pca.png``, and a warning and the report say how to get UMAP). num_samples: rows
    drawn (seeded) from ``split`` (``test``, else ``validation``) whose modalities are all present.
    """

    def __init__(
        self,
        modality: str = "image",
        split: str = "test",
        num_samples: int = 2000,
        method: Literal["auto", "umap", "pca"] = "auto",
        n_neighbors: PositiveInt = 15,
        min_dist: NonNegativeFloat = 0.1,
        seed: int = 0,
        filename: str = DEFAULT_FILENAME,
    ):
        if num_samples < 2:
            raise ValueError(f"umap: num_samples must be at least 2, got {num_samples}")
        if not filename.endswith(".png") or "/" in filename or "\\" in filename:
            raise ValueError(f"umap: filename must be a plain file name ending in .png, got {filename!r}")
        if method == "umap" and not umap_available():
            raise MMKerasError('umap: method "umap" needs umap-learn: pip install "mmkeras[umap]" (or use method: pca)')
        self.modality, self.split, self.num_samples = modality, split, int(num_samples)
        self.method, self.n_neighbors, self.min_dist = method, int(n_neighbors), float(min_dist)
        self.seed, self.filename = int(seed), filename

    def evaluate(self, model: Any, data: dict[str, DataSplit], output_dir: Path) -> dict[str, Any]:
        mods = sorted(model.modalities)
        if self.modality not in mods:
            raise MMKerasError(f"umap: modality {self.modality!r} is not one of the model's modalities {mods}")
        split = data.get(self.split) or data.get("validation")
        if split is None:
            raise MMKerasError(f"umap: no {self.split!r} or validation split; have {sorted(data)}")
        if split.labels is None:
            raise MMKerasError("umap: the points are coloured by label, and the data set gave no labels")
        rows = np.flatnonzero(np.all([split.mask(m) > 0 for m in mods], axis=0))
        if len(rows) < 2:
            raise MMKerasError(f"umap: fewer than 2 rows of the {self.split!r} split have every modality present")
        rng = np.random.default_rng(self.seed)
        rows = np.sort(rng.choice(rows, size=min(self.num_samples, len(rows)), replace=False))
        x = {m: split.inputs[m][rows] for m in mods}
        x[MASKS] = {m: split.mask(m)[rows] for m in mods}
        z_complete = model.encode(x, mods)
        z_single = model.encode(x, [self.modality])
        labels = split.labels[rows]
        method = self.method if self.method != "auto" else ("umap" if umap_available() else "pca")
        note = "" if method == "umap" or self.method == "pca" else NO_UMAP_NOTE
        if note:  # asked for UMAP (auto) and drew PCA: say so where the user looks now, not only in the report
            print(f"warning: umap evaluator: {note}", file=sys.stderr)
        filename = "pca.png" if method == "pca" and self.filename == DEFAULT_FILENAME else self.filename
        e_complete, e_single = self._embed(method, z_complete, z_single)
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        _plot(e_complete, e_single, labels, self.modality, method, output_dir / filename)
        return {
            "figure": f"{output_dir.name}/{filename}",
            "method": method,
            "note": note,
            "modality": self.modality,
            "points": len(rows),
        }

    def _embed(self, method: str, fit_on: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if method == "pca":
            mean = fit_on.mean(0)
            _, _, vt = np.linalg.svd(fit_on - mean, full_matrices=False)
            basis = vt[:2].T
            return (fit_on - mean) @ basis, (other - mean) @ basis
        import umap

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "n_jobs overridden by random_state": a seeded map is the point
            reducer = umap.UMAP(
                n_neighbors=min(self.n_neighbors, len(fit_on) - 1), min_dist=self.min_dist, random_state=self.seed
            )
            fitted = reducer.fit_transform(fit_on)
            return fitted, reducer.transform(other)

    def report(self, results: dict[str, Any]) -> str:
        mod = results["modality"]
        text = (
            f"{results['method'].upper()} map of {results['points']} test observations: joint representations of "
            f"complete observations (left) and representations from {mod} alone (right), one map fitted on the "
            f"complete ones, coloured by label.\n\n![{results['method']} of complete and {mod}-only representations]"
            f"({results['figure']})\n"
        )
        if results.get("note"):
            text += f"\nNote: {results['note']}.\n"
        return text


def _plot(
    e_complete: np.ndarray, e_single: np.ndarray, labels: np.ndarray, modality: str, method: str, path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), sharex=True, sharey=True)
    classes = np.unique(labels)
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for ax, emb, title in ((axes[0], e_complete, "complete observations"), (axes[1], e_single, f"{modality} only")):
        for i, c in enumerate(classes):
            sel = labels == c
            ax.scatter(emb[sel, 0], emb[sel, 1], s=4, alpha=0.7, color=cmap(i % cmap.N), label=str(c))
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[1].legend(markerscale=3, fontsize=7, title="label", loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(f"{method.upper()} of the representations")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
