"""The training settings of GMC's supervised MOSEI recipe: a data set's own validation split
(MultiBench's "valid") is the run's validation data, ``train.reduce_lr_on_plateau`` lowers the
learning rate on it, and ``train.optimizer.global_clipnorm`` clips all gradients together."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import yaml

import mmkeras
from mmkeras.cli import main
from mmkeras.data.base import Dataset, DataSplit, ModalityInfo
from mmkeras.errors import MMKerasError, RecipeError
from mmkeras.recipe import load_recipe, recipe_from_dict
from mmkeras.registry import registry
from mmkeras.runs import load_splits, train


class _ThreeSplits(Dataset):
    """train / validation / test of sizes 40 / 12 / 16; the validation rows are all 7.0 in ``a``."""

    splits = ("train", "validation", "test")

    def info(self) -> dict[str, ModalityInfo]:
        return {"a": ModalityInfo((4,)), "b": ModalityInfo((3,))}

    def load(self, split: str) -> DataSplit:
        self._check_split(split)
        n = {"train": 40, "validation": 12, "test": 16}[split]
        rng = np.random.default_rng(len(split))
        a = np.full((n, 4), 7.0, "float32") if split == "validation" else rng.normal(size=(n, 4)).astype("float32")
        return DataSplit({"a": a, "b": rng.normal(size=(n, 3)).astype("float32")}, rng.integers(0, 2, n))


@pytest.fixture
def three_splits():
    mmkeras.register_dataset("three_splits")(_ThreeSplits)
    yield "three_splits"
    registry.remove("datasets", "three_splits")


def _doc(**train) -> dict:
    return {
        "name": "own-validation",
        "data": {"dataset": "three_splits", "batch_size": 8},
        "modalities": {
            "a": {"encoder": {"name": "mlp", "params": {"hidden_units": [8]}}},
            "b": {"encoder": {"name": "mlp"}},
        },
        "model": {"feature_dim": 8, "latent_dim": 8},
        "objective": {"name": "infonce", "params": {"temperature": 0.5}},
        "train": {"epochs": 3, "jit_compile": False, **train},
    }


def test_the_data_sets_validation_split_is_used(three_splits):
    _, splits = load_splits(recipe_from_dict(_doc()))
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [40, 12, 16]
    assert np.all(splits["validation"].inputs["a"] == 7.0)  # the data set's rows, not a slice of train


def test_a_held_out_fraction_as_well_is_refused(three_splits, tmp_path):
    doc = _doc()
    doc["data"]["validation_split"] = 0.2
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(
        RecipeError, match="data.validation_split: dataset three_splits has a validation split of its own"
    ):
        load_recipe(path)
    assert main(["validate", str(path)]) == 2
    with pytest.raises(MMKerasError, match="has a validation split of its own"):  # the same from Python
        load_splits(recipe_from_dict(doc, check_data=False))


def test_plateau_lowers_the_learning_rate_and_saves_it(three_splits, tmp_path):
    # with lr 1e-9 the validation loss cannot improve: patience 1 halves the rate after epochs 2 and 3
    recipe = recipe_from_dict(
        _doc(
            optimizer={"name": "adam", "learning_rate": 1.0e-9},
            reduce_lr_on_plateau={"factor": 0.5, "patience": 1, "monitor": "val_loss"},
        )
    )
    run = train(recipe, tmp_path / "run", verbose=0)
    model = mmkeras.load_model(str(run.model_file))
    # no improvement by min_delta (1e-4) after epoch 1: halved after epochs 2 and 3, and saved with the optimizer
    assert float(np.asarray(model.optimizer.learning_rate)) == pytest.approx(1.0e-9 * 0.25, rel=1e-5)


def test_global_clipnorm_clips_all_gradients_together(three_splits, tmp_path):
    from mmkeras.builder import make_optimizer

    optimizer = make_optimizer(recipe_from_dict(_doc(optimizer={"name": "adam", "global_clipnorm": 0.8})))
    assert optimizer.global_clipnorm == 0.8 and optimizer.clipnorm is None
    grads = [np.full((3,), 4.0, "float32"), np.full((4,), 3.0, "float32")]  # global norm sqrt(48 + 36)
    clipped = optimizer._clip_gradients([keras.ops.convert_to_tensor(g) for g in grads])
    scale = 0.8 / np.sqrt(84.0)
    for g, c in zip(grads, clipped):
        np.testing.assert_allclose(np.asarray(c), g * scale, rtol=1e-5)
    doc = _doc(optimizer={"name": "adam", "clipnorm": 1.0, "global_clipnorm": 0.8})
    with pytest.raises(RecipeError, match="give clipnorm .* or global_clipnorm .*, not both"):
        recipe_from_dict(doc)
