"""Sentiment evaluation of the affect data sets (CMU-MOSI, CMU-MOSEI): a score in [-3, 3] predicted from
the complete input and from every modality subset, scored as in GMC's supervised experiment (Poklukar,
Vasco et al., ICML 2022, Table 4) and MultiBench's affect protocol (Liang et al., NeurIPS 2021).

For predictions p and labels y over the test rows where a subset's modalities are present:

- ``mae``: mean |p - y|; ``corr``: Pearson's correlation of p and y;
- ``acc2``: binary accuracy, (p > 0) == (y > 0), over the rows whose label is not exactly 0;
- ``f1``: the F1 of those same binary decisions, weighted by each class's support (:func:`weighted_f1`);
- ``acc2_with_zero``: (p >= 0) == (y >= 0) over all rows (label 0 counts as non-negative);
- ``acc7``: round(clip(p, -3, 3)) == round(clip(y, -3, 3)), numpy's rounding (halves to even);
- ``n``: the rows scored (``n_nonzero``: those with a non-zero label).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from mmkeras.data.base import DataSplit
from mmkeras.errors import MMKerasError
from mmkeras.evaluators.base import Evaluator, modality_subsets, subset_name
from mmkeras.evaluators.downstream import _inputs, _present_rows
from mmkeras.evaluators.plots import save_figure
from mmkeras.evaluators.regression_probe import RidgeFit, pearson

SOURCES = ("auto", "head", "probe")
#: rows the prediction head scores at once
HEAD_BATCH = 4096


def weighted_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The F1 score of each class present in ``y_true``, 2 tp / (2 tp + fp + fn), averaged with the
    class's share of the rows as its weight (a class only predicted, never true, weighs 0)."""
    y_true, y_pred = np.asarray(y_true).reshape(-1), np.asarray(y_pred).reshape(-1)
    if len(y_true) != len(y_pred) or not len(y_true):
        raise ValueError(f"weighted_f1: expected two equal, non-empty vectors, got {len(y_true)} and {len(y_pred)}")
    total = 0.0
    for c in np.unique(y_true):
        true, predicted = y_true == c, y_pred == c
        tp = float(np.sum(true & predicted))
        wrong = float(np.sum(predicted & ~true) + np.sum(true & ~predicted))
        total += float(np.sum(true)) * 2.0 * tp / (2.0 * tp + wrong)  # > 0: the class has a true row
    return total / len(y_true)


def affect_scores(prediction: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """The module docstring's metrics of ``prediction`` against sentiment ``labels`` (two vectors);
    ``acc2`` and ``f1`` are ``None`` when every label is 0, ``corr`` when either vector is constant."""
    p = np.asarray(prediction, np.float64).reshape(-1)
    y = np.asarray(labels, np.float64).reshape(-1)
    nonzero = y != 0
    acc2 = f1 = None
    if nonzero.any():
        truth, decided = y[nonzero] > 0, p[nonzero] > 0
        acc2, f1 = float(np.mean(truth == decided)), weighted_f1(truth, decided)
    return {
        "mae": float(np.mean(np.abs(p - y))),
        "corr": pearson(p, y),
        "acc2": acc2,
        "f1": f1,
        "acc2_with_zero": float(np.mean((p >= 0) == (y >= 0))),
        "acc7": float(np.mean(np.round(np.clip(p, -3, 3)) == np.round(np.clip(y, -3, 3)))),
        "n": int(len(y)),
        "n_nonzero": int(nonzero.sum()),
    }


class Affect(Evaluator):
    """Sentiment scores in [-3, 3] predicted for the complete input and each modality subset, scored by
    MAE, correlation, Acc-2, weighted F1, Acc-2 with zero and Acc-7 (module docstring) on the ``test``
    split (else ``validation``), each subset on the rows where its modalities are present.

    Args:
        subsets: ``all`` (the complete input and every non-empty proper subset), ``singles`` (complete
            and each single modality) or names like ``complete``, ``text``, ``text+audio``.
        source: where predictions come from. ``head``: the trained objective's prediction head (supervised
            GMC, ``supervised``) applied to ``model.encode(x, modalities=subset, output="latent")``, the
            subset's latent (with ``model.subset_encoding: mean``, the mean of the present modalities'
            latents, as GMC evaluates). ``probe``: ridge regression on frozen representations
            (``model.encode``) fitted on the train split's complete rows, its penalty chosen on the
            validation split when there is one besides the test split, else on a seeded
            ``validation_fraction`` of the train rows (then refitted on all), and applied unchanged to
            every subset. ``auto``: the head when the model's objective has a regression prediction head,
            else the probe.
        alphas: the probe's candidate ridge penalties (per row, as ``regression_probe``); ties go to the
            strongest.
        validation_fraction: the share of train rows held out to choose the penalty when there is no
            validation split.
        seed: the seed of that hold-out.
    """

    def __init__(
        self,
        subsets: list[str] | str = "all",
        source: Literal["auto", "head", "probe"] = "auto",
        alphas: list[Annotated[float, Field(ge=0)]] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0),  # type: ignore[assignment]
        validation_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.1,
        seed: int = 0,
    ):
        if isinstance(subsets, str) and subsets not in ("all", "singles"):
            raise ValueError(f"affect: subsets must be 'all', 'singles' or a list of names, got {subsets!r}")
        if source not in SOURCES:
            raise ValueError(f"affect: source must be one of {list(SOURCES)}, got {source!r}")
        if not alphas or any(a < 0 for a in alphas):
            raise ValueError(f"affect: alphas must be a non-empty list of non-negative numbers, got {alphas}")
        if not 0.0 < validation_fraction < 1.0:
            raise ValueError(f"affect: validation_fraction must be in (0, 1), got {validation_fraction}")
        self.subsets, self.source = subsets, source
        self.alphas = sorted((float(a) for a in alphas), reverse=True)
        self.validation_fraction, self.seed = float(validation_fraction), int(seed)

    def evaluate(self, model: Any, data: dict[str, DataSplit], output_dir: Path) -> dict[str, Any]:
        where = "test" if data.get("test") is not None else "validation"
        test = data.get(where)
        if test is None:
            raise MMKerasError(f"affect needs a test or validation split to score; got {sorted(data)}")
        mods = sorted(model.modalities)
        try:
            subsets = modality_subsets(mods, self.subsets)
        except ValueError as exc:
            raise MMKerasError(f"affect: {exc}") from None
        y_test = sentiment_labels(test, where)
        source = self.resolve_source(model)
        if source == "head":
            predict, probe = self._head(model), None
        else:
            predict, probe = self._probe(model, data, mods, where)
        scores = {}
        for subset in subsets:
            rows = _present_rows(test, list(subset))
            if rows.any():
                prediction = predict(_inputs(test, mods, rows), list(subset))
                scores[subset_name(subset, mods)] = affect_scores(prediction, y_test[rows])
        if not scores:
            raise MMKerasError(f"affect: no {where} row has the modalities of any requested subset present")
        figure = None
        if output_dir is not None:
            path = bar_chart(
                scores, Path(output_dir) / "affect_subsets.png", f"sentiment by observed modalities ({source})"
            )
            figure = f"{Path(output_dir).name}/{path.name}"
        objective = getattr(model, "objective", None)
        return {
            "model": str(getattr(model, "name", "model")),
            "source": source,
            "objective": type(objective).__name__ if objective is not None else None,
            "split": where,
            "subsets": scores,
            "probe": probe,
            "figure": figure,
        }

    def resolve_source(self, model: Any) -> str:
        """``head`` or ``probe`` for ``model`` (see ``source``); raises when ``head`` is asked for and
        the model's objective has no regression prediction head."""
        if self.source == "probe":
            return "probe"
        objective = getattr(model, "objective", None)
        has_head = getattr(objective, "prediction_head", None) is not None and callable(
            getattr(objective, "predict_from_joint", None)
        )
        regression = getattr(objective, "task", "regression") == "regression"  # a head without a task: one output
        if self.source == "auto":
            return "head" if has_head and regression else "probe"
        name = type(objective).__name__ if objective is not None else "none"
        if not has_head:
            raise MMKerasError(
                f"affect: source: head, but the model's objective ({name}) has no prediction head; train with "
                "objective gmc (supervised: true) or supervised, or set source: probe"
            )
        if not regression:
            raise MMKerasError(
                f"affect: source: head, but the prediction head of the objective ({name}) is a classifier (task: "
                f"{objective.task}); set objective.params.task: regression, or source: probe"
            )
        return "head"

    def _head(self, model: Any) -> Callable[[dict[str, Any], list[str]], np.ndarray]:
        from keras import ops

        objective = model.objective

        def predict(x: dict[str, Any], subset: list[str]) -> np.ndarray:
            z = model.encode(x, subset, output="latent")
            out = [
                ops.convert_to_numpy(objective.predict_from_joint(z[i : i + HEAD_BATCH]))
                for i in range(0, len(z), HEAD_BATCH)
            ]
            return np.concatenate(out)[:, 0]

        return predict

    def _probe(
        self, model: Any, data: dict[str, DataSplit], mods: list[str], where: str
    ) -> tuple[Callable[[dict[str, Any], list[str]], np.ndarray], dict[str, Any]]:
        """A ridge regressor on the train split's complete rows, and what was chosen."""
        train = data.get("train")
        if train is None:
            raise MMKerasError(f"affect: source probe needs a train split to fit on; got {sorted(data)}")
        complete = _present_rows(train, mods)
        if complete.sum() < 3:
            raise MMKerasError("affect: fewer than 3 training rows have every modality present to fit the probe on")
        z = model.encode(_inputs(train, mods, complete), mods).astype(np.float64)
        y = sentiment_labels(train, "train")[complete]
        held_out = data.get("validation") if where == "test" else None  # never choose on the split scored
        if held_out is not None and _present_rows(held_out, mods).any():
            chosen_on, rows = "validation", _present_rows(held_out, mods)
            z_val = model.encode(_inputs(held_out, mods, rows), mods)
            y_val = sentiment_labels(held_out, "validation")[rows]
            fitted = final = RidgeFit(z, y)
        else:  # choose on a seeded share of train, then refit on all of it
            chosen_on, order = "train_holdout", np.random.default_rng(self.seed).permutation(len(z))
            held = max(1, round(self.validation_fraction * len(z)))
            z_val, y_val = z[order[:held]], y[order[:held]]
            fitted, final = RidgeFit(z[order[held:]], y[order[held:]]), RidgeFit(z, y)
        errors = {a: float(np.mean((fitted.predict(z_val, a) - y_val) ** 2)) for a in self.alphas}
        alpha = min(self.alphas, key=lambda a: errors[a])  # min keeps the first (strongest) of ties

        def predict(x: dict[str, Any], subset: list[str]) -> np.ndarray:
            return final.predict(model.encode(x, subset), alpha)

        return predict, {"alpha": alpha, "alpha_chosen_on": chosen_on, "train_rows": int(complete.sum())}

    def report(self, results: dict[str, Any]) -> str:
        def num(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.3f}"

        def pct(value: float | None) -> str:
            return "n/a" if value is None else f"{100 * value:.1f}"

        if results["source"] == "head":
            source = (
                f"the prediction head trained with the objective (`{results['objective']}`) on each subset's latent"
            )
        else:
            probe = results["probe"]
            chosen = "the validation split" if probe["alpha_chosen_on"] == "validation" else "train rows held out"
            source = (
                f"a ridge regression probe on frozen representations, fitted on {probe['train_rows']} complete "
                f"training rows (penalty {probe['alpha']:g}, chosen on {chosen}) and applied unchanged to each subset"
            )
        rows = "\n".join(
            f"| {name} | {num(s['mae'])} | {num(s['corr'])} | {pct(s['acc2'])} | {pct(s['f1'])} | {pct(s['acc7'])} |"
            for name, s in results["subsets"].items()
        )
        figure = f"\n![Acc-2 and MAE by observed modalities]({results['figure']})\n" if results.get("figure") else ""
        return (
            f"Sentiment (affect) on the {results['split']} split, predicted by {source}; each subset on the rows "
            "where its modalities are present. Acc-2 and F1 (weighted) in %, over rows whose label is not 0; "
            "Acc-7 in %, rounded predictions clipped to [-3, 3].\n\n"
            f"| subset | MAE | Corr | Acc-2 | F1 | Acc-7 |\n|---|---|---|---|---|---|\n{rows}\n{figure}"
        )


def sentiment_labels(split: DataSplit, where: str) -> np.ndarray:
    """The split's labels as float64 sentiment scores [N]; a one-line error for integer classes."""
    if split.labels is None:
        raise MMKerasError(f"affect: the {where} split has no labels; it needs sentiment scores in [-3, 3]")
    y = np.asarray(split.labels)
    if y.ndim > 1 and y.size == len(y):  # [N, 1] or MultiBench's [N, 1, 1]
        y = y.reshape(-1)
    if np.issubdtype(y.dtype, np.integer) or y.dtype == bool:
        raise MMKerasError(
            f"affect: the {where} labels are integer classes ({y.dtype}), not sentiment scores; set "
            "data.params.target: regression, or use the logistic_probe evaluator for classes"
        )
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.floating):
        raise MMKerasError(
            f"affect: the {where} labels must be one float score per row; got dtype {y.dtype} and shape {list(y.shape)}"
        )
    return y.astype(np.float64)


def bar_chart(scores: dict[str, dict[str, Any]], path: Path | str, title: str) -> Path:
    """Acc-2 (%) and MAE per subset as two bar panels, written as a PNG at ``path``; a subset without
    an Acc-2 (every label 0) gets no bar there."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(scores)
    acc2 = [np.nan if s["acc2"] is None else 100 * s["acc2"] for s in scores.values()]
    mae = [s["mae"] for s in scores.values()]
    width = min(4.0 + 0.9 * len(names), 20.0)
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(width, 7.0), 3.8))
    colour = plt.get_cmap("viridis")
    for ax, values, label, fmt, shade in (
        (left, acc2, "Acc-2 (%)", "{:.1f}", 0.3),
        (right, mae, "MAE", "{:.3f}", 0.7),
    ):
        bars = ax.bar(range(len(names)), np.nan_to_num(values), color=colour(shade))
        for bar, v in zip(bars, values):
            if np.isfinite(v):
                ax.annotate(
                    fmt.format(v),
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=8,
                )
        ax.set_xticks(range(len(names)), labels=names, rotation=30, ha="right")
        ax.set_xlabel("observed modalities")
        ax.set_ylabel(label)
    left.set_ylim(0, 105)
    right.set_ylim(0, 1.15 * max(max(mae), 1e-6))  # room for the annotations above the tallest bar
    fig.suptitle(title)
    return save_figure(fig, path)
