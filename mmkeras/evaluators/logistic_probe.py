"""CoMM's probe protocol: L2-regularised logistic regression on frozen features, the
regularisation chosen on a validation split held out from train, balanced accuracy on test,
for one or several label tasks (e.g. redundancy, uniqueness and synergy on Trifeatures)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mmkeras.data.base import DataSplit
from mmkeras.errors import DataError, MMKerasError
from mmkeras.evaluators.base import Evaluator, load_task_splits
from mmkeras.params import PositiveInt

REPRESENTATIONS = ("joint", "modalities")
CLASS_WEIGHTS = ("none", "balanced")


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The mean over the classes present in ``y_true`` of the fraction of that class predicted right."""
    classes = np.unique(y_true)
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in classes]))


def fit_logistic(
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    l2: float,
    iterations: int = 500,
    tol: float = 1e-5,
    start: tuple[np.ndarray, np.ndarray] | None = None,
    memory: int = 10,
    sample_weight: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression minimising the mean cross-entropy, weighted by ``sample_weight``
    (default 1), + l2/2 ||W||^2 (the bias is not penalised) by L-BFGS (``memory`` pairs, Armijo
    backtracking) from ``start`` (W, b) or zeros, until the largest gradient entry is below ``tol``
    or after ``iterations`` steps. Deterministic. Returns ``(W [d, K], b [K])``."""
    n, d = x.shape
    xb = np.concatenate([np.asarray(x, np.float64), np.ones((n, 1))], axis=1)
    onehot = np.eye(num_classes)[y]
    if sample_weight is not None:
        onehot = onehot * np.asarray(sample_weight, np.float64)[:, None]  # rows of the weighted targets sum to w_i
    row_weight = onehot.sum(axis=1, keepdims=True)
    total_weight = float(row_weight.sum())
    penalty = np.full((d + 1, 1), float(l2))
    penalty[-1] = 0.0
    shape = (d + 1, num_classes)

    def loss_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w = theta.reshape(shape)
        logits = xb @ w
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        total = e.sum(axis=1, keepdims=True)
        loss = -np.sum(onehot * (logits - np.log(total))) / total_weight + 0.5 * np.sum(penalty * w * w)
        return loss, (xb.T @ (row_weight * e / total - onehot) / total_weight + penalty * w).ravel()

    theta = np.zeros(shape) if start is None else np.concatenate([start[0], start[1][None]]).astype(np.float64)
    theta = theta.ravel()
    f, g = loss_and_grad(theta)
    pairs: list[tuple[np.ndarray, np.ndarray, float]] = []
    # first step: 1/L, L the gradient's Lipschitz bound (the softmax Hessian is <= 1/2 X^T X / n)
    first_scale = 1.0 / (0.5 * float(np.linalg.eigvalsh(xb.T @ xb / n)[-1]) + l2)
    for _ in range(iterations):
        if np.max(np.abs(g)) < tol:
            break
        q, alphas = g.copy(), []
        for s_k, y_k, rho in reversed(pairs):
            alpha = rho * (s_k @ q)
            q -= alpha * y_k
            alphas.append(alpha)
        q *= (pairs[-1][0] @ pairs[-1][1]) / (pairs[-1][1] @ pairs[-1][1]) if pairs else first_scale
        for (s_k, y_k, rho), alpha in zip(pairs, reversed(alphas)):
            q += s_k * (alpha - rho * (y_k @ q))
        direction, slope = -q, -(g @ q)
        if slope >= 0:  # not a descent direction: restart from the gradient
            pairs, direction, slope = [], -first_scale * g, -first_scale * (g @ g)
        step = 1.0
        while True:
            f_new, g_new = loss_and_grad(theta + step * direction)
            if f_new <= f + 1e-4 * step * slope or step < 1e-10:
                break
            step *= 0.5
        s_new, y_new = step * direction, g_new - g
        if s_new @ y_new > 1e-12:
            pairs = (pairs + [(s_new, y_new, 1.0 / (s_new @ y_new))])[-memory:]
        theta, f, g = theta + s_new, f_new, g_new
    w = theta.reshape(shape)
    return w[:-1], w[-1]


class LogisticProbe(Evaluator):
    """Logistic regression on frozen representations, CoMM's evaluation (Dufumier et al., ICLR 2025).

    For each task: features are standardised with the training rows' statistics; a seeded
    ``validation_fraction`` of the *training* rows is held out; for each ``l2`` in ``l2_grid`` a
    classifier is fitted on the rest and scored by balanced accuracy on the held-out rows (the
    test split is never used to choose); the best ``l2`` (ties: the strongest) is refitted on all
    training rows and scored by balanced accuracy on the test split.

    Data: with no ``tasks``, the run's own splits (``train``, and ``test``, else ``validation``)
    and their labels, as task ``label``. With ``tasks`` (name -> dataset parameters to override),
    each task's train and test splits come from the registered data set ``dataset`` built with
    ``dataset_params`` updated by the task's overrides; e.g. Trifeatures' R/U1/U2/S are
    ``{R: {task: shared}, U1: {task: unique1}, U2: {task: unique2}, S: {task: synergy}}``. This
    also lets a model pretrained on other data (CoMM's biased Trifeatures pairs for synergy) be
    probed on unbiased pairs. Inputs equal to ones already encoded are not encoded again.

    representation: ``joint`` (``model.encode``: the fused representation, before the head when
    the recipe sets ``model.encode_output: feature``) or ``modalities`` (the concatenation of
    every modality's own representation, CoMM's probe of Cross and Cross+Self). Only rows with
    every modality present are used.
    """

    def __init__(
        self,
        tasks: dict[str, dict[str, Any]] | None = None,
        dataset: str | None = None,
        dataset_params: dict[str, Any] | None = None,
        representation: str = "joint",
        validation_fraction: float = 0.2,
        l2_grid: list[float] = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5),  # type: ignore[assignment]
        iterations: PositiveInt = 300,
        class_weight: str = "none",
        seed: int = 0,
    ):
        if representation not in REPRESENTATIONS:
            raise ValueError(
                f"logistic_probe: representation must be one of {list(REPRESENTATIONS)}, got {representation!r}"
            )
        if tasks and not dataset:
            raise ValueError(
                "logistic_probe: tasks need a dataset (the registry name of the data set to load them from)"
            )
        if not 0.0 < validation_fraction < 1.0:
            raise ValueError(f"logistic_probe: validation_fraction must be in (0, 1), got {validation_fraction}")
        if not l2_grid or any(v < 0 for v in l2_grid):
            raise ValueError(f"logistic_probe: l2_grid must be a non-empty list of non-negative numbers, got {l2_grid}")
        if iterations < 1:
            raise ValueError(f"logistic_probe: iterations must be at least 1, got {iterations}")
        if class_weight not in CLASS_WEIGHTS:
            raise ValueError(f"logistic_probe: class_weight must be one of {list(CLASS_WEIGHTS)}, got {class_weight!r}")
        self.tasks = {str(k): dict(v or {}) for k, v in (tasks or {}).items()}
        self.dataset, self.dataset_params = dataset, dict(dataset_params or {})
        self.representation = representation
        self.validation_fraction = float(validation_fraction)
        self.l2_grid = sorted((float(v) for v in l2_grid), reverse=True)
        self.iterations, self.class_weight, self.seed = int(iterations), class_weight, int(seed)
        self._encoded: list[tuple[dict[str, np.ndarray], np.ndarray]] = []

    # -- data ------------------------------------------------------------------------------
    def _task_splits(self, data: dict[str, DataSplit]) -> dict[str, tuple[DataSplit, DataSplit]]:
        if not self.tasks:
            train, test = data.get("train"), data.get("test") or data.get("validation")
            if train is None or test is None:
                raise MMKerasError(
                    f"logistic_probe needs a train split and a test or validation split; got {sorted(data)}"
                )
            return {"label": (train, test)}
        out = {}
        for name, overrides in self.tasks.items():
            params = {**self.dataset_params, **overrides}
            train, test = load_task_splits("logistic_probe", self.dataset, params, name, ("train", "test"))
            out[name] = (train, test)
        return out

    def _features(self, model: Any, split: DataSplit, where: str) -> tuple[np.ndarray, np.ndarray]:
        mods = sorted(model.modalities)
        missing = [m for m in mods if m not in split.inputs]
        if missing:
            raise DataError(
                f"logistic_probe: the {where} data has no modality {missing[0]!r}; it has {sorted(split.inputs)}"
            )
        if split.labels is None:
            raise DataError(f"logistic_probe: the {where} data has no labels")
        rows = np.all([split.mask(m) > 0 for m in mods], axis=0)
        inputs = {m: split.inputs[m][rows] for m in mods}
        for seen, z in self._encoded:
            if all(seen[m].shape == inputs[m].shape and np.array_equal(seen[m], inputs[m]) for m in mods):
                return z, np.asarray(split.labels)[rows].astype(np.int64)
        z = self._encode(model, inputs, mods)
        self._encoded.append((inputs, z))
        return z, np.asarray(split.labels)[rows].astype(np.int64)

    def _encode(self, model: Any, inputs: dict[str, np.ndarray], mods: list[str]) -> np.ndarray:
        if self.representation == "joint":
            return model.encode(inputs, mods).astype(np.float64)
        each = model.encode_each(inputs, mods)  # the model's encode_output: latents, or features for CoMM
        return np.concatenate([each[m].astype(np.float64) for m in mods], axis=1)

    # -- protocol --------------------------------------------------------------------------
    def evaluate(self, model: Any, data: dict[str, DataSplit], output_dir: Path) -> dict[str, Any]:
        self._encoded = []
        results = {}
        for name, (train, test) in self._task_splits(data).items():
            z_train, y_train = self._features(model, train, f"{name} train")
            z_test, y_test = self._features(model, test, f"{name} test")
            results[name] = self.probe(z_train, y_train, z_test, y_test)
        self._encoded = []
        return {"tasks": results, "representation": self.representation, "class_weight": self.class_weight}

    def probe(self, z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, y_test: np.ndarray) -> dict[str, Any]:
        """Choose l2 on a held-out part of the training rows, refit on all of them, score the test rows."""
        num_classes = int(max(y_train.max(), y_test.max())) + 1
        mean, std = z_train.mean(0), z_train.std(0) + 1e-8
        z_train, z_test = (z_train - mean) / std, (z_test - mean) / std
        order = np.random.default_rng(self.seed).permutation(len(z_train))
        held = max(1, round(self.validation_fraction * len(z_train)))
        val, fit = order[:held], order[held:]
        weights = self._weights(y_train, num_classes)
        scores, solutions, start = {}, {}, None
        for l2 in self.l2_grid:  # strongest first, each fit warm-started from the previous one
            start = solutions[l2] = fit_logistic(
                z_train[fit], y_train[fit], num_classes, l2, self.iterations, start=start, sample_weight=weights[fit]
            )
            scores[l2] = balanced_accuracy(y_train[val], np.argmax(z_train[val] @ start[0] + start[1], axis=1))
        best = max(self.l2_grid, key=lambda v: scores[v])  # max keeps the first (strongest) of ties
        w, b = fit_logistic(
            z_train, y_train, num_classes, best, self.iterations, start=solutions[best], sample_weight=weights
        )
        return {
            "balanced_accuracy": balanced_accuracy(y_test, np.argmax(z_test @ w + b, axis=1)),
            "train_balanced_accuracy": balanced_accuracy(y_train, np.argmax(z_train @ w + b, axis=1)),
            "validation_balanced_accuracy": scores[best],
            "l2": best,
            "chance": 1.0 / len(np.unique(y_test)),
            "num_train": len(y_train),
            "num_test": len(y_test),
        }

    def _weights(self, y: np.ndarray, num_classes: int) -> np.ndarray:
        """Per-row loss weights: 1, or n / (K n_y) for ``class_weight="balanced"`` (each class weighs the same)."""
        if self.class_weight == "none":
            return np.ones(len(y))
        counts = np.bincount(y, minlength=num_classes).astype(np.float64)
        return len(y) / (np.count_nonzero(counts) * counts[y])

    def report(self, results: dict[str, Any]) -> str:
        rows = "\n".join(
            f"| {name} | {100 * r['balanced_accuracy']:.2f} | {100 * r['validation_balanced_accuracy']:.2f} "
            f"| {r['l2']:g} | {100 * r['chance']:.1f} |"
            for name, r in results["tasks"].items()
        )
        return (
            f"Logistic probe on frozen {results['representation']} representations (class weights: "
            f"{results.get('class_weight', 'none')}): balanced accuracy (%) on test, l2 chosen on a validation "
            "split held out from train.\n\n"
            f"| task | test | validation | l2 | chance |\n|---|---|---|---|---|\n{rows}\n"
        )
