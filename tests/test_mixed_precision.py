import keras
import numpy as np
import pytest
from conftest import synthetic_recipe

import mmkeras
from mmkeras.builder import resolve_jit_compile
from mmkeras.data.pipeline import make_dataset


@pytest.fixture
def restore_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("policy", ["float16", "bfloat16"])
def test_mixed_precision_trains_with_float32_similarities(policy, restore_policy):
    recipe = mmkeras.recipe_from_dict(synthetic_recipe(train__mixed_precision=policy))
    model = mmkeras.build_model(recipe, {"a": [16], "b": [8, 8, 1]})
    assert model.encoders["a"].compute_dtype == policy
    assert model.objective.compute_dtype == "float32"
    if policy == "float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    train = mmkeras.load_dataset("arrays", synthetic=True, num_samples=256).load("train")
    record = model({"a": train.inputs["a"][:8], "b": train.inputs["b"][:8]})
    assert keras.backend.standardize_dtype(record["latents"]["a"].dtype) == policy
    out = model.objective(record)
    assert keras.backend.standardize_dtype(out["loss"].dtype) == "float32"
    history = model.fit(make_dataset(train, ["a", "b"], 32), epochs=2, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
    assert history.history["loss"][1] < history.history["loss"][0]


def test_jit_compile_auto_is_on_for_one_device_and_off_under_mirrored():
    from types import SimpleNamespace

    recipe = mmkeras.recipe_from_dict(synthetic_recipe(train__jit_compile="auto"))
    assert resolve_jit_compile(recipe, None) is True
    assert resolve_jit_compile(recipe, SimpleNamespace(num_replicas_in_sync=2)) is False
    forced = mmkeras.recipe_from_dict(synthetic_recipe(train__jit_compile=False))
    assert resolve_jit_compile(forced, None) is False
