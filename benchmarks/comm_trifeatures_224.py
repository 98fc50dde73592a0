"""The cost of CoMM on Trifeatures at the paper's scale (``recipes/comm_trifeatures_224.yaml``: two
224-px AlexNets, 72 tokens into the fusion transformer, SimCLR's augmentations) on this machine,
against the 32-px recipe (``recipes/comm_trifeatures.yaml``) measured in the same run.

For each configuration the recipe's model is built for random images in [0, 1] of the recipe's
size (no data set is rendered), a warm-up ``fit`` traces the train step (augmentations included),
then ``--steps`` steps on one fixed batch are timed. Projections: steps per epoch of the full
10,000 training pairs (last partial batch dropped) and hours for the recipe's 100 epochs. These
machines vary about 3x from hour to hour: quote ``ratio_to_32px``, not the seconds.

    python benchmarks/comm_trifeatures_224.py [--steps 2] [--batch-sizes 64 16] [--jit]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parent.parent
RECIPE_224 = ROOT / "recipes" / "comm_trifeatures_224.yaml"
RECIPE_32 = ROOT / "recipes" / "comm_trifeatures.yaml"
TRAIN_PAIRS = 10_000  # Trifeatures "full"


def seconds_per_step(recipe_path: Path, batch_size: int, steps: int, jit: bool) -> dict:
    """Mean seconds of ``steps`` train steps at ``batch_size`` after a one-step warm-up."""
    import keras
    import numpy as np
    import tensorflow as tf

    import mmkeras

    overrides = [f"data.batch_size={batch_size}", f"train.jit_compile={str(jit).lower()}"]
    recipe = mmkeras.load_recipe(recipe_path, overrides)
    side = recipe.data.params["image_size"]
    shapes = {m: [side, side, 3] for m in recipe.modalities}
    keras.utils.clear_session()
    model = mmkeras.build_model(recipe, input_shapes=shapes)
    rng = np.random.default_rng(0)
    x = {m: rng.random((batch_size, *s)).astype("float32") for m, s in shapes.items()}
    x["masks"] = {m: np.ones(batch_size, "float32") for m in shapes}
    y = rng.integers(0, 10, batch_size)
    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=1, epochs=1, verbose=0)  # trace (and compile) the step
    warm_up = time.perf_counter() - start
    start = time.perf_counter()
    history = model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    per_step = (time.perf_counter() - start) / steps
    steps_per_epoch = TRAIN_PAIRS // batch_size
    return {
        "recipe": recipe_path.name,
        "image_size": side,
        "batch_size": batch_size,
        "parameters": int(model.count_params()),
        "warm_up_s": round(warm_up, 1),
        "timed_steps": steps,
        "seconds_per_step": round(per_step, 3),
        "steps_per_epoch": steps_per_epoch,
        "projected_hours": round(per_step * steps_per_epoch * recipe.train.epochs / 3600, 1),
        "projected_for_epochs": recipe.train.epochs,
        "loss_finite": bool(np.isfinite(history.history["loss"][-1])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2, help="timed steps per 224-px configuration")
    parser.add_argument("--steps-32", type=int, default=10, help="timed steps of the 32-px recipe")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 16])
    parser.add_argument("--jit", action="store_true", help="XLA on (minutes of compiling on a CPU)")
    args = parser.parse_args()
    import keras
    import tensorflow as tf

    start = time.perf_counter()
    reference = seconds_per_step(RECIPE_32, 64, args.steps_32, args.jit)
    runs = [seconds_per_step(RECIPE_224, b, args.steps, args.jit) for b in args.batch_sizes]
    for run in runs:
        # per sample, so that batch 16 compares with the 32-px recipe's batch 64 too
        ratio = (run["seconds_per_step"] / run["batch_size"]) / (reference["seconds_per_step"] / 64)
        run["ratio_to_32px_per_sample"] = round(ratio, 1)
    print(
        json.dumps(
            {
                "benchmark": "comm_trifeatures_224",
                "backend": keras.backend.backend(),
                "jit_compile": args.jit,
                "reference_32px": reference,
                "runs_224px": runs,
                "wall_s": round(time.perf_counter() - start, 1),
                "devices": [d.name for d in tf.config.list_logical_devices()],
                "cpu_count": os.cpu_count(),
                "machine": platform.machine(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
