"""Training runs: a run directory that holds everything a run made, and resumes.

``<run>/recipe.yaml`` (resolved recipe), ``checkpoint/`` (weights and optimizer state after
every epoch, the two newest kept), ``logs/`` (TensorBoard), ``history.csv``, ``state.json``,
``model.keras`` (the trained model), ``encoder.keras`` (its encoder alone: the representation,
with no objective; :func:`mmkeras.load_encoder`), ``metrics.json``, ``report.md`` and ``figures/``.
Re-running the same recipe into the same directory resumes from the checkpoint; raising
``train.epochs`` continues training.

Every file is written to a temporary name and renamed into place (:mod:`mmkeras.safe_io`), so
a kill at any moment leaves each file whole; the directory is locked while a process trains
or evaluates in it; a non-finite loss stops training and marks the run ``failed``
(:mod:`mmkeras.checkpoint`).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import yaml

from mmkeras.checkpoint import EpochRecorder, NonFiniteGuard, list_checkpoints, read_history_rows, restore
from mmkeras.errors import MMKerasError
from mmkeras.recipe import ComponentSpec, Recipe
from mmkeras.safe_io import (
    LOCK_NAME,
    RunLock,
    atomic_write,
    atomic_write_text,
    read_json_object,
    remove_stale_temporaries,
)

# keys a resumed run may change without making it a different run
_RESUMABLE_KEYS = {("train", "epochs"), ("evaluate",)}


def _without_resumable(doc: dict[str, Any]) -> dict[str, Any]:
    doc = json.loads(json.dumps(doc))
    for path in _RESUMABLE_KEYS:
        node = doc
        for key in path[:-1]:
            node = node.get(key, {})
        node.pop(path[-1], None)
    return doc


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _differences(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
        return out
    return [] if a == b else [path]


class RunDirectory:
    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.checkpoint = self.path / "checkpoint"
        self.logs = self.path / "logs"
        self.figures = self.path / "figures"
        self.model_file = self.path / "model.keras"
        self.encoder_file = self.path / "encoder.keras"
        self.recipe_file = self.path / "recipe.yaml"
        self.state_file = self.path / "state.json"
        self.history_file = self.path / "history.csv"
        self.metrics_file = self.path / "metrics.json"
        self.report_file = self.path / "report.md"

    def check_usable(self) -> None:
        """Refuse a path that is a file, or a non-empty directory that is not a run."""
        if self.path.exists() and not self.path.is_dir():
            raise MMKerasError(f"{self.path} is a file, not a run directory; pass --output NEW_DIR")
        if self.path.is_dir() and not self.recipe_file.exists():
            if any(p.name != LOCK_NAME for p in self.path.iterdir()):
                raise MMKerasError(f"{self.path} exists and is not an mmkeras run directory; pass --output NEW_DIR")

    def claim(self, recipe: Recipe) -> None:
        """Create the directory, or check that it holds a run of this same recipe."""
        self.check_recipe(recipe)
        self.path.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.recipe_file, recipe.to_yaml())

    def check_recipe(self, recipe: Recipe) -> None:
        """Raise, changing nothing, unless the directory is new or holds a run of ``recipe``."""
        self.check_usable()
        if self.recipe_file.exists():
            previous = _read_yaml(self.recipe_file)
            try:  # a run written by an older mmkeras lacks keys added since: fill in their defaults
                from mmkeras.recipe import recipe_from_dict

                previous = recipe_from_dict(previous).to_dict()
            except Exception:  # noqa: BLE001 - compared as stored; any difference is then reported
                pass
            diff = _differences(_without_resumable(previous), _without_resumable(recipe.to_dict()))
            if diff:
                raise MMKerasError(
                    f"run directory {self.path} holds a run of a different recipe (differs at: "
                    f"{', '.join(diff[:5])}); nothing was changed there. Pass --output NEW_DIR for a new run."
                )

    def lock(self, purpose: str) -> RunLock:
        """Hold the run directory for this process (see :class:`mmkeras.safe_io.RunLock`)."""
        self.check_usable()
        self.path.mkdir(parents=True, exist_ok=True)
        return RunLock(self.path, purpose)

    def state(self) -> dict[str, Any]:
        if not self.state_file.exists():
            return {"epochs_completed": 0}
        try:
            state = json.loads(self.state_file.read_text())
            if not isinstance(state, dict):
                raise ValueError("not a JSON object")
            return state
        except (ValueError, UnicodeDecodeError) as exc:  # the checkpoint, not this record, is what resumes
            print(f"warning: {self.state_file} is unreadable ({exc}); it will be written again")
            return {"epochs_completed": 0}

    def write_state(self, **state: Any) -> None:
        _atomic_write(self.state_file, json.dumps({**self.state(), **state}, indent=2))

    def history(self) -> dict[str, list[float]]:
        by_epoch = read_history_rows(self.history_file)  # a resumed epoch replaces its earlier row
        ordered = [by_epoch[e] for e in sorted(by_epoch)]
        out: dict[str, list[float]] = {"epoch": [e + 1 for e in sorted(by_epoch)]} if by_epoch else {}
        for key in ordered[0] if ordered else {}:
            values = [_number(r.get(key)) for r in ordered]
            if key != "epoch" and all(v is not None for v in values):  # NA for metrics absent in some epochs
                out[key] = values
        return out


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise MMKerasError(
            f"{path} is corrupt ({str(exc).splitlines()[0]}); restore it or pass --output NEW_DIR"
        ) from None


def _read_json(path: Path) -> dict[str, Any]:
    return read_json_object(path)


def _number(text: str | None) -> float | None:
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _atomic_write(path: Path, text: str) -> None:
    atomic_write_text(path, text)


def _is_tty() -> bool:
    try:
        return os.isatty(1)
    except (AttributeError, OSError):
        return False


class TrainingFailed(MMKerasError):
    """Training stopped on a non-finite loss or weights; the last good checkpoint is kept."""


def train(recipe: Recipe, output: str | os.PathLike[str] | None = None, verbose: int | str = "auto") -> RunDirectory:
    """Train ``recipe`` into a run directory (default ``runs/<recipe name>``), evaluate it, and
    write its report. Resumes a run that was interrupted; skips training that is complete.

    The directory is locked while this process works in it. A loss that becomes NaN or infinite
    stops training at once, marks the run ``failed`` and raises :class:`TrainingFailed`."""
    from mmkeras.distribute import check_strategy, worker_index

    check_strategy(recipe.distribute.strategy)  # a strategy this backend cannot run: before anything is written
    run = RunDirectory(output or Path("runs") / recipe.name)
    chief = worker_index() == 0  # in multi-worker training only the chief writes the run directory
    if not chief:
        return _train(recipe, run, verbose, chief)
    run.check_recipe(recipe)  # before the lock file exists, so a refused directory is left untouched
    with run.lock("train"):
        return _train(recipe, run, verbose, chief)


def _train(recipe: Recipe, run: RunDirectory, verbose: int | str, chief: bool) -> RunDirectory:
    import contextlib

    from mmkeras.builder import build_model, input_shapes_of
    from mmkeras.data.pipeline import make_dataset as make_tf_dataset
    from mmkeras.distribute import chief_alone, jax_process_count, make_strategy, worker_index

    dataset, splits = load_splits(recipe)  # data problems surface before anything is written
    strategy = make_strategy(recipe.distribute.strategy)
    index = worker_index()
    processes = jax_process_count()  # JAX processes under data_parallel: only the chief writes, even checkpoints
    train_split, val_split = splits["train"], splits.get("validation")
    val_batch = _even_batches(strategy, recipe, len(train_split), len(val_split) if val_split is not None else 0)
    if chief:
        run.claim(recipe)
        for directory in (run.path, run.checkpoint):
            remove_stale_temporaries(directory)
    modalities = sorted(recipe.modalities)

    model = build_model(recipe, input_shapes_of(train_split, modalities), strategy)
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    where = f"data ({recipe.data.dataset})"
    batch = recipe.data.batch_size
    epochs = recipe.train.epochs
    if verbose == "auto":
        verbose = 1 if _is_tty() else 2
    state = run.state() if chief or processes > 1 else {}  # JAX processes read it too: none retrains a finished run
    complete = state.get("status") == "complete" and state.get("epochs_completed", 0) >= epochs
    if complete and processes > 1 and run.model_file.exists():
        if not chief:
            return run
        print(f"{run.path}: training already complete ({state['epochs_completed']} epochs); evaluating the saved model")
    elif complete and _load_saved_model(model, run, scope):
        print(f"{run.path}: training already complete ({state['epochs_completed']} epochs); evaluating the saved model")
        if chief and not run.encoder_file.exists():  # a run finished before encoders were saved alone
            atomic_write(run.encoder_file, lambda tmp: model.encoder.save(str(tmp)))
    else:
        # every worker resumes from the chief's checkpoint; each writes its own copy, so none overwrites another's
        with scope:
            done = restore(model, run.checkpoint)
        if done >= epochs:
            print(f"{run.path}: all {done} epochs are in the checkpoint; saving the trained model")
        else:
            if done:
                print(f"{run.path}: resuming after epoch {done} of {epochs}")
            guard = NonFiniteGuard()
            backup = run.checkpoint if chief else run.checkpoint / f"worker-{index}"
            callbacks: list[Any] = [guard]
            if chief:
                run.write_state(epochs_completed=done, epochs=epochs, status="training", failure=None)
                recorder = EpochRecorder if processes == 1 else _ChiefEpochRecorder
                callbacks.append(
                    recorder(backup, guard, run.history_file, lambda e: run.write_state(epochs_completed=e))
                )
                if keras_backend() == "tensorflow":  # its summary writer is TensorFlow's
                    import keras

                    callbacks.append(keras.callbacks.TensorBoard(str(run.logs)))
            elif processes == 1:  # a JAX process reads the chief's checkpoint and has no copy to write
                callbacks.append(EpochRecorder(backup, guard))
            train_ds = make_tf_dataset(
                train_split,
                modalities,
                batch,
                True,
                recipe.seed,
                recipe.data.drop_remainder,
                recipe.data.deterministic,
                where,
            )
            val_ds = None
            if val_split is not None:
                val_ds = make_tf_dataset(
                    val_split,
                    modalities,
                    val_batch,
                    False,
                    recipe.seed,
                    True,
                    True,
                    where + " validation",
                )
            plateau = recipe.train.reduce_lr_on_plateau
            if plateau is not None:
                callbacks.append(plateau_callback(plateau, val_ds is not None))
            with warnings.catch_warnings():
                if processes > 1:  # a per-process shard has no known length: Keras learns it by running out once
                    warnings.filterwarnings("ignore", "Your input ran out of data", UserWarning)
                model.fit(
                    train_ds,
                    epochs=epochs,
                    initial_epoch=done,
                    steps_per_epoch=recipe.train.steps_per_epoch,
                    validation_data=val_ds,
                    callbacks=callbacks,
                    shuffle=False,  # the pipeline shuffles
                    verbose=verbose,
                )
            if guard.failure is not None:
                kept = list_checkpoints(run.checkpoint)
                last = f"the checkpoint after epoch {kept[0][0]} is kept" if kept else "no epoch had completed"
                if chief:
                    run.write_state(status="failed", failure=guard.failure)
                raise TrainingFailed(
                    f"{run.path}: training stopped: {guard.describe()}; the run is marked failed and {last}. "
                    "Check the data and the recipe (learning rate, temperature), then run the same command to "
                    "resume from the last good epoch."
                )
        if not chief:
            return run
        with chief_alone():
            atomic_write(run.model_file, lambda tmp: model.save(str(tmp)))
            atomic_write(run.encoder_file, lambda tmp: model.encoder.save(str(tmp)))
        run.write_state(epochs_completed=epochs, epochs=epochs, status="complete", failure=None)

    if processes > 1:  # the chief evaluates alone: on a copy of the saved model off the processes' device mesh
        import keras

        from mmkeras import load_model

        keras.distribution.set_distribution(None)
        model = load_model(str(run.model_file))
    results = evaluate(model, recipe.evaluate, splits, run)
    write_report(recipe, run, results, skipped=_skipped_rows(dataset))
    return run


class _ChiefEpochRecorder(EpochRecorder):
    """The chief's checkpoints when several JAX processes train: written off their device mesh
    (:func:`mmkeras.distribute.chief_alone`), since the other processes write none."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        from mmkeras.distribute import chief_alone

        with chief_alone():
            super().on_epoch_end(epoch, logs)


def _even_batches(strategy: Any, recipe: Recipe, train_rows: int, val_rows: int) -> int:
    """The validation batch size (at most the recipe's, a multiple of the data_parallel devices and
    processes), after checking that every training batch splits evenly over them: errors name the
    recipe key before anything is written."""
    import math

    from mmkeras.distribute import check_global_batch, data_parallel_devices, jax_process_count

    batch = recipe.data.batch_size
    check_global_batch(strategy, batch)
    devices, processes = data_parallel_devices(strategy), jax_process_count()
    split = math.lcm(devices, processes)
    rest = train_rows % batch
    # several processes each take a slice of every batch: a short last batch would leave one without
    if rest and not recipe.data.drop_remainder and (processes > 1 or rest % devices):
        raise MMKerasError(
            f"data.drop_remainder: false leaves a last batch of {rest} rows ({train_rows} rows in batches of "
            f"{batch}), which does not split over data_parallel's devices and processes; set "
            "data.drop_remainder: true, or make data.batch_size divide the row count"
        )
    if not val_rows:
        return 0
    val_batch = min(batch, val_rows) // split * split
    if not val_batch:
        raise MMKerasError(
            f"data.validation_split: the validation split has {val_rows} rows, fewer than data_parallel's "
            f"{split} devices and processes; hold out more rows"
        )
    return val_batch


def plateau_callback(spec: Any, has_validation: bool) -> Any:
    """Keras's ReduceLROnPlateau for ``train.reduce_lr_on_plateau``. The learning rate it lowers is an
    optimizer variable, so a resumed run starts from the lowered rate (its patience count starts over)."""
    import keras

    monitor = spec.monitor if spec.monitor != "auto" else ("val_loss" if has_validation else "loss")
    return keras.callbacks.ReduceLROnPlateau(
        monitor=monitor, factor=spec.factor, patience=spec.patience, min_lr=spec.min_lr, mode="min", verbose=1
    )


def keras_backend() -> str:
    import keras

    return keras.backend.backend()


def _load_saved_model(model: Any, run: RunDirectory, scope: Any) -> bool:
    """Load the finished run's ``model.keras`` into ``model``; False (and a note) when the file
    is missing or unreadable, so the caller rebuilds it from the checkpoint."""
    if not run.model_file.exists():
        return False
    try:
        with scope:
            from mmkeras.model import build_optimizer

            build_optimizer(model)  # so its saved state loads too, without a warning
        model.load_weights(str(run.model_file))
        return True
    except Exception as exc:  # noqa: BLE001 - any failure to read means: rebuild it from the checkpoint
        print(f"{run.model_file} cannot be read ({type(exc).__name__}); rebuilding it from the checkpoint")
        return False


def load_splits(recipe: Recipe) -> tuple[Any, dict[str, Any]]:
    """The recipe's data set (built and cached if needed) and its splits: ``train``,
    ``validation`` (the data set's own when it has one, else held out by ``data.validation_split``
    with the recipe's seed, as in training), and ``test`` when the data set has one.

    Every split is checked for NaN and infinite values and for modalities of zeros
    (:func:`mmkeras.data.checks.check_finite`): an error naming the modality, split and first
    bad row, or with the dataset's ``on_error: skip`` the rows dropped and listed in the report."""
    from mmkeras.builder import make_dataset
    from mmkeras.data.pipeline import split_validation

    dataset = make_dataset(recipe)
    dataset.prepare()
    on_error = getattr(dataset, "on_error", "raise")  # files has it; every other dataset raises
    dropped: list[str] = []
    train, more = _checked(dataset.load("train"), "train", recipe, on_error)
    dropped += more
    if "validation" in dataset.splits:  # the data set's own validation split (MultiBench's "valid")
        if recipe.data.validation_split:
            raise MMKerasError(
                f"data.validation_split: {recipe.data.validation_split}: data set {recipe.data.dataset} has a "
                "validation split of its own; remove data.validation_split to use it"
            )
        train_split = train
        val_split, more = _checked(dataset.load("validation"), "validation", recipe, on_error)
        dropped += more
    else:
        train_split, val_split = split_validation(train, recipe.data.validation_split, recipe.seed)
    splits = {"train": train_split}
    if val_split is not None:
        splits["validation"] = val_split
    if "test" in dataset.splits:
        splits["test"], more = _checked(dataset.load("test"), "test", recipe, on_error)
        dropped += more
    dataset.dropped_nonfinite = dropped
    return dataset, splits


def _checked(split: Any, name: str, recipe: Recipe, on_error: str) -> tuple[Any, list[str]]:
    from mmkeras.data.base import DataSplit
    from mmkeras.data.checks import check_finite

    if on_error == "skip":
        return check_finite(split, name, recipe.data.dataset, "skip")
    # only the modalities the recipe reads: a zero or NaN column it ignores harms nothing
    used = DataSplit(
        {m: a for m, a in split.inputs.items() if m in recipe.modalities},
        split.labels,
        {m: a for m, a in split.masks.items() if m in recipe.modalities},
    )
    check_finite(used, name, recipe.data.dataset, "raise")
    return split, []


def _skipped_rows(dataset: Any) -> list[str]:
    return [str(s) for s in getattr(dataset, "skipped", [])] + list(getattr(dataset, "dropped_nonfinite", []))


def evaluate_run(path: str | os.PathLike[str], specs: list[ComponentSpec] | None = None) -> RunDirectory:
    """Evaluate the trained model of a run directory again, without training: with ``specs``
    (default: the run recipe's ``evaluate`` list). Results of evaluators of the same name are
    replaced, others kept; ``metrics.json`` and ``report.md`` are rewritten."""
    from mmkeras import load_model
    from mmkeras.recipe import load_recipe

    run = RunDirectory(path)
    if not run.recipe_file.exists():
        raise MMKerasError(f"{run.path} is not an mmkeras run directory (no recipe.yaml)")
    with run.lock("evaluate"):
        if not run.model_file.exists():
            raise MMKerasError(
                f"{run.path} has no trained model (model.keras): finish training first with "
                f"`mmkeras train {run.recipe_file} --output {run.path}`"
            )
        recipe = load_recipe(str(run.recipe_file))
        specs = list(specs) if specs else list(recipe.evaluate)
        if not specs:
            raise MMKerasError(f"{run.recipe_file} lists no evaluators; name some with --evaluator NAME")
        model = load_model(str(run.model_file))
        dataset, splits = load_splits(recipe)
        results = previous_results(run)
        results.update(evaluate(model, specs, splits, run))
        write_report(recipe, run, results, skipped=_skipped_rows(dataset))
    return run


def previous_results(run: RunDirectory) -> dict[str, Any]:
    """The evaluation results and reports a run directory's ``metrics.json`` already holds."""
    if not run.metrics_file.exists():
        return {}
    metrics = _read_json(run.metrics_file)
    reports = metrics.get("reports", {})
    return {
        k: {"name": k, "results": v, "report": reports.get(k, "")} for k, v in metrics.get("evaluation", {}).items()
    }


def evaluate(model: Any, specs: list[ComponentSpec], splits: dict, run: RunDirectory) -> dict[str, Any]:
    from mmkeras.builder import instantiate

    results = {}
    run.figures.mkdir(exist_ok=True)
    for i, spec in enumerate(specs):
        evaluator = instantiate("evaluators", spec, f"evaluate[{i}]")
        key = spec.name if spec.name not in results else f"{spec.name}_{i}"
        print(f"evaluating: {spec.name}")
        results[key] = {"name": spec.name, "results": evaluator.evaluate(model, splits, run.figures)}
        results[key]["report"] = evaluator.report(results[key]["results"])
    return results


def write_report(recipe: Recipe, run: RunDirectory, results: dict[str, Any], skipped: list[str] | None = None) -> None:
    history = run.history()
    metrics = {
        "recipe": recipe.name,
        "epochs": run.state().get("epochs_completed"),
        "final": {k: v[-1] for k, v in history.items() if k != "epoch" and v},
        "history": history,
        "evaluation": {k: v["results"] for k, v in results.items()},
        "reports": {k: v["report"] for k, v in results.items()},
        "data": {"skipped_rows": len(skipped or []), "skipped": list(skipped or [])},
    }
    _atomic_write(run.metrics_file, json.dumps(metrics, indent=2))
    lines = [f"# Run report: {recipe.name}", ""]
    if recipe.description:
        lines += [recipe.description, ""]
    lines += [
        f"Dataset `{recipe.data.dataset}`, modalities {', '.join(sorted(recipe.modalities))}, "
        f"objective `{recipe.objective.name}`, {metrics['epochs']} epochs, batch {recipe.data.batch_size}.",
        "",
        "## Training",
        "",
        "| metric | final |",
        "|---|---|",
        *[f"| {k} | {v:.4f} |" for k, v in metrics["final"].items()],
        "",
    ]
    if skipped:
        lines += [f"## Data: {len(skipped)} rows skipped (`on_error: skip`)", ""]
        lines += [f"- {s}" for s in skipped[:50]]
        lines += [f"- ... and {len(skipped) - 50} more (all in metrics.json)"] if len(skipped) > 50 else []
        lines.append("")
    plot = _plot_history(history, run.figures / "training.png")
    if plot:
        lines += [f"![training curves]({plot.relative_to(run.path)})", ""]
    for key, value in results.items():
        lines += [f"## {key}", "", value["report"] or "```\n" + json.dumps(value["results"], indent=2) + "\n```", ""]
    _atomic_write(run.report_file, "\n".join(lines))


def _plot_history(history: dict[str, list[float]], path: Path) -> Path | None:
    keys = [k for k in history if k != "epoch" and len(history[k]) == len(history.get("epoch", []))]
    if not keys or len(history["epoch"]) < 1:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    # one colour per metric: solid for training, dashed for its validation value; the total
    # loss on its own panel so the per-term values are not squashed by its scale
    train_keys = [k for k in keys if not k.startswith("val_")]
    panels = [k for k in ("loss",) if k in train_keys]
    terms = [k for k in train_keys if k != "loss"]
    groups = [panels, terms] if panels and terms else [train_keys]
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 3.6), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, group in zip(axes[0], groups):
        for i, k in enumerate(group):
            colour = colours[i % len(colours)]
            ax.plot(history["epoch"], history[k], marker="o", ms=3, color=colour, label=k)
            if f"val_{k}" in keys:
                ax.plot(history["epoch"], history[f"val_{k}"], ls="--", color=colour, label=f"val_{k}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("value")
        ax.set_title("total loss" if group == panels else "loss terms and metrics", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("training (solid) and validation (dashed)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


#: result keys worth a row in `mmkeras compare` (leaves whose path names one of these)
_HEADLINE = (
    "accuracy",
    "recall",
    "precision",
    "mae",
    "pearson",
    "correlation",
    "quality",
    "consistency",
    "rank",
    "return",
)


def _headline_leaves(node: Any, path: str = "") -> dict[str, float]:
    """Numeric leaves of an evaluation result, keyed by dotted path; a ``{"mean", "std"}``
    record counts as its mean; lists (per-seed runs, per-epoch values) are skipped."""
    if isinstance(node, dict):
        if "mean" in node and isinstance(node["mean"], (int, float)):
            return {path: float(node["mean"])}
        out: dict[str, float] = {}
        for k, v in node.items():
            out.update(_headline_leaves(v, f"{path}.{k}" if path else str(k)))
        return out
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        return {}
    return {path: float(node)} if any(h in path.lower() for h in _HEADLINE) else {}


def compare_runs(paths: list[str | os.PathLike[str]]) -> str:
    """A Markdown table of runs side by side: recipe, epochs, final losses, and every headline
    evaluation number (accuracies, recalls, correlations, ...) one row each."""
    columns, table = [], {}
    for p in paths:
        run = RunDirectory(p)
        if not run.metrics_file.exists():
            raise MMKerasError(
                f"{run.path} has no metrics.json: not a finished mmkeras run (train or evaluate it first)"
            )
        metrics = _read_json(run.metrics_file)
        name = str(run.path)
        columns.append(name)
        cells = {"recipe": metrics.get("recipe", ""), "epochs": metrics.get("epochs", "")}
        for k, v in metrics.get("final", {}).items():
            if "loss" in k:
                cells[f"final {k}"] = v
        for evaluator, result in metrics.get("evaluation", {}).items():
            for k, v in _headline_leaves(result).items():
                cells[f"{evaluator}.{k}"] = v
        for k, v in cells.items():
            table.setdefault(k, {})[name] = v

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 1000 else f"{v:.1f}"
        return str(v)

    lines = ["| | " + " | ".join(f"`{c}`" for c in columns) + " |", "|---|" + "---|" * len(columns)]
    for key, row in table.items():
        lines.append(f"| {key} | " + " | ".join(fmt(row[c]) if c in row else "" for c in columns) + " |")
    return "\n".join(lines) + "\n"
