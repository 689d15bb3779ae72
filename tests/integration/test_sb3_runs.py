"""`reverie sb3`: Stable-Baselines3's A2C / PPO with our presets' settings on our envs (launch/sb3_runs.py).

The adapter is checked against our raw envs step by step; the runs on toy/catch check what a run directory holds
(config, TensorBoard curves at emulator frames, checkpoints) and that --resume continues the frame count.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from stable_baselines3.common.save_util import load_from_zip_file  # the bench extra, which `make test` installs
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents.actor_critic.config import ActorCriticConfig
from agents.actor_critic.networks import ActorCriticNetwork
from envs import make_env
from launch.cli import main
from launch.config import load_config
from launch.sb3_runs import LinearToZero, ReverieVecEnv, list_sb3_checkpoints, make_model, make_sb3_env


def _scalars(run: Path, tag: str) -> list[tuple[int, float]]:
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


@pytest.mark.parametrize("game, num_envs, steps, overrides", [
    ("minatar/breakout", 3, 300, {}),
    ("toy/catch", 1, 200, {}),
    # A 100-step frame cap: truncations, and Breakout's life losses (terminal, but the game goes on).
    ("Breakout", 2, 300, {"max_num_frames_per_episode": 400}),
])
def test_adapter_matches_raw_env_step_by_step(game: str, num_envs: int, steps: int, overrides: dict[str, Any]) -> None:
    """Env i of the adapter against a 1-env raw vector env seeded like it (these games' sub-envs are independent;
    Catch's share one RNG, hence one env), stepped with env i's actions plus the NextStep reset step after each
    game over: observations, rewards, dones, terminal observations and truncation flags agree exactly, so no env
    of the adapter takes an extra game step and each reset gives the game the raw env's reset step gives."""
    seed = 7
    adapter = ReverieVecEnv(make_env(game, preset="nature", num_envs=num_envs, seed=seed, **overrides))
    refs = [make_env(game, preset="nature", num_envs=1, seed=seed + i, **overrides) for i in range(num_envs)]
    obs: Any = adapter.reset()
    for i, ref in enumerate(refs):
        np.testing.assert_array_equal(obs[i], ref.reset()[0][0])
    rng = np.random.default_rng(0)
    seen = {"game_over": 0, "truncated": 0, "life_loss": 0}
    for t in range(steps):
        actions = rng.integers(0, int(refs[0].single_action_space.n), num_envs)
        obs, rewards, dones, infos = adapter.step(actions)
        for i, ref in enumerate(refs):
            ref_obs, ref_reward, terminated, truncated, info = ref.step(actions[i:i + 1])
            assert rewards[i] == ref_reward[0] and dones[i] == bool(terminated[0] | truncated[0]), (t, i)
            if dones[i]:
                np.testing.assert_array_equal(infos[i]["terminal_observation"], ref_obs[0])
                assert infos[i]["TimeLimit.truncated"] == bool(truncated[0] and not terminated[0])
                seen["truncated"] += int(infos[i]["TimeLimit.truncated"])
            if info["game_over"][0]:
                seen["game_over"] += 1
                assert "episode" in infos[i]
                ref_obs, ref_reward, terminated, truncated, _ = ref.step(np.zeros(1, np.int64))  # the reset step
                assert ref_reward[0] == 0 and not (terminated[0] or truncated[0])
            elif dones[i]:
                seen["life_loss"] += 1  # the game goes on: the next observation is the same one
                assert "episode" not in infos[i]
            np.testing.assert_array_equal(obs[i], ref_obs[0], err_msg=f"step {t}, env {i}")
    adapter.close()
    for ref in refs:
        ref.close()
    assert seen["game_over"] >= 2
    if game == "Breakout":
        assert seen["truncated"] >= 1 and seen["life_loss"] >= 1


class _BigRewards:
    """A 2-env vector env with NextStep autoreset whose games last 3 steps and score 5 per step (raw)."""

    num_envs, frame_skip, render_mode = 2, 4, None

    def __init__(self) -> None:
        import gymnasium as gym

        self.single_observation_space = gym.spaces.Box(0, 255, (1, 2, 2), np.uint8)
        self.single_action_space = gym.spaces.Discrete(2)
        self.t = np.zeros(2, np.int64)
        self.resets = 0

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        mask = (options or {}).get("reset_mask", np.ones(2, bool))
        self.t[mask] = 0
        self.resets += 1
        return self.t.reshape(2, 1, 1, 1).repeat(2, 2).repeat(2, 3).astype(np.uint8), {}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        assert not (self.t >= 3).any(), "a game over not reset before the next step"
        self.t += 1
        over = self.t == 3
        obs = self.t.reshape(2, 1, 1, 1).repeat(2, 2).repeat(2, 3).astype(np.uint8)
        return (obs, np.full(2, 5.0, np.float32), over.copy(), np.zeros(2, bool),
                {"raw_reward": np.full(2, 5.0), "game_over": over.copy()})

    def close(self) -> None:
        pass


def test_rewards_clipped_and_episodes_scored_raw() -> None:
    """``clip_rewards`` clips what SB3 learns from; ``info["episode"]`` keeps the raw score and the length."""
    env = _BigRewards()
    adapter = ReverieVecEnv(env, clip_rewards=True)
    assert adapter.frame_skip == 4
    first = adapter.reset()
    assert isinstance(first, np.ndarray)
    np.testing.assert_array_equal(first[:, 0, 0, 0], [0, 0])
    for _ in range(2):
        obs, rewards, dones, infos = adapter.step(np.zeros(2, np.int64))
        np.testing.assert_array_equal(rewards, [1.0, 1.0])
        assert not dones.any() and infos == [{}, {}]
    obs, rewards, dones, infos = adapter.step(np.zeros(2, np.int64))
    assert isinstance(obs, np.ndarray) and dones.all() and env.resets == 2  # one full reset, one masked reset of both
    np.testing.assert_array_equal(obs[:, 0, 0, 0], [0, 0])  # already the new games' first observations
    for info in infos:
        assert info["terminal_observation"][0, 0, 0] == 3 and not info["TimeLimit.truncated"]
        assert info["episode"]["r"] == 15.0 and info["episode"]["l"] == 3


def test_settings_map_onto_sb3() -> None:
    a2c = load_config(ActorCriticConfig, ["a2c_pong"], ["env.game=toy/catch", "env.num_envs=2"])
    env = make_sb3_env(a2c)
    model: Any = make_model(a2c, env)
    assert (model.n_steps, model.gamma, model.gae_lambda, model.ent_coef, model.vf_coef) == (5, 0.99, 1.0, 0.01, 0.5)
    assert isinstance(model.learning_rate, LinearToZero) and model.learning_rate(0.5) == pytest.approx(3.5e-4)
    opt = model.policy.optimizer
    from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike

    assert isinstance(opt, RMSpropTFLike)  # a2c_pong's rmsprop_tf: TensorFlow's RMSProp, as SB3's rl-zoo uses
    assert opt.defaults["alpha"] == 0.99 and opt.defaults["eps"] == 1e-5 and model.max_grad_norm == 0.5
    # The features are our network's torso + fc: same weights, same numbers on uint8 observations.
    ours = ActorCriticNetwork((4, 84, 84), 3, a2c.network)
    extractor = model.policy.features_extractor
    extractor.torso.load_state_dict(ours.torso.state_dict())
    extractor.fc.load_state_dict(ours.fc.state_dict())
    obs: Any = env.reset()
    with torch.no_grad():
        theirs = model.policy.extract_features(torch.as_tensor(obs), extractor)
        assert isinstance(theirs, torch.Tensor)
        np.testing.assert_allclose(theirs.numpy(), ours.fc(ours.torso(torch.as_tensor(obs))).numpy(), rtol=1e-6)
    assert model.policy.action_net.in_features == a2c.network.hidden  # heads directly on the hidden layer
    env.close()

    ppo = load_config(ActorCriticConfig, ["ppo_pong"], ["env.game=toy/catch", "agent.anneal_lr=false"])
    env = make_sb3_env(ppo)
    model = make_model(ppo, env)
    assert (model.n_steps, model.n_epochs, model.batch_size, model.vf_coef) == (128, 4, 256, 0.25)
    assert model.clip_range(1.0) == 0.1 and model.clip_range_vf is not None and model.clip_range_vf(1.0) == 0.1
    assert model.learning_rate == 2.5e-4 and model.normalize_advantage
    assert isinstance(model.policy.optimizer, torch.optim.Adam) and model.policy.optimizer.defaults["eps"] == 1e-5
    env.close()


@pytest.mark.parametrize("loss", ["a2c", "ppo"])
def test_sb3_run_logs_checkpoints_and_resumes(loss: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / loss
    assert main(["sb3", "a2c_tiny", f"agent.loss={loss}", "run.progress=false", "--run-dir", str(run)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["frames"] == 2048 and summary["episodes"] > 0  # 2048 frames = 512 steps of 4 envs x 4 steps
    assert "loss: " + loss in (run / "config.yaml").read_text()
    returns = _scalars(run, "charts/episodic_return")
    assert len(returns) == summary["episodes"]
    steps = [s for s, _ in returns]
    assert steps == sorted(steps) and steps[0] < steps[-1] <= 2048 and all(s % 4 == 0 for s in steps)
    assert all(-5 <= v <= 5 for _, v in returns)  # Catch: 5 balls, +-1 each
    assert len(_scalars(run, "charts/episodic_length")) == len(returns)
    assert _scalars(run, "losses/value_loss") and _scalars(run, "losses/entropy_loss")
    assert all(v > 0 for _, v in _scalars(run, "charts/frames_per_s"))
    ckpts = list_sb3_checkpoints(run / "checkpoints")
    assert [p.name for p in ckpts] == ["ckpt_000000001024.zip", "ckpt_000000002048.zip"]
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]  # no temporary file left

    # Resume: the frame count goes on from the checkpoint, into the same TensorBoard run.
    assert main(["sb3", "a2c_tiny", f"agent.loss={loss}", "run.progress=false", "run.total_frames=3072",
                 "--resume", str(run)]) == 0
    resumed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert resumed["frames"] == 3072 and resumed["episodes"] > 0
    newest = list_sb3_checkpoints(run / "checkpoints")[-1]
    assert newest.name == "ckpt_000000003072.zip"
    data, _, _ = load_from_zip_file(newest)
    assert data is not None and data["num_timesteps"] * 4 == 3072
    later = _scalars(run, "charts/episodic_return")[len(returns):]
    assert later and min(s for s, _ in later) > 2048


@pytest.mark.parametrize("override, message", [
    ("agent.loss=impala", "no IMPALA"),
    ("network.core=lstm", "no recurrent core"),
])
def test_what_sb3_cannot_run_is_refused(override: str, message: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "refused"
    assert main(["sb3", "a2c_tiny", override, "--run-dir", str(run)]) == 2
    assert message in capsys.readouterr().err
    assert not run.exists()
