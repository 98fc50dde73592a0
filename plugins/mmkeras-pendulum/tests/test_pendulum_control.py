"""Tests of the DDPG parts and the ``control`` evaluator (tiny data, a tiny untrained model, tiny budgets)."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest
from mmkeras_pendulum import env
from mmkeras_pendulum.control import Control, _Encoder, evaluation_starts, returns_table
from mmkeras_pendulum.dataset import Pendulum
from mmkeras_pendulum.ddpg import DDPG, OrnsteinUhlenbeck, ReplayBuffer

import mmkeras
from mmkeras.plugin import DataSplit, MMKerasError


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("data"))
    Pendulum("tiny", data_dir=path).prepare(progress=False)
    return path


@pytest.fixture(scope="module")
def splits(data_dir: str) -> dict[str, DataSplit]:
    ds = Pendulum("tiny", data_dir=data_dir)
    return {s: ds.load(s) for s in ds.splits}


def tiny_recipe(**model: object) -> mmkeras.Recipe:
    return mmkeras.recipe_from_dict(
        {
            "name": "tiny-pendulum",
            "data": {"dataset": "pendulum", "params": {"size": "tiny"}, "batch_size": 32},
            "modalities": {
                "image": {"encoder": {"name": "conv2d", "params": {"filters": [4], "kernel_size": 4, "strides": 4}}},
                "sound": {"encoder": {"name": "mlp", "params": {"hidden_units": [8]}}},
            },
            "model": {
                "feature_dim": 8,
                "latent_dim": 4,
                "joint_encoders": "separate",
                "fusion": {"name": "concat"},
                "head": {"name": "mlp", "params": {"hidden_units": [8], "normalize": True}},
                "subset_encoding": "mean",
                **model,
            },
            "objective": {"name": "gmc", "params": {"temperature": 0.3}},
        }
    )


@pytest.fixture(scope="module")
def model():
    return mmkeras.build_model(tiny_recipe(), {"image": [60, 60, 2], "sound": [12]}, compile=False)


def test_control_runs_end_to_end(model, splits: dict[str, DataSplit], data_dir: str, tmp_path: Path) -> None:
    control = Control(
        frames=1000,  # rounded up to 2 rounds of 2 envs x 300 steps
        num_envs=2,
        batch_size=32,
        warmup_frames=64,
        hidden_units=[16],
        eval_episodes=3,
        eval_points=2,
        data_dir=data_dir,
    )
    results = control.evaluate(model, splits, tmp_path / "figures")
    assert results["frames"] == 1200 and results["episodes"] == 4
    assert list(results["returns"]) == ["complete", "image", "sound"]
    worst = -(np.pi**2 + 0.1 * env.MAX_SPEED**2 + 0.001 * env.MAX_TORQUE**2) * env.EPISODE_STEPS
    for res in results["returns"].values():
        assert len(res["episodes"]) == 3
        assert worst <= min(res["episodes"]) and max(res["episodes"]) < 0
        assert res["mean"] == pytest.approx(np.mean(res["episodes"])) and res["std"] == pytest.approx(
            np.std(res["episodes"])
        )
    assert results["curve"]["frames"] == [600, 1200]
    assert results["curve"]["sound"]["mean"][-1] == pytest.approx(results["returns"]["sound"]["mean"])
    assert len(results["train_returns"]) == 2
    png = tmp_path / "figures" / "control_returns.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and results["figure"] == "figures/control_returns.png"
    json.dumps(results)  # metrics.json holds it
    report = control.report(results)
    assert "1,200 frames" in report and "| tiny_pendulum |" in report and "figures/control_returns.png" in report


def test_evaluation_episodes_are_the_policy_rollouts(model, data_dir: str) -> None:
    """Control._episodes against a hand-written loop over single envs with the same starts."""
    control = Control(eval_episodes=2, hidden_units=[8], data_dir=data_dir)
    mean, std = Pendulum("tiny", data_dir=data_dir).sound_stats()
    agent = DDPG(4, hidden_units=[8], seed=3)
    encoder = _Encoder(model, ["sound"])
    shift, scale = np.full(4, 0.1), np.full(4, 2.0)

    def observe(enc: _Encoder, obs: dict) -> np.ndarray:
        return ((enc(obs) - shift) / scale).astype(np.float32)

    returns = control._episodes(agent, encoder, observe, mean, std)
    for i, start in enumerate(evaluation_starts(2)):
        single = env.PendulumSound(mean, std)
        obs, _ = single.reset(options={"state": start})
        total = 0.0
        for _ in range(env.EPISODE_STEPS):
            z = observe(encoder, {"sound": obs["sound"][None]})
            obs, reward, _, _, _ = single.step(2.0 * agent.act(z)[0, 0])
            total += reward
        assert returns[i] == pytest.approx(total, rel=1e-4)


@pytest.mark.parametrize("subset", [["image", "sound"], ["image"], ["sound"]])
def test_the_observation_encoder_is_model_encode(model, splits: dict[str, DataSplit], subset: list[str]) -> None:
    x = {m: splits["test"].inputs[m][:5] for m in subset}
    encoder = _Encoder(model, subset)
    np.testing.assert_array_equal(encoder({**x, "unused": np.zeros(5)}), model.encode(x, subset))
    np.testing.assert_array_equal(encoder(x), model.encode(x, subset))


def test_wrong_data_set_is_refused(model, splits: dict[str, DataSplit], data_dir: str, tmp_path: Path) -> None:
    with pytest.raises(MMKerasError, match=r"not the pendulum data set with size='tiny', seed=1.*dataset_seed"):
        Control(dataset_seed=1, data_dir=data_dir).evaluate(model, splits, tmp_path)
    with pytest.raises(MMKerasError, match="observes.*label"):
        Control(data_dir=data_dir).evaluate(types.SimpleNamespace(modalities=["image", "label"]), splits, tmp_path)
    with pytest.raises(MMKerasError, match="infer.*size"):
        Control(data_dir=data_dir).evaluate(model, {"train": splits["train"]}, tmp_path)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"frames": 0}, "frames"),
        ({"gamma": 1.5}, "gamma"),
        ({"tau": 0.0}, "tau"),
        ({"actor_lr": 0.0}, "actor_lr"),
        ({"num_envs": 0}, "num_envs"),
        ({"hidden_units": []}, "hidden_units"),
        ({"subsets": "some"}, "subsets"),
        ({"size": "huge"}, "size"),
        ({"filename": "x.jpg"}, "filename"),
        ({"noise_sigma": -1.0}, "noise_sigma"),
    ],
)
def test_bad_params_raise(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        Control(**kwargs)  # type: ignore[arg-type]


def test_evaluation_starts_cover_the_circle() -> None:
    starts = evaluation_starts(4, seed=1)
    np.testing.assert_allclose(starts[:, 0], [-3 * np.pi / 4, -np.pi / 4, np.pi / 4, 3 * np.pi / 4])
    assert (np.abs(starts[:, 1]) <= 1).all() and len(set(starts[:, 1])) == 4
    np.testing.assert_array_equal(evaluation_starts(4, seed=1), starts)
    assert not np.array_equal(evaluation_starts(4, seed=2)[:, 1], starts[:, 1])


def test_returns_table() -> None:
    runs = {
        "gmc": {"returns": {"complete": {"mean": -150.04, "std": 20.0}, "sound": {"mean": -300.0, "std": 5.55}}},
        "clip": {"returns": {"complete": {"mean": -1000.0, "std": 1.0}}},
    }
    assert returns_table(runs).splitlines() == [
        "| model | complete | sound |",
        "|---|---|---|",
        "| gmc | -150.0 ± 20.0 | -300.0 ± 5.5 |",
        "| clip | -1000.0 ± 1.0 |  |",
    ]


def test_replay_buffer_overwrites_the_oldest() -> None:
    buffer = ReplayBuffer(3, 1, 1)
    for i in range(2):
        buffer.add(np.array([[i], [i + 10]]), np.zeros((2, 1)), np.array([i, i + 10]), np.zeros((2, 1)))
    # added 0, 10, 1, 11: the 4th overwrote the 1st
    assert buffer.size == 3
    np.testing.assert_array_equal(buffer.obs[:, 0], [11, 10, 1])
    np.testing.assert_array_equal(buffer.rewards[:, 0], [11, 10, 1])
    s, a, r, s2 = buffer.sample(np.random.default_rng(0), 4, 5)
    assert s.shape == (4, 5, 1) and r.shape == (4, 5, 1)
    np.testing.assert_array_equal(s, r)  # rows stay together
    assert set(np.unique(s)) <= {1.0, 10.0, 11.0}


def test_ornstein_uhlenbeck_reverts_to_zero() -> None:
    rng = np.random.default_rng(0)
    noise = OrnsteinUhlenbeck((4000, 1), theta=0.15, sigma=0.2, rng=rng)
    samples = np.stack([noise.sample() for _ in range(200)])
    # stationary variance sigma^2 / (1 - (1 - theta)^2) = 0.04 / 0.2775
    assert samples[-1].var() == pytest.approx(0.04 / 0.2775, rel=0.1)
    lag1 = np.corrcoef(samples[-2, :, 0], samples[-1, :, 0])[0, 1]
    assert lag1 == pytest.approx(0.85, abs=0.05)  # correlated in time: 1 - theta
    noise.sigma = 0.0
    before = noise.x.copy()
    np.testing.assert_allclose(noise.sample(), 0.85 * before)


def test_ddpg_learns_a_one_step_problem() -> None:
    """Reward -(a - s/2)^2 with s ~ U[-1, 1]: the best action is s/2."""
    rng = np.random.default_rng(0)
    agent = DDPG(1, hidden_units=[32, 32], gamma=0.5, tau=0.05, actor_lr=1e-3, critic_lr=1e-2, seed=0)
    buffer = ReplayBuffer(4096, 1, 1)
    s = rng.uniform(-1, 1, (4096, 1))
    a = rng.uniform(-1, 1, (4096, 1))
    buffer.add(s, a, -((a - s / 2) ** 2)[:, 0], rng.uniform(-1, 1, (4096, 1)))
    for _ in range(30):
        agent.update(*buffer.sample(rng, 50, 64))
    probe = np.linspace(-1, 1, 9)[:, None].astype(np.float32)
    np.testing.assert_allclose(agent.act(probe), probe / 2, atol=0.1)


@pytest.mark.slow
def test_ddpg_swings_the_pendulum_up_from_its_state() -> None:
    """DDPG on (cos theta, sin theta, thetadot / 8): random torques score about -1,800 per
    episode; after 15,000 frames the swing-up scores above -400 (about -150 to -250 when solved)."""

    def features(theta: np.ndarray, thetadot: np.ndarray) -> np.ndarray:
        return np.stack([np.cos(theta), np.sin(theta), thetadot / 8], -1).astype(np.float32)

    rng = np.random.default_rng(0)
    agent = DDPG(3, tau=5e-3, seed=0)
    buffer = ReplayBuffer(25_000, 3, 1)
    noise = OrnsteinUhlenbeck((10, 1), 0.15, 0.2, rng)
    for _ in range(5):
        theta, thetadot = rng.uniform(-np.pi, np.pi, 10), rng.uniform(-1, 1, 10)
        noise.reset()
        for _ in range(env.EPISODE_STEPS):
            s = features(theta, thetadot)
            a = np.clip(agent.act(s) + noise.sample(), -1, 1)
            theta, thetadot, reward = env.dynamics(theta, thetadot, 2 * a[:, 0])
            buffer.add(s, a, reward, features(theta, thetadot))
            if buffer.size >= 1000:
                agent.update(*buffer.sample(rng, 10, 128))
    theta, thetadot = rng.uniform(-np.pi, np.pi, 20), rng.uniform(-1, 1, 20)
    total = np.zeros(20)
    for _ in range(env.EPISODE_STEPS):
        theta, thetadot, reward = env.dynamics(theta, thetadot, 2 * agent.act(features(theta, thetadot))[:, 0])
        total += reward
    assert total.mean() > -400
