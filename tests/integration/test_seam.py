"""The algorithm seam carries a second algorithm: tabular Q-learning on toy/catch (tests/algos/tabular_catch.py)
trains through the same loop, CLI and checkpoints as DQN, in local and Ray mode."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agents.registry import register_algorithm
from agents.runtime.loop import TrainState, run_training
from launch.cli import main
from tests.algos.tabular_catch import BUILDER, TabularConfig
from worldmodels.common.checkpoint import find_checkpoint, load_checkpoint

register_algorithm("tabular_catch", "tests.algos.tabular_catch")


def _cfg(**run: int) -> TabularConfig:
    cfg = TabularConfig()
    cfg.run.progress = False
    for key, value in run.items():
        setattr(cfg.run, key, value)
    return cfg


def test_local_mode_trains_deterministically_and_learns(tmp_path: Path) -> None:
    cfg = _cfg(total_frames=40_000, eval_episodes=20)
    a = run_training(BUILDER, cfg, run_dir=tmp_path / "a")
    b = run_training(BUILDER, _cfg(total_frames=40_000, eval_episodes=20), run_dir=tmp_path / "b")
    table_a = load_checkpoint(find_checkpoint(tmp_path / "a"))["table"].numpy()
    table_b = load_checkpoint(find_checkpoint(tmp_path / "b"))["table"].numpy()
    np.testing.assert_array_equal(table_a, table_b)
    # One update per ingested chunk; a chunk holds at most 16 vector steps x 4 envs (reset steps are not counted).
    assert a.updates == b.updates and a.updates >= a.steps // (16 * 4)
    # Random play scores about -3.6, perfect play +5: greedy play on the learned table must be well above random.
    result = BUILDER.evaluate(cfg, table_a, 20, seed=7)
    assert result.mean > 2.0, result.returns
    assert np.mean(a.returns[-20:]) > np.mean(a.returns[:20])


@pytest.mark.usefixtures("ray_local")
def test_ray_mode_trains_through_the_same_loop(tmp_path: Path) -> None:
    import ray

    cfg = _cfg(total_frames=8000)
    cfg.runtime.num_actors = 3  # on a Ray of 2 CPUs: placed only because each reserves half a CPU
    cfg.runtime.actor_cpus = 0.5
    cfg.runtime.actor_niceness = 2
    where: list[dict] = []

    def record(state: TrainState) -> None:
        if not where:
            where.extend(ray.get([a.where.remote() for a in state.runtime.actors]))

    state = run_training(BUILDER, cfg, run_dir=tmp_path / "ray", hooks=[record])
    assert state.frames >= 8000 and state.updates > 0
    assert len({w["pid"] for w in where}) == 3 and {w["niceness"] for w in where} == {2}
    ckpt = load_checkpoint(find_checkpoint(tmp_path / "ray"))
    assert ckpt["algo"] == "tabular_catch" and ckpt["table"].abs().sum() > 0


def test_cli_dispatches_train_and_evaluate_on_algo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    preset = tmp_path / "tabular.yaml"
    preset.write_text("algo: tabular_catch\nrun:\n  total_frames: 4000\n  progress: false\n")
    assert main(["train", str(preset), "agent.lr=0.3", "--run-dir", str(tmp_path / "run")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["frames"] >= 4000
    assert main(["evaluate", str(tmp_path / "run"), "--episodes", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["algo"] == "tabular_catch" and len(report["returns"]) == 3
    # the DQN schema is not used for it: a DQN-only key is unknown here
    assert main(["train", str(preset), "replay.capacity=5", "--run-dir", str(tmp_path / "bad")]) == 2


@pytest.mark.usefixtures("ray_local")
def test_any_error_still_closes_actors_restores_signals_and_keeps_a_checkpoint(tmp_path: Path) -> None:
    import signal

    cfg = _cfg(total_frames=100_000)
    cfg.runtime.num_actors = 2
    cfg.runtime.actor_cpus = 0.5
    before = signal.getsignal(signal.SIGTERM)
    seen: list[TrainState] = []

    def fail(state: TrainState) -> None:
        seen.append(state)
        if state.updates >= 3:
            raise RuntimeError("a bug in a hook")

    with pytest.raises(RuntimeError, match="a bug in a hook"):
        run_training(BUILDER, cfg, run_dir=tmp_path / "crash", hooks=[fail])
    assert seen[-1].runtime.actors == []  # the Ray actors were killed
    assert signal.getsignal(signal.SIGTERM) is before
    ckpt = load_checkpoint(find_checkpoint(tmp_path / "crash"))
    assert ckpt["updates"] == seen[-1].updates  # what the run learnt up to the error is kept
