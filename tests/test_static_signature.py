"""The source reader behind a fast `mmkeras validate`: for every registered component it gives
exactly what importing the class gives, or nothing (and validate imports the class)."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mmkeras import static_signature
from mmkeras.errors import RecipeError
from mmkeras.recipe import _component_specs, _load_file, build_params_model, load_recipe, params_model
from mmkeras.registry import IN_PROCESS, KINDS, parameters, registry

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "recipes").glob("*.yaml"))


def _registered() -> list[tuple[str, str]]:
    return [(e.kind, e.name) for e in registry.all_entries() if e.distribution != IN_PROCESS]


def _read(kind: str, name: str) -> static_signature.StaticComponent | None:
    return static_signature.read(registry.entry(kind, name).target)


def _problems(hook, params: dict, modalities: list[str]) -> list[tuple[str, str]] | None:
    return None if hook is None else hook(params, modalities)


@pytest.mark.parametrize(("kind", "name"), _registered())
def test_reader_matches_the_imported_class(kind, name):
    static = _read(kind, name)
    if static is None:
        return  # validate imports this one
    cls = registry.get(kind, name)
    assert static.name == cls.__name__
    assert [(n, d) for n, _, d in static.params] == [(n, p.default) for n, p in parameters(cls).items()]
    fast = build_params_model(static.name, static.params, static.docs)
    assert fast.model_json_schema() == params_model(cls).model_json_schema()
    assert static.input_layouts == getattr(cls, "input_layouts", None)
    hook = getattr(cls, "check_recipe", None)
    for params in ({"pair": ["a", "z"]}, {"subsets": ["a+z"], "modality": "y"}, {"modalities": ["a", "q"]}, {}):
        assert _problems(static.check_recipe, params, ["a", "b"]) == _problems(hook, params, ["a", "b"])


def test_every_component_of_the_shipped_recipes_is_read_from_source():
    used = set()
    for path in SHIPPED:
        doc, _ = _load_file(path, ())
        used |= {(kind, raw["name"]) for kind, _, raw in _component_specs(doc) if kind != "datasets"}
    assert {("encoders", "conv2d"), ("objectives", "gmc"), ("evaluators", "downstream")} <= used
    unread = sorted(k for k in used if _read(*k) is None)
    assert unread == []


def test_the_reader_reads_a_real_component_exactly():
    static = _read("objectives", "gmc")
    names = [n for n, _, _ in static.params]
    assert names[0] == "temperature" and dict((n, d) for n, _, d in static.params)["temperature"] == 0.1
    assert static.check_recipe(
        {"pair": ["image", "smell"]}, ["image", "sound"]
    ) == [  # the Objective base's default hook, without importing it
        ("pair", "'smell' is not a modality of this recipe (modalities: image, sound)")
    ]
    assert _read("encoders", "conv2d").input_layouts == ("H, W, C", "H, W")


_RECIPES_WITHOUT_KERAS = """
import sys
from mmkeras.errors import RecipeError
from mmkeras.recipe import load_recipe
for name in ("gmc_mhd", "clip_synthetic", "dccae_mhd", "supcon_trifeatures", "clip_text_synthetic"):
    load_recipe(f"recipes/{name}.yaml")
try:
    load_recipe("recipes/gmc_mhd.yaml", ["objective.params.temperature=-1", "evaluate.0.params.subsets=[image+smell]"])
except RecipeError as exc:
    print(exc)
else:
    raise SystemExit("the broken overrides were accepted")
print("keras" in sys.modules, "tensorflow" in sys.modules)
"""


def test_validating_shipped_recipes_imports_neither_keras_nor_tensorflow():
    out = subprocess.run(
        [sys.executable, "-c", _RECIPES_WITHOUT_KERAS], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1] == "False False"
    assert any("objective.params.temperature: expected a number > 0, got -1" in line for line in lines)
    assert any("evaluate[0].params.subsets: downstream: subset 'image+smell'" in line for line in lines)


@pytest.mark.parametrize("recipe", ["gmc_mhd", "dccae_mhd", "clip_text_synthetic"])
def test_reading_from_source_and_importing_report_the_same_problems(recipe, monkeypatch):
    overrides = [
        "objective.params.temperature=0",
        "modalities.image.encoder.params.kernel_size=true",
        "model.head.params.colour=1",
        "evaluate.0.params.subsets=[complete, nose]",
    ]
    if recipe == "clip_text_synthetic":
        overrides = ["objective.params.temperature=0", "evaluate.0.params.epochs=-2"]

    def problems() -> str:
        with pytest.raises(RecipeError) as info:
            load_recipe(ROOT / "recipes" / f"{recipe}.yaml", overrides)
        return str(info.value)

    fast = problems()
    monkeypatch.setattr(static_signature, "read", lambda target: None)
    assert problems() == fast
    assert "temperature" in fast


def _module(tmp_path: Path, monkeypatch, source: str) -> str:
    """A fresh module holding ``source``; returns its name."""
    name = f"static_case_{abs(hash(source))}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


_BASE = """
    from __future__ import annotations
    from typing import Literal
    import keras
    from mmkeras.params import PositiveInt

    class Base(keras.layers.Layer):
        '''A base.

        Args:
            size: how many.
        '''

        input_layouts = ("T, C",)

        def __init__(self, size: PositiveInt = 2, *, mode: Literal["a", "b"] = "a", **kwargs):
            super().__init__(**kwargs)

    class Child(Base):
        pass  # no docstring and no __init__: both come from Base
"""


def test_an_inherited_init_is_followed_through_the_bases(tmp_path, monkeypatch):
    name = _module(tmp_path, monkeypatch, _BASE)
    static = static_signature.read(f"{name}:Child")
    assert [(n, d) for n, _, d in static.params] == [("size", 2), ("mode", "a")]
    assert static.docs == {"size": "how many."}
    assert static.input_layouts == ("T, C",)
    assert static.check_recipe is None
    schema = build_params_model(static.name, static.params, static.docs).model_json_schema()
    assert schema["properties"]["size"] == {
        "default": 2,
        "description": "how many.",
        "exclusiveMinimum": 0,
        "title": "Size",
        "type": "integer",
    }
    assert schema["properties"]["mode"]["enum"] == ["a", "b"]
    imported = importlib.import_module(name).Child
    assert schema == params_model(imported).model_json_schema()


_HOOK = """
        @classmethod
        def check_recipe(cls, params, modalities):
            return []
"""


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("size: PositiveInt = 2", "size: float32 = 2"),  # a name from outside the safe modules
        ("size: PositiveInt = 2", "size: PositiveInt = max(1, 2)"),  # a default that is not a literal
        ("size: PositiveInt = 2", "size: Unknown = 2"),  # an annotation that names nothing
        ("    class Child(Base):", "    @functools.total_ordering\n    class Child(Base):"),  # another decorator
        ("        pass  # no docstring", _HOOK + "        # no docstring"),  # a hook of its own
    ],
)
def test_what_the_reader_cannot_resolve_is_left_to_the_import(tmp_path, monkeypatch, old, new):
    source = _BASE.replace("import keras\n", "import keras\n    import functools\n    from numpy import float32\n")
    assert old in source
    name = _module(tmp_path, monkeypatch, source.replace(old, new))
    assert static_signature.read(f"{name}:Child") is None
    assert static_signature.read(f"{_module(tmp_path, monkeypatch, source)}:Child") is not None


def test_a_class_changed_after_its_statement_or_a_missing_dependency_is_left_to_the_import(tmp_path, monkeypatch):
    changed = _module(tmp_path, monkeypatch, _BASE + "\n    Child.__init__ = lambda self, colour=1: None\n")
    assert static_signature.read(f"{changed}:Child") is None
    missing = _module(
        tmp_path, monkeypatch, _BASE.replace("import keras\n", "import keras\n    import not_installed_x\n")
    )
    assert static_signature.read(f"{missing}:Child") is None
    assert static_signature.read(f"{changed}:Nowhere") is None


def test_names_of_every_kind_import_nothing():
    code = (
        "import sys\nfrom mmkeras.registry import KINDS, registry\n"
        "[registry.names(k) for k in KINDS]\nprint('keras' in sys.modules, 'numpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stderr
    assert set(KINDS) == {e.kind for e in registry.all_entries()}


@pytest.mark.parametrize("form", ["from", "module"])
def test_names_taken_from_the_plugin_api_are_followed_to_where_they_are_defined(tmp_path, monkeypatch, form):
    base = "Augmentation" if form == "from" else "mm.Augmentation"
    name = _module(
        tmp_path,
        monkeypatch,
        f"""
        import mmkeras.plugin as mm
        from mmkeras.plugin import Augmentation, UnitFloat

        class Flip({base}):
            def __init__(self, rate: UnitFloat = 0.5, **kwargs):
                super().__init__(**kwargs)
                self.rate = rate
        """,
    )
    static = static_signature.read(f"{name}:Flip")
    assert static is not None
    assert [(n, d) for n, _, d in static.params] == [("rate", 0.5)]
    problems = build_params_model(static.name, static.params, static.docs)
    with pytest.raises(Exception, match="less than or equal to 1"):
        problems(rate=1.5)
