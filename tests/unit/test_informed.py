"""Informed exploration (Oh et al. 2015, Sec. 4.3): the kernel, the visit count, the policy and its config."""

from __future__ import annotations

import dataclasses
import importlib
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from agents.dqn.config import DQNConfig, validate
from agents.dqn.informed import (
    InformedExplorationPolicy,
    check_world_model,
    kernel,
    load_informed_world_model,
    predict_next_frames,
    visit_counts,
)
from agents.dqn.networks import QNetwork
from launch.config import load_config

LEFT, STAY, RIGHT = 0, 1, 2


@dataclasses.dataclass
class PixelState:
    frames: np.ndarray       # uint8 [B, k, 84, 84]
    reward: np.ndarray       # float32 [B]
    terminal: np.ndarray     # float32 [B]


class PixelModel:
    """Test double of the worldmodels.video API on Catch's action set: the action moves the bright pixel of the
    newest frame one column left, keeps it, or moves it one column right."""

    def __init__(self, game: str = "toy/catch", num_actions: int = 3, frame_shape: tuple[int, int] = (84, 84),
                 context: int = 4) -> None:
        self.game, self.num_actions, self.frame_shape, self.context = game, num_actions, frame_shape, context
        self.mean_frame = np.zeros(frame_shape, np.float32)
        self.predictions = 0

    def initial(self, frames: np.ndarray) -> PixelState:
        assert frames.dtype == np.uint8 and frames.shape[1] == self.context
        return PixelState(frames.copy(), np.zeros(len(frames), np.float32), np.zeros(len(frames), np.float32))

    def step(self, state: PixelState, actions: np.ndarray) -> tuple[PixelState, np.ndarray]:
        self.predictions += len(actions)
        w = self.frame_shape[1]
        flat = state.frames[:, -1].reshape(len(actions), -1).argmax(axis=1)
        row, col = flat // w, np.clip(flat % w + np.array([-1, 0, 1])[actions], 0, w - 1)
        frame = np.zeros((len(actions), *self.frame_shape), np.uint8)
        frame[np.arange(len(actions)), row, col] = 255
        frames = np.concatenate([state.frames[:, 1:], frame[:, None]], axis=1)
        return PixelState(frames, state.reward, state.terminal), frame


def pixel(col: int, row: int = 40) -> np.ndarray:
    frame = np.zeros((84, 84), np.uint8)
    frame[row, col] = 255
    return frame


def stack_of(cols: list[int]) -> np.ndarray:
    """One observation uint8 [4, 84, 84] whose frames show the pixel at ``cols`` (oldest first)."""
    return np.stack([pixel(c) for c in cols])


def catch_cfg(*overrides: str) -> DQNConfig:
    return load_config(DQNConfig, ["dqn_catch"], list(overrides))


def make_policy(model: PixelModel, epsilon: float, **kwargs: Any) -> InformedExplorationPolicy:
    torch.manual_seed(0)
    return InformedExplorationPolicy(QNetwork(3, hidden=16), model, catch_cfg(), 0, seed=0, fixed_epsilon=epsilon,
                                     **kwargs)


def test_kernel_hand_computed() -> None:
    x = np.zeros((2, 2))
    y = np.array([[0.5, 0.0], [0.0, 1.0]])          # squared differences 0.25, 0, 0, 1
    assert kernel(x, y, sigma=1.0) == pytest.approx(np.exp(-1.25))
    assert kernel(x, y, sigma=100.0) == pytest.approx(np.exp(-0.0125))
    # delta = 0.3: 0.25 falls below it (0), 1 - 0.3 = 0.7 stays.
    assert kernel(x, y, sigma=1.0, delta=0.3) == pytest.approx(np.exp(-0.7))
    assert kernel(y, y) == 1.0
    # Two uint8 frames with the pixel moved: two pixels differ by 1 on the [0, 1] scale.
    assert kernel(pixel(3) / 255.0, pixel(4) / 255.0, sigma=100.0) == pytest.approx(np.exp(-0.02))
    # Broadcast over leading dimensions.
    assert kernel(np.zeros((3, 1, 2, 2)), np.zeros((1, 5, 2, 2))).shape == (3, 5)


def test_visit_count_sums_over_the_last_d_frames_only() -> None:
    policy = make_policy(PixelModel(), epsilon=1.0, history=2, sigma=1.0)
    for col in (10, 20, 30):                       # the history keeps 20 and 30; 10 fell out
        policy.remember(pixel(col)[None])
    assert policy._seen == 2
    valid = np.ones((1, 2), bool)
    counts = visit_counts(np.stack([pixel(10), pixel(20), pixel(50)])[None], policy._frames, valid, sigma=1.0)
    far = np.exp(-2.0)                             # two differing pixels, sigma 1
    np.testing.assert_allclose(counts, [[2 * far, 1 + far, 2 * far]])
    # Slots not filled yet do not count.
    history = np.stack([pixel(20), pixel(30)])[None]
    counts = visit_counts(pixel(20)[None, None], history, np.array([[False, True]]), sigma=1.0)
    np.testing.assert_allclose(counts, [[far]])


def test_predict_next_frames_is_one_batch_of_every_action() -> None:
    model = PixelModel()
    obs = np.stack([stack_of([1, 2, 3, 4]), stack_of([9, 9, 9, 9])])
    frames = predict_next_frames(model, obs)
    assert frames.shape == (2, 3, 84, 84) and frames.dtype == np.uint8 and model.predictions == 6
    np.testing.assert_array_equal(frames[0], np.stack([pixel(3), pixel(4), pixel(5)]))
    np.testing.assert_array_equal(frames[1], np.stack([pixel(8), pixel(9), pixel(10)]))


def test_epsilon_one_picks_the_least_visited_predicted_frame() -> None:
    # The paper's constants. Env 0 moved right (columns 40, 41, 42): RIGHT leads somewhere new. Env 1 moved left
    # (60, 59, 58): LEFT leads somewhere new. Env 2 stayed at 20 for long: both moves are equally new.
    policy = make_policy(PixelModel(), epsilon=1.0)
    trajectories = [[40, 41, 42], [60, 59, 58], [20, 20, 20]]
    for t in range(3):  # observations of steps 0, 1, 2 (the stack's older frames repeat the first)
        obs = np.stack([stack_of([traj[max(0, t - 3 + i)] for i in range(4)]) for traj in trajectories])
        actions, extras = policy.act(obs, frames=0)
    assert actions[0] == RIGHT and actions[1] == LEFT and actions[2] in (LEFT, RIGHT)
    assert extras["q"].shape == (3, 3)
    # Ties are broken at random: over many draws env 2 takes both moves, never STAY (the visited frame).
    picks = {int(policy.explore(obs, np.array([2]))[0][0]) for _ in range(40)}
    assert picks == {LEFT, RIGHT}
    scalars = policy.log_scalars(0)
    assert scalars["epsilon"] == 1.0 and 0 < scalars["explore/informed_visit_count"] <= 3


def test_epsilon_zero_is_greedy_and_predicts_nothing() -> None:
    model = PixelModel()
    policy = make_policy(model, epsilon=0.0)
    obs = np.stack([stack_of([40, 41, 42, 43]), stack_of([5, 5, 5, 5])])
    actions, extras = policy.act(obs, frames=0)
    np.testing.assert_array_equal(actions, extras["q"].argmax(axis=1))
    assert model.predictions == 0 and "explore/informed_visit_count" not in policy.log_scalars(0)


def test_model_with_other_action_count_is_rejected_by_the_policy() -> None:
    with pytest.raises(ValueError, match="4 actions, the Q-network 3"):
        make_policy(PixelModel(num_actions=4), epsilon=1.0)


def test_config_validation_errors() -> None:
    # A choice outside the Enum is refused while loading (ConfigError is a ValueError), naming key and choices.
    with pytest.raises(ValueError, match=r"exploration\.strategy.*'curious', expected one of "
                                         r"\[epsilon_greedy, informed\]"):
        validate(catch_cfg("exploration.strategy=curious"))
    with pytest.raises(ValueError, match="strategy='informed' needs exploration.world_model"):
        validate(catch_cfg("exploration.strategy=informed"))
    informed = ("exploration.strategy=informed", "exploration.world_model=runs/wm")
    validate(catch_cfg(*informed))
    with pytest.raises(ValueError, match="exploration.informed_history=0 must be at least 1"):
        validate(catch_cfg(*informed, "exploration.informed_history=0"))
    with pytest.raises(ValueError, match="exploration.informed_sigma=0.0 must be a finite number > 0"):
        validate(catch_cfg(*informed, "exploration.informed_sigma=0"))
    with pytest.raises(ValueError, match="exploration.informed_delta=-1.0 must be a finite number >= 0"):
        validate(catch_cfg(*informed, "exploration.informed_delta=-1"))
    # Epsilon-greedy ignores a world model (the baseline of a comparison keeps the same preset).
    validate(catch_cfg("exploration.world_model=runs/wm"))


def test_world_model_must_exist_and_fit_the_game(tmp_path: Path) -> None:
    cfg = catch_cfg("exploration.strategy=informed", f"exploration.world_model={tmp_path / 'missing'}")
    with pytest.raises(ValueError, match=r"world_model=.*missing' does not exist.*fit-world-model"):
        load_informed_world_model(cfg)
    check_world_model(cfg, PixelModel())
    with pytest.raises(ValueError, match=r"trained on 'Pong', but env.game='toy/catch'"):
        check_world_model(cfg, PixelModel(game="Pong"))
    with pytest.raises(ValueError, match="has 4 actions, but toy/catch .* has 3"):
        check_world_model(cfg, PixelModel(num_actions=4))
    with pytest.raises(ValueError, match=r"frames of shape \(64, 64\)"):
        check_world_model(cfg, PixelModel(frame_shape=(64, 64)))
    with pytest.raises(ValueError, match="needs 5 context frames; observations hold only 4"):
        check_world_model(cfg, PixelModel(context=5))
    # Game names in any spelling match.
    pong = load_config(DQNConfig, ["dqn_pong"], ["exploration.strategy=informed", "exploration.world_model=x"])
    check_world_model(pong, PixelModel(game="ALE/Pong-v5", num_actions=6))
    with pytest.raises(ValueError, match="trained on 'Breakout', but env.game='Pong'"):
        check_world_model(pong, PixelModel(game="Breakout", num_actions=6))


def test_breakout_preset_validates_and_names_its_placeholder() -> None:
    cfg = load_config(DQNConfig, ["dqn_informed_breakout"])
    validate(cfg)
    assert cfg.env.game == "Breakout" and cfg.exploration.strategy == "informed"
    assert cfg.agent.lr == 6.25e-5 and cfg.exploration.eps_decay_frames == 1_000_000   # from dqn_pong
    if not Path(cfg.exploration.world_model).exists():
        with pytest.raises(ValueError, match="does not exist"):
            load_informed_world_model(cfg)


@pytest.fixture
def fake_loader(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """``worldmodels.video.load_world_model`` returning a PixelModel; returns a path that exists."""
    try:
        video = importlib.import_module("worldmodels.video")
    except Exception:  # the lead's package may not exist yet (or be mid-edit): stand in for it
        video = types.ModuleType("worldmodels.video")
        monkeypatch.setitem(sys.modules, "worldmodels.video", video)
    monkeypatch.setattr(video, "load_world_model", lambda path: PixelModel(), raising=False)
    (tmp_path / "wm").mkdir()
    return tmp_path / "wm"


def test_make_dqn_parts_builds_the_informed_policy_and_acts(fake_loader: Path) -> None:
    from agents.dqn.actor import EpsilonGreedyPolicy, make_dqn_parts
    from agents.runtime.actor import EnvActor

    cfg = catch_cfg("exploration.strategy=informed", f"exploration.world_model={fake_loader}", "env.num_envs=4",
                    "exploration.eps_start=1.0", "agent.learning_starts_frames=100000")
    validate(cfg)
    assert isinstance(load_informed_world_model(cfg), PixelModel)
    actor = EnvActor(0, make_dqn_parts, cfg, seed=0)
    assert isinstance(actor.policy, InformedExplorationPolicy)
    out = actor.run(num_steps=5, frames=0)
    assert out.env_steps > 0 and out.extras["epsilon"] == 1.0 and "explore/informed_visit_count" in out.extras
    assert actor.policy.model.predictions == 4 * 5 * 3     # every env explored every step: A predictions each
    plain = EnvActor(0, make_dqn_parts, catch_cfg("env.num_envs=4"), seed=0)
    assert type(plain.policy) is EpsilonGreedyPolicy


def test_train_checks_the_world_model_first_and_runs_informed(fake_loader: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from agents.dqn.train import train

    monkeypatch.chdir(fake_loader.parent)
    base = ["exploration.strategy=informed", "run.total_frames=1600", "run.eval_episodes=0", "run.progress=false",
            "agent.learning_starts_frames=800", "agent.batch_size=8", "network.hidden=16", "env.num_envs=4",
            f"run.runs_dir={tmp_path / 'runs'}", "run.name=informed"]
    with pytest.raises(ValueError, match="exploration.world_model='nowhere' does not exist"):
        train(catch_cfg(*base, "exploration.world_model=nowhere"))
    assert not (tmp_path / "runs").exists()          # refused before the run directory was made
    cfg = catch_cfg(*base, f"exploration.world_model={fake_loader.name}")   # relative to the working directory
    state = train(cfg)
    assert state.frames >= 1600
    # prepare derives the run's config (actors get the absolute path, and config.yaml records it) and leaves the
    # caller's alone.
    assert cfg.exploration.world_model == fake_loader.name
    assert state.run_dir is not None
    saved = OmegaConf.load(state.run_dir / "config.yaml")
    assert saved.exploration.world_model == str(fake_loader.resolve())


def test_grey_level_scale_counts_differing_pixels() -> None:
    a = np.zeros((1, 1, 4, 4), np.uint8)
    b = a.copy()
    b[0, 0, 0, :3] = (1, 40, 255)                 # three pixels differ, by 1, 40 and 255 grey levels
    valid = np.ones((1, 1), bool)
    # Grey levels (the default): every differing pixel contributes exactly 1, however small the difference.
    assert visit_counts(a, b, valid, sigma=100.0)[0, 0] == pytest.approx(np.exp(-3 / 100))
    # The [0, 1] scale: squared differences, (1/255)^2 + (40/255)^2 + 1.
    expected = np.exp(-((1 / 255) ** 2 + (40 / 255) ** 2 + 1.0) / 100)
    assert visit_counts(a, b, valid, sigma=100.0, scale=1.0)[0, 0] == pytest.approx(expected, rel=1e-6)
