from conftest import ROOT

from mmkeras.schema import recipe_json_schema, recipe_reference_markdown


def test_recipe_reference_is_current():
    current = (ROOT / "docs" / "recipes.md").read_text()
    assert current == recipe_reference_markdown() + "\n", (
        "docs/recipes.md is stale: run `mmkeras schema --markdown > docs/recipes.md`"
    )


def test_json_schema_lists_components_with_their_parameters():
    schema = recipe_json_schema()
    encoders = schema["$defs"]["encoders_component"]["anyOf"]
    mlp = next(v for v in encoders if v["properties"]["name"]["const"] == "mlp")
    assert mlp["properties"]["params"]["properties"]["hidden_units"]["type"] == "array"
    assert mlp["properties"]["params"]["additionalProperties"] is False
    assert "arrays" in schema["$defs"]["DataSpec"]["properties"]["dataset"]["enum"]
