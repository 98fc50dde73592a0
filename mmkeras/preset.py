"""mmkeras's own presets: a trained encoder in keras-hub's preset layout, to load back and reuse.

A preset is a directory of three files, as keras-hub writes them:

- ``config.json``: the Keras-serialized object, the whole :class:`~mmkeras.encoder.MultimodalEncoder`
  or, for a modality preset, that modality's encoder layer alone;
- ``model.weights.h5``: its weights;
- ``metadata.json``: ``keras_version``, ``keras_hub_version`` (when installed), ``mmkeras_version``,
  ``parameter_count``, ``date_saved``, and an ``"mmkeras"`` block that says what the preset holds
  (``kind``: ``"multimodal_encoder"`` or ``"modality_encoder"``; ``modalities``; ``modality``; input,
  feature and latent shapes without the batch axis; the ``recipe`` name and ``run`` path it came from).

``mmkeras export RUN --preset DIR [--modality M]`` (:func:`export_preset`) writes one;
:func:`mmkeras.load_encoder` (:func:`load_preset`) reads it back; the ``pretrained`` encoder
(:func:`load_modality_encoder`) reuses one modality's encoder in another recipe. A preset is
written into a temporary sibling directory and renamed into place, so a kill leaves no half preset,
and an existing non-empty directory is never written into. Loading uses Keras's ``safe_mode``.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
from importlib import metadata as md
from pathlib import Path
from typing import Any

import keras
import yaml
from keras import ops

from mmkeras.encoder import MultimodalEncoder
from mmkeras.errors import MMKerasError, first_line
from mmkeras.registry import did_you_mean
from mmkeras.safe_io import _fsync_dir, read_json_object

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "metadata.json"
MULTIMODAL = "multimodal_encoder"
MODALITY = "modality_encoder"
#: the layout of the "mmkeras" metadata block; a reader refuses a newer one by name
FORMAT_VERSION = 1
HINT = "export the preset again"


def save_preset(
    encoder: MultimodalEncoder,
    directory: str | os.PathLike[str],
    *,
    modality: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write ``encoder`` (or, with ``modality``, that modality's encoder layer alone) as a preset in
    ``directory``, which must not exist or be empty. ``metadata``: extra entries for the ``"mmkeras"``
    block of ``metadata.json`` (:func:`export_preset` adds ``recipe`` and ``run``). Returns the path."""
    target = _check_target(directory)
    if not isinstance(encoder, MultimodalEncoder):
        raise MMKerasError(f"save_preset takes a MultimodalEncoder, got {type(encoder).__name__}")
    if modality is not None:
        _check_modality(modality, encoder.modalities, "the encoder")
    if not encoder.built:
        encoder.build()
    obj, block = _describe(encoder, modality)
    block.update(metadata or {})
    meta = {
        "keras_version": keras.__version__,
        **({"keras_hub_version": v} if (v := _version("keras-hub")) else {}),
        "mmkeras_version": _mmkeras_version(),
        "parameter_count": int(obj.count_params()),
        "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
        "mmkeras": block,
    }
    config = keras.saving.serialize_keras_object(obj)
    # mmkeras builds the object itself on load (from the input shapes in the metadata)
    config.pop("build_config", None)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # left by a killed earlier attempt of this same pid
    try:
        tmp.mkdir(parents=True)
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=4), encoding="utf-8")
        keras.saving.save_weights(obj, tmp / WEIGHTS_FILE)
        (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=4), encoding="utf-8")
        for name in (CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE):
            with open(tmp / name, "rb+") as f:
                os.fsync(f.fileno())
        _fsync_dir(tmp)
        if target.is_dir():  # empty (checked above); the rename needs the name free on every platform
            target.rmdir()
        os.replace(tmp, target)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise MMKerasError(f"cannot write the preset {target}: {exc.strerror or exc}") from exc
        raise
    _fsync_dir(target.parent)
    return target


def export_preset(
    run_dir: str | os.PathLike[str], directory: str | os.PathLike[str], modality: str | None = None
) -> Path:
    """Write the trained encoder of ``run_dir`` (a run directory, or an ``encoder.keras`` / model
    ``.keras`` file; see :func:`mmkeras.load_encoder`) as a preset in ``directory``, naming the run's
    recipe and path in its metadata. ``modality``: that modality's encoder alone."""
    from mmkeras.encoder import load_encoder

    _check_target(directory)  # before the (slow) load: refuse at once
    source = Path(run_dir)
    encoder = load_encoder(source)
    if modality is not None:
        _check_modality(modality, encoder.modalities, str(source))
    recipe_file = (source if source.is_dir() else source.parent) / "recipe.yaml"
    recipe_name = None
    if recipe_file.is_file():
        try:
            recipe_name = (yaml.safe_load(recipe_file.read_text(encoding="utf-8")) or {}).get("name")
        except (yaml.YAMLError, UnicodeDecodeError, AttributeError) as exc:
            raise MMKerasError(f"{recipe_file} is corrupt ({str(exc).splitlines()[0]}); restore it") from None
    return save_preset(
        encoder,
        directory,
        modality=modality,
        metadata={"recipe": recipe_name, "run": str(source.resolve())},
    )


def is_preset(directory: str | os.PathLike[str]) -> bool:
    """Whether ``directory`` looks like a preset (mmkeras's or keras-hub's): it has a ``metadata.json``."""
    return (Path(directory) / METADATA_FILE).is_file()


def read_metadata(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``metadata.json`` of the mmkeras preset in ``directory``, checked: a missing directory or
    file, a corrupt file, a keras-hub preset that is not mmkeras's or a newer format raise one line."""
    path = Path(directory)
    if not path.is_dir():
        raise MMKerasError(f"{path}: no such directory (expected an mmkeras preset: {_FILES})")
    for name in (METADATA_FILE, CONFIG_FILE, WEIGHTS_FILE):
        if not (path / name).is_file():
            raise MMKerasError(f"{path}: no {name} there (expected an mmkeras preset: {_FILES})")
    meta = read_json_object(path / METADATA_FILE, HINT)
    block = meta.get("mmkeras")
    if block is None:
        what = read_json_object(path / CONFIG_FILE, HINT).get("class_name", "a model")
        raise MMKerasError(
            f"{path} is a keras-hub preset ({what}), not an mmkeras encoder preset; to use it as a modality "
            f"encoder, give it to the keras_model encoder: {{name: keras_model, params: {{preset: {path}}}}}"
        )
    if not isinstance(block, dict) or block.get("kind") not in (MULTIMODAL, MODALITY):
        raise MMKerasError(
            f"{path / METADATA_FILE} is corrupt: its 'mmkeras' block has no kind "
            f"{MULTIMODAL!r} or {MODALITY!r}; export the preset again"
        )
    if int(block.get("format", 0)) > FORMAT_VERSION:
        raise MMKerasError(
            f"{path} was written by a newer mmkeras (preset format {block['format']}, this one reads "
            f"{FORMAT_VERSION}); upgrade mmkeras"
        )
    return meta


def load_preset(directory: str | os.PathLike[str]) -> MultimodalEncoder:
    """The :class:`~mmkeras.encoder.MultimodalEncoder` of the preset in ``directory``, built, with
    its weights. A one-modality preset (``--modality``) gives a MultimodalEncoder over that one
    encoder with a ``mean`` fusion and no head, so its ``encode`` returns the encoder's features."""
    path = Path(directory)
    block = read_metadata(path)["mmkeras"]
    obj = _load_object(path, block)
    if block["kind"] == MULTIMODAL:
        return obj
    from mmkeras.fusions.mean import MeanFusion

    m = block["modality"]
    encoder = MultimodalEncoder(
        {m: obj}, MeanFusion(name="fusion"), head=None, input_shapes={m: block["input_shape"]}, name="encoder"
    )
    encoder.build()
    return encoder


def load_modality_encoder(directory: str | os.PathLike[str], modality: str | None = None) -> keras.layers.Layer:
    """One modality's encoder layer from the preset in ``directory``, built, with its weights: a
    modality preset's layer, or ``modality``'s encoder in a multimodal preset (``modality`` may be
    left out when the preset has one modality)."""
    path = Path(directory)
    block = read_metadata(path)["mmkeras"]
    modalities = list(block.get("modalities") or [])
    if modality is None:
        if len(modalities) != 1:
            raise MMKerasError(f"{path} holds the encoders of {', '.join(modalities)}: choose one with modality")
        modality = modalities[0]
    _check_modality(modality, modalities, str(path))
    obj = _load_object(path, block)
    return obj if block["kind"] == MODALITY else obj.encoders[modality]


# -- helpers ---------------------------------------------------------------------------------

_FILES = f"a directory with {CONFIG_FILE}, {WEIGHTS_FILE} and {METADATA_FILE}, from `mmkeras export RUN --preset DIR`"


def _check_target(directory: str | os.PathLike[str]) -> Path:
    target = Path(directory)
    if target.exists() and not target.is_dir():
        raise MMKerasError(f"{target} is a file; give a new directory for the preset")
    if target.is_dir() and any(target.iterdir()):
        raise MMKerasError(f"{target} is not empty; nothing was written there: give a new directory for the preset")
    return target


def _check_modality(modality: str, modalities: list[str], where: str) -> None:
    if modality not in modalities:
        raise MMKerasError(
            f"{where} has no modality {modality!r}{did_you_mean(modality, modalities)} "
            f"(its modalities: {', '.join(modalities)})"
        )


def _describe(encoder: MultimodalEncoder, modality: str | None) -> tuple[keras.layers.Layer, dict[str, Any]]:
    """The object to save and the ``"mmkeras"`` metadata block describing it."""
    # one row through the encoder: its feature and latent shapes, whatever its parts
    record = encoder({m: ops.zeros([1] + encoder.input_shapes[m]) for m in encoder.modalities}, training=False)

    def shape(x: Any) -> list[int]:
        return [int(d) for d in x.shape[1:]]

    if modality is not None:
        return encoder.encoders[modality], {
            "format": FORMAT_VERSION,
            "kind": MODALITY,
            "modalities": [modality],
            "modality": modality,
            "input_shape": encoder.input_shapes[modality],
            "feature_shape": shape(record.features[modality]),
        }
    return encoder, {
        "format": FORMAT_VERSION,
        "kind": MULTIMODAL,
        "modalities": list(encoder.modalities),
        "modality": None,
        "input_shapes": encoder.input_shapes,
        "feature_shapes": {m: shape(record.features[m]) for m in encoder.modalities},
        "latent_shapes": {m: shape(record.latents[m]) for m in encoder.modalities},
        "joint_feature_shape": shape(record.joint_feature),
        "joint_latent_shape": shape(record.joint),
        "subset_encoding": encoder.subset_encoding,
        "encode_output": encoder.encode_output,
    }


def _load_object(path: Path, block: dict[str, Any]) -> Any:
    """The object of ``config.json``, rebuilt in safe mode and built, with ``model.weights.h5`` loaded."""
    from mmkeras import _import_components

    config = read_json_object(path / CONFIG_FILE, HINT)
    _import_components(config)
    try:
        obj = keras.saving.deserialize_keras_object(config, safe_mode=True)
        if block["kind"] == MODALITY:
            obj(ops.zeros([1] + [int(d) for d in block["input_shape"]]), training=False)
    except MMKerasError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to rebuild is the file's, said in one line
        raise MMKerasError(f"cannot rebuild the encoder of {path / CONFIG_FILE}: {first_line(exc)}") from None
    want = MultimodalEncoder if block["kind"] == MULTIMODAL else keras.layers.Layer
    if not isinstance(obj, want):
        raise MMKerasError(f"{path / CONFIG_FILE} holds a {type(obj).__name__}, expected a {want.__name__}")
    try:
        keras.saving.load_weights(obj, path / WEIGHTS_FILE)
    except Exception as exc:  # noqa: BLE001 - a corrupt or mismatched weights file, said in one line
        raise MMKerasError(f"cannot load the weights {path / WEIGHTS_FILE}: {first_line(exc)}") from None
    return obj


def _mmkeras_version() -> str:
    import mmkeras

    return mmkeras.__version__


def _version(distribution: str) -> str | None:
    with contextlib.suppress(md.PackageNotFoundError):
        return md.version(distribution)
    return None
