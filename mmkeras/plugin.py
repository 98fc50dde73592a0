"""The plugin API: everything a plugin distribution may import from mmkeras, in one place.

A plugin (an encoder, fusion, head, objective, dataset, augmentation, evaluator or file reader in a
distribution of its own) imports from mmkeras only this module::

    from mmkeras.plugin import Objective, PositiveFloat, cross_replica_gather, local_contribution

and its tests may use the conformance checks here (``check_objective``, ...) and the top-level user
API (``mmkeras.load_model``, ``mmkeras.build_model``, ``mmkeras.Recipe``). It covers:

- base classes: ``Encoder``, ``Head``, ``Fusion``, ``Objective``, ``DecodingObjective``,
  ``Augmentation``, ``Evaluator``, ``Dataset`` (with ``DataSplit`` and ``ModalityInfo``),
  ``CachedDataset`` (built once into a cache folder) and ``Reader`` (a file decoder for the ``files``
  dataset, entry-point group ``mmkeras.readers``);
- ``Record``, the forward pass the objective reads, and ``MASKS``, the inputs' key for presence masks;
- ``Component``, the mixin that derives ``get_config`` and the range checks from a constructor's
  typed parameters, and the parameter types (``PositiveFloat``, ``UnitFloat``, ``Seed``, ...);
- the packages ``losses`` (pure loss functions over tensors) and ``layers`` (shared building blocks);
- distributed helpers: ``cross_replica_gather``, ``local_contribution``, ``global_sum``, ``num_replicas``;
- evaluator helpers: ``modality_subsets``, ``subset_name``, ``modality_name_problems``;
- the conformance checks (``check_*``, ``use_logical_devices``), the errors, and ``atomic_write``
  (a file written under a temporary name and renamed into place).

Versioning: :data:`API_VERSION` is the plugin API this mmkeras provides. A plugin declares the
version it is written for as an entry point ``v<N>`` in the group ``mmkeras.api`` of its
pyproject.toml; mmkeras refuses (before importing) a plugin that does not declare this version. Any
change here that can break a plugin (a name removed or renamed, a signature or a contract changed)
bumps :data:`API_VERSION`; additions do not.

Names are imported on first use, so ``import mmkeras.plugin`` costs nothing until a name is read.
"""

from __future__ import annotations

import importlib
from typing import Any

from mmkeras.registry import PLUGIN_API_VERSION

API_VERSION: int = PLUGIN_API_VERSION

#: module -> the names this API takes from it; a name equal to the module's last part is the module
_SOURCES: dict[str, tuple[str, ...]] = {
    "mmkeras.encoders.base": ("Encoder",),
    "mmkeras.heads.base": ("Head",),
    "mmkeras.fusions.base": ("Fusion",),
    "mmkeras.objectives.base": ("Objective", "DecodingObjective"),
    "mmkeras.augmentations.base": ("Augmentation",),
    "mmkeras.evaluators.base": ("Evaluator", "modality_name_problems", "modality_subsets", "subset_name"),
    "mmkeras.data.base": ("Dataset", "DataSplit", "ModalityInfo"),
    "mmkeras.data.cached": ("CachedDataset", "default_data_dir"),
    "mmkeras.data.files": ("Reader",),
    "mmkeras.record": ("Record",),
    "mmkeras.model": ("MASKS",),
    "mmkeras.component": ("Component",),
    "mmkeras.params": (
        "DropoutRate",
        "FiniteFloat",
        "Int",
        "NonNegativeFloat",
        "NonNegativeInt",
        "PositiveFloat",
        "PositiveInt",
        "Seed",
        "UnitFloat",
    ),
    "mmkeras.layers": ("layers",),
    "mmkeras.losses": ("losses",),
    "mmkeras.distribute": ("cross_replica_gather", "global_sum", "local_contribution", "num_replicas"),
    "mmkeras.testing": (
        "check_augmentation",
        "check_dataset",
        "check_encoder",
        "check_evaluator",
        "check_fusion",
        "check_head",
        "check_objective",
        "use_logical_devices",
    ),
    "mmkeras.errors": ("ComponentError", "DataError", "MMKerasError", "RecipeError"),
    "mmkeras.safe_io": ("atomic_write",),
}
_WHERE = {name: module for module, names in _SOURCES.items() for name in names}

__all__ = ["API_VERSION", *sorted(_WHERE)]


def __getattr__(name: str) -> Any:
    module_name = _WHERE.get(name)
    if module_name is None:
        raise AttributeError(
            f"mmkeras.plugin has no {name!r}: it is not part of plugin API v{API_VERSION} (see mmkeras.plugin.__all__)"
        )
    module = importlib.import_module(module_name)
    value = module if module_name.rsplit(".", 1)[-1] == name else getattr(module, name)
    globals()[name] = value  # later reads skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
