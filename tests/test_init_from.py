"""model.init_from: fine-tuning starts from a saved model's encoders, fusion and head."""

import numpy as np
import pytest
from conftest import synthetic_recipe

import mmkeras
from mmkeras.errors import RecipeError

SHAPES = {"a": [16], "b": [8, 8, 1]}


def test_parts_start_from_the_saved_model_and_the_objective_starts_fresh(tmp_path):
    source = mmkeras.build_model(mmkeras.recipe_from_dict(synthetic_recipe(seed=1)), SHAPES)
    source.save(tmp_path / "model.keras")
    doc = synthetic_recipe(seed=2, objective={"name": "infonce", "params": {"learnable_temperature": True}})
    doc["model"]["init_from"] = str(tmp_path)  # a run directory: its model.keras
    tuned = mmkeras.build_model(mmkeras.recipe_from_dict(doc), SHAPES)
    fresh = mmkeras.build_model(mmkeras.recipe_from_dict(synthetic_recipe(seed=2)), SHAPES)
    for part in ("a", "b"):
        for w, s, f in zip(tuned.encoders[part].weights, source.encoders[part].weights, fresh.encoders[part].weights):
            np.testing.assert_array_equal(np.asarray(w), np.asarray(s))
            if "kernel" in w.path:  # seeds differ: the copy is real (biases start at zero in both)
                assert not np.array_equal(np.asarray(f), np.asarray(s))
    for w, s in zip(tuned.head.weights, source.head.weights):
        np.testing.assert_array_equal(np.asarray(w), np.asarray(s))
    x = {"a": np.ones((3, 16), "float32"), "b": np.ones((3, 8, 8, 1), "float32")}
    np.testing.assert_allclose(tuned.encode(x), source.encode(x), rtol=1e-6)
    assert len(tuned.objective.weights) == 1  # the learnable temperature, which the source lacks
    # the encoder alone (a run's encoder.keras) starts a model the same way
    source.encoder.save(tmp_path / "encoder.keras")
    doc["model"]["init_from"] = str(tmp_path / "encoder.keras")
    from_encoder = mmkeras.build_model(mmkeras.recipe_from_dict(doc), SHAPES)
    np.testing.assert_array_equal(from_encoder.encode(x), tuned.encode(x))


def test_mismatched_parts_and_missing_files_are_named(tmp_path):
    source = mmkeras.build_model(mmkeras.recipe_from_dict(synthetic_recipe()), SHAPES)
    source.save(tmp_path / "model.keras")
    doc = synthetic_recipe()
    doc["modalities"]["a"]["encoder"]["params"]["hidden_units"] = [32]
    doc["model"]["init_from"] = str(tmp_path / "model.keras")
    with pytest.raises(RecipeError, match=r"model.init_from: encoders.a has weight shapes .*\(16, 32\)"):
        mmkeras.build_model(mmkeras.recipe_from_dict(doc), SHAPES)
    doc = synthetic_recipe()
    doc["model"]["init_from"] = str(tmp_path / "nowhere")
    with pytest.raises(RecipeError, match="model.init_from: .*nowhere: no saved encoder there"):
        mmkeras.build_model(mmkeras.recipe_from_dict(doc), SHAPES)


def test_supcon_fine_tunes_a_trained_run_through_the_cli(tmp_path):
    import yaml
    from conftest import run_cli

    pre = tmp_path / "pre.yaml"
    pre.write_text(yaml.safe_dump(synthetic_recipe()))
    assert run_cli("train", pre, "--output", tmp_path / "pre", "--verbose", "0").returncode == 0
    doc = synthetic_recipe(objective={"name": "supcon", "params": {"temperature": 0.1, "views": 2}})
    doc["model"]["init_from"] = str(tmp_path / "pre")
    doc["modalities"]["a"]["augment"] = [{"name": "gaussian_noise", "params": {"stddev": 0.1}}]
    tune = tmp_path / "tune.yaml"
    tune.write_text(yaml.safe_dump(doc))
    out = run_cli("train", tune, "--output", tmp_path / "tune", "--verbose", "0")
    assert out.returncode == 0, out.stderr[-3000:]
    before = mmkeras.load_model(str(tmp_path / "pre" / "model.keras"))
    after = mmkeras.load_model(str(tmp_path / "tune" / "model.keras"))
    w0, w1 = np.asarray(before.encoders["a"].weights[0]), np.asarray(after.encoders["a"].weights[0])
    assert w0.shape == w1.shape and 0 < np.abs(w1 - w0).max() < 0.5  # moved a little from the start
