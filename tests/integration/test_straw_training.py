"""STRAW on the actor-critic learner (issue 11, part 2): the actor's recorded gates replay exactly in the learner,
and `reverie train straw_maze` / `strawe_maze` / `lstm_maze` / `strawe_minatar` run in both runtimes with
TensorBoard, checkpoints and resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents.actor_critic.actor import make_ac_parts
from agents.actor_critic.learning import ActorCriticLearner, Batch
from agents.registry import get_builder
from agents.runtime.actor import EnvActor
from agents.runtime.algorithm import env_spec
from agents.runtime.loop import run_training
from agents.straw.config import StrawConfig
from launch.config import load_config

TINY = ["env.num_envs=4", "straw.plan_len=16", "straw.num_filters=3", "network.hidden=16", "straw.hidden=8",
        "straw.latent_dim=4", "agent.unroll_length=6", "runtime.chunk_steps=6", "run.progress=false",
        "run.eval_episodes=0", "run.log_every_frames=200", "run.checkpoint_every_frames=600"]


def _cfg(tmp_path: Path, *overrides: str, preset: str = "strawe_maze") -> StrawConfig:
    return load_config(StrawConfig, [preset], [*TINY, f"run.runs_dir={tmp_path}", *overrides])


@pytest.mark.parametrize("noisy", [False, True])
def test_the_learner_replays_the_actors_plans_exactly(tmp_path: Path, noisy: bool) -> None:
    cfg = _cfg(tmp_path, "run.name=replay", f"straw.noisy={str(noisy).lower()}", "straw.commitment_cost=0.5")
    actor = EnvActor(0, make_ac_parts, cfg, seed=5)
    spec = env_spec(actor.env)
    learner = ActorCriticLearner(spec, cfg, torch.device("cpu"))
    actor.policy.set_weights(learner.get_weights())
    unrolls = [out.payload for out in (actor.run(cfg.agent.unroll_length, 0, None, 0) for _ in range(3))]
    for unroll in unrolls:
        assert unroll is not None and set(unroll.inputs) == {"gate", "noise"}
        assert unroll.inputs["gate"].shape == (cfg.agent.unroll_length + 1, cfg.env.num_envs)
        batch = Batch(unroll, torch.device("cpu"))
        with torch.no_grad():
            out = learner.network.replay(batch.obs, batch.state, batch.starts, batch.actions, batch.rewards,
                                         batch.inputs)
        # The learner's logits and values are the actor's, step by step, under the gates it drew.
        np.testing.assert_allclose(out.logits[:-1].numpy(), unroll.logits, atol=1e-5)
        assert unroll.values is not None
        np.testing.assert_allclose(out.values[:-1].numpy(), unroll.values, atol=1e-5)
    committed = np.concatenate([1 - u.inputs["gate"][:-1] for u in unrolls if u is not None])
    assert 0 < committed.mean() < 1  # with its random first weights the core both commits and re-plans


@pytest.mark.parametrize("preset", ["straw_maze", "strawe_maze", "lstm_maze", "strawe_minatar"])
def test_presets_train_with_tensorboard_checkpoints_and_resume(tmp_path: Path, preset: str) -> None:
    base = load_config(StrawConfig if preset != "lstm_maze" else get_builder("actor_critic").config_class,
                       [preset], [f"run.runs_dir={tmp_path}", "run.name=r", "run.total_frames=1200",
                                  "env.num_envs=4", "run.progress=false", "run.eval_episodes=2",
                                  "run.log_every_frames=300", "agent.unroll_length=6", "runtime.chunk_steps=6",
                                  *(["straw.plan_len=32"] if preset != "lstm_maze" else [])])
    builder = get_builder(base.algo)
    state = run_training(builder, base)
    assert state.updates > 0 and state.frames >= 1200
    tags = EventAccumulator(str(tmp_path / "r")).Reload().Tags()["scalars"]
    assert "eval/mean_return" in tags
    if preset != "lstm_maze":
        assert {"charts/committed_fraction", "charts/macro_action_length"} <= set(tags)
    base.run.total_frames = 2400
    resumed = run_training(builder, base, run_dir=tmp_path / "r", resume=True)
    assert resumed.frames >= 2400 and resumed.updates > state.updates


@pytest.mark.usefixtures("ray_local")
@pytest.mark.parametrize("loss", ["a2c", "impala"])
def test_straw_trains_with_ray_actors(tmp_path: Path, loss: str) -> None:
    extra = ["runtime.max_ahead_chunks=1", "agent.batch_chunks=2"] if loss == "impala" else []
    cfg = _cfg(tmp_path, "run.name=ray", "runtime.num_actors=2", f"agent.loss={loss}", *extra,
               "run.total_frames=1500")
    state = run_training(get_builder("straw"), cfg)
    assert state.updates > 0 and state.frames >= 1500
    tags = EventAccumulator(str(tmp_path / "ray")).Reload().Tags()["scalars"]
    assert "charts/committed_fraction" in tags and "charts/policy_lag" in tags


def test_pictures_of_the_plans(tmp_path: Path) -> None:
    import imageio.v2 as imageio

    from agents.straw.pictures import plan_panel, record_game, replanning_heatmap, write_pictures

    cfg = _cfg(tmp_path, "env.game=maze/6")
    weights = cfg.build_network((3, 6, 6), 4, 1.0).state_dict()
    paths = write_pictures(cfg, weights, tmp_path / "pics")
    assert sorted(p.name for p in paths) == ["gate_strip.png", "plans.gif", "replanning_heatmap.png"]
    for p in paths:
        assert p.stat().st_size > 1000
    trace = record_game(cfg, weights)
    assert trace.gates[0] and len(trace.frames) == len(trace.plans) == len(trace.gates) <= 100
    assert len(imageio.mimread(tmp_path / "pics" / "plans.gif")) == len(trace.frames)
    panel = plan_panel(trace.plans[0], trace.commits[0], True, 96, 4)
    assert panel.dtype == np.uint8 and panel.shape[2] == 3 and tuple(panel[0, 0]) == (220, 40, 40)  # re-plan bar
    with pytest.raises(ValueError, match="maze"):
        replanning_heatmap(_cfg(tmp_path, "env.game=minatar/breakout"), weights, tmp_path / "x.png")


@pytest.mark.parametrize("preset", ["strawe_atari", "lstm_atari"])
def test_atari_presets_train_on_colour_frames(tmp_path: Path, preset: str) -> None:
    algo = "straw" if preset.startswith("straw") else "actor_critic"
    tiny = ["straw.plan_len=32", "straw.num_filters=3", "straw.latent_dim=4"] if algo == "straw" else []
    cfg = load_config(get_builder(algo).config_class, [preset], [
        f"run.runs_dir={tmp_path}", "run.name=atari", "env.num_envs=2", "agent.unroll_length=4",
        "runtime.chunk_steps=4", "run.total_frames=160", "run.progress=false", "run.eval_episodes=0", *tiny])
    assert cfg.env.colour and cfg.network.torso == "a3c" and cfg.network.hidden == 128
    builder = get_builder(algo)
    state = run_training(builder, cfg)
    assert state.updates > 0
    weights = torch.load(sorted((tmp_path / "atari" / "checkpoints").glob("*.pt"))[-1], weights_only=False)
    convs = [tuple(v.shape) for v in weights["learner"]["network"].values() if v.dim() == 4]
    assert convs == [(16, 12, 8, 8), (32, 16, 4, 4)]  # 4 stacked RGB frames in; the paper's 16 8x8/4, 32 4x4/2
    cfg.run.total_frames = 320
    assert run_training(builder, cfg, run_dir=tmp_path / "atari", resume=True).updates > state.updates


def test_straw_trains_with_ppo(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "run.name=ppo", "agent.loss=ppo", "agent.unroll_length=8", "runtime.chunk_steps=8",
               "agent.ppo_minibatches=2", "agent.ppo_epochs=2", "run.total_frames=640")
    state = run_training(get_builder("straw"), cfg)
    # One update per batch of 4 envs x 8 steps (autoreset steps are in a batch but not counted as agent steps).
    assert 640 // 32 <= state.updates <= state.steps // 32 + 2
    tags = EventAccumulator(str(tmp_path / "ppo")).Reload().Tags()["scalars"]
    assert {"charts/committed_fraction", "losses/core_loss", "losses/approx_kl"} <= set(tags)


@pytest.mark.parametrize("init_centre", [0, 4])
def test_the_gradient_breakdown_shows_a_dead_commitment_module(tmp_path: Path, init_centre: int) -> None:
    from agents.straw.diagnostics import format_breakdown, gradient_breakdown

    cfg = _cfg(tmp_path, "straw.plan_len=100", f"straw.commit_init_centre={init_centre}")
    result = gradient_breakdown(cfg, None, unrolls=2)
    norms = result["grad_norm"]
    assert set(norms) == {"policy", "value", "entropy", "core"}
    assert set(norms["value"]) == {"all", "features", "f_psi", "h", "f_p", "f_c", "commit_bias"}
    assert norms["value"]["all"] > 0 and norms["policy"]["f_psi"] > 0
    # DRAW's initialisation leaves f_c without any gradient; 4 columns ahead, every term reaches it.
    assert (norms["core"]["f_c"] > 0) == (init_centre > 0) and (norms["policy"]["f_c"] > 0) == (init_centre > 0)
    assert sum(result["steps"].values()) == 2 * cfg.agent.unroll_length * cfg.env.num_envs
    assert min(result["value_sq_error"].values()) >= 0 and "committed" in format_breakdown(result)
    # Where the attention starts: DRAW's grid is centred on the plan's middle (50.5 of 100 columns) give or take the
    # random f_psi; the first of K = 3 filters lies a stride before it.
    att = result["attention"]
    assert abs(att["centre"] - 50.5) < 15
    assert att["first_filter"] == pytest.approx(att["centre"] - att["stride"], abs=0.5)
    assert 0 <= att["column0_weight"] < 1.0
