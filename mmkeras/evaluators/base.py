"""The evaluator contract and modality-subset helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmkeras.data.base import DataSplit
from mmkeras.errors import MMKerasError
from mmkeras.recipe_checks import modality_name_problems, modality_subsets

__all__ = [
    "Evaluator",
    "check_png_filename",
    "labelled_test_split",
    "load_task_splits",
    "modality_name_problems",
    "modality_subsets",
    "subset_name",
]


class Evaluator:
    """Base class of evaluators (entry-point group ``mmkeras.evaluators``).

    ``evaluate(model, data, output_dir)`` gets the trained model, the data splits by name
    (``train``, ``test``, maybe ``validation``) and a folder for figures; it returns a
    JSON-serialisable dict of results. ``report(results)`` renders them as Markdown.
    """

    def evaluate(self, model: Any, data: dict[str, DataSplit], output_dir: Path) -> dict[str, Any]:
        raise NotImplementedError

    def report(self, results: dict[str, Any]) -> str:
        return ""

    @classmethod
    def check_recipe(cls, params: dict[str, Any], modalities: list[str]) -> list[tuple[str, str]]:
        """(parameter, problem) for parameters that name modalities the recipe does not have, found
        by ``mmkeras validate`` before training: ``subsets`` (``all``, ``singles`` or names like
        ``complete``, ``image+sound``), ``modalities`` (a list) and ``modality``. Override to add more."""
        return modality_name_problems(params, modalities)


def subset_name(subset: tuple[str, ...], modalities: list[str]) -> str:
    return "complete" if set(subset) == set(modalities) else "+".join(subset)


def check_png_filename(evaluator: str, filename: str) -> str:
    """``filename`` if it is a plain file name ending in ``.png`` (a figure in the run's folder), else a ValueError."""
    if not filename.endswith(".png") or "/" in filename or "\\" in filename:
        raise ValueError(f"{evaluator}: filename must be a plain file name ending in .png, got {filename!r}")
    return filename


def labelled_test_split(evaluator: str, data: dict[str, DataSplit]) -> DataSplit:
    """The ``test`` split (else ``validation``), which must have labels; else a one-line error."""
    split = data.get("test") or data.get("validation")
    if split is None:
        raise MMKerasError(f"{evaluator} needs a test or validation split; got {sorted(data)}")
    if split.labels is None:
        raise MMKerasError(f"{evaluator} needs labelled data; the data set gave no labels")
    return split


def load_task_splits(
    evaluator: str, dataset: str, params: dict[str, Any], task: str, splits: tuple[str, ...] = ("test",)
) -> list[DataSplit]:
    """``splits`` of the registered data set ``dataset`` built with ``params``: how evaluators with
    ``tasks`` (Trifeatures' R, U1, U2, S) read each task's labels. Errors name ``<evaluator>.tasks.<task>``."""
    from mmkeras.builder import instantiate
    from mmkeras.recipe import ComponentSpec

    ds = instantiate("datasets", ComponentSpec(name=dataset, params=params), f"{evaluator}.tasks.{task}")
    ds.prepare()
    return [ds.load(split) for split in splits]
