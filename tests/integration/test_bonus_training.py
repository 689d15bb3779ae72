"""Training with the exploration bonus and the mixed Monte Carlo return, end to end: local mode (rewards in replay,
TensorBoard tags) and Ray mode with one density model shared by two actors; the actor-critic family's bonuses (PPO +
RND's two streams locally, A3C+ on two Ray actors)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents.actor_critic.config import ActorCriticConfig
from agents.dqn.config import DQNConfig
from agents.dqn.train import TrainState, train
from launch.config import load_config


def _catch(tmp_path: Path, name: str, *overrides: str) -> DQNConfig:
    return load_config(DQNConfig, ["dqn_catch"], [
        "run.total_frames=3000", "run.eval_episodes=0", "run.progress=false", "agent.learning_starts_frames=800",
        "agent.batch_size=8", "network.hidden=32", "run.log_every_frames=1000", "agent.n_step=1",
        "exploration.bonus=cts", "exploration.beta=0.05", f"run.runs_dir={tmp_path}", f"run.name={name}",
        *overrides])


def _scalars(run: Path, tag: str) -> np.ndarray:
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    return np.array([e.value for e in acc.Scalars(tag)])


def test_local_bonus_run_logs_intrinsic_returns_and_replay_rewards_exceed_extrinsic(tmp_path: Path) -> None:
    seen: dict[str, object] = {}
    state = train(_catch(tmp_path, "cts", "agent.mc_mix=0.1"), hooks=[lambda s: seen.update(replay=s.learner.replay)])
    assert state.updates > 0
    run = tmp_path / "cts"
    intrinsic = _scalars(run, "charts/intrinsic_return")
    assert len(intrinsic) == state.episodes and (intrinsic > 0).all()
    assert len(_scalars(run, "explore/pseudo_count_mean")) > 0
    # Catch's extrinsic 1-step rewards are -1, 0 or +1 and the bonus lies in (0, 10 * beta] = (0, 0.5]: each
    # stored reward is its extrinsic reward plus the bonus of the frame it led to.
    replay = seen["replay"]
    rewards = replay.sample(512).returns.astype(np.float64)
    bonus = rewards - np.floor(rewards)  # extrinsic in {-1, 0, 1}, bonus in (0, 0.5]
    assert (bonus > 0).all() and (bonus <= 0.5 + 1e-6).all()
    mc = replay.sample(512).mc_returns
    assert np.isfinite(mc).mean() > 0.99  # Catch episodes always end; only the last cut could leave NaN


def test_a_resumed_run_keeps_each_actors_density_model(tmp_path: Path) -> None:
    from worldmodels.common.checkpoint import find_checkpoint, load_checkpoint

    cfg = _catch(tmp_path, "resume", "run.total_frames=1600", "env.num_envs=4")
    first = train(cfg)
    saved = load_checkpoint(find_checkpoint(tmp_path / "resume"))["actor_states"]
    frames_learned = saved[0]["adder"]["pseudo_count"]["num_updates"]
    assert frames_learned >= first.steps  # every step's frame (and each game's first frame) was learned

    learned: list[int] = []
    cfg.run.total_frames = 3200
    again = train(cfg, run_dir=tmp_path / "resume", resume=True,
                  hooks=[lambda s: learned.append(s.runtime.actor.adder.pseudo_count.num_updates)])
    # The model goes on from its saved counts (a fresh one would start from 0 frames).
    assert learned[0] > frames_learned and learned[-1] >= frames_learned + (again.steps - first.steps)


@pytest.mark.usefixtures("ray_local")
def test_ray_actors_share_one_density_model(tmp_path: Path) -> None:
    import ray

    learned: list[int] = []

    def count_frames(state: TrainState) -> None:
        learned.append(ray.get(state.setup.extras["density_server"].num_frames.remote()))

    cfg = _catch(tmp_path, "shared", "runtime.num_actors=2", "env.num_envs=4", "exploration.shared_density=true",
                 "run.total_frames=2000")
    state = train(cfg, hooks=[count_frames])
    # The server learned every frame both actors saw: their steps plus one reset frame per game started.
    assert learned[-1] >= state.steps + 8 and learned == sorted(learned)
    intrinsic = _scalars(tmp_path / "shared", "charts/intrinsic_return")
    assert len(intrinsic) == state.episodes > 0 and (intrinsic > 0).all()
    assert state.setup.extras["density_server"] is not None
    # The shared model is checkpointed with the run and restored on resume.
    from worldmodels.common.checkpoint import find_checkpoint, load_checkpoint

    shared = load_checkpoint(find_checkpoint(tmp_path / "shared"))["shared_actor_state"]
    assert shared["num_updates"] == learned[-1]
    cfg.run.total_frames = 3000
    resumed: list[int] = []
    train(cfg, run_dir=tmp_path / "shared", resume=True,
          hooks=[lambda s: resumed.append(ray.get(s.setup.extras["density_server"].num_frames.remote()))])
    assert resumed[0] > shared["num_updates"]


def test_montezuma_rooms_are_logged_checkpointed_and_resumed(tmp_path: Path) -> None:
    from worldmodels.common.checkpoint import find_checkpoint, load_checkpoint

    def cfg(frames: int) -> DQNConfig:
        return load_config(DQNConfig, ["dqn_montezuma"], [
            f"run.total_frames={frames}", "run.eval_episodes=0", "run.progress=false", "runtime.num_actors=0",
            "env.num_envs=2", "network.hidden=16", "agent.batch_size=4", "agent.learning_starts_frames=256",
            "replay.capacity=4096", "run.log_every_frames=256", "run.checkpoint_every_frames=100000",
            f"run.runs_dir={tmp_path}", "run.name=mz"])

    first = train(cfg(512))
    assert first.discovered == {"explore/rooms_total": {1}}  # the start room
    run = tmp_path / "mz"
    path = find_checkpoint(run)
    ckpt = load_checkpoint(path)
    assert ckpt["discovered"] == {"explore/rooms_total": [1]}
    assert (_scalars(run, "explore/rooms_total") == 1).all()
    ckpt["discovered"]["explore/rooms_total"].append(7)  # as if an earlier stretch of the run had reached room 7
    torch.save(ckpt, path)
    again = train(cfg(1024), run_dir=run, resume=True)
    assert again.discovered == {"explore/rooms_total": {1, 7}} and again.frames >= 1024
    assert _scalars(run, "explore/rooms_total")[-1] == 2


def _ac(tmp_path: Path, preset: str, name: str, *overrides: str) -> ActorCriticConfig:
    return load_config(ActorCriticConfig, [preset], [
        "env.game=maze/7:sparse=true", "run.eval_episodes=0", "run.progress=false", "run.log_every_frames=500",
        f"run.runs_dir={tmp_path}", f"run.name={name}", *overrides])


def test_ppo_rnd_trains_two_streams_and_saves_their_state(tmp_path: Path) -> None:
    """PPO + RND for a few updates (2 envs x 128 steps each): the intrinsic stream's tags are logged, and the
    checkpoint holds the learner's return normaliser and the actor's RND."""
    from agents.actor_critic.train import train as train_ac
    from worldmodels.common.checkpoint import find_checkpoint, load_checkpoint

    cfg = _ac(tmp_path, "ppo_rnd_maze", "ppo_rnd", "env.num_envs=2", "run.total_frames=512",
              "agent.ppo_minibatches=2", "exploration.rnd_init_steps=4", "run.checkpoint_every_frames=256")
    state = train_ac(cfg)
    assert state.updates >= 2  # (autoreset steps are not counted as frames: a third update may be needed)
    run = tmp_path / "ppo_rnd"
    std = _scalars(run, "explore/intrinsic_return_std")
    assert len(std) > 0 and (std > 0).all() and (std != 1.0).all()  # fitted to the returns, not the initial 1
    assert (_scalars(run, "explore/intrinsic_reward_mean") > 0).all()
    ckpt = load_checkpoint(find_checkpoint(run))
    scale = ckpt["learner"]["int_scale"]
    assert scale["returns"][0].shape == (2,) and float(scale["stats"]["count"]) == 256 * ckpt["updates"]
    rnd = ckpt["actor_states"][0]["adder"]["novelty"]
    assert int(np.asarray(rnd["num_updates"])) >= 256 * ckpt["updates"]


@pytest.mark.usefixtures("ray_local")
def test_a3c_plus_on_two_ray_actors_adds_each_actors_bonus(tmp_path: Path) -> None:
    """A3C+ (CTS, one stream) with two Ray actors of 2 envs: each actor owns its model and learns its own frames."""
    from agents.actor_critic.train import train as train_ac
    from worldmodels.common.checkpoint import find_checkpoint, load_checkpoint

    cfg = _ac(tmp_path, "a2c_plus_maze", "a3c_plus", "env.num_envs=2", "runtime.num_actors=2",
              "run.total_frames=400", "run.checkpoint_every_frames=200")
    state = train_ac(cfg)
    assert state.updates > 0
    ckpt = load_checkpoint(find_checkpoint(tmp_path / "a3c_plus"))
    learned = [int(np.asarray(ckpt["actor_states"][i]["adder"]["novelty"]["num_updates"])) for i in (0, 1)]
    # Each actor's model learned its own steps (half the run's, at least) and its games' first frames.
    assert all(n >= 200 for n in learned)
    assert "int_scale" not in ckpt["learner"]  # one stream: no intrinsic return to normalise
