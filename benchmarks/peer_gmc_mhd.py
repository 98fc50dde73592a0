"""GMC on MHD, mmkeras against a PyTorch re-implementation of the same model, side by side.

    python benchmarks/peer_gmc_mhd.py [--steps 200] [--pairs 3] [--warmup 20] [--threads 2]
        [--recipe recipes/gmc_mhd.yaml] [--set train.jit_compile=false ...] [--output out.json]

Both sides train the recipe's model (``benchmarks/peers/gmc_mhd_torch.py`` has the PyTorch one,
with the same layers and parameter count) on one batch of random inputs of MHD's shapes, the same
numbers for both (numpy seed 0; PyTorch reads image and sound channel-first), Adam at the recipe's
learning rate. Runs alternate, mmkeras then PyTorch, ``--pairs`` times; each run is a fresh
subprocess (TensorFlow and PyTorch in one process would share, and fight for, the CPU's threads),
warms up (trace and compile; first allocations), then times ``--steps`` steps: ``model.fit`` for
mmkeras, the usual zero_grad / forward / backward / step loop for PyTorch. PyTorch runs on
``--threads`` threads; TensorFlow keeps the thread pools mmkeras leaves it (TensorFlow's defaults:
one thread per core) unless ``--threads`` is below the core count, where both pools get
``--threads``. Each run also measures its own framework's float32 matmul peak (2048^3, after its
timed steps), and the fraction of that peak its train step reaches, counting the step's FLOPs once
for both sides (TensorFlow's graph profiler on mmkeras's step: the same layers do the same work).

Prints one JSON object: per pair the samples/s of each and the ratio mmkeras / PyTorch, the median
ratio, the fractions of peak, each run's CPU time per step (the process's, all threads: under load
it shows what threads burn while they wait for a core), both parameter counts and the load average
before and after. Progress goes to stderr, one line per pair. PyTorch's OpenMP threads spin while they
wait: on a loaded machine its steps slow down by up to 15x in bursts, so quote the load with the ratio;
``--torch-omp-passive`` runs it with ``OMP_WAIT_POLICY=PASSIVE`` (steady, slower on free cores).
Compare ratios from one run only: these machines are shared and vary by 3x from hour to hour.

PyTorch is optional: ``pip install torch --index-url https://download.pytorch.org/whl/cpu``. Without
it the script prints a JSON error and exits with status 2.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = Path(__file__).resolve().parent
#: MHD's row shapes in mmkeras's layout (channels last; sound as 32 steps of 128 features)
SHAPES = {"image": [28, 28, 1], "sound": [32, 128], "trajectory": [200], "label": [10]}
TORCH_INSTALL = "pip install torch --index-url https://download.pytorch.org/whl/cpu"


def batch_arrays(batch: int) -> tuple[dict, object]:
    """The one batch both sides train on: random normal inputs (a one-hot label) and labels, numpy seed 0."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = {m: rng.normal(size=[batch] + SHAPES[m]).astype("float32") for m in ("image", "sound", "trajectory")}
    y = rng.integers(0, 10, size=batch)
    x["label"] = np.eye(10, dtype="float32")[y]
    return x, y


def run_mmkeras(args: argparse.Namespace) -> dict:
    import tensorflow as tf

    if args.threads < (os.cpu_count() or args.threads):
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    sys.path.insert(0, str(HERE))
    from throughput import matmul_peak, train_step_flops

    import mmkeras

    recipe = mmkeras.load_recipe(args.recipe, list(args.set))
    model = mmkeras.build_model(recipe, {m: SHAPES[m] for m in recipe.modalities})
    x, y = batch_arrays(recipe.data.batch_size)
    data = tf.data.Dataset.from_tensors((x, y)).repeat()  # the input pipeline is not measured
    model.fit(data, steps_per_epoch=args.warmup, epochs=1, verbose=0)
    start, cpu = time.perf_counter(), time.process_time()
    model.fit(data, steps_per_epoch=args.steps, epochs=1, verbose=0)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    result = {
        "samples_per_second": args.steps * recipe.data.batch_size / seconds,
        "seconds": seconds,
        "cpu_seconds_per_step": cpu / args.steps,
        "matmul_peak_flop_per_s": matmul_peak("float32", 2048),
        "parameters": int(model.count_params()),
        "trainable_parameters": int(sum(int(v.numpy().size) for v in model.trainable_variables)),
        "threads": {
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
        },
        "jit_compile": bool(model.jit_compile),
        "batch_size": recipe.data.batch_size,
    }
    if args.count_flops:
        result["train_flops_per_step"] = train_step_flops(model, x, y)
    return result


def run_torch(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(HERE))
    from peers.gmc_mhd_torch import GMCMHD, count_parameters, gmc_loss

    import mmkeras

    recipe = mmkeras.load_recipe(args.recipe, list(args.set))
    torch.manual_seed(recipe.seed)
    model = GMCMHD(recipe.model.feature_dim, recipe.model.latent_dim, joint=args.torch_joint)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.train.optimizer.learning_rate)
    temperature = float(recipe.objective.params.get("temperature", 0.1))
    arrays, _ = batch_arrays(recipe.data.batch_size)
    x = {m: torch.from_numpy(a) for m, a in arrays.items()}
    x["image"] = x["image"].permute(0, 3, 1, 2).contiguous()  # channels first
    x["sound"] = x["sound"].unsqueeze(1)  # [B, 1, 32, 128], as the authors read it

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        joint, latents = model(x)
        gmc_loss(joint, latents, temperature).backward()
        optimizer.step()

    model.train()
    for _ in range(args.warmup):
        step()
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        step()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    counts = count_parameters(model)
    return {
        "samples_per_second": args.steps * recipe.data.batch_size / seconds,
        "seconds": seconds,
        "cpu_seconds_per_step": cpu / args.steps,
        "matmul_peak_flop_per_s": torch_matmul_peak(2048),
        "parameters": counts["with_batch_norm_statistics"],
        "trainable_parameters": counts["trainable"],
        "threads": {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()},
        "torch_version": torch.__version__,
    }


def torch_matmul_peak(n: int, repeats: int = 10) -> float:
    """Dense n x n x n float32 matmul FLOP/s in PyTorch, after a warm-up (as throughput.matmul_peak)."""
    import torch

    a = torch.randn(n, n, generator=torch.Generator().manual_seed(0))

    def chain() -> torch.Tensor:
        y = a
        for _ in range(repeats):
            y = torch.matmul(y, a) * (1.0 / n)
        return y

    chain()
    start = time.perf_counter()
    chain()
    return 2.0 * n**3 * repeats / (time.perf_counter() - start)


def run_worker(side: str, args: argparse.Namespace, count_flops: bool = False) -> dict:
    """One timed run of ``side`` in a fresh Python process; its JSON result."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", side, "--recipe", args.recipe]
    command += ["--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads)]
    command += ["--torch-joint", args.torch_joint]
    command += [f"--set={s}" for s in args.set]
    if count_flops:
        command.append("--count-flops")
    env = dict(os.environ)
    if side == "torch" and args.torch_omp_passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"  # read when PyTorch's OpenMP runtime loads: set before the import
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"the {side} run failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(args: argparse.Namespace) -> dict:
    """Alternate mmkeras and PyTorch runs; the per-pair and median ratios and fractions of peak."""
    load_before = os.getloadavg()
    pairs = []
    for i in range(args.pairs):
        ours = run_worker("mmkeras", args, count_flops=i == 0)
        theirs = run_worker("torch", args)
        pairs.append({"mmkeras": ours, "torch": theirs})
        print(
            f"pair {i + 1}: mmkeras {ours['samples_per_second']:.1f} samples/s, "
            f"torch {theirs['samples_per_second']:.1f} samples/s, "
            f"ratio {ours['samples_per_second'] / theirs['samples_per_second']:.3f}",
            file=sys.stderr,
        )
    flops = pairs[0]["mmkeras"].pop("train_flops_per_step")
    batch = pairs[0]["mmkeras"]["batch_size"]
    rows = []
    for pair in pairs:
        row = {"ratio": pair["mmkeras"]["samples_per_second"] / pair["torch"]["samples_per_second"]}
        for side, run in pair.items():
            row[f"{side}_samples_per_second"] = round(run["samples_per_second"], 1)
            row[f"{side}_cpu_ms_per_step"] = round(1000 * run["cpu_seconds_per_step"], 1)
            row[f"{side}_matmul_peak_gflop_per_s"] = round(run["matmul_peak_flop_per_s"] / 1e9, 1)
            row[f"{side}_fraction_of_peak"] = round(
                flops / batch * run["samples_per_second"] / run["matmul_peak_flop_per_s"], 4
            )
        row["ratio"] = round(row["ratio"], 3)
        rows.append(row)
    first = pairs[0]
    return {
        "benchmark": "peer_gmc_mhd",
        "date": datetime.date.today().isoformat(),
        "recipe": args.recipe,
        "overrides": list(args.set),
        "steps": args.steps,
        "warmup": args.warmup,
        "batch_size": batch,
        "runs": "alternating, each in a fresh subprocess, mmkeras first in each pair",
        "pairs": rows,
        "median_ratio_mmkeras_over_torch": round(statistics.median(r["ratio"] for r in rows), 3),
        "median_fraction_of_peak": {
            side: round(statistics.median(r[f"{side}_fraction_of_peak"] for r in rows), 4)
            for side in ("mmkeras", "torch")
        },
        "train_flops_per_sample": round(flops / batch),
        "parameters": {side: first[side]["parameters"] for side in ("mmkeras", "torch")},
        "trainable_parameters": {side: first[side]["trainable_parameters"] for side in ("mmkeras", "torch")},
        "torch_joint": args.torch_joint,
        "torch_omp_wait_policy": "PASSIVE" if args.torch_omp_passive else os.environ.get("OMP_WAIT_POLICY", "default"),
        "jit_compile": first["mmkeras"]["jit_compile"],
        "threads": {side: first[side]["threads"] for side in ("mmkeras", "torch")},
        "torch_version": first["torch"]["torch_version"],
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="recipes/gmc_mhd.yaml")
    parser.add_argument("--steps", type=int, default=200, help="timed steps per run")
    parser.add_argument("--pairs", type=int, default=3, help="mmkeras/PyTorch pairs of runs, alternating")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first (trace, compile, allocate)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], help="a recipe override for both sides, key=value")
    parser.add_argument(
        "--torch-joint", default="mmkeras", choices=["mmkeras", "official"], help="the PyTorch joint encoder's form"
    )
    parser.add_argument(
        "--torch-omp-passive",
        action="store_true",
        help="OMP_WAIT_POLICY=PASSIVE for PyTorch: its threads sleep instead of spinning while they wait",
    )
    parser.add_argument("--output", default=None, help="also write the JSON here")
    parser.add_argument("--worker", choices=["mmkeras", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--count-flops", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.worker:
        result = run_mmkeras(args) if args.worker == "mmkeras" else run_torch(args)
        print(json.dumps(result))
        return 0
    if importlib.util.find_spec("torch") is None:
        print(json.dumps({"benchmark": "peer_gmc_mhd", "error": f"PyTorch is not installed: {TORCH_INSTALL}"}))
        return 2
    result = compare(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
