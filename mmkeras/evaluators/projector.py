"""Representations in TensorBoard's embedding projector."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mmkeras.data.base import DataSplit
from mmkeras.errors import MMKerasError
from mmkeras.evaluators.base import Evaluator, modality_subsets, subset_name
from mmkeras.evaluators.downstream import _inputs, _present_rows
from mmkeras.params import PositiveInt


class Projector(Evaluator):
    """Writes the representations of up to ``max_points`` test rows, complete and for each
    subset in ``subsets``, as one embedding for TensorBoard's projector (``tensorboard --logdir
    RUN_DIR/logs``, tab PROJECTOR), with a metadata table of label and observed modalities per
    point, so the subsets can be coloured and compared in the same space.

    Written to ``<run>/logs/projector/`` (beside the training scalars): ``embeddings.npy`` too,
    for use outside TensorBoard.
    """

    def __init__(
        self, subsets: list[str] | str = "singles", max_points: PositiveInt = 2000, split: str = "test", seed: int = 0
    ):
        if max_points < 1:
            raise ValueError(f"projector: max_points must be at least 1, got {max_points}")
        self.subsets, self.max_points, self.split, self.seed = subsets, int(max_points), split, int(seed)

    def evaluate(self, model: Any, data: dict[str, DataSplit], output_dir: Path) -> dict[str, Any]:
        split = data.get(self.split)
        if split is None:
            raise MMKerasError(f"projector: no {self.split!r} split; the data has {sorted(data)}")
        mods = sorted(model.modalities)
        rows = np.flatnonzero(_present_rows(split, mods))
        if not len(rows):
            raise MMKerasError(f"projector: no row of the {self.split} split has every modality")
        rng = np.random.default_rng(self.seed)
        rows = np.sort(rng.choice(rows, size=min(self.max_points, len(rows)), replace=False))
        chosen = np.zeros(len(split), bool)
        chosen[rows] = True
        x = _inputs(split, mods, chosen)
        vectors, meta = [], []
        labels = split.labels[rows] if split.labels is not None else None
        for subset in modality_subsets(mods, self.subsets):
            z = model.encode(x, list(subset))
            vectors.append(z)
            name = subset_name(subset, mods)
            for i in range(len(z)):
                meta.append((str(labels[i]) if labels is not None else "", name))
        embeddings = np.concatenate(vectors).astype("float32")
        logdir = Path(output_dir).parent / "logs" / "projector"
        logdir.mkdir(parents=True, exist_ok=True)
        np.save(logdir / "embeddings.npy", embeddings)
        with open(logdir / "metadata.tsv", "w") as f:
            f.write("label\tobserved\n")
            f.writelines(f"{label}\t{observed}\n" for label, observed in meta)
        self._write_checkpoint(embeddings, logdir)
        return {
            "points": len(rows),
            "subsets": sorted({m for _, m in meta}),
            "dim": int(embeddings.shape[1]),
            "logdir": str(logdir),
        }

    @staticmethod
    def _write_checkpoint(embeddings: np.ndarray, logdir: Path) -> None:
        import tensorflow as tf
        from tensorboard.plugins import projector

        variable = tf.Variable(embeddings, name="representations")
        tf.train.Checkpoint(embedding=variable).save(str(logdir / "embedding.ckpt"))
        config = projector.ProjectorConfig()
        embedding = config.embeddings.add()
        embedding.tensor_name = "embedding/.ATTRIBUTES/VARIABLE_VALUE"
        embedding.metadata_path = "metadata.tsv"
        projector.visualize_embeddings(str(logdir), config)

    def report(self, results: dict[str, Any]) -> str:
        return (
            f"{results['points']} test observations, represented with {', '.join(results['subsets'])} "
            f"({results['dim']} dimensions), are in TensorBoard's projector: `tensorboard --logdir "
            f"{results['logdir']}`.\n"
        )
