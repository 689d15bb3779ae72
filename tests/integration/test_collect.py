"""`reverie collect` on the agents' runtime (toy Catch): a DQN policy at epsilon 0 acts greedily in-process and on Ray
actors (whose weights arrive by ``publish``), random play covers every action, and the dataset is the same however
fast each actor runs (chunks are consumed round-robin; a fast actor runs only a bounded number of chunks ahead)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import launch.collect as collect_module
from agents.dqn.config import DQNConfig
from agents.dqn.networks import QNetwork
from agents.runtime.actor import ActorOutput, EnvActor
from envs import make_env
from launch.collect import collect
from launch.config import to_yaml
from worldmodels.common.checkpoint import save_checkpoint
from worldmodels.data import TrajectoryDataset


def _observation_dependent_net(seed: int = 2) -> QNetwork:
    """A Catch Q-network whose greedy action changes with the observation (a fresh random one picks the same
    action almost everywhere): the hidden units are centred on Catch observations and the output bias is zero."""
    env = make_env("toy/catch", num_envs=4, seed=1)
    obs, _ = env.reset(seed=1)
    rng = np.random.default_rng(0)
    batch = []
    for _ in range(16):
        batch.append(obs.copy())
        obs, *_ = env.step(rng.integers(0, 3, 4))
    env.close()
    torch.manual_seed(seed)
    net = QNetwork(3, obs_shape=(4, 84, 84), hidden=16).eval()
    with torch.no_grad():
        net.head[0].bias -= net.head[0](net.torso(torch.from_numpy(np.concatenate(batch)))).mean(0)
        net.head[-1].bias.zero_()
    return net


def _rows(root: Path) -> dict[str, np.ndarray]:
    windows = [w for s in ("train", "heldout") for w in TrajectoryDataset(root, s)]
    return {k: np.concatenate([w[k] for w in windows]) for k in ("episode_ids", "actions", "frames")}


@pytest.mark.parametrize("actors", [0, 2])
def test_dqn_policy_at_epsilon_zero_acts_greedily(actors: int, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if actors:
        request.getfixturevalue("ray_local")
    cfg = DQNConfig()
    cfg.env.game = "toy/catch"
    cfg.network.hidden = 16
    net = _observation_dependent_net()
    save_checkpoint(tmp_path / "run" / "checkpoints", 400, {"learner": {"online": net.state_dict()}, "steps": 100,
                                                             "config": to_yaml(cfg)})
    m = collect("toy/catch", tmp_path / "d", 150, policy=str(tmp_path / "run"), actors=actors, envs_per_actor=2,
                chunk_steps=8, epsilon=0.0, progress=False)
    assert (m["policy"]["kind"], m["policy"]["frames_trained"], m["policy"]["epsilon"]) == ("dqn", 400, 0.0)
    assert m["counts"]["frames"] == 150 and m["actors"] == actors
    rows = _rows(tmp_path / "d")
    # Each action is the network's argmax for the observation rebuilt from the stored frames (the 4 newest of its
    # episode, zero-padded at its start): frames, actions and the published weights all line up.
    checked, greedy_actions = 0, set()
    for e in np.unique(rows["episode_ids"]):
        f, a = rows["frames"][rows["episode_ids"] == e], rows["actions"][rows["episode_ids"] == e]
        padded = np.concatenate([np.zeros((3, 84, 84), np.uint8), f])
        steps = np.flatnonzero(a >= 0)
        obs = np.stack([padded[t: t + 4] for t in steps])
        with torch.no_grad():
            greedy = net(torch.from_numpy(obs)).argmax(1).numpy()
        np.testing.assert_array_equal(a[steps], greedy)
        checked += len(steps)
        greedy_actions |= set(greedy.tolist())
    assert checked >= 140 and len(greedy_actions) >= 2  # the check has teeth: the greedy action varies


class SkewedRuntime:
    """:class:`~agents.runtime.ray_runtime.RayRuntime`'s ``poll`` contract with in-process actors whose chunks take
    ``delays[i]`` polls to finish: the budget counts chunks in flight, idle actors get work in index order, a
    blocking poll waits for the first chunk only, and ready chunks come back in reverse actor order."""

    def __init__(self, parts_fn: Any, cfg: Any, num_actors: int, seed: int, chunk_steps: int,
                 delays: tuple[int, ...]) -> None:
        self.actors = [EnvActor(i, parts_fn, cfg, seed + 1000 * (i + 1)) for i in range(num_actors)]
        self.num_actors = num_actors
        self.chunk_steps = chunk_steps
        self.steps_per_chunk = chunk_steps * self.actors[0].obs.shape[0]
        self.delays = delays
        self.inflight: dict[int, list[Any]] = {}
        self.produced = 0

    def publish(self, weights: Any, version: int = 0) -> None:
        raise AssertionError("a random policy has no weights to publish")

    def poll(self, frames: int, budget_steps: int, block: bool) -> list[ActorOutput]:
        budget_steps -= len(self.inflight) * self.steps_per_chunk
        for i in range(self.num_actors):
            if i not in self.inflight and budget_steps >= self.steps_per_chunk:
                self.inflight[i] = [self.delays[i], self.actors[i].run(self.chunk_steps, frames)]
                self.produced += 1
                budget_steps -= self.steps_per_chunk
        if not self.inflight:
            return []
        for chunk in self.inflight.values():
            chunk[0] -= 1
        while block and not any(c[0] <= 0 for c in self.inflight.values()):
            for chunk in self.inflight.values():
                chunk[0] -= 1
        ready = [i for i in sorted(self.inflight, reverse=True) if self.inflight[i][0] <= 0]
        return [self.inflight.pop(i)[1] for i in ready]

    def close(self) -> None:
        for actor in self.actors:
            actor.close()


@pytest.mark.usefixtures("ray_local")
def test_dataset_does_not_depend_on_actor_speed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kwargs: dict[str, Any] = dict(actors=2, envs_per_actor=2, chunk_steps=9, heldout_fraction=0.25, shard_frames=150,
                                  seed=3, progress=False)
    reference = collect("toy/catch", tmp_path / "ray", 400, **kwargs)  # real Ray actors
    actions = _rows(tmp_path / "ray")["actions"]
    assert set(actions[actions >= 0].tolist()) == {0, 1, 2}  # random play covers every action
    runtimes: list[SkewedRuntime] = []
    for delays in [(1, 1), (9, 1), (1, 7)]:

        def make_runtime(parts_fn: Any, spec: Any, actors: int, seed: int, chunk_steps: int, envs_per_actor: int,
                         ray_address: Any, delays: tuple[int, ...] = delays) -> tuple[SkewedRuntime, bool]:
            runtimes.append(SkewedRuntime(parts_fn, spec, actors, seed, chunk_steps, delays))
            return runtimes[-1], False

        monkeypatch.setattr(collect_module, "_make_runtime", make_runtime)
        out = tmp_path / f"skew_{delays[0]}_{delays[1]}"
        m = collect("toy/catch", out, 400, **kwargs)
        assert {k: v for k, v in m.items() if k not in ("created", "wall_seconds")} == \
            {k: v for k, v in reference.items() if k not in ("created", "wall_seconds")}, delays
        for shard in m["shards"]:  # same shards, same bytes
            assert (out / shard["file"]).read_bytes() == (tmp_path / "ray" / shard["file"]).read_bytes()
        consumed = m["emulator_frames"] // (9 * 2 * m["frame_skip"])
        # Actors run ahead by a bounded number of chunks (3 per actor - 1; without the bound, this fake's instant
        # chunks would double what is consumed).
        assert runtimes[-1].produced - consumed <= 3 * 2 - 1, (delays, runtimes[-1].produced, consumed)
    assert json.loads((tmp_path / "ray/manifest.json").read_text())["complete"]


@pytest.mark.parametrize("game", ["minatar/breakout", "maze/11"])
def test_collect_refuses_games_without_screen_frames_by_name(game: str, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from launch.cli import main

    assert main(["collect", game, "--frames", "8", "--actors", "0", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert f"{game} is a" in err and "Atari games and toy/catch" in err and "setting" not in err
    assert not (tmp_path / "d").exists()
