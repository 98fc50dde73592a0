"""Any Keras model or keras-hub backbone as a modality encoder (the ``keras_model`` encoder).

:class:`NetworkEncoder` is the shared body of the encoders that wrap a network made elsewhere
(``keras_model`` here, ``pretrained`` in :mod:`mmkeras.encoders.pretrained`): it feeds the network,
picks one of its outputs, projects it to ``output_dim``, freezes it (possibly on a schedule), and
saves the network's own serialized config, so a saved model reloads without the original file,
preset or network. :class:`TrainableSchedule` is the callback that unfreezes on schedule.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Literal

import keras
from keras import ops

from mmkeras.component import Component
from mmkeras.encoders.base import Encoder
from mmkeras.errors import MMKerasError, first_line
from mmkeras.params import NonNegativeInt, PositiveInt
from mmkeras.recipe_checks import HUB_EXTRA, network_source_problems

#: the inputs of a keras-hub text backbone that the encoder fills from token ids
TEXT_INPUTS = ("token_ids", "padding_mask", "segment_ids")
OUTPUT_MODES = ("auto", "pooled", "cls", "tokens", "mean")


class NetworkError(MMKerasError, ValueError):
    """A network that cannot be loaded or used as an encoder (a ValueError too, so the builder
    reports it under the recipe key of the encoder)."""

    # Keras rewrites an exception raised inside a layer call into a multi-line one unless it is marked
    _keras_call_info_injected = True


def import_keras_hub() -> Any:
    """``keras_hub``, or a one-line error naming the extra that installs it."""
    try:
        import keras_hub
    except ImportError:
        raise NetworkError(HUB_EXTRA) from None
    return keras_hub


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {first_line(exc)}"


def _did_you_mean(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _describe(spec: Any) -> str:
    """What a network returns, in words, for error messages."""
    if isinstance(spec, dict):
        return "a dict of " + ", ".join(f"{k} {_shape(v)}" for k, v in sorted(spec.items()))
    if isinstance(spec, (list, tuple)):
        return f"{len(spec)} outputs " + ", ".join(_shape(v) for v in spec)
    kind = {2: "a vector", 3: "tokens", 4: "a feature map"}.get(len(spec.shape), "a tensor")
    return f"{kind} {_shape(spec)}"


def _shape(tensor: Any) -> str:
    return "[" + ", ".join("B" if i == 0 else str(d) for i, d in enumerate(tensor.shape)) + "]"


class NetworkEncoder(Encoder):
    """The shared body of encoders that wrap a network: ``self.network`` (any Keras layer or
    model) is fed the modality's batch, one of its outputs is taken (``output``), optionally
    projected to ``output_dim`` by a Dense (per token for ``tokens``), and its weights train, stay
    frozen, or unfreeze after ``unfreeze_after`` epochs. A subclass loads ``self.network`` in its
    ``__init__`` (or, when it depends on the input shape, in :meth:`make_network`).

    Saving: ``get_config`` holds the network's serialized config (and the image converter's), and
    ``from_config`` rebuilds from it without touching the source; the weights load as any layer's.
    """

    #: parameters kept under other attribute names: Keras's Layer owns these names as properties
    attribute_names = {
        "trainable": "trainable_mode",
        "output": "output_mode",
        "path": "source_path",
        "weights": "weights_file",
    }

    def __init__(
        self,
        output_dim: PositiveInt,
        trainable: Literal["all", "frozen"] = "all",
        trainable_layers: PositiveInt | None = None,
        unfreeze_after: NonNegativeInt | None = None,
        output: Literal["auto", "pooled", "cls", "tokens", "mean"] = "auto",
        projection: bool | None = True,
        preprocess: bool = True,
        **kwargs: Any,
    ):
        network, converter = kwargs.pop("network", None), kwargs.pop("converter", None)
        super().__init__(**kwargs)
        if trainable == "frozen" and (unfreeze_after is not None or trainable_layers is not None):
            raise ValueError(
                "trainable: frozen keeps the whole network fixed; drop unfreeze_after/trainable_layers, "
                "or use trainable: all with them"
            )
        self.output_dim = output_dim
        self.trainable_mode = trainable
        self.trainable_layers = trainable_layers
        self.unfreeze_after = unfreeze_after
        self.output_mode = output
        self.projection = projection
        self.preprocess = preprocess
        self.network = network
        self.converter = converter
        self.projector: keras.layers.Dense | None = None
        self._input_keys: list[str] | None = None
        self._mode = ""  # the concrete selection, resolved in build
        self._feature_shape: tuple = ()
        self._epoch = 0

    # -- the network -------------------------------------------------------------------------
    def make_network(self, input_shape: tuple) -> keras.layers.Layer:
        """The network, for subclasses that can only make it once the input shape is known."""
        raise NotImplementedError(f"{type(self).__name__} has no network")

    def build(self, input_shape: Any) -> None:
        shape = tuple(input_shape)
        if self.network is None:
            self.network = self.make_network(shape)
        self._input_keys = _dict_inputs(self.network)
        if self._input_keys is not None:
            unknown = [k for k in self._input_keys if k not in TEXT_INPUTS]
            if unknown or not self.preprocess:
                raise NetworkError(
                    f"{self.name}: the network takes a dict of inputs {self._input_keys}; keras_model feeds "
                    f"{list(TEXT_INPUTS)} from the modality's token ids (with preprocess: true)"
                )
        feed = self._feed(keras.KerasTensor(shape, dtype="int32" if self._input_keys else self.compute_dtype))[0]
        if self.converter is not None:
            feed = self.converter.compute_output_spec(keras.KerasTensor(shape, dtype=self.compute_dtype))
        try:
            spec = self.network.compute_output_spec(feed)
        except Exception as exc:  # noqa: BLE001 - Keras raises several types for an incompatible input
            raise NetworkError(
                f"{self.name}: the network cannot take the modality's batches {_shape(keras.KerasTensor(shape))} "
                f"({_first_line(exc)})"
            ) from None
        self._mode, selected = self._resolve(spec)
        size = int(selected[-1])
        use_projection = self.projection if self.projection is not None else size != self.output_dim
        if use_projection:
            self.projector = keras.layers.Dense(self.output_dim, dtype=self.dtype_policy, name="projection")
            self.projector.build(tuple(selected))
        elif size != self.output_dim:
            raise NetworkError(
                f"{self.name}: the network's {self._mode} output has size {size} but output_dim "
                f"(model.feature_dim) is {self.output_dim}; set projection: true or feature_dim: {size}"
            )
        self._feature_shape = tuple(selected[1:-1]) + (self.output_dim,)
        self._set_trainable(self._epoch)
        self.built = True

    def _resolve(self, spec: Any) -> tuple[str, tuple]:
        """``(concrete mode, selected shape)`` for the ``output`` asked, or an error saying what the
        network returns and which modes it offers."""
        if isinstance(spec, dict):
            sequence, pooled = spec.get("sequence_output"), spec.get("pooled_output")
            if sequence is None and pooled is None:
                raise NetworkError(
                    f"{self.name}: the network returns {_describe(spec)}; keras_model reads a dict's "
                    "'sequence_output' and 'pooled_output'"
                )
            table = {"pooled": ("pooled", pooled)} if pooled is not None else {}
            if sequence is not None:
                table.update({"cls": ("cls", sequence), "mean": ("mean", sequence), "tokens": ("tokens", sequence)})
            table["auto"] = table.get("pooled") or table["cls"]
        elif isinstance(spec, (list, tuple)) or len(spec.shape) not in (2, 3, 4):
            raise NetworkError(
                f"{self.name}: the network returns {_describe(spec)}; keras_model takes one output: a vector "
                "[B, d], tokens [B, T, d], a feature map [B, H, W, C] or a keras-hub dict"
            )
        else:
            table = {
                2: {"auto": ("vector", spec), "pooled": ("vector", spec)},
                3: {"auto": ("cls", spec), "cls": ("cls", spec), "mean": ("mean", spec), "tokens": ("tokens", spec)},
                4: {
                    "auto": ("map_pooled", spec),
                    "pooled": ("map_pooled", spec),
                    "mean": ("map_pooled", spec),
                    "tokens": ("map_tokens", spec),
                },
            }[len(spec.shape)]
        if self.output_mode not in table:
            raise NetworkError(
                f"{self.name}: output '{self.output_mode}' is not available: the network returns {_describe(spec)} "
                f"(outputs it offers: {', '.join(m for m in OUTPUT_MODES if m in table)})"
            )
        mode, tensor = table[self.output_mode]
        shape = tuple(tensor.shape)
        if mode in ("cls", "mean", "map_pooled"):
            return mode, (shape[0], shape[-1])
        if mode == "map_tokens":
            return mode, (shape[0], None if None in shape[1:3] else shape[1] * shape[2], shape[-1])
        return mode, shape

    # -- forward -----------------------------------------------------------------------------
    def _feed(self, x: Any) -> tuple[Any, Any]:
        """The network's input for a modality batch ``x``, and the padding mask (or None)."""
        if self._input_keys is None:
            return x, None
        token_ids = ops.cast(x, "int32")
        mask = ops.cast(ops.not_equal(token_ids, 0), "int32")  # padding id 0
        given = {"token_ids": token_ids, "padding_mask": mask, "segment_ids": ops.zeros_like(token_ids)}
        return {k: given[k] for k in self._input_keys}, mask

    def call(self, x: Any, training: Any = None) -> Any:
        if self.converter is not None:
            x = self.converter(x)
        inputs, mask = self._feed(x)
        y = self.network(inputs, training=training)
        if isinstance(y, dict):
            y = y["pooled_output"] if self._mode == "pooled" else y["sequence_output"]
        if self._mode == "cls":
            y = y[:, 0]
        elif self._mode == "mean":
            if mask is None:
                y = ops.mean(y, axis=1)
            else:
                weights = ops.cast(mask, y.dtype)[..., None]
                y = ops.sum(y * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)
        elif self._mode == "map_pooled":
            y = ops.mean(y, axis=(1, 2))
        elif self._mode == "map_tokens":
            y = ops.reshape(y, (ops.shape(y)[0], -1, y.shape[-1]))
        return self.projector(y) if self.projector is not None else y

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return (input_shape[0],) + self._feature_shape

    # -- what trains -------------------------------------------------------------------------
    @property
    def trainable_schedule(self) -> bool:
        """Whether what trains changes with the epoch (``unfreeze_after``)."""
        return self.unfreeze_after is not None

    def apply_trainable_schedule(self, epoch: int) -> bool:
        """Set what trains for ``epoch`` (0-based, as Keras counts); True when anything changed."""
        before = self._trainable_state()
        self._set_trainable(epoch)
        return self._trainable_state() != before

    def scheduled_weights(self) -> list[keras.Variable]:
        """The network's weights that train at some epoch of the schedule (the optimizer is built
        over them from the start, so its state keeps one layout before and after unfreezing)."""
        if self.network is None or not self.trainable_schedule:
            return []
        current = self._epoch
        self._set_trainable(self.unfreeze_after)
        weights = list(self.network.trainable_weights)
        self._set_trainable(current)
        return weights

    def _trainable_state(self) -> tuple[bool, ...]:
        return tuple(bool(v.trainable) for v in self.network.weights)

    def _set_trainable(self, epoch: int) -> None:
        self._epoch = epoch
        if self.network is None:
            return
        frozen = self.trainable_mode == "frozen" or (self.unfreeze_after is not None and epoch < self.unfreeze_after)
        if frozen:
            self.network.trainable = False
        elif self.trainable_layers is not None:
            layers = _weighted_layers(self.network, self.name)
            self.network.trainable = True
            for layer in layers[: max(len(layers) - self.trainable_layers, 0)]:
                layer.trainable = False
        elif self.unfreeze_after is not None:
            self.network.trainable = True
        # trainable: all, unscheduled: the network trains as it was loaded (its own frozen layers stay frozen)

    # -- saving ------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        from mmkeras.registry import parameters

        config = super(Component, self).get_config()  # Keras's base config; the parameters follow
        for name in parameters(type(self)):
            config[name] = getattr(self, self.attribute_names.get(name, name))
        if self.network is not None:
            config["network"] = keras.saving.serialize_keras_object(self.network)
        if self.converter is not None:
            config["converter"] = keras.saving.serialize_keras_object(self.converter)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> NetworkEncoder:
        config = dict(config)
        parts = {k: config.pop(k) for k in ("network", "converter") if config.get(k) is not None}
        if any(str(p.get("module", "")).startswith("keras_hub") for p in parts.values()):
            import_keras_hub()  # keras-hub registers its classes with Keras on import
        built = {k: keras.saving.deserialize_keras_object(p) for k, p in parts.items()}
        return cls(**config, **built)


def _dict_inputs(network: Any) -> list[str] | None:
    """The input names of a network that takes a dict (a keras-hub text backbone), else None."""
    try:
        struct = network.input
    except (AttributeError, ValueError):  # a layer never called symbolically has no defined input
        return None
    return sorted(struct) if isinstance(struct, dict) else None


def _weighted_layers(network: Any, name: str) -> list[keras.layers.Layer]:
    """The network's top-level layers that own weights, in order (what ``trainable_layers`` counts)."""
    layers = getattr(network, "layers", None)
    if layers is None:
        raise NetworkError(f"{name}: trainable_layers needs a network made of layers (a Keras model)")
    return [layer for layer in layers if layer.weights]


@keras.saving.register_keras_serializable(package="mmkeras")
class KerasModelEncoder(NetworkEncoder):
    """Any Keras model or layer, or a keras-hub backbone, as a modality encoder. Exactly one source:

    - ``path``: a ``.keras`` file (a model or a layer), loaded with ``safe_mode``;
    - ``preset``: a keras-hub preset directory (works offline) or a handle such as
      ``"bert_tiny_en_uncased"`` (needs the network), loaded with ``Backbone.from_preset``;
    - ``backbone`` + ``config``: a keras-hub backbone class by name and its constructor arguments,
      randomly initialised;
    - ``application`` + ``config`` (+ ``weights``): ``keras.applications`` by name, built on the
      modality's shape with ``include_top=False``.

    A keras-hub text backbone (inputs ``token_ids``, ``padding_mask``, ``segment_ids``) is fed from
    the modality's integer token ids ``[B, T]``: padding id 0 is masked, segment ids are 0. A
    preset with an image converter (``image_converter.json``) applies it first.

    Args:
        output_dim: the feature size (the recipe's ``model.feature_dim``).
        path: a ``.keras`` file.
        preset: a keras-hub preset directory or handle.
        backbone: a keras-hub backbone class name, such as ``BertBackbone`` or ``ViTBackbone``.
        application: a ``keras.applications`` model name, such as ``MobileNetV3Small``.
        config: the constructor arguments of ``backbone`` or ``application``.
        weights: a local weights file for ``application`` (none: random initialisation).
        trainable: ``all`` (the network trains) or ``frozen`` (its weights stay fixed and its
            normalisation layers run in inference mode).
        trainable_layers: only the network's last K layers that own weights train.
        unfreeze_after: the network is frozen for this many epochs, then trains.
        output: ``pooled``, ``cls`` (token 0), ``mean`` (masked mean over tokens), ``tokens``
            (``[B, T, d]``, for the transformer fusion) or ``auto`` (pooled if the network has a
            pooled output, else cls for tokens, the spatial mean of a map, the vector as is).
        projection: a Dense to ``output_dim`` after the output (false: the network's size must
            equal ``output_dim``).
        preprocess: feed a text backbone's inputs from token ids and apply a preset's image converter.
    """

    def __init__(
        self,
        output_dim: PositiveInt,
        path: str | None = None,
        preset: str | None = None,
        backbone: str | None = None,
        application: str | None = None,
        config: dict[str, Any] | None = None,
        weights: str | None = None,
        trainable: Literal["all", "frozen"] = "all",
        trainable_layers: PositiveInt | None = None,
        unfreeze_after: NonNegativeInt | None = None,
        output: Literal["auto", "pooled", "cls", "tokens", "mean"] = "auto",
        projection: bool = True,
        preprocess: bool = True,
        **kwargs: Any,
    ):
        super().__init__(
            output_dim,
            trainable=trainable,
            trainable_layers=trainable_layers,
            unfreeze_after=unfreeze_after,
            output=output,
            projection=projection,
            preprocess=preprocess,
            **kwargs,
        )
        sources = {"path": path, "preset": preset, "backbone": backbone, "application": application}
        given = [k for k, v in sources.items() if v is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one source of the network: path, preset, backbone or application (got {given or 'none'})"
            )
        if config is not None and backbone is None and application is None:
            raise ValueError("config goes with backbone or application (the constructor arguments of that class)")
        if weights is not None and application is None:
            raise ValueError("weights goes with application (a local weights file for it)")
        self.source_path, self.preset, self.backbone, self.application = path, preset, backbone, application
        self.config = dict(config) if config is not None else None
        self.weights_file = weights
        if self.network is not None:  # from_config: the saved network, not its source
            return
        if path is not None:
            self.network = _load_keras_file(path)
        elif preset is not None:
            self.network, self.converter = _load_preset(preset, preprocess)
        elif backbone is not None:
            self.network = _make_backbone(backbone, self.config or {})
        else:
            _application(application)  # an unknown name fails here, under the recipe key
            if weights is not None and not Path(weights).is_file():
                raise ValueError(f"application weights file {weights} does not exist")

    @classmethod
    def check_recipe(cls, params: dict, modalities: list[str]) -> list[tuple[str, str]]:
        """(parameter, problem) for a source that is not there, found by ``mmkeras validate``."""
        return network_source_problems(params, modalities)

    def make_network(self, input_shape: tuple) -> keras.layers.Layer:
        build = _application(self.application)
        try:
            network = build(include_top=False, weights=None, input_shape=input_shape[1:], **(self.config or {}))
        except (TypeError, ValueError) as exc:
            raise NetworkError(f"{self.name}: {self.application}(config): {_first_line(exc)}") from None
        if self.weights_file is not None:
            try:
                network.load_weights(self.weights_file)
            except Exception as exc:  # noqa: BLE001 - h5py, OSError and ValueError all mean "cannot use"
                raise NetworkError(f"{self.name}: cannot load {self.weights_file}: {_first_line(exc)}") from None
        return network


def _load_keras_file(path: str) -> keras.layers.Layer:
    file = Path(path).expanduser()
    if not file.is_file():
        raise ValueError(f"path: {file} does not exist (expected a .keras file)")
    if file.suffix != ".keras":
        raise ValueError(f"path: {file} is not a .keras file (save the model with model.save('name.keras'))")
    try:
        return keras.saving.load_model(str(file), safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - any failure to read is reported in one line
        if "safe_mode" in str(exc):
            raise ValueError(
                f"path: {file} holds a Lambda layer or other code that safe_mode refuses to load; "
                "rebuild the model with registered layers"
            ) from None
        raise ValueError(f"path: cannot load {file}: {_first_line(exc)}") from None


def _load_preset(preset: str, preprocess: bool) -> tuple[keras.layers.Layer, keras.layers.Layer | None]:
    """The backbone of a keras-hub preset (and its image converter, when it ships one and
    ``preprocess`` is on)."""
    keras_hub = import_keras_hub()
    directory = Path(preset).expanduser()
    looks_local = directory.is_absolute() or preset.startswith((".", "~")) or os.sep in preset
    if looks_local and not directory.is_dir():
        raise ValueError(f"preset: {directory} is not a directory (a keras-hub preset saved with save_to_preset)")
    if directory.is_dir():
        if not (directory / "config.json").is_file():
            raise ValueError(f"preset: {directory} has no config.json: not a keras-hub preset directory")
        preset = str(directory)
    try:
        network = keras_hub.models.Backbone.from_preset(preset)
    except Exception as exc:  # noqa: BLE001 - network, Kaggle and file errors alike
        if directory.is_dir():
            raise ValueError(f"preset: cannot load {directory}: {_first_line(exc)}") from None
        raise ValueError(
            f"preset: cannot load the handle {preset!r} ({_first_line(exc)[:160]}); "
            "a local preset directory (saved with save_to_preset) works offline"
        ) from None
    converter = None
    if preprocess and directory.is_dir() and (directory / "image_converter.json").is_file():
        converter = keras_hub.layers.ImageConverter.from_preset(str(directory))
    return network, converter


def _make_backbone(name: str, config: dict[str, Any]) -> keras.layers.Layer:
    keras_hub = import_keras_hub()
    names = sorted(n for n in dir(keras_hub.models) if n.endswith("Backbone") and n != "Backbone")
    if name not in names:
        raise ValueError(f"backbone: unknown keras-hub backbone {name!r}{_did_you_mean(name, names)}")
    try:
        return getattr(keras_hub.models, name)(**config)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"backbone: {name}(config): {_first_line(exc)}") from None


def _application(name: str) -> Any:
    names = sorted(n for n in dir(keras.applications) if n[:1].isupper())
    if name not in names:
        raise ValueError(f"application: unknown keras.applications model {name!r}{_did_you_mean(name, names)}")
    return getattr(keras.applications, name)


class TrainableSchedule(keras.callbacks.Callback):
    """Sets what trains in each scheduled layer (``unfreeze_after``) from the epoch, at the start
    of training (a resumed fit starts at ``initial_epoch``) and of each epoch, and retraces the
    train function when anything changed (a traced step fixes its trainable variables).
    :meth:`mmkeras.model.MultimodalModel.fit` adds it itself when a layer has a schedule."""

    def __init__(self, layers: list[Any], initial_epoch: int = 0):
        super().__init__()
        self.layers = list(layers)
        self.initial_epoch = int(initial_epoch)

    def _apply(self, epoch: int) -> None:
        changed = [layer.apply_trainable_schedule(epoch) for layer in self.layers]
        if any(changed):
            self.model.make_train_function(force=True)

    def on_train_begin(self, logs: Any = None) -> None:
        self._apply(self.initial_epoch)

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._apply(epoch)
