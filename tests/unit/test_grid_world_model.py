"""The grid world model (worldmodels.grid): learning on real MinAtar transitions, metrics against hand-computed
values, branched rollouts and their masks, ImaginedEnv on MinAtar shapes, checkpoints and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from envs import ImaginedEnv, make_env
from worldmodels.grid import (
    GridModelTrainer,
    GridState,
    GridWorldModel,
    GridWorldModelConfig,
    branched_rollouts,
    frame_scores,
    load_grid_world_model,
    one_step_metrics,
    open_loop_errors,
    save_grid_world_model,
)
from worldmodels.grid.fit_check import collect_random_transitions, open_loop_windows
from worldmodels.protocols import WorldModel

SHAPE = (4, 10, 10)  # MinAtar Breakout


def small(**overrides: object) -> GridWorldModelConfig:
    """A model that trains in a blink on one CPU thread."""
    return GridWorldModelConfig(**{"hidden_channels": 16, "res_blocks": 1, "head_hidden": 32, **overrides})


@pytest.fixture(scope="module")
def breakout() -> dict[str, np.ndarray]:
    """400 real MinAtar Breakout transitions of a random policy (4 envs)."""
    env = make_env("minatar/breakout", num_envs=4, seed=0)
    return collect_random_transitions(env, 400, seed=0)


def force_terminal(model: GridWorldModel, logit: float) -> None:
    """Make the game-over head answer ``logit`` whatever it sees."""
    with torch.no_grad():
        model.terminal_head.weight.zero_()
        model.terminal_head.bias.fill_(logit)


def test_collected_transitions_are_real_and_skip_autoreset_steps(breakout: dict[str, np.ndarray]) -> None:
    assert breakout["obs"].shape == (400, *SHAPE) and breakout["obs"].dtype == np.uint8
    assert breakout["next_obs"].max() <= 1 and breakout["actions"].dtype == np.int64
    assert breakout["terminals"].dtype == np.bool_ and breakout["rewards"].dtype == np.float32
    # Consecutive transitions of one env and game chain up: next_obs of one is obs of the next.
    for env_id in range(4):
        idx = np.flatnonzero(breakout["env_ids"] == env_id)
        for a, b in zip(idx[:-1], idx[1:]):
            if breakout["episode_ids"][a] == breakout["episode_ids"][b]:
                np.testing.assert_array_equal(breakout["next_obs"][a], breakout["obs"][b])
            else:
                assert breakout["terminals"][a]  # a new game only after a game over


def test_loss_falls_on_a_fixed_batch_of_real_minatar_transitions(breakout: dict[str, np.ndarray]) -> None:
    torch.manual_seed(0)
    model = GridWorldModel(small(lr=3e-3), SHAPE, 6, game="minatar/breakout")
    trainer = GridModelTrainer(model)
    batch = {k: breakout[k][:256] for k in ("obs", "actions", "rewards", "next_obs", "terminals")}
    first = trainer.train_step(batch)
    for _ in range(40):
        last = trainer.train_step(batch)
    assert set(first) >= {"loss", "obs_nats", "reward_nats", "terminal_nats", "grad_norm", "updates"}
    assert last["updates"] == 41.0
    # An untrained model starts near copy-last (a fraction of a nat per cell), its reward head near uniform over 11
    # values (ln 11 = 2.4 nats) and its game-over head near 0.5 (0.69 nats).
    assert first["obs_nats"] < 0.6 and first["reward_nats"] == pytest.approx(np.log(11), abs=0.3)
    assert last["loss"] < 0.3 * first["loss"] and last["obs_nats"] < 0.85 * first["obs_nats"]


def test_window_batches_give_the_loss_of_their_transitions(breakout: dict[str, np.ndarray]) -> None:
    model = GridWorldModel(small(), SHAPE, 6)
    frames, actions = open_loop_windows(breakout, 3, 8, np.random.default_rng(0))
    windows = {"frames": frames, "actions": np.concatenate([actions, np.zeros((8, 1), np.int64)], 1)}
    pairs = {"obs": frames[:, :-1].reshape(-1, *SHAPE), "actions": actions.reshape(-1),
             "next_obs": frames[:, 1:].reshape(-1, *SHAPE)}
    with torch.no_grad():
        assert float(model.loss(windows)["loss"]) == pytest.approx(float(model.loss(pairs)["loss"]), rel=1e-6)


def test_is_a_world_model_and_steps_as_documented() -> None:
    model = GridWorldModel(small(), SHAPE, 6)
    assert isinstance(model, WorldModel)
    start = np.zeros((3, 1, *SHAPE), np.uint8)
    start[:, 0, 1, 9, 4] = 1
    state = model.initial(start)
    assert isinstance(state, GridState) and state.batch_size == 3 and not state.reward.any()
    state, frame = model.step(state, np.array([0, 1, 5]))
    assert frame.dtype == np.uint8 and frame.shape == (3, *SHAPE) and frame.max() <= 1
    prob = model.predict(start[:, 0], np.array([0, 1, 5]))
    np.testing.assert_array_equal(frame, (prob["cell_prob"] > 0.5).numpy())  # "mode": each cell's likelier value
    np.testing.assert_allclose(state.reward, prob["reward_mean"].numpy(), rtol=1e-6)
    np.testing.assert_allclose(state.terminal, prob["terminal_prob"].numpy(), rtol=1e-6)
    assert model.imagine(start, np.zeros((3, 4), np.int64)).shape == (3, 4, *SHAPE)


def test_sampling_is_seeded_and_draws_from_the_bernoullis() -> None:
    model = GridWorldModel(small(sampling="sample"), SHAPE, 6)
    start = np.zeros((64, *SHAPE), np.uint8)
    actions = np.zeros(64, np.int64)
    a = model.step(model.initial(start), actions, generator=torch.Generator().manual_seed(3))
    b = model.step(model.initial(start), actions, generator=torch.Generator().manual_seed(3))
    np.testing.assert_array_equal(a[1], b[1])
    assert set(np.unique(a[0].terminal)) <= {0.0, 1.0}  # a sampled game over
    prob = float(model.predict(start[:1], actions[:1])["cell_prob"][0, 0, 0, 0])
    assert a[1][:, 0, 0, 0].mean() == pytest.approx(prob, abs=0.2)  # an untrained model's cells are near 0.5


def test_copy_last_and_metrics_by_hand() -> None:
    # Two transitions of a 2-channel 3x3 grid: an object of channel 0 moves right; one of channel 1 stays.
    obs = np.zeros((2, 2, 3, 3), np.uint8)
    nxt = np.zeros_like(obs)
    obs[0, 0, 0, 0] = nxt[0, 0, 0, 1] = 1
    obs[1, 1, 1, 1] = nxt[1, 1, 1, 1] = 1
    scores = frame_scores(obs, nxt, obs)  # copy-last: predict the current frame
    assert scores["cell_error"] == pytest.approx(2 / 36)  # the old and the new cell of the moving object
    assert scores["changed_cell_error"] == 1.0 and scores["frame_exact"] == 0.5
    assert scores["object_recall"] == 0.5 and scores["object_precision"] == 0.5
    assert scores["recall_per_channel"] == [0.0, 1.0] and scores["precision_per_channel"] == [0.0, 1.0]
    perfect = frame_scores(nxt, nxt, obs)
    assert perfect["cell_error"] == 0.0 and perfect["changed_cell_error"] == 0.0 and perfect["object_recall"] == 1.0

    model = GridWorldModel(small(), (2, 3, 3), 3)
    out = one_step_metrics(model, obs, np.array([0, 1]), np.array([1.0, 0.0]), nxt, np.array([False, True]))
    copy = out["copy_last"]
    assert copy["cell_error"] == pytest.approx(2 / 36) and copy["n"] == 2
    assert copy["reward_accuracy"] == 0.5 and copy["reward_recall"] == 0.0  # says 0: misses the one reward
    assert copy["terminal_accuracy"] == 0.5 and copy["terminal_recall"] == 0.0
    assert set(out) == {"model", "copy_last", "shuffled_actions"} and "obs_nats" in out["model"]


def test_open_loop_errors_against_copy_last() -> None:
    frames = np.zeros((2, 4, *SHAPE), np.uint8)  # still frames: copy-last is exact at every step
    frames[:, :, 3] = 1
    model = GridWorldModel(small(), SHAPE, 6)
    out = open_loop_errors(model, frames, np.zeros((2, 3), np.int64))
    assert out["copy_last"] == [0.0, 0.0, 0.0] and len(out["model"]) == 3
    assert all(np.isnan(out["model_changed"]))  # nothing changed, so no changed cell to score


def test_branched_rollout_shapes_and_values() -> None:
    model = GridWorldModel(small(), SHAPE, 6)
    force_terminal(model, -30.0)  # never a game over
    start = np.zeros((5, *SHAPE), np.uint8)
    start[:, 0, 9, :] = 1
    seen: list[np.ndarray] = []

    def policy(obs: np.ndarray) -> np.ndarray:
        seen.append(obs.copy())
        return np.arange(len(obs), dtype=np.int64) % 6

    batch = branched_rollouts(model, start, policy, k=4)
    assert batch.obs.shape == (4, 5, *SHAPE) and batch.next_obs.shape == (4, 5, *SHAPE)
    assert batch.actions.shape == batch.rewards.shape == batch.terminals.shape == batch.valid.shape == (4, 5)
    assert batch.obs.dtype == np.uint8 and batch.rewards.dtype == np.float32 and batch.valid.dtype == np.bool_
    np.testing.assert_array_equal(batch.obs[0], start)
    np.testing.assert_array_equal(batch.obs[1:], batch.next_obs[:-1])  # each step reads the last prediction
    np.testing.assert_array_equal(batch.actions, np.tile(np.arange(5) % 6, (4, 1)))
    np.testing.assert_array_equal(np.stack(seen), batch.obs)
    assert batch.valid.all() and not batch.terminals.any() and batch.num_valid == 20
    assert batch.transitions()["obs"].shape == (20, *SHAPE)


def test_valid_mask_is_false_exactly_after_a_forced_terminal() -> None:
    model = GridWorldModel(small(), SHAPE, 6)
    force_terminal(model, 30.0)  # every step ends the game
    start = np.zeros((3, *SHAPE), np.uint8)
    batch = branched_rollouts(model, start, lambda o: np.zeros(len(o), np.int64), k=3)
    np.testing.assert_array_equal(batch.valid, [[True] * 3, [False] * 3, [False] * 3])
    np.testing.assert_array_equal(batch.terminals, batch.valid)
    assert batch.num_valid == 3 and len(batch.transitions()["actions"]) == 3

    class Scheduled(GridWorldModel):
        """Game over at the step given per rollout (-1: never)."""

        def __init__(self, at: list[int]) -> None:
            super().__init__(small(), SHAPE, 6)
            self.at, self.t = np.asarray(at), 0

        def step(self, state: GridState, action: np.ndarray,
                 generator: torch.Generator | None = None) -> tuple[GridState, np.ndarray]:
            new, frame = super().step(state, action, generator)
            new.terminal = (self.at == self.t).astype(np.float32)
            self.t += 1
            return new, frame

    batch = branched_rollouts(Scheduled([0, 2, -1, 4]), np.zeros((4, *SHAPE), np.uint8),
                              lambda o: np.ones(len(o), np.int64), k=4)
    # Valid through the step of the game over (inclusive), invalid after it; "at 4" lies beyond k.
    np.testing.assert_array_equal(batch.valid.T, [[1, 0, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 1]])
    np.testing.assert_array_equal(batch.terminals.T, [[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]])


@pytest.mark.parametrize("k", [0, -2])
def test_nonpositive_k_is_refused(k: int) -> None:
    model = GridWorldModel(small(), SHAPE, 6)
    with pytest.raises(ValueError, match=rf"k={k} must be a positive int"):
        branched_rollouts(model, np.zeros((1, *SHAPE), np.uint8), lambda o: np.zeros(1, np.int64), k=k)


def test_bad_policy_and_bad_observations_are_refused() -> None:
    model = GridWorldModel(small(), SHAPE, 6)
    start = np.zeros((2, *SHAPE), np.uint8)
    with pytest.raises(ValueError, match=r"ints in \[0, 6\) of shape \(2,\)"):
        branched_rollouts(model, start, lambda o: np.full(2, 6, np.int64), k=1)
    with pytest.raises(ValueError, match="do not fit this world model"):
        model.initial(np.zeros((2, 6, 10, 10), np.uint8))
    with pytest.raises(ValueError, match="not pixels"):
        model.initial(np.full((2, *SHAPE), 255, np.uint8))


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ValueError, match="hidden_channels=0"):
        GridWorldModel(small(hidden_channels=0), SHAPE, 6)
    with pytest.raises(ValueError, match="sampling='argmax'"):
        GridWorldModel(small(sampling="argmax"), SHAPE, 6)
    with pytest.raises(ValueError, match=r"obs_shape=\(10, 10\)"):
        GridWorldModel(small(), (10, 10), 6)


def test_imagined_env_runs_the_model_on_minatar_shapes(breakout: dict[str, np.ndarray]) -> None:
    model = GridWorldModel(small(), SHAPE, 6, game="minatar/breakout")
    starts = breakout["obs"][:8, None]  # [M, 1, C, 10, 10]: real start windows of one frame
    env = ImaginedEnv(model, starts, num_envs=3, stack=1, frame_skip=1, max_episode_steps=4)
    real = make_env("minatar/breakout", num_envs=3)
    assert env.single_observation_space == real.single_observation_space  # [C, 10, 10], values 0..1
    assert env.frame_shape == real.frame_shape and env.stack == real.stack == 1 and env.game == "minatar/breakout"
    obs, info = env.reset(seed=0)
    assert obs.shape == (3, *SHAPE) and obs in env.observation_space and info["imagined"].all()
    for _ in range(5):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert obs.shape == (3, *SHAPE) and obs.dtype == np.uint8 and obs.max() <= 1
        assert reward.dtype == np.float32 and terminated.dtype == np.bool_
    assert info["episode_frame_number"].max() <= 4  # truncated after 4 imagined steps and restarted

    force_terminal(model, 30.0)
    env = ImaginedEnv(model, starts[:2], stack=1, frame_skip=1)
    first, _ = env.reset(seed=0)
    _, _, terminated, _, _ = env.step(np.array([0, 1]))
    assert terminated.all()
    obs, reward, terminated, _, _ = env.step(np.array([0, 1]))  # NextStep autoreset to the real start
    np.testing.assert_array_equal(obs, first)
    assert not terminated.any() and not reward.any()


def test_checkpoint_round_trip_and_refusals(tmp_path: Path) -> None:
    model = GridWorldModel(small(sampling="sample"), SHAPE, 6, game="minatar/breakout")
    path = save_grid_world_model(tmp_path / "wm.pt", model)
    loaded = load_grid_world_model(path, obs_shape=SHAPE, num_actions=6)
    start = np.zeros((4, *SHAPE), np.uint8)
    acts = np.arange(4, dtype=np.int64)
    # Same weights and the same sampling generator state: the same sampled step.
    ours, theirs = model.step(model.initial(start), acts)[1], loaded.step(loaded.initial(start), acts)[1]
    np.testing.assert_array_equal(ours, theirs)
    assert loaded.game == "minatar/breakout" and loaded.cfg.sampling == "sample"
    fix = "Give a world model trained on this env's game"
    with pytest.raises(ValueError, match=r"observations \(4, 10, 10\) and 6 actions, but this env has observations "
                                         r"\(6, 10, 10\) and 6 actions") as err:
        load_grid_world_model(path, obs_shape=(6, 10, 10), num_actions=6)
    assert fix in str(err.value) and "minatar/breakout" in str(err.value) and str(path) in str(err.value)
    with pytest.raises(ValueError, match=r"and 6 actions, but this env has observations \(4, 10, 10\) and 3 actions"):
        load_grid_world_model(path, obs_shape=SHAPE, num_actions=3)
    with pytest.raises(ValueError, match="not a grid world model"):
        load_grid_world_model({"format": "something-else"})


def test_trainer_state_restores_exactly(breakout: dict[str, np.ndarray]) -> None:
    batch = {k: breakout[k][:64] for k in ("obs", "actions", "rewards", "next_obs", "terminals")}
    trainer = GridModelTrainer(GridWorldModel(small(), SHAPE, 6))
    trainer.train_step(batch)
    saved = trainer.state_dict()
    after = trainer.train_step(batch)
    restored = GridModelTrainer(GridWorldModel(small(seed=7), SHAPE, 6))  # other weights, overwritten by the state
    restored.load_state_dict(saved)
    again = restored.train_step(batch)
    assert again["loss"] == after["loss"] and again["updates"] == 2.0
    with pytest.raises(ValueError, match="3 actions"):
        GridModelTrainer(GridWorldModel(small(), SHAPE, 3)).load_state_dict(saved)


def test_histories_are_collected_chained_and_zero_before_a_game() -> None:
    env = make_env("minatar/breakout", num_envs=2, seed=0)
    plain = collect_random_transitions(env, 300, seed=1)
    hist = collect_random_transitions(env, 300, seed=1, history=3)
    assert hist["obs"].shape == (300, 3, *SHAPE)
    np.testing.assert_array_equal(hist["obs"][:, -1], plain["obs"])  # same games, newest frame last
    starts = 0
    for env_id in range(2):
        idx = np.flatnonzero(hist["env_ids"] == env_id)
        for a, b in zip(idx[:-1], idx[1:]):
            if hist["episode_ids"][a] == hist["episode_ids"][b]:
                np.testing.assert_array_equal(hist["obs"][b, :-1], hist["obs"][a, 1:])
            else:  # a new game: nothing before its first frame
                assert not hist["obs"][b, :-1].any()
                starts += 1
    assert starts >= 1


def test_a_model_with_context_reads_histories() -> None:
    model = GridWorldModel(small(context=3), SHAPE, 6)
    assert model.context == 3
    rng = np.random.default_rng(0)
    frames = (rng.random((2, 6, *SHAPE)) < 0.1).astype(np.uint8)
    actions = rng.integers(6, size=(2, 6))
    rewards = rng.integers(2, size=(2, 6)).astype(np.float32)
    # Windows give transitions t = 2..4, each with its 3 real frames.
    history = np.stack([frames[:, t - 2: t + 1] for t in range(2, 5)], axis=1).reshape(-1, 3, *SHAPE)
    pairs = {"obs": history, "actions": actions[:, 2:5].reshape(-1), "next_obs": frames[:, 3:6].reshape(-1, *SHAPE),
             "rewards": rewards[:, 2:5].reshape(-1)}
    with torch.no_grad():
        assert float(model.loss({"frames": frames, "actions": actions, "rewards": rewards})["loss"]) == \
            pytest.approx(float(model.loss(pairs)["loss"]), rel=1e-6)
    # Fewer frames than the context: zeros in front, as before a game's first frame; single frames are refused.
    short = model.history_in(frames[:, :1])
    assert short.shape == (2, 3, *SHAPE) and not short[:, :2].any()
    with pytest.raises(ValueError, match=r"reading the last 3: give \[B, T, C, H, W\]"):
        model.initial(frames[:, 0])
    state = model.initial(frames[:, :4])
    state, frame = model.step(state, np.array([1, 2]))
    np.testing.assert_array_equal(state.frames[:, :2].numpy(), frames[:, 2:4])  # the history shifted by one
    np.testing.assert_array_equal(state.frames[:, 2].numpy(), frame)
    # Branched rollouts from histories: the policy sees the newest frame.
    batch = branched_rollouts(model, frames[:, :4], lambda o: np.zeros(len(o), np.int64), k=2)
    np.testing.assert_array_equal(batch.obs[0], frames[:, 3])
    out = open_loop_errors(model, np.repeat(frames[:, :1], 5, axis=1), np.zeros((2, 2), np.int64))
    assert out["copy_last"] == [0.0, 0.0]  # still frames: copy-last is exact
    # ImaginedEnv keeps the last 3 frames of each env and hands them to the model.
    env = ImaginedEnv(model, frames[:, :3], stack=1, frame_skip=1)
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, frames[:, 2])
    obs, *_ = env.step(np.array([0, 1]))
    assert obs.shape == (2, *SHAPE)
