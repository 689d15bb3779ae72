"""``reverie collect``: record trajectories of real play into a dataset (:mod:`worldmodels.data.format`).

Ray actors (``ray.remote`` :class:`Collector` s) each step one vector env (``envs.make_env``) with a random
or an epsilon-greedy DQN policy and return, per chunk, each env's stretch of play as *segments*: the newest
frame of every observation, the action taken there, the raw reward it earned, and whether the game ended.
The driver stitches segments into episodes and hands finished episodes to a
:class:`worldmodels.data.DatasetWriter`, which splits them into train and held-out by whole episodes and
writes shards atomically. Actors are read round-robin, so for a given seed the dataset is the same however
fast each actor runs. When the frame budget is reached, episodes still running are kept, cut short (no
terminal flag).

Autoreset (NextStep): after a step that ends a game, the observation returned is the terminal one (stored as
the episode's last frame, with action -1); the next ``step`` ignores the action and returns the first
observation of a new game, which starts the next episode. Episodes end at ``info["game_over"]`` (game over
or frame cap), never at a life-loss learning terminal of the ``nature`` preset.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from envs import make_env
from worldmodels.data import DatasetWriter

log = logging.getLogger(__name__)

Segment = dict[str, Any]


def _make_policy(spec: dict[str, Any], num_actions: int, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """``obs uint8 [N, S, 84, 84] -> actions int64 [N]`` for a policy spec (see :func:`policy_spec`)."""
    rng = np.random.default_rng(seed)
    if spec["kind"] == "random":
        return lambda obs: rng.integers(0, num_actions, len(obs)).astype(np.int64)
    from agents.dqn.networks import QNetwork

    net = QNetwork(num_actions, stack=spec["stack"], hidden=spec["hidden"], dueling=spec["dueling"])
    net.load_state_dict(spec["weights"])
    net.eval().requires_grad_(False)
    eps = float(spec["epsilon"])

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            greedy = net(torch.from_numpy(obs)).argmax(1).numpy()
        explore = rng.random(len(obs)) < eps
        return np.where(explore, rng.integers(0, num_actions, len(obs)), greedy).astype(np.int64)

    return act


class Collector:
    """Plays one vector env with a policy and returns segments of play (used as a Ray actor, or in-process).

    :param game: any name ``envs.make_env`` accepts.
    :param preset: Atari preset ("machado" or "nature").
    :param num_envs: envs of the vector env.
    :param seed: env seed (env i gets seed + i) and policy RNG seed.
    :param spec: policy spec from :func:`policy_spec`.
    """

    def __init__(self, game: str, preset: str, num_envs: int, seed: int, spec: dict[str, Any],
                 frame: dict[str, Any] | None = None) -> None:
        torch.set_num_threads(1)
        self.env = make_env(game, preset, num_envs=num_envs, seed=seed, **(frame or {}))
        self.num_envs = num_envs
        self.frame_skip = int(getattr(self.env, "frame_skip", 4))
        self.num_actions = int(self.env.single_action_space.n)
        self.policy = _make_policy(spec, self.num_actions, seed + 17)
        self.obs, _ = self.env.reset(seed=seed)
        self.awaiting_reset = np.zeros(num_envs, dtype=bool)
        self.starts = np.ones(num_envs, dtype=bool)  # the next stored frame of env i begins an episode
        self.steps = 0

    def info(self) -> dict[str, int]:
        return {"num_actions": self.num_actions, "frame_skip": self.frame_skip,
                "frame_shape": list(self.obs.shape[2:])}  # [H, W] or [H, W, 3]

    def run(self, steps: int) -> tuple[list[Segment], int]:
        """Step all envs ``steps`` times.

        :return: ``(segments, emulator_frames)``; a segment is ``{"env", "start", "end", "frames" uint8
            [n, H, W], "actions" int64 [n], "rewards" float32 [n]}`` (``start``: first frame of an episode;
            ``end``: its last frame is the game-over observation, with action -1).
        """
        n = self.num_envs
        cur: list[dict[str, list]] = [{"frames": [], "actions": [], "rewards": []} for _ in range(n)]
        seg_start = self.starts.copy()
        segments: list[Segment] = []

        def close(i: int, end: bool) -> None:
            c = cur[i]
            if c["frames"]:
                segments.append({"env": i, "start": bool(seg_start[i]), "end": end,
                                 "frames": np.stack(c["frames"]), "actions": np.asarray(c["actions"], np.int64),
                                 "rewards": np.asarray(c["rewards"], np.float32)})
            cur[i] = {"frames": [], "actions": [], "rewards": []}

        for _ in range(steps):
            actions = self.policy(self.obs)
            record = ~self.awaiting_reset
            newest = self.obs[:, -1]
            obs, _, _, _, info = self.env.step(actions)
            self.steps += 1
            over, raw = info["game_over"], info["raw_reward"]
            for i in range(n):
                if self.awaiting_reset[i]:
                    # This step was the autoreset: obs[i] is the first observation of a new game.
                    self.awaiting_reset[i] = False
                    seg_start[i] = True
                    continue
                if record[i]:
                    c = cur[i]
                    c["frames"].append(newest[i].copy())
                    c["actions"].append(int(actions[i]))
                    c["rewards"].append(float(raw[i]))
                    if over[i]:
                        c["frames"].append(obs[i, -1].copy())
                        c["actions"].append(-1)
                        c["rewards"].append(0.0)
                        close(i, end=True)
                        self.awaiting_reset[i] = True
                        seg_start[i] = False
            self.obs = obs
        for i in range(n):
            if cur[i]["frames"]:
                close(i, end=False)
                seg_start[i] = False
        # An env whose game just ended starts a new episode after its reset step; others continue.
        self.starts = seg_start | self.awaiting_reset
        return segments, steps * n * self.frame_skip


def policy_spec(policy: str, game: str, epsilon: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Resolve ``--policy``: ``"random"`` or a DQN run directory / checkpoint file.

    :return: ``(spec shipped to actors, description for the manifest)``.
    :raises ValueError: a run trained on another game, or a checkpoint without a config.
    """
    if policy == "random":
        return {"kind": "random"}, {"kind": "random"}
    from agents.dqn.config import TrainConfig
    from envs import resolve_game
    from launch.config import load_run_config

    cfg, ckpt, path = load_run_config(TrainConfig, policy)
    trained, wanted = cfg.env.game, game
    if not trained.startswith("toy/") and not wanted.startswith("toy/"):
        trained, wanted = resolve_game(trained), resolve_game(wanted)
    if trained != wanted:
        raise ValueError(f"the policy in {path} was trained on {cfg.env.game!r}, not {game!r}; collect {cfg.env.game} "
                         f"or pass --policy random.")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"--epsilon {epsilon} must lie in [0, 1].")
    spec = {"kind": "dqn", "weights": ckpt["learner"]["online"], "hidden": cfg.network.hidden,
            "dueling": cfg.network.dueling, "stack": 4, "epsilon": epsilon}
    return spec, {"kind": "dqn", "checkpoint": str(path), "frames_trained": int(ckpt["steps"]) * cfg.env.frame_skip,
                  "epsilon": epsilon}


def collect(game: str, out: str | Path, frames: int, policy: str = "random", actors: int = 2,
            envs_per_actor: int = 8, seed: int = 0, heldout_fraction: float = 0.1, preset: str = "machado",
            epsilon: float = 0.05, shard_frames: int = 10_000, chunk_steps: int = 64,
            ray_address: str | None = None, progress: bool = True, frame_size: tuple[int, int] = (84, 84),
            rgb: bool = False) -> dict[str, Any]:
    """Collect ``frames`` stored frames of ``game`` into the dataset folder ``out``; returns the manifest.

    :param frames: frames to store (each observation's newest frame once; emulator frames are
        ``frame_skip`` times more, recorded in the manifest as ``emulator_frames``).
    :param actors: Ray actors (0: one in-process collector, no Ray).
    :param envs_per_actor: envs in each actor's vector env.
    :param seed: actor i seeds its envs with ``seed + 1000 * (i + 1)``.
    :param heldout_fraction: share of frames (whole episodes) kept for evaluation.
    :param chunk_steps: vector-env steps per actor task.
    :param frame_size: ``(height, width)`` of the stored frames (ale-py resizes the 210x160 screen).
    :param rgb: store RGB frames ``[T, H, W, 3]`` instead of luminance (the policy must then be random: our
        DQN reads 84x84 luminance).
    :raises DatasetError: ``out`` is not empty. :raises ValueError: bad arguments.
    """
    if frames < 1 or actors < 0 or envs_per_actor < 1 or chunk_steps < 1:
        raise ValueError(f"--frames ({frames}), --envs-per-actor ({envs_per_actor}) and chunk steps ({chunk_steps}) "
                         f"must be positive and --actors ({actors}) non-negative.")
    frame = {"frame_height": int(frame_size[0]), "frame_width": int(frame_size[1]), "grayscale": not rgb}
    if policy != "random" and (tuple(frame_size) != (84, 84) or rgb):
        raise ValueError("a DQN policy reads 84x84 luminance frames: collect --frame-size/--rgb data with "
                         "--policy random, or leave the frame settings at their defaults.")
    make_env(game, preset, num_envs=1, **frame).close()  # fail fast on a bad game, preset or size, before Ray
    spec, policy_meta = policy_spec(policy, game, epsilon)
    meta = {"game": game, "preset": preset, "policy": policy_meta, "seed": seed, "actors": actors,
            "envs_per_actor": envs_per_actor, "frames_requested": frames}
    writer = DatasetWriter(out, meta, heldout_fraction=heldout_fraction, shard_frames=shard_frames)
    started = time.time()
    workers = max(1, actors)
    seeds = [seed + 1000 * (i + 1) for i in range(workers)]
    if actors == 0:
        local = Collector(game, preset, envs_per_actor, seeds[0], spec, frame)
        info = local.info()
        submit: Callable[[int], Any] = lambda i: local.run(chunk_steps)  # noqa: E731
        fetch: Callable[[Any], Any] = lambda r: r  # noqa: E731
    else:
        import ray

        from agents.runtime.ray_runtime import init_ray

        started_ray = init_ray(ray_address)
        remote = ray.remote(num_cpus=1, max_restarts=0)(Collector)
        spec_ref = ray.put(spec)
        handles = [remote.remote(game, preset, envs_per_actor, s, spec_ref, frame) for s in seeds]
        info = ray.get(handles[0].info.remote())
        submit = lambda i: handles[i].run.remote(chunk_steps)  # noqa: E731
        fetch = ray.get
    open_eps: dict[tuple[int, int], list[Segment]] = {}
    stored, emulator_frames = 0, 0
    bar = tqdm(total=frames, unit="frame", disable=not progress, desc=f"collect {game}")
    try:
        pending = [submit(i) for i in range(workers)]
        while stored < frames:
            for i in range(workers):
                segments, emu = fetch(pending[i])
                emulator_frames += emu
                if stored < frames:
                    pending[i] = submit(i)
                for seg in segments:
                    if stored >= frames:
                        break
                    take = min(len(seg["frames"]), frames - stored)
                    if take < len(seg["frames"]):  # trim to the budget: the episode is cut, not ended
                        seg = {**{k: seg[k][:take] for k in ("frames", "actions", "rewards")},
                               "env": seg["env"], "start": seg["start"], "end": False}
                    stored += take
                    bar.update(take)
                    key = (i, seg["env"])
                    if seg["start"] and key in open_eps:
                        raise RuntimeError(f"collector {key} started an episode before ending the previous one")
                    open_eps.setdefault(key, []).append(seg)
                    if seg["end"]:
                        _add(writer, open_eps.pop(key), terminal=True)
                if stored >= frames:
                    break
        for key in sorted(open_eps):
            _add(writer, open_eps.pop(key), terminal=False)
    finally:
        bar.close()
        if actors:
            for h in handles:
                ray.kill(h)
            if started_ray:
                ray.shutdown()
    return writer.close(num_actions=info["num_actions"], frame_skip=info["frame_skip"],
                        emulator_frames=emulator_frames, wall_seconds=round(time.time() - started, 2))


def _add(writer: DatasetWriter, segments: list[Segment], terminal: bool) -> None:
    writer.add_episode(np.concatenate([s["frames"] for s in segments]),
                       np.concatenate([s["actions"] for s in segments]),
                       np.concatenate([s["rewards"] for s in segments]), terminal=terminal)
