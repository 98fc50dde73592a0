"""Recipe -> components -> compiled :class:`~mmkeras.model.MultimodalModel`."""

from __future__ import annotations

import contextlib
from typing import Any

from mmkeras.data.base import Dataset, DataSplit
from mmkeras.errors import ComponentError, RecipeError
from mmkeras.recipe import ComponentSpec, Recipe, check_params
from mmkeras.registry import parameters, registry


def instantiate(
    kind: str, spec: ComponentSpec, where: str, defaults: dict[str, Any] | None = None, **extra: Any
) -> Any:
    """Create the component ``spec`` names, with its params validated against its signature.

    ``defaults`` fill parameters the recipe leaves out (only those the class declares).
    """
    try:
        cls = registry.get(kind, spec.name)
    except ComponentError as exc:
        raise RecipeError([f"{where}.name: {exc}"]) from None
    declared = parameters(cls)
    given = dict(spec.params)
    for key, value in (defaults or {}).items():
        if key in declared and key not in given:
            given[key] = value
    # the same checks, and messages, as `mmkeras validate`
    validated, problems = check_params(cls, spec.name, given, (where,))
    if validated is None:
        raise RecipeError(problems)
    kwargs = {k: getattr(validated, k) for k in given}
    try:
        return cls(**kwargs, **extra)
    except (ValueError, TypeError) as exc:
        raise RecipeError([f"{where}: {spec.name}: {exc}"]) from None


def make_dataset(recipe: Recipe) -> Dataset:
    return instantiate("datasets", ComponentSpec(name=recipe.data.dataset, params=recipe.data.params), "data.dataset")


def input_shapes_of(split: DataSplit, modalities: list[str]) -> dict[str, list[int]]:
    from mmkeras.data.pipeline import select

    x, _ = select(split, modalities, "data")
    return {m: list(x[m].shape[1:]) for m in modalities}


def make_optimizer(recipe: Recipe):
    import keras

    opt = recipe.train.optimizer
    kwargs: dict[str, Any] = {"learning_rate": opt.learning_rate}
    if opt.clipnorm is not None:
        kwargs["clipnorm"] = opt.clipnorm
    if opt.global_clipnorm is not None:
        kwargs["global_clipnorm"] = opt.global_clipnorm
    if opt.weight_decay is not None:
        kwargs["weight_decay"] = opt.weight_decay
    classes = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }
    optimizer = classes[opt.name](**kwargs)
    if opt.name == "adamw":
        # AdamW decays weights only: biases and normalisation scales/offsets are left alone
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    if recipe.train.mixed_precision == "float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def resolve_jit_compile(recipe: Recipe, strategy: Any) -> bool:
    """XLA on wherever it was measured to help and work: a single device, and JAX's
    ``data_parallel`` (one compiled program over the device mesh). Keras's own "auto" turns it off
    on CPU and under any strategy; under MirroredStrategy on logical CPUs it fails, so it stays
    off there."""
    from mmkeras.distribute import is_data_parallel

    setting = recipe.train.jit_compile
    if setting != "auto":
        return bool(setting)
    return strategy is None or is_data_parallel(strategy) or getattr(strategy, "num_replicas_in_sync", 1) == 1


def build_model(
    recipe: Recipe,
    input_shapes: dict[str, list[int]] | None = None,
    strategy: Any = None,
    compile: bool = True,
):
    """A compiled ``MultimodalModel`` for ``recipe``.

    ``input_shapes`` (modality -> shape without the batch axis) default to those of the
    recipe's dataset, which is then prepared and loaded. ``strategy`` (a ``tf.distribute``
    strategy, or on JAX a ``keras.distribution`` distribution) defaults to the recipe's
    ``distribute.strategy``; the model is built and compiled under its scope, so ``model.fit``
    trains under it too.
    """
    import keras

    from mmkeras.model import MultimodalModel

    modalities = sorted(recipe.modalities)
    if input_shapes is None:
        dataset = make_dataset(recipe)
        dataset.prepare()
        input_shapes = input_shapes_of(dataset.load("train"), modalities)
    missing = [m for m in modalities if m not in input_shapes]
    if missing:
        raise RecipeError([f"modalities.{missing[0]}: no input shape known for this modality"])
    keras.mixed_precision.set_global_policy(
        {"float16": "mixed_float16", "bfloat16": "mixed_bfloat16", None: "float32"}[recipe.train.mixed_precision]
    )
    keras.utils.set_random_seed(recipe.seed)
    dims = {"output_dim": recipe.model.feature_dim}
    from mmkeras.distribute import check_global_batch, make_strategy

    if strategy is None:  # from Python as from the CLI: the recipe names the strategy
        strategy = make_strategy(recipe.distribute.strategy)
    check_global_batch(strategy, recipe.data.batch_size)
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        encoders = {
            m: instantiate(
                "encoders", recipe.modalities[m].encoder, f"modalities.{m}.encoder", dims, name=f"{m}_encoder"
            )
            for m in modalities
        }
        # each modality's augmentations get their own seeds: equal seeds would draw the same
        # crops and noise in every modality of a sample
        augmentations = {
            m: [
                instantiate(
                    "augmentations", a, f"modalities.{m}.augment[{i}]", {"seed": recipe.seed + 1000 * (k + 1) + i}
                )
                for i, a in enumerate(recipe.modalities[m].augment)
            ]
            for k, m in enumerate(sorted(modalities))
        }
        joint_encoders = None
        if recipe.model.joint_encoders == "separate":
            joint_encoders = {
                m: instantiate(
                    "encoders", recipe.modalities[m].encoder, f"modalities.{m}.encoder", dims, name=f"{m}_joint_encoder"
                )
                for m in modalities
            }
        fusion = instantiate("fusions", recipe.model.fusion, "model.fusion", dims, name="fusion")
        head = None
        if recipe.model.head is not None:
            head = instantiate(
                "heads", recipe.model.head, "model.head", {"output_dim": recipe.model.latent_dim}, name="head"
            )
        objective = instantiate("objectives", recipe.objective, "objective", name="objective")
        model = MultimodalModel(  # builds the MultimodalEncoder (model.encoder) from its parts
            encoders,
            fusion,
            head,
            objective,
            augmentations=augmentations,
            joint_encoders=joint_encoders,
            input_shapes=input_shapes,
            subset_encoding=recipe.model.subset_encoding,
            encode_output=recipe.model.encode_output,
            name=recipe.name.replace("-", "_"),
        )
        model.build()
        if recipe.model.init_from:
            initialize_from(model, recipe.model.init_from)
        if compile:
            model.compile(
                optimizer=make_optimizer(recipe),
                jit_compile=resolve_jit_compile(recipe, strategy),
                steps_per_execution=recipe.train.steps_per_execution,
            )
    return model


def initialize_from(model: Any, source: str) -> list[str]:
    """Load the encoder of ``source`` (a run directory, an ``encoder.keras`` or a model's ``.keras``
    file; see :func:`mmkeras.encoder.load_encoder`) into ``model``'s encoder (``model.init_from``):
    its encoders, joint encoders, fusion and head; the objective keeps its fresh weights. Every part
    must match the source's in weight shapes. Returns the names of the parts copied."""
    from pathlib import Path

    from mmkeras.encoder import load_encoder
    from mmkeras.errors import MMKerasError

    path = Path(source)
    try:
        saved = load_encoder(path)
    except MMKerasError as exc:
        raise RecipeError([f"model.init_from: {exc}"]) from None
    parts = [(f"encoders.{m}", model.encoders[m], saved.encoders.get(m)) for m in model.modalities]
    if model.joint_encoders:
        parts += [
            (f"joint_encoders.{m}", e, (saved.joint_encoders or {}).get(m)) for m, e in model.joint_encoders.items()
        ]
    parts += [("fusion", model.fusion, saved.fusion), ("head", model.head, saved.head)]
    problems, copied = [], []
    for name, mine, theirs in parts:
        if mine is None:
            continue
        if theirs is None:
            problems.append(f"model.init_from: {path} has no {name}")
            continue
        want = [tuple(w.shape) for w in mine.weights]
        have = [tuple(w.shape) for w in theirs.weights]
        if want != have:
            problems.append(f"model.init_from: {name} has weight shapes {want} here but {have} in {path}")
            continue
        mine.set_weights(theirs.get_weights())
        copied.append(name)
    if problems:
        raise RecipeError(problems)
    return copied
