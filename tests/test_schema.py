"""`mmkeras schema`: the recipe JSON Schema accepts every shipped recipe and rejects broken ones.

Each shipped recipe is checked twice: as written (its ``extends`` chain merged, which is what its
author wrote and what an editor's YAML language server sees once merged; a recipe that extends
another is incomplete on its own), and as loaded (``load_recipe(...).to_dict()``: every default
filled in, so the schema must accept all the values the typed recipe itself produces).
"""

import copy
import json

import jsonschema
import pytest
from conftest import ROOT, run_cli

import mmkeras
from mmkeras.recipe import _load_file

RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))


@pytest.fixture(scope="module")
def validator():
    out = run_cli("schema")
    assert out.returncode == 0, out.stderr
    schema = json.loads(out.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def problems(validator, doc) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path)) or '<recipe>'}: {e.message}" for e in validator.iter_errors(doc)]


def merged(path) -> dict:
    """The recipe as written, its ``extends`` chain merged (the loader's own merge, before validation)."""
    doc, _ = _load_file(path, ())
    return doc


def test_there_are_shipped_recipes_to_check():
    assert len(RECIPES) >= 10 and any("extends" in p.read_text() for p in RECIPES)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_shipped_recipe_validates_as_written(validator, path):
    assert problems(validator, merged(path)) == []


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_shipped_recipe_validates_with_defaults_filled(validator, path, shipped_presets):
    assert problems(validator, mmkeras.load_recipe(path).to_dict()) == []


def broken(edit):
    """clip_synthetic as written, with one ``edit(doc)`` applied."""
    doc = merged(ROOT / "recipes" / "clip_synthetic.yaml")
    edit(doc)
    return doc


@pytest.mark.parametrize(
    "what, edit",
    [
        ("unknown top-level key", lambda d: d.update(trian={"epochs": 1})),
        ("unknown nested key", lambda d: d["model"].update(fusoin={"name": "mean"})),
        ("unknown key in a component", lambda d: d["objective"].update(parameters={})),
        ("string for an integer", lambda d: d["train"].update(epochs="five")),
        ("zero for a positive integer", lambda d: d["data"].update(batch_size=0)),
        ("value outside an enum", lambda d: d["train"].update(mixed_precision="float8")),
        ("unknown objective", lambda d: d["objective"].update(name="infonse")),
        ("unknown encoder", lambda d: d["modalities"]["a"]["encoder"].update(name="gru")),
        ("unknown fusion", lambda d: d["model"]["fusion"].update(name="sum")),
        ("unknown dataset", lambda d: d["data"].update(dataset="imagenet")),
        ("unknown component parameter", lambda d: d["objective"]["params"].update(temprature=0.1)),
        ("wrong component parameter type", lambda d: d["objective"]["params"].update(temperature="hot")),
        ("list item type", lambda d: d["modalities"]["a"]["encoder"]["params"].update(hidden_units=["x"])),
        ("no modalities", lambda d: d.update(modalities={})),
        ("missing required key", lambda d: d.pop("objective")),
    ],
)
def test_broken_recipe_is_rejected(validator, what, edit):
    assert problems(validator, broken(lambda d: None)) == []  # the unbroken recipe passes
    assert problems(validator, broken(edit)), f"{what} was accepted"


def test_component_parameters_are_checked_per_component(validator):
    # temperature is an infonce parameter, not a gmc one: the same params under another name fail
    params = {"temperature": 0.1, "learnable_temperature": True}
    doc = broken(lambda d: d["objective"].update(name="gmc", params=params))
    assert problems(validator, doc)
    ok = copy.deepcopy(doc)
    ok["objective"]["params"].pop("learnable_temperature")
    assert problems(validator, ok) == []


def test_parameter_ranges_and_docstring_descriptions_reach_the_schema():
    import keras

    import mmkeras
    from mmkeras.params import PositiveFloat, UnitFloat
    from mmkeras.registry import registry
    from mmkeras.schema import recipe_json_schema

    class Documented(keras.layers.Layer):
        """An encoder for the schema test.

        Args:
            scale: how much to scale
                the input by.
            keep: the fraction kept.
        """

        def __init__(self, output_dim: int, scale: PositiveFloat = 2.0, keep: UnitFloat = 0.5, **kwargs):
            super().__init__(**kwargs)

    mmkeras.register_encoder("schema_documented")(Documented)
    try:
        variants = recipe_json_schema()["$defs"]["encoders_component"]["anyOf"]
    finally:
        registry.remove("encoders", "schema_documented")
    params = next(v for v in variants if v["properties"]["name"]["const"] == "schema_documented")
    props = params["properties"]["params"]["properties"]
    assert props["scale"]["exclusiveMinimum"] == 0
    assert props["scale"]["description"] == "how much to scale the input by."
    assert (props["keep"]["minimum"], props["keep"]["maximum"]) == (0, 1)
    assert props["keep"]["description"] == "the fraction kept."
