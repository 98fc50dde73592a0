"""Train-step time and memory against the number of modalities M, for gmc, infonce, cmc and comm.

    python benchmarks/modality_scaling.py [--modalities 2,4,8,16] [--objectives gmc,infonce,cmc,comm]
        [--batch 64] [--repeats 9] [--fusion concat] [--quick]

GMC contrasts each modality with the joint only (M loss terms); ``infonce`` and ``cmc`` contrast every
pair (M(M-1)/2 terms); ``comm`` runs two augmented views and, in each, the fusion of all modalities
and of each one alone (M + 1 fusion passes). Each model is built through the public API
(``mmkeras.recipe_from_dict`` + ``mmkeras.build_model``) on M synthetic modalities, every one a
``--input-dim`` random vector with a small MLP encoder, so the encoders are cheap and the objective's
share shows. Every model has the same parts: MLP encoders, the ``--fusion``, a normalised MLP head and
Gaussian-noise augmentation on every modality (comm's two views need a random augmentation, and the
others get the same so that only the objective differs).

Next to each model runs a *null* twin: the same model and forward passes (comm's two views and
single-modality fusions included) with a loss that reads the same tensors as the objective (gmc:
latents and joint; infonce/cmc: latents; comm: each view's joint and single-modality joints) and only
averages them. The objective's own cost is the model's minus its twin's, measured in the same round.

- Memory, FLOPs and time (JAX backend): the compiled train step (``jax.jit(model.train_step)`` over
  the model's state, donated, as Keras's JAX trainer compiles it for ``fit``). Memory is XLA's
  analysis of it: argument + temporary bytes (deterministic, unlike process RSS); FLOPs are the
  compiler's count. Time: in ``--repeats`` rounds after a warm-up, every configuration runs ~0.2 s
  of steps on one resident batch, a model and its twin back to back, in an order rotated from round
  to round so that machine drift hits all alike; reported are the median over rounds of the seconds
  per step and of the per-round difference with the twin. ``--time-backend tensorflow`` takes the
  time instead in a second process on the TensorFlow backend (``model.train_step`` under
  ``tf.function`` with the model's ``jit_compile``, as ``fit`` runs it; tracing there is slow for
  many loss terms). ``compile_s``: building, tracing and compiling each model on the timing backend.
- Exponents: k in y = a M^k, least squares on log-log, over M >= 4 (``k``: M = 2 is dominated by
  the step's fixed cost) and over every M (``k_all``).

Prints one JSON object and, unless ``--quick``, writes it to
``benchmarks/results/modality_scaling_<date>.json`` and the plot to ``docs/figures/modality_scaling.png``.
Compare numbers from one run only: these machines are shared.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parents[1]
OBJECTIVES = ("gmc", "infonce", "cmc", "comm")
#: seconds of steps per configuration per round
BLOCK_SECONDS = 0.2
#: the loss terms each objective adds up for M modalities
LOSS_TERMS = {
    "gmc": lambda m: m,
    "infonce": lambda m: m * (m - 1) // 2,
    "cmc": lambda m: m * (m - 1) // 2,
    "comm": lambda m: m + 1,
}


def recipe_dict(objective: str, m: int, args: argparse.Namespace, null: bool) -> dict[str, Any]:
    """The recipe of one configuration; ``null``: the twin with the null loss."""
    names = [f"m{i:02d}" for i in range(m)]
    spec = {"name": "scaling_null", "params": {"like": objective}} if null else {"name": objective, "params": {}}
    if not null:
        spec["params"]["temperature"] = 0.1
    return {
        "name": f"scaling-{objective}-{m}{'-null' if null else ''}",
        "seed": 0,
        "data": {
            "dataset": "arrays",
            "params": {"synthetic": True, "num_samples": args.batch},
            "batch_size": args.batch,
        },
        "modalities": {
            n: {
                "encoder": {"name": "mlp", "params": {"hidden_units": [args.hidden]}},
                "augment": [{"name": "gaussian_noise", "params": {"stddev": 0.1}}],
            }
            for n in names
        },
        "model": {
            "feature_dim": args.hidden,
            "latent_dim": args.latent,
            "fusion": {"name": args.fusion},
            "head": {"name": "mlp", "params": {"hidden_units": [args.hidden], "normalize": True}},
        },
        "objective": spec,
        "train": {"optimizer": {"name": "adam", "learning_rate": 1.0e-3}, "jit_compile": "auto"},
    }


def register_null_objective() -> None:
    """Register ``scaling_null`` in this process: the null twin's loss (module docstring)."""
    from keras import ops

    import mmkeras
    from mmkeras.objectives.base import Objective

    @mmkeras.register_objective("scaling_null", override=True)
    class NullLoss(Objective):
        """The mean of the tensors the objective ``like`` reads: the same forward and backward
        passes, no contrast (a mean, not a sum of squares: the head's outputs have unit norm)."""

        def __init__(self, like: Literal["gmc", "infonce", "cmc", "comm"] = "gmc", **kwargs: Any):
            super().__init__(**kwargs)
            self.like = like
            if like == "comm":
                self.num_views = 2
                self.needs_single_modality_joints = True

        def call(self, outputs, labels=None):
            if self.like == "gmc":
                read = [outputs.joint, *outputs.latents.values()]
            elif self.like == "comm":
                read = [t for v in outputs.views for t in (v.joint, *v.joint_single.values())]
            else:
                read = list(outputs.latents.values())
            return {"loss": sum(ops.mean(ops.cast(t, "float32")) for t in read)}


def build(objective: str, m: int, args: argparse.Namespace, null: bool) -> tuple[Any, dict[str, Any], Any]:
    """The compiled model of one configuration and a batch for it."""
    import numpy as np

    import mmkeras

    recipe = mmkeras.recipe_from_dict(recipe_dict(objective, m, args, null), check_data=False)  # shapes given
    model = mmkeras.build_model(recipe, {n: [args.input_dim] for n in recipe.modalities})
    rng = np.random.default_rng(0)
    x = {n: rng.normal(size=(args.batch, args.input_dim)).astype("float32") for n in recipe.modalities}
    y = np.zeros(args.batch, "int32")
    return model, x, y


def configurations(args: argparse.Namespace) -> list[tuple[str, int, bool]]:
    """(objective, M, null) for every measured model; each model next to its twin."""
    return [(o, m, null) for o in args.objectives for m in args.modalities for null in (False, True)]


def key(objective: str, m: int, null: bool) -> str:
    return f"{objective}/{m}/{'null' if null else 'full'}"


def interleaved(runners: dict[str, Any], steps: dict[str, int], repeats: int) -> dict[str, list[float]]:
    """Seconds per step of every runner (``runners[k](n)`` runs n steps and waits for them), in
    ``repeats`` rounds; a model and its twin run back to back, the order rotated from round to round."""
    keys = list(runners)
    pairs = [keys[i : i + 2] for i in range(0, len(keys), 2)]
    seconds: dict[str, list[float]] = {k: [] for k in keys}
    for r in range(repeats):
        shift = (r * len(pairs)) // repeats
        for pair in pairs[shift:] + pairs[:shift]:
            for k in pair if r % 2 == 0 else pair[::-1]:
                begin = time.perf_counter()
                runners[k](steps[k])
                seconds[k].append((time.perf_counter() - begin) / steps[k])
    return seconds


def calibrate(run: Any) -> int:
    """Steps that take about ``BLOCK_SECONDS``, after one warm-up step."""
    run(1)
    begin = time.perf_counter()
    run(3)
    return max(3, round(BLOCK_SECONDS * 3 / (time.perf_counter() - begin)))


def tensorflow_worker(args: argparse.Namespace) -> dict[str, Any]:
    """TensorFlow backend: seconds per train step of every configuration, rounds interleaved."""
    import tensorflow as tf

    from mmkeras.model import build_optimizer

    register_null_objective()
    runners, steps, compile_s = {}, {}, {}
    for objective, m, null in configurations(args):
        k = key(objective, m, null)
        start = time.perf_counter()
        model, x, y = build(objective, m, args, null)
        build_optimizer(model)
        fn = tf.function(model.train_step, jit_compile=model.jit_compile)
        data = ({n: tf.constant(v) for n, v in x.items()}, tf.constant(y))
        fn(data)["loss"].numpy()  # trace and compile
        compile_s[k] = round(time.perf_counter() - start, 2)

        def run(n: int, fn: Any = fn, data: Any = data) -> None:
            for _ in range(n):
                loss = fn(data)["loss"]
            loss.numpy()

        runners[k], steps[k] = run, calibrate(run)
        print(f"# tensorflow {k}: built, traced and compiled in {compile_s[k]} s", file=sys.stderr, flush=True)
    return {
        "devices": [d.name for d in tf.config.list_logical_devices()],
        "jit_compile": bool(model.jit_compile),
        "steps_per_round": steps,
        "seconds_per_step": interleaved(runners, steps, args.repeats),
        "build_and_compile_s": compile_s,
        "matmul_peak_flop_per_s": _matmul_peak(),
    }


def jax_worker(args: argparse.Namespace) -> dict[str, Any]:
    """JAX backend: XLA's memory and FLOP analysis of every configuration's compiled train step
    and, unless time is taken on TensorFlow, its seconds per step, rounds interleaved."""
    import jax

    from mmkeras.model import build_optimizer

    register_null_objective()
    analysis, runners, steps, compile_s = {}, {}, {}, {}
    for objective, m, null in configurations(args):
        k = key(objective, m, null)
        start = time.perf_counter()
        model, x, y = build(objective, m, args, null)
        build_optimizer(model)
        state = (
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
            [v.value for v in model.optimizer.variables],
            [v.value for v in model.metrics_variables],
        )
        data = jax.device_put((x, y))
        # donated state, as Keras's own JAX trainer compiles the step for fit
        compiled = jax.jit(model.train_step, donate_argnums=0).lower(state, data).compile()
        compile_s[k] = round(time.perf_counter() - start, 2)
        memory = compiled.memory_analysis()
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        analysis[k] = {
            "argument_bytes": int(memory.argument_size_in_bytes),
            "temp_bytes": int(memory.temp_size_in_bytes),
            "output_bytes": int(memory.output_size_in_bytes),
            "alias_bytes": int(memory.alias_size_in_bytes),
            "peak_bytes": int(memory.argument_size_in_bytes + memory.temp_size_in_bytes),
            "flops": float(cost.get("flops", 0.0)),
            "parameters": int(model.count_params()),
        }
        print(f"# jax {k}: built, traced and compiled in {compile_s[k]} s", file=sys.stderr, flush=True)
        if args.time_backend == "jax":
            carry = [state]

            def run(n: int, compiled: Any = compiled, carry: list = carry, data: Any = data) -> None:
                for _ in range(n):
                    logs, carry[0] = compiled(carry[0], data)
                jax.block_until_ready(logs)

            runners[k], steps[k] = run, calibrate(run)
        del model  # its variables' buffers were donated to the step
    out: dict[str, Any] = {
        "devices": [f"{d.platform}:{d.device_kind}" for d in jax.devices()],
        "analysis": analysis,
        "build_and_compile_s": compile_s,
    }
    if runners:
        out.update(
            {
                "jit_compile": True,
                "steps_per_round": steps,
                "seconds_per_step": interleaved(runners, steps, args.repeats),
                "matmul_peak_flop_per_s": _matmul_peak(),
            }
        )
    return out


def _matmul_peak() -> float:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from throughput import matmul_peak

    return matmul_peak("float32", 1024)


def run_worker(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    """One worker in its own process (Keras picks its backend at import)."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    argv = [sys.executable, __file__, "--worker", backend, *sys.argv[1:]]
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    sys.stderr.write("".join(line + "\n" for line in done.stderr.splitlines() if line.startswith("# ")))
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT")]
    if done.returncode != 0 or not lines:
        sys.exit(f"{backend} worker: exit {done.returncode}\n{done.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT") :])


def fit_exponent(ms: list[int], values: list[float | None]) -> float | None:
    """k of values = a M^k by least squares on log-log; None for fewer than two points or a value
    <= 0 (a difference with the twin lost in noise, or XLA reusing the twin's spare buffers)."""
    import numpy as np

    if len(ms) < 2 or any(v is None or v <= 0 for v in values):
        return None
    x, y = np.log(ms), np.log(values)
    return round(float(np.polyfit(x, y, 1)[0]), 3)


def summarise(args: argparse.Namespace, timing: dict[str, Any], analysis: dict[str, Any]) -> dict[str, Any]:
    """Per (objective, M): medians over rounds, XLA's analysis, the differences with the twin; the fits."""
    per_step = timing["seconds_per_step"]
    results: dict[str, dict[str, Any]] = {}
    for objective in args.objectives:
        rows = {}
        for m in args.modalities:
            k_full, k_null = key(objective, m, False), key(objective, m, True)
            full, null = per_step[k_full], per_step[k_null]
            mine, twin = analysis[k_full], analysis[k_null]
            rows[str(m)] = {
                "loss_terms": LOSS_TERMS[objective](m),
                "step_s": statistics.median(full),
                "null_step_s": statistics.median(null),
                "objective_s": statistics.median(a - b for a, b in zip(full, null)),
                "step_s_rounds": [round(t, 6) for t in full],
                "peak_bytes": mine["peak_bytes"],
                "null_peak_bytes": twin["peak_bytes"],
                "objective_temp_bytes": mine["temp_bytes"] - twin["temp_bytes"],
                "flops": mine["flops"],
                "objective_flops": mine["flops"] - twin["flops"],
                "compile_s": timing["build_and_compile_s"][k_full],
                "xla": mine,
            }
        results[objective] = rows
    ms = list(args.modalities)
    big = [m for m in ms if m >= 4]
    fits = {
        objective: {
            name: {
                "k": fit_exponent(big, [rows[str(m)][name] for m in big]),
                "k_all": fit_exponent(ms, [rows[str(m)][name] for m in ms]),
            }
            for name in FITTED
        }
        for objective, rows in results.items()
    }
    return {"results": results, "fits": fits}


#: the quantities whose exponent in M is fitted
FITTED = ("step_s", "objective_s", "peak_bytes", "objective_temp_bytes", "flops", "objective_flops", "compile_s")


def plot(summary: dict[str, Any], args: argparse.Namespace, time_backend: str, path: Path) -> Path:
    """Step time, the objective's share of it and peak memory against M, log-log, k in the legends."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mmkeras.evaluators.plots import save_figure

    panels = [
        ("step_s", f"train step (s), {time_backend}", 1.0),
        ("objective_s", "objective's share: step - null twin (s)", 1.0),
        ("objective_flops", "objective's FLOPs: step - null twin (XLA)", 1.0),
        ("peak_bytes", "peak memory (MiB): XLA arguments + temp", 2.0**-20),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(10.5, 8.5))
    ms = list(args.modalities)
    for ax, (name, label, scale) in zip(axes.flat, panels):
        for objective in args.objectives:
            rows = summary["results"][objective]
            shown = [(m, rows[str(m)][name] * scale) for m in ms if rows[str(m)][name] > 0]  # log axes
            k = summary["fits"][objective][name]["k"]
            text = "-" if k is None else f"{k:.2f}"
            ax.plot([p[0] for p in shown], [p[1] for p in shown], "o-", label=f"{objective}: k = {text}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(ms, [str(m) for m in ms])
        ax.set_xlabel("modalities M")
        ax.set_ylabel(label)
        ax.legend(title="~ M^k (fit over M >= 4)", fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"Cost against the number of modalities (batch {args.batch}, {args.fusion} fusion, CPU)")
    return save_figure(fig, path)


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in ("mmkeras", "keras", "tensorflow", "jax", "numpy")}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--modalities", default="2,4,8,16", help="the values of M, comma-separated")
    p.add_argument("--objectives", default=",".join(OBJECTIVES), help=f"some of {', '.join(OBJECTIVES)}")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=9, help="rounds of timing over every configuration")
    p.add_argument("--input-dim", type=int, default=32, help="each synthetic modality's vector size")
    p.add_argument("--hidden", type=int, default=64, help="encoder and head width, and the feature size")
    p.add_argument("--latent", type=int, default=32)
    p.add_argument("--fusion", default="concat", help="a registered fusion (concat: GMC's; comm's own: transformer)")
    p.add_argument(
        "--time-backend",
        default="jax",
        choices=["jax", "tensorflow"],
        help="jax: time the step XLA analyses (one compile per model); tensorflow: a second process, traced again",
    )
    p.add_argument("--quick", action="store_true", help="M = 2, 3, batch 8, 2 rounds, nothing written: a smoke run")
    p.add_argument("--json", default=None, help="where to write the JSON (default: benchmarks/results/...)")
    p.add_argument("--figure", default=None, help="where to write the plot (default: docs/figures/...)")
    p.add_argument("--worker", default=None, choices=["tensorflow", "jax"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.modalities, args.batch, args.repeats = "2,3", 8, 2
    args.modalities = sorted(int(m) for m in str(args.modalities).split(","))
    args.objectives = [o.strip() for o in str(args.objectives).split(",") if o.strip()]
    unknown = [o for o in args.objectives if o not in OBJECTIVES]
    if unknown or not args.objectives:
        p.error(f"--objectives: expected some of {', '.join(OBJECTIVES)}, got {unknown or 'none'}")
    if min(args.modalities) < 2:
        p.error(f"--modalities: every M must be at least 2 (pairwise objectives), got {args.modalities}")
    return args


def main() -> None:
    args = parse_args()
    if args.worker is not None:
        work = tensorflow_worker if args.worker == "tensorflow" else jax_worker
        print("RESULT" + json.dumps(work(args)))
        return
    start = time.perf_counter()
    xla = run_worker("jax", args)
    timing = xla if args.time_backend == "jax" else run_worker("tensorflow", args)
    summary = summarise(args, timing, xla["analysis"])
    today = datetime.date.today().isoformat()
    result = {
        "benchmark": "modality_scaling",
        "date": today,
        "command": "python benchmarks/modality_scaling.py " + " ".join(sys.argv[1:]),
        "modalities": args.modalities,
        "objectives": args.objectives,
        "batch": args.batch,
        "repeats": args.repeats,
        "model": {
            "encoder": f"mlp {args.input_dim} -> {args.hidden} -> {args.hidden} per modality",
            "fusion": args.fusion,
            "head": f"mlp {args.hidden} -> {args.hidden} -> {args.latent}, normalised, shared",
            "augmentation": "gaussian_noise 0.1 on every modality, per view",
            "optimizer": "adam",
            "temperature": 0.1,
        },
        "time_backend": args.time_backend,
        "time_devices": timing["devices"],
        "jit_compile": timing["jit_compile"],
        "memory_backend": "jax (XLA memory_analysis of the compiled train step; peak = arguments + temp)",
        "fit_range": "k: M >= 4; k_all: every M",
        **summary,
        "steps_per_round": timing["steps_per_round"],
        "matmul_peak_flop_per_s": timing["matmul_peak_flop_per_s"],
        "versions": versions(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "load_average": os.getloadavg(),
        "wall_s": round(time.perf_counter() - start, 1),
    }
    text = json.dumps(result, indent=2)
    print(text)
    json_path = args.json or (
        None if args.quick else ROOT / "benchmarks" / "results" / f"modality_scaling_{today}.json"
    )
    if json_path:
        Path(json_path).write_text(text + "\n")
    figure = args.figure or (None if args.quick else ROOT / "docs" / "figures" / "modality_scaling.png")
    if figure:
        plot(summary, args, args.time_backend, Path(figure))


if __name__ == "__main__":
    main()
