import json
import sys

import pytest
from conftest import FIXTURES, run_cli

from mmkeras.errors import ComponentError
from mmkeras.registry import KINDS


def test_builtins_are_entry_points_of_the_core_distribution(fresh_registry):
    entry = fresh_registry.entry("encoders", "mlp")
    assert entry.distribution == "mmkeras"
    assert entry.target == "mmkeras.encoders.mlp:MLPEncoder"
    for kind in KINDS:
        assert fresh_registry.names(kind), f"no component of kind {kind}"


def test_discovery_is_lazy(fresh_registry):
    entry = fresh_registry.entry("objectives", "infonce")
    assert entry.status == "not loaded"
    cls = fresh_registry.get("objectives", "infonce")
    assert cls.__name__ == "InfoNCE" and entry.status == "loaded"


def test_unknown_name_suggests_the_nearest(fresh_registry):
    with pytest.raises(ComponentError, match=r"unknown encoder 'conv2' ; did you mean 'conv2d'\?".replace(" ;", ";")):
        fresh_registry.get("encoders", "conv2")


def test_decorator_registers_in_process_and_refuses_silent_override(fresh_registry):
    import mmkeras

    @mmkeras.register_encoder("my_encoder")
    class MyEncoder:
        pass

    assert fresh_registry.get("encoders", "my_encoder") is MyEncoder
    assert fresh_registry.entry("encoders", "my_encoder").distribution == "<in-process>"
    with pytest.raises(ComponentError, match="'mlp' is already provided by mmkeras; pass override=True"):
        mmkeras.register_encoder("mlp")(MyEncoder)
    mmkeras.register_encoder("mlp", override=True)(MyEncoder)
    assert fresh_registry.get("encoders", "mlp") is MyEncoder


def test_broken_plugin_is_isolated_and_named(fresh_registry, monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURES / "broken_dist"))
    fresh_registry.discover(force=True)
    assert "broken_encoder" in fresh_registry.names("encoders")
    bad = fresh_registry.load_all()
    assert [(e.name, e.distribution) for e in bad] == [("broken_encoder", "broken-mmkeras-plugin")]
    assert fresh_registry.get("encoders", "mlp").__name__ == "MLPEncoder"  # the others still load
    with pytest.raises(ComponentError) as err:
        fresh_registry.get("encoders", "broken_encoder")
    msg = str(err.value)
    assert "broken-mmkeras-plugin" in msg and "a_dependency_that_is_not_installed" in msg


def test_clash_is_reported_not_resolved(fresh_registry, monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURES / "clash_dist"))
    fresh_registry.discover(force=True)
    [clash] = fresh_registry.clashes()
    assert sorted(e.distribution for e in clash) == ["clash-mmkeras-plugin", "mmkeras"]
    with pytest.raises(ComponentError, match="'mean' is provided by more than one distribution"):
        fresh_registry.get("fusions", "mean")


def test_cli_plugins_json_lists_broken_and_strict_fails():
    env = {"PYTHONPATH": str(FIXTURES / "broken_dist")}
    out = run_cli("plugins", "--json", env_extra=env)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    by_name = {(r["kind"], r["name"]): r for r in rows}
    assert by_name[("encoders", "broken_encoder")]["status"] == "broken"
    assert "a_dependency_that_is_not_installed" in by_name[("encoders", "broken_encoder")]["error"]
    assert by_name[("encoders", "mlp")]["status"] == "loaded"
    assert {r["kind"] for r in rows} == set(KINDS)
    strict = run_cli("plugins", "--strict", env_extra=env)
    assert strict.returncode == 1 and "1 broken or clashing" in strict.stderr


def test_recipe_naming_a_broken_plugin_fails_with_its_distribution(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: r\ndata: {dataset: arrays, params: {synthetic: true}}\n"
        "modalities:\n  a: {encoder: {name: broken_encoder}}\n  b: {encoder: {name: mlp}}\n"
        "objective: {name: infonce}\n"
    )
    out = run_cli("validate", recipe, env_extra={"PYTHONPATH": str(FIXTURES / "broken_dist")})
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "r.yaml:4: modalities.a.encoder.name" in out.stderr
    assert "broken-mmkeras-plugin" in out.stderr and "ModuleNotFoundError" in out.stderr


def test_no_tensorflow_import_for_listing_names():
    code = "import sys, mmkeras; mmkeras.registry.names('encoders'); print('tensorflow' in sys.modules)"
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False"
