"""Every registered encoder, head, fusion, augmentation and objective: its config round-trips, a
value outside a declared range is refused naming the parameter, and a saved model finds its
components by their registered names, whatever module they live in."""

import json
import types
import typing

import annotated_types
import keras
import numpy as np
import pytest

from mmkeras.recipe import params_model
from mmkeras.registry import parameters, registry

KINDS = ("encoders", "heads", "fusions", "augmentations", "objectives")
#: values for the parameters a component requires (the builder fills them in from the recipe)
REQUIRED = {
    "output_dim": 8,
    "output_shape": [8, 8, 1],
    "decoders": {"a": {"name": "dense_decoder", "params": {}}},
    "num_classes": 3,
}


#: what an encoder that wraps a network needs besides REQUIRED (tests/test_keras_model_encoder.py loads real ones)
SOURCES = {
    "keras_model": lambda: {"application": "MobileNet"},
    "pretrained": lambda: {"preset": "unused", "network": keras.layers.Dense(8)},  # as from_config gives it
}


def components():
    return [(kind, name) for kind in KINDS for name in registry.names(kind)]


def make(kind, name, **params):
    cls = registry.get(kind, name)
    source = SOURCES.get(name, dict)()
    required = {n: REQUIRED[n] for n, p in parameters(cls).items() if p.default is p.empty and n not in source}
    return cls, cls(**{**required, **source, **params})


def outside(hint):
    """A value just outside the numeric range ``hint`` declares, or None when it declares none."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        found = [v for v in (outside(a) for a in typing.get_args(hint)) if v is not None]
        return found[0] if found else None
    if typing.get_origin(hint) is not typing.Annotated or typing.get_args(hint)[0] not in (int, float):
        return None
    step = 1 if typing.get_args(hint)[0] is int else 0.5
    for meta in hint.__metadata__:
        for c in getattr(meta, "metadata", [meta]):
            if isinstance(c, annotated_types.Gt):
                return c.gt
            if isinstance(c, annotated_types.Ge):
                return c.ge - step
            if isinstance(c, annotated_types.Lt):
                return c.lt
            if isinstance(c, annotated_types.Le):
                return c.le + step
    return None


def ranged_parameters():
    out = []
    for kind, name in components():
        cls = registry.get(kind, name)
        hints = typing.get_type_hints(cls.__init__, include_extras=True)
        for param in parameters(cls):
            value = outside(hints.get(param))
            if value is not None:
                out.append((kind, name, param, value))
    return out


@pytest.mark.parametrize("kind, name", components(), ids=lambda v: v)
def test_config_round_trips(kind, name):
    cls, obj = make(kind, name)
    config = obj.get_config()
    json.dumps(config)  # a saved model's config.json holds it
    assert set(parameters(cls)) <= set(config), "every declared parameter is saved"
    assert cls.from_config(config).get_config() == config
    registered = keras.saving.get_registered_name(cls)
    assert keras.saving.get_registered_object(registered) is cls
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))
    assert type(revived) is cls and revived.get_config() == config


def test_every_kind_has_components_with_ranged_parameters():
    kinds = {kind for kind, *_ in ranged_parameters()}
    assert kinds == set(KINDS)
    assert len(components()) >= 50


@pytest.mark.parametrize("kind, name, param, value", ranged_parameters(), ids=lambda v: str(v))
def test_a_value_out_of_its_declared_range_is_refused(kind, name, param, value):
    cls = registry.get(kind, name)
    params_model(cls)  # the same declaration validates recipes
    with pytest.raises(ValueError, match=rf"{cls.__name__}: (.*; )?{param}: expected a number"):
        make(kind, name, **{param: value})


def _legacy_modules(config):
    """``config`` with every mmkeras module path replaced by one that does not exist, as in a model
    saved before its components moved to files of their own."""
    if isinstance(config, dict):
        out = {k: _legacy_modules(v) for k, v in config.items()}
        if str(out.get("module", "")).startswith("mmkeras."):
            out["module"] = "mmkeras.moved_away"
        return out
    if isinstance(config, list):
        return [_legacy_modules(v) for v in config]
    return config


def test_a_saved_model_loads_by_registered_names_whatever_the_modules(tmp_path):
    from mmkeras.augmentations.scaling import Scaling
    from mmkeras.heads.conv2d_decoder import Conv2DDecoder
    from mmkeras.heads.dense_decoder import DenseDecoder
    from mmkeras.heads.gaussian_mean import GaussianMean

    code = keras.Input((4,))
    augmented = Scaling(stddev=0.2, seed=1)(code)
    outputs = [
        DenseDecoder([2, 3], hidden_units=[8])(augmented),
        Conv2DDecoder([4, 4, 1], filters=[2], kernel_size=3)(augmented),
        GaussianMean(2)(augmented),
    ]
    model = keras.Model(code, outputs)
    model.save(tmp_path / "model.keras")

    import zipfile

    with zipfile.ZipFile(tmp_path / "model.keras") as saved:
        files = {n: saved.read(n) for n in saved.namelist()}
    config = json.loads(files["config.json"])
    names = {layer["registered_name"] for layer in config["config"]["layers"]}
    assert {"mmkeras>Scaling", "mmkeras>DenseDecoder", "mmkeras>Conv2DDecoder", "mmkeras>GaussianMean"} <= names
    files["config.json"] = json.dumps(_legacy_modules(config)).encode()
    with zipfile.ZipFile(tmp_path / "moved.keras", "w") as moved:
        for n, data in files.items():
            moved.writestr(n, data)

    reloaded = keras.saving.load_model(tmp_path / "moved.keras")
    x = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    for a, b in zip(model(x), reloaded(x)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-6, atol=1e-6)
    assert [tuple(np.asarray(o).shape) for o in reloaded(x)] == [(3, 2, 3), (3, 4, 4, 1), (3, 2)]
