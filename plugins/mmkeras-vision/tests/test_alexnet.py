"""The alexnet encoder: shapes against the layout, parameter count against a hand count, save and
reload, errors; the 224-px CoMM recipe validates and trains."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from mmkeras_vision.alexnet import AlexNetEncoder, feature_map_side

import mmkeras
from mmkeras import load_recipe
from mmkeras.plugin import check_encoder

RECIPE = Path(__file__).resolve().parents[3] / "recipes" / "comm_trifeatures_224.yaml"


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(size=(2, 224, 224, 3)).astype("float32")


def test_224_px_gives_36_tokens_a_map_and_a_vector(images):
    tokens = AlexNetEncoder(512, output="tokens")
    assert tuple(tokens(images).shape) == (2, 36, 512)
    assert tuple(tokens.compute_output_shape((None, 224, 224, 3))) == (None, 36, 512)
    feature_map = AlexNetEncoder(512, output="map")
    assert tuple(feature_map(images).shape) == (2, 6, 6, 512)
    vector = AlexNetEncoder(128)
    assert tuple(vector(images).shape) == (2, 128)
    # the tokens are the map's positions in row-major order (same weights)
    feature_map.set_weights(tokens.get_weights())
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(tokens(images)),
        keras.ops.convert_to_numpy(feature_map(images)).reshape(2, 36, 512),
        rtol=1e-5,
        atol=1e-6,
    )


def test_map_sides_follow_the_padding():
    # 224 -> 55 -> 27 -> 13 -> 6 (conv 1 zero-padded by 2, stride 4; three valid 3x3 / 2 pools)
    assert {s: feature_map_side(s) for s in (62, 63, 96, 128, 192, 224, 227, 256)} == {
        62: 0,
        63: 1,
        96: 2,
        128: 3,
        192: 5,
        224: 6,
        227: 6,
        256: 7,
    }
    out = AlexNetEncoder(4, output="map")(np.zeros((1, 128, 192, 3), "float32"))
    assert tuple(out.shape) == (1, 3, 5, 4)


def test_parameter_count_by_hand():
    convs = [(11, 3, 64), (5, 64, 192), (3, 192, 384), (3, 384, 256)]
    # torchvision's AlexNet features (fifth convolution 256 wide): 2,469,696 parameters
    conv_params = sum(k * k * c_in * c_out + c_out for k, c_in, c_out in [*convs, (3, 256, 256)])
    assert conv_params == 2_469_696
    encoder = AlexNetEncoder(8, channels=256, output="map")
    encoder.build((None, 224, 224, 3))
    assert encoder.count_params() == conv_params + 256 * 8 + 8
    # the default: fifth convolution 512 wide, projected to output_dim 512
    default = AlexNetEncoder(512)
    default.build((None, 224, 224, 3))
    conv_params = sum(k * k * c_in * c_out + c_out for k, c_in, c_out in [*convs, (3, 256, 512)])
    assert default.count_params() == conv_params + 512 * 512 + 512 == 3_322_432
    # batch norm: gamma, beta, moving mean and variance per channel of each convolution
    normed = AlexNetEncoder(512, batch_norm=True)
    normed.build((None, 224, 224, 3))
    assert normed.count_params() - default.count_params() == 4 * (64 + 192 + 384 + 256 + 512)


def test_save_and_reload_give_identical_outputs(images, tmp_path):
    encoder = AlexNetEncoder(32, channels=64, batch_norm=True, output="tokens", name="alexnet")
    inputs = keras.Input((224, 224, 3))
    model = keras.Model(inputs, encoder(inputs))
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    reloaded = again.get_layer("alexnet")
    assert reloaded.get_config() == encoder.get_config()
    assert reloaded.get_config()["output"] == "tokens" and reloaded.channels == 64
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(again(images, training=False)),
        keras.ops.convert_to_numpy(model(images, training=False)),
    )


def test_conformance_at_the_smallest_size():
    for output in ("vector", "tokens", "map"):
        check_encoder(AlexNetEncoder, {"channels": 16, "output": output}, input_shape=(63, 63, 3), batch_size=2)


def test_errors_say_what_to_change():
    with pytest.raises(ValueError, match="at least 63 pixels"):
        AlexNetEncoder(4)(np.zeros((1, 62, 100, 3), "float32"))
    with pytest.raises(ValueError, match="got 1 channels; set false"):
        AlexNetEncoder(4)(np.zeros((1, 64, 64, 1), "float32"))
    assert tuple(AlexNetEncoder(4, normalize=False)(np.zeros((1, 64, 64, 1), "float32")).shape) == (1, 4)
    with pytest.raises(ValueError, match="output: Input should be 'vector', 'tokens' or 'map'"):
        AlexNetEncoder(4, output="pooled")
    with pytest.raises(ValueError, match="channels: expected a number > 0, got 0"):
        AlexNetEncoder(4, channels=0)


def test_recipe_validates_as_the_paper_sets_it():
    recipe = load_recipe(RECIPE)  # what `mmkeras validate` runs
    assert recipe.data.params["image_size"] == 224 and recipe.data.batch_size == 64
    assert recipe.train.epochs == 100 and recipe.train.optimizer.learning_rate == 3e-4
    assert recipe.modalities["image1"].encoder.name == "alexnet"
    crop = recipe.modalities["image2"].augment[0]
    assert crop.name == "random_resized_crop" and crop.params["scale"] == [0.08, 1.0]
    for probe in recipe.evaluate:
        assert probe.params["dataset_params"]["image_size"] == 224
    with pytest.raises(mmkeras.RecipeError, match="channels"):
        load_recipe(RECIPE, ["modalities.image1.encoder.params.channels=0"])


def test_a_train_step_on_224_px_trifeatures_gives_a_finite_loss(tmp_path):
    """One step of batch 2 (tracing the step dominates: ~15 s on 2 busy cores; a step is ~3 s)."""
    recipe = load_recipe(
        RECIPE,
        [
            f"data.params={{size: 5, image_size: 224, seed: 0, task: shared, workers: 1, data_dir: '{tmp_path}'}}",
            "data.batch_size=2",
            "train.epochs=1",
            "train.steps_per_epoch=1",
            "train.jit_compile=false",
            "evaluate=[]",
        ],
    )
    mmkeras.train(recipe, output=str(tmp_path / "run"), verbose=0)
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())
    loss = history["history"]["loss"]
    assert len(loss) == 1 and np.isfinite(loss[0]) and loss[0] > 0, history
