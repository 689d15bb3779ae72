"""Local mode determinism, Ray mode, and an actor killed mid-run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from agents.dqn.config import DQNConfig
from agents.dqn.train import TrainState, train
from launch.config import load_config
from worldmodels.common.checkpoint import find_checkpoint, load_checkpoint


def _catch(tmp_path: Path, name: str, *overrides: str) -> DQNConfig:
    return load_config(DQNConfig, ["dqn_catch"], [
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


# --- RayRuntime.poll: actors do not wait for each other -------------------------------------------------------
@pytest.mark.usefixtures("ray_local")
def test_poll_returns_the_fast_actors_chunk_without_waiting_for_the_slow_one() -> None:
    import time

    from agents.runtime.ray_runtime import RayRuntime
    from tests.algos.fakes import SLOW_SECONDS, sleepy_parts

    runtime = RayRuntime(sleepy_parts, None, num_actors=2, seed=0, chunk_steps=1, steps_per_chunk=2,
                         actor_cpus=0.5)
    try:
        start = time.perf_counter()
        first = runtime.poll(0, budget_steps=10**6, block=True)
        # The fast actor's chunk comes back alone, long before the slow actor's sleep is over.
        assert [out.actor_id for out in first] == [1]
        assert time.perf_counter() - start < SLOW_SECONDS
        fast_chunks = 1
        while True:
            outs = runtime.poll(0, budget_steps=10**6, block=True)
            if any(out.actor_id == 0 for out in outs):
                break
            fast_chunks += len(outs)
        # While actor 0 slept through one chunk, actor 1 kept collecting (no lock-step).
        assert fast_chunks >= 3
    finally:
        runtime.close()
