"""``encode`` of 10,000 MHD rows and the evaluation phase of ``gmc_mhd_quick``, for this checkout
and for an earlier commit, in one run on one machine. Prints one JSON object.

    python benchmarks/encode_speed.py --baseline 56d38bc

Each tree is measured in its own process, alternating, ``--repeats`` times; the model is the
recipe's, freshly initialised (speed does not depend on the weights). ``encode``: the complete
set of modalities and each single modality, three calls each (the current encoder runs a subset
eagerly at first and compiles it once it has encoded ``EAGER_BATCHES`` batches).
``evaluate``: every evaluator of the recipe, as ``mmkeras train`` runs them after training.
The earlier commit is unpacked with ``git archive`` into a temporary folder; its components are
registered from its own ``pyproject.toml`` files, so each process runs one tree's code only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROWS = 10_000
CALLS = ("first", "second", "third")


def measure(tree: Path, recipe_path: str, rows: int) -> dict:
    """Runs inside a fresh process whose ``sys.path`` starts with ``tree``."""
    import numpy as np
    import tomllib

    from mmkeras.recipe import load_recipe
    from mmkeras.registry import registry

    for project in [tree / "pyproject.toml", tree / "plugins" / "mmkeras-mhd" / "pyproject.toml"]:
        tables = tomllib.loads(project.read_text())["project"].get("entry-points", {})
        for group, entries in tables.items():
            kind = group.removeprefix("mmkeras.")
            if group == "mmkeras.api" or kind not in (
                "encoders",
                "fusions",
                "heads",
                "objectives",
                "datasets",
                "evaluators",
            ):
                continue
            for name, target in entries.items():
                module, attr = target.split(":")
                try:
                    cls = getattr(__import__(module, fromlist=[attr]), attr)
                except Exception:  # noqa: BLE001 - an optional component this benchmark does not use
                    continue
                registry.add(kind, name, cls, override=True)

    import mmkeras
    from mmkeras.runs import RunDirectory, evaluate, load_splits

    recipe = load_recipe(str(ROOT / recipe_path))
    _, splits = load_splits(recipe)
    train = splits["train"]
    model = mmkeras.build_model(recipe, compile=False)
    repeat = -(-rows // len(train.labels))
    x = {m: np.concatenate([train.inputs[m]] * repeat)[:rows] for m in model.modalities}
    out: dict = {"tree": str(tree), "rows": rows, "encode_s": {}}
    for subset in [model.modalities] + [[m] for m in model.modalities]:
        key = "+".join(subset)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            z = model.encode(x, modalities=subset)
            times.append(time.perf_counter() - start)
        assert z.shape[0] == rows
        out["encode_s"][key] = dict(zip(CALLS, times))
    out["evaluator_s"] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in recipe.evaluate:  # one at a time, as `train` runs them, to say where the time goes
            start = time.perf_counter()
            evaluate(model, [spec], splits, RunDirectory(tmp))
            out["evaluator_s"][spec.name] = time.perf_counter() - start
    out["evaluate_s"] = sum(out["evaluator_s"].values())
    return out


def _run(tree: Path, args: argparse.Namespace) -> dict:
    code = (
        "import sys, json; sys.path[:0] = [sys.argv[1], sys.argv[1] + '/plugins/mmkeras-mhd']; "
        "sys.path.insert(0, sys.argv[2]); import encode_speed as b; "
        "print('RESULT' + json.dumps(b.measure(b.Path(sys.argv[1]), sys.argv[3], int(sys.argv[4]))))"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(tree), str(ROOT / "benchmarks"), args.recipe, str(args.rows)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tempfile.gettempdir(),  # so the checkout's own mmkeras is not found first through the cwd
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT")]
    if done.returncode != 0 or not lines:
        sys.exit(f"{tree}: exit {done.returncode}\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT") :])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", default="56d38bc", help="the earlier commit to compare with")
    p.add_argument("--recipe", default="recipes/gmc_mhd_quick.yaml")
    p.add_argument("--rows", type=int, default=ROWS)
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        baseline = Path(tmp) / "baseline"
        baseline.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(baseline)], input=archive.stdout, check=True)
        results: dict[str, list[dict]] = {"baseline": [], "current": []}
        for _ in range(args.repeats):
            results["baseline"].append(_run(baseline, args))
            results["current"].append(_run(ROOT, args))

    def median(which: str, get) -> float:
        return statistics.median(get(r) for r in results[which])

    subsets = list(results["current"][0]["encode_s"])
    summary = {
        "baseline": args.baseline,
        "recipe": args.recipe,
        "rows": args.rows,
        **{
            f"encode_{call}_call_s": {
                w: {s: median(w, lambda r, s=s, c=call: r["encode_s"][s][c]) for s in subsets} for w in results
            }
            for call in CALLS
        },
        "evaluate_s": {w: median(w, lambda r: r["evaluate_s"]) for w in results},
        "evaluator_s": {
            w: {e: median(w, lambda r, e=e: r["evaluator_s"][e]) for e in results["current"][0]["evaluator_s"]}
            for w in results
        },
    }
    for call in CALLS:
        summary[f"speedup_encode_{call}_call"] = {
            s: summary[f"encode_{call}_call_s"]["baseline"][s] / summary[f"encode_{call}_call_s"]["current"][s]
            for s in subsets
        }
    summary["speedup_evaluate"] = summary["evaluate_s"]["baseline"] / summary["evaluate_s"]["current"]
    summary["load_average"] = os.getloadavg()
    summary["runs"] = results
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
