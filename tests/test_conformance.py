"""The conformance kit: first-party components pass it, and it catches the mistakes plugin authors make."""

import keras
import numpy as np
import pytest
from keras import layers, ops

from mmkeras.fusions.base import Fusion
from mmkeras.objectives.base import Objective
from mmkeras.registry import registry
from mmkeras.testing import (
    check_augmentation,
    check_dataset,
    check_encoder,
    check_evaluator,
    check_fusion,
    check_head,
    check_objective,
    use_logical_devices,
)

use_logical_devices(2)  # check_objective's 2-replica check; before any TensorFlow op runs (pytest imports first)


@pytest.fixture(autouse=True)
def float32_policy():
    yield
    assert keras.mixed_precision.global_policy().name == "float32", "a check left mixed precision on"


# -- first-party components pass ---------------------------------------------------------------
@pytest.mark.parametrize(
    "name, params, input_shape",
    [
        ("mlp", {"hidden_units": [16], "dropout": 0.1}, (12,)),
        ("conv2d", {"filters": [4, 8], "kernel_size": 3, "batch_norm": True}, (8, 8, 1)),
        ("conv1d", {"filters": [4, 8], "kernel_sizes": [3, 3], "strides": [1, 2]}, (10, 3)),
    ],
)
def test_first_party_encoders_pass(name, params, input_shape):
    check_encoder(registry.get("encoders", name), params, input_shape=input_shape)


@pytest.mark.parametrize(
    "name, params",
    [
        ("mean", {}),
        ("concat", {"activation": "relu"}),
        ("tensor", {}),
        ("low_rank", {"rank": 2}),
        ("gated", {}),
        ("attention", {"num_heads": 2, "token_dim": 8}),
    ],
)
def test_first_party_fusions_pass(name, params):
    shapes = {"a": (8,), "b": (8,)} if name == "mean" else {"a": (8,), "b": (6,), "c": (4,)}
    check_fusion(registry.get("fusions", name), params, feature_shapes=shapes)


def test_first_party_head_passes():
    check_head(registry.get("heads", "mlp"), {"hidden_units": [16], "normalize": True})


@pytest.mark.parametrize(
    "name, params",
    [
        ("infonce", {"learnable_temperature": True}),
        ("gmc", {"supervised": True, "num_classes": 3}),
    ],
)
def test_first_party_objectives_pass(name, params):
    check_objective(registry.get("objectives", name), params, modalities=("a", "b", "c"), replicas=True)


def test_first_party_augmentation_passes():
    check_augmentation(registry.get("augmentations", "gaussian_noise"), {"stddev": 0.2, "rate": 0.5}, (6, 4))


def test_first_party_plugin_augmentation_passes():
    pytest.importorskip("mmkeras_vision")
    check_augmentation(registry.get("augmentations", "random_resized_crop"), {"rate": 0.8}, (8, 8, 3))


def test_first_party_dataset_and_evaluator_pass():
    check_dataset(registry.get("datasets", "arrays"), {"synthetic": True, "num_samples": 64})
    check_evaluator(registry.get("evaluators", "linear_probe"), {"epochs": 2})


# -- the kit catches broken components -----------------------------------------------------------
@keras.saving.register_keras_serializable(package="test_conformance")
class IncompleteConfigEncoder(keras.layers.Layer):
    def __init__(self, output_dim: int, units: int = 16, **kwargs):
        super().__init__(**kwargs)
        self.output_dim, self.units = output_dim, units
        self.hidden = layers.Dense(units)
        self.out = layers.Dense(output_dim)

    def call(self, x, training=None):
        return self.out(self.hidden(x))

    def get_config(self):
        return {**super().get_config(), "output_dim": self.output_dim}  # forgets units


@keras.saving.register_keras_serializable(package="test_conformance")
class NumpyEncoder(keras.layers.Layer):
    def __init__(self, output_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.output_dim = output_dim
        self.out = layers.Dense(output_dim)

    def call(self, x, training=None):
        return self.out(np.tanh(np.asarray(x)))  # eager-only: fails once traced

    def get_config(self):
        return {**super().get_config(), "output_dim": self.output_dim}


@keras.saving.register_keras_serializable(package="test_conformance")
class MaskIgnoringFusion(Fusion):
    def __init__(self, output_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.output_dim = output_dim
        self.dense = layers.Dense(output_dim)

    def call(self, features, masks):
        return self.dense(ops.concatenate([features[n] for n in sorted(features)], axis=-1))

    def get_config(self):
        return {**super().get_config(), "output_dim": self.output_dim}


@keras.saving.register_keras_serializable(package="test_conformance")
class AllRowsObjective(Objective):
    """Mean squared distance between the first two modalities' latents over every row, masked or not."""

    def call(self, outputs, labels=None):
        a, b = (ops.cast(outputs["latents"][m], "float32") for m in sorted(outputs["latents"])[:2])
        return {"loss": ops.mean(ops.sum(ops.square(a - b), axis=-1))}


class UnregisteredHead(keras.layers.Layer):
    def __init__(self, output_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.output_dim = output_dim
        self.out = layers.Dense(output_dim)

    def call(self, h):
        return self.out(h)

    def get_config(self):
        return {**super().get_config(), "output_dim": self.output_dim}


@keras.saving.register_keras_serializable(package="test_conformance")
class UntypedEncoder(keras.layers.Layer):
    def __init__(self, output_dim: int, width=16, **kwargs):
        super().__init__(**kwargs)
        self.output_dim, self.width = output_dim, width
        self.out = layers.Dense(output_dim)

    def call(self, x, training=None):
        return self.out(x)

    def get_config(self):
        return {**super().get_config(), "output_dim": self.output_dim, "width": self.width}


@keras.saving.register_keras_serializable(package="test_conformance")
class DeadWeightHead(UnregisteredHead):
    def __init__(self, output_dim: int, **kwargs):
        super().__init__(output_dim, **kwargs)
        self.unused = layers.Dense(output_dim, name="unused")

    def build(self, input_shape):
        self.unused.build(input_shape)


def failure(check, *args, **kwargs) -> str:
    """The AssertionError message ``check(*args, **kwargs)`` raises."""
    with pytest.raises(AssertionError) as err:
        check(*args, **kwargs)
    return str(err.value)


def test_catches_incomplete_get_config():
    msg = failure(check_encoder, IncompleteConfigEncoder, {"units": 4}, input_shape=(5,))
    assert msg.startswith("encoder IncompleteConfigEncoder: config round trip: get_config() lacks ['units']: "), msg


def test_catches_numpy_inside_call():
    msg = failure(check_encoder, NumpyEncoder, {}, input_shape=(5,))
    expected = "encoder NumpyEncoder: keras.ops only: call() fails inside tf.function(jit_compile=True)"
    assert msg.startswith(expected), msg
    assert "NotImplementedError" in msg and "np.tanh(np.asarray(x))" in msg


def test_catches_a_fusion_that_ignores_the_mask():
    msg = failure(check_fusion, MaskIgnoringFusion, {})
    assert msg.startswith("fusion MaskIgnoringFusion: masks: the fusion does not ignore a masked modality: "), msg
    assert "changing 'a' features where it is masked differ by up to" in msg


def test_catches_an_objective_that_keeps_masked_rows():
    msg = failure(check_objective, AllRowsObjective)
    assert msg.startswith("objective AllRowsObjective: masks: the objective does not drop masked rows: "), msg


def test_catches_an_unregistered_class():
    msg = failure(check_head, UnregisteredHead)
    assert msg.startswith("head UnregisteredHead: registered serializable: decorate the class with "), msg


def test_catches_an_untyped_parameter():
    msg = failure(check_encoder, UntypedEncoder)
    assert msg.startswith("encoder UntypedEncoder: parameters: __init__ parameters ['width'] have no type hint"), msg


def test_catches_a_weight_without_gradient():
    msg = failure(check_head, DeadWeightHead)
    assert msg.startswith("head DeadWeightHead: gradients flow: no gradient reaches trainable weights ["), msg
    assert "unused/kernel" in msg and "unused/bias" in msg
