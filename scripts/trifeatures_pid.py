"""The partial information decomposition of CoMM's, Cross's and Cross+Self's Trifeatures representations,
next to the data set's known structure: one table for docs/results.md.

    python scripts/trifeatures_pid.py [--runs-dir runs/reproduce] [--clusters 10] [--seeds 3] [--write-docs]

Reads the runs of ``python scripts/reproduce.py comm-trifeatures`` (``RUNS_DIR/comm-trifeatures/<row>-
<unbiased|biased>/seed<k>``), evaluates the ``pid`` evaluator on each finished one (``mmkeras evaluate``
with ``tasks`` R/U1/U2/S on the unbiased test pairs; a run that already holds this evaluation with the
same settings is not evaluated again) and prints, per row and pretraining, the decomposition of each
task's label over (image 1's representation, image 2's representation) in bits, mean ± std over
the representation seeds. Trifeatures' structure says where each label's information lies:
the shape (R) is in both images, so all of its 3.32 bits are redundancy; each texture (U1, U2) is
in one image only, all unique; the synergy label S (0.47 bits, 10% positive) is in neither image
alone, all synergy. Each part is also given less the same part with the labels permuted (the
plug-in bias of the discretised estimate), and a task's cell is the part its structure names.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import reproduce  # noqa: E402  (scripts/reproduce.py: mean_std, write_docs and the docs' path)

TABLE = "trifeatures-pid"
FIGURE = ROOT / "docs" / "figures" / "trifeatures_pid.png"
ROWS = (("comm", "CoMM"), ("cross", "Cross"), ("crossself", "Cross+Self"))
PAIR = "image1+image2"
#: task -> (label, the part of the decomposition Trifeatures' construction puts its information in)
TASKS = {"R": ("shared", "redundancy"), "U1": ("unique1", "unique1"), "U2": ("unique2", "unique2")}
TASKS["S"] = ("synergy", "synergy")
PARTS = ("redundancy", "unique1", "unique2", "synergy")


def pid_spec(recipe: dict[str, Any], clusters: int, seeds: int) -> dict[str, Any]:
    """The pid evaluator for a run: the run's Trifeatures (size, image size, data seed), unbiased test pairs."""
    data = dict(recipe["data"]["params"])
    params = {k: data[k] for k in ("size", "image_size", "seed") if k in data}
    params["biased"] = False
    return {
        "name": "pid",
        "params": {
            "clusters": clusters,
            "seeds": seeds,
            "dataset": "trifeatures",
            "dataset_params": params,
            "tasks": {name: {"task": label} for name, (label, _) in TASKS.items()},
        },
    }


def evaluated(run: Path, spec: dict[str, Any]) -> dict[str, Any] | None:
    """The run's pid results if it holds them for this spec (same clusters, seeds and tasks)."""
    metrics = json.loads((run / "metrics.json").read_text())
    found = metrics.get("evaluation", {}).get("pid")
    p = spec["params"]
    if found and found.get("clusters") == p["clusters"] and found.get("seeds") == p["seeds"]:
        if set(found.get("tasks", {})) == set(TASKS):
            return found
    return None


def finished(run: Path) -> bool:
    """Trained and evaluated by the recipe (its probes are in metrics.json): not a run still training."""
    try:
        return "logistic_probe" in json.loads((run / "metrics.json").read_text()).get("evaluation", {})
    except (OSError, ValueError):
        return False


def run_pid(run: Path, clusters: int, seeds: int) -> dict[str, Any]:
    import yaml

    from mmkeras.recipe import ComponentSpec
    from mmkeras.runs import evaluate_run

    spec = pid_spec(yaml.safe_load((run / "recipe.yaml").read_text()), clusters, seeds)
    found = evaluated(run, spec)
    if found is None:
        print(f"pid: evaluating {run}", flush=True)
        evaluate_run(run, [ComponentSpec(**spec)])
        found = evaluated(run, spec)
    return found


def cell(results: list[dict[str, Any]], task: str, part: str) -> dict[str, Any]:
    """Over seeds: the part in bits, the same less its permuted-label value, and its share of the total."""
    pairs = [r["tasks"][task]["pairs"][PAIR] for r in results]
    raw = reproduce.mean_std([p["bits"][part]["mean"] for p in pairs])
    corrected = reproduce.mean_std([p["bits"][part]["mean"] - p["baseline"][part] for p in pairs])
    share = reproduce.mean_std([p["fraction"][part] or 0.0 for p in pairs])
    entropy = results[0]["tasks"][task]["label_entropy"]
    return {"bits": raw, "corrected": corrected, "share": share, "entropy": entropy}


def collect(runs_dir: Path, clusters: int, seeds: int) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    for name, label in ROWS:
        for variant in ("unbiased", "biased"):
            group = runs_dir / "comm-trifeatures" / f"{name}-{variant}"
            runs = sorted(p for p in group.glob("seed*") if p.is_dir() and finished(p))
            if not runs:
                continue
            results = [run_pid(r, clusters, seeds) for r in runs]
            table[f"{name}-{variant}"] = {
                "label": label,
                "variant": variant,
                "seeds": [r.name for r in runs],
                "cells": {t: {part: cell(results, t, part) for part in PARTS} for t in TASKS},
                "total": {
                    t: reproduce.mean_std([r["tasks"][t]["pairs"][PAIR]["bits"]["total"]["mean"] for r in results])
                    for t in TASKS
                },
                "permuted": {
                    t: reproduce.mean_std([r["tasks"][t]["pairs"][PAIR]["baseline"]["total"] for r in results])
                    for t in TASKS
                },
            }
    return table


def _pm(stats: dict[str, Any], digits: int = 2) -> str:
    return "" if not stats["n"] else f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def markdown(table: dict[str, dict[str, Any]], clusters: int, seeds: int, command: str) -> str:
    if not table:
        return "_No finished comm-trifeatures runs found: run `python scripts/reproduce.py comm-trifeatures` first._"
    any_row = next(iter(table.values()))
    entropy = {t: any_row["cells"][t]["redundancy"]["entropy"] for t in TASKS}
    lines = [
        "**The PID of Trifeatures representations** (`pid` evaluator, BROJA; image 1's and image 2's "
        f"representations each discretised by k-means into {clusters} clusters, {seeds} k-means seeds, 4,096 unbiased "
        "test pairs): for each label, the part of I(Z1,Z2;Y) that Trifeatures' construction puts all of its "
        "information in, in bits, mean ± std over representation seeds; in brackets the same less its value "
        "with the labels permuted (the plug-in bias).",
        "",
        "| model | pretraining | R task: redundancy | U1 task: unique to image 1 | U2 task: unique to image 2 "
        "| S task: synergy | total I(Z1,Z2;Y), R / U1 / U2 / S |",
        "|---|---|---|---|---|---|---|",
        "| the data set's structure | | "
        + " | ".join(f"{entropy[t]:.2f}" for t in TASKS)
        + " | "
        + " / ".join(f"{entropy[t]:.2f}" for t in TASKS)
        + " |",
    ]
    for row in table.values():
        cells = []
        for task, (_, part) in TASKS.items():
            c = row["cells"][task][part]
            cells.append(f"{_pm(c['bits'])} [{c['corrected']['mean']:.2f}] ({100 * c['share']['mean']:.0f}%)")
        totals = " / ".join(f"{row['total'][t]['mean']:.2f}" for t in TASKS)
        lines.append(f"| {row['label']} | {row['variant']} | {' | '.join(cells)} | {totals} |")
    lines += [
        "",
        "Every part of every cell, per row (bits, mean over seeds; permuted-label totals in the last column):",
        "",
        "| model | pretraining | task | redundancy | unique1 | unique2 | synergy | total | permuted |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table.values():
        for task in TASKS:
            parts = " | ".join(f"{row['cells'][task][p]['bits']['mean']:.3f}" for p in PARTS)
            lines.append(
                f"| {row['label']} | {row['variant']} | {task} | {parts} | {row['total'][task]['mean']:.3f} | "
                f"{row['permuted'][task]['mean']:.3f} |"
            )
    lines += ["", f"Command: `{command}` (after `python scripts/reproduce.py comm-trifeatures`)."]
    return "\n".join(lines)


def figure(table: dict[str, dict[str, Any]], path: Path) -> None:
    """One panel per task: each row's decomposition stacked (bits), the permuted-label total as a tick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"redundancy": "#4c72b0", "unique1": "#55a868", "unique2": "#c44e52", "synergy": "#8172b2"}
    names = [f"{r['label']}\n{r['variant']}" for r in table.values()]
    fig, axes = plt.subplots(1, len(TASKS), figsize=(3.2 * len(TASKS), 3.8))
    for ax, (task, (_, expected)) in zip(axes, TASKS.items()):
        bottom = [0.0] * len(table)
        for part in PARTS:
            heights = [r["cells"][task][part]["bits"]["mean"] for r in table.values()]
            ax.bar(names, heights, bottom=bottom, color=colours[part], label=part)
            bottom = [b + h for b, h in zip(bottom, heights)]
        ax.scatter(names, [r["permuted"][task]["mean"] for r in table.values()], color="black", marker="_", s=300)
        entropy = next(iter(table.values()))["cells"][task][expected]["entropy"]
        ax.set_title(f"{task} task: all {entropy:.2f} bits are {expected}", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    axes[0].set_ylabel("bits of I(Z1,Z2;Y)")
    axes[-1].legend(fontsize=7, title="part (tick: permuted labels)", title_fontsize=7)
    fig.suptitle("BROJA decomposition of each Trifeatures label over the two images' representations")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/reproduce"))
    parser.add_argument("--clusters", type=int, default=10, help="k-means clusters per image (default 10)")
    parser.add_argument("--seeds", type=int, default=3, help="k-means seeds (default 3)")
    parser.add_argument("--write-docs", action="store_true", help="write the table into docs/results.md")
    args = parser.parse_args(argv)
    table = collect(args.runs_dir, args.clusters, args.seeds)
    command = "python scripts/trifeatures_pid.py" + (f" --clusters {args.clusters}" if args.clusters != 10 else "")
    command += f" --seeds {args.seeds}" if args.seeds != 3 else ""
    text = markdown(table, args.clusters, args.seeds, command)
    print(text)
    out = args.runs_dir / "comm-trifeatures" / "pid.json"
    if table:
        out.write_text(json.dumps(table, indent=1))
    if args.write_docs and table:
        figure(table, FIGURE)
        text += f"\n\n![PID of Trifeatures representations](figures/{FIGURE.name})"
    if args.write_docs:
        reproduce.write_docs(reproduce.DOCS, TABLE, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
