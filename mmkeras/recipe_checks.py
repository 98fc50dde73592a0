"""The checks of parameters that name modalities, run by ``mmkeras validate`` before training.

The evaluator and objective base classes' ``check_recipe`` hooks delegate here, so that validation
can run these checks without importing the component (and with it Keras). This module imports no Keras.
"""

from __future__ import annotations

import itertools
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
    """(parameter, problem) for a ``pair`` parameter naming modalities the recipe does not have:
    the default of :meth:`mmkeras.objectives.base.Objective.check_recipe`."""
    pair = params.get("pair") or []
    unknown = [m for m in pair if m not in modalities]
    if unknown:
        return [("pair", f"{unknown[0]!r} is not a modality of this recipe (modalities: {', '.join(modalities)})")]
    return []
