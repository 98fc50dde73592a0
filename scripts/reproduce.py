"""Reproduce one of docs/results.md's tables with one command: every row over several seeds.

    python scripts/reproduce.py TABLE [--seeds N] [--epochs N] [--backend jax|tensorflow] [--parallel K]
        [--set KEY.PATH=VALUE ...] [--rows NAME,...] [--runs-dir runs/reproduce] [--write-docs] [--dry-run]

TABLE is one of gmc-table1 (downstream accuracy under missing modalities on MHD), gmc-table2 (DCA
on MHD), comm-trifeatures (CoMM and its baselines on Trifeatures) or pendulum (control from the
GMC representations). Each row is a shipped recipe with overrides; each seed k sets the recipe's
``seed`` (weights, batch order, validation split) and, where the table names one, the evaluator's.

Every run is an ordinary ``mmkeras train`` subprocess writing ``RUNS_DIR/TABLE/ROW/seed<k>`` (its
log beside it, ``seed<k>.log``), K at a time. Running the same command again skips the finished
runs (``metrics.json`` with every evaluation the table reads, at the requested epochs) and resumes
the others from their checkpoints. A failed run is reported with its log; the others go on, and
the command exits 1 at the end.

The table (mean ± std over seeds, the paper's number in brackets, wall time, hardware, backend,
epochs, seeds, command) is printed as Markdown and written to RUNS_DIR/TABLE/table.md and
table.json; with --write-docs also into docs/results.md between the markers
``<!-- reproduce:TABLE:start -->`` and ``<!-- reproduce:TABLE:end -->``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmkeras.evaluators.dca import PAPER_SCORE_NOTE

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # this process imports TensorFlow to read run directories

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes"
DOCS = ROOT / "docs" / "results.md"


# ---------------------------------------------------------------------------------------------
# The tables
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    """One number per run: the mean of the leaves at ``paths`` under ``evaluation.<evaluator>``
    of the run's metrics.json (a ``{"mean": ...}`` record counts as its mean), times ``scale``.
    ``variant`` names the run of the row it reads (see :class:`Row`)."""

    name: str
    evaluator: str
    paths: tuple[tuple[str, ...], ...]
    scale: float = 100.0
    digits: int = 2
    variant: str = ""


@dataclass(frozen=True)
class Row:
    """A recipe with overrides (``{seed}`` is replaced by the run's seed) and the paper's numbers
    by column name. ``variants`` are runs of the same row that differ by more overrides (CoMM's
    unbiased and biased pretraining): each has its own directory ``<name>-<variant>``."""

    name: str
    label: str
    recipe: str
    overrides: tuple[str, ...] = ()
    paper: dict[str, float] = field(default_factory=dict)
    variants: dict[str, tuple[str, ...]] = field(default_factory=lambda: {"": ()})


@dataclass(frozen=True)
class Table:
    name: str
    title: str
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    notes: tuple[str, ...] = ()
    backends: tuple[str, ...] = ("jax", "tensorflow")  # the Keras backends its evaluators run on


def _accuracy(subset: str) -> Column:
    return Column(subset, "downstream", (("accuracy", subset),))


# the recipes' downstream protocol (the paper's), with the classifier seeded by the run's seed too
_DOWNSTREAM = (
    "evaluate=[{name: downstream, params: {subsets: singles, epochs: 100, batch_size: 64, "
    "learning_rate: 1.0e-3, seeds: 3, seed: {seed}}}]"
)
# GMC's DCA protocol: 10,000 test rows, HDBSCAN min_cluster_size 10, the label's 10 points deduplicated
_DCA = "evaluate=[{name: dca, params: {max_points: 10000, min_cluster_size: 10, deduplicate: [label]}}]"
_CONTROL = "evaluate=[{name: control, params: {frames: 150000, seed: {seed}}}]"
_MHD = ("gmc", "GMC", "gmc_mhd"), ("mvae", "MVAE", "mvae_mhd"), ("mmvae", "MMVAE", "mmvae_mhd")
_MHD += ("nexus", "Nexus", "nexus_mhd"), ("muse", "MUSE", "muse_mhd")
_UNTRANSCRIBED = (
    "The paper's Table 1 also reports MVAE, MMVAE, Nexus, MUSE and MFM; their numbers are not transcribed "
    "in this repository (docs/results.md, the research notes), so those rows show no bracketed paper "
    "number: add them to `scripts/reproduce.py` (`Row.paper`) from the paper."
)


def _trifeatures_table(
    name: str, title: str, rows: tuple[tuple[str, str, str, float, float, float], ...], note: str
) -> Table:
    """A CoMM Trifeatures table: rows (name, label, recipe, paper R, U, S), each pretrained on unbiased
    pairs (R, U) and on biased pairs (S)."""
    return Table(
        name,
        title,
        (
            Column("R", "logistic_probe", (("tasks", "R", "balanced_accuracy"),), variant="unbiased"),
            Column("U1", "logistic_probe", (("tasks", "U1", "balanced_accuracy"),), variant="unbiased"),
            Column("U2", "logistic_probe", (("tasks", "U2", "balanced_accuracy"),), variant="unbiased"),
            Column(
                "U (mean of U1, U2)",
                "logistic_probe",
                (("tasks", "U1", "balanced_accuracy"), ("tasks", "U2", "balanced_accuracy")),
                variant="unbiased",
            ),
            Column("S", "logistic_probe", (("tasks", "S", "balanced_accuracy"),), variant="biased"),
            Column(
                "S, class-balanced probe", "logistic_probe_1", (("tasks", "S", "balanced_accuracy"),), variant="biased"
            ),
        ),
        tuple(
            Row(
                row,
                label,
                recipe,
                paper={"R": r, "U (mean of U1, U2)": u, "S": s},
                variants={"unbiased": ("data.params.biased=false",), "biased": ("data.params.biased=true",)},
            )
            for row, label, recipe, r, u, s in rows
        ),
        (
            "R and U from pretraining on unbiased pairs (`<row>-unbiased`), S from pretraining on biased "
            "pairs (`<row>-biased`); the probes always train and test on unbiased pairs. Chance: 10 for R "
            "and U, 50 for S. " + note,
        ),
    )


TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "gmc-table1",
            "GMC's Table 1 on MHD: downstream accuracy (%) under missing modalities",
            tuple(_accuracy(s) for s in ("complete", "image", "label", "sound", "trajectory")),
            (
                Row(
                    "gmc",
                    "GMC",
                    "gmc_mhd",
                    (_DOWNSTREAM,),
                    {"complete": 100.0, "image": 99.75, "label": 100.0, "sound": 93.04, "trajectory": 99.96},
                ),
                *(Row(n, label, r, (_DOWNSTREAM,)) for n, label, r in _MHD[1:]),
                Row("mfm", "MFM-style (no label input)", "factorized_mhd", (_DOWNSTREAM,)),
                Row("clip", "CLIP-style pairwise InfoNCE (ours, not in the paper)", "clip_mhd", (_DOWNSTREAM,)),
            ),
            (
                "Protocol: the `downstream` evaluator (an MLP on frozen complete-observation representations, "
                "the recipe's classifier seeds per run unless the command overrides them, tested with only each "
                "column's modalities); MHD built locally, not "
                "the paper's data (see the section above).",
                _UNTRANSCRIBED,
            ),
        ),
        Table(
            "gmc-table2",
            "GMC's Table 2 on MHD: DCA of each modality's representations against the joint ones",
            tuple(
                Column(f"{m} {label}", "dca", (("scores", m, key),), scale=1.0, digits=2)
                for m in ("image", "label", "sound", "trajectory")
                for label, key in (("P", "precision"), ("R", "recall"), ("F1", "f1"), ("q", "network_quality"))
            ),
            (
                *(Row(n, label, r, (_DCA,)) for n, label, r in _MHD),
                Row("clip", "CLIP-style pairwise InfoNCE (ours)", "clip_mhd", (_DCA,)),
            ),
            (
                "R = joint representations of 10,000 complete test observations, E = one modality's (the "
                "label's deduplicated to its 10 points). P precision (the share of E in components shared with "
                "R), R recall (the share of R in components shared with E), q network "
                "quality (about 0.5 where E and R mix, 0 where apart). Network consistency is not shown: it "
                "only counts points (1.0 for 10,000 against 10,000, 0.002 for the label's 10 points).",
                PAPER_SCORE_NOTE,
            ),
        ),
        _trifeatures_table(
            "comm-trifeatures",
            "CoMM on bimodal Trifeatures: balanced accuracy (%) of logistic probes",
            (
                ("comm", "CoMM", "comm_trifeatures", 99.9, 87.8, 71.9),
                ("cross", "Cross", "cross_trifeatures", 100.0, 11.6, 50.0),
                ("crossself", "Cross+Self", "crossself_trifeatures", 99.7, 86.9, 50.0),
            ),
            "Data seed 0 for every run.",
        ),
        _trifeatures_table(
            "comm-trifeatures-224",
            "CoMM on bimodal Trifeatures at the paper's scale (224 px, AlexNet tokens): balanced accuracy (%)",
            (("comm224", "CoMM, 224 px, AlexNet", "comm_trifeatures_224", 99.9, 87.8, 71.9),),
            "Data seed 0 for every run. A GPU run: on a 2-core CPU one step of batch 64 took 41 s "
            "(`benchmarks/comm_trifeatures_224.py`), about 178 hours for 100 epochs, and the 224-px data set needs "
            "about 17 GB of RAM as float32 (51 GB at the probes' peak).",
        ),
        Table(
            "pendulum",
            "GMC's pendulum: DDPG episode return (0 is best) from frozen representations",
            tuple(Column(s, "control", (("returns", s),), scale=1.0, digits=1) for s in ("complete", "image", "sound")),
            (
                Row("gmc", "GMC", "gmc_pendulum", (_CONTROL,)),
                Row("clip", "CLIP-style pairwise InfoNCE (ours)", "clip_pendulum", (_CONTROL,)),
            ),
            (
                "Each run's cell is the mean return over the evaluation episodes (20 by default) of its DDPG "
                "controller (seeded by the run's seed), trained on complete observations. The paper reports this "
                "experiment as curves; no numbers are transcribed here.",
            ),
            backends=("tensorflow",),  # the control evaluator's DDPG is written in TensorFlow
        ),
    )
}


# ---------------------------------------------------------------------------------------------
# The runs
# ---------------------------------------------------------------------------------------------
@dataclass
class Run:
    """One ``mmkeras train`` of one row, variant and seed."""

    row: str
    group: str  # the row's directory: its name, or <name>-<variant>
    seed: int
    path: Path
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    recipe: Any = None  # the loaded recipe (None in tests that build runs by hand)
    evaluators: tuple[str, ...] = ()

    @property
    def log(self) -> Path:
        return self.path.parent / f"{self.path.name}.log"

    @property
    def timing(self) -> Path:
        return self.path.parent / f"{self.path.name}.time.json"

    @property
    def name(self) -> str:
        return f"{self.group} seed {self.seed}"

    def command(self) -> str:
        """The command as a user would type it."""
        argv = list(self.argv)
        if argv[:3] == [sys.executable, "-m", "mmkeras.cli"]:
            argv = ["mmkeras", *argv[3:]]
        env = " ".join(f"{k}={v}" for k, v in self.env.items())
        return (env + " " if env else "") + shlex.join(argv)


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def plan(
    table: Table,
    seeds: int,
    runs_dir: Path,
    epochs: int | None = None,
    backend: str | None = None,
    sets: Sequence[str] = (),
    rows: Sequence[str] | None = None,
) -> list[Run]:
    """Every run of ``table``: rows x variants x seeds 0..seeds-1, each recipe loaded and checked.
    Overrides in order: the row's, the variant's, ``seed=k``, ``train.epochs``, then ``sets``."""
    from mmkeras.recipe import load_recipe

    chosen = [r for r in table.rows if rows is None or r.name in rows]
    runs = []
    for row in chosen:
        recipe_file = RECIPES / f"{row.recipe}.yaml"
        for variant, extra in row.variants.items():
            group = f"{row.name}-{variant}" if variant else row.name
            needed = tuple(sorted({c.evaluator for c in table.columns if c.variant == variant}))
            for seed in range(seeds):
                overrides = [o.replace("{seed}", str(seed)) for o in (*row.overrides, *extra)]
                overrides.append(f"seed={seed}")
                if epochs is not None:
                    overrides.append(f"train.epochs={epochs}")
                overrides += list(sets)
                path = runs_dir / table.name / group / f"seed{seed}"
                recipe = load_recipe(str(recipe_file), overrides)  # a bad --set fails here, before any run
                argv = [sys.executable, "-m", "mmkeras.cli", "train", _display_path(recipe_file)]
                for o in overrides:
                    argv += ["--set", o]
                argv += ["--output", _display_path(path), "--verbose", "2"]
                env = {"KERAS_BACKEND": backend} if backend else {}
                runs.append(Run(row.name, group, seed, path, argv, env, recipe, needed))
    return runs


def status(run: Run) -> tuple[str, str]:
    """("finished" | "partial" | "new" | "conflict", why). Finished: metrics.json holds every
    evaluation the table reads and at least the recipe's epochs, and the directory's recipe is this one."""
    if not run.path.exists():
        return "new", ""
    from mmkeras.errors import MMKerasError
    from mmkeras.runs import RunDirectory

    directory = RunDirectory(run.path)
    if run.recipe is not None:
        try:
            directory.check_recipe(run.recipe)
        except MMKerasError as exc:
            return "conflict", str(exc)
        if directory.recipe_file.exists() and _evaluators_of(directory.recipe_file) != run.recipe.to_dict()["evaluate"]:
            return "partial", "its evaluators differ from the table's: it will be evaluated again"
    if not directory.metrics_file.exists():
        return "partial", "no metrics.json yet"
    try:
        metrics = json.loads(directory.metrics_file.read_text())
    except (OSError, ValueError) as exc:
        return "partial", f"metrics.json unreadable ({exc})"
    missing = [e for e in run.evaluators if e not in metrics.get("evaluation", {})]
    if missing or not metrics.get("evaluation"):
        return "partial", f"metrics.json lacks {', '.join(missing) or 'an evaluation'}"
    wanted = run.recipe.train.epochs if run.recipe is not None else 0
    if (metrics.get("epochs") or 0) < wanted:
        return "partial", f"{metrics.get('epochs')} of {wanted} epochs"
    return "finished", ""


def _evaluators_of(recipe_file: Path) -> Any:
    """The ``evaluate`` list of a run directory's recipe.yaml, with defaults filled in as on loading."""
    import yaml

    from mmkeras.recipe import recipe_from_dict

    try:
        return recipe_from_dict(yaml.safe_load(recipe_file.read_text(encoding="utf-8"))).to_dict()["evaluate"]
    except Exception:  # noqa: BLE001 - unreadable: evaluate again, which rewrites it
        return None


def _previous_wall(run: Run) -> float:
    try:
        return float(json.loads(run.timing.read_text())["wall_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


def _last_line(log: Path) -> str:
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


@dataclass
class Outcome:
    run: Run
    state: str  # "skipped" | "trained" | "failed"
    seconds: float = 0.0
    message: str = ""


def launch(run: Run) -> tuple[int, float]:
    """Run ``run.argv``, appending its output to ``run.log``; (exit status, seconds)."""
    run.path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"), **run.env}
    start = time.monotonic()
    with open(run.log, "a", encoding="utf-8") as log:
        log.write(f"\n=== {datetime.datetime.now().isoformat(timespec='seconds')}: {run.command()}\n")
        log.flush()
        code = subprocess.call(run.argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    return code, time.monotonic() - start


def prepare_data(runs: list[Run], say: Callable[[str], None] = print) -> None:
    """Build each data set the runs train on once, here, so that parallel runs do not each build it."""
    from mmkeras.builder import make_dataset

    done = set()
    for run in runs:
        if run.recipe is None:
            continue
        key = json.dumps([run.recipe.data.dataset, run.recipe.data.params], sort_keys=True, default=str)
        if key in done:
            continue
        done.add(key)
        say(f"data: {run.recipe.data.dataset} {run.recipe.data.params}")
        try:
            make_dataset(run.recipe).prepare()
        except Exception as exc:  # noqa: BLE001 - the runs report it again, each in its log
            say(f"warning: preparing the data failed ({type(exc).__name__}: {exc}); the runs will try again")


def execute(
    runs: list[Run],
    parallel: int = 1,
    say: Callable[[str], None] = print,
    check: Callable[[Run], tuple[str, str]] = status,
    prepare: Callable[[list[Run]], None] | None = None,
) -> list[Outcome]:
    """Skip the finished runs, run the others ``parallel`` at a time; a line for each as it ends.
    ``prepare`` is called with the runs to start, before any starts."""
    outcomes: list[Outcome] = []
    todo: list[Run] = []
    lock = threading.Lock()
    total = len(runs)

    def report(outcome: Outcome) -> None:
        with lock:
            outcomes.append(outcome)
            say(f"[{len(outcomes)}/{total}] {outcome.message}")

    for run in runs:
        state, why = check(run)
        if state == "finished":
            report(Outcome(run, "skipped", _previous_wall(run), f"{run.name}: already finished, skipped"))
        elif state == "conflict":
            report(Outcome(run, "failed", 0.0, f"FAILED {run.name}: {why} (pass another --runs-dir)"))
        else:
            todo.append(run)

    if todo and prepare is not None:
        prepare(todo)

    def one(run: Run) -> Outcome:
        code, seconds = launch(run)
        wall = _previous_wall(run) + seconds  # a resumed run's time adds to its earlier attempts'
        run.timing.write_text(json.dumps({"wall_s": round(wall, 1), "last_exit_status": code}))
        if code == 0 and check(run)[0] == "finished":
            return Outcome(run, "trained", wall, f"{run.name}: finished in {seconds:.0f} s (total {wall:.0f} s)")
        why = f"exit status {code}" if code else "exit status 0 but " + check(run)[1]
        last = _last_line(run.log)
        return Outcome(
            run,
            "failed",
            wall,
            f"FAILED {run.name} ({why}) after {seconds:.0f} s: {last}\n    log: {_display_path(run.log)}",
        )

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        for future in as_completed([pool.submit(one, r) for r in todo]):
            report(future.result())
    order = {id(r): i for i, r in enumerate(runs)}
    return sorted(outcomes, key=lambda o: order[id(o.run)])


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------
def _leaf(node: Any, path: tuple[str, ...]) -> float | None:
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    if isinstance(node, dict):
        node = node.get("mean")
    return float(node) if isinstance(node, (int, float)) and not isinstance(node, bool) else None


def cell_value(metrics: dict[str, Any], column: Column) -> float | None:
    """The column's number for one run, or None when the run has no such result."""
    results = metrics.get("evaluation", {}).get(column.evaluator)
    values = [_leaf(results, p) for p in column.paths]
    if results is None or any(v is None for v in values):
        return None
    return column.scale * sum(values) / len(values)  # type: ignore[arg-type]


def mean_std(values: Sequence[float]) -> dict[str, Any]:
    """Mean and population standard deviation (ddof 0) of ``values``."""
    n = len(values)
    if not n:
        return {"mean": None, "std": None, "n": 0, "values": []}
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / n)
    return {"mean": mean, "std": std, "n": n, "values": list(values)}


def aggregate(table: Table, runs: list[Run], walls: dict[int, float] | None = None) -> list[dict[str, Any]]:
    """Per row: each column's mean ± std over the seeds whose run has the number, the paper's
    number, the epochs, and the wall time per seed (summed over the row's variants)."""
    walls = walls or {}
    out = []
    for row in table.rows:
        mine = [r for r in runs if r.row == row.name]
        if not mine:
            continue
        metrics: dict[tuple[str, int], dict[str, Any]] = {}
        for r in mine:
            try:
                metrics[(r.group, r.seed)] = json.loads((r.path / "metrics.json").read_text())
            except (OSError, ValueError):
                continue
        seeds = sorted({r.seed for r in mine})
        cells = {}
        for column in table.columns:
            group = f"{row.name}-{column.variant}" if column.variant else row.name
            found = [cell_value(metrics[(group, s)], column) for s in seeds if (group, s) in metrics]
            cells[column.name] = mean_std([v for v in found if v is not None])
        per_seed = [sum(walls.get(id(r), _previous_wall(r)) for r in mine if r.seed == s) for s in seeds]
        epochs = sorted({m.get("epochs") for m in metrics.values() if m.get("epochs") is not None})
        if not epochs:
            epochs = sorted({r.recipe.train.epochs for r in mine if r.recipe is not None})
        out.append(
            {
                "name": row.name,
                "label": row.label,
                "recipe": row.recipe,
                "paper": dict(row.paper),
                "epochs": epochs,
                "cells": cells,
                "wall_s": mean_std([w for w in per_seed if w > 0]),
                "runs": [{"group": r.group, "seed": r.seed, "dir": str(r.path)} for r in mine],
            }
        )
    return out


def hardware(backend: str | None) -> dict[str, Any]:
    """CPU model, cores (the machine's and this process's), GPUs that JAX sees, and the backend."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    gpus: list[str] = []
    probe = "import jax; print('\\n'.join(d.device_kind for d in jax.devices() if d.platform == 'gpu'))"
    try:
        found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
        gpus = [g for g in found.stdout.splitlines() if g.strip()] if found.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired):
        pass
    if backend is None:
        backend = os.environ.get("KERAS_BACKEND")
    if backend is None:
        try:
            backend = json.loads((Path.home() / ".keras" / "keras.json").read_text()).get("backend")
        except (OSError, ValueError):
            backend = None
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "gpus": gpus,
        "backend": backend or "tensorflow",
    }


def _fmt(stats: dict[str, Any], digits: int, seeds: int) -> str:
    if not stats["n"]:
        return ""
    text = f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"
    return text + (f" (n={stats['n']})" if stats["n"] < seeds else "")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 600 else f"{seconds / 60:.0f} min"


def markdown(table: Table, rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    """The table, then how it was made."""
    seeds = len(info["seeds"])
    head = ["model", "recipe", "epochs", *[c.name for c in table.columns], "wall time per seed"]
    lines = [
        f"**{table.title}.** Mean ± std (ddof 0) over seeds {', '.join(map(str, info['seeds']))}; "
        "the paper's number in brackets.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for row in rows:
        cells = []
        for c in table.columns:
            text = _fmt(row["cells"][c.name], c.digits, seeds)
            paper = row["paper"].get(c.name)
            cells.append(f"{text} [{paper:g}]".strip() if paper is not None else text)  # as the paper prints it
        wall = row["wall_s"]
        lines.append(
            f"| {row['label']} | `{row['recipe']}` | {', '.join(map(str, row['epochs']))} | "
            + " | ".join(cells)
            + f" | {_duration(wall['mean']) if wall['n'] else ''} |"
        )
    hw = info["hardware"]
    gpu = ", ".join(hw["gpus"]) if hw["gpus"] else "none that JAX sees"
    lines += [
        "",
        f"- Hardware: {hw['cpu']}, {hw['cores']} cores ({hw['usable_cores']} usable); GPU: {gpu}. "
        f"Backend: {hw['backend']}.",
        f"- Seeds: {seeds} (the recipe's `seed` per run); epochs: "
        + (f"{info['epochs']} (`--epochs`)" if info["epochs"] else "each recipe's")
        + f"; runs: {info['finished']} of {info['runs']} finished; wall time of all runs: "
        f"{_duration(info['wall_s'])} (summed over runs).",
        f"- Command: `{info['command']}` (generated {info['date']}).",
        *[f"- {note}" for note in table.notes],
    ]
    return "\n".join(lines) + "\n"


def write_docs(path: Path, table: str, text: str) -> None:
    """Replace what lies between this table's markers in ``path``; nothing else changes."""
    start, end = f"<!-- reproduce:{table}:start -->", f"<!-- reproduce:{table}:end -->"
    doc = path.read_text(encoding="utf-8")
    if doc.count(start) != 1 or doc.count(end) != 1 or doc.index(start) > doc.index(end):
        raise SystemExit(
            f"error: {path} needs exactly one {start} followed by one {end}; "
            f"found {doc.count(start)} and {doc.count(end)}"
        )
    before, rest = doc.split(start, 1)
    _, after = rest.split(end, 1)
    path.write_text(before + start + "\n" + text.rstrip("\n") + "\n" + end + after, encoding="utf-8")


def _command(args: argparse.Namespace) -> str:
    """The reproduction command, without the options that do not change the numbers."""
    parts = ["python", "scripts/reproduce.py", args.table, "--seeds", str(args.seeds)]
    if args.epochs is not None:
        parts += ["--epochs", str(args.epochs)]
    if args.backend:
        parts += ["--backend", args.backend]
    if args.rows:
        parts += ["--rows", args.rows]
    for s in args.set:
        parts += ["--set", s]
    return shlex.join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", choices=sorted(TABLES))
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per row (default 3)")
    parser.add_argument("--epochs", type=int, default=None, help="train.epochs of every run (default: the recipe's)")
    parser.add_argument("--backend", choices=["jax", "tensorflow"], default=None, help="KERAS_BACKEND of the runs")
    parser.add_argument("--parallel", type=int, default=1, help="runs at once (default 1)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="override every run")
    parser.add_argument("--rows", default=None, help="comma-separated row names (default: every row)")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/reproduce"))
    parser.add_argument("--write-docs", action="store_true", help=f"write the table into {DOCS.relative_to(ROOT)}")
    parser.add_argument("--dry-run", action="store_true", help="print the runs (commands), start nothing")
    args = parser.parse_args(argv)
    table = TABLES[args.table]
    if args.seeds < 1 or args.parallel < 1 or (args.epochs is not None and args.epochs < 1):
        parser.error("--seeds, --parallel and --epochs must be at least 1")
    if args.backend and args.backend not in table.backends:
        only = " or ".join(table.backends)
        parser.error(f"{args.table} runs on the {only} backend only, not --backend {args.backend}")
    rows = args.rows.split(",") if args.rows else None
    unknown = [r for r in rows or [] if r not in {row.name for row in table.rows}]
    if unknown:
        parser.error(f"--rows: {', '.join(unknown)} not in {args.table} ({', '.join(r.name for r in table.rows)})")

    from mmkeras.errors import MMKerasError

    try:
        runs = plan(table, args.seeds, args.runs_dir, args.epochs, args.backend, args.set, rows)
    except MMKerasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        for run in runs:
            state, why = status(run)
            print(f"# {run.name}: {state}{f' ({why})' if why else ''}\n{run.command()}")
        print(f"# {len(runs)} runs; nothing started (--dry-run)")
        return 0

    outcomes = execute(runs, args.parallel, prepare=prepare_data)
    failed = [o for o in outcomes if o.state == "failed"]
    counts = {s: sum(o.state == s for o in outcomes) for s in ("trained", "skipped", "failed")}
    print(
        f"{len(runs)} runs: {counts['trained']} trained, {counts['skipped']} already finished (skipped), "
        f"{counts['failed']} failed"
    )
    walls = {id(o.run): o.seconds for o in outcomes}
    rows_out = aggregate(table, runs, walls)
    info = {
        "table": table.name,
        "seeds": list(range(args.seeds)),
        "epochs": args.epochs,
        "backend": args.backend,
        "sets": list(args.set),
        "command": _command(args),
        "date": datetime.date.today().isoformat(),
        "hardware": hardware(args.backend),
        "runs": len(runs),
        "finished": len(runs) - len(failed),
        "wall_s": sum(walls.values()),
    }
    text = markdown(table, rows_out, info)
    print()
    print(text)
    out_dir = args.runs_dir / table.name
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "table.md").write_text(text, encoding="utf-8")
    record = {**info, "title": table.title, "rows": rows_out, "failed": [str(o.run.log) for o in failed]}
    (out_dir / "table.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    print(f"written: {out_dir / 'table.md'}, {out_dir / 'table.json'}")
    if args.write_docs:
        write_docs(DOCS, table.name, text)
        print(f"written: {DOCS} (between the reproduce:{table.name} markers)")
    if failed:
        print(f"error: {len(failed)} runs failed:", file=sys.stderr)
        for o in failed:
            print(f"  {o.run.name}: {_display_path(o.run.log)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
