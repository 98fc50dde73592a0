import textwrap

import pytest
from conftest import ROOT, run_cli

from mmkeras.errors import RecipeError
from mmkeras.recipe import load_recipe

GOOD = textwrap.dedent(
    """\
    name: good
    data:
      dataset: arrays
      params: {synthetic: true}
      batch_size: 32
    modalities:
      a:
        encoder: {name: mlp, params: {hidden_units: [16]}}
      b:
        encoder: {name: mlp}
    objective: {name: infonce, params: {temperature: 0.2}}
    train: {epochs: 3}
    """
)


def write(tmp_path, text, name="r.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def problems(path, overrides=None):
    with pytest.raises(RecipeError) as err:
        load_recipe(path, overrides)
    return err.value.problems


def test_good_recipe_is_typed(tmp_path):
    r = load_recipe(write(tmp_path, GOOD))
    assert r.train.epochs == 3 and r.data.batch_size == 32
    assert r.objective.params == {"temperature": 0.2}
    assert r.model.fusion.name == "mean"  # default


def test_yaml_syntax_error_names_the_line(tmp_path):
    p = write(tmp_path, GOOD.replace("train: {epochs: 3}", "train: {epochs: 3"))
    [msg] = problems(p)
    assert msg.startswith(f"{p.resolve()}:") and "invalid YAML" in msg


def test_unknown_key_with_line_and_suggestion(tmp_path):
    p = write(tmp_path, GOOD.replace("train: {epochs: 3}", "train: {epoch: 3}"))
    [msg] = problems(p)
    assert (
        msg == f"{p.resolve()}:12: train.epoch: unknown key; did you mean 'epochs'? "
        "(allowed: epochs, jit_compile, mixed_precision, optimizer, reduce_lr_on_plateau, steps_per_epoch, "
        "steps_per_execution)"
    )


def test_wrong_type_names_key_and_expectation(tmp_path):
    p = write(tmp_path, GOOD.replace("batch_size: 32", "batch_size: many"))
    [msg] = problems(p)
    assert msg == f"{p.resolve()}:5: data.batch_size: expected an integer, got 'many'"


def test_misspelled_component_suggests(tmp_path):
    p = write(tmp_path, GOOD.replace("name: infonce", "name: infonse"))
    [msg] = problems(p)
    assert msg.startswith(f"{p.resolve()}:11: objective.name: unknown objective 'infonse'; did you mean 'infonce'?")


def test_unknown_component_parameter(tmp_path):
    p = write(tmp_path, GOOD.replace("hidden_units: [16]", "hiden_units: [16]"))
    [msg] = problems(p)
    assert msg.startswith(
        f"{p.resolve()}:8: modalities.a.encoder.params.hiden_units: "
        "mlp has no parameter 'hiden_units'; did you mean 'hidden_units'?"
    )


def test_every_problem_is_reported_at_once(tmp_path):
    text = GOOD.replace("name: infonce", "name: infonse").replace("hidden_units: [16]", "hiden_units: [16]")
    assert len(problems(write(tmp_path, text))) == 2


def test_missing_file_and_shipped_hint(tmp_path):
    [msg] = problems(tmp_path / "nope.yaml")
    assert msg == f"recipe file not found: {tmp_path / 'nope.yaml'}"


def test_extends_merges_deeply_and_child_wins(tmp_path):
    write(tmp_path, GOOD, "base.yaml")
    child = write(tmp_path, "extends: base.yaml\nname: child\ntrain: {epochs: 7}\ndata: {batch_size: 8}\n")
    r = load_recipe(child)
    assert (r.name, r.train.epochs, r.data.batch_size, r.data.dataset) == ("child", 7, 8, "arrays")


def test_extends_cycle(tmp_path):
    write(tmp_path, "extends: b.yaml\nname: a\n", "a.yaml")
    write(tmp_path, "extends: a.yaml\nname: b\n", "b.yaml")
    [msg] = problems(tmp_path / "a.yaml")
    assert "extends: cycle:" in msg and "a.yaml -> " in msg and msg.endswith("a.yaml")


def test_extends_missing_parent(tmp_path):
    p = write(tmp_path, "extends: nothere.yaml\nname: a\n")
    [msg] = problems(p)
    assert msg == f"{p.resolve()}:1: extends: file not found: {(tmp_path / 'nothere.yaml').resolve()}"


def test_set_overrides_are_typed_and_located(tmp_path):
    p = write(tmp_path, GOOD)
    r = load_recipe(p, ["train.epochs=5", "data.params.num_samples=64", "model.fusion.name=concat"])
    assert r.train.epochs == 5 and r.data.params["num_samples"] == 64 and r.model.fusion.name == "concat"
    [msg] = problems(p, ["train.epochs=five"])
    assert msg == "--set train.epochs=five: train.epochs: expected an integer, got 'five'"


def test_cli_validate_exit_code_and_no_traceback(tmp_path):
    p = write(tmp_path, GOOD.replace("name: infonce", "name: infonse").replace("batch_size: 32", "batch_size: x"))
    out = run_cli("validate", p)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "2 problems" in out.stderr and "did you mean 'infonce'" in out.stderr and "data.batch_size" in out.stderr


def test_cli_train_bad_recipe_exit_2(tmp_path):
    out = run_cli("train", tmp_path / "missing.yaml")
    assert out.returncode == 2 and out.stderr.startswith("error: recipe file not found")


@pytest.mark.parametrize("path", sorted((ROOT / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_validate(path, shipped_presets):
    import yaml

    if "name" not in (yaml.safe_load(path.read_text()) or {}):
        pytest.skip("a base fragment, not a recipe")
    try:
        load_recipe(path)
    except RecipeError as exc:
        if any("unknown dataset" in p for p in exc.problems):
            pytest.skip(f"its dataset's plugin is not installed: {exc}")
        raise


def test_changing_the_dataset_drops_its_params_and_keeps_the_rest(tmp_path):
    # `size` and `synthetic` belong to the old data set; the batch size belongs to the recipe
    write(tmp_path, GOOD, "base.yaml")
    child = write(tmp_path, "extends: base.yaml\nname: child\ndata: {dataset: files}\n")
    assert _raw_data(child) == {"dataset": "files", "batch_size": 32}
    over = _raw_data(tmp_path / "base.yaml", ["data.dataset=files"])
    assert over == {"dataset": "files", "batch_size": 32}
    same = _raw_data(tmp_path / "base.yaml", ["data.dataset=arrays"])
    assert same["params"] == {"synthetic": True}


def _raw_data(path, overrides=None):
    """The merged and overridden ``data`` mapping of a recipe file, before validation."""
    from mmkeras.recipe import _apply_override, _load_file

    doc, _ = _load_file(path.resolve(), ())
    for item in overrides or []:
        key, value = item.split("=", 1)
        _apply_override(doc, tuple(key.split(".")), value, item)
    return doc["data"]


def test_changing_a_component_name_drops_the_old_params(tmp_path):
    write(tmp_path, GOOD, "base.yaml")
    child = write(tmp_path, "extends: base.yaml\nname: child\nobjective: {name: cosine}\n")
    assert load_recipe(child).objective.params == {}
    same = write(
        tmp_path,
        "extends: base.yaml\nname: same\nobjective: {name: infonce, params: {learnable_temperature: true}}\n",
        "same.yaml",
    )
    assert load_recipe(same).objective.params == {"temperature": 0.2, "learnable_temperature": True}
    r = load_recipe(tmp_path / "base.yaml", ["objective.name=cosine"])
    assert r.objective.name == "cosine" and r.objective.params == {}
