"""``mmkeras new-plugin``: scaffold an installable plugin distribution with one working component.

The generated project is what a third party publishes: a ``pyproject.toml`` with the entry point and
the plugin API declaration, a package with one example component of the chosen kind (typed
parameters on a :mod:`mmkeras.plugin` base class, ``keras.ops``, registered serializable), tests
that run the conformance kit (:mod:`mmkeras.testing`) and check the component's values, a README
and an example recipe on the ``arrays`` synthetic data. It installs and passes its own tests as
generated. The templates are the ``*.tmpl`` files under ``mmkeras/templates/plugin/`` (``$name``
placeholders, :class:`string.Template`).
"""

from __future__ import annotations

import copy
import importlib.util
import keyword
import os
import re
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

import yaml

from mmkeras.errors import MMKerasError

#: the kinds ``new-plugin --kind`` accepts (the registry's kinds, singular)
KINDS: tuple[str, ...] = ("encoder", "fusion", "head", "objective", "augmentation", "evaluator", "dataset")
TEMPLATES = Path(__file__).resolve().parent / "templates" / "plugin"
_DISTRIBUTION = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")  # PEP 508 names

_DESCRIPTIONS = {
    "encoder": "A gated MLP encoder",
    "fusion": "A masked softmax-weighted fusion",
    "head": "A residual MLP projection head",
    "objective": "The alignment and uniformity objective",
    "augmentation": "A random per-sample gain augmentation",
    "evaluator": "A nearest-centroid evaluator",
    "dataset": "A synthetic two-modality dataset with missing modalities",
}

_BASE_RECIPE: dict[str, Any] = {
    "seed": 0,
    "data": {
        "dataset": "arrays",
        "params": {"synthetic": True, "num_samples": 1024, "num_classes": 4},
        "batch_size": 64,
    },
    "modalities": {
        "a": {"encoder": {"name": "mlp", "params": {"hidden_units": [64]}}},
        "b": {"encoder": {"name": "conv2d", "params": {"filters": [8, 16], "kernel_size": 3}}},
    },
    "model": {
        "feature_dim": 32,
        "latent_dim": 16,
        "fusion": {"name": "mean"},
        "head": {"name": "mlp", "params": {"hidden_units": [32], "normalize": True}},
    },
    "objective": {"name": "infonce", "params": {"temperature": 0.1}},
    "train": {"epochs": 5, "optimizer": {"name": "adam", "learning_rate": 0.001}},
    "evaluate": [{"name": "linear_probe", "params": {"epochs": 20}}],
}


@dataclass(frozen=True)
class PluginNames:
    """Every name a plugin's files use, derived from its distribution name and kind."""

    distribution: str  # mmkeras-tcn
    package: str  # mmkeras_tcn: the import package, also the Keras registration package
    component: str  # tcn: the entry point's name, the name recipes use
    cls: str  # GruEncoder
    kind: str  # encoder
    group: str  # encoders: the registry kind; the entry-point group is mmkeras.<group>


def plugin_names(name: str, kind: str) -> PluginNames:
    """Validate ``name`` and ``kind`` and derive the plugin's names; raises MMKerasError saying what is wrong."""
    if kind not in KINDS:
        raise MMKerasError(f"new-plugin: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    if not _DISTRIBUTION.match(name):
        raise MMKerasError(
            f"new-plugin: {name!r} is not a valid distribution name: use letters, digits, '-', '_' and '.', "
            "starting and ending with a letter or digit (e.g. mmkeras-tcn)"
        )
    package = re.sub(r"[-_.]+", "_", name).lower()
    component = package.removeprefix("mmkeras_")
    for what, value in (("package", package), ("component", component)):
        if not value.isidentifier() or keyword.iskeyword(value):
            raise MMKerasError(
                f"new-plugin: {name!r} gives the {what} name {value!r}, which is not a Python identifier; "
                "start it with a letter (e.g. mmkeras-tcn gives package mmkeras_tcn and component tcn)"
            )
    if importlib.util.find_spec(package) is not None:
        raise MMKerasError(
            f"new-plugin: a module named {package!r} is already importable here; pick a name whose package "
            "would not shadow it (or uninstall the old plugin first)"
        )
    stem = "".join(part.capitalize() for part in component.split("_") if part)
    suffix = kind.capitalize()
    return PluginNames(name, package, component, stem if stem.endswith(suffix) else stem + suffix, kind, kind + "s")


def _check_free(names: PluginNames) -> None:
    from mmkeras.registry import registry

    if names.component in registry.names(names.group):
        owner = ", ".join(e.distribution for e in registry.entries[names.group][names.component])
        article = "an" if names.kind[0] in "aeiou" else "a"
        raise MMKerasError(
            f"new-plugin: {article} {names.kind} named {names.component!r} is already installed (from {owner}); "
            "recipes could not tell the two apart: pick another plugin name"
        )


def example_recipe(names: PluginNames) -> dict[str, Any]:
    """A complete recipe on the synthetic ``arrays`` data that uses the plugin's component."""
    doc: dict[str, Any] = {
        "name": f"{names.component}-synthetic",
        "description": f"{_DESCRIPTIONS[names.kind]} ({names.distribution}) on seeded synthetic data.",
        **copy.deepcopy(_BASE_RECIPE),
    }
    spec = {"name": names.component}
    if names.kind == "encoder":
        doc["modalities"]["a"]["encoder"] = {**spec, "params": {"hidden_dim": 64}}
    elif names.kind == "fusion":
        doc["model"]["fusion"] = spec
    elif names.kind == "head":
        doc["model"]["head"] = {**spec, "params": {"hidden_dim": 32, "normalize": True}}
    elif names.kind == "objective":
        doc["objective"] = {**spec, "params": {"alpha": 2.0, "t": 2.0}}
    elif names.kind == "augmentation":
        doc["modalities"]["a"]["augment"] = [{**spec, "params": {"sigma": 0.1}}]
    elif names.kind == "evaluator":
        doc["evaluate"] = [{**spec, "params": {"subsets": "all"}}]
    else:  # dataset: its modalities are a [16] and b [8, 2]
        params = {"num_samples": 1024, "missing_rate": 0.2}
        doc["data"] = {"dataset": names.component, "params": params, "batch_size": 64}
        doc["modalities"]["b"]["encoder"] = {"name": "mlp", "params": {"hidden_units": [64]}}
    return doc


def _recipe_check(names: PluginNames) -> str:
    """The generated test's assertion that the example recipe uses the component."""
    where = {
        "encoder": 'recipe.modalities["a"].encoder.name',
        "fusion": "recipe.model.fusion.name",
        "head": "recipe.model.head.name",
        "objective": "recipe.objective.name",
        "augmentation": 'recipe.modalities["a"].augment[0].name',
        "evaluator": "recipe.evaluate[0].name",
        "dataset": "recipe.data.dataset",
    }[names.kind]
    return f'{where} == "{names.component}"'


def _snippet(names: PluginNames, recipe: dict[str, Any]) -> str:
    """The part of the example recipe that names the component, for the README."""
    part = {
        "encoder": lambda r: {"modalities": {"a": {"encoder": r["modalities"]["a"]["encoder"]}}},
        "fusion": lambda r: {"model": {"fusion": r["model"]["fusion"]}},
        "head": lambda r: {"model": {"head": r["model"]["head"]}},
        "objective": lambda r: {"objective": r["objective"]},
        "augmentation": lambda r: {"modalities": {"a": {"augment": r["modalities"]["a"]["augment"]}}},
        "evaluator": lambda r: {"evaluate": r["evaluate"]},
        "dataset": lambda r: {"data": r["data"]},
    }[names.kind](recipe)
    return _yaml(part).rstrip()


class _RecipeDumper(yaml.SafeDumper):
    """Block style, but a component (``{name, params}``) or a mapping of plain values on one line."""

    def represent_dict(self, data: dict[str, Any]) -> yaml.MappingNode:
        component = "name" in data and set(data) <= {"name", "params"}
        flow = component or not any(isinstance(v, (dict, list)) for v in data.values())
        return self.represent_mapping("tag:yaml.org,2002:map", data, flow_style=flow)


_RecipeDumper.add_representer(dict, _RecipeDumper.represent_dict)


def _yaml(doc: dict[str, Any]) -> str:
    return yaml.dump(doc, Dumper=_RecipeDumper, sort_keys=False, width=100)


def render(names: PluginNames) -> dict[str, str]:
    """The generated project's files: relative path -> text."""
    from mmkeras.registry import PLUGIN_API_VERSION

    recipe = example_recipe(names)
    values = {
        "name": names.distribution,
        "normalized": re.sub(r"[-_.]+", "-", names.distribution).lower(),
        "package": names.package,
        "component": names.component,
        "cls": names.cls,
        "kind": names.kind,
        "group": names.group,
        "api": str(PLUGIN_API_VERSION),
        "description": f"{_DESCRIPTIONS[names.kind]} for mmkeras",
        "recipe_check": _recipe_check(names),
        "snippet": _snippet(names, recipe),
    }

    def fill(template: str) -> str:
        return Template((TEMPLATES / template).read_text()).substitute(values)

    header = (
        f"# An example recipe for {names.distribution}, generated by `mmkeras new-plugin`:\n"
        f"#   mmkeras validate examples/{names.component}_synthetic.yaml\n"
        f"#   mmkeras train examples/{names.component}_synthetic.yaml\n"
    )
    return {
        "pyproject.toml": fill("pyproject.toml.tmpl"),
        "README.md": fill("README.md.tmpl"),
        ".gitignore": fill("gitignore.tmpl"),
        f"{names.package}/__init__.py": fill("__init__.py.tmpl"),
        f"{names.package}/{names.kind}.py": fill(f"{names.kind}.py.tmpl"),
        f"tests/test_{names.component}.py": fill("test_header.py.tmpl") + fill(f"test_{names.kind}.py.tmpl"),
        f"examples/{names.component}_synthetic.yaml": header + _yaml(recipe),
    }


def new_plugin(name: str, kind: str = "encoder", output: str | os.PathLike[str] | None = None) -> Path:
    """Write a plugin project for distribution ``name`` with one example component of ``kind`` into
    ``output`` (default ``./<name>``), which must not exist or be empty. Returns its path."""
    names = plugin_names(name, kind)
    _check_free(names)
    root = Path(output) if output is not None else Path.cwd() / name
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise MMKerasError(f"new-plugin: {root} already exists and is not an empty directory; choose another --output")
    for rel, text in render(names).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root
