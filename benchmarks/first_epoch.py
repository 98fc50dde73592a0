"""The first epoch of a training run: how often the train step is traced and how long the epoch takes,
with the optimizer built before ``fit`` (what ``MultimodalModel.fit`` does) and built inside the first
traced step (Keras's default, what mmkeras did before). Prints one JSON object.

    python benchmarks/first_epoch.py [--repeats 2]

Each (recipe, mode) runs in its own process, alternating, ``--repeats`` times: one epoch of a few
steps on the recipe's data, no evaluation. A variable created inside a ``tf.function``'s first trace
makes TensorFlow trace the function again, so building the optimizer there costs a second trace of
the whole train step: ``traces`` counts the Python calls of ``train_step`` (one per trace).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: recipe -> overrides: one epoch of a few steps on small stand-in data
CASES: dict[str, list[str]] = {
    "comm_mosi.yaml": ["data.params.standin_rows=192"],
    "gmc_mosei_supervised.yaml": ["data.params.standin_rows=96", "train.jit_compile=false"],
    "clip_synthetic.yaml": [],
}


def measure(recipe_name: str, overrides: list[str], inside: bool) -> dict:
    """Runs in a fresh process: one epoch of ``recipe_name``; ``inside``: the optimizer is left to be
    built inside the first traced step."""
    import mmkeras
    import mmkeras.model
    from mmkeras.builder import input_shapes_of
    from mmkeras.data.pipeline import make_dataset
    from mmkeras.runs import load_splits

    if inside:
        mmkeras.model.build_optimizer = lambda model: None  # fit's call becomes a no-op
    recipe = mmkeras.load_recipe(ROOT / "recipes" / recipe_name, ["train.epochs=1", *overrides])
    _, splits = load_splits(recipe)
    modalities = sorted(recipe.modalities)
    model = mmkeras.build_model(recipe, input_shapes_of(splits["train"], modalities))
    data = make_dataset(splits["train"], modalities, recipe.data.batch_size, True, 0, True, False, "data")
    traces = 0
    train_step = type(model).train_step

    def counted(self, *args, **kwargs):
        nonlocal traces
        traces += 1
        return train_step(self, *args, **kwargs)

    type(model).train_step = counted
    start = time.perf_counter()
    model.fit(data, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "traces": traces, "steps": int(model.optimizer.iterations.numpy())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    runs: dict[str, dict[str, list[dict]]] = {name: {"before_fit": [], "inside_step": []} for name in CASES}
    for _ in range(args.repeats):
        for name, overrides in CASES.items():
            for mode in ("inside_step", "before_fit"):  # alternating, in fresh processes
                code = (
                    f"import json, sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import first_epoch; "
                    f"print(json.dumps(first_epoch.measure({name!r}, {overrides!r}, {mode == 'inside_step'})))"
                )
                out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
                if out.returncode:
                    sys.exit(f"{name} ({mode}) failed:\n{out.stderr[-3000:]}")
                runs[name][mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
    result = {"machine": f"{os.cpu_count()} CPUs", "repeats": args.repeats, "recipes": {}}
    for name, modes in runs.items():
        summary = {
            mode: {
                "traces": sorted({r["traces"] for r in rs}),
                "steps": rs[0]["steps"],
                "seconds_median": statistics.median(r["seconds"] for r in rs),
                "seconds": [round(r["seconds"], 2) for r in rs],
            }
            for mode, rs in modes.items()
        }
        summary["ratio_inside_over_before"] = (
            summary["inside_step"]["seconds_median"] / summary["before_fit"]["seconds_median"]
        )
        result["recipes"][name] = summary
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
