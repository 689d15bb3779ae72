"""Local mode determinism, Ray mode, and an actor killed mid-run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from agents.dqn.config import TrainConfig
from agents.dqn.train import TrainState, train
from agents.runtime.checkpoint import find_checkpoint, load_checkpoint
from launch.config import load_config


def _catch(tmp_path: Path, name: str, *overrides: str) -> TrainConfig:
    return load_config(TrainConfig, ["dqn_catch"], [
        "run.total_frames=4000", "run.eval_episodes=0", "run.progress=false", "agent.learning_starts_frames=1000",
        "agent.batch_size=8", "network.hidden=32",
        f"run.runs_dir={tmp_path}", f"run.name={name}", *overrides])


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(find_checkpoint(run))["learner"]["online"]


def test_local_mode_is_deterministic(tmp_path: Path) -> None:
    a = train(_catch(tmp_path, "a"))
    b = train(_catch(tmp_path, "b"))
    train(_catch(tmp_path, "c", "run.seed=1"))
    assert a.returns == b.returns and a.updates == b.updates > 0
    wa, wb, wc = _weights(tmp_path / "a"), _weights(tmp_path / "b"), _weights(tmp_path / "c")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_replay_ratio_is_held(tmp_path: Path) -> None:
    state = train(_catch(tmp_path, "ratio", "agent.update_period=4"))
    assert state.updates == (state.steps - 1000 // 4) // 4


@pytest.mark.usefixtures("ray_local")
def test_ray_actor_killed_mid_run_is_replaced(tmp_path: Path) -> None:
    import ray

    cfg = _catch(tmp_path, "kill", "runtime.num_actors=2", "run.total_frames=12000", "env.num_envs=4")
    killed: list[int] = []

    def kill_once(state: TrainState) -> None:
        if not killed and state.frames > 3000:
            ray.kill(state.runtime.actors[0], no_restart=False)
            killed.append(state.frames)

    state = train(cfg, hooks=[kill_once])
    assert killed, "the hook never fired"
    assert state.runtime.restarts >= 1
    assert state.frames >= 12000 and state.updates > 0
