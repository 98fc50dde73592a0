"""Downstream classification under missing modalities: the protocol of the GMC paper's Table 1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mmkeras.data.base import DataSplit
from mmkeras.errors import MMKerasError
from mmkeras.evaluators.base import Evaluator, modality_subsets, subset_name
from mmkeras.model import MASKS
from mmkeras.params import PositiveFloat, PositiveInt


class Downstream(Evaluator):
    """An MLP classifier trained on frozen joint representations of complete observations,
    then applied unchanged to representations of modality subsets (Poklukar, Vasco et al.,
    ICML 2022, Sec. 5: a 64-256-128-10 ReLU MLP, Adam 1e-3, batch 64, 100 epochs).

    The model's :meth:`~mmkeras.model.MultimodalModel.encode` gives the subset representation
    (with ``model.subset_encoding: mean``, the mean of the present modalities' latents, as in
    the paper). The classifier trains on the ``train`` split's rows where every modality is
    present and is scored on the ``test`` split (else ``validation``), for each subset on the
    rows where all of its modalities are present.

    subsets: ``"singles"`` (complete and each single modality), ``"all"`` (every non-empty
    subset) or a list of names like ``complete``, ``image``, ``image+sound``.
    seeds: how many classifiers (seeds ``seed``, ``seed + 1``, ...) to train; the results give
    the mean and standard deviation over them.
    """

    def __init__(
        self,
        subsets: list[str] | str = "singles",
        hidden_units: list[int] = (256, 128),  # type: ignore[assignment]
        epochs: PositiveInt = 100,
        batch_size: PositiveInt = 64,
        learning_rate: PositiveFloat = 1e-3,
        seeds: PositiveInt = 1,
        seed: int = 0,
    ):
        if isinstance(subsets, str) and subsets not in ("singles", "all"):
            raise ValueError(f"downstream: subsets must be 'singles', 'all' or a list of names, got {subsets!r}")
        for name, value in (("epochs", epochs), ("batch_size", batch_size), ("seeds", seeds)):
            if value < 1:
                raise ValueError(f"downstream: {name} must be at least 1, got {value}")
        if learning_rate <= 0:
            raise ValueError(f"downstream: learning_rate must be positive, got {learning_rate}")
        self.subsets = subsets
        self.hidden_units = [int(u) for u in hidden_units]
        self.epochs, self.batch_size, self.learning_rate = int(epochs), int(batch_size), float(learning_rate)
        self.seeds, self.seed = int(seeds), int(seed)

    def evaluate(self, model: Any, data: dict[str, DataSplit], output_dir: Path) -> dict[str, Any]:
        train, test = data.get("train"), data.get("test") or data.get("validation")
        if train is None or test is None:
            raise MMKerasError(f"downstream needs a train split and a test or validation split; got {sorted(data)}")
        if train.labels is None or test.labels is None:
            raise MMKerasError("downstream needs labelled data; the data set gave no labels")
        mods = sorted(model.modalities)
        if self.subsets == "singles":
            subsets = [tuple(mods)] + [(m,) for m in mods if len(mods) > 1]
        else:
            subsets = modality_subsets(mods, self.subsets)
        complete = _present_rows(train, mods)
        if not complete.any():
            raise MMKerasError("downstream: no training row has every modality present")
        z_train = model.encode(_inputs(train, mods, complete), mods)
        y_train = train.labels[complete]
        num_classes = int(max(train.labels.max(), test.labels.max())) + 1
        tests = {}
        for subset in subsets:
            rows = _present_rows(test, list(subset))
            if rows.any():
                tests[subset_name(subset, mods)] = (
                    model.encode(_inputs(test, mods, rows), list(subset)),
                    test.labels[rows],
                )
        runs: dict[str, list[float]] = {name: [] for name in tests}
        for s in range(self.seeds):
            classify = self._fit(z_train, y_train, num_classes, self.seed + s)
            for name, (z, y) in tests.items():
                runs[name].append(float(np.mean(classify(z) == y)))
        accuracy = {n: {"mean": float(np.mean(r)), "std": float(np.std(r)), "runs": r} for n, r in runs.items()}
        figure = None
        if output_dir is not None:
            from mmkeras.evaluators.plots import subset_heatmap

            name = str(getattr(model, "name", "model"))
            path = subset_heatmap({name: accuracy}, Path(output_dir) / "downstream_subsets.png", "downstream accuracy")
            figure = f"{Path(output_dir).name}/{path.name}"
        return {
            "model": str(getattr(model, "name", "model")),
            "accuracy": accuracy,
            "figure": figure,
            "chance": float(np.bincount(test.labels).max() / len(test.labels)),
            "classifier": [int(z_train.shape[1]), *self.hidden_units, num_classes],
            "epochs": self.epochs,
            "seeds": self.seeds,
            "train_rows": int(complete.sum()),
            "test_rows": {n: len(y) for n, (_, y) in tests.items()},
        }

    def _fit(self, z: np.ndarray, y: np.ndarray, num_classes: int, seed: int):
        import keras

        keras.utils.set_random_seed(seed)
        clf = keras.Sequential(
            [keras.Input((z.shape[1],))]
            + [keras.layers.Dense(u, activation="relu") for u in self.hidden_units]
            + [keras.layers.Dense(num_classes)],
            name="downstream_classifier",
        )
        clf.compile(
            optimizer=keras.optimizers.Adam(self.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        clf.fit(z, y, batch_size=self.batch_size, epochs=self.epochs, shuffle=True, verbose=0)
        return lambda x: np.argmax(clf.predict(x, batch_size=1024, verbose=0), axis=1)

    def report(self, results: dict[str, Any]) -> str:
        seeds = results["seeds"]
        spread = f"mean ± std over {seeds} classifier seeds" if seeds > 1 else "one classifier seed"
        dims = "-".join(str(d) for d in results["classifier"])
        return (
            f"Downstream classification accuracy (%): an MLP ({dims}, ReLU) trained for {results['epochs']} epochs "
            f"on the joint representations of {results['train_rows']} complete training observations, tested with "
            f"only the observed modalities in each column; {spread}; chance {100 * results['chance']:.1f}%.\n\n"
            + results_table({results["model"]: results})
            + (
                f"\n![downstream accuracy by observed modalities]({results['figure']})\n"
                if results.get("figure")
                else ""
            )
        )


def results_table(runs: dict[str, dict[str, Any]]) -> str:
    """A Markdown table like Table 1 of the GMC paper: one row per run (``name -> results`` of
    :class:`Downstream`), one column per observed modality subset."""
    columns: list[str] = []
    for res in runs.values():
        columns += [c for c in res["accuracy"] if c not in columns]
    lines = ["| model | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for name, res in runs.items():
        cells = []
        for c in columns:
            acc = res["accuracy"].get(c)
            if acc is None:
                cells.append("")
            elif res.get("seeds", 1) > 1:
                cells.append(f"{100 * acc['mean']:.2f} ± {100 * acc['std']:.2f}")
            else:
                cells.append(f"{100 * acc['mean']:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _present_rows(split: DataSplit, modalities: list[str]) -> np.ndarray:
    present = np.ones(len(split), dtype=bool)
    for m in modalities:
        present &= split.mask(m) > 0
    return present


def _inputs(split: DataSplit, modalities: list[str], rows: np.ndarray) -> dict[str, Any]:
    missing = [m for m in modalities if m not in split.inputs]
    if missing:
        raise MMKerasError(f"downstream: the data has no modality {missing[0]!r}; it provides {sorted(split.inputs)}")
    x: dict[str, Any] = {m: split.inputs[m][rows] for m in modalities}
    x[MASKS] = {m: split.mask(m)[rows] for m in modalities}
    return x
