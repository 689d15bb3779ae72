"""DQN's exploration bonus on every env family (issue 24 items 2-3): ``exploration.bonus=rnd``, the whole newest
MinAtar / maze observation scored (not its last channel), a family a bonus cannot score refused naming the key, and
the shared density server building its source from the actors' input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.dqn.actor import DensityServer, make_dqn_parts
from agents.dqn.config import DQNConfig, validate
from agents.runtime.actor import EnvActor
from envs.novelty import novelty_input
from launch.config import load_config
from worldmodels.density import CTS, PseudoCount
from worldmodels.density.rnd import RND

torch.set_num_threads(1)


def _cfg(game: str, bonus: str) -> DQNConfig:
    return load_config(DQNConfig, ["dqn_minatar"], [f"env.game={game}", "env.num_envs=2", "network.hidden=16",
                                                    f"exploration.bonus={bonus}", "agent.n_step=1"])


@pytest.mark.parametrize("game, channels", [("minatar/breakout", 4), ("maze/10", 3)])
def test_a_pseudo_count_scores_the_whole_grid_as_one_symbol_per_cell(game: str, channels: int) -> None:
    actor = EnvActor(0, make_dqn_parts, _cfg(game, "cts"), seed=1)
    adder = actor.adder
    assert adder.novelty is not None and adder.novelty.family == game.split("/")[0]
    source = adder.pseudo_count
    assert isinstance(source, PseudoCount) and isinstance(source.model, CTS)
    size = 10
    assert source.model.shape == (size, size) and source.model.num_levels == 2**channels
    out = actor.run(20, frames=0)
    assert np.isfinite(out.payload.returns).all() and out.extras["explore/intrinsic_reward_mean"] > 0


def test_rnd_bonus_in_dqn_is_the_rnd_error_of_the_whole_observation() -> None:
    actor = EnvActor(0, make_dqn_parts, _cfg("maze/10", "rnd"), seed=1)
    source = actor.adder.pseudo_count
    assert isinstance(source, RND) and source.config.input_shape == (3, 10, 10)
    out = actor.run(20, frames=0)
    bonus_mean = out.extras["explore/intrinsic_reward_mean"]
    assert np.isfinite(bonus_mean) and bonus_mean > 0
    assert "explore/pseudo_count_mean" not in out.extras  # RND has no counts
    assert source.num_updates == 2 * 21  # the reset frames and 20 steps of 2 envs


def test_a_family_a_bonus_cannot_score_is_refused_naming_the_key() -> None:
    with pytest.raises(ValueError, match=r"exploration.bonus: 'cts' cannot score minatar .*exploration.bonus=rnd"):
        EnvActor(0, make_dqn_parts, _cfg("minatar/seaquest", "cts"), seed=1)
    with pytest.raises(ValueError, match=r"exploration.bonus: 'pixelcnn' cannot score minatar"):
        validate(_cfg("minatar/seaquest", "pixelcnn"))  # up front, before any actor
    validate(_cfg("minatar/freeway", "cts"))  # 7 channels: 128 symbols per cell
    EnvActor(0, make_dqn_parts, _cfg("minatar/seaquest", "rnd"), seed=1)  # RND takes its 10 channels


def test_the_density_server_builds_its_source_from_the_input_and_restores_state_loaded_before() -> None:
    spec = novelty_input("maze", "rnd", (3, 7, 7))
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 2, (4, 3, 7, 7)).astype(np.float32) for _ in range(4)]
    first = DensityServer("rnd", 1.0)
    assert first.state_dict() == {}
    for batch in batches[:2]:
        bonus, counts = first.score(batch, spec)
        assert np.isnan(counts).all() and (bonus > 0).all()
    resumed = DensityServer("rnd", 1.0)
    resumed.load_state_dict(first.state_dict())  # before its source exists, as a resumed run does
    assert resumed.num_frames() == first.num_frames() == 8  # the restored count, before any new frame
    for batch in batches[2:]:
        np.testing.assert_array_equal(resumed.score(batch, spec)[0], first.score(batch, spec)[0])


def test_an_actors_rnd_is_saved_and_restored_with_the_adder_exactly() -> None:
    cfg = _cfg("maze/10", "rnd")
    first = EnvActor(0, make_dqn_parts, cfg, seed=1)
    first.run(15, frames=0)
    second = EnvActor(0, make_dqn_parts, cfg, seed=1)
    second.adder.load_state_dict(first.adder.state_dict())  # as a resumed run restores actor i from actor i's state
    a, b = first.adder.pseudo_count, second.adder.pseudo_count
    assert isinstance(a, RND) and isinstance(b, RND)
    batch = np.random.default_rng(0).integers(0, 2, (4, 3, 10, 10)).astype(np.float32)
    for _ in range(3):
        np.testing.assert_array_equal(a.step(batch), b.step(batch))
