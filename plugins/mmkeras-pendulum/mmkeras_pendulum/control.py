"""The ``control`` evaluator: DDPG on frozen representations, run with modalities missing (GMC paper, Sec. 5.3)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mmkeras.plugin import MASKS, DataSplit, Evaluator, MMKerasError, modality_subsets, subset_name
from mmkeras_pendulum.env import EPISODE_STEPS, MAX_TORQUE, VectorPendulumSound

MODALITIES = ("image", "sound")
#: rows of the training split whose representations set the controller's input standardisation
STANDARDISE_ROWS = 4096


class Control(Evaluator):
    """A DDPG controller (:mod:`mmkeras_pendulum.ddpg`) for the pendulum swing-up, acting on the
    frozen representation ``model.encode`` gives of each observation (Poklukar, Vasco et al.,
    ICML 2022, Sec. 5.3). It trains on representations of complete observations, then runs
    unchanged on the representations of each modality subset (``model.encode`` with only those
    modalities): the result is the mean and standard deviation of the 300-step episode return
    over ``eval_episodes`` episodes per subset, all from the same starting states (angles evenly
    spaced around the circle: :func:`evaluation_starts`).

    Training: ``num_envs`` pendulums in parallel, random starts; each step's transitions go to a
    replay buffer of ``buffer_size``; from ``warmup_frames`` on, ``updates_per_frame`` gradient
    steps per frame collected (batch ``batch_size``, discount ``gamma``, Adam ``actor_lr`` /
    ``critic_lr``, soft target updates ``tau``). Exploration adds Ornstein-Uhlenbeck noise
    (``noise_theta``, ``noise_sigma``, on actions in [-1, 1]) whose scale falls linearly from 1
    to 0 over the ``frames``. The controller's input is the representation standardised per
    dimension with its mean and spread over (up to 4,096) complete training observations, one
    fixed affine map for every subset, so that any model's scale suits the same learning rates.
    Defaults are the paper's (150,000 frames, gamma 0.99, buffer 25,000, batch 128, actor lr
    1e-4, critic lr 1e-3, tau 1e-3); ``frames`` is rounded up to whole rounds of
    ``num_envs`` x 300 frames.

    ``eval_points`` times during training (and at the end) every subset is evaluated; the
    returns over training go to ``output_dir/filename`` (PNG).

    The environment standardises the sound with the ``pendulum`` data set's training
    statistics: ``size`` (default: inferred from the number of test rows), ``dataset_seed`` and
    ``data_dir`` must name the data set the model was trained on (checked against the given
    test split). subsets: ``"singles"`` (complete and each single modality), ``"all"`` or a
    list of names like ``complete``, ``image``, ``sound``.
    """

    def __init__(
        self,
        frames: int = 150_000,
        gamma: float = 0.99,
        buffer_size: int = 25_000,
        batch_size: int = 128,
        actor_lr: float = 1e-4,
        critic_lr: float = 1e-3,
        tau: float = 1e-3,
        hidden_units: list[int] = (256, 256),  # type: ignore[assignment]
        num_envs: int = 10,
        updates_per_frame: float = 1.0,
        warmup_frames: int = 1000,
        noise_theta: float = 0.15,
        noise_sigma: float = 0.2,
        eval_episodes: int = 20,
        eval_points: int = 10,
        subsets: list[str] | str = "singles",
        size: Literal["full", "small", "tiny"] | int | None = None,
        dataset_seed: int = 0,
        data_dir: str | None = None,
        seed: int = 0,
        filename: str = "control_returns.png",
    ):
        for name, value in (
            ("frames", frames),
            ("buffer_size", buffer_size),
            ("batch_size", batch_size),
            ("num_envs", num_envs),
            ("eval_episodes", eval_episodes),
            ("eval_points", eval_points),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"control: {name} must be a positive int, got {value!r}")
        if not isinstance(warmup_frames, int) or warmup_frames < 0:
            raise ValueError(f"control: warmup_frames must be a non-negative int, got {warmup_frames!r}")
        for name, value, low, high in (
            ("gamma", gamma, 0.0, 1.0),
            ("tau", tau, 0.0, 1.0),
        ):
            if not low < value <= high:
                raise ValueError(f"control: {name} must be in ({low}, {high}], got {value!r}")
        for name, value in (("actor_lr", actor_lr), ("critic_lr", critic_lr), ("updates_per_frame", updates_per_frame)):
            if not value > 0:
                raise ValueError(f"control: {name} must be positive, got {value!r}")
        for name, value in (("noise_theta", noise_theta), ("noise_sigma", noise_sigma)):
            if value < 0:
                raise ValueError(f"control: {name} must be non-negative, got {value!r}")
        if not hidden_units or any(int(u) < 1 for u in hidden_units):
            raise ValueError(f"control: hidden_units must be a non-empty list of positive ints, got {hidden_units!r}")
        if isinstance(subsets, str) and subsets not in ("singles", "all"):
            raise ValueError(f"control: subsets must be 'singles', 'all' or a list of names, got {subsets!r}")
        if not filename.endswith(".png") or "/" in filename or "\\" in filename:
            raise ValueError(f"control: filename must be a plain file name ending in .png, got {filename!r}")
        if size is not None:
            from mmkeras_pendulum.dataset import split_sizes

            split_sizes(size)  # raises naming "size"
        self.frames, self.gamma, self.buffer_size, self.batch_size = int(frames), float(gamma), buffer_size, batch_size
        self.actor_lr, self.critic_lr, self.tau = float(actor_lr), float(critic_lr), float(tau)
        self.hidden_units = [int(u) for u in hidden_units]
        self.num_envs, self.updates_per_frame, self.warmup_frames = num_envs, float(updates_per_frame), warmup_frames
        self.noise_theta, self.noise_sigma = float(noise_theta), float(noise_sigma)
        self.eval_episodes, self.eval_points = eval_episodes, eval_points
        self.subsets, self.size, self.dataset_seed, self.data_dir = subsets, size, int(dataset_seed), data_dir
        self.seed, self.filename = int(seed), filename

    # -- the evaluation -------------------------------------------------------------------
    def evaluate(self, model: Any, data: dict[str, DataSplit], output_dir: Path) -> dict[str, Any]:
        from mmkeras_pendulum.ddpg import DDPG, OrnsteinUhlenbeck, ReplayBuffer

        start = time.time()
        mods = sorted(model.modalities)
        unknown = [m for m in mods if m not in MODALITIES]
        if unknown:
            raise MMKerasError(f"control: the pendulum observes {list(MODALITIES)}; the model also needs {unknown}")
        if self.subsets == "singles":
            subsets = [tuple(mods)] + [(m,) for m in mods if len(mods) > 1]
        else:
            subsets = modality_subsets(mods, self.subsets)
        names = [subset_name(s, mods) for s in subsets]
        mean, std = self._sound_stats(data, mods)
        encoders = {name: _Encoder(model, list(s)) for name, s in zip(names, subsets, strict=True)}
        complete = encoders[subset_name(tuple(mods), mods)]
        shift, scale = self._standardisation(data, model, mods)

        def observe(encoder: _Encoder, obs: dict[str, np.ndarray]) -> np.ndarray:
            return ((encoder(obs) - shift) / scale).astype(np.float32)

        rounds = -(-self.frames // (self.num_envs * EPISODE_STEPS))
        total = rounds * self.num_envs * EPISODE_STEPS
        eval_rounds = sorted({max(1, round(rounds * (i + 1) / self.eval_points)) for i in range(self.eval_points)})
        agent = DDPG(len(shift), 1, self.hidden_units, self.gamma, self.tau, self.actor_lr, self.critic_lr, self.seed)
        buffer = ReplayBuffer(self.buffer_size, len(shift), 1)
        rng = np.random.default_rng(self.seed)
        noise = OrnsteinUhlenbeck((self.num_envs, 1), self.noise_theta, self.noise_sigma, rng)
        env = VectorPendulumSound(self.num_envs, mean, std)
        updates = max(1, round(self.updates_per_frame * self.num_envs))  # gradient steps per env step
        frames = 0
        train_returns: list[float] = []
        curve: dict[str, Any] = {"frames": [], **{n: {"mean": [], "std": []} for n in names}}
        final: dict[str, np.ndarray] = {}
        for r in range(1, rounds + 1):
            obs, _ = env.reset(seed=int(rng.integers(2**31)))
            s = observe(complete, obs)
            noise.reset()
            episode = np.zeros(self.num_envs)
            for _ in range(EPISODE_STEPS):
                explore = noise.sample() * (1.0 - frames / total)
                a = np.clip(agent.act(s) + explore, -1.0, 1.0)
                obs, reward, _, _, _ = env.step(MAX_TORQUE * a[:, 0])
                s2 = observe(complete, obs)
                buffer.add(s, a, reward, s2)
                s, frames, episode = s2, frames + self.num_envs, episode + reward
                if buffer.size >= max(self.warmup_frames, self.batch_size):
                    agent.update(*buffer.sample(rng, updates, self.batch_size))
            train_returns.append(float(episode.mean()))
            if r in eval_rounds:
                curve["frames"].append(frames)
                for name, encoder in encoders.items():
                    final[name] = self._episodes(agent, encoder, observe, mean, std)
                    curve[name]["mean"].append(float(final[name].mean()))
                    curve[name]["std"].append(float(final[name].std()))
                summary = ", ".join(f"{n} {curve[n]['mean'][-1]:.0f}" for n in names)
                print(f"control: {frames}/{total} frames, {time.time() - start:.0f} s; returns: {summary}", flush=True)
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        model_name = str(getattr(model, "name", "model"))
        _plot(curve, names, train_returns, self.num_envs, model_name, output_dir / self.filename)
        return {
            "model": model_name,
            "returns": {
                n: {"mean": float(v.mean()), "std": float(v.std()), "episodes": [float(x) for x in v]}
                for n, v in final.items()
            },
            "frames": frames,
            "episodes": rounds * self.num_envs,
            "eval_episodes": self.eval_episodes,
            "curve": curve,
            "train_returns": train_returns,
            "seconds": round(time.time() - start, 1),
            "figure": f"{output_dir.name}/{self.filename}",
            "settings": {
                "gamma": self.gamma,
                "buffer_size": self.buffer_size,
                "batch_size": self.batch_size,
                "actor_lr": self.actor_lr,
                "critic_lr": self.critic_lr,
                "tau": self.tau,
                "hidden_units": self.hidden_units,
                "num_envs": self.num_envs,
                "updates_per_frame": self.updates_per_frame,
                "representation_dim": len(shift),
            },
        }

    def _episodes(self, agent: Any, encoder: _Encoder, observe: Any, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        """Returns of ``eval_episodes`` noise-free episodes from :func:`evaluation_starts`."""
        env = VectorPendulumSound(self.eval_episodes, mean, std)
        obs, _ = env.reset(options={"state": evaluation_starts(self.eval_episodes, self.seed)})
        returns = np.zeros(self.eval_episodes)
        for _ in range(EPISODE_STEPS):
            obs, reward, _, _, _ = env.step(MAX_TORQUE * agent.act(observe(encoder, obs))[:, 0])
            returns += reward
        return returns

    def _sound_stats(self, data: dict[str, DataSplit], mods: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The data set's sound statistics, after checking that it is the data the model saw."""
        from mmkeras_pendulum.dataset import SIZES, Pendulum

        test = data.get("test")
        size = self.size
        if size is None:
            if test is None:
                raise MMKerasError("control: no test split to infer the pendulum data size from; set params.size")
            size = next((name for name, (_, n) in SIZES.items() if n == len(test)), 10 * len(test))
        dataset = Pendulum(size, self.dataset_seed, self.data_dir)
        if test is not None:
            reference = dataset.load("test")
            rows = min(32, len(test))
            same = len(reference) == len(test) and all(
                m in test.inputs and np.allclose(test.inputs[m][:rows], reference.inputs[m][:rows], atol=1e-5)
                for m in mods
            )
            if not same:
                raise MMKerasError(
                    f"control: the test data is not the pendulum data set with size={size!r}, seed={self.dataset_seed}"
                    f", data_dir={self.data_dir!r}; set the control evaluator's size, dataset_seed and data_dir to the"
                    " recipe's data.params"
                )
        return dataset.sound_stats()

    def _standardisation(self, data: dict[str, DataSplit], model: Any, mods: list[str]) -> tuple[np.ndarray, ...]:
        train = data.get("train")
        if train is None:
            raise MMKerasError(f"control needs a train split; got {sorted(data)}")
        missing = [m for m in mods if m not in train.inputs]
        if missing:
            raise MMKerasError(f"control: the data has no modality {missing[0]!r}; it provides {sorted(train.inputs)}")
        present = np.all([train.mask(m) > 0 for m in mods], axis=0)
        rows = np.flatnonzero(present)[:STANDARDISE_ROWS]
        if len(rows) < 2:
            raise MMKerasError("control: fewer than 2 training rows have every modality present")
        x: dict[str, Any] = {m: train.inputs[m][rows] for m in mods}
        x[MASKS] = {m: np.ones(len(rows), np.float32) for m in mods}
        z = model.encode(x, mods)
        spread = z.std(axis=0)
        return z.mean(axis=0), np.where(spread > 1e-6, spread, 1.0)

    def report(self, results: dict[str, Any]) -> str:
        s = results["settings"]
        return (
            f"Pendulum swing-up with a DDPG controller ({'-'.join(str(u) for u in s['hidden_units'])} ReLU actor "
            f"and critic) trained for {results['frames']:,} frames ({results['episodes']} episodes of "
            f"{EPISODE_STEPS} steps) on the frozen representations of complete observations, then run with only the "
            f"modalities in each column. Episode return (mean ± std over {results['eval_episodes']} episodes; "
            f"higher is better, 0 is the best possible); {results['seconds']:.0f} s.\n\n"
            + returns_table({results["model"]: results})
            + f"\n![episode returns over training]({results['figure']})\n"
        )


def evaluation_starts(episodes: int, seed: int = 0) -> np.ndarray:
    """[episodes, 2] starting states of the test episodes: angles evenly spaced around the circle,
    theta_k = -pi + 2 pi (k + 1/2) / episodes (so a few episodes already cover hanging, sideways and
    upright starts), and thetadot ~ U[-1, 1] drawn with ``seed``; the same for every model and subset."""
    theta = -np.pi + 2 * np.pi * (np.arange(episodes) + 0.5) / episodes
    thetadot = np.random.default_rng(10_000 + seed).uniform(-1.0, 1.0, episodes)
    return np.stack([theta, thetadot], axis=-1)


def returns_table(runs: dict[str, dict[str, Any]]) -> str:
    """A Markdown table of episode returns: one row per run (``name -> results`` of :class:`Control`)."""
    columns: list[str] = []
    for res in runs.values():
        columns += [c for c in res["returns"] if c not in columns]
    lines = ["| model | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for name, res in runs.items():
        cells = [
            f"{res['returns'][c]['mean']:.1f} ± {res['returns'][c]['std']:.1f}" if c in res["returns"] else ""
            for c in columns
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


class _Encoder:
    """The model's representation of ``modalities`` (its encoder's compiled ``encode``, traced once
    per subset and cached), for one observation batch at a time."""

    def __init__(self, model: Any, modalities: list[str]) -> None:
        self.model, self.modalities = model, modalities

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return self.model.encode({m: obs[m] for m in self.modalities}, self.modalities)


def _plot(
    curve: dict[str, Any], names: list[str], train_returns: list[float], num_envs: int, model: str, path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    round_frames = num_envs * EPISODE_STEPS * np.arange(1, len(train_returns) + 1)
    ax.plot(round_frames, train_returns, color="0.6", lw=1, label="training episodes (with exploration noise)")
    x = np.asarray(curve["frames"])
    for name in names:
        m, s = np.asarray(curve[name]["mean"]), np.asarray(curve[name]["std"])
        ax.plot(x, m, marker="o", ms=3, label=f"test: {name}")
        ax.fill_between(x, m - s, m + s, alpha=0.15)
    ax.set_xlabel("training frames (environment steps)")
    ax.set_ylabel(f"episode return ({EPISODE_STEPS} steps)")
    ax.set_title(f"Pendulum swing-up: DDPG on frozen {model} representations")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
