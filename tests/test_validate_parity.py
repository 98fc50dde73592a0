"""`mmkeras validate` refuses every recipe that `mmkeras train` would refuse before its first step,
with the same message, naming the file, line and key."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

import mmkeras
from mmkeras.cli import main
from mmkeras.data.arrays import ArraysDataset
from mmkeras.data.base import Dataset, DataSplit, ModalityInfo
from mmkeras.errors import RecipeError
from mmkeras.recipe import load_recipe, recipe_from_dict
from mmkeras.registry import registry


def _doc(**over) -> dict:
    doc = {
        "name": "tiny",
        "seed": 0,
        "data": {"dataset": "arrays", "params": {"synthetic": True, "num_samples": 64}, "batch_size": 16},
        "modalities": {
            "a": {"encoder": {"name": "mlp", "params": {"hidden_units": [8]}}},
            "b": {"encoder": {"name": "conv2d", "params": {"filters": [4], "kernel_size": 3}}},
        },
        "objective": {"name": "infonce", "params": {"temperature": 0.1}},
        "train": {"epochs": 1},
        "evaluate": [{"name": "linear_probe", "params": {"epochs": 2}}],
    }
    for dotted, value in over.items():
        *parents, last = dotted.split(".")
        node = doc
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[last] = value
    return doc


def _refused(tmp_path: Path, doc: dict, *expected: str) -> str:
    """Both `validate` (load_recipe) and `train` refuse ``doc`` with a message holding every ``expected``."""
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    message = str(info.value)
    for part in expected:
        assert part in message, message
    assert f"{path}:" in message  # file and line
    run = tmp_path / "run"
    assert main(["train", str(path), "--output", str(run)]) == 2
    assert not run.exists() and not (run / "checkpoint").exists()
    assert main(["validate", str(path)]) == 2
    return message


@pytest.mark.parametrize(
    "value, problem",
    [(-1.0, "expected a number > 0, got -1.0"), (0, "expected a number > 0, got 0"), (math.nan, "finite number")],
)
def test_temperature_range_from_the_signature(tmp_path, value, problem):
    msg = _refused(tmp_path, _doc(**{"objective.params.temperature": value}), "objective.params.temperature", problem)
    assert msg.count("params.temperature") == 1  # one problem, not one per check


def test_learning_rate_nan_and_inf(tmp_path):
    _refused(
        tmp_path, _doc(train={"optimizer": {"learning_rate": math.inf}}), "train.optimizer.learning_rate", "finite"
    )
    _refused(
        tmp_path, _doc(train={"optimizer": {"learning_rate": math.nan}}), "train.optimizer.learning_rate", "finite"
    )


def test_evaluator_subsets_must_name_recipe_modalities(tmp_path):
    doc = _doc(evaluate=[{"name": "downstream", "params": {"subsets": ["a", "zz"], "epochs": 1}}])
    _refused(tmp_path, doc, "evaluate[0].params.subsets", "downstream", "'zz'", "['a', 'b']")
    # the special names and combinations are accepted
    recipe_from_dict(_doc(evaluate=[{"name": "knn", "params": {"subsets": ["complete", "a", "a+b"]}}]))
    recipe_from_dict(_doc(evaluate=[{"name": "knn", "params": {"subsets": "singles"}}]))


def test_evaluator_modality_parameters(tmp_path):
    _refused(
        tmp_path, _doc(evaluate=[{"name": "umap", "params": {"modality": "c"}}]), "evaluate[0].params.modality", "'c'"
    )
    _refused(
        tmp_path, _doc(evaluate=[{"name": "dca", "params": {"modalities": ["a", "x"]}}]), "params.modalities", "'x'"
    )


def test_objective_pair_must_name_recipe_modalities(tmp_path):
    doc = _doc(objective={"name": "dcca", "params": {"pair": ["a", "q"]}})
    _refused(tmp_path, doc, "objective.params.pair", "'q' is not a modality of this recipe")


def test_dataset_constructor_checks(tmp_path):
    doc = _doc(**{"data.params": {"num_samples": 64}})
    _refused(tmp_path, doc, "data.params", "arrays", "give exactly one of path, arrays or synthetic")
    doc = _doc(**{"data.params": {"synthetic": True, "test_fraction": 1.5}})
    _refused(tmp_path, doc, "data.params", "test_fraction must be in (0, 1)")


@pytest.mark.parametrize("seed, problem", [(-1, ">= 0"), (2**32, "<= 4294967295"), (True, "expected an integer")])
def test_seed_range(tmp_path, seed, problem):
    _refused(tmp_path, _doc(seed=seed), "seed", problem)


def test_seed_bounds_accepted():
    assert recipe_from_dict(_doc(seed=2**32 - 1)).seed == 2**32 - 1
    assert recipe_from_dict(_doc(seed=0)).seed == 0


@pytest.mark.parametrize("name", ["../../x", "a/b", "", ".", "..", ".hidden", "a\\b", "a\0b"])
def test_run_name_is_one_safe_path_component(tmp_path, name):
    _refused(tmp_path, _doc(name=name), "name", "is not a safe run name", "one path component")


@pytest.mark.parametrize("epochs", [True, 1.5, 5.0, "5"])
def test_epochs_strict_integer(tmp_path, epochs):
    # 5.0 is refused too: YAML says it is a float, and a count is written as an integer
    _refused(tmp_path, _doc(train={"epochs": epochs}), "train.epochs", f"expected an integer, got {epochs!r}")


def test_component_integers_are_strict(tmp_path):
    doc = _doc(evaluate=[{"name": "knn", "params": {"k": True}}])
    _refused(tmp_path, doc, "evaluate[0].params.k", "expected an integer, got True")


def test_every_problem_is_reported_at_once(tmp_path):
    doc = _doc(name="a/b", seed=-3, train={"epochs": 1.5})
    doc["objective"]["params"]["temperature"] = -1
    msg = _refused(tmp_path, doc, "name", "seed", "train.epochs", "objective.params.temperature")
    assert len(msg.splitlines()) >= 4


def test_builder_reports_the_same_message():
    from mmkeras.builder import instantiate
    from mmkeras.recipe import ComponentSpec

    with pytest.raises(RecipeError) as info:
        instantiate("objectives", ComponentSpec(name="infonce", params={"temperature": -2}), "objective")
    assert "objective.params.temperature: expected a number > 0, got -2" in str(info.value)


def test_signature_ranges_keep_keras_config_plain():
    from mmkeras.builder import instantiate
    from mmkeras.recipe import ComponentSpec

    layer = instantiate("objectives", ComponentSpec(name="infonce", params={"temperature": 1}), "objective")
    config = layer.get_config()
    assert config["temperature"] == 1.0 and type(config["temperature"]) is float


# -- modalities and shapes declared by the dataset ----------------------------------------
class _Declared(Dataset):
    """A dataset that declares ``vec`` [16] and ``img`` [8, 8, 1] without loading anything."""

    def __init__(self, rows: int = 32):
        if rows < 2:
            raise ValueError(f"rows must be at least 2, got {rows}")
        self.rows = rows

    def info(self) -> dict[str, ModalityInfo]:
        return {"vec": ModalityInfo((16,)), "img": ModalityInfo((8, 8, 1))}

    def load(self, split: str) -> DataSplit:
        rng = np.random.default_rng(0)
        return DataSplit({"vec": rng.normal(size=(self.rows, 16)), "img": rng.normal(size=(self.rows, 8, 8, 1))})


@pytest.fixture
def declared():
    mmkeras.register_dataset("parity_declared")(_Declared)
    yield "parity_declared"
    registry.remove("datasets", "parity_declared")


def _declared_doc(name: str, modalities: dict) -> dict:
    doc = _doc(modalities=modalities, evaluate=[])
    doc["data"] = {"dataset": name, "params": {}, "batch_size": 8}
    return doc


def test_encoder_rank_against_declared_shape(tmp_path, declared):
    conv = {"encoder": {"name": "conv2d", "params": {"filters": [4]}}}
    mlp = {"encoder": {"name": "mlp"}}
    recipe_from_dict(_declared_doc(declared, {"vec": mlp, "img": conv}))
    doc = _declared_doc(declared, {"vec": conv, "img": mlp})
    _refused(
        tmp_path,
        doc,
        "modalities.vec.encoder: conv2d expects an input of shape [H, W, C] or [H, W], "
        "but dataset parity_declared declares vec with shape (16,)",
    )


def test_misspelt_modality_against_declared(tmp_path, declared):
    doc = _declared_doc(declared, {"vec": {"encoder": {"name": "mlp"}}, "imgg": {"encoder": {"name": "mlp"}}})
    _refused(tmp_path, doc, "modalities.imgg: dataset parity_declared has no modality 'imgg'; did you mean 'img'?")


def test_declared_dataset_constructor_check(tmp_path, declared):
    doc = _declared_doc(declared, {"vec": {"encoder": {"name": "mlp"}}, "img": {"encoder": {"name": "mlp"}}})
    doc["data"]["params"] = {"rows": 1}
    _refused(tmp_path, doc, "data.params: parity_declared: rows must be at least 2, got 1")


_ARRAYS_INFO = ArraysDataset(synthetic=True, num_samples=8).info() is not None


@pytest.mark.skipif(not _ARRAYS_INFO, reason="needs ArraysDataset.info() (issue 15, the dataset-declaration part)")
def test_conv2d_on_the_synthetic_vector_modality(tmp_path):
    doc = _doc()
    doc["modalities"]["a"]["encoder"] = {"name": "conv2d", "params": {"filters": [4]}}
    _refused(tmp_path, doc, "modalities.a.encoder: conv2d expects an input of shape", "declares a with shape (16,)")


@pytest.mark.skipif(not _ARRAYS_INFO, reason="needs ArraysDataset.info() (issue 15, the dataset-declaration part)")
def test_misspelt_modality_of_the_synthetic_arrays(tmp_path):
    doc = _doc()
    doc["modalities"]["aa"] = doc["modalities"].pop("a")
    _refused(tmp_path, doc, "modalities.aa: dataset arrays has no modality 'aa'")
