"""Samples per second of the input pipeline, with augmentations on, against a GMC training step.

Measures, on this machine and in one run:

- ``trifeatures``: :func:`mmkeras.data.pipeline.make_dataset` over Trifeatures pairs (each size in
  ``--trifeatures-sizes``), alone and followed by SimCLR's five image augmentations on both images
  in one ``tf.function(jit_compile=True)``, as the model applies them in training;
- ``mhd`` (when the ``mhd`` dataset is installed): the same over MHD with per-modality augmentations
  (image: crop and blur; sound: time and frequency masks; trajectory: jitter and scaling);
- ``gmc_step``: training steps of the model of ``recipes/gmc_mhd.yaml`` (GMC's MHD architecture,
  loss and batch) on one fixed batch, so that only the step is timed.

Prints one JSON object. ``ratio_mhd_to_gmc_step`` > 1 means the pipeline outpaces training.

    python benchmarks/data_throughput.py --seconds 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import tensorflow as tf

import mmkeras
from mmkeras.builder import instantiate
from mmkeras.data.pipeline import make_dataset
from mmkeras.errors import MMKerasError
from mmkeras.recipe import ComponentSpec
from mmkeras.registry import registry

ROOT = Path(__file__).resolve().parent.parent
MASKS = "masks"

SIMCLR = [
    ("random_resized_crop", {}),
    ("color_jitter", {}),
    ("random_grayscale", {}),
    ("gaussian_blur", {}),
    ("random_flip", {}),
]
MHD_AUGMENT = {
    "image": [("random_resized_crop", {"scale": [0.6, 1.0]}), ("gaussian_blur", {})],
    "sound": [("time_mask", {"axis": 2, "max_width": 20}), ("freq_mask", {"axis": 1, "max_width": 4})],
    "trajectory": [("jitter", {"stddev": 0.02}), ("scaling", {})],
    "label": [],
}


def augmenter(plan: dict[str, list[tuple[str, dict]]]):
    """One XLA-compiled function applying each modality's augmentation layers in training mode."""
    layers = {
        m: [
            instantiate("augmentations", ComponentSpec(name=n, params=p), f"{m}[{i}]", {"seed": i})
            for i, (n, p) in enumerate(steps)
        ]
        for m, steps in plan.items()
    }

    @tf.function(jit_compile=True)
    def apply(x):
        out = {}
        for m, steps in layers.items():
            y = x[m]
            for layer in steps:
                y = layer(y, training=True)
            out[m] = y
        return out

    return apply


def rate(ds, step, seconds: float, batch_size: int) -> dict:
    """Batches of ``ds`` through ``step`` (each result fetched, as a training step would consume it)."""
    it = iter(ds.repeat())
    for _ in range(3):  # warm up: compile, fill the prefetch buffer
        np.asarray(step(next(it)))
    batches, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        np.asarray(step(next(it)))
        batches += 1
    elapsed = time.perf_counter() - start
    return {"samples_per_s": round(batches * batch_size / elapsed, 1), "batches": batches, "seconds": round(elapsed, 2)}


def pipeline_rates(split, modalities, plan, batch_size: int, seconds: float) -> dict:
    ds = make_dataset(split, modalities, batch_size, shuffle=True, seed=0)
    apply = augmenter(plan)

    def load_only(batch):
        x, _ = batch
        return tf.add_n([tf.reduce_sum(x[m]) for m in modalities])

    def load_and_augment(batch):
        x, _ = batch
        out = apply({m: x[m] for m in modalities})
        return tf.add_n([tf.reduce_sum(out[m]) for m in modalities])

    return {
        "pipeline": rate(ds, load_only, seconds, batch_size),
        "pipeline_augmented": rate(ds, load_and_augment, seconds, batch_size),
    }


def bench_trifeatures(size: str, image_size: int, batch_size: int, seconds: float) -> dict:
    start = time.perf_counter()
    data = mmkeras.load_dataset("trifeatures", size=size, image_size=image_size)
    train = data.load("train")
    prepared = time.perf_counter() - start
    plan = {m: SIMCLR for m in ("image1", "image2")}
    out = {"size": size, "image_size": image_size, "train_pairs": len(train), "prepare_and_load_s": round(prepared, 2)}
    return {**out, **pipeline_rates(train, ["image1", "image2"], plan, batch_size, seconds)}


def bench_mhd(size: str, batch_size: int, seconds: float) -> dict:
    start = time.perf_counter()
    train = mmkeras.load_dataset("mhd", size=size).load("train")
    out = {"size": size, "train_samples": len(train), "prepare_and_load_s": round(time.perf_counter() - start, 2)}
    return {**out, **pipeline_rates(train, list(MHD_AUGMENT), MHD_AUGMENT, batch_size, seconds)}


def bench_gmc_step(batch_size: int, seconds: float) -> dict:
    recipe = mmkeras.load_recipe(ROOT / "recipes" / "gmc_mhd.yaml", overrides=[f"data.batch_size={batch_size}"])
    shapes = {"image": [28, 28, 1], "sound": [32, 128], "trajectory": [200], "label": [10]}
    model = mmkeras.build_model(recipe, input_shapes=shapes)
    rng = np.random.default_rng(0)
    x = {m: rng.random((batch_size, *s)).astype("float32") for m, s in shapes.items()}
    x[MASKS] = {m: np.ones(batch_size, "float32") for m in shapes}
    y = rng.integers(0, 10, batch_size)
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)  # compile and warm up
    steps = 10
    while True:
        start = time.perf_counter()
        model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds or steps >= 100_000:
            break
        steps = int(steps * max(2.0, 1.2 * seconds / max(elapsed, 1e-3)))
    return {
        "recipe": "recipes/gmc_mhd.yaml",
        "batch_size": batch_size,
        "parameters": int(model.count_params()),
        "jit_compile": bool(model.jit_compile),
        "steps": steps,
        "seconds": round(elapsed, 2),
        "samples_per_s": round(steps * batch_size / elapsed, 1),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64, help="batch of every measurement (GMC's is 64)")
    parser.add_argument("--seconds", type=float, default=5.0, help="time per measurement")
    parser.add_argument("--trifeatures-sizes", default="tiny,small")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--mhd-size", default="small")
    parser.add_argument("--skip-step", action="store_true", help="do not time the GMC training step")
    args = parser.parse_args(argv)

    result: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "tensorflow": tf.__version__,
            "gpus": len(tf.config.list_physical_devices("GPU")),
        },
        "batch_size": args.batch_size,
        "trifeatures": [
            bench_trifeatures(s, args.image_size, args.batch_size, args.seconds)
            for s in args.trifeatures_sizes.split(",")
            if s
        ],
    }
    if "mhd" in registry.names("datasets"):
        try:
            result["mhd"] = bench_mhd(args.mhd_size, args.batch_size, args.seconds)
        except MMKerasError as exc:
            result["mhd"] = {"error": str(exc)}
    else:
        result["mhd"] = {"skipped": "the mhd dataset is not installed (pip install -e plugins/mmkeras-mhd)"}
    if not args.skip_step:
        result["gmc_step"] = bench_gmc_step(args.batch_size, args.seconds)
        if "pipeline_augmented" in result["mhd"]:
            ratio = result["mhd"]["pipeline_augmented"]["samples_per_s"] / result["gmc_step"]["samples_per_s"]
            result["ratio_mhd_to_gmc_step"] = round(ratio, 2)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
