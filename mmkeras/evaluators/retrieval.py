"""Cross-modal retrieval: each modality's representation as a query against a gallery of another's."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from mmkeras.data.base import DataSplit
from mmkeras.errors import MMKerasError
from mmkeras.evaluators.base import Evaluator
from mmkeras.evaluators.downstream import _inputs, _present_rows
from mmkeras.params import PositiveInt

#: similarities within this of the true match's count as ties, and ties count against the query
TIE_TOLERANCE = 1e-6


def true_match_ranks(queries: np.ndarray, gallery: np.ndarray, chunk_size: int = 1024) -> np.ndarray:
    """The rank (1 = best) of row i of ``gallery`` among all gallery rows for query row i, by
    cosine similarity. Ties count against the query (rank = the number of gallery rows at least as
    similar as the true match), so identical representations cannot score well by accident.
    Memory is ``chunk_size`` x ``len(gallery)``."""
    if len(queries) != len(gallery):
        raise ValueError(f"queries and gallery must have the same rows; got {len(queries)} and {len(gallery)}")

    def unit(z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, np.float32)
        return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)

    q, g = unit(queries), unit(gallery)
    ranks = np.empty(len(q), np.int64)
    for start in range(0, len(q), chunk_size):
        sim = q[start : start + chunk_size] @ g.T
        rows = np.arange(len(sim))
        true = sim[rows, start + rows]
        ranks[start : start + len(sim)] = np.sum(sim >= (true - TIE_TOLERANCE)[:, None], axis=1)
    return ranks


class Retrieval(Evaluator):
    """Cross-modal retrieval for every ordered pair of modalities (query -> gallery).

    On the rows of ``split`` (``test``, else ``validation``) where both modalities are present
    (at most ``max_rows``, drawn with ``seed``), each row's representation from the query
    modality alone (``model.encode(x, [query])``) ranks the gallery of the other modality's
    representations (``model.encode(x, [gallery])``) by cosine similarity; the true match is the
    same row. Reports recall@k for each k in ``ks`` (the fraction of queries whose match ranks
    in the top k; chance is k / gallery size) and the median rank of the match. Ties count
    against the query. The similarity matrix is computed in blocks of ``chunk_size`` queries.
    A heat map of recall@(smallest k), query modality x gallery modality, goes into the figures.
    """

    def __init__(
        self,
        split: str = "test",
        ks: list[int] = (1, 5, 10),  # type: ignore[assignment]
        max_rows: int | None = None,
        chunk_size: PositiveInt = 1024,
        seed: int = 0,
        filename: str = "retrieval.png",
    ):
        if not ks or any(int(k) < 1 for k in ks):
            raise ValueError(f"retrieval: ks must be a non-empty list of positive integers, got {ks}")
        if max_rows is not None and max_rows < 2:
            raise ValueError(f"retrieval: max_rows must be at least 2 (or null for all rows), got {max_rows}")
        if chunk_size < 1:
            raise ValueError(f"retrieval: chunk_size must be positive, got {chunk_size}")
        if not filename.endswith(".png") or "/" in filename or "\\" in filename:
            raise ValueError(f"retrieval: filename must be a plain file name ending in .png, got {filename!r}")
        self.split, self.ks = split, sorted({int(k) for k in ks})
        self.max_rows, self.chunk_size, self.seed, self.filename = max_rows, int(chunk_size), int(seed), filename

    def evaluate(self, model: Any, data: dict[str, DataSplit], output_dir: Path) -> dict[str, Any]:
        split = data.get(self.split) or data.get("validation")
        if split is None:
            raise MMKerasError(f"retrieval: no {self.split!r} or validation split; have {sorted(data)}")
        mods = sorted(model.modalities)
        if len(mods) < 2:
            raise MMKerasError(f"retrieval needs at least two modalities; the model has {mods}")
        pairs = {}
        encoded: dict[str, np.ndarray] = {}  # each modality's representation, encoded once for every pair
        for query, gallery in itertools.permutations(mods, 2):
            rows = _present_rows(split, [query, gallery])
            if self.max_rows is not None and rows.sum() > self.max_rows:
                keep = np.random.default_rng(self.seed).choice(np.flatnonzero(rows), self.max_rows, replace=False)
                rows = np.zeros_like(rows)
                rows[keep] = True
            if rows.sum() < 2:
                continue
            for m in (query, gallery):
                if m not in encoded:
                    encoded[m] = _encode_present(model, split, mods, m)
            ranks = true_match_ranks(encoded[query][rows], encoded[gallery][rows], self.chunk_size)
            pairs[f"{query}->{gallery}"] = {
                "query": query,
                "gallery": gallery,
                **{f"recall@{k}": float(np.mean(ranks <= k)) for k in self.ks},
                "median_rank": float(np.median(ranks)),
                "gallery_size": int(rows.sum()),
            }
        if not pairs:
            raise MMKerasError("retrieval: no two modalities are present together in at least 2 rows")
        output_dir = Path(output_dir)
        k = self.ks[0]
        recall = np.full((len(mods), len(mods)), np.nan)
        for p in pairs.values():
            recall[mods.index(p["query"]), mods.index(p["gallery"])] = 100 * p[f"recall@{k}"]
        from mmkeras.evaluators.plots import matrix_heatmap

        matrix_heatmap(
            recall,
            mods,
            mods,
            output_dir / self.filename,
            f"Cross-modal retrieval recall@{k} (%), cosine similarity",
            xlabel="gallery modality",
            ylabel="query modality",
            colorbar_label=f"recall@{k} (%)",
            vmin=0.0,
            vmax=100.0,
        )
        return {
            "model": str(getattr(model, "name", "model")),
            "split": self.split,
            "ks": self.ks,
            "pairs": pairs,
            "figure": f"{output_dir.name}/{self.filename}",
        }

    def report(self, results: dict[str, Any]) -> str:
        ks = results["ks"]
        head = " | ".join(f"R@{k}" for k in ks)
        rows = "\n".join(
            f"| {p['query']} | {p['gallery']} | "
            + " | ".join(f"{100 * p[f'recall@{k}']:.2f}" for k in ks)
            + f" | {p['median_rank']:g} | {p['gallery_size']} |"
            for p in results["pairs"].values()
        )
        return (
            f"Cross-modal retrieval on the {results['split']} split: each row's representation from the query "
            "modality alone ranks the representations of the gallery modality alone by cosine similarity; the "
            "true match is the same row (recall in %, chance k / gallery size; ties count against the query).\n\n"
            f"| query | gallery | {head} | median rank | gallery size |\n|---|---|{'---|' * len(ks)}---|---|\n"
            f"{rows}\n\n![retrieval recall@{ks[0]}, query x gallery modality]({results['figure']})\n"
        )


def _encode_present(model: Any, split: DataSplit, mods: list[str], modality: str) -> np.ndarray:
    """``modality``'s own representation of every row where it is present (NaN elsewhere): a row's
    representation does not depend on the other rows it is encoded with."""
    present = _present_rows(split, [modality])
    z = model.encode(_inputs(split, mods, present), [modality])
    out = np.full((len(present), z.shape[1]), np.nan, dtype=z.dtype)
    out[present] = z
    return out
