"""Atari environments: presets, the fast ale-py vector env, and a checked single Gymnasium env.

Two presets fix every emulator and preprocessing setting (see :class:`AtariPreset`):

- ``machado`` (Machado et al. 2018, the ``-v5`` protocol; our default for evaluation and reporting):
  sticky actions with p = 0.25, the episode ends only at game over, raw rewards, 108k-frame cap.
- ``nature`` (Mnih et al. 2015): a lost life is a *learning* terminal while the game goes on, rewards
  clipped to [-1, 1], up to 30 no-op starts, deterministic emulator, 108k-frame cap.

Both envs return observations uint8 ``[S, 84, 84]`` per env (S = ``stack`` = 4, oldest frame first, newest
last, zero-padded at the start of an episode) and always report, whatever the preset:

- ``info["raw_reward"]``: the unclipped game score change of this step (float64),
- ``info["game_over"]``: True only when the real game ended (all lives lost) or hit the frame cap, never on
  a life-loss learning terminal. Episode returns for evaluation are sums of ``raw_reward`` between
  ``game_over`` flags.

How ale-py's own ``episodic_life=True`` behaves with NextStep autoreset (measured on ale-py 0.12.1,
Breakout): a life loss returns ``terminated=True`` and the *next* step resets the whole game (``lives``
back to 5, ``episode_frame_number`` back to 1, zero-padded stack), so an agent never sees past its first
life. That is not Nature DQN's setting, so we never use it. We run ale-py with ``episodic_life=False``
and derive the life-loss terminal from a drop of ``info["lives"]``: the game continues after the terminal
(the next step plays the agent's action in the same game, with the same frame stack), exactly as in
Nature DQN, and ``game_over`` stays the emulator's own terminal/truncation signal. (ale-py's
``life_loss_info=True`` also continues the game, but then ``terminated`` mixes life losses and game overs,
and telling them apart by ``lives == 0`` fails for games without a lives counter, such as Pong.)

Two vector backends with one API (``make_atari(..., backend=...)``):

- ``"ale_vector"`` (default): ale-py's C++ ``AtariVectorEnv``, the fastest; it does not expose the console RAM.
- ``"gymnasium"``: a ``gymnasium.vector.SyncVectorEnv`` (autoreset NextStep) of the single envs built here
  (``gym.make(frameskip=1)`` + ``AtariPreprocessing`` + ``FrameStackObservation``), one Python process; same
  observations, flags and info keys, plus ``info["ram"]``: uint8 ``[N, 128]``, each env's console RAM after
  the step (the reset game's RAM on an autoreset step). Slower (the frame skip runs in Python), needed for
  RAM-based metrics such as Montezuma's Revenge rooms (:mod:`envs.montezuma`).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, SupportsFloat, cast, overload

import ale_py
import gymnasium as gym
import numpy as np
from ale_py import roms
from ale_py.vector_env import AtariVectorEnv
from gymnasium.vector import AutoresetMode, SyncVectorEnv, VectorWrapper
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

from envs.names import display_name, resolve_game

if TYPE_CHECKING:
    from ale_py.env import AtariEnv

# Every frame the networks see is 84x84 luminance (DQN's preprocessing); not a preset field on purpose.
FRAME_SIZE = 84
#: Vector-env backends of :func:`make_atari`.
BACKENDS = ("ale_vector", "gymnasium")


@dataclass(frozen=True)
class AtariPreset:
    """Every setting of an Atari environment, in one place (nothing is hidden in wrappers)."""

    repeat_action_probability: float = 0.25
    """Sticky actions: probability that the emulator repeats the previous action on each frame instead of
    the chosen one (Machado et al. 2018 use 0.25; 0.0 makes the emulator deterministic)."""

    terminal_on_life_loss: bool = False
    """If True, losing a life sets ``terminated`` (a learning terminal) while the game continues; the
    episode for scoring still ends only at ``info["game_over"]``."""

    clip_rewards: bool = False
    """If True, the returned reward is clipped to [-1, 1]; ``info["raw_reward"]`` keeps the game score."""

    max_num_frames_per_episode: int = 108_000
    """Frame cap of one game, in emulator frames (108,000 = 30 minutes at 60 Hz = 27,000 agent steps at
    frame_skip 4); reaching it sets ``truncated``."""

    noop_max: int = 0
    """No-op starts: at each new game, ale-py plays a uniform random number of NOOP frames below this
    bound (0 disables them)."""

    frame_skip: int = 4
    """Emulator frames per agent step; the action is repeated and the last two frames are max-pooled."""

    stack: int = 4
    """Frames per observation (oldest first, newest last), zero-padded at the start of an episode."""

    full_action_space: bool = False
    """If True, all 18 joystick actions; otherwise the game's minimal action set (the v5 default)."""

    use_fire_reset: bool = False
    """If True, press FIRE for one frame at each new game in games that have FIRE (e.g. Breakout needs it
    to launch the ball). Off in both presets: neither paper used it, and agents learn to press FIRE."""

    frame_height: int = FRAME_SIZE
    """Observation height in pixels after resizing (84; the screen is 210). The DQN networks need 84."""

    frame_width: int = FRAME_SIZE
    """Observation width in pixels after resizing (84; the screen is 160)."""

    grayscale: bool = True
    """Luminance frames ``[..., H, W]``; False gives RGB ``[..., H, W, 3]`` (Oh et al. 2015's video prediction
    input, 210x160 RGB). Frame size and colour apply to the ``ale_vector`` backend only."""

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.repeat_action_probability) <= 1.0:
            raise ValueError(
                f"repeat_action_probability must be in [0, 1], got {self.repeat_action_probability}"
            )
        for name in ("max_num_frames_per_episode", "frame_skip", "stack", "frame_height", "frame_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if isinstance(self.noop_max, bool) or not isinstance(self.noop_max, int) or self.noop_max < 0:
            raise ValueError(f"noop_max must be an int >= 0, got {self.noop_max!r}")
        for name in ("terminal_on_life_loss", "clip_rewards", "full_action_space", "use_fire_reset", "grayscale"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")


PRESETS: dict[str, AtariPreset] = {
    # Machado et al. 2018 / ALE v5: stochasticity comes from sticky actions, so no no-op starts.
    "machado": AtariPreset(
        repeat_action_probability=0.25,
        terminal_on_life_loss=False,
        clip_rewards=False,
        max_num_frames_per_episode=108_000,
        noop_max=0,
    ),
    # Mnih et al. 2015 (Nature DQN): deterministic emulator, randomness from up to 30 no-op starts.
    "nature": AtariPreset(
        repeat_action_probability=0.0,
        terminal_on_life_loss=True,
        clip_rewards=True,
        max_num_frames_per_episode=108_000,
        noop_max=30,
    ),
}


def preset_fields() -> list[str]:
    """Names of the :class:`AtariPreset` fields, i.e. the valid ``**overrides`` keys."""
    return [f.name for f in dataclasses.fields(AtariPreset)]


def get_preset(name: str | AtariPreset, **overrides: Any) -> AtariPreset:
    """Look up a preset by name (or take an :class:`AtariPreset` as is) and apply field overrides.

    :raises ValueError: unknown preset name (lists the valid ones) or unknown override key (lists the fields).
    """
    if isinstance(name, AtariPreset):
        preset = name
    elif name in PRESETS:
        preset = PRESETS[name]
    else:
        raise ValueError(f"unknown Atari preset {name!r}; valid presets: {sorted(PRESETS)}")
    unknown = sorted(set(overrides) - set(preset_fields()))
    if unknown:
        raise ValueError(f"unknown Atari setting(s) {unknown}; valid settings: {preset_fields()}")
    return dataclasses.replace(preset, **overrides) if overrides else preset


class AtariVector(VectorWrapper):
    """ale-py's ``AtariVectorEnv`` (or :class:`GymnasiumAtariVector`) plus reward clipping, life-loss terminals
    and the two info keys.

    Same API as ``gymnasium.vector.VectorEnv`` (autoreset mode NextStep):

    - ``reset(seed=int) -> (obs uint8 [N, S, 84, 84], info)``; env i is seeded with ``seed + i``. The first
      ``reset()`` without a seed uses the ``seed`` given to :func:`make_atari`, so runs are reproducible.
    - ``step(actions int [N]) -> (obs, reward float32 [N], terminated bool [N], truncated bool [N], info)``.
      When env i returns terminated or truncated, the next ``step`` ignores its action and returns the first
      observation of a new game (reward 0) -- unless the terminal was a life loss (``game_over[i]`` False):
      then the game simply continues and the next step plays the action.
    - info: ``env_id``, ``lives``, ``frame_number``, ``episode_frame_number`` (int32 [N], from ale-py),
      ``raw_reward`` (float64 [N], the unclipped score change) and ``game_over`` (bool [N]).

    Attributes shared with the other vector envs of :mod:`envs`: ``stack`` (S), ``frame_shape`` ((H, W), or
    (H, W, 3) for RGB frames) and ``frame_skip`` (emulator frames per step), all from the preset.

    Costs a handful of numpy ops on [N]-sized arrays per step (well under 1% of an emulator step).
    """

    env: AtariVectorEnv | GymnasiumAtariVector  # both take an array of seeds, unlike a plain VectorEnv
    single_observation_space: gym.spaces.Box  # (VectorWrapper's properties, narrowed to what ale-py builds)
    single_action_space: gym.spaces.Discrete

    def __init__(self, env: AtariVectorEnv | GymnasiumAtariVector, preset: AtariPreset, game: str,
                 seed: int = 0) -> None:
        super().__init__(env)
        self.preset = preset
        self.game = game
        self.frame_skip = preset.frame_skip
        self.stack = preset.stack
        colour = () if preset.grayscale else (3,)
        self.frame_shape: tuple[int, ...] = (preset.frame_height, preset.frame_width, *colour)
        self._default_seed: int | None = seed
        self._clip = preset.clip_rewards
        self._life_loss = preset.terminal_on_life_loss
        self._lives = np.zeros(env.num_envs, dtype=np.int32)
        self._pending = np.zeros(env.num_envs, dtype=np.int64)  # the gymnasium backend's actions between send/recv

    def reset(
        self, *, seed: int | np.ndarray | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset (all envs, or those in ``options["reset_mask"]``); see the class docstring."""
        if seed is None and self._default_seed is not None:
            seed = self._default_seed
        self._default_seed = None
        obs, info = self.env.reset(seed=seed, options=options)
        # ale-py reports every env's lives, also those a reset_mask left alone.
        self._lives = info["lives"].copy()
        info["raw_reward"] = np.zeros(self.num_envs, dtype=np.float64)
        info["game_over"] = np.zeros(self.num_envs, dtype=bool)
        return obs, info

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every env; see the class docstring for shapes and the meaning of the flags."""
        self.send(actions)
        return self.recv()

    def send(self, actions: np.ndarray) -> None:
        """Start a step of every env and return at once: ale-py's emulators run in their own worker thread(s)
        until :meth:`recv` (the gymnasium backend steps in :meth:`recv`, in this thread)."""
        actions = np.asarray(actions, dtype=np.int64)
        if isinstance(self.env, AtariVectorEnv):
            self.env.send(actions)
        else:
            self._pending = actions

    def recv(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """The step :meth:`send` started (waiting for the emulators); as :meth:`step` returns it."""
        if isinstance(self.env, AtariVectorEnv):
            obs, reward, terminated, truncated, info = self.env.recv()
        else:
            obs, reward, terminated, truncated, info = self.env.step(self._pending)
        raw = reward.astype(np.float64)
        info["raw_reward"] = raw
        info["game_over"] = terminated | truncated
        if self._life_loss:
            lives = info["lives"]
            # A drop in lives is a life loss; at game over (lives -> 0) terminated is already set, and the
            # autoreset step after it shows the new game's higher count, which is no drop.
            terminated = terminated | (lives < self._lives)
            self._lives = lives
        out_reward = np.clip(raw, -1.0, 1.0) if self._clip else raw
        return obs, out_reward.astype(np.float32), terminated, truncated, info


def _ale_env(env: gym.Env) -> AtariEnv:
    """The ale-py env under ``env``'s wrappers (gymnasium types ``unwrapped`` as a plain ``gym.Env``)."""
    return cast("AtariEnv", env.unwrapped)


class _FireOnReset(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Press FIRE for one emulator frame after each game reset (as ale-py's ``use_fire_reset`` does)."""

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self._fire = _ale_env(env).get_action_meanings().index("FIRE")

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        obs, _, terminated, truncated, info = self.env.step(self._fire)
        if terminated or truncated:  # cannot happen in one frame of a fresh game, but never return a dead one
            obs, info = self.env.reset(options=options)
        return obs, info


class AtariEpisode(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Outermost wrapper of the single Atari env: reward clipping, life-loss terminals, raw reward, game over.

    - ``info["raw_reward"]`` (float) is the unclipped score change; the returned reward is clipped to [-1, 1]
      when ``clip_rewards``.
    - With ``terminal_on_life_loss``, a lost life returns ``terminated=True`` with ``info["game_over"]``
      False. Gymnasium then asks for ``reset()``; a reset without seed or options after such a terminal does
      not restart the game: it returns the last observation (same frame stack) and play goes on, as in
      Nature DQN and as in :class:`AtariVector`. Any other reset starts a new game.
    - The first ``reset()`` without a seed uses ``seed``.
    """

    def __init__(self, env: gym.Env, *, clip_rewards: bool, terminal_on_life_loss: bool, seed: int) -> None:
        # Recording the arguments lets ``env.spec.make()`` rebuild the whole stack (check_env relies on it).
        gym.utils.RecordConstructorArgs.__init__(
            self, clip_rewards=clip_rewards, terminal_on_life_loss=terminal_on_life_loss, seed=seed
        )
        gym.Wrapper.__init__(self, env)
        self._clip = clip_rewards
        self._life_loss = terminal_on_life_loss
        self._default_seed: int | None = seed
        self._lives = 0
        self._continue_game = False
        self._last_obs: Any = None
        self._last_info: dict[str, Any] = {}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        if self._continue_game and seed is None and options is None:
            self._continue_game = False
            info = dict(self._last_info, raw_reward=0.0, game_over=False)
            # A copy, so that the caller never holds two references to one array.
            return np.array(self._last_obs, copy=True), info
        if seed is None and self._default_seed is not None:
            seed = self._default_seed
        self._default_seed = None
        self._continue_game = False
        obs, info = self.env.reset(seed=seed, options=options)
        self._lives = int(info.get("lives", 0))
        info = dict(info, raw_reward=0.0, game_over=False)
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        raw = float(reward)
        game_over = bool(terminated or truncated)
        lives = int(info.get("lives", 0))
        # Only a reset right after a life-loss terminal continues the game (not one after later steps).
        self._continue_game = False
        if self._life_loss and lives < self._lives and not game_over:
            terminated = True
            self._continue_game = True
            self._last_obs, self._last_info = obs, info
        self._lives = lives
        info = dict(info, raw_reward=raw, game_over=game_over)
        out = float(np.clip(raw, -1.0, 1.0)) if self._clip else raw
        return obs, out, bool(terminated), bool(truncated), info


class _RamInfo(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Puts the console RAM (uint8 [128], a copy) into ``info["ram"]`` at every reset and step."""

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self._ale = _ale_env(env).ale

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        return obs, dict(info, ram=self._ale.getRAM().copy())

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, dict(info, ram=self._ale.getRAM().copy())


def _make_single_with_ram(rom: str, settings: AtariPreset, seed: int) -> gym.Env:
    return _RamInfo(_make_single(rom, settings, seed))


class GymnasiumAtariVector(VectorWrapper):
    """The ``"gymnasium"`` backend before :class:`AtariVector`: a ``SyncVectorEnv`` (autoreset NextStep) of single
    Atari envs whose info matches ``AtariVectorEnv``'s: ``env_id``, ``lives``, ``frame_number``,
    ``episode_frame_number`` (int32 [N]) and ``ram`` (uint8 [N, 128]); gymnasium's ``_key`` masks are dropped.

    The single envs run without life-loss terminals or clipping (:class:`AtariVector` does both, from ``lives``,
    exactly as for the ale-py backend), so a lost life never triggers a vector autoreset.
    """

    def __init__(self, rom: str, settings: AtariPreset, num_envs: int, seed: int) -> None:
        plain = dataclasses.replace(settings, terminal_on_life_loss=False, clip_rewards=False)
        fns = [functools.partial(_make_single_with_ram, rom, plain, seed + i) for i in range(num_envs)]
        super().__init__(SyncVectorEnv(fns, autoreset_mode=AutoresetMode.NEXT_STEP))
        self._env_id = np.arange(num_envs, dtype=np.int32)

    def _info(self, info: dict[str, Any]) -> dict[str, Any]:
        out = {"env_id": self._env_id.copy()}
        for key in ("lives", "frame_number", "episode_frame_number"):
            out[key] = np.asarray(info[key], dtype=np.int32)
        out["ram"] = np.asarray(info["ram"], dtype=np.uint8)
        return out

    def reset(
        self, *, seed: int | np.ndarray | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(seed=None if seed is None else int(seed), options=options)
        return obs, self._info(info)

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(np.asarray(actions, dtype=np.int64))
        return obs, np.asarray(reward, np.float32), terminated, truncated, self._info(info)


# An int num_envs gives an AtariVector, None one Gymnasium env.
@overload
def make_atari(game: str, preset: str | AtariPreset = ..., num_envs: int = ..., seed: int = ..., num_threads: int = ...,
               backend: str = ..., **overrides: Any) -> AtariVector: ...
@overload
def make_atari(game: str, preset: str | AtariPreset, num_envs: None, seed: int = ..., num_threads: int = ...,
               backend: str = ..., **overrides: Any) -> gym.Env: ...
@overload
def make_atari(game: str, preset: str | AtariPreset = ..., *, num_envs: None, seed: int = ..., num_threads: int = ...,
               backend: str = ..., **overrides: Any) -> gym.Env: ...
def make_atari(
    game: str,
    preset: str | AtariPreset = "machado",
    num_envs: int | None = 8,
    seed: int = 0,
    num_threads: int = 1,
    backend: str = "ale_vector",
    **overrides: Any,
) -> AtariVector | gym.Env:
    """Build an Atari environment with every setting taken from a preset.

    :param game: any spelling :func:`envs.names.resolve_game` accepts ("Pong", "ALE/Pong-v5", "pong").
    :param preset: "machado" (default) or "nature", or an :class:`AtariPreset`.
    :param num_envs: an int gives an :class:`AtariVector` of that many envs (ale-py's C++ vector env,
        obs uint8 [N, S, 84, 84]); None gives one Gymnasium env (obs uint8 [S, 84, 84]) built from
        ``gym.make("ALE/<Name>-v5", frameskip=1)`` + ``AtariPreprocessing`` + ``FrameStackObservation``
        + :class:`AtariEpisode`.
    :param seed: used by the first ``reset()`` that is given no seed.
    :param num_threads: ale-py worker threads of the vector env (ignored for a single env and the gymnasium
        backend).
    :param backend: vector env implementation: ``"ale_vector"`` (ale-py's C++ vector env, fastest) or
        ``"gymnasium"`` (a gymnasium ``SyncVectorEnv`` of single envs, same API plus ``info["ram"]`` uint8
        [N, 128]; see the module docstring). Ignored for a single env.
    :param overrides: single :class:`AtariPreset` fields, e.g. ``repeat_action_probability=0.0``.
    :raises ValueError: unknown game, preset, backend or override key; ``num_envs < 1``.
    """
    rom = resolve_game(game)
    settings = get_preset(preset, **overrides)
    if backend not in BACKENDS:
        raise ValueError(f"unknown vector env backend {backend!r}; choose one of {list(BACKENDS)}")
    if backend == "gymnasium" or num_envs is None:
        if (settings.frame_height, settings.frame_width, settings.grayscale) != (FRAME_SIZE, FRAME_SIZE, True):
            raise ValueError(f"frame_height/frame_width/grayscale overrides need the ale_vector backend (a vector "
                             f"env); the single env and the gymnasium backend give {FRAME_SIZE}x{FRAME_SIZE} "
                             f"luminance frames.")
    if num_envs is None:
        return _make_single(rom, settings, seed)
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs must be a positive int or None (one Gymnasium env), got {num_envs!r}")
    if backend == "gymnasium":
        return AtariVector(GymnasiumAtariVector(rom, settings, num_envs, seed), settings, rom, seed=seed)
    env = AtariVectorEnv(
        rom,
        num_envs,
        num_threads=num_threads,
        max_num_frames_per_episode=settings.max_num_frames_per_episode,
        repeat_action_probability=settings.repeat_action_probability,
        full_action_space=settings.full_action_space,
        autoreset_mode="NextStep",
        img_height=settings.frame_height,
        img_width=settings.frame_width,
        grayscale=settings.grayscale,
        stack_num=settings.stack,
        frameskip=settings.frame_skip,
        maxpool=True,
        noop_max=settings.noop_max,
        # Life losses and clipping are done in AtariVector (see the module docstring for why).
        episodic_life=False,
        life_loss_info=False,
        reward_clipping=False,
        use_fire_reset=settings.use_fire_reset,
    )
    return AtariVector(env, settings, rom, seed=seed)


def _make_single(rom: str, settings: AtariPreset, seed: int) -> gym.Env:
    gym.register_envs(ale_py)
    env = gym.make(
        f"ALE/{display_name(rom)}-v5",
        frameskip=1,  # AtariPreprocessing does the frame skipping and max-pooling
        repeat_action_probability=settings.repeat_action_probability,
        full_action_space=settings.full_action_space,
        max_num_frames_per_episode=settings.max_num_frames_per_episode,
    )
    if settings.use_fire_reset and "FIRE" in _ale_env(env).get_action_meanings():
        env = _FireOnReset(env)
    env = AtariPreprocessing(
        env,
        noop_max=settings.noop_max,
        frame_skip=settings.frame_skip,
        screen_size=FRAME_SIZE,
        terminal_on_life_loss=False,  # AtariEpisode does it without restarting the game
        grayscale_obs=True,
    )
    env = FrameStackObservation(env, settings.stack, padding_type="zero")
    return AtariEpisode(
        env,
        clip_rewards=settings.clip_rewards,
        terminal_on_life_loss=settings.terminal_on_life_loss,
        seed=seed,
    )


def latest_frame(obs: np.ndarray) -> np.ndarray:
    """The newest frame of a stacked observation: ``obs[..., -1, :, :]``.

    :param obs: uint8 [..., S, 84, 84] (one observation [S, 84, 84] or a batch [N, S, 84, 84]).
    :returns: uint8 [..., 84, 84], a view into ``obs`` (no copy, no emulator call).

    Density models (exploration bonuses) read frames this way: one new frame per step, never the stack.
    """
    if obs.ndim < 3:
        raise ValueError(f"expected a stacked observation [..., S, H, W], got shape {obs.shape}")
    return obs[..., -1, :, :]


@functools.lru_cache(maxsize=256)
def _action_set(rom: str, full_action_space: bool) -> tuple[str, ...]:
    ale = ale_py.ALEInterface()
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    path = roms.get_rom_path(rom)
    if path is None:
        raise ValueError(f"ale-py has no ROM for {rom!r}")
    ale.loadROM(path)
    actions = ale.getLegalActionSet() if full_action_space else ale.getMinimalActionSet()
    return tuple(a.name for a in actions)


def atari_action_meanings(game: str, full_action_space: bool = False) -> list[str]:
    """Names of an Atari game's actions in index order, e.g. Breakout: ``["NOOP", "FIRE", "RIGHT", "LEFT"]``
    (:func:`envs.action_meanings` answers for every env family)."""
    return list(_action_set(resolve_game(game), full_action_space))


def atari_num_actions(game: str, preset: str | AtariPreset = "machado", **overrides: Any) -> int:
    """Size of the Discrete action space :func:`make_atari` gives for this game and preset (cached;
    :func:`envs.num_actions` answers for every env family)."""
    return len(_action_set(resolve_game(game), get_preset(preset, **overrides).full_action_space))
