"""Partial information decomposition of the label over pairs of modality representations, and their
O-information."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from mmkeras.data.base import DataSplit
from mmkeras.errors import MMKerasError
from mmkeras.evaluators.base import Evaluator, check_png_filename, labelled_test_split, load_task_splits
from mmkeras.evaluators.clustering import kmeans
from mmkeras.evaluators.downstream import _inputs, _present_rows
from mmkeras.evaluators.information import entropy, o_information, pid
from mmkeras.params import PositiveInt, Seed

PARTS = ("redundancy", "unique1", "unique2", "synergy")


def _mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


class PID(Evaluator):
    """How each pair of modalities carries the label: the BROJA partial information decomposition
    I(Z1,Z2;Y) = R + U1 + U2 + S (Bertschinger, Rauh, Olbrich, Jost and Ay, Entropy 2014), in bits,
    and the O-information of the representations with the label (Rosas et al., Phys. Rev. E 2019).

    Each modality's representation ``model.encode(..., [m])`` on the ``test`` split (else
    ``validation``), on the rows where every chosen modality is present, is discretised by k-means
    into ``clusters`` values; the decomposition is of the plug-in distribution of (Z1, Z2, Y).
    Plug-in information is biased upward, more so with more clusters and fewer rows: the results
    carry the same decomposition with the labels permuted (``baseline``), whose total would be 0
    without bias.

    modalities: the modalities (two or more; default every modality of the model). Two give one
    decomposition; three or more give one per pair, and the O-information of all of their
    discretised representations with the label.
    clusters: k-means clusters per modality.
    max_rows: at most this many test rows (drawn with ``seed``), or all.
    seeds: repeat the discretisation with k-means seeds ``seed``, ``seed + 1``, ...; the results
    give the mean and standard deviation over them.
    filename: the stacked bar chart of R, U1, U2 and S written into the run's figures.
    tasks, dataset, dataset_params: decompose several labels of the same inputs, as ``logistic_probe``
    does: ``tasks`` maps a name to dataset parameters overriding ``dataset_params``, and each task's
    ``test`` split comes from the registered data set ``dataset`` built with them (Trifeatures:
    ``{R: {task: shared}, U1: {task: unique1}, U2: {task: unique2}, S: {task: synergy}}``). Inputs
    equal to ones already decomposed reuse their representations and k-means codes. The results then
    hold one decomposition per task under ``tasks``, and one figure shows them all.
    """

    def __init__(
        self,
        modalities: list[str] | None = None,
        clusters: PositiveInt = 10,
        max_rows: PositiveInt | None = 10000,
        seeds: PositiveInt = 1,
        seed: Seed = 0,
        filename: str = "pid.png",
        tasks: dict[str, dict[str, Any]] | None = None,
        dataset: str | None = None,
        dataset_params: dict[str, Any] | None = None,
    ):
        if modalities is not None and (len(modalities) < 2 or len(set(modalities)) != len(modalities)):
            raise ValueError(f"pid: modalities must name two or more different modalities, got {modalities!r}")
        if clusters < 2:
            raise ValueError(f"pid: clusters must be at least 2, got {clusters}")
        if max_rows is not None and max_rows < 2:
            raise ValueError(f"pid: max_rows must be at least 2 (or null for all rows), got {max_rows}")
        if seeds < 1:
            raise ValueError(f"pid: seeds must be at least 1, got {seeds}")
        check_png_filename("pid", filename)
        if tasks and not dataset:
            raise ValueError("pid: tasks need a dataset (the registry name of the data set to load them from)")
        self.tasks = {str(k): dict(v or {}) for k, v in (tasks or {}).items()}
        self.dataset, self.dataset_params = dataset, dict(dataset_params or {})
        self._codes: list[tuple[dict[str, np.ndarray], dict[int, dict[str, np.ndarray]]]] = []
        self.modalities = None if modalities is None else list(modalities)
        self.clusters, self.max_rows, self.seeds, self.seed = int(clusters), max_rows, int(seeds), int(seed)
        self.filename = filename

    def evaluate(self, model: Any, data: dict[str, DataSplit], output_dir: Path) -> dict[str, Any]:
        mods = sorted(model.modalities)
        chosen = self.modalities or mods
        unknown = [m for m in chosen if m not in mods]
        if unknown:
            raise MMKerasError(f"pid: {unknown[0]!r} is not a modality of the model (modalities: {', '.join(mods)})")
        if len(chosen) < 2:
            raise MMKerasError(f"pid needs two or more modalities; the model has {mods}")
        output_dir = Path(output_dir)
        if not self.tasks:
            results = self._decompose(model, labelled_test_split("pid", data), mods, chosen)
            self._figure(results["pairs"], output_dir / self.filename)
            return {**results, "figure": f"{output_dir.name}/{self.filename}"}
        per_task = {}
        for name, overrides in self.tasks.items():
            params = {**self.dataset_params, **overrides}
            (split,) = load_task_splits("pid", str(self.dataset), params, name)
            if split.labels is None:
                raise MMKerasError(f"pid.tasks.{name}: the data set gave no labels")
            per_task[name] = self._decompose(model, split, mods, chosen)
        bars = {f"{t}: {p}": r for t, res in per_task.items() for p, r in res["pairs"].items()}
        self._figure(bars, output_dir / self.filename)
        first = next(iter(per_task.values()))
        return {
            "model": first["model"],
            "modalities": list(chosen),
            "clusters": self.clusters,
            "seeds": self.seeds,
            "tasks": per_task,
            "figure": f"{output_dir.name}/{self.filename}",
        }

    def _codes_of(
        self, model: Any, inputs: dict[str, np.ndarray], chosen: list[str]
    ) -> dict[int, dict[str, np.ndarray]]:
        """k-means codes of each chosen modality's representation, per k-means seed; computed once per inputs."""
        for seen, codes in self._codes:
            if all(seen[m].shape == inputs[m].shape and np.array_equal(seen[m], inputs[m]) for m in chosen):
                return codes
        z = {m: model.encode(inputs, [m]) for m in chosen}
        codes = {
            s: {m: kmeans(z[m], min(self.clusters, len(z[m])), seed=s)[0] for m in chosen}
            for s in range(self.seed, self.seed + self.seeds)
        }
        self._codes.append(({m: inputs[m] for m in chosen}, codes))
        return codes

    def _decompose(self, model: Any, split: DataSplit, mods: list[str], chosen: list[str]) -> dict[str, Any]:
        rows = _present_rows(split, chosen)
        if self.max_rows is not None and rows.sum() > self.max_rows:
            keep = np.random.default_rng(self.seed).choice(np.flatnonzero(rows), self.max_rows, replace=False)
            rows = np.zeros_like(rows)
            rows[keep] = True
        if rows.sum() < 2:
            raise MMKerasError(f"pid: fewer than 2 test rows have every one of {chosen} present")
        inputs = _inputs(split, mods, rows)
        codes_by_seed = self._codes_of(model, inputs, chosen)
        y = np.asarray(split.labels)[rows]
        permuted = np.random.default_rng(self.seed).permutation(y)
        pairs = [f"{a}+{b}" for a, b in combinations(chosen, 2)]
        runs: dict[str, dict[str, list[float]]] = {p: {} for p in pairs}
        baseline: dict[str, dict[str, list[float]]] = {p: {} for p in pairs}
        omega: dict[str, list[float]] = {"o_information": [], "baseline": []}
        for codes in codes_by_seed.values():
            for (a, b), name in zip(combinations(chosen, 2), pairs):
                for store, labels in ((runs, y), (baseline, permuted)):
                    for key, value in pid(codes[a], codes[b], labels).items():
                        store[name].setdefault(key, []).append(value)
            omega["o_information"].append(o_information([codes[m] for m in chosen] + [y]))
            omega["baseline"].append(o_information([codes[m] for m in chosen] + [permuted]))
        results_pairs = {}
        for (a, b), name in zip(combinations(chosen, 2), pairs):
            bits = {key: _mean_std(values) for key, values in runs[name].items()}
            total = bits["total"]["mean"]
            results_pairs[name] = {
                "modalities": [a, b],
                "bits": bits,
                "fraction": {k: (bits[k]["mean"] / total if total > 0 else None) for k in PARTS},
                "baseline": {key: float(np.mean(values)) for key, values in baseline[name].items()},
            }
        return {
            "model": str(getattr(model, "name", "model")),
            "modalities": list(chosen),
            "clusters": self.clusters,
            "rows": int(rows.sum()),
            "seeds": self.seeds,
            "label_entropy": entropy(y),
            "pairs": results_pairs,
            "o_information": _mean_std(omega["o_information"]),
            "o_information_baseline": float(np.mean(omega["baseline"])),
        }

    def _figure(self, pairs: dict[str, Any], path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from mmkeras.evaluators.plots import save_figure

        names = list(pairs)
        fig, ax = plt.subplots(figsize=(2.0 + 1.3 * len(names), 4.0))
        bottom = np.zeros(len(names))
        colours = {"redundancy": "#4c72b0", "unique1": "#55a868", "unique2": "#c44e52", "synergy": "#8172b2"}
        for part in PARTS:
            heights = np.array([pairs[n]["bits"][part]["mean"] for n in names])
            ax.bar(names, heights, bottom=bottom, color=colours[part], label=part)
            bottom += heights
        ax.scatter(
            names,
            [pairs[n]["baseline"]["total"] for n in names],
            color="black",
            marker="_",
            s=400,
            label="total, permuted labels",
            zorder=3,
        )
        ax.set_ylabel("bits")
        ax.set_title(f"BROJA decomposition of I(Z1,Z2;Y), {self.clusters} clusters per modality")
        ax.legend(fontsize=8)
        save_figure(fig, path)

    def report(self, results: dict[str, Any]) -> str:
        tasks = results.get("tasks")
        each = tasks or {"": results}
        first = next(iter(each.values()))
        entropy_text = (
            "H(Y) is each task's label entropy"
            if tasks
            else f"the label's entropy is {results['label_entropy']:.3f} bits"
        )
        lines = [
            f"BROJA partial information decomposition of the label over pairs of modality representations "
            f"(each discretised by k-means into {results['clusters']} clusters; {first['rows']} test rows, "
            f"{results['seeds']} k-means seed(s), mean ± std), in bits and as % of I(Z1,Z2;Y); {entropy_text}. "
            f"Plug-in estimates are biased upward: the last column is I(Z1,Z2;Y) with the labels permuted, 0 "
            f"without bias.\n",
            ("| task | H(Y) " if tasks else "")
            + "| pair | redundancy | unique (first) | unique (second) | synergy | I(Z1,Z2;Y) | permuted |",
            ("|---|---" if tasks else "") + "|---|---|---|---|---|---|---|",
        ]
        for task, res in each.items():
            lead = f"| {task} | {res['label_entropy']:.3f} " if tasks else ""
            for name, r in res["pairs"].items():
                cells = []
                for part in PARTS:
                    share = r["fraction"][part]
                    share_text = "" if share is None else f" ({100 * share:.0f}%)"
                    cells.append(f"{r['bits'][part]['mean']:.3f} ± {r['bits'][part]['std']:.3f}{share_text}")
                total = r["bits"]["total"]
                lines.append(
                    f"{lead}| {name} | {' | '.join(cells)} | {total['mean']:.3f} ± {total['std']:.3f} | "
                    f"{r['baseline']['total']:.3f} |"
                )
        for task, res in each.items():
            o = res["o_information"]
            label = f"label {task}" if tasks else "label"
            lines.append(
                f"\nO-information of ({', '.join(res['modalities'])}, {label}): {o['mean']:.3f} ± {o['std']:.3f} "
                f"bits (positive: redundancy dominates; negative: synergy; {res['o_information_baseline']:.3f} with "
                f"the labels permuted)."
            )
        if results.get("figure"):
            lines.append(f"\n![Partial information decomposition]({results['figure']})")
        return "\n".join(lines) + "\n"
