"""`mmkeras new-plugin` and plugin API compatibility.

The slow test is the issue's acceptance test: scaffold a plugin into a temporary directory, pip-install
it into the running environment, run its generated tests, train its example recipe through
`mmkeras train`, and reload the saved model in a new process with identical outputs.
"""

import json
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import run_cli

import mmkeras
import mmkeras.plugin
from mmkeras.cli import main
from mmkeras.errors import ComponentError, RecipeError
from mmkeras.registry import API_GROUP, PLUGIN_API_VERSION
from mmkeras.scaffold import KINDS, new_plugin, plugin_names


# -- names and errors ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, kind, package, component, cls",
    [
        ("mmkeras-gru", "encoder", "mmkeras_gru", "gru", "GruEncoder"),
        ("mmkeras-gru-encoder", "encoder", "mmkeras_gru_encoder", "gru_encoder", "GruEncoder"),
        ("Acme.Audio-Tools", "fusion", "acme_audio_tools", "acme_audio_tools", "AcmeAudioToolsFusion"),
        ("mmkeras_dino", "objective", "mmkeras_dino", "dino", "DinoObjective"),
    ],
)
def test_names_derive_from_the_distribution_name(name, kind, package, component, cls):
    names = plugin_names(name, kind)
    assert (names.package, names.component, names.cls, names.group) == (package, component, cls, kind + "s")


@pytest.mark.parametrize(
    "args, message",
    [
        (["Bad Name!"], "'Bad Name!' is not a valid distribution name"),
        (["mmkeras-3d"], "gives the component name '3d', which is not a Python identifier"),
        (["for"], "gives the package name 'for', which is not a Python identifier"),
        (["numpy"], "a module named 'numpy' is already importable here"),
        (["mmkeras-mlp", "--kind", "encoder"], "an encoder named 'mlp' is already installed (from mmkeras)"),
    ],
)
def test_bad_names_exit_2_with_the_reason(args, message, tmp_path, capsys):
    assert main(["new-plugin", *args, "--output", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_non_empty_output_directory_is_refused(tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    assert main(["new-plugin", "mmkeras-fresh", "--output", str(tmp_path / "taken")]) == 2
    assert f"{tmp_path / 'taken'} already exists and is not an empty directory" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "taken").iterdir()) == ["notes.txt"]


def test_an_unknown_kind_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["new-plugin", "mmkeras-fresh", "--kind", "tokenizer", "--output", str(tmp_path)])
    assert exit_.value.code == 2 and "invalid choice: 'tokenizer'" in capsys.readouterr().err


# -- the generated project -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_generated_project_declares_its_plugin_and_is_lint_clean(kind, tmp_path, fresh_registry, monkeypatch):
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    name = f"mmkeras-demo-{kind}"
    root = new_plugin(name, kind, tmp_path / name)
    names = plugin_names(name, kind)
    meta = tomllib.loads((root / "pyproject.toml").read_text())
    entry_points = meta["project"]["entry-points"]
    assert entry_points[API_GROUP] == {f"v{PLUGIN_API_VERSION}": names.package}
    assert entry_points[f"mmkeras.{names.group}"] == {names.component: f"{names.package}.{kind}:{names.cls}"}
    assert meta["project"]["dependencies"] == ["mmkeras>=0.1"]
    ruff = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--isolated", "--select", "E,F,W,I,UP,B", "--line-length", "120", "."],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert ruff.returncode == 0, ruff.stdout
    # the example recipe validates once the component is registered (here in-process, without installing)
    monkeypatch.syspath_prepend(str(root))
    module = __import__(f"{names.package}.{kind}", fromlist=[names.cls])
    cls = getattr(module, names.cls)
    if kind in ("encoder", "fusion", "head", "objective", "augmentation"):
        # on the plugin API's base class: the signature is the config and the checks, nothing repeats it
        assert issubclass(cls, getattr(mmkeras.plugin, kind.capitalize())) and "get_config" not in vars(cls)
        if kind != "objective":  # whose call refuses a single modality
            assert "raise ValueError" not in (root / names.package / f"{kind}.py").read_text()
    fresh_registry.add(names.group, names.component, cls)
    recipe = mmkeras.load_recipe(root / "examples" / f"{names.component}_synthetic.yaml")
    assert names.component in json.dumps(recipe.to_dict())


# -- plugin API compatibility ----------------------------------------------------------------------
def fake_distribution(where, dist, api_names, module_body="raise RuntimeError('imported')"):
    """An installed-looking distribution (real .dist-info metadata) providing encoder ``<module>_encoder``."""
    module = dist.replace("-", "_")
    info = where / f"{module}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
    api = "".join(f"{n} = {module}\n" for n in api_names)
    (info / "entry_points.txt").write_text(
        f"[{API_GROUP}]\n{api}\n[mmkeras.encoders]\n{module}_encoder = {module}:Encoder\n"
    )
    (where / f"{module}.py").write_text(module_body + "\n")
    return f"{module}_encoder"


def test_first_party_distributions_declare_this_api(fresh_registry):
    by_dist = {}
    for e in fresh_registry.all_entries():
        by_dist.setdefault(e.distribution, set()).add((e.api, e.status == "incompatible"))
    for dist in ("mmkeras", "mmkeras-vision", "mmkeras-mhd"):
        assert by_dist[dist] == {((PLUGIN_API_VERSION,), False)}, dist


def test_plugin_for_another_api_is_refused_before_import(tmp_path, fresh_registry, monkeypatch):
    name = fake_distribution(tmp_path, "future-plugin", [f"v{PLUGIN_API_VERSION + 1}"])
    both = fake_distribution(
        tmp_path,
        "bridge-plugin",
        [f"v{PLUGIN_API_VERSION}", f"v{PLUGIN_API_VERSION + 1}"],
        "import keras\n\nclass Encoder(keras.layers.Layer):\n    pass",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    fresh_registry.discover(force=True)
    entry = fresh_registry.entry("encoders", name)
    assert (entry.status, entry.api) == ("incompatible", (PLUGIN_API_VERSION + 1,))
    with pytest.raises(ComponentError) as err:
        fresh_registry.get("encoders", name)
    assert str(err.value).startswith(
        f"encoder {name!r} from distribution 'future-plugin' (future_plugin:Encoder) is incompatible: it targets "
        f"mmkeras plugin API {PLUGIN_API_VERSION + 1}; this mmkeras provides plugin API {PLUGIN_API_VERSION}."
    )
    assert "future_plugin" not in sys.modules  # refused on metadata alone
    assert fresh_registry.get("encoders", both).__name__ == "Encoder"  # declares this API among others
    doc = {
        "name": "r",
        "data": {"dataset": "arrays", "params": {"synthetic": True}},
        "modalities": {"a": {"encoder": {"name": name}}, "b": {"encoder": {"name": "mlp"}}},
        "objective": {"name": "infonce"},
    }
    with pytest.raises(RecipeError, match=rf"modalities\.a\.encoder\.name: encoder '{name}' .* is incompatible"):
        mmkeras.recipe_from_dict(doc)


def test_a_malformed_api_declaration_is_incompatible(tmp_path, fresh_registry, monkeypatch):
    name = fake_distribution(tmp_path, "odd-plugin", ["version"])
    monkeypatch.syspath_prepend(str(tmp_path))
    fresh_registry.discover(force=True)
    entry = fresh_registry.entry("encoders", name)
    assert entry.status == "incompatible"
    assert entry.error.startswith("its mmkeras.api entry points ['version'] are not plugin API versions")


def test_cli_plugins_lists_incompatible_and_strict_fails(tmp_path):
    name = fake_distribution(tmp_path, "future-plugin", [f"v{PLUGIN_API_VERSION + 1}"])
    out = run_cli("plugins", "--json", "--strict", env_extra={"PYTHONPATH": str(tmp_path)})
    rows = {(r["kind"], r["name"]): r for r in json.loads(out.stdout)}
    row = rows[("encoders", name)]
    assert (row["status"], row["api"]) == ("incompatible", [PLUGIN_API_VERSION + 1])
    assert row["distribution"] == "future-plugin"
    assert f"this mmkeras provides plugin API {PLUGIN_API_VERSION}" in row["error"]
    assert rows[("encoders", "mlp")]["api"] == [PLUGIN_API_VERSION]
    assert out.returncode == 1 and "1 incompatible plugin entries" in out.stderr


# -- the acceptance test ------------------------------------------------------------------
# One plugin per kind, all scaffolded, installed, tested, trained and reloaded together: four Python
# processes in all rather than four per kind (each start imports TensorFlow).
INPUTS = """
import mmkeras


def inputs_of(recipe):
    data = mmkeras.load_dataset(recipe.data.dataset, **recipe.data.params).load("test").take(16)
    return {m: data.inputs[m] for m in recipe.modalities}
"""

# `mmkeras train` for each job, run by its main(); each trained model's outputs are recorded just before it is saved
TRAIN = (
    INPUTS
    + """
import json
import sys

import numpy as np

from mmkeras.cli import main
from mmkeras.model import MultimodalModel

save = MultimodalModel.save
for recipe_path, run_dir, out, overrides in json.loads(sys.argv[1]):
    inputs = inputs_of(mmkeras.load_recipe(recipe_path, overrides))

    def save_recording_outputs(self, path, *args, inputs=inputs, out=out, **kwargs):
        np.save(out, self.encode(inputs))
        return save(self, path, *args, **kwargs)

    MultimodalModel.save = save_recording_outputs
    code = main(["train", recipe_path, "--output", run_dir, "--verbose", "0", *(f"--set={o}" for o in overrides)])
    if code:
        sys.exit(f"training {recipe_path} exited with {code}")
"""
)

RELOAD = (
    INPUTS
    + """
import json
import sys

import numpy as np

modules = {}
for run_dir, out in json.loads(sys.argv[1]):
    model = mmkeras.load_model(f"{run_dir}/model.keras")
    np.save(out, model.encode(inputs_of(mmkeras.load_recipe(f"{run_dir}/recipe.yaml"))))
    modules[run_dir] = sorted({type(layer).__module__ for layer in model._flatten_layers()})
print(json.dumps(modules))
"""
)


def run(args, cwd=None, timeout=900):
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(map(str, args))} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory):
    """kind -> (trained outputs, reloaded outputs, the reloaded model's modules, metrics.json) for a plugin
    of every kind, scaffolded, pip-installed, its generated tests run, its example recipe trained through
    `mmkeras train` and the saved model reloaded in another process."""
    tmp = tmp_path_factory.mktemp("scaffold")
    dists = {kind: f"mmkeras-scaffoldcheck-{kind}" for kind in KINDS}
    roots = {kind: new_plugin(dists[kind], kind, tmp / dists[kind]) for kind in KINDS}
    try:
        installs = [a for kind in KINDS for a in ("-e", str(roots[kind]))]
        run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", *installs])
        tests = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *map(str, roots.values())], tmp)
        assert " passed" in tests and not re.search(r"\d+ (failed|error)", tests), tests[-3000:]
        jobs = []
        for kind in KINDS:
            overrides = [
                "train.epochs=1",
                "data.params.num_samples=128",
                "data.batch_size=32",
                "train.jit_compile=false",
            ]
            if kind != "evaluator":
                overrides.append("evaluate=[]")
            recipe = roots[kind] / "examples" / f"{plugin_names(dists[kind], kind).component}_synthetic.yaml"
            jobs.append([str(recipe), str(tmp / f"run-{kind}"), str(tmp / f"trained-{kind}.npy"), overrides])
        (tmp / "train.py").write_text(textwrap.dedent(TRAIN))
        (tmp / "reload.py").write_text(textwrap.dedent(RELOAD))
        run([sys.executable, tmp / "train.py", json.dumps(jobs)])
        reloads = [[str(tmp / f"run-{kind}"), str(tmp / f"reloaded-{kind}.npy")] for kind in KINDS]
        modules = json.loads(run([sys.executable, tmp / "reload.py", json.dumps(reloads)]))
    finally:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-q", "-y", *dists.values()], capture_output=True)
    return {
        kind: (
            np.load(tmp / f"trained-{kind}.npy"),
            np.load(tmp / f"reloaded-{kind}.npy"),
            modules[str(tmp / f"run-{kind}")],
            json.loads((tmp / f"run-{kind}" / "metrics.json").read_text()),
        )
        for kind in KINDS
    }


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_scaffolded_plugin_installs_passes_its_tests_trains_and_reloads(kind, scaffolded):
    names = plugin_names(f"mmkeras-scaffoldcheck-{kind}", kind)
    trained, reloaded, modules, metrics = scaffolded[kind]
    assert trained.shape == (16, 16) and np.all(np.isfinite(trained))
    np.testing.assert_allclose(reloaded, trained, rtol=1e-6, atol=1e-6)
    if kind in ("encoder", "fusion", "head", "objective", "augmentation"):
        assert f"{names.package}.{kind}" in modules  # the saved model holds the plugin's component
    if kind == "objective":
        assert {"align", "uniform"} <= set(metrics["final"])  # the keys its call returns were tracked
    if kind == "evaluator":
        accuracy = metrics["evaluation"][names.component]["accuracy"]
        assert set(accuracy) == {"complete", "a", "b"} and all(0.0 <= v <= 1.0 for v in accuracy.values())
