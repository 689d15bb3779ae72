"""``reverie sb3``: Stable-Baselines3's A2C or PPO with the settings of one of our actor-critic presets, on our env.

The yardstick beside ``reverie train``: the same config file (``reverie sb3 a2c_pong``, ``reverie sb3 ppo_pong``)
trains SB3's implementation instead of ours, on the same vector env, and writes a run directory that
``reverie plot`` reads like ours (``config.yaml``, TensorBoard scalars at x = emulator frames, checkpoints).

The env: our local actor's (``agents.runtime.config.make_actor_env``, seed ``run.seed + 1000``) behind
:class:`ReverieVecEnv`, which turns our NextStep autoreset into SB3's same-step reset without any env taking an
extra game step (see the class).

The settings, ours -> SB3 (``agent.loss`` picks A2C or PPO; IMPALA and LSTM cores have no SB3 counterpart):

=================================  ====================================================================
``agent.unroll_length``            ``n_steps``
``agent.gamma``, ``gae_lambda``    ``gamma``, ``gae_lambda``
``agent.lr`` (``anneal_lr``)       ``learning_rate``: :class:`LinearToZero` (rl-zoo's ``lin_<lr>``) or constant
``agent.entropy_coef``             ``ent_coef``
``agent.value_coef``               ``vf_coef = value_coef / 2`` (our value loss keeps the 0.5 of 0.5 (R - V)^2)
``agent.max_grad_norm``            ``max_grad_norm`` (our 0 = no clipping: infinity)
``agent.normalize_advantages``     ``normalize_advantage``
``agent.optimizer``, ``_eps``,     ``optimizer_class`` (RMSpropTFLike / RMSprop / Adam), ``optimizer_kwargs``
``rmsprop_alpha``                  ``{alpha, eps}`` / ``{eps}``; A2C also gets ``use_rms_prop``, ``rms_prop_eps``
``agent.ppo_epochs``               ``n_epochs``
``agent.ppo_minibatches``          ``batch_size = n_steps * n_envs // ppo_minibatches``
``agent.ppo_clip``                 ``clip_range``; ``clip_range_vf`` too if ``ppo_clip_value``
``agent.clip_rewards``             the adapter clips (unless the env's preset already does)
``network.torso``, ``hidden``      :class:`ReverieFeatures`: our torso + Linear(hidden) + ReLU, ``net_arch=[]``
``env.num_envs``                   ``n_envs = env.num_envs * max(1, runtime.num_actors)`` (our batch's envs)
=================================  ====================================================================

What stays SB3's own (it is the yardstick): orthogonal initialisation of the network (``ortho_init``; ours keeps
PyTorch's defaults), its value clipping (the clipped prediction's loss, where CleanRL and ours take the larger of
the clipped and unclipped losses), and its advantage normalisation over the whole batch in A2C.

Logged (TensorBoard, in the run directory itself): ``charts/episodic_return`` and ``charts/episodic_length`` per
finished game (raw score from ``info["raw_reward"]``, game ends from ``info["game_over"]``, so a life-loss terminal
of the Nature preset ends no game), ``charts/frames_per_s``, ``charts/steps_per_s``, ``charts/learning_rate`` and
SB3's ``train/*`` values as ``losses/*``; every x is emulator frames (agent steps x the env's frame skip).
Checkpoints: SB3 model files ``checkpoints/ckpt_<frames>.zip``, written atomically every
``run.checkpoint_every_frames`` (the newest ``run.keep_checkpoints`` kept), at the end, and on Ctrl-C / SIGTERM;
``--resume RUN_DIR`` continues from the newest one with its frame count (and the same TensorBoard run).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn
from torch import nn

from agents.actor_critic.config import ActorCriticConfig, validate
from agents.actor_critic.networks import torso_kind
from agents.runtime.config import RESUME_SAFE_KEYS, actor_seed, make_actor_env
from agents.torsos import make_torso
from worldmodels.common.checkpoint import CheckpointError, rotate_checkpoints
from worldmodels.common.device import resolve_device
from worldmodels.common.resume import check_resume_config, saved_config
from worldmodels.common.scaffold import Rates, RunScaffold, check_run_dir, run_path
from worldmodels.common.scaffold import config_yaml as config_yaml_of

#: The objectives SB3 has (``agent.loss``).
SB3_LOSSES = ("a2c", "ppo")
SB3_CHECKPOINT_RE = re.compile(r"^ckpt_(\d{12})\.zip$")
#: ``learn(log_interval=...)`` that never comes round: the run dumps SB3's logger itself (see ``_RunCallback``).
NO_SB3_DUMPS = 10**15


# ------------------------------------------------------------------------------------------------- the env


class ReverieVecEnv(VecEnv):
    """One of our vector envs (``envs.make_env``) as an SB3 ``VecEnv``.

    Our envs autoreset NextStep: the step after env i's game ends only resets env i (its action ignored) and
    returns the new game's first observation. SB3 expects the reset in the same step: when ``dones[i]``, ``obs[i]``
    is already the next episode's first observation and ``infos[i]["terminal_observation"]`` holds the last one.
    So at game over this adapter resets the ended envs at once with ``reset(options={"reset_mask": ended})``,
    which every vector env of :mod:`envs` supports and which clears their pending autoreset: the others do not
    move, no env takes an extra game step, and each env's emulator sees exactly the game steps SB3 asked for
    (agent steps = SB3's ``num_timesteps``; frames = that x ``frame_skip``).

    - ``dones = terminated | truncated``. A life-loss terminal of the Nature preset (``terminated``, not
      ``game_over``) is done for SB3 (as its ``EpisodicLifeEnv``) but resets nothing: the game goes on, and
      ``obs[i]`` is both the terminal observation and the next episode's first.
    - ``infos[i]["TimeLimit.truncated"]`` is True where the episode was truncated and not terminated (the frame
      cap), so SB3 bootstraps from ``terminal_observation``.
    - ``infos[i]["episode"] = {"r", "l", "t"}`` at game over (SB3's ``Monitor`` convention): the raw game score
      (sum of ``info["raw_reward"]``), its length in agent steps and the seconds since the adapter was built.
    - Rewards: the env's (clipped already if its preset clips); ``clip_rewards`` clips them to [-1, 1] here.

    :param env: a vector env of :mod:`envs` (AtariVector, CatchVectorEnv, MinAtarVector).
    :param clip_rewards: clip rewards to [-1, 1] (``agent.clip_rewards`` where the env returns raw rewards).
    """

    def __init__(self, env: Any, clip_rewards: bool = False) -> None:
        self.env = env
        super().__init__(int(env.num_envs), env.single_observation_space, env.single_action_space)
        self.frame_skip = int(env.frame_skip)
        self.clip_rewards = clip_rewards
        self._actions: np.ndarray | None = None
        self._ep_return = np.zeros(self.num_envs, np.float64)
        self._ep_length = np.zeros(self.num_envs, np.int64)
        self._started = False
        self._t0 = time.perf_counter()

    def reset(self) -> VecEnvObs:
        """New games in every env (seeded by :meth:`seed` if it was called, else as the env was built)."""
        seed = self._seeds[0]
        obs, _ = self.env.reset() if seed is None else self.env.reset(seed=int(seed))
        self._reset_seeds()
        self._reset_options()
        self.reset_infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        self._ep_return[:] = 0.0
        self._ep_length[:] = 0
        self._started = True
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        if not self._started:
            raise RuntimeError("ReverieVecEnv.step_async() before reset()")
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)

    def step_wait(self) -> VecEnvStepReturn:
        assert self._actions is not None, "step_wait() without step_async()"
        obs, reward, terminated, truncated, info = self.env.step(self._actions)
        self._actions = None
        rewards = np.asarray(reward, dtype=np.float32)
        if self.clip_rewards:
            rewards = np.clip(rewards, -1.0, 1.0)
        terminated = np.asarray(terminated, bool)
        truncated = np.asarray(truncated, bool)
        dones = terminated | truncated
        game_over = np.asarray(info["game_over"], bool)
        self._ep_return += np.asarray(info["raw_reward"], np.float64)
        self._ep_length += 1
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(dones).tolist():
            infos[i]["terminal_observation"] = np.array(obs[i], copy=True)
            infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        if game_over.any():
            # Only at game over does the env owe a reset (a life-loss terminal continues the game): do it now,
            # for those envs alone, instead of on the next step.
            reset_obs, _ = self.env.reset(options={"reset_mask": game_over.copy()})
            obs = np.array(obs, copy=True)
            obs[game_over] = reset_obs[game_over]
            elapsed = round(time.perf_counter() - self._t0, 6)
            for i in np.flatnonzero(game_over).tolist():
                infos[i]["episode"] = {"r": float(self._ep_return[i]), "l": int(self._ep_length[i]), "t": elapsed}
            self._ep_return[game_over] = 0.0
            self._ep_length[game_over] = 0
        return obs, rewards, dones, infos

    def close(self) -> None:
        self.env.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The vector env's attribute, once per index (the sub-envs are not separate objects here)."""
        return [getattr(self.env, attr_name)] * len(list(self._get_indices(indices)))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise NotImplementedError("ReverieVecEnv has no per-env attributes to set (one vector env inside).")

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        raise NotImplementedError("ReverieVecEnv has no per-env methods to call (one vector env inside).")

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False] * len(list(self._get_indices(indices)))


def sb3_num_envs(cfg: ActorCriticConfig) -> int:
    """The envs of one SB3 batch: those of our learner's batch (every actor's ``env.num_envs``)."""
    return cfg.env.num_envs * max(1, cfg.runtime.num_actors)


def make_sb3_env(cfg: ActorCriticConfig) -> ReverieVecEnv:
    """Our vector env for ``cfg`` (seed ``run.seed + 1000``, our local actor's) in a :class:`ReverieVecEnv`."""
    # Our local actor's env (make_actor_env, actor 0's seed), with the envs of our whole batch, stepped as one
    # synchronous vector env: SB3's VecEnv protocol steps every env at once, so env.splits (our actor's
    # double-buffered sampling) is ours alone; the same games either way.
    env = make_actor_env(dataclasses.replace(cfg.env, num_envs=sb3_num_envs(cfg), splits=1), actor_seed(cfg.run, 0))
    preset = getattr(env, "preset", None)
    env_clips = bool(getattr(preset, "clip_rewards", False))
    return ReverieVecEnv(env, clip_rewards=bool(cfg.agent.clip_rewards) and not env_clips)


# --------------------------------------------------------------------------------------------- the model


class ReverieFeatures(BaseFeaturesExtractor):
    """Our actor-critic network's architecture below its heads, built the way SB3 builds its own ``NatureCNN``: the
    layers of ``make_torso(obs_shape, kind)`` in a plain ``nn.Sequential`` (channels-first input, none of our
    torso's channels-last reordering: that speed-up is ours, not SB3's), then Linear(hidden) + ReLU.

    SB3 casts observations to float before the extractor (``normalize_images=False`` leaves pixels at 0..255), so
    the scaling our torso gives uint8 input (/255 for pixels, /1 for MinAtar's 0/1 channels) happens here: the same
    numbers reach the first conv as in ours.

    :param observation_space: the env's (uint8 ``(C, H, W)``).
    :param torso: ``network.torso`` ("auto" as ours: a3c on 84x84 pixels, minatar on grids of cells).
    :param hidden: ``network.hidden``.
    """

    def __init__(self, observation_space: gym.spaces.Box, torso: str = "auto", hidden: int = 256) -> None:
        super().__init__(observation_space, features_dim=hidden)
        shape = tuple(int(d) for d in observation_space.shape)
        ours, features = make_torso(shape, torso_kind(shape, torso),
                                    input_divisor=float(observation_space.high.max()))  # as EnvSpec.obs_high
        self.input_divisor = ours.input_divisor
        self.torso = nn.Sequential(*ours)  # the same layers and parameter names, plain forward
        self.fc = nn.Sequential(nn.Linear(features, hidden), nn.ReLU())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        x = observations.float()
        if self.input_divisor != 1.0:
            x = x / self.input_divisor
        return self.fc(self.torso(x))


class LinearToZero:
    """The learning rate annealed linearly to 0 over the run (rl-zoo's ``lin_<lr>``): ``lr * progress_remaining``,
    where SB3's progress runs from 1 at frame 0 to 0 at ``run.total_frames`` (also across a resume, which learns
    with ``reset_num_timesteps=False``). A class, so that it pickles into SB3's model files by reference."""

    def __init__(self, initial: float) -> None:
        self.initial = float(initial)

    def __call__(self, progress_remaining: float) -> float:
        return self.initial * max(0.0, float(progress_remaining))

    def __repr__(self) -> str:
        return f"LinearToZero({self.initial})"


def check_sb3_config(cfg: ActorCriticConfig) -> None:
    """Our own validation, then what SB3 cannot run.

    :raises ValueError: naming the setting and what to set instead.
    """
    validate(cfg)
    a, n = cfg.agent, cfg.network
    loss = str(a.loss)
    if loss == "impala":
        raise ValueError("agent.loss=impala: Stable-Baselines3 has no IMPALA (V-trace, asynchronous actors); "
                         "train it with `reverie train`, or run SB3 with agent.loss=a2c or agent.loss=ppo.")
    if loss not in SB3_LOSSES:
        raise ValueError(f"agent.loss={loss}: reverie sb3 runs {' or '.join(SB3_LOSSES)}.")
    if str(n.core) != "ff":
        raise ValueError(f"network.core={n.core}: Stable-Baselines3's A2C and PPO have no recurrent core; set "
                         "network.core=ff.")
    if a.clip_advantages:
        raise ValueError("agent.clip_advantages=true: Stable-Baselines3 has no advantage clipping; set "
                         "agent.clip_advantages=false.")
    if a.loss_reduction != "mean":
        raise ValueError(f"agent.loss_reduction={a.loss_reduction}: Stable-Baselines3 averages its losses; set "
                         "agent.loss_reduction=mean.")
    if cfg.env.backend != "ale_vector":
        raise ValueError(f"env.backend={cfg.env.backend}: reverie sb3 runs the ale_vector backend (the gymnasium "
                         "backend only adds RAM metrics); set env.backend=ale_vector.")
    if loss == "ppo":
        batch = a.unroll_length * sb3_num_envs(cfg)
        if batch // a.ppo_minibatches < 2:
            raise ValueError(f"agent.ppo_minibatches={a.ppo_minibatches} leaves minibatches of "
                             f"{batch // a.ppo_minibatches} steps (of {batch} per batch); SB3's PPO needs at least 2: "
                             "lower it or raise env.num_envs or agent.unroll_length.")


def make_model(cfg: ActorCriticConfig, env: VecEnv, device: torch.device | str = "cpu") -> OnPolicyAlgorithm:
    """SB3's A2C or PPO (``agent.loss``) on ``env`` with ``cfg``'s settings (see the module docstring's table).

    :raises ValueError: from :func:`check_sb3_config`.
    """
    check_sb3_config(cfg)
    a, n = cfg.agent, cfg.network
    optimizer: dict[str, Any]
    if str(a.optimizer) == "rmsprop_tf":  # SB3's own copy of TensorFlow's RMSProp, as its Atari A2C settings use
        from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike

        optimizer = {"optimizer_class": RMSpropTFLike,
                     "optimizer_kwargs": {"alpha": a.rmsprop_alpha, "eps": a.optimizer_eps, "weight_decay": 0.0}}
    elif str(a.optimizer) == "rmsprop":
        optimizer = {"optimizer_class": torch.optim.RMSprop,
                     "optimizer_kwargs": {"alpha": a.rmsprop_alpha, "eps": a.optimizer_eps, "weight_decay": 0.0}}
    else:
        optimizer = {"optimizer_class": torch.optim.Adam, "optimizer_kwargs": {"eps": a.optimizer_eps}}
    policy_kwargs = {"features_extractor_class": ReverieFeatures,
                     "features_extractor_kwargs": {"torso": str(n.torso), "hidden": n.hidden},
                     "net_arch": [], "normalize_images": False, **optimizer}
    common: dict[str, Any] = {
        "learning_rate": LinearToZero(a.lr) if a.anneal_lr else a.lr,
        "n_steps": a.unroll_length, "gamma": a.gamma, "gae_lambda": a.gae_lambda, "ent_coef": a.entropy_coef,
        "vf_coef": a.value_coef / 2.0, "max_grad_norm": a.max_grad_norm if a.max_grad_norm > 0 else math.inf,
        "normalize_advantage": a.normalize_advantages, "policy_kwargs": policy_kwargs, "device": device,
        "verbose": 0,
    }
    if str(a.loss) == "a2c":
        return A2C("CnnPolicy", env, use_rms_prop=str(a.optimizer) != "adam", rms_prop_eps=a.optimizer_eps,
                   **common)
    return PPO("CnnPolicy", env, n_epochs=a.ppo_epochs, batch_size=a.unroll_length * env.num_envs // a.ppo_minibatches,
               clip_range=a.ppo_clip, clip_range_vf=a.ppo_clip if a.ppo_clip_value else None, **common)


# ------------------------------------------------------------------------------------------- checkpoints


def list_sb3_checkpoints(ckpt_dir: Path) -> list[Path]:
    """SB3 checkpoints (``ckpt_<frames>.zip``) in a folder, oldest first."""
    if not Path(ckpt_dir).is_dir():
        return []
    return sorted(p for p in Path(ckpt_dir).iterdir() if SB3_CHECKPOINT_RE.match(p.name))


def save_sb3_checkpoint(model: OnPolicyAlgorithm, ckpt_dir: Path, frames: int, keep: int = 3) -> Path:
    """Save ``model`` as ``ckpt_<frames>.zip`` atomically (a temporary file in the same folder, flushed to disk,
    then renamed over the final name) and keep the ``keep`` newest checkpoints."""
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = ckpt_dir / f"ckpt_{frames:012d}.zip"
    tmp = ckpt_dir / f".{path.name}.{os.getpid()}.tmp"  # a suffix of its own: SB3 appends .zip to bare names
    try:
        model.save(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    rotate_checkpoints(list_sb3_checkpoints(ckpt_dir), keep, written=path)  # valid ones only; damaged ones aside
    return path


def find_sb3_checkpoint(run_dir: Path) -> Path:
    """The newest SB3 checkpoint of a run directory.

    :raises CheckpointError: there is none, saying where it looked.
    """
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"cannot resume: {run_dir} does not exist (give the run directory of a `reverie sb3` "
                              "run).")
    ckpts = list_sb3_checkpoints(Path(run_dir) / "checkpoints")
    if not ckpts:
        raise CheckpointError(f"no SB3 checkpoint (ckpt_<frames>.zip) in {run_dir}/checkpoints: the run saved none "
                              "yet, or it is not a `reverie sb3` run (`reverie train` writes .pt checkpoints).")
    return ckpts[-1]


def load_sb3_checkpoint(model: OnPolicyAlgorithm, path: Path) -> None:
    """Load the weights, optimiser state and counters of a checkpoint into ``model`` (built from the config)."""
    data, params, _ = load_from_zip_file(path, device=model.device)
    if data is None or params is None:
        raise CheckpointError(f"{path} holds no SB3 model; use an older checkpoint of {path.parent}.")
    model.set_parameters(params, exact_match=True, device=model.device)
    model.num_timesteps = int(data["num_timesteps"])
    model._n_updates = int(data.get("_n_updates", 0))


# ------------------------------------------------------------------------------------------------ logging


class _TensorBoardLosses(KVWriter):
    """SB3's logger output into our writer: ``train/<name>`` as ``losses/<name>`` (the learning rate as
    ``charts/learning_rate``) at x = emulator frames; SB3's ``rollout/`` and ``time/`` values are left out (the
    run logs its own)."""

    def __init__(self, writer: Any, frame_skip: int) -> None:
        self.writer = writer
        self.frame_skip = frame_skip

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]], step: int = 0) -> None:
        for key, value in key_values.items():
            if not key.startswith("train/") or "tensorboard" in key_excluded.get(key, ()):
                continue
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = value.item()
            if not isinstance(value, (int, float, np.number)):
                continue
            name = key[len("train/"):]
            tag = "charts/learning_rate" if name == "learning_rate" else f"losses/{name}"
            self.writer.add_scalar(tag, float(value), step * self.frame_skip)

    def close(self) -> None:
        pass  # the writer belongs to the run scaffold


class _RunCallback(BaseCallback):
    """The frame of the run inside SB3's loop: stop on SIGINT / SIGTERM, log finished games at their frame; between
    rollouts (after the update of every step taken so far) the progress bar, the rates and SB3's logger every
    ``run.log_every_frames``, and checkpoints every ``run.checkpoint_every_frames``.

    SB3's own dump (``learn(log_interval=...)``) comes before the update of its rollout, so its ``train/*`` values
    would sit one rollout late; the run dumps them here instead, right after the update, at the frame it learnt up to.
    """

    def __init__(self, run: RunScaffold, cfg: ActorCriticConfig, frame_skip: int,
                 checkpoint: Callable[[], Path]) -> None:
        super().__init__()
        self.run = run
        self.cfg = cfg
        self.frame_skip = frame_skip
        self.checkpoint = checkpoint
        self.returns: list[float] = []
        self.rates = Rates()
        self.next_log = 0
        self.next_ckpt = 0

    def _frames(self) -> int:
        return int(self.model.num_timesteps) * self.frame_skip

    def _on_training_start(self) -> None:
        frames = self._frames()
        self.rates = Rates(frames)
        self.next_log = frames + self.cfg.run.log_every_frames
        every = self.cfg.run.checkpoint_every_frames
        self.next_ckpt = (frames // every + 1) * every

    def _between_rollouts(self, final: bool = False) -> None:
        frames = self._frames()
        self.run.advance(frames, **({"ret": f"{np.mean(self.returns[-20:]):.1f}"} if self.returns else {}))
        if frames >= self.next_log or final:
            wall, _, _ = self.rates.measure(frames)
            self.run.writer.add_scalar("charts/frames_per_s", wall, frames)
            self.run.writer.add_scalar("charts/steps_per_s", wall / self.frame_skip, frames)
            self.model.logger.dump(step=self.model.num_timesteps)  # the last update's train/* as losses/*
            self.next_log = frames + self.cfg.run.log_every_frames
        if frames >= self.next_ckpt and not final:  # the run writes its last checkpoint itself
            self.checkpoint()
            every = self.cfg.run.checkpoint_every_frames
            self.next_ckpt = (frames // every + 1) * every

    def _on_rollout_start(self) -> None:
        if self.model.num_timesteps > 0:
            self._between_rollouts()

    def _on_training_end(self) -> None:
        self._between_rollouts(final=True)

    def _on_step(self) -> bool:
        self.run.check_interrupt()  # a SIGINT / SIGTERM stops the run here, between steps
        frames = None
        for info in self.locals.get("infos") or ():
            episode = info.get("episode")
            if episode is not None:
                frames = self._frames() if frames is None else frames
                self.returns.append(float(episode["r"]))
                self.run.writer.add_scalar("charts/episodic_return", float(episode["r"]), frames)
                self.run.writer.add_scalar("charts/episodic_length", int(episode["l"]), frames)
        return True


# ------------------------------------------------------------------------------------------------- a run


@dataclass
class SB3Result:
    """What a ``reverie sb3`` run did."""

    run_dir: Path
    frames: int
    """Emulator frames at the end (agent steps x frame skip), counted from the run's start across resumes."""
    episodes: int
    """Games finished in this session."""
    returns: list[float] = field(default_factory=list)
    """Their raw scores, in order."""


def train_sb3(cfg: ActorCriticConfig, run_dir: str | Path | None = None, resume: bool = False,
              config_yaml: str | None = None, callbacks: Sequence[BaseCallback] = ()) -> SB3Result:
    """Train SB3's A2C or PPO as ``cfg`` says, on our env, until ``run.total_frames`` (see the module docstring).

    :param cfg: an actor-critic config (``agent.loss`` a2c or ppo, ``network.core`` ff).
    :param run_dir: where to write (default ``runs_dir/name``); with ``resume``, the run to continue.
    :param resume: continue the run in ``run_dir`` from its newest checkpoint, frame count and TensorBoard run
        included, with the run's saved settings (only :data:`agents.runtime.config.RESUME_SAFE_KEYS` may differ,
        as for ``reverie train --resume``); a run that saved no checkpoint starts afresh.
    :param config_yaml: the config as YAML, saved as ``config.yaml`` (default: ``cfg``'s).
    :param callbacks: more SB3 callbacks (after the run's own).
    :raises ValueError: settings SB3 cannot run (:func:`check_sb3_config`).
    :raises CheckpointError: ``resume`` and the run has no SB3 checkpoint.
    """
    check_sb3_config(cfg)
    config_yaml = config_yaml or config_yaml_of(cfg)
    path = run_path(run_dir, cfg.run.runs_dir, cfg.run.name)
    ckpt = None
    if resume and list_sb3_checkpoints(path / "checkpoints"):
        # A resumed run continues with the settings it was saved with (config.yaml), as `reverie train --resume`.
        saved = saved_config(ActorCriticConfig, (path / "config.yaml").read_text(), path / "config.yaml")
        check_resume_config(saved, cfg, RESUME_SAFE_KEYS, path)
        ckpt = find_sb3_checkpoint(path)
    elif resume and not (path / "config.yaml").is_file():
        find_sb3_checkpoint(path)  # raises: not a run
    else:
        check_run_dir(path, resume=False)  # a new run, or one that saved no checkpoint: starts afresh
    torch.set_num_threads(1)
    set_random_seed(cfg.run.seed)
    device = resolve_device(cfg.runtime.device)
    env = make_sb3_env(cfg)
    try:
        model = make_model(cfg, env, device)
        if ckpt is not None:
            load_sb3_checkpoint(model, ckpt)
        frame_skip = env.frame_skip
        start_frames = model.num_timesteps * frame_skip
        with RunScaffold(path, resume=ckpt is not None, config_yaml=config_yaml, total=cfg.run.total_frames,
                         initial=start_frames, progress=cfg.run.progress, command="sb3",
                         algo=cfg.agent.loss.name) as run:

            def checkpoint(keep: int = cfg.run.keep_checkpoints) -> Path:
                return save_sb3_checkpoint(model, run.path / "checkpoints", model.num_timesteps * frame_skip, keep)

            run.on_interrupt(checkpoint)  # Ctrl-C / SIGTERM: a last checkpoint, then the interrupt goes on
            run.on_error(lambda: checkpoint(cfg.run.keep_checkpoints + 1))  # any other error: keep the older ones
            model.set_logger(Logger(folder=None, output_formats=[_TensorBoardLosses(run.writer, frame_skip)]))
            clock = _RunCallback(run, cfg, frame_skip, checkpoint)
            remaining = cfg.run.total_frames // frame_skip - model.num_timesteps
            if remaining > 0:
                model.learn(total_timesteps=remaining, callback=[clock, *callbacks], log_interval=NO_SB3_DUMPS,
                            reset_num_timesteps=False)
            checkpoint()
            return SB3Result(run.path, model.num_timesteps * frame_skip, len(clock.returns), clock.returns)
    finally:
        env.close()
