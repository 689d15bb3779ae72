"""The written contracts of the algorithm seam (``agents/runtime/algorithm.py``) hold for every algorithm: parts
functions return :class:`ActorParts`, the optional hooks are found by ``isinstance``, env trackers come from the
env family whatever the algorithm, and the checkpoint layout is read in one place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from agents.registry import _ALGORITHMS, algorithm_names, get_builder
from agents.runtime.actor import EnvActor
from agents.runtime.algorithm import (
    ActorParts,
    DrawsPictures,
    LogsScalars,
    ObservesRewards,
    Stateful,
)
from agents.runtime.config import EnvConfig, env_trackers
from envs import MazeTracker, make_env
from envs.montezuma import RoomTracker
from launch.config import load_config

torch.set_num_threads(1)

#: Every registered algorithm on the smallest env all of them take, the 10x10 maze (2 envs).
SMALL = ["env.game=maze/10", "env.num_envs=2", "run.progress=false"]


def _cfg(algo: str, *overrides: str) -> Any:
    return load_config(get_builder(algo).config_class, [], [*SMALL, *overrides])


#: The project's algorithms (tests may register their own, e.g. tests/algos/tabular_catch.py, which plays only Catch).
ALGORITHMS = [name for name in algorithm_names() if _ALGORITHMS[name].startswith("agents.")]


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_every_builders_parts_function_returns_actor_parts_with_the_env_familys_trackers(algo: str) -> None:
    builder = get_builder(algo)
    cfg = _cfg(algo)
    parts = builder.actor_setup(cfg, distributed=False).parts_fn(cfg, 0)
    try:
        assert isinstance(parts, ActorParts)
        # The maze's tracker comes from env_trackers (one place), for every algorithm alike.
        assert [type(t) for t in parts.trackers if isinstance(t, MazeTracker)] == [MazeTracker]
        obs, _ = parts.env.reset(seed=0)
        parts.adder.reset(obs)
        actions, extras = parts.policy.act(obs, 0, np.ones(len(obs), bool))
        assert actions.shape == (2,) and actions.dtype == np.int64 and isinstance(extras, dict)
    finally:
        parts.env.close()


def test_an_actor_refuses_a_parts_function_that_returns_a_tuple() -> None:
    def old_style(cfg: Any, actor_id: int) -> Any:
        return make_env("toy/catch", num_envs=1, seed=0), None, None

    with pytest.raises(TypeError, match=r"old_style.*tuple.*ActorParts\(env, policy, adder, trackers\)"):
        EnvActor(0, old_style, None, seed=0)


@pytest.mark.parametrize(("game", "backend", "kinds"), [
    ("maze/5", "ale_vector", [MazeTracker]),
    ("montezuma_revenge", "gymnasium", [RoomTracker]),
    ("ALE/MontezumaRevenge-v5", "gymnasium", [RoomTracker]),
    ("montezuma_revenge", "ale_vector", []),  # that backend does not expose the RAM
    ("pong", "gymnasium", []),
    ("toy/catch", "ale_vector", []),
    ("minatar/breakout", "ale_vector", []),
])
def test_env_trackers_follow_the_env_family(game: str, backend: str, kinds: list[type]) -> None:
    env = EnvConfig(game=game, num_envs=3, backend=backend)
    assert [type(t) for t in env_trackers(env)] == kinds


def test_the_optional_hooks_are_found_by_isinstance() -> None:
    ac = _cfg("actor_critic")
    ac_parts = get_builder("actor_critic").actor_setup(ac, distributed=False).parts_fn(ac, 0)
    dqn = _cfg("dqn")
    dqn_parts = get_builder("dqn").actor_setup(dqn, distributed=False).parts_fn(dqn, 0)
    try:
        assert isinstance(ac_parts.policy, ObservesRewards) and not isinstance(ac_parts.policy, LogsScalars)
        assert isinstance(dqn_parts.policy, LogsScalars) and not isinstance(dqn_parts.policy, ObservesRewards)
        assert isinstance(ac_parts.env, Stateful)  # the maze's curriculum position is saved with the run
        assert not isinstance(MazeTracker(), Stateful)
    finally:
        ac_parts.env.close()
        dqn_parts.env.close()
    assert isinstance(get_builder("straw"), DrawsPictures)
    assert not isinstance(get_builder("dqn"), DrawsPictures)


def test_actor_state_saves_exactly_the_stateful_parts(tmp_path: Path) -> None:
    class Counter:
        def __init__(self) -> None:
            self.n = 0

        def state_dict(self) -> dict[str, int]:
            return {"n": self.n}

        def load_state_dict(self, state: dict[str, int]) -> None:
            self.n = state["n"]

    class Policy:
        def act(self, obs: np.ndarray, frames: int, starts: np.ndarray | None = None,
                ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
            return np.zeros(len(obs), np.int64), {}

        def set_weights(self, weights: Any) -> None:
            pass

    class Adder(Counter):
        def reset(self, obs: np.ndarray) -> None:
            pass

        def add(self, *args: Any) -> None:
            self.n += 1

        def flush(self) -> None:
            return None

    def parts(cfg: Any, actor_id: int) -> ActorParts:
        return ActorParts(make_env("toy/catch", num_envs=1, seed=0), Policy(), Adder())

    actor = EnvActor(0, parts, None, seed=0)
    actor.run(3, 0)
    assert actor.get_state() == {"adder": {"n": 3}}  # the policy and the catch env have no state
    fresh = EnvActor(0, parts, None, seed=0)
    fresh.set_state(actor.get_state())
    assert fresh.get_state() == {"adder": {"n": 3}}


# --- the checkpoint layout -------------------------------------------------------------------------------------------
def test_a_checkpoint_from_before_the_algo_key_is_migrated_in_one_place_or_refused_naming_the_fix() -> None:
    from agents.runtime.algorithm import CheckpointLayout
    from worldmodels.common.checkpoint import CheckpointError

    old_dqn = {"learner": {"online": {}, "target": {}, "optimizer": {}, "num_updates": 0}, "steps": 5}
    assert CheckpointLayout.algo(old_dqn, "runs/old/ckpt.pt") == "dqn" and old_dqn["algo"] == "dqn"
    assert CheckpointLayout.algo({"algo": "straw"}, "x.pt") == "straw"  # a current one is left as it is
    with pytest.raises(CheckpointError, match=r"runs/odd/ckpt\.pt names no algorithm.*ckpt\['algo'\] = "):
        CheckpointLayout.algo({"learner": {"network": {}}, "steps": 5}, "runs/odd/ckpt.pt")


@pytest.mark.parametrize("algo", ["actor_critic", "dqn", "straw"])
def test_builders_read_the_weights_their_learner_saved_through_the_layout(algo: str) -> None:
    from agents.runtime.algorithm import CheckpointLayout, Counters
    from agents.runtime.loop import probe_env

    builder = get_builder(algo)
    cfg = _cfg(algo)
    learner = builder.make_learner(cfg, probe_env(cfg), torch.device("cpu"))
    ckpt = CheckpointLayout.payload(algo, learner.state_dict(), Counters(steps=7), None, "", {}, [])
    weights = builder.checkpoint_weights(ckpt)
    expected = learner.get_weights()
    assert weights.keys() == expected.keys()
    assert all(torch.equal(weights[k].cpu(), expected[k]) for k in expected)
    assert CheckpointLayout.steps(ckpt) == 7 and CheckpointLayout.algo(ckpt, "x.pt") == algo


def test_resuming_a_checkpoint_without_algo_that_is_not_dqns_is_a_clear_error(tmp_path: Path) -> None:
    from agents.runtime.loop import run_training
    from tests.algos.tabular_catch import BUILDER, TabularConfig
    from worldmodels.common.checkpoint import CheckpointError, find_checkpoint, load_checkpoint, save_checkpoint

    cfg = TabularConfig()
    cfg.run.progress, cfg.run.total_frames = False, 2000
    run_training(BUILDER, cfg, run_dir=tmp_path / "run")
    path = find_checkpoint(tmp_path / "run")
    state = load_checkpoint(path)
    del state["algo"], state["format"]
    save_checkpoint(path.parent, int(path.stem.split("_")[1]), state)  # the same file, without its algo
    cfg.run.total_frames = 4000
    with pytest.raises(CheckpointError, match=rf"{path.name} names no algorithm"):
        run_training(BUILDER, cfg, run_dir=tmp_path / "run", resume=True)


def test_an_old_dqn_checkpoint_loads_for_evaluation_and_resumes(tmp_path: Path) -> None:
    from agents.runtime.loop import run_training
    from launch.config import load_run_config
    from worldmodels.common.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint

    cfg = load_config(get_builder("dqn").config_class, ["dqn_catch"],
                      ["network.hidden=16", "env.num_envs=2", "run.total_frames=400", "run.progress=false",
                       "run.eval_episodes=0"])
    run_training(get_builder("dqn"), cfg, run_dir=tmp_path / "run")
    path = find_checkpoint(tmp_path / "run")
    state = load_checkpoint(path)
    del state["algo"], state["format"]  # as the DQN of before the algorithm seam wrote them
    save_checkpoint(path.parent, int(path.stem.split("_")[1]), state)
    loaded, ckpt, _ = load_run_config(None, path)
    assert loaded.algo == "dqn" and ckpt["algo"] == "dqn"
    assert get_builder("dqn").checkpoint_weights(ckpt).keys() == state["learner"]["online"].keys()
    cfg.run.total_frames = 800
    resumed = run_training(get_builder("dqn"), cfg, run_dir=tmp_path / "run", resume=True)
    assert resumed.frames >= 800
