"""Training throughput of a recipe's model (default: GMC on MHD), in samples per second, with
XLA on and off and, optionally, mixed precision. Random inputs of the recipe's shapes, so no
data set is needed; the same step count in each configuration, measured after a warm-up.

    python benchmarks/train_throughput.py [--recipe recipes/gmc_mhd.yaml] [--steps 50]

Prints one JSON object. Compare ratios from one run only: these machines are shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MHD_SHAPES = {"image": [28, 28, 1], "sound": [32, 128], "trajectory": [200], "label": [10]}


def measure(recipe_path: str, steps: int, jit: bool, precision: str | None, shapes: dict) -> float:
    import keras
    import numpy as np
    import tensorflow as tf

    import mmkeras

    overrides = [f"train.jit_compile={str(jit).lower()}", f"train.mixed_precision={precision or 'null'}"]
    recipe = mmkeras.load_recipe(recipe_path, overrides)
    model = mmkeras.build_model(recipe, {m: shapes[m] for m in recipe.modalities})
    batch = recipe.data.batch_size
    rng = np.random.default_rng(0)
    x = {m: rng.normal(size=[batch] + shapes[m]).astype("float32") for m in recipe.modalities}
    y = rng.integers(0, 10, size=batch)
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(ds, steps_per_epoch=5, epochs=1, verbose=0)  # trace and compile
    start = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    keras.mixed_precision.set_global_policy("float32")
    return steps * batch / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="recipes/gmc_mhd.yaml")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--mixed-precision", action="store_true", help="also measure bfloat16 and float16")
    args = parser.parse_args()
    import tensorflow as tf

    configs = [("xla", True, None), ("no_xla", False, None)]
    if args.mixed_precision:
        configs += [("xla_bfloat16", True, "bfloat16"), ("xla_float16", True, "float16")]
    result = {name: round(measure(args.recipe, args.steps, jit, prec, MHD_SHAPES), 1) for name, jit, prec in configs}
    print(
        json.dumps(
            {
                "benchmark": "train_throughput",
                "recipe": args.recipe,
                "steps": args.steps,
                "samples_per_second": result,
                "xla_speedup": round(result["xla"] / result["no_xla"], 2),
                "devices": [d.name for d in tf.config.list_logical_devices()],
                "cpu_count": os.cpu_count(),
                "machine": platform.machine(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
