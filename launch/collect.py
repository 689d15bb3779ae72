"""``reverie collect``: record trajectories of real play into a dataset (:mod:`worldmodels.data.format`).

Collection runs on the agents' runtime (:mod:`agents.runtime`): :func:`collect_parts` builds each actor's vector
env (``envs.make_env``), its policy (:class:`UniformRandomPolicy`, or DQN's
:class:`~agents.dqn.actor.EpsilonGreedyPolicy` at a fixed epsilon, its weights published by the driver) and a
:class:`SegmentAdder`, and :class:`~agents.runtime.local.LocalRuntime` (``actors=0``) or
:class:`~agents.runtime.ray_runtime.RayRuntime` steps them in chunks. Each chunk's payload is every env's stretch
of play as *segments*: the newest frame of every observation, the action taken there, the raw reward it earned,
and whether the game ended. The driver stitches segments into episodes and hands finished episodes to a
:class:`worldmodels.data.DatasetWriter`, which splits them into train and held-out by whole episodes and writes
shards atomically. Chunks are consumed round-robin over the actors (a fast actor's chunks wait their turn), so
for a given seed the dataset is the same however fast each actor runs. When the frame budget is reached,
episodes still running are kept, cut short (no terminal flag).

Resume (``resume=True``, ``reverie collect ... --resume``): the writer rewrites the manifest atomically after every
shard (``"complete": false``, counts of the shards on disk), and Ctrl-C first writes every finished episode still
buffered, so an interrupted folder is a consistent dataset of what was written. Resuming keeps those shards,
checks that game, preset, policy, seed, frame shape and held-out fraction are the folder's, and collects only
the missing frames with a new seed stream (``seed + k * RESUME_SEED_STRIDE`` for the k-th resume): replaying the
first session's seeds would store the same games twice, possibly once in each split. Episodes that were still
running at the interruption are lost (the resumed part starts new games), so a resumed dataset is not the one an
uninterrupted collection would have written, but it holds the requested frames, in whole-episode splits.

Autoreset (NextStep): after a step that ends a game, the observation returned is the terminal one (stored as
the episode's last frame, with action -1); the next ``step`` ignores the action and returns the first
observation of a new game, which starts the next episode. Episodes end at ``info["game_over"]`` (game over
or frame cap), never at a life-loss learning terminal of the ``nature`` preset.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agents.runtime.algorithm import ActorParts
from envs import make_env, newest_frames

if TYPE_CHECKING:
    from worldmodels.data import DatasetWriter

log = logging.getLogger(__name__)

Segment = dict[str, Any]

#: Seed offset of each resumed session (actor i of a session seeds its envs with its seed + 1000 (i + 1): a stride
#: far above 1000 x actors keeps every session's seeds apart).
RESUME_SEED_STRIDE = 10_000_019


class UniformRandomPolicy:
    """Uniformly random actions (the :class:`agents.runtime.actor.Policy` protocol; no weights).

    :param num_actions: size of the discrete action space. :param seed: seeds the RNG (one draw of N per step).
    """

    def __init__(self, num_actions: int, seed: int) -> None:
        self.num_actions = num_actions
        self.rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray, frames: int, starts: np.ndarray | None = None,
            ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return self.rng.integers(0, self.num_actions, len(obs)).astype(np.int64), {}

    def set_weights(self, weights: Any) -> None:
        pass


class SegmentAdder:
    """Turns vector-env steps into segments of play (the :class:`agents.runtime.actor.Adder` protocol).

    :meth:`flush` returns a list of segments ``{"env", "start", "end", "frames" uint8 [n, *frame_shape],
    "actions" int64 [n], "rewards" float32 [n]}``: ``start``, the segment's first frame begins an episode;
    ``end``, its last frame is the game-over observation (action -1, reward 0). A row holds the newest frame of an
    observation, the action taken there and the raw reward (``info["raw_reward"]``) that step earned. An env's
    episode still running at a flush continues in its next segment (``start`` False).

    :param num_envs: envs of the vector env. :param stack: frames per observation (``env.stack``).
    :param frame_shape: one frame's shape (``env.frame_shape``).
    """

    def __init__(self, num_envs: int, stack: int, frame_shape: tuple[int, ...]) -> None:
        self.num_envs = num_envs
        self.stack = stack
        self.frame_shape = tuple(frame_shape)

    def _newest(self, obs: np.ndarray) -> np.ndarray:
        return newest_frames(obs, self.stack, self.frame_shape).copy()

    def reset(self, obs: np.ndarray) -> None:
        n = self.num_envs
        self._newest_frames = self._newest(obs)  # the newest frame of the observation each env acts on next
        self._awaiting_reset = np.zeros(n, dtype=bool)  # the next step of env i is its autoreset step
        self._seg_start = np.ones(n, dtype=bool)  # env i's open segment begins an episode
        self._cur: list[dict[str, list]] = [{"frames": [], "actions": [], "rewards": []} for _ in range(n)]
        self._segments: list[Segment] = []

    def _close(self, i: int, end: bool) -> None:
        c = self._cur[i]
        if c["frames"]:
            self._segments.append({"env": i, "start": bool(self._seg_start[i]), "end": end,
                                   "frames": np.stack(c["frames"]), "actions": np.asarray(c["actions"], np.int64),
                                   "rewards": np.asarray(c["rewards"], np.float32)})
        self._cur[i] = {"frames": [], "actions": [], "rewards": []}

    def add(self, actions: np.ndarray, extras: dict[str, np.ndarray], rewards: np.ndarray,
            terminated: np.ndarray, truncated: np.ndarray, next_obs: np.ndarray, info: dict[str, Any]) -> None:
        over, raw = info["game_over"], info["raw_reward"]
        newest = self._newest(next_obs)
        for i in range(self.num_envs):
            if self._awaiting_reset[i]:
                # This step was the autoreset: next_obs[i] is the first observation of a new game.
                self._awaiting_reset[i] = False
                self._seg_start[i] = True
                continue
            c = self._cur[i]
            c["frames"].append(self._newest_frames[i])
            c["actions"].append(int(actions[i]))
            c["rewards"].append(float(raw[i]))
            if over[i]:
                c["frames"].append(newest[i])
                c["actions"].append(-1)
                c["rewards"].append(0.0)
                self._close(i, end=True)
                self._awaiting_reset[i] = True
                self._seg_start[i] = False
        self._newest_frames = newest

    def flush(self) -> list[Segment]:
        for i in range(self.num_envs):
            if self._cur[i]["frames"]:
                self._close(i, end=False)
                self._seg_start[i] = False
        segments, self._segments = self._segments, []
        return segments


def collect_parts(spec: dict[str, Any], actor_id: int, *, game: str, preset: str, num_envs: int, seed: int,
                  frame: dict[str, Any]) -> ActorParts:
    """One collection actor's parts (vector env, policy, adder; an :data:`agents.runtime.algorithm.PartsFn` once the
    keyword arguments are bound with ``functools.partial``; runs inside the actor's process).

    :param spec: the policy spec of :func:`policy_spec`, without its weights (the driver publishes them).
    :param actor_id: actor i seeds its envs with ``seed + 1000 * (i + 1)`` and its policy RNG with that + 17.
    :param frame: ``frame_height``, ``frame_width`` and ``grayscale`` for ``make_env``.
    """
    actor_seed = seed + 1000 * (actor_id + 1)
    env = make_env(game, preset, num_envs=num_envs, seed=actor_seed, **frame)
    num_actions = int(env.single_action_space.n)
    policy: Any
    if spec["kind"] == "random":
        policy = UniformRandomPolicy(num_actions, actor_seed + 17)
    else:
        from agents.dqn.actor import EpsilonGreedyPolicy
        from agents.dqn.networks import QNetwork

        net = QNetwork(num_actions, obs_shape=tuple(env.single_observation_space.shape), hidden=spec["hidden"],
                       dueling=spec["dueling"])
        policy = EpsilonGreedyPolicy(net, spec["config"], actor_id, actor_seed + 17, fixed_epsilon=spec["epsilon"])
    return ActorParts(env, policy, SegmentAdder(num_envs, env.stack, env.frame_shape))


def policy_spec(policy: str, game: str, epsilon: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Resolve ``--policy``: ``"random"`` or a DQN run directory / checkpoint file.

    :return: ``(spec for the actors, description for the manifest)``; a DQN spec holds the run's config, the
        network settings, ``epsilon`` and ``weights`` (the online network's state dict).
    :raises ValueError: a run trained on another game, or a checkpoint without a config.
    """
    if policy == "random":
        return {"kind": "random"}, {"kind": "random"}
    from agents.dqn.config import DQNConfig
    from agents.registry import get_builder
    from agents.runtime.algorithm import CheckpointLayout
    from envs import resolve_game
    from launch.config import load_run_config
    from worldmodels.common.runrecord import check_run_command

    check_run_command(policy, "train", algos=("dqn",), usage="reverie collect --policy")
    cfg, ckpt, path = load_run_config(DQNConfig, policy)
    trained, wanted = cfg.env.game, game
    if not trained.startswith("toy/") and not wanted.startswith("toy/"):
        trained, wanted = resolve_game(trained), resolve_game(wanted)
    if trained != wanted:
        raise ValueError(f"the policy in {path} was trained on {cfg.env.game!r}, not {game!r}; collect {cfg.env.game} "
                         f"or pass --policy random.")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"--epsilon {epsilon} must lie in [0, 1].")
    from agents.runtime.loop import probe_env

    spec = {"kind": "dqn", "weights": get_builder("dqn").checkpoint_weights(ckpt), "config": cfg,
            "hidden": cfg.network.hidden, "dueling": cfg.network.dueling, "epsilon": epsilon}
    frames_trained = CheckpointLayout.steps(ckpt) * probe_env(cfg).frame_skip
    return spec, {"kind": "dqn", "checkpoint": str(path), "frames_trained": frames_trained, "epsilon": epsilon}


def collect(game: str, out: str | Path, frames: int, policy: str = "random", actors: int = 2,
            envs_per_actor: int = 8, seed: int = 0, heldout_fraction: float = 0.1, preset: str = "machado",
            epsilon: float = 0.05, shard_frames: int = 10_000, chunk_steps: int = 64,
            ray_address: str | None = None, progress: bool = True, frame_size: tuple[int, int] = (84, 84),
            rgb: bool = False, resume: bool = False) -> dict[str, Any]:
    """Collect ``frames`` stored frames of ``game`` into the dataset folder ``out``; returns the manifest.

    :param frames: frames to store (each observation's newest frame once; emulator frames are
        ``frame_skip`` times more, recorded in the manifest as ``emulator_frames``: every vector step of the
        chunks consumed, autoreset steps included).
    :param actors: Ray actors (0: one in-process actor, no Ray).
    :param envs_per_actor: envs in each actor's vector env.
    :param seed: actor i seeds its envs with ``seed + 1000 * (i + 1)``.
    :param heldout_fraction: share of frames (whole episodes) kept for evaluation.
    :param chunk_steps: vector-env steps per actor task.
    :param frame_size: ``(height, width)`` of the stored frames (ale-py resizes the 210x160 screen).
    :param rgb: store RGB frames ``[T, H, W, 3]`` instead of luminance (the policy must then be random: our
        DQN reads 84x84 luminance).
    :param resume: continue an interrupted collection in ``out`` (see the module docstring): keep its shards and
        collect the frames still missing of ``frames``; the same as a fresh start where ``out`` holds no manifest
        yet, and a no-op on a finished dataset of ``frames`` frames.
    :raises DatasetError: ``out`` is not empty (without ``resume``); with ``resume``, a folder collected with other
        settings, a finished one of another size, or one that is not a dataset.
    :raises ValueError: bad arguments.
    """
    from envs.maze import is_maze

    if game.startswith("minatar/") or is_maze(game):
        kind = "a MinAtar game" if game.startswith("minatar/") else "a STRAW maze"
        raise ValueError(f"reverie collect records Atari games and toy/catch, whose observations are screen frames "
                         f"(a dataset stores those); {game} is {kind}, whose observations are not: train on it "
                         f"directly (`reverie train`), or collect an Atari game.")
    if frames < 1 or actors < 0 or envs_per_actor < 1 or chunk_steps < 1:
        raise ValueError(f"--frames ({frames}), --envs-per-actor ({envs_per_actor}) and chunk steps ({chunk_steps}) "
                         f"must be positive and --actors ({actors}) non-negative.")
    from tqdm import tqdm

    from agents.runtime.algorithm import env_spec
    from worldmodels.common.runlock import DirectoryLock
    from worldmodels.data import DatasetWriter

    frame = {"frame_height": int(frame_size[0]), "frame_width": int(frame_size[1]), "grayscale": not rgb}
    if policy != "random" and (tuple(frame_size) != (84, 84) or rgb):
        raise ValueError("a DQN policy reads 84x84 luminance frames: collect --frame-size/--rgb data with "
                         "--policy random, or leave the frame settings at their defaults.")
    probe = make_env(game, preset, num_envs=1, **frame)  # fail fast on a bad game, preset or size, before Ray
    try:
        spec_env = env_spec(probe)
    finally:
        probe.close()
    spec, policy_meta = policy_spec(policy, game, epsilon)
    weights = spec.pop("weights", None)
    meta = {"game": game, "preset": preset, "policy": policy_meta, "seed": seed, "actors": actors,
            "envs_per_actor": envs_per_actor, "frames_requested": frames}
    frame_shape = (*frame_size, 3) if rgb else tuple(frame_size)
    # One writer per dataset folder, until this function returns (or the process dies: the kernel drops it).
    lock = DirectoryLock(out).acquire()
    try:
        previous = _previous_session(Path(out), meta, frames, heldout_fraction, frame_shape) if resume else None
        writer: DatasetWriter
        if previous is None:
            writer = DatasetWriter(out, meta, heldout_fraction=heldout_fraction, shard_frames=shard_frames)
        elif not previous.get("complete"):
            writer = DatasetWriter.reopen(out, shard_frames=shard_frames)
    except BaseException:
        lock.release()
        raise
    if previous is not None and previous.get("complete"):
        lock.release()
        log.warning("%s: already finished with %d frames; nothing to collect", out, previous["counts"]["frames"])
        return previous
    if previous is None:
        done_frames, done_emulator, done_seconds = 0, 0, 0.0
    else:
        done_frames = writer.frames  # of the shards listed (a manifest of older code counted buffered ones too)
        done_emulator = int(previous.get("emulator_frames", 0))
        done_seconds = float(previous.get("wall_seconds", 0.0))
        resumes = list(previous.get("resumes", []))
        seed += (len(resumes) + 1) * RESUME_SEED_STRIDE  # new games: the first seeds would replay stored ones
        resumes.append({"frames_before": done_frames, "seed": seed, "actors": actors,
                        "envs_per_actor": envs_per_actor})
        writer.update_meta(resumes=resumes, frames_requested=frames)
        log.warning("%s: resuming with %d of %d frames stored; new games from seed %d", out, done_frames, frames,
                    seed)
    # Known now, so a partial manifest already describes the data (fit-world-model needs num_actions).
    writer.update_meta(num_actions=spec_env.num_actions, frame_skip=spec_env.frame_skip)
    started = time.time()
    emulator_frames = 0
    if done_frames >= frames:  # interrupted after its last shard, before the final manifest
        try:
            return writer.close(emulator_frames=done_emulator, wall_seconds=done_seconds)
        finally:
            lock.release()
    workers = max(1, actors)
    parts_fn = functools.partial(collect_parts, game=game, preset=preset, num_envs=envs_per_actor, seed=seed,
                                 frame=frame)
    emulator_frames_per_chunk = chunk_steps * envs_per_actor * spec_env.frame_skip
    try:
        runtime, started_ray = _make_runtime(parts_fn, spec, actors, seed, chunk_steps, envs_per_actor, ray_address)
    except BaseException:
        lock.release()
        raise
    bar = tqdm(total=frames, initial=done_frames, unit="frame", disable=not progress, desc=f"collect {game}")
    try:
        if weights is not None:
            runtime.publish(weights, 0)  # every actor loads them before its first chunk
        # Chunks are consumed round-robin; one that comes early waits in its actor's queue. Every idle actor gets
        # a new chunk at each poll (the budget covers all actors, in flight or not) while fewer than `max_queued`
        # chunks wait; past that, polls only collect chunks in flight. With one chunk in flight per actor, at most
        # 3 * workers - 1 chunks are ever outstanding, and the actor whose turn it is always has one in flight or
        # queued. (Safety net: should a blocking poll find nothing in flight, the next one hands out work.)
        full_budget = 2 * workers * runtime.steps_per_chunk
        max_queued = 2 * workers
        queues: list[deque[list[Segment]]] = [deque() for _ in range(workers)]
        open_eps: dict[tuple[int, int], list[Segment]] = {}
        stored, turn, force = done_frames, 0, False
        while stored < frames:
            capped = not force and sum(len(q) for q in queues) >= max_queued
            block = not queues[turn]
            outputs = runtime.poll(emulator_frames, 0 if capped else full_budget, block)
            force = capped and block and not outputs
            for output in outputs:
                queues[output.actor_id].append(output.payload)
            if not queues[turn]:
                continue
            segments = queues[turn].popleft()
            emulator_frames += emulator_frames_per_chunk
            # Totals so far, in the manifest written with the next shard (what a resumed session adds to).
            writer.update_meta(emulator_frames=done_emulator + emulator_frames,
                               wall_seconds=round(done_seconds + time.time() - started, 2))
            for seg in segments:
                if stored >= frames:
                    break
                take = min(len(seg["frames"]), frames - stored)
                if take < len(seg["frames"]):  # trim to the budget: the episode is cut, not ended
                    seg = {**{k: seg[k][:take] for k in ("frames", "actions", "rewards")},
                           "env": seg["env"], "start": seg["start"], "end": False}
                stored += take
                bar.update(take)
                key = (turn, seg["env"])
                if seg["start"] and key in open_eps:
                    raise RuntimeError(f"collector {key} started an episode before ending the previous one")
                open_eps.setdefault(key, []).append(seg)
                if seg["end"]:
                    _add(writer, open_eps.pop(key), terminal=True)
            turn = (turn + 1) % workers
        for key in sorted(open_eps):
            _add(writer, open_eps.pop(key), terminal=False)
    except KeyboardInterrupt:
        # Keep every finished episode (shards + manifest, still "complete": false) for `--resume`; episodes
        # still running are dropped: a resumed collection starts new games.
        writer.flush()
        raise
    else:
        manifest = writer.close(emulator_frames=done_emulator + emulator_frames,
                                wall_seconds=round(done_seconds + time.time() - started, 2))
    finally:
        bar.close()
        runtime.close()
        if started_ray:
            import ray

            ray.shutdown()
        lock.release()
    return manifest


def _previous_session(out: Path, meta: dict[str, Any], frames: int, heldout_fraction: float,
                      frame_shape: tuple[int, ...]) -> dict[str, Any] | None:
    """The manifest of the collection ``--resume`` continues in ``out``, or None to start afresh (no manifest yet:
    the first shard was never recorded; its leftovers are removed).

    :raises DatasetError: settings that differ from the folder's, a finished dataset of another size, more
        frames stored than ``frames``, or a folder without a manifest that holds anything but collection leftovers.
    """
    from worldmodels.data import DatasetError, read_manifest
    from worldmodels.data.format import MANIFEST

    if not (out / MANIFEST).is_file():
        _remove_leftovers(out)
        return None
    manifest = read_manifest(out)
    wanted = {"game": meta["game"], "preset": meta["preset"], "policy": meta["policy"], "seed": meta["seed"],
              "heldout_fraction": heldout_fraction, "frame_shape": list(frame_shape)}
    for key, mine in wanted.items():
        theirs = manifest.get(key)
        same = _same_game(theirs, mine) if key == "game" else theirs == mine
        if not same and not (key == "frame_shape" and not theirs):  # no frame stored yet: any shape will do
            raise DatasetError(f"--resume {out}: it was collected with {key}={theirs!r}, this command has {mine!r}; "
                               f"repeat the original command with --resume (the settings are in {out / MANIFEST}) "
                               f"or collect into a new --out.")
    stored = sum(int(e["frames"]) for e in manifest["shards"])
    if manifest.get("complete") and stored != frames:
        raise DatasetError(f"--resume {out}: it is a finished dataset of {stored} frames, not --frames {frames}; "
                           f"a finished dataset is never changed: collect the extra frames into a new --out.")
    if stored > frames:
        raise DatasetError(f"--resume {out}: it holds {stored} frames already, more than --frames {frames}; pass "
                           f"--frames {manifest.get('frames_requested', stored)} (the original request).")
    return manifest


def _remove_leftovers(out: Path) -> None:
    """Before a fresh start under ``--resume``: delete what a collection killed before its first manifest leaves
    (split folders, shard files, temp files of atomic writes).

    :raises DatasetError: ``out`` holds anything else (it is not an interrupted collection).
    """
    from worldmodels.common.runlock import LOCK_NAME
    from worldmodels.data import SPLITS, DatasetError
    from worldmodels.data.format import MANIFEST

    if not out.is_dir():
        return
    allowed = re.compile(rf"({'|'.join(SPLITS)})(/shard_\d+\.npz|/\..*\.tmp)?|\..*\.tmp|{re.escape(LOCK_NAME)}")
    found = sorted(out.rglob("*"), reverse=True)  # children before their folders
    others = [p for p in found if not allowed.fullmatch(p.relative_to(out).as_posix())]
    if others:
        raise DatasetError(f"--resume {out}: there is no {MANIFEST} but {others[-1]} and {len(others) - 1} more "
                           f"file(s): this is not an interrupted collection; choose a new --out.")
    for path in found:
        if path.name == LOCK_NAME:  # this collection's own lock
            continue
        log.warning("%s: left by a collection stopped before its first manifest; removed", path)
        if path.is_dir():
            path.rmdir()
        else:
            path.unlink()


def _same_game(a: Any, b: Any) -> bool:
    """Two spellings of one game (``Pong`` and ``ALE/Pong-v5``)."""
    from envs import resolve_game

    if a == b:
        return True
    try:
        return bool(resolve_game(str(a)) == resolve_game(str(b)))
    except ValueError:
        return False


def _make_runtime(parts_fn: Any, spec: dict[str, Any], actors: int, seed: int, chunk_steps: int,
                  envs_per_actor: int, ray_address: str | None) -> tuple[Any, bool]:
    """:class:`~agents.runtime.local.LocalRuntime` for ``actors=0``, else a
    :class:`~agents.runtime.ray_runtime.RayRuntime` of ``actors`` actors, starting or joining Ray first.

    :return: ``(runtime, whether this call started Ray)``.
    """
    if actors == 0:
        from agents.runtime.local import LocalRuntime

        return LocalRuntime(parts_fn, spec, seed=seed + 1000, chunk_steps=chunk_steps), False
    import ray

    from agents.runtime.ray_runtime import RayRuntime, init_ray

    started_ray = init_ray(ray_address)
    try:
        # max_restarts=0: a restarted actor would start new games in the middle of its open episodes (a dead
        # actor fails the collection, as before). niceness=None: the workers keep Ray's (0 in a local instance).
        runtime = RayRuntime(parts_fn, spec, num_actors=actors, seed=seed, chunk_steps=chunk_steps,
                             steps_per_chunk=chunk_steps * envs_per_actor, max_restarts=0, niceness=None,
                             restarts_setting="reverie collect restarts no actor: max_restarts")
    except BaseException:
        if started_ray:
            ray.shutdown()
        raise
    return runtime, started_ray


def _add(writer: DatasetWriter, segments: list[Segment], terminal: bool) -> None:
    writer.add_episode(np.concatenate([s["frames"] for s in segments]),
                       np.concatenate([s["actions"] for s in segments]),
                       np.concatenate([s["rewards"] for s in segments]), terminal=terminal)
