"""The checks of parameters that name modalities, run by ``mmkeras validate`` before training.

The evaluator and objective base classes' ``check_recipe`` hooks delegate here, so that validation
can run these checks without importing the component (and with it Keras). This module imports no Keras.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
from pathlib import Path
from typing import Any


def modality_subsets(modalities: list[str], spec: list[str] | str = "all") -> list[tuple[str, ...]]:
    """Non-empty subsets of ``modalities``: ``"all"``, ``"singles"`` (complete and each single
    modality), or names like ``complete``, ``image``, ``image+sound``. Complete first, then by size."""
    mods = sorted(modalities)
    if spec == "all":
        subsets = [c for r in range(len(mods), 0, -1) for c in itertools.combinations(mods, r)]
        return subsets
    if spec == "singles":
        return [tuple(mods)] + [(m,) for m in mods if len(mods) > 1]
    if isinstance(spec, str):
        raise ValueError(f"subsets must be 'all', 'singles' or a list of names like 'complete', got {spec!r}")
    out = []
    for name in spec:
        parts = tuple(mods) if name == "complete" else tuple(sorted(name.split("+")))
        unknown = [p for p in parts if p not in mods]
        if unknown:
            raise ValueError(f"subset {name!r} names unknown modalities {unknown}; the model has {mods}")
        out.append(parts)
    return out


def modality_name_problems(params: dict[str, Any], modalities: list[str]) -> list[tuple[str, str]]:
    """(parameter, problem) for ``subsets`` (``all``, ``singles`` or names like ``complete``,
    ``image+sound``), ``modalities`` (a list) and ``modality`` naming modalities the recipe does not
    have: the default of :meth:`mmkeras.evaluators.base.Evaluator.check_recipe`."""
    out = []
    if "subsets" in params:
        try:
            modality_subsets(modalities, params["subsets"])
        except ValueError as exc:
            out.append(("subsets", str(exc)))
    named = params.get("modalities") or []
    named = named + [params["modality"]] if isinstance(params.get("modality"), str) else named
    key = "modalities" if params.get("modalities") else "modality"
    for name in named:
        if name not in modalities:
            out.append((key, f"{name!r} is not a modality of this recipe (modalities: {', '.join(modalities)})"))
    return out


def pair_problems(params: dict[str, Any], modalities: list[str]) -> list[tuple[str, str]]:
    """(parameter, problem) for a ``pair`` or ``pairs`` parameter naming modalities the recipe does not have:
    the default of :meth:`mmkeras.objectives.base.Objective.check_recipe`."""
    pair = params.get("pair") or []
    unknown = [m for m in pair if m not in modalities]
    if unknown:
        return [("pair", f"{unknown[0]!r} is not a modality of this recipe (modalities: {', '.join(modalities)})")]
    pairs = params.get("pairs") if isinstance(params.get("pairs"), list) else []  # [[a, b], ...] (siglip)
    unknown = [m for p in pairs if isinstance(p, list) for m in p if m not in modalities]
    if unknown:
        return [("pairs", f"{unknown[0]!r} is not a modality of this recipe (modalities: {', '.join(modalities)})")]
    return []


#: the keras_model encoder's sources that need the optional extra
HUB_EXTRA = "the keras_model encoder's preset/backbone sources need keras-hub: pip install 'mmkeras[hub]'"


def _local(value: str) -> bool:
    """Whether a source names a local path (not a keras-hub handle such as ``bert_tiny_en_uncased``)."""
    return value.startswith((".", "~", "/")) or "/" in value or os.sep in value


def network_source_problems(params: dict[str, Any], modalities: list[str]) -> list[tuple[str, str]]:
    """(parameter, problem) for a ``keras_model`` encoder whose source is not there: a missing
    ``.keras`` file, preset directory or weights file, or keras-hub not installed; the default of
    :meth:`mmkeras.encoders.keras_model.KerasModelEncoder.check_recipe`. Paths are relative to the
    current directory, as the builder reads them."""
    problems = []
    path, preset, weights = params.get("path"), params.get("preset"), params.get("weights")
    if isinstance(path, str):
        file = Path(path).expanduser()
        if not file.is_file():
            problems.append(("path", f"{file} does not exist (expected a .keras file)"))
        elif file.suffix != ".keras":
            problems.append(("path", f"{file} is not a .keras file (save the model with model.save('name.keras'))"))
    if isinstance(preset, str) and _local(preset):
        directory = Path(preset).expanduser()
        if not directory.is_dir():
            problems.append(
                ("preset", f"{directory} is not a directory (a keras-hub preset saved with save_to_preset)")
            )
        elif not (directory / "config.json").is_file():
            problems.append(("preset", f"{directory} has no config.json: not a keras-hub preset directory"))
    if isinstance(weights, str) and not Path(weights).expanduser().is_file():
        problems.append(("weights", f"{weights} does not exist (expected a weights file for the application)"))
    needs_hub = [k for k in ("preset", "backbone") if isinstance(params.get(k), str)]
    if needs_hub and importlib.util.find_spec("keras_hub") is None:
        problems.append((needs_hub[0], HUB_EXTRA))
    return problems


def preset_problems(params: dict[str, Any], modalities: list[str]) -> list[tuple[str, str]]:
    """(parameter, problem) for a ``pretrained`` encoder whose preset directory is not there; the
    default of :meth:`mmkeras.encoders.pretrained.PretrainedEncoder.check_recipe`."""
    preset = params.get("preset")
    if not isinstance(preset, str):
        return []
    directory = Path(preset).expanduser()
    if not (directory / "metadata.json").is_file():
        what = "has no metadata.json" if directory.is_dir() else "is not a directory"
        return [("preset", f"{directory} {what}: write a preset there with: mmkeras export RUN --preset {preset}")]
    return []
