"""The Dyna agent's parts (agents/dyna): config errors that name the key, the transition ring, and a learner that
trains its world model, imagines, mixes batches and resumes exactly from its checkpoint state."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from agents.dyna.config import DynaConfig, validate
from agents.dyna.imagined import TransitionRing
from agents.dyna.learning import DynaLearner
from agents.registry import get_builder
from agents.runtime.algorithm import Counters
from launch.config import load_config
from tests.dyna_parts import fill, make_learner, roundtrip, run_updates, same

torch.set_num_threads(1)

#: A learner that imagines after 2 world-model updates, on 4 Breakout envs.
TINY = ["env.num_envs=4", "network.hidden=16", "agent.batch_size=8", "agent.learning_starts_frames=64",
        "world_model.hidden_channels=8", "world_model.res_blocks=1", "world_model.head_hidden=16",
        "dyna.model_batch_size=16", "dyna.model_warmup_transitions=32", "dyna.rollouts_per_update=4",
        "dyna.holdout_size=32", "replay.capacity=2048", "dyna.imagined_capacity=64", "run.progress=false"]


def _cfg(*overrides: str) -> DynaConfig:
    return load_config(DynaConfig, ["dyna_minatar"], [*TINY, *overrides])


def test_the_preset_loads_validates_and_selects_dyna() -> None:
    cfg = load_config(get_builder("dyna").config_class, ["dyna_minatar"])
    validate(cfg)
    assert cfg.algo == "dyna" and cfg.env.game == "minatar/breakout" and cfg.agent.n_step == 1
    assert cfg.dyna.scheme == "mbpo" and cfg.dyna.rollout_k >= 1


@pytest.mark.parametrize(("override", "match"), [
    ("dyna.rollout_k=0", r"dyna\.rollout_k=0 must be at least 1"),
    ("dyna.rollout_k=-2", r"dyna\.rollout_k=-2"),
    ("dyna.imagined_ratio=-0.5", r"dyna\.imagined_ratio=-0\.5 must be a finite number >= 0"),
    ("dyna.rollouts_per_update=0", r"dyna\.rollouts_per_update=0 must be positive"),
    ("dyna.model_batch_size=0", r"dyna\.model_batch_size=0"),
    ("dyna.imagined_episode_steps=0", r"dyna\.imagined_episode_steps=0 must be positive"),
    ("dyna.q_updates_per_learner_update=0", r"dyna\.q_updates_per_learner_update=0"),
    ("dyna.model_updates_per_learner_update=0", r"dyna\.model_updates_per_learner_update=0"),
    ("dyna.model_warmup_transitions=-1", r"dyna\.model_warmup_transitions=-1"),
    ("dyna.model_update_every=0", r"dyna\.model_update_every=0 must be positive"),
    ("dyna.imagined_capacity=3", r"dyna\.imagined_capacity=3 cannot hold one update.s rollouts.*= 8\); raise it"),
    ("dyna.rollout_epsilon=1.5", r"dyna\.rollout_epsilon=1\.5"),
    ("env.game=toy/catch", r"env\.game='toy/catch' has no world model.*env\.game=minatar/<game>.*Atari game.*"
                           r"algo=dqn"),
    ("env.game=Pong", r"agent\.clip_rewards=false: on Atari the video world model predicts the reward's sign"),
    ("env.game=maze/10", r"env\.game='maze/10' has no world model"),
    ("agent.n_step=3", r"agent\.n_step=3: the dyna agent needs agent\.n_step=1"),
    ("exploration.bonus=rnd", r"exploration\.bonus=rnd.*exploration\.bonus=none"),
    ("world_model.context=0", r"world_model\.context=0 must be positive"),
    ("world_model.hidden_channels=0", r"world_model\.hidden_channels=0 must be positive"),
    ("world_model.lr=2.0", r"world_model\.lr=2"),
    ("agent.batch_size=0", r"agent\.batch_size=0"),  # DQN's own checks still run
])
def test_bad_settings_are_refused_naming_the_key(override: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        validate(_cfg(override))


def test_an_unknown_scheme_is_refused_naming_the_key_and_the_choices() -> None:
    from launch.config import ConfigError

    with pytest.raises(ConfigError, match=r"dyna\.scheme.*mbpo.*simple"):
        _cfg("dyna.scheme=dreamer")


def test_the_dqn_schema_is_not_the_dyna_one() -> None:
    cfg = _cfg()
    cfg.algo = "dqn"
    with pytest.raises(ValueError, match="algo='dqn': this is the Dyna config"):
        validate(cfg)


def _transitions(n: int, start: int, shape: tuple[int, ...] = (2, 3, 3)) -> dict[str, np.ndarray]:
    ids = np.arange(start, start + n)
    frames = np.broadcast_to((ids % 2).astype(np.uint8)[:, None, None, None], (n, *shape)).copy()
    return {"obs": frames, "actions": ids.astype(np.int64), "rewards": ids.astype(np.float32),
            "next_obs": 1 - frames, "terminals": ids % 3 == 0}


def test_the_ring_keeps_the_newest_and_restores_exactly() -> None:
    ring = TransitionRing(5, (2, 3, 3), seed=0)
    assert len(ring) == 0
    with pytest.raises(ValueError, match="empty"):
        ring.sample(1)
    ring.add(_transitions(3, 0))
    ring.add(_transitions(4, 3))  # wraps: 0 and 1 are gone
    assert len(ring) == 5 and ring.written == 7
    assert ring.contents()["actions"].tolist() == [2, 3, 4, 5, 6]
    ring.add(_transitions(7, 7))  # more than the capacity at once: its last 5 only
    assert ring.contents()["actions"].tolist() == [9, 10, 11, 12, 13]
    state = ring.state_dict()
    copy = TransitionRing(5, (2, 3, 3), seed=99)
    copy.load_state_dict(state)
    a, b = ring.sample(20), copy.sample(20)  # the same generator state: the same draws
    assert all(np.array_equal(a[k], b[k]) for k in a) and set(a["actions"].tolist()) <= set(range(9, 14))
    ring.add(_transitions(2, 14))
    copy.add(_transitions(2, 14))
    assert all(np.array_equal(ring.contents()[k], copy.contents()[k]) for k in a)
    with pytest.raises(ValueError, match="observations"):
        ring.add(_transitions(1, 0, shape=(3, 3, 3)))
    with pytest.raises(ValueError, match="capacity 5 cannot be restored into one of 4"):
        TransitionRing(4, (2, 3, 3), seed=0).load_state_dict(state)




def test_the_learner_trains_the_model_imagines_and_mixes_batches() -> None:
    cfg = _cfg()
    learner = make_learner(cfg)
    counters = fill(learner, cfg, 256, frame_skip=1)
    assert learner.updates_due(counters) > 0 and len(learner.holdout) > 0
    first = run_updates(learner, counters, 1)[0]
    # Before warm-up (16 of 32 transitions trained): DQN's own update on real data, no imagination.
    assert learner.num_imagined == 0 and {"losses/td_loss", "losses/q_values", "worldmodel/obs_nats"} <= set(first)
    scalars = run_updates(learner, counters, 4)
    assert learner.warmed_up and 0 < learner.num_imagined <= 4 * 4 * cfg.dyna.rollout_k
    assert len(learner.imagined) == min(learner.num_imagined, cfg.dyna.imagined_capacity)
    assert all(math.isfinite(v) for s in scalars for v in s.values())
    logged = learner.scalars()
    assert logged["worldmodel/imagined_transitions"] == learner.num_imagined
    for tag in ("worldmodel/one_step_cell_error", "worldmodel/copy_last_cell_error", "charts/replay_size"):
        assert 0 <= logged[tag] and math.isfinite(logged[tag]), tag
    imagined = learner.imagined.contents()
    assert imagined["obs"].shape[1:] == (4, 10, 10) and imagined["obs"].max() <= 1


def test_a_batch_mixes_real_and_imagined_as_the_ratio_says(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cfg("dyna.imagined_ratio=1.5", "dyna.model_warmup_transitions=0", "dyna.q_updates_per_learner_update=2")
    learner = make_learner(cfg)
    counters = fill(learner, cfg, 256, frame_skip=1)
    seen: list[tuple[int, float, float]] = []
    step = learner.dqn.core.step

    def spy(obs: torch.Tensor, actions: torch.Tensor, returns: torch.Tensor, discounts: torch.Tensor,
            *rest: Any) -> Any:
        seen.append((len(obs), float(discounts[-12:].max()), float(discounts[-12:].min())))
        return step(obs, actions, returns, discounts, *rest)

    monkeypatch.setattr(learner.dqn.core, "step", spy)
    run_updates(learner, counters, 1)
    # 8 real + round(1.5 * 8) = 12 imagined per DQN step, two steps per learner update; imagined discounts are
    # gamma or 0 (a one-step transition).
    assert [n for n, _, _ in seen] == [20, 20]
    assert all(hi <= cfg.agent.gamma + 1e-6 and lo >= 0.0 for _, hi, lo in seen)
    # The target network is still copied every agent.target_update_frames frames: twice as many DQN steps apart.
    plain = make_learner(_cfg())
    assert learner.dqn.core.target_update_period == 2 * plain.dqn.core.target_update_period




@pytest.mark.parametrize("prioritized", [False, True])
def test_a_restored_learner_continues_exactly(prioritized: bool) -> None:
    cfg = _cfg("replay.save_in_checkpoint=true", f"replay.prioritized={str(prioritized).lower()}")
    learner = make_learner(cfg)
    counters = fill(learner, cfg, 256, frame_skip=1)
    run_updates(learner, counters, 4)
    assert learner.num_imagined > 0
    state = roundtrip(learner.state_dict())
    assert {"learner", "replay", "world_model", "dyna"} <= set(state) and "imagined" in state["dyna"]
    restored = make_learner(cfg)
    restored.load_state_dict(state)
    assert same(restored.state_dict(), learner.state_dict())  # networks, optimisers, replay, imagined buffer
    assert restored.num_imagined == learner.num_imagined and restored.model_transitions == learner.model_transitions
    # Both go on alike: the same model updates, rollouts, mixed batches and DQN steps.
    twin = Counters(**{k: getattr(counters, k) for k in ("steps", "updates", "episodes", "frame_skip",
                                                         "total_steps")})
    a, b = run_updates(learner, counters, 3), run_updates(restored, twin, 3)
    assert a == b
    assert same(restored.state_dict(), learner.state_dict())


def test_without_a_saved_replay_the_imagined_buffer_refills() -> None:
    cfg = _cfg("replay.save_in_checkpoint=false")
    learner = make_learner(cfg)
    counters = fill(learner, cfg, 256, frame_skip=1)
    run_updates(learner, counters, 4)
    state = roundtrip(learner.state_dict())
    assert "replay" not in state and "imagined" not in state["dyna"]
    restored = make_learner(cfg)
    restored.load_state_dict(state)
    assert len(restored.imagined) == 0 and same(restored.trainer.state_dict(), learner.trainer.state_dict())
    assert restored.num_imagined == learner.num_imagined


def test_checkpoint_weights_are_the_online_network() -> None:
    from agents.runtime.algorithm import CheckpointLayout

    cfg = _cfg()
    learner = make_learner(cfg)
    ckpt = CheckpointLayout.payload("dyna", learner.state_dict(), Counters(steps=3), None, "", {}, [])
    weights = get_builder("dyna").checkpoint_weights(ckpt)
    assert all(torch.equal(weights[k], v) for k, v in learner.get_weights().items())


def _never_over(learner: DynaLearner) -> None:
    """The model's game-over head says "no" whatever it sees (and a few Adam steps cannot change that)."""
    with torch.no_grad():
        learner.model.terminal_head.weight.zero_()
        learner.model.terminal_head.bias.fill_(-100.0)


def test_the_simple_scheme_plays_imagined_games_from_real_starts() -> None:
    cfg = _cfg("dyna.scheme=simple", "dyna.model_warmup_transitions=0", "dyna.rollout_k=3",
               "dyna.imagined_episode_steps=4", "dyna.imagined_capacity=256", "replay.save_in_checkpoint=true")
    learner = make_learner(cfg)
    _never_over(learner)
    counters = fill(learner, cfg, 256, frame_skip=1)
    run_updates(learner, counters, 1)
    env = learner._env
    assert env is not None and env.num_envs == 4 and env.max_episode_steps == 4
    assert learner.num_imagined == 4 * 3  # 3 steps of each of 4 games, none cut yet
    # 12 steps per game in all: steps 1-4 a game, 5 its autoreset (dropped), 6-9 the next, 10 dropped, 11-12.
    run_updates(learner, counters, 3)
    assert learner.num_imagined == 4 * 10
    kept = learner.imagined.contents()
    assert len(kept["actions"]) == learner.num_imagined and kept["obs"].shape[1:] == (4, 10, 10)
    # Every imagined observation is one the model made from a real start: 0/1 channels, the frames it chains.
    assert kept["obs"].max() <= 1 and kept["next_obs"].max() <= 1
    state = roundtrip(learner.state_dict())
    restored = make_learner(cfg)
    restored.load_state_dict(state)
    assert restored._env is None and same(restored.state_dict(), learner.state_dict())
    run_updates(restored, counters, 1)  # new imagined games start from real states
    assert restored._env is not None and restored.num_imagined == learner.num_imagined + 12


def test_histories_rebuilt_from_one_frame_chunks_are_those_a_stacking_builder_makes() -> None:
    from agents.dyna.history import HistoryReplay
    from agents.replay.nstep import NStepBuilder

    rng = np.random.default_rng(0)
    n_envs, shape = 3, (1, 2, 2)
    single = NStepBuilder(n_envs, n=1, gamma=0.9, stack=1, frame_shape=shape, actor_id=0)
    stacked = NStepBuilder(n_envs, n=1, gamma=0.9, stack=3, frame_shape=shape, actor_id=0)
    history = HistoryReplay(4096, 1, context=3, frame_shape=shape, seed=0)
    counter = iter(range(1, 10**6))

    def frames() -> np.ndarray:
        return np.stack([np.full(shape, next(counter) % 251, np.uint8) for _ in range(n_envs)])

    first = frames()
    single.reset(first)
    stacked.reset(first)
    resetting = np.zeros(n_envs, bool)
    compared = 0
    for step in range(120):
        terminated = (rng.random(n_envs) < 0.15) & ~resetting
        truncated = (rng.random(n_envs) < 0.05) & ~resetting & ~terminated
        args = (rng.integers(0, 3, n_envs), None, rng.random(n_envs).astype(np.float32), terminated, truncated,
                frames())
        single.step(*args)
        stacked.step(*args)
        resetting = terminated | truncated
        if step % 8 == 7:  # a chunk every 8 steps, as an actor sends them
            a, b = single.flush(), stacked.flush()
            rewritten = history.add(a)
            np.testing.assert_array_equal(rewritten.obs_ids, b.obs_ids)
            np.testing.assert_array_equal(rewritten.next_ids, b.next_ids)
            compared += len(a.actions)
    assert compared > 200 and len(history) == compared
    sample = history.sample(16)
    assert sample["obs"].shape == (16, 3, *shape) and sample["next_obs"].shape == (16, *shape)


def test_a_model_with_histories_learns_imagines_and_restores() -> None:
    for scheme in ("mbpo", "simple"):
        cfg = _cfg("world_model.context=2", f"dyna.scheme={scheme}", "dyna.model_warmup_transitions=0",
                   "replay.save_in_checkpoint=true")
        learner = make_learner(cfg)
        assert learner.history is not None
        counters = fill(learner, cfg, 256, frame_skip=1)
        assert learner.holdout.contents()["obs"].shape[1:] == (2, 4, 10, 10)
        scalars = run_updates(learner, counters, 3)
        assert learner.num_imagined > 0 and all(math.isfinite(v) for s in scalars for v in s.values())
        assert learner.imagined.contents()["obs"].shape[1:] == (4, 10, 10)  # the Q-network's one frame
        assert math.isfinite(learner.scalars()["worldmodel/one_step_cell_error"])
        state = roundtrip(learner.state_dict())
        assert "history" in state["dyna"]
        restored = make_learner(cfg)
        restored.load_state_dict(state)
        assert same(restored.state_dict(), learner.state_dict())
        assert restored.history is not None and len(restored.history) == len(learner.history)


def test_the_world_model_trains_every_model_update_every_learner_updates() -> None:
    cfg = _cfg("dyna.model_update_every=3", "dyna.model_updates_per_learner_update=2")
    learner = make_learner(cfg)
    counters = fill(learner, cfg, 256, frame_skip=1)
    logged = run_updates(learner, counters, 7)  # updates 0, 3 and 6 train the model, twice each
    assert learner.trainer.updates == 6 and learner.model_transitions == 6 * cfg.dyna.model_batch_size
    assert ["worldmodel/obs_nats" in s for s in logged] == [True, False, False, True, False, False, True]
