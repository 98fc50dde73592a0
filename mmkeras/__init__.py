"""mmkeras: multimodal representation learning with Keras 3.

Public API::

    recipe = mmkeras.load_recipe("recipes/gmc_mhd.yaml", overrides=["train.epochs=5"])
    model = mmkeras.build_model(recipe)        # a compiled keras.Model
    model.fit(dataset)
    z = model.encode({"image": images}, modalities=["image"])
    run = mmkeras.train(recipe)                 # what `mmkeras train` does: a run directory, resumable
    encoder = mmkeras.load_encoder("runs/gmc-mhd")   # the trained representation alone
    mmkeras.save_preset(encoder, "presets/gmc-mhd")  # a preset directory, for load_encoder and `pretrained`
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from mmkeras.errors import ComponentError, DataError, MMKerasError, RecipeError
from mmkeras.recipe import Recipe, load_recipe, recipe_from_dict
from mmkeras.registry import (
    register_augmentation,
    register_dataset,
    register_encoder,
    register_evaluator,
    register_fusion,
    register_head,
    register_objective,
    registry,
)


def build_model(
    recipe: Recipe, input_shapes: dict[str, list[int]] | None = None, strategy: Any = None, compile: bool = True
):
    """A compiled :class:`~mmkeras.model.MultimodalModel` for ``recipe`` (see :mod:`mmkeras.builder`),
    built under ``strategy``, by default the one the recipe's ``distribute.strategy`` names."""
    from mmkeras.builder import build_model as _build

    return _build(recipe, input_shapes=input_shapes, strategy=strategy, compile=compile)


def load_model(path: str, compile: bool = True):
    """Load a saved ``.keras`` model made by mmkeras in any process, importing the registered
    components (core or plugin) that the saved model uses; raises naming a missing or broken plugin."""
    import json
    import zipfile

    import keras

    try:
        with zipfile.ZipFile(path) as zf:
            config = json.loads(zf.read("config.json"))
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise MMKerasError(f"cannot read {path} as a saved .keras model: {exc}") from None
    _import_components(config)
    try:
        return keras.saving.load_model(path, compile=compile)
    except (TypeError, ValueError) as exc:
        top = config.get("config", {}) if isinstance(config, dict) else {}
        if config.get("class_name") == "MultimodalModel" and "encoder" not in top:
            raise MMKerasError(
                f"cannot load {path}: it was saved by mmkeras 0.1, before the encoder/task split, and one of its "
                f"components stores its weights differently now (the nexus and muse fusions and objectives do: "
                f"{str(exc)[:300]}). Convert such a model by training it again from its run's recipe "
                "(`mmkeras train RUN/recipe.yaml --output NEW_RUN`), or load it with mmkeras 0.1"
            ) from exc
        raise MMKerasError(
            f"cannot load {path}: {str(exc)[:500]}. Is the plugin that made it installed? (`mmkeras plugins`)"
        ) from exc


def _import_components(config: Any) -> None:
    """Import the registered components (core or plugin) a serialized Keras config names, so
    Keras can deserialize them; a broken plugin raises naming itself."""
    used = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("module"), str) and isinstance(node.get("registered_name"), str):
                used.add(node["module"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    import mmkeras.model  # noqa: F401  (registers MultimodalModel and MultimodalEncoder with Keras)

    for entry in registry.all_entries():
        if entry.target.split(":")[0] in used:
            entry.load()  # registers the class with Keras; a broken plugin raises naming itself


def train(recipe: Recipe, output: str | None = None, verbose: int | str = "auto"):
    """Train ``recipe`` into a run directory (default ``runs/<recipe name>``), evaluate it and write
    its report, as ``mmkeras train`` does: resumes an interrupted run, skips a finished one (see
    :func:`mmkeras.runs.train`). Returns the :class:`~mmkeras.runs.RunDirectory`."""
    from mmkeras.runs import train as _train

    return _train(recipe, output, verbose)


def load_encoder(source: str, compile: bool = False):
    """The trained :class:`~mmkeras.encoder.MultimodalEncoder` of a run directory, an
    ``encoder.keras`` file, a full model's ``.keras`` file or a preset directory (see
    :func:`mmkeras.encoder.load_encoder`)."""
    from mmkeras.encoder import load_encoder as _load

    return _load(source, compile=compile)


def save_preset(encoder: Any, directory: str, *, modality: str | None = None, metadata: dict | None = None):
    """Write a :class:`~mmkeras.encoder.MultimodalEncoder` (or one modality's encoder) as a preset
    directory in keras-hub's layout, for :func:`load_encoder` and the ``pretrained`` encoder
    (see :func:`mmkeras.preset.save_preset`). Returns its path."""
    from mmkeras.preset import save_preset as _save

    return _save(encoder, directory, modality=modality, metadata=metadata)


def load_dataset(name: str, **params: Any):
    """The registered dataset ``name`` with ``params``, prepared (built and cached) for use."""
    from mmkeras.builder import instantiate
    from mmkeras.recipe import ComponentSpec

    dataset = instantiate("datasets", ComponentSpec(name=name, params=params), "dataset")
    dataset.prepare()
    return dataset


__all__ = [
    "ComponentError",
    "DataError",
    "MMKerasError",
    "Recipe",
    "RecipeError",
    "build_model",
    "load_dataset",
    "load_encoder",
    "load_model",
    "load_recipe",
    "recipe_from_dict",
    "register_augmentation",
    "register_dataset",
    "register_encoder",
    "register_evaluator",
    "register_fusion",
    "register_head",
    "register_objective",
    "registry",
    "save_preset",
    "train",
]
