"""Linear probe: a softmax classifier on frozen representations, scored on every modality subset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mmkeras.data.base import DataSplit
from mmkeras.evaluators.base import Evaluator, modality_subsets, subset_name
from mmkeras.params import NonNegativeFloat, PositiveFloat, PositiveInt


class LinearProbe(Evaluator):
    """Multinomial logistic regression on frozen, standardised representations.

    ``train_on="complete"`` fits one classifier on complete observations and applies it to
    every subset (the robustness protocol of the GMC paper); ``"each"`` fits one per subset.
    ``l2`` is the weight decay; ``epochs`` of full-data Adam steps with mini-batches of 256.
    """

    def __init__(
        self,
        subsets: list[str] | str = "all",
        train_on: str = "complete",
        epochs: PositiveInt = 30,
        learning_rate: PositiveFloat = 0.01,
        l2: NonNegativeFloat = 1e-4,
        seed: int = 0,
    ):
        if train_on not in ("complete", "each"):
            raise ValueError(f"linear_probe: train_on must be 'complete' or 'each', got {train_on!r}")
        self.subsets, self.train_on = subsets, train_on
        self.epochs, self.learning_rate, self.l2, self.seed = epochs, learning_rate, l2, seed

    def evaluate(self, model: Any, data: dict[str, DataSplit], output_dir: Path) -> dict[str, Any]:
        train, test = data["train"], data.get("test") or data.get("validation")
        if test is None:
            raise ValueError("linear_probe needs a test or validation split")
        if train.labels is None or test.labels is None:
            raise ValueError("linear_probe needs labelled data")
        mods = list(model.modalities)
        num_classes = int(max(train.labels.max(), test.labels.max())) + 1
        subsets = modality_subsets(mods, self.subsets)
        accuracy = {}
        probe = None
        if self.train_on == "complete":
            probe = self._fit(model.encode(train.inputs, mods), train.labels, num_classes)
        for subset in subsets:
            clf = probe or self._fit(model.encode(train.inputs, list(subset)), train.labels, num_classes)
            z = model.encode(test.inputs, list(subset))
            accuracy[subset_name(subset, mods)] = float(np.mean(clf(z) == test.labels))
        return {
            "accuracy": accuracy,
            "train_on": self.train_on,
            "chance": float(np.bincount(test.labels).max() / len(test.labels)),
        }

    def _fit(self, z: np.ndarray, y: np.ndarray, num_classes: int):
        import keras

        mean, std = z.mean(0), z.std(0) + 1e-6
        keras.utils.set_random_seed(self.seed)
        clf = keras.Sequential(
            [
                keras.Input((z.shape[1],)),
                keras.layers.Dense(num_classes, kernel_regularizer=keras.regularizers.l2(self.l2)),
            ]
        )
        clf.compile(
            optimizer=keras.optimizers.Adam(self.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        clf.fit((z - mean) / std, y, batch_size=256, epochs=self.epochs, verbose=0)
        return lambda x: np.argmax(clf.predict((x - mean) / std, batch_size=1024, verbose=0), axis=1)

    def report(self, results: dict[str, Any]) -> str:
        rows = "\n".join(f"| {k} | {100 * v:.2f} |" for k, v in results["accuracy"].items())
        return (
            f"Linear probe accuracy (%), classifier trained on {results['train_on']} observations; "
            f"chance {100 * results['chance']:.1f}%.\n\n| modalities | accuracy |\n|---|---|\n{rows}\n"
        )
