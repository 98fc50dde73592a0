"""The ``mmkeras`` command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmkeras import scaffold
from mmkeras.errors import MMKerasError

SHIPPED = Path(__file__).resolve().parent.parent / "recipes"


def _resolve_recipe(arg: str) -> str:
    """A path, or the name of a shipped recipe (``gmc_mhd`` or ``gmc_mhd.yaml``)."""
    if Path(arg).exists() or os.sep in arg:
        return arg
    for candidate in (SHIPPED / arg, SHIPPED / f"{arg}.yaml"):
        if candidate.exists():
            return str(candidate)
    return arg


def _cmd_train(args: argparse.Namespace) -> int:
    from mmkeras.recipe import load_recipe

    overrides = list(args.set)
    if args.workers:
        from mmkeras.distribute import cluster_config, initialize_processes, keras_backend_name

        workers = args.workers.split(",")
        if keras_backend_name() == "jax":  # keras.distribution: join the processes before any JAX computation
            initialize_processes(workers, args.worker_index)
            overrides.append("distribute.strategy=data_parallel")
        else:
            os.environ["TF_CONFIG"] = cluster_config(workers, args.worker_index)
            overrides.append("distribute.strategy=multi_worker")
    recipe = load_recipe(_resolve_recipe(args.recipe), overrides)
    from mmkeras.runs import train

    run = train(recipe, args.output, verbose=args.verbose if args.verbose is not None else "auto")
    print(f"run directory: {run.path}\nreport: {run.report_file}")
    return 0


def _evaluator_spec(text: str):
    """``NAME`` or a YAML mapping ``{name: NAME, params: {...}}`` from --evaluator."""
    from mmkeras import safe_yaml
    from mmkeras.errors import RecipeError
    from mmkeras.recipe import ComponentSpec

    value = safe_yaml.loads(text, f"--evaluator {text!r}")
    if isinstance(value, str):
        return ComponentSpec(name=value)
    if isinstance(value, dict) and isinstance(value.get("name"), str) and set(value) <= {"name", "params"}:
        return ComponentSpec(name=value["name"], params=value.get("params") or {})
    raise RecipeError([f"--evaluator {text!r}: expected NAME or {{name: NAME, params: {{...}}}}"])


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from mmkeras.runs import evaluate_run

    specs = [_evaluator_spec(e) for e in args.evaluator]
    run = evaluate_run(args.run_dir, specs or None)
    print(f"run directory: {run.path}\nreport: {run.report_file}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from mmkeras.runs import compare_runs

    table = compare_runs(args.run_dirs)
    print(table, end="")
    if args.output:
        Path(args.output).write_text(table)
        print(f"written: {args.output}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from mmkeras.recipe import load_recipe

    recipe = load_recipe(_resolve_recipe(args.recipe), args.set)
    from mmkeras.distribute import strategy_problem

    problem = strategy_problem(recipe.distribute.strategy)  # the backend is this process's, read without Keras
    if problem:
        raise MMKerasError(f"{recipe.source}: {problem}")
    print(f"{recipe.source}: ok ({recipe.name}: {', '.join(sorted(recipe.modalities))} -> {recipe.objective.name})")
    return 0


def _cmd_plugins(args: argparse.Namespace) -> int:
    from mmkeras.registry import registry

    registry.discover()
    load = args.load or args.strict or args.json
    problems = _load_plugins_quietly(registry) if load else []
    rows = [
        {
            "kind": e.kind,
            "name": e.name,
            "target": e.target,
            "distribution": e.distribution,
            "version": e.version,
            "status": "clash" if len(registry.entries[e.kind][e.name]) > 1 and e.status == "loaded" else e.status,
            "api": list(e.api) if e.api is not None else None,
            "error": e.error,
        }
        for e in registry.all_entries()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        current = None
        for r in rows:
            if r["kind"] != current:
                current = r["kind"]
                print(f"{current}:")
            clash = len(registry.entries[r["kind"]][r["name"]]) > 1
            note = f"  [{r['status']}: {r['error']}]" if r["error"] else ("  [clash]" if clash else "")
            print(f"  {r['name']:<22} {r['distribution']} {r['version']}{note}")
        if not load:
            print("(read from package metadata; `mmkeras plugins --load` imports each component and shows any broken)")
    if args.strict and problems:
        incompatible = sum(e.status == "incompatible" for e in problems)
        counts = [f"{len(problems) - incompatible} broken or clashing"] if len(problems) > incompatible else []
        counts += [f"{incompatible} incompatible"] if incompatible else []
        print(f"error: {', '.join(counts)} plugin entries", file=sys.stderr)
        return 1
    return 0


def _load_plugins_quietly(registry: Any) -> list[Any]:
    """``registry.load_all()`` with whatever the components print on import sent to stderr, so
    that stdout holds only this command's output (``--json`` stays valid JSON)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)  # C code and os.write(1, ...) too, not only print()
        with contextlib.redirect_stdout(sys.stderr):
            return registry.load_all()
    finally:
        sys.stderr.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _cmd_recipes(args: argparse.Namespace) -> int:
    from mmkeras import safe_yaml

    for path in sorted(SHIPPED.glob("*.yaml")):
        doc = safe_yaml.load_file(path) or {}
        if isinstance(doc, dict) and "name" in doc:
            print(f"{path.stem:<24} {doc.get('description', '').splitlines()[0] if doc.get('description') else ''}")
    return 0


def _dataset_from_args(args: argparse.Namespace) -> Any:
    """The dataset ``args.name`` with ``--param KEY=VALUE`` (and ``--size``) as its parameters."""
    from mmkeras import safe_yaml
    from mmkeras.builder import instantiate
    from mmkeras.recipe import ComponentSpec

    params: dict[str, Any] = {}
    for item in args.param:
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise MMKerasError(f"--param {item}: expected KEY=VALUE, e.g. --param num_samples=512")
        try:
            params[key.strip()] = safe_yaml.loads(raw, f"--param {item}") if raw.strip() else None
        except safe_yaml.InvalidYAML:
            params[key.strip()] = raw  # not YAML: the text as written
    if getattr(args, "size", None) is not None:
        params["size"] = safe_yaml.loads(args.size, f"--size {args.size}")
    return instantiate("datasets", ComponentSpec(name=args.name, params=params), "dataset")


def _cmd_data_build(args: argparse.Namespace) -> int:
    dataset = _dataset_from_args(args)
    dataset.prepare(progress=True)
    for split in dataset.splits:
        data = dataset.load(split)
        shapes = ", ".join(f"{k} {tuple(v.shape[1:])}" for k, v in data.inputs.items())
        print(f"{args.name} {split}: {len(data)} rows; {shapes}")
    return 0


def _cmd_data_export(args: argparse.Namespace) -> int:
    from mmkeras.data.tfrecord import export_all

    if args.shards < 1:
        raise MMKerasError(f"--shards must be at least 1, got {args.shards}")
    dataset = _dataset_from_args(args)
    dataset.prepare(progress=True)
    spec = export_all(dataset, args.out, args.shards)
    for split in dataset.splits:
        info = spec["splits"][split]
        print(f"{args.name} {split}: {info['count']} rows -> {len(info['files'])} TFRecord files in {args.out}")
    return 0


def _cmd_data_info(args: argparse.Namespace) -> int:
    from mmkeras.data.reference import describe
    from mmkeras.registry import registry

    dataset = _dataset_from_args(args)
    print(describe(args.name, dataset, registry.entry("datasets", args.name).distribution), end="")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    if (args.preset is None) == (args.format is None):
        raise MMKerasError("export: give --preset DIR (a preset to reuse) or --format saved_model|onnx (for serving)")
    if args.preset is not None:
        from mmkeras.preset import export_preset

        path = export_preset(args.run_dir, args.preset, modality=args.modality)
        what = f"the {args.modality} encoder" if args.modality else "the multimodal encoder"
        print(f"wrote {what} of {args.run_dir} as a preset in {path}")
        return 0
    if args.modality is not None:
        raise MMKerasError("export: --modality goes with --preset; for serving, choose modalities with --subset")
    from mmkeras.serving import export_serving

    subsets = [[m.strip() for m in s.split(",") if m.strip()] for s in args.subset] or None
    out = args.out or str(Path(args.run_dir) / ("saved_model" if args.format == "saved_model" else "onnx"))
    for line in export_serving(args.run_dir, out, fmt=args.format, subsets=subsets, output=args.output):
        print(line)
    return 0


def _cmd_new_plugin(args: argparse.Namespace) -> int:
    path = scaffold.new_plugin(args.name, args.kind, args.output)
    print(f"created {path}\nnext: pip install -e {path} && pytest {path}  (see its README.md)")
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from mmkeras.schema import recipe_json_schema, recipe_reference_markdown

    print(recipe_reference_markdown() if args.markdown else json.dumps(recipe_json_schema(), indent=2))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmkeras", description="Multimodal representation learning with Keras 3.")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a recipe into a run directory (resumes if interrupted)")
    t.add_argument("recipe", help="a recipe file, or the name of a shipped recipe")
    t.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="override a recipe value")
    t.add_argument("--output", "-o", default=None, help="run directory (default runs/<recipe name>)")
    t.add_argument("--verbose", type=int, choices=[0, 1, 2], default=None, help="Keras verbosity")
    t.add_argument(
        "--workers",
        default=None,
        metavar="HOST:PORT,...",
        help="processes training together: TensorFlow sets TF_CONFIG (multi_worker); JAX joins them with "
        "keras.distribution.initialize (data_parallel; process 0 serves the coordinator at the first address)",
    )
    t.add_argument("--worker-index", type=int, default=0, help="this process's index in --workers (0 = chief)")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a trained run again, without training (rewrites its report)")
    e.add_argument("run_dir")
    e.add_argument(
        "--evaluator",
        action="append",
        default=[],
        metavar="SPEC",
        help="NAME or '{name: NAME, params: {...}}'; repeatable (default: the run recipe's evaluators)",
    )
    e.set_defaults(func=_cmd_evaluate)

    c = sub.add_parser("compare", help="a side-by-side table of runs' metrics (Markdown)")
    c.add_argument("run_dirs", nargs="+")
    c.add_argument("--output", "-o", default=None, help="also write the table to this Markdown file")
    c.set_defaults(func=_cmd_compare)

    v = sub.add_parser("validate", help="check a recipe and print every problem")
    v.add_argument("recipe")
    v.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    v.set_defaults(func=_cmd_validate)

    pl = sub.add_parser("plugins", help="list every component with its distribution (and, with --load, its status)")
    pl.add_argument("--load", action="store_true", help="import every component to show which are broken")
    pl.add_argument("--json", action="store_true", help="every component as JSON, with its load status (imports them)")
    pl.add_argument("--strict", action="store_true", help="exit 1 if any plugin is broken, clashes or is incompatible")
    pl.set_defaults(func=_cmd_plugins)

    r = sub.add_parser("recipes", help="list the shipped recipes")
    r.set_defaults(func=_cmd_recipes)

    s = sub.add_parser("schema", help="print the recipe JSON Schema (or the Markdown reference)")
    s.add_argument("--markdown", action="store_true", help="the recipe reference as Markdown (docs/recipes.md)")
    s.set_defaults(func=_cmd_schema)

    x = sub.add_parser("export", help="write a run's trained encoder as a preset to reuse, or for serving")
    x.add_argument("run_dir", help="a run directory (or an encoder.keras / model .keras file)")
    x.add_argument("--preset", default=None, metavar="DIR", help="write a preset directory (load_encoder, pretrained)")
    x.add_argument("--modality", default=None, help="with --preset: that modality's encoder alone")
    x.add_argument("--format", default=None, choices=["saved_model", "onnx"], help="a serving export")
    x.add_argument(
        "--subset",
        action="append",
        default=[],
        metavar="M1,M2",
        help="a modality subset to serve, comma-separated; repeatable (default: every single modality and all)",
    )
    x.add_argument("--output", default=None, choices=["latent", "feature"], help="default: the encoder's")
    x.add_argument("--out", "-o", default=None, help="the output path (default RUN/saved_model or RUN/onnx)")
    x.set_defaults(func=_cmd_export)

    n = sub.add_parser("new-plugin", help="scaffold an installable plugin distribution with one working component")
    n.add_argument("name", help="distribution name, e.g. mmkeras-tcn (package mmkeras_tcn, component tcn)")
    n.add_argument("--kind", default="encoder", choices=scaffold.KINDS, help="the example component's kind")
    n.add_argument("--output", "-o", default=None, help="the directory to create (default ./NAME)")
    n.set_defaults(func=_cmd_new_plugin)

    d = sub.add_parser("data", help="data sets")
    dsub = d.add_subparsers(dest="data_command", required=True)
    b = dsub.add_parser("build", help="build and cache a data set ahead of training")
    b.add_argument("name")
    b.add_argument("--size", default=None, help="a named size or a number of rows (datasets that take one)")
    b.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a dataset parameter")
    b.set_defaults(func=_cmd_data_build)
    x = dsub.add_parser("export", help="write every split of a data set to sharded TFRecords (dataset: tfrecord)")
    x.add_argument("name")
    x.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a dataset parameter")
    x.add_argument("--out", required=True, help="the output directory")
    x.add_argument("--shards", type=int, default=1, help="files per split; at least the number of workers")
    x.set_defaults(func=_cmd_data_export)
    i = dsub.add_parser("info", help="print a data set's modalities, shapes, dtypes, splits, labels (builds nothing)")
    i.add_argument("name")
    i.add_argument("--size", default=None, help="a named size or a number of rows (datasets that take one)")
    i.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a dataset parameter")
    i.set_defaults(func=_cmd_data_info)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not args.debug:
        _quiet_tensorflow()
    try:
        return args.func(args)
    except MMKerasError as exc:
        if args.debug:
            traceback.print_exc()
            _print_plugin_tracebacks()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a read-only or full disk, a permission, a path that is a file: the user's to fix
        if args.debug:
            traceback.print_exc()
        print(f"error: {_describe_os_error(exc, args)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to resume", file=sys.stderr)
        return 130


def _describe_os_error(exc: OSError, args: argparse.Namespace) -> str:
    """One line naming the path and the cause; an OSError raised by a write() names no path,
    so the command's output is named instead."""
    what = exc.strerror or str(exc) or type(exc).__name__
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    if paths:
        return f"{' -> '.join(paths)}: {what}"
    where = getattr(args, "output", None) or getattr(args, "run_dir", None) or getattr(args, "out", None)
    if where is None and args.command == "train":
        where = "the run directory under runs/"
    return f"{what} (while writing {where})" if where else what


def _print_plugin_tracebacks() -> None:
    """Under --debug: the plugin's own traceback for every plugin that failed to import (a recipe
    error names the plugin, but the import happened elsewhere)."""
    registry_module = sys.modules.get("mmkeras.registry")
    if registry_module is None:
        return
    for entry in registry_module.registry.all_entries():
        if entry.traceback:
            print(f"{entry.kind[:-1]} {entry.name!r} ({entry.distribution}) failed to import:", file=sys.stderr)
            print(entry.traceback, end="", file=sys.stderr)


# lines TensorFlow writes to fd 2 while it loads, before TF_CPP_MIN_LOG_LEVEL takes effect (TF >= 2.19
# logs them through absl before absl::InitializeLog); anything else it writes is passed on
_TF_START_UP_NOISE = (
    "All log messages before absl::InitializeLog() is called",
    "cudart_stub.cc",
    "Could not find cuda drivers",
    "oneDNN custom operations are on",
    "cpu_feature_guard.cc",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "computation_placer.cc",
    "TF-TRT Warning: Could not find TensorRT",
)


def _quiet_tensorflow() -> None:
    """Make TensorFlow's first import, whoever triggers it, quiet: the C++ log level is set before
    it loads, its start-up lines are dropped, and its Python loggers report errors only."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # also "failed call to cuInit" on a machine without a GPU
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietTensorFlowImport())


class _QuietTensorFlowImport:
    """A meta-path finder that lets ``import tensorflow`` run as usual, with fd 2 filtered."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "tensorflow":
            return None
        import importlib.machinery

        sys.meta_path.remove(self)  # once: only the first import prints start-up lines
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _FilteredLoader(spec.loader)
        return spec


class _FilteredLoader:
    """Delegates to TensorFlow's own loader; runs the package's ``__init__`` with fd 2 filtered."""

    def __init__(self, loader: Any):
        self._loader = loader

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        with _filtered_stderr(_TF_START_UP_NOISE):
            self._loader.exec_module(module)
        if "absl.logging" in sys.modules:  # TF imports absl; its Python warnings are TF's internals
            sys.modules["absl.logging"].set_verbosity("error")


@contextlib.contextmanager
def _filtered_stderr(noise: tuple[str, ...]) -> Iterator[None]:
    """Capture what anything in the process (C++ included) writes to fd 2, then pass on every
    line that contains none of ``noise``."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable fd 2: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", "replace")
            kept = [line for line in text.splitlines(keepends=True) if not any(n in line for n in noise)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())
