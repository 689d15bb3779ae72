"""A2C, PPO and IMPALA (feed-forward and LSTM) through `reverie train`, `--resume` and `reverie evaluate` on the
tiny preset (toy/catch), deterministic local mode, Ray mode (one Ray instance for the module), and every full-size
actor-critic preset loading and validating."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents.actor_critic.config import ActorCriticConfig, validate
from agents.actor_critic.train import train
from agents.runtime.loop import TrainState
from launch.cli import main
from launch.config import load_config, peek_algo
from worldmodels.common.checkpoint import find_checkpoint, list_checkpoints, load_checkpoint

FRAME_SKIP = 4  # toy/catch's frame bookkeeping


def _scalars(run: Path, tag: str) -> list[tuple[int, float]]:
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


def _last_json(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _tiny(*overrides: str) -> ActorCriticConfig:
    return load_config(ActorCriticConfig, ["a2c_tiny"], ["run.progress=false", *overrides])


def _overrides(loss: str, core: str) -> list[str]:
    extra = ["network.prev_action_reward=true"] if (loss, core) == ("impala", "lstm") else []
    return [f"agent.loss={loss}", f"network.core={core}", "run.progress=false", *extra]


@pytest.mark.parametrize("core", ["ff", "lstm"])
@pytest.mark.parametrize("loss", ["a2c", "ppo", "impala"])
def test_train_resume_evaluate_through_the_cli(loss: str, core: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    overrides = _overrides(loss, core)
    assert main(["train", "a2c_tiny", *overrides, "--run-dir", str(run)]) == 0
    summary = _last_json(capsys)
    assert summary["run_dir"] == str(run)
    assert summary["frames"] >= 2048 and summary["updates"] > 0 and summary["episodes"] > 0
    assert -5.0 <= summary["mean_return_last_20"] <= 5.0
    ckpts = list_checkpoints(run / "checkpoints")
    assert ckpts, "no checkpoint written"
    first = load_checkpoint(ckpts[-1])
    assert first["algo"] == "actor_critic" and first["steps"] * FRAME_SKIP == summary["frames"]
    assert first["updates"] == summary["updates"]
    assert any(k.startswith("lstm.") for k in first["learner"]["network"]) == (core == "lstm")

    returns = _scalars(run, "charts/episodic_return")
    assert len(returns) == summary["episodes"] and all(-5.0 <= v <= 5.0 for _, v in returns)
    lags = _scalars(run, "charts/policy_lag")
    assert lags and all(v == 0.0 for _, v in lags)  # local mode: every chunk on the newest weights
    for tag in ("losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/grad_norm",
                "charts/learning_rate"):
        values = _scalars(run, tag)
        assert values and all(math.isfinite(v) for _, v in values), tag
    # the entropy of a 3-action policy lies in [0, ln 3]
    assert all(0.0 <= v <= math.log(3) + 1e-5 for _, v in _scalars(run, "losses/entropy"))
    if loss == "ppo":
        assert _scalars(run, "losses/approx_kl") and _scalars(run, "losses/clip_fraction")
    if loss == "impala":
        assert all(v > 0 for _, v in _scalars(run, "losses/mean_rho"))
    evals = _scalars(run, "eval/mean_return")
    assert len(evals) == 1 and -5.0 <= evals[0][1] <= 5.0

    # Resume: counters continue from the newest checkpoint, not from zero.
    assert main(["train", "a2c_tiny", *overrides, "--resume", str(run), "run.total_frames=3072"]) == 0
    resumed = _last_json(capsys)
    assert resumed["frames"] >= 3072 and resumed["frames"] > summary["frames"]
    assert resumed["updates"] > summary["updates"] and resumed["episodes"] > summary["episodes"]
    newest = load_checkpoint(list_checkpoints(run / "checkpoints")[-1])
    assert newest["steps"] * FRAME_SKIP == resumed["frames"]
    assert not all(torch.equal(newest["learner"]["network"][k], v) for k, v in first["learner"]["network"].items())
    assert min(step for step, _ in _scalars(run, "charts/episodic_return")[len(returns):]) > summary["frames"]

    assert main(["evaluate", str(run), "--episodes", "3", "--json"]) == 0
    report = _last_json(capsys)
    assert report["algo"] == "actor_critic" and report["game"] == "toy/catch" and report["protocol"] == "toy"
    assert len(report["returns"]) == 3 and all(-5.0 <= r <= 5.0 for r in report["returns"])
    assert report["mean"] == pytest.approx(float(np.mean(report["returns"])))
    assert report["frames_trained"] == resumed["frames"]


def test_cli_refuses_an_on_policy_run_that_may_run_ahead(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "a2c_tiny", "runtime.max_ahead_chunks=1", "--run-dir", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "runtime.max_ahead_chunks" in err and "Traceback" not in err
    assert not (tmp_path / "a" / "checkpoints").exists()


@pytest.mark.parametrize("loss, core", [("ppo", "lstm"), ("impala", "ff")])
def test_local_mode_is_deterministic(loss: str, core: str, tmp_path: Path) -> None:
    def final_weights(name: str, seed: int) -> tuple[dict[str, torch.Tensor], list[float], int]:
        cfg = _tiny(*_overrides(loss, core), f"run.seed={seed}", "run.total_frames=1024", "run.eval_episodes=0")
        state = train(cfg, run_dir=tmp_path / name)
        return load_checkpoint(find_checkpoint(tmp_path / name))["learner"]["network"], state.returns, state.updates

    (a, returns_a, updates_a), (b, returns_b, updates_b) = final_weights("a", 3), final_weights("b", 3)
    other = final_weights("c", 4)[0]
    assert returns_a == returns_b and updates_a == updates_b > 0
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    assert any(not torch.equal(a[k], other[k]) for k in a)  # another seed gives other weights


def _record_chunks(log: list[tuple[int, int, int]]) -> Any:
    """A hook that wraps the learner's ingest to log (actor id, weights version, learner updates) of every chunk."""

    def hook(state: TrainState) -> None:
        learner = state.learner
        if getattr(learner, "_recorded", False):
            return
        ingest = learner.ingest

        def recording(output: Any) -> None:
            log.append((output.actor_id, output.weights_version, state.updates))
            ingest(output)

        learner.ingest = recording
        learner._recorded = True

    return hook


@pytest.mark.usefixtures("ray_local")
@pytest.mark.parametrize("loss", ["a2c", "ppo"])
def test_ray_synchronous_objectives_collect_every_chunk_on_the_newest_weights(loss: str, tmp_path: Path) -> None:
    cfg = _tiny(f"agent.loss={loss}", "runtime.num_actors=2", "run.eval_episodes=0")
    chunks: list[tuple[int, int, int]] = []
    state = train(cfg, run_dir=tmp_path / "run", hooks=[_record_chunks(chunks)])
    assert state.frames >= cfg.run.total_frames and state.updates > 0
    # one update per pair of chunks (one from each actor), every chunk on the weights of the last update
    assert {actor for actor, _, _ in chunks} == {0, 1}
    assert all(version == updates for _, version, updates in chunks), chunks
    lags = _scalars(tmp_path / "run", "charts/policy_lag")
    assert lags and all(v == 0.0 for _, v in lags)
    assert load_checkpoint(find_checkpoint(tmp_path / "run"))["algo"] == "actor_critic"


@pytest.mark.usefixtures("ray_local")
@pytest.mark.parametrize("core", ["ff", "lstm"])
def test_ray_impala_actors_run_ahead_and_vtrace_corrects(core: str, tmp_path: Path) -> None:
    cfg = _tiny("agent.loss=impala", f"network.core={core}", "runtime.num_actors=2", "runtime.max_ahead_chunks=1",
                "run.eval_episodes=0")
    chunks: list[tuple[int, int, int]] = []
    state = train(cfg, run_dir=tmp_path / "run", hooks=[_record_chunks(chunks)])
    assert state.frames >= cfg.run.total_frames and state.updates > 0
    assert {actor for actor, _, _ in chunks} == {0, 1}
    lag = [updates - version for _, version, updates in chunks]
    # Actors are handed their next chunk before the update that the last chunks allowed: lag 1 (never negative).
    assert min(lag) >= 0 and 1 <= max(lag) <= 4, lag
    assert any(v > 0 for _, v in _scalars(tmp_path / "run", "charts/policy_lag"))
    rhos = _scalars(tmp_path / "run", "losses/mean_rho")
    assert rhos and all(math.isfinite(v) and v > 0 for _, v in rhos)
    assert all(math.isfinite(v) for _, v in _scalars(tmp_path / "run", "losses/value_loss"))


PRESETS = {
    "a2c_pong": ("a2c", "ff", "Pong"),
    "ppo_pong": ("ppo", "ff", "Pong"),
    "impala_pong": ("impala", "lstm", "Pong"),
    "a2c_minatar": ("a2c", "ff", "minatar/breakout"),
    "ppo_minatar": ("ppo", "ff", "minatar/breakout"),
    "impala_minatar": ("impala", "ff", "minatar/breakout"),
}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_full_size_presets_load_and_validate(name: str) -> None:
    loss, core, game = PRESETS[name]
    assert peek_algo([name]) == "actor_critic"
    cfg = load_config(ActorCriticConfig, [name])
    validate(cfg)
    assert (str(cfg.agent.loss), str(cfg.network.core), cfg.env.game) == (loss, core, game)
    assert cfg.run.name == name and cfg.run.total_frames >= 2_000_000 and cfg.run.eval_episodes > 0
    if loss in ("a2c", "ppo"):
        assert cfg.runtime.chunk_steps == cfg.agent.unroll_length
        assert cfg.runtime.max_ahead_chunks == 0 and cfg.runtime.publish_every_updates == 1
    else:
        assert cfg.runtime.num_actors == 2 and cfg.agent.vtrace_rho_bar == cfg.agent.vtrace_c_bar == 1.0
    if game.startswith("minatar/"):
        assert str(cfg.network.torso) == "minatar" and cfg.agent.clip_rewards is False
    if loss == "ppo":
        assert cfg.agent.gae_lambda == 0.95 and str(cfg.agent.optimizer) == "adam"
        assert cfg.agent.unroll_length == 128 and cfg.env.num_envs == 8
