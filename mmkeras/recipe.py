"""YAML recipes: loaded with line numbers, ``extends:`` merged, ``--set`` overrides applied,
then validated into typed objects before any TensorFlow work starts.

Every problem names the file, the line, the key path and what was expected; all problems are
collected and raised together as one :class:`~mmkeras.errors.RecipeError`.
"""

from __future__ import annotations

import copy
import inspect
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, Strict, field_validator, model_validator

from mmkeras import safe_yaml, static_signature
from mmkeras.errors import ComponentError, MMKerasError, RecipeError
from mmkeras.params import FiniteFloat, Int, PositiveInt, Seed, parameter_docs
from mmkeras.registry import did_you_mean, parameters, registry

Path_ = tuple[Any, ...]


# ---------------------------------------------------------------------------------------
# Typed recipe
# ---------------------------------------------------------------------------------------
class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ComponentSpec(_Spec):
    """A registry name and the parameters its class declares."""

    name: str = Field(description="registry name of the component (see `mmkeras plugins`)")
    params: dict[str, Any] = Field(default_factory=dict, description="the component's typed parameters")


class DataSpec(_Spec):
    dataset: str = Field(description="registry name of the dataset")
    params: dict[str, Any] = Field(default_factory=dict, description="the dataset's typed parameters")
    batch_size: PositiveInt = Field(64, description="global batch size (split across replicas)")
    validation_split: FiniteFloat = Field(0.0, ge=0.0, lt=1.0, description="seeded fraction of train held out")
    deterministic: bool = Field(False, description="keep tf.data element order deterministic (slower)")
    drop_remainder: bool = Field(True, description="drop the last partial batch (contrastive losses want full batches)")


class ModalitySpec(_Spec):
    encoder: ComponentSpec = Field(description="the modality's encoder")
    augment: list[ComponentSpec] = Field(default_factory=list, description="augmentations, applied in training only")


class ModelSpec(_Spec):
    feature_dim: PositiveInt = Field(64, description="output_dim given to encoders and the fusion that leave it unset")
    latent_dim: PositiveInt = Field(64, description="output_dim given to the head that leaves it unset")
    fusion: ComponentSpec = Field(
        default_factory=lambda: ComponentSpec(name="mean"), description="combines modality features into the joint one"
    )
    head: ComponentSpec | None = Field(None, description="projection head shared by every representation")
    subset_encoding: Literal["fusion", "mean"] = Field(
        "fusion", description="encode() of an incomplete subset: the fused joint, or the mean of modality latents"
    )
    encode_output: Literal["latent", "feature"] = Field(
        "latent", description="what encode() and the probes see: after the head (latent) or before it (feature)"
    )
    joint_encoders: Literal["shared", "separate"] = Field(
        "shared", description="separate: the fusion reads its own copy of every encoder (GMC's joint encoder)"
    )
    init_from: str | None = Field(
        None,
        description="a run directory, encoder.keras or saved model (.keras) whose encoder (encoders, fusion, "
        "head) starts this model (fine-tuning); the objective starts fresh",
    )


class OptimizerSpec(_Spec):
    name: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    learning_rate: FiniteFloat = Field(1e-3, gt=0)
    weight_decay: FiniteFloat | None = Field(None, ge=0)
    clipnorm: FiniteFloat | None = Field(None, gt=0, description="clip each gradient's norm")
    global_clipnorm: FiniteFloat | None = Field(
        None, gt=0, description="clip the norm of all gradients together (GMC's MOSEI setting: 0.8)"
    )

    @model_validator(mode="after")
    def _one_clipping(self) -> OptimizerSpec:
        if self.clipnorm is not None and self.global_clipnorm is not None:
            raise ValueError("give clipnorm (each gradient's norm) or global_clipnorm (all together), not both")
        return self


class PlateauSpec(_Spec):
    """Lower the learning rate when a monitored metric stops improving (Keras's ReduceLROnPlateau)."""

    monitor: str = Field(
        "auto", description="the metric watched; auto = val_loss when there is validation data, else loss"
    )
    factor: FiniteFloat = Field(0.1, gt=0, lt=1, description="the learning rate is multiplied by this")
    patience: PositiveInt = Field(10, description="epochs without improvement before lowering it")
    min_lr: FiniteFloat = Field(0.0, ge=0, description="the learning rate never goes below this")


class TrainSpec(_Spec):
    epochs: PositiveInt = Field(10)
    steps_per_epoch: Int | None = Field(None, gt=0, description="default: one pass over the training data")
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    jit_compile: Literal["auto"] | bool = Field(
        "auto", description="XLA; auto = on for a single device, off under multi-device strategies"
    )
    mixed_precision: Literal["float16", "bfloat16"] | None = Field(
        None, description="compute dtype; objectives stay float32, float16 gets loss scaling"
    )
    steps_per_execution: PositiveInt = Field(
        1, description="batches per compiled call; more hides per-step overhead on accelerators"
    )
    reduce_lr_on_plateau: PlateauSpec | None = Field(
        None, description="lower the learning rate when the monitored loss stops improving (GMC's MOSEI setting)"
    )


class DistributeSpec(_Spec):
    strategy: Literal["auto", "one_device", "mirrored", "multi_worker", "tpu", "data_parallel"] = Field(
        "auto",
        description="TensorFlow: mirrored, multi_worker, tpu; JAX: data_parallel (keras.distribution); "
        "auto = mirrored (TensorFlow) or data_parallel (JAX) over several GPUs (JAX: or processes), else one device",
    )


class Recipe(_Spec):
    """A validated recipe. Build a model from it with :func:`mmkeras.build_model`."""

    name: str = Field(
        description="the run's name; default run directory runs/<name>: one safe path component "
        "(not empty, no '/', '\\' or NUL, no leading '.')"
    )
    description: str = ""
    seed: Seed = Field(0, description="seeds weights, shuffling, augmentation and validation split (0 .. 2**32-1)")
    data: DataSpec
    modalities: dict[str, ModalitySpec] = Field(min_length=1, description="one entry per modality the model reads")
    model: ModelSpec = Field(default_factory=ModelSpec)
    objective: ComponentSpec = Field(description="the training signal")
    train: TrainSpec = Field(default_factory=TrainSpec)
    distribute: DistributeSpec = Field(default_factory=DistributeSpec)
    evaluate: list[ComponentSpec] = Field(default_factory=list, description="evaluators run after training")

    _source: str | None = PrivateAttr(default=None)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        # the name is a directory under runs/: '../x' or 'a/b' would write elsewhere
        if not name or "/" in name or "\\" in name or "\0" in name or name.startswith("."):
            raise ValueError(
                f"{name!r} is not a safe run name: it names the directory runs/<name>, so it must be one "
                "path component: not empty, no '/', '\\' or NUL, not starting with '.'"
            )
        return name

    @property
    def source(self) -> str | None:
        """The file the recipe came from (None for a recipe built from a dict)."""
        return self._source

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# ---------------------------------------------------------------------------------------
# YAML with line numbers
# ---------------------------------------------------------------------------------------
class _Located:
    """Where each key path of the merged document came from: (file, line)."""

    def __init__(self) -> None:
        self.where: dict[Path_, str] = {}

    def at(self, path: Path_) -> str:
        while path:
            if path in self.where:
                return self.where[path]
            path = path[:-1]
        return self.where.get((), "")


def _fmt(path: Path_) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<recipe>"


#: the keys naming what a mapping's ``params`` belong to (a component's ``name``, the ``data.dataset``)
_NAME_KEYS = ("name", "dataset")


def _deep_merge(base: Any, over: Any, top: bool = True) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        if not top and "name" in base and "name" in over and base["name"] != over["name"]:
            return copy.deepcopy(over)  # another component: the base's params belong to the old one
        if not top and "dataset" in base and "dataset" in over and base["dataset"] != over["dataset"]:
            base = {k: v for k, v in base.items() if k != "params"}  # another data set: its own params only
        out = dict(base)
        for k, v in over.items():
            out[k] = _deep_merge(base[k], v, top=False) if k in base else v
        return out
    return copy.deepcopy(over)


#: the longest chain of ``extends`` followed
MAX_EXTENDS = 16


def _load_file(
    path: Path, stack: tuple[Path, ...], where: str | None = None
) -> tuple[dict[str, Any], dict[Path_, str]]:
    """The document of ``path`` with its ``extends`` chain merged, and where each key came from.
    ``where`` is the ``FILE:LINE: extends`` that named ``path`` (None for the recipe itself)."""
    named = path  # as written: /dev/stdin, not what it resolves to
    try:
        path = path.resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # RuntimeError: a symlink loop
        shown = safe_yaml.shown(named)
        raise RecipeError([f"{where}: cannot resolve ({exc}): {shown}" if where else f"{shown}: {exc}"]) from None
    if path in stack:
        chain = " -> ".join(str(p) for p in stack + (path,))
        raise RecipeError([f"{where}: cycle: {chain}"])
    if len(stack) > MAX_EXTENDS:
        raise RecipeError([f"{where}: more than {MAX_EXTENDS} levels of extends"])
    doc, lines = safe_yaml.compose(safe_yaml.read_text(named, where), str(path))
    if not isinstance(doc, dict):
        got = "an empty file" if doc is None else f"a {'list' if isinstance(doc, list) else 'single value'}"
        raise RecipeError([f"{path}:1: a recipe must be a mapping of keys (name, data, modalities, ...), got {got}"])
    parent = doc.pop("extends", None)
    if parent is None:
        return doc, lines
    at = f"{lines[('extends',)]}: extends"
    if not isinstance(parent, str) or not parent:
        raise RecipeError([f"{at}: expected a file path, got {parent!r}"])
    base_doc, base_lines = _load_file(path.parent / parent, stack + (path,), at)
    merged_lines = dict(base_lines)
    merged_lines.update({k: v for k, v in lines.items() if k != ("extends",)})
    return _deep_merge(base_doc, doc), merged_lines


def _parse_override(item: str) -> tuple[Path_, Any]:
    if "=" not in item:
        raise RecipeError([f"--set {item}: expected KEY.PATH=VALUE, e.g. --set train.epochs=5"])
    key, _, raw = item.partition("=")
    parts = tuple(p for p in key.strip().split("."))
    if not all(parts):
        raise RecipeError([f"--set {item}: empty key in {key!r}"])
    try:
        value = safe_yaml.loads(raw, f"--set {item}") if raw.strip() else None
    except safe_yaml.InvalidYAML:
        value = raw  # not YAML: the text as written
    return parts, value


def _apply_override(doc: dict[str, Any], path: Path_, value: Any, item: str) -> Path_:
    """Set ``value`` at ``path`` (strings from the command line); returns the path with list
    indices as integers. A path that does not fit the document's shape is a RecipeError."""
    node: Any = doc
    done: list[Any] = []
    for i, p in enumerate(path):
        last = i == len(path) - 1
        if isinstance(node, list):
            if not (p.isascii() and p.isdigit() and int(p) < len(node)):
                valid = f"an index 0..{len(node) - 1}" if node else "nothing: the list is empty"
                raise RecipeError([f"--set {item}: {_fmt(tuple(done))} is a list; expected {valid}, got {p!r}"])
            p = int(p)
        elif last and p in _NAME_KEYS and node.get(p) not in (None, value):
            node.pop("params", None)  # another component or data set: the old one's params do not apply
        elif not last:
            node.setdefault(p, {})
        done.append(p)
        if last:
            node[p] = value
            break
        node = node[p]
        if not isinstance(node, (dict, list)):
            rest = ".".join(path[i + 1 :])
            raise RecipeError(
                [f"--set {item}: {_fmt(tuple(done))} is {node!r}, not a mapping or a list; cannot set {rest} in it"]
            )
    return tuple(done)


# ---------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------
_EXPECT = {
    "int_parsing": "an integer",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_parsing": "a number",
    "float_type": "a number",
    "finite_number": "a finite number (not NaN or infinity)",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "a string",
    "dict_type": "a mapping",
    "list_type": "a list",
    "model_type": "a mapping",
    "missing": None,
}
_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def _describe(err: Any) -> str:
    """One pydantic error as 'expected ..., got ...'."""
    kind, got = err["type"], err.get("input")
    if _EXPECT.get(kind):
        return f"expected {_EXPECT[kind]}, got {got!r}"
    if kind in _BOUNDS:
        bound = next(iter(err.get("ctx", {}).values()), "?")
        bound = int(bound) if isinstance(bound, float) and bound.is_integer() else bound
        return f"expected a number {_BOUNDS[kind]} {bound}, got {got!r}"
    if kind == "value_error" and "error" in err.get("ctx", {}):
        return str(err["ctx"]["error"])
    return f"{err['msg']}, got {got!r}"


def _at(loc: _Located, path: Path_) -> str:
    where = loc.at(path)
    return f"{where}: {_fmt(path)}" if where else _fmt(path)


def _schema_problems(exc: pydantic.ValidationError, loc: _Located, prefix: Path_ = ()) -> list[str]:
    problems = []
    for err in exc.errors():
        path = prefix + tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        kind = err["type"]
        if kind == "missing":
            msg = "required key is missing"
        elif kind == "extra_forbidden":
            parent_model = _model_at(path[:-1])
            allowed = sorted(parent_model.model_fields) if parent_model else []
            msg = f"unknown key{did_you_mean(str(path[-1]), allowed)}"
            if allowed:
                msg += f" (allowed: {', '.join(allowed)})"
        else:
            msg = _describe(err)
        problems.append(f"{_at(loc, path)}: {msg}")
    return problems


def _model_at(path: Path_) -> type[BaseModel] | None:
    model: Any = Recipe
    for p in path:
        if isinstance(p, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or p not in model.model_fields:
            if isinstance(model, type) and issubclass(model, BaseModel):
                return None
            model = _inner(model)
            continue
        model = _inner(model.model_fields[p].annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _inner(tp: Any) -> Any:
    """The model type inside Optional[...], list[...] or dict[str, ...]."""
    for arg in typing.get_args(tp) or ():
        found = _inner(arg)
        if isinstance(found, type) and issubclass(found, BaseModel):
            return found
    return tp


_PARAM_MODELS: dict[type, type[BaseModel]] = {}
_STRICT = {int: Int, float: Annotated[float, Strict()], bool: Annotated[bool, Strict()]}


def _strict(tp: Any) -> Any:
    """``tp`` with every int, float and bool strict: YAML's ``true`` is not 1, ``1.5`` or ``"3"`` not an int."""
    if tp in _STRICT:
        return _STRICT[tp]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        return Annotated[(_strict(args[0]), *tp.__metadata__)]
    if origin in (typing.Union, types.UnionType):
        return typing.Union[tuple(_strict(a) for a in args)]  # noqa: UP007 (built from a tuple)
    if origin in (list, tuple, dict, set, frozenset) and args:
        return origin[tuple(a if a is Ellipsis else _strict(a) for a in args)]
    return tp


def params_model(cls: type) -> type[BaseModel]:
    """A pydantic model of the parameters ``cls.__init__`` declares (typed keyword arguments),
    with the ranges its ``Annotated`` hints give and the descriptions from its docstring's ``Args:``."""
    if cls in _PARAM_MODELS:
        return _PARAM_MODELS[cls]
    try:
        hints = typing.get_type_hints(cls.__init__, include_extras=True)
    except Exception:
        hints = {}
    declared = [
        (name, hints.get(name, Any), p.default if p.default is not p.empty else inspect.Parameter.empty)
        for name, p in parameters(cls).items()
    ]
    model = build_params_model(cls.__name__, declared, parameter_docs(cls))
    _PARAM_MODELS[cls] = model
    return model


def build_params_model(class_name: str, declared: list[tuple[str, Any, Any]], docs: dict[str, str]) -> type[BaseModel]:
    """The params model of a class named ``class_name`` declaring (name, type hint, default or
    ``inspect.Parameter.empty``) parameters, with ``docs`` as descriptions: shared by
    :func:`params_model` and the source reader :mod:`mmkeras.static_signature`."""
    fields: dict[str, Any] = {}
    for name, hint, default in declared:
        default = ... if default is inspect.Parameter.empty else default
        info = Field(default, description=docs[name]) if name in docs else default
        fields[name] = (_strict(hint), info)
    return pydantic.create_model(
        f"{class_name}Params",
        __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True, strict=False),
        **fields,
    )


#: parameters the builder fills in from the recipe's ``model`` section when a recipe omits them
INJECTED = {"output_dim"}


def check_params(
    cls: type, name: str, given: dict[str, Any], path: Path_, loc: _Located | None = None
) -> tuple[BaseModel | None, list[str]]:
    """Validate ``given`` against the parameters ``cls`` declares: the validated model, or the
    problems (``file:line: key.path: message``). The builder and :func:`validate` both call this."""
    return _check_with(params_model(cls), name, given, path, loc or _Located())


def _check_with(
    model: type[BaseModel], name: str, given: dict[str, Any], path: Path_, loc: _Located
) -> tuple[BaseModel | None, list[str]]:
    try:
        return model(**given), []
    except pydantic.ValidationError as exc:
        out = []
        for err in exc.errors():
            p = path + ("params",) + tuple(err["loc"])
            if err["type"] == "extra_forbidden":
                allowed = sorted(model.model_fields)
                msg = f"{name} has no parameter {err['loc'][-1]!r}{did_you_mean(str(err['loc'][-1]), allowed)}"
                msg += f" (parameters: {', '.join(allowed) or 'none'})"
            elif err["type"] == "missing":
                msg = f"{name} requires this parameter"
            else:
                msg = _describe(err)
            out.append(f"{_at(loc, p)}: {msg}")
        return None, out


@dataclass
class _Declared:
    """What validation reads of a component: its params model, ``check_recipe`` hook and
    ``input_layouts``; ``cls`` is the class when it was imported, None when read from its source."""

    model: type[BaseModel]
    hook: Any
    input_layouts: Any
    cls: Any = None


def _declared(kind: str, name: str) -> _Declared:
    """The component's declarations, read from its source when that is exact (no Keras import,
    see :mod:`mmkeras.static_signature`), else from the imported class. Raises ComponentError."""
    entry = registry.entry(kind, name)
    # datasets are made by validate anyway; a class already imported is read directly
    if kind != "datasets" and entry.status == "not loaded":
        static = static_signature.read(entry.target)
        if static is not None:
            if static.model is None:
                static.model = build_params_model(static.name, static.params, static.docs)
            return _Declared(static.model, static.check_recipe, static.input_layouts)
    cls = entry.load()
    return _Declared(params_model(cls), getattr(cls, "check_recipe", None), getattr(cls, "input_layouts", None), cls)


def _component_problems(
    kind: str, spec: ComponentSpec, path: Path_, loc: _Located, injected: set[str], modalities: list[str]
) -> tuple[_Declared | None, BaseModel | None, list[str]]:
    """(declarations, validated parameters, problems) of one component the recipe names."""
    names = registry.names(kind)
    if spec.name not in names:
        return None, None, [f"{_at(loc, path + ('name',))}: {_unknown(kind, spec.name, names)}"]
    try:
        declared = _declared(kind, spec.name)
    except ComponentError as exc:
        return None, None, [f"{_at(loc, path + ('name',))}: {exc}"]
    model = declared.model
    given = dict(spec.params)
    for name in injected:
        if name in model.model_fields and name not in given and model.model_fields[name].is_required():
            given[name] = 1  # filled in by the builder; only its presence matters here
    validated, problems = _check_with(model, spec.name, given, path, loc)
    hook = declared.hook
    if validated is not None and callable(hook) and modalities:
        # parameters that name modalities (an evaluator's subsets, an objective's pair) must name this recipe's
        values = {k: getattr(validated, k) for k in type(validated).model_fields}
        for key, msg in hook(values, modalities):
            problems.append(f"{_at(loc, path + ('params', key))}: {spec.name}: {msg}")
    return declared, validated, problems


def _unknown(kind: str, name: str, names: list[str]) -> str:
    return f"unknown {kind[:-1]} {name!r}{did_you_mean(name, names)} (available: {', '.join(names) or 'none'})"


def _component_specs(doc: dict[str, Any]) -> list[tuple[str, Path_, Any]]:
    """(kind, key path, raw spec) of every component a recipe document names, read from the
    raw document so that name and parameter problems are found even when other keys are wrong."""
    out: list[tuple[str, Path_, Any]] = []

    def get(node: Any, key: Any) -> Any:
        return node.get(key) if isinstance(node, dict) else None

    for m, mspec in (get(doc, "modalities") or {}).items() if isinstance(get(doc, "modalities"), dict) else []:
        out.append(("encoders", ("modalities", m, "encoder"), get(mspec, "encoder")))
        augs = get(mspec, "augment")
        for i, aug in enumerate(augs if isinstance(augs, list) else []):
            out.append(("augmentations", ("modalities", m, "augment", i), aug))
    model = get(doc, "model")
    fusion = get(model, "fusion")
    out.append(("fusions", ("model", "fusion"), fusion if fusion is not None else {"name": "mean"}))
    out.append(("heads", ("model", "head"), get(model, "head")))
    out.append(("objectives", ("objective",), get(doc, "objective")))
    data = get(doc, "data")
    if isinstance(get(data, "dataset"), str):
        out.append(("datasets", ("data",), {"name": data["dataset"], "params": get(data, "params") or {}}))
    evs = get(doc, "evaluate")
    for i, ev in enumerate(evs if isinstance(evs, list) else []):
        out.append(("evaluators", ("evaluate", i), ev))
    return [(k, p, raw) for k, p, raw in out if isinstance(raw, dict)]


def _data_key(doc: Any, key: str) -> Any:
    data = doc.get("data") if isinstance(doc, dict) else None
    return data.get(key) if isinstance(data, dict) else None


def _dataset_problems(
    name: str, cls: Any, validated: BaseModel, encoders: dict[str, Any], loc: _Located, validation_split: Any = None
) -> list[str]:
    """Make the dataset as training would (its constructor checks its parameters) and check the
    recipe's modalities and encoders against the modalities it declares."""
    try:
        dataset = cls(**{k: getattr(validated, k) for k in validated.model_fields_set})
    except (ValueError, TypeError, MMKerasError) as exc:
        return [f"{_at(loc, ('data', 'params'))}: {name}: {exc}"]
    problems = []
    if validation_split and "validation" in getattr(dataset, "splits", ()):
        problems.append(
            f"{_at(loc, ('data', 'validation_split'))}: dataset {name} has a validation split of its own; "
            "remove data.validation_split to use it"
        )
    info = dataset.info() if callable(getattr(dataset, "info", None)) else None
    if info is None:
        return problems  # not declared: the data checks these when it is loaded
    for modality, encoder in encoders.items():
        path = ("modalities", modality)
        if modality not in info:
            declared = sorted(info)
            problems.append(
                f"{_at(loc, path)}: dataset {name} has no modality {modality!r}"
                f"{did_you_mean(str(modality), declared)} (it declares: {', '.join(declared) or 'none'})"
            )
            continue
        layouts, enc_name = encoder
        shape = tuple(info[modality].shape)
        if layouts and len(shape) not in {len(layout.split(",")) for layout in layouts}:
            expects = " or ".join(f"[{layout}]" for layout in layouts)
            problems.append(
                f"{_at(loc, path + ('encoder',))}: {enc_name} expects an input of shape {expects}, "
                f"but dataset {name} declares {modality} with shape {shape}"
            )
    return problems


def validate(
    doc: dict[str, Any], lines: dict[Path_, str] | None = None, source: str | None = None, check_data: bool = True
) -> Recipe:
    """Validate a recipe document (already merged and overridden) into a :class:`Recipe`,
    reporting every problem at once: keys and types, every component's parameters, parameters
    that name modalities, the dataset's own checks and its declared modalities and shapes
    (``check_data=False`` skips the dataset: for models built on shapes given by hand)."""
    loc = _Located()
    loc.where = dict(lines or {})
    loc.where.setdefault((), source or "<recipe>")
    problems: list[str] = []
    recipe = None
    try:
        recipe = Recipe.model_validate(doc)
    except pydantic.ValidationError as exc:
        problems += _schema_problems(exc, loc)
    raw_modalities = doc.get("modalities") if isinstance(doc.get("modalities"), dict) else {}
    for modality in raw_modalities:
        if modality == "masks" or "/" in str(modality):
            problems.append(f"{loc.at(('modalities', modality))}: modalities.{modality}: reserved name")
    modalities = sorted(str(m) for m in raw_modalities)
    encoders: dict[str, Any] = {}
    dataset: tuple[str, Any, BaseModel] | None = None
    for kind, path, raw in _component_specs(doc):
        try:
            spec = ComponentSpec.model_validate(raw)
        except pydantic.ValidationError:
            continue  # already reported by the schema check
        injected = INJECTED if kind in ("encoders", "fusions", "heads") else set()
        declared, validated, found = _component_problems(kind, spec, path, loc, injected, modalities)
        if kind == "datasets":  # reported under the keys the recipe used
            found = [f.replace("data.name:", "data.dataset:") for f in found]
            if declared is not None and validated is not None:
                dataset = (spec.name, declared.cls, validated)
        if kind == "encoders" and declared is not None:
            encoders[path[1]] = (declared.input_layouts, spec.name)
        problems += found
    if dataset is not None and check_data:
        problems += _dataset_problems(*dataset, encoders, loc, _data_key(doc, "validation_split"))
    if problems:
        raise RecipeError(list(dict.fromkeys(problems)), source)
    assert recipe is not None
    recipe._source = source
    return recipe


def load_recipe(path: str | os.PathLike[str], overrides: list[str] | None = None) -> Recipe:
    """Load, merge (``extends``), override (``KEY.PATH=VALUE`` strings) and validate a recipe.

    Files are read with :mod:`mmkeras.safe_yaml` (regular files, size, depth and alias limits).
    Raises :class:`~mmkeras.errors.RecipeError` listing every problem with file, line and key.
    """
    path = Path(path)
    try:
        missing = not path.exists()
    except (OSError, ValueError):  # e.g. a name too long: reading it names the problem
        missing = False
    if missing:
        hint = ""
        shipped = Path(__file__).resolve().parent.parent / "recipes" / path.name
        if shipped.exists() and shipped != path.resolve():
            hint = f"; a shipped recipe of that name is at {shipped}"
        raise RecipeError([f"recipe file not found: {path}{hint}"])
    doc, lines = _load_file(path, ())
    for item in overrides or []:
        key_path, value = _parse_override(item)
        key_path = _apply_override(doc, key_path, value, item)
        lines = {k: v for k, v in lines.items() if k[: len(key_path)] != key_path}  # replaced: old lines are stale
        lines[key_path] = f"--set {item}"
    return validate(doc, lines, str(path))


def recipe_from_dict(doc: dict[str, Any], check_data: bool = True) -> Recipe:
    """Validate a recipe given as a Python dict (notebooks, tests). ``check_data=False`` skips
    the dataset's checks, for a model built with ``build_model(recipe, input_shapes=...)`` alone."""
    return validate(copy.deepcopy(doc), None, None, check_data)
