"""How much each modality's representation says about the digit, I(z_m; y), for GMC against the
generative baselines (and CLIP) on MHD: one table for docs/results.md.

    python scripts/mhd_mutual_information.py RUN_DIR [RUN_DIR ...] [--steps 200] [--seeds 3] [--write-docs]

Each RUN_DIR is a finished MHD run (for example ``runs/reproduce/gmc-table1/<row>/seed0``). The
``mutual_information`` evaluator is run on it (``mmkeras evaluate``; a run that already holds it with
the same settings is not evaluated again) with labels only: InfoNCE and NWJ lower bounds of
I(z_m; y) per modality, critics trained on the train split, chosen on a fifth of the test rows and
evaluated on the rest (``select_on: test``: the test voices of the `hard` MHD are not in training),
``seeds`` critics each. The table gives nats, mean and 95% interval over critic seeds, next to the
label's entropy log 10 = 2.30 nats, the most any representation can carry.
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

TABLE = "mhd-mutual-information"
MODALITIES = ("image", "sound", "trajectory", "label")
ESTIMATORS = ("infonce", "nwj")


def mi_spec(steps: int, seeds: int) -> dict[str, Any]:
    params = {"pairs": [], "labels": True, "estimators": list(ESTIMATORS), "steps": steps, "seeds": seeds}
    return {"name": "mutual_information", "params": {**params, "select_on": "test"}}


def evaluated(run: Path, spec: dict[str, Any]) -> dict[str, Any] | None:
    """The run's mutual_information results if it holds them for this spec."""
    found = json.loads((run / "metrics.json").read_text()).get("evaluation", {}).get("mutual_information")
    p = spec["params"]
    if found and found.get("steps") == p["steps"] and found.get("seeds") == p["seeds"]:
        if found.get("select_on") == "test" and set(found.get("estimators", [])) == set(ESTIMATORS):
            return found
    return None


def run_mi(run: Path, steps: int, seeds: int) -> dict[str, Any]:
    from mmkeras.recipe import ComponentSpec
    from mmkeras.runs import evaluate_run

    spec = mi_spec(steps, seeds)
    found = evaluated(run, spec)
    if found is None:
        print(f"mutual_information: evaluating {run}", flush=True)
        evaluate_run(run, [ComponentSpec(**spec)])
        found = evaluated(run, spec)
    if found is None:
        raise SystemExit(f"error: {run} did not record the mutual_information evaluation")
    return found


def describe(run: Path) -> dict[str, Any]:
    """The run's recipe name, objective, epochs and MHD realism, from its recipe.yaml."""
    import yaml

    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    return {
        "recipe": recipe.get("name", run.name),
        "objective": recipe["objective"]["name"],
        "epochs": recipe.get("train", {}).get("epochs"),
        "realism": recipe["data"].get("params", {}).get("realism", "default"),
    }


def markdown(rows: list[dict[str, Any]], command: str) -> str:
    lines = [
        "**I(z_m; y) on MHD: what each modality's representation says about the digit**, in nats (at most "
        "log 10 = 2.30), InfoNCE / NWJ lower bounds, mean over critic seeds [95% interval of InfoNCE]; critics "
        "chosen on a fifth of the test rows, evaluated on the others.",
        "",
        "| model | objective | MHD | epochs | " + " | ".join(MODALITIES) + " |",
        "|---|---|---|---|" + "---|" * len(MODALITIES),
    ]
    for row in rows:
        cells = []
        for m in MODALITIES:
            est = row["results"]["estimates"].get(f"{m}; label")
            if not est:
                cells.append("")
                continue
            low, high = est["infonce"]["ci95_nats"] or (est["infonce"]["nats"], est["infonce"]["nats"])
            cells.append(f"{est['infonce']['nats']:.2f} / {est['nwj']['nats']:.2f} [{low:.2f}, {high:.2f}]")
        info = row["info"]
        lines.append(
            f"| {info['recipe']} | `{info['objective']}` | {info['realism']} | {info['epochs']} | {' | '.join(cells)} |"
        )
    lines += ["", f"Command: `{command}`."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--steps", type=int, default=200, help="critic steps (default 200)")
    parser.add_argument("--seeds", type=int, default=3, help="critic seeds (default 3)")
    parser.add_argument("--write-docs", action="store_true", help="write the table into docs/results.md")
    args = parser.parse_args(argv)
    missing = [str(r) for r in args.runs if not (r / "metrics.json").exists()]
    if missing:
        raise SystemExit(f"error: not a finished run (no metrics.json): {', '.join(missing)}")
    rows = [{"info": describe(r), "results": run_mi(r, args.steps, args.seeds)} for r in args.runs]
    command = "python scripts/mhd_mutual_information.py " + " ".join(reproduce._display_path(r) for r in args.runs)
    text = markdown(rows, command)
    print(text)
    if args.write_docs:
        reproduce.write_docs(reproduce.DOCS, TABLE, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
