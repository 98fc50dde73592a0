"""Ridge regression probe: a numeric target read linearly from frozen representations, per modality subset."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from mmkeras.data.base import DataSplit
from mmkeras.errors import MMKerasError
from mmkeras.evaluators.base import Evaluator, modality_subsets, subset_name
from mmkeras.evaluators.downstream import _inputs, _present_rows

TRAIN_ON = ("complete", "each")


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson's correlation of two vectors; ``None`` where either is constant (undefined)."""
    a = np.asarray(a, np.float64) - np.mean(a)
    b = np.asarray(b, np.float64) - np.mean(b)
    denominator = float(np.sqrt(np.sum(a * a) * np.sum(b * b)))
    if denominator <= 1e-300:
        return None
    return float(np.sum(a * b) / denominator)


class RidgeFit:
    """Ridge regression y ~ x w + b on standardised x, minimising ||y - x w - b||^2 + n alpha ||w||^2
    over the n rows (the bias unpenalised), solved for every alpha at once from one SVD of the centred x."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        x = np.asarray(x, np.float64)
        self.mean, self.std = x.mean(0), x.std(0) + 1e-8
        self.y_mean, self.n = float(np.mean(y)), len(x)
        xs = (x - self.mean) / self.std
        u, self.s, self.vt = np.linalg.svd(xs, full_matrices=False)
        self.uty = u.T @ (np.asarray(y, np.float64) - self.y_mean)

    def weights(self, alpha: float) -> np.ndarray:
        return self.vt.T @ (self.s / (self.s**2 + self.n * alpha) * self.uty)

    def predict(self, x: np.ndarray, alpha: float) -> np.ndarray:
        return ((np.asarray(x, np.float64) - self.mean) / self.std) @ self.weights(alpha) + self.y_mean


class RegressionProbe(Evaluator):
    """Linear (ridge) regression from frozen representations (``model.encode``) to a numeric
    target, scored on every modality subset by mean absolute error and Pearson correlation.

    target: ``label`` (the data set's labels, read as numbers) or the name of a numeric array of
    the splits' ``inputs`` with one value per row (shape [N] or [N, 1]) that is not one of the
    model's modalities, e.g. an ``age`` column a data set provides beside its modalities.

    Protocol: features are standardised with the training rows' statistics; a seeded
    ``validation_fraction`` of the training rows is held out; the ridge penalty ``alpha`` is the
    one of ``alphas`` (per row: the penalty is n alpha ||w||^2 over n rows) with the smallest mean squared error
    on them (ties: the strongest); it is refitted on all training rows and scored on the ``test``
    split (else ``validation``). ``train_on="complete"`` fits one regressor on complete
    observations and applies it to every subset's representation; ``"each"`` fits one per subset
    on the training rows where the subset is present. The report also gives the MAE of
    predicting the training mean (``baseline_mae``): a representation that carries no
    information about the target scores about that.
    """

    def __init__(
        self,
        target: str = "label",
        subsets: list[str] | str = "all",
        train_on: Literal["complete", "each"] = "complete",
        alphas: list[float] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0),  # type: ignore[assignment]
        validation_fraction: float = 0.2,
        seed: int = 0,
    ):
        if train_on not in TRAIN_ON:
            raise ValueError(f"regression_probe: train_on must be one of {list(TRAIN_ON)}, got {train_on!r}")
        if isinstance(subsets, str) and subsets not in ("all", "singles"):
            raise ValueError(f"regression_probe: subsets must be 'all', 'singles' or a list of names, got {subsets!r}")
        if not alphas or any(a < 0 for a in alphas):
            raise ValueError(f"regression_probe: alphas must be a non-empty list of non-negative numbers, got {alphas}")
        if not 0.0 < validation_fraction < 1.0:
            raise ValueError(f"regression_probe: validation_fraction must be in (0, 1), got {validation_fraction}")
        self.target, self.subsets, self.train_on = target, subsets, train_on
        self.alphas = sorted((float(a) for a in alphas), reverse=True)
        self.validation_fraction, self.seed = float(validation_fraction), int(seed)

    def _target(self, split: DataSplit, where: str, mods: list[str]) -> np.ndarray:
        if self.target == "label":
            if split.labels is None:
                raise MMKerasError(f"regression_probe: target 'label' but the {where} split has no labels")
            y = np.asarray(split.labels)
        elif self.target in mods:
            raise MMKerasError(
                f"regression_probe: target {self.target!r} is one of the model's modalities {mods}; "
                "a probe must not read its answer from its input"
            )
        elif self.target not in split.inputs:
            raise MMKerasError(
                f"regression_probe: target {self.target!r} is not in the {where} split; use 'label' or one of "
                f"{sorted(k for k in split.inputs if k not in mods)}"
            )
        else:
            y = np.asarray(split.inputs[self.target])
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.number):
            raise MMKerasError(
                f"regression_probe: target {self.target!r} must be numeric with one value per row "
                f"(shape [N] or [N, 1]); got dtype {y.dtype} and shape {list(y.shape)}"
            )
        return y.astype(np.float64)

    def evaluate(self, model: Any, data: dict[str, DataSplit], output_dir: Path) -> dict[str, Any]:
        train, test = data.get("train"), data.get("test") or data.get("validation")
        if train is None or test is None:
            raise MMKerasError(
                f"regression_probe needs a train split and a test or validation split; got {sorted(data)}"
            )
        mods = sorted(model.modalities)
        y_train_all, y_test_all = self._target(train, "train", mods), self._target(test, "test", mods)
        try:
            subsets = modality_subsets(mods, self.subsets)
        except ValueError as exc:
            raise MMKerasError(f"regression_probe: {exc}") from None
        fitted = self._fit(model, train, y_train_all, mods, mods) if self.train_on == "complete" else None
        scores = {}
        for subset in subsets:
            name = subset_name(subset, mods)
            fit = fitted or self._fit(model, train, y_train_all, mods, list(subset))
            rows = _present_rows(test, list(subset))
            if fit is None or not rows.any():
                continue
            ridge, alpha, y_mean = fit
            predicted = ridge.predict(model.encode(_inputs(test, mods, rows), list(subset)), alpha)
            y = y_test_all[rows]
            scores[name] = {
                "mae": float(np.mean(np.abs(predicted - y))),
                "pearson": pearson(predicted, y),
                "baseline_mae": float(np.mean(np.abs(y_mean - y))),
                "alpha": alpha,
                "test_rows": int(rows.sum()),
            }
        if not scores:
            raise MMKerasError("regression_probe: no test row has the modalities of any requested subset present")
        return {
            "model": str(getattr(model, "name", "model")),
            "target": self.target,
            "train_on": self.train_on,
            "subsets": scores,
        }

    def _fit(
        self, model: Any, split: DataSplit, y_all: np.ndarray, mods: list[str], subset: list[str]
    ) -> tuple[RidgeFit, float, float] | None:
        """Choose alpha on held-out training rows, refit on all; None when too few rows are present."""
        rows = _present_rows(split, subset)
        if rows.sum() < 3:
            if set(subset) == set(mods):
                raise MMKerasError("regression_probe: fewer than 3 training rows have every modality present")
            return None
        z, y = model.encode(_inputs(split, mods, rows), subset).astype(np.float64), y_all[rows]
        order = np.random.default_rng(self.seed).permutation(len(z))
        held = max(1, round(self.validation_fraction * len(z)))
        val, fit = order[:held], order[held:]
        partial = RidgeFit(z[fit], y[fit])
        errors = {a: float(np.mean((partial.predict(z[val], a) - y[val]) ** 2)) for a in self.alphas}
        best = min(self.alphas, key=lambda a: errors[a])  # min keeps the first (strongest) of ties
        return RidgeFit(z, y), best, float(np.mean(y))

    def report(self, results: dict[str, Any]) -> str:
        def fmt(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.3f}"

        rows = "\n".join(
            f"| {name} | {s['mae']:.4g} | {fmt(s['pearson'])} | {s['baseline_mae']:.4g} | {s['test_rows']} |"
            for name, s in results["subsets"].items()
        )
        return (
            f"Ridge regression probe of `{results['target']}` from frozen representations (regressor fitted on "
            f"{results['train_on']} training observations, penalty chosen on a validation split held out from "
            "train), tested with only the observed modalities in each row. Baseline: the MAE of predicting the "
            "training mean.\n\n"
            f"| modalities | MAE | Pearson r | baseline MAE | test rows |\n|---|---|---|---|---|\n{rows}\n"
        )
