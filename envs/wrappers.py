"""Gymnasium wrappers that add a novelty bonus (a density-model pseudo-count, or RND) to any environment's reward.

They make count-based exploration (Bellemare et al. 2016; Ostrovski et al. 2017) a one-line change for
agents we did not write (Stable-Baselines3, CleanRL, ...)::

    env = PseudoCountBonus(env, model="cts", beta=0.05)        # a gymnasium.Env
    envs = VectorPseudoCountBonus(envs, model="cts", beta=0.05)  # a gymnasium.vector.VectorEnv

Every frame the agent observes is preprocessed (:func:`worldmodels.density.preprocess_frames`: grey,
42x42, 8 levels), learned by the density model and turned into a bonus
``beta / sqrt(N + 0.01)`` (:class:`worldmodels.density.PseudoCount`). The reward returned with an
observation becomes ``extrinsic + bonus(observation)``; ``info`` carries ``extrinsic_reward``,
``intrinsic_reward`` and ``pseudo_count``. Frames are found in the observation: the newest frame of a
stacked ``[S, H, W]`` observation (``obs[-1]``, our Atari envs' layout), an RGB ``[H, W, 3]`` or grey
``[H, W]`` screen, or whatever ``frame_fn(obs)`` returns.

``model="rnd"`` adds Random Network Distillation's bonus instead (Burda et al. 2018:
:class:`worldmodels.density.RND`, the paper's settings, ``beta`` times the predictor's error; ``info["pseudo_count"]``
is NaN). Observations of 0/1 grids ``[C, n, n]`` (MinAtar, the maze: ``family="auto"`` tells them from frames by the
observation space's bounds) are scored whole, as :mod:`envs.novelty` documents: one symbol per cell packing the
channel bits for a pseudo-count, the float channels for RND. RND's input statistics start from the first frames
scored unless :meth:`PseudoCountBonus.init_normalizer` plays random steps first, as the paper does.

Reproducibility: the bonus depends on everything the model has learned, so the same seed and actions
do not give the same rewards twice. The single-env wrapper therefore reports
``spec.nondeterministic = True`` (which is how ``gymnasium.utils.env_checker.check_env`` learns not
to demand identical rewards from two seeded runs).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper

from envs.novelty import FAMILIES, NoveltyInput, family_of_observation, last_counts, make_novelty_source, novelty_input
from worldmodels.common.checks import require_number, require_positive
from worldmodels.density.preprocess import DEFAULT_LEVELS, DEFAULT_SHAPE, preprocess_frames
from worldmodels.density.pseudocount import GainDecay, PseudoCount, ostrovski_gain_decay
from worldmodels.protocols import DensityModel, NoveltySource

__all__ = ["PseudoCountBonus", "VectorPseudoCountBonus", "NoveltyBonus", "VectorNoveltyBonus", "make_density_model",
           "newest_frame", "random_play"]

ModelSpec = Literal["cts", "pixelcnn", "rnd"] | DensityModel | Callable[[], DensityModel]


def make_density_model(
    name: str, shape: tuple[int, int] = DEFAULT_SHAPE, num_levels: int = DEFAULT_LEVELS
) -> DensityModel:
    """Build a density model by name: ``"cts"`` or ``"pixelcnn"`` (the papers' settings)."""
    if name == "cts":
        from worldmodels.density.cts import CTS

        return CTS(shape=shape, num_levels=num_levels)
    if name == "pixelcnn":
        from worldmodels.density.pixelcnn import PixelCNNConfig, PixelCNNDensity

        return PixelCNNDensity(PixelCNNConfig(shape=shape, num_levels=num_levels))
    raise ValueError(f"unknown density model {name!r}; choose 'cts' or 'pixelcnn', or pass a DensityModel")


def newest_frame(obs: Any) -> np.ndarray:
    """The frame a density model should score, from one (unbatched) observation.

    ``[S, H, W]`` stack -> ``obs[-1]``; ``[S, H, W, 3]`` RGB stack -> ``obs[-1]``; ``[H, W, 3]`` RGB and
    ``[H, W]`` grey -> ``obs``. A ``[3, H, W]`` array reads as a stack of 3 grey frames.
    """
    if not isinstance(obs, np.ndarray):
        raise ValueError(
            f"cannot find a frame in an observation of type {type(obs).__name__}; pass frame_fn=... "
            "returning a uint8 [H, W] or [H, W, 3] image"
        )
    if obs.ndim == 4 and obs.shape[-1] == 3:
        return obs[-1]
    if obs.ndim == 3 and obs.shape[-1] == 3:
        return obs
    if obs.ndim == 3:
        return obs[-1]
    if obs.ndim == 2:
        return obs
    raise ValueError(
        f"cannot find a frame in an observation of shape {obs.shape}; pass frame_fn=... returning a uint8 "
        "[H, W] or [H, W, 3] image"
    )


def _newest_frames(obs: Any) -> np.ndarray:
    """Batched :func:`newest_frame`: ``[N, ...]`` observations -> ``[N, H, W]`` or ``[N, H, W, 3]``."""
    if not isinstance(obs, np.ndarray) or obs.ndim < 3:
        raise ValueError(
            f"cannot find frames in a batched observation of type {type(obs).__name__} / shape "
            f"{getattr(obs, 'shape', None)}; pass frame_fn=... returning uint8 [N, H, W] or [N, H, W, 3]"
        )
    if obs.ndim == 5 and obs.shape[-1] == 3:
        return obs[:, -1]
    if obs.ndim == 4 and obs.shape[-1] == 3:
        return obs
    if obs.ndim == 4:
        return obs[:, -1]
    return obs


def _input_spec(model: ModelSpec, family: str, space: gym.Space, frame_fn: Callable[[Any], np.ndarray] | None
                ) -> NoveltyInput | None:
    """How one env's observations become the source's input: a :class:`NoveltyInput` for grids and for RND, None for
    the frames path of a pseudo-count (``frame_fn`` or :func:`newest_frame`, then :func:`preprocess_frames`)."""
    source = model if isinstance(model, str) else "cts"
    shape = tuple(getattr(space, "shape", None) or ())
    if family == "auto":
        family = family_of_observation(shape, getattr(space, "high", 255)) if shape else "atari"
    if family not in FAMILIES:
        raise ValueError(f"family={family!r} must be 'auto' or one of {list(FAMILIES)}")
    if frame_fn is not None and source == "rnd":
        frame = np.asarray(frame_fn(np.zeros(shape, getattr(space, "dtype", np.uint8))))
        return novelty_input("atari", "rnd", frame.shape, key="model")
    if frame_fn is not None or (family == "atari" and source != "rnd"):
        return None
    return novelty_input(family, source, shape, key="model")


def _pseudo_count(
    model: ModelSpec,
    beta: float,
    prediction_gain_decay: GainDecay | None | Literal["auto"],
    shape: tuple[int, int],
    num_levels: int,
    spec: NoveltyInput | None = None,
) -> NoveltySource:
    _check_numbers(beta, shape, num_levels)  # before building the model: a PixelCNN takes a while
    if spec is not None and isinstance(model, str):
        return make_novelty_source(model, spec, beta)
    if model == "rnd":
        raise ValueError("model='rnd' on frames needs the observation's shape; build the wrapper with an env")
    if isinstance(model, str):
        density = make_density_model(model, shape, num_levels)
    elif isinstance(model, DensityModel) and not isinstance(model, type):
        density = model
    elif callable(model):  # a factory, e.g. a class such as CTS or a lambda
        density = model()
    else:
        raise ValueError(f"model must be 'cts', 'pixelcnn', 'rnd', a DensityModel or a factory; got {model!r}")
    if prediction_gain_decay == "auto":
        # Ostrovski et al. (2017) decay the PixelCNN's gain; CTS (Bellemare et al. 2016) uses it raw.
        prediction_gain_decay = ostrovski_gain_decay(0.1) if _is_pixelcnn(density) else None
    return PseudoCount(density, beta=beta, prediction_gain_decay=prediction_gain_decay)


def _check_numbers(beta: float, shape: tuple[int, int], num_levels: int) -> None:
    """The wrappers' numeric arguments, each refused by name (``beta="0.05"`` would otherwise surface as an opaque
    TypeError from a comparison deep inside).

    :raises TypeError: a value of the wrong type. :raises ValueError: a value out of range.
    """
    require_number("beta", beta)
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__") or len(shape) != 2:
        raise TypeError(f"shape={shape!r} must be (height, width), two positive integers, e.g. {DEFAULT_SHAPE}.")
    require_positive({f"shape[{i}]": require_number(f"shape[{i}]", side, integer=True) for i, side in enumerate(shape)})
    levels = int(require_number("num_levels", num_levels, integer=True))
    if not 2 <= levels <= 256 or 256 % levels:
        raise ValueError(f"num_levels={levels} must be a power of two in [2, 256] (default {DEFAULT_LEVELS}).")


def _is_pixelcnn(density: DensityModel) -> bool:
    # Checked without importing torch: the class can only exist if its module was imported.
    module = sys.modules.get("worldmodels.density.pixelcnn")
    return module is not None and isinstance(density, module.PixelCNNDensity)


def _init_normalizer(source: NoveltySource, batches: list[np.ndarray]) -> None:
    init = getattr(source, "init_normalizer", None)
    if init is None:
        raise ValueError(f"init_normalizer applies to model='rnd' only; this wrapper's source is a "
                         f"{type(source).__name__}, which needs no input statistics")
    init(np.concatenate(batches))


def random_play(env: gym.Env | VectorEnv, steps: int, seed: int | None) -> list[Any]:
    """Observations of ``steps`` uniformly random actions from a fresh reset (single env: reset at episode ends)."""
    require_positive({"steps": require_number("steps", steps, integer=True)})
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    seen = [obs]
    for _ in range(int(steps)):
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        seen.append(obs)
        if isinstance(env, gym.Env) and (terminated or truncated):
            obs, _ = env.reset()
            seen.append(obs)
    return seen


class PseudoCountBonus(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Adds a pseudo-count exploration bonus to a single environment's reward.

    :param env: any ``gymnasium.Env`` whose observations contain a frame.
    :param model: ``"cts"`` (default), ``"pixelcnn"``, a :class:`~worldmodels.protocols.DensityModel`,
        or a zero-argument factory returning one.
    :param beta: bonus scale.
    :param frame_fn: maps an observation to a uint8 ``[H, W]`` or ``[H, W, 3]`` frame; default
        :func:`newest_frame`.
    :param prediction_gain_decay: gain schedule for :class:`~worldmodels.density.PseudoCount`;
        ``"auto"`` uses Ostrovski et al.'s ``0.1 n^-1/2`` for a PixelCNN model and none otherwise.
    :param shape: density-model frame size.
    :param num_levels: density-model grey levels.
    :param family: how observations are scored (:mod:`envs.novelty`): ``"auto"`` (0/1 ``[C, n, n]`` grids by the
        observation space's bounds, else frames), ``"atari"``, ``"minatar"``, ``"maze"`` or ``"grid"``.

    ``reset`` learns the first frame too (the agent sees it) and reports its bonus in ``info``; there is
    no reward to add it to. ``info["extrinsic_reward"]``, ``info["intrinsic_reward"]`` and
    ``info["pseudo_count"]`` are floats. The bonus machinery is :attr:`pseudo_count` (a
    :class:`~worldmodels.density.PseudoCount`; save it with its ``state_dict()``).
    """

    def __init__(
        self,
        env: gym.Env,
        model: ModelSpec = "cts",
        beta: float = 0.05,
        frame_fn: Callable[[Any], np.ndarray] | None = None,
        prediction_gain_decay: GainDecay | None | Literal["auto"] = "auto",
        shape: tuple[int, int] = DEFAULT_SHAPE,
        num_levels: int = DEFAULT_LEVELS,
        family: str = "auto",
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, model=model, beta=beta, frame_fn=frame_fn, prediction_gain_decay=prediction_gain_decay,
            shape=shape, num_levels=num_levels, family=family,
        )  # fmt: skip
        gym.Wrapper.__init__(self, env)
        self._input = _input_spec(model, family, env.observation_space, frame_fn)
        self.pseudo_count = _pseudo_count(model, beta, prediction_gain_decay, shape, num_levels, self._input)
        self._custom_frames = frame_fn is not None
        self._frame_fn = frame_fn or newest_frame
        self._shape = shape
        self._num_levels = num_levels

    # ignore: gymnasium's Wrapper already makes Env's plain `spec` attribute a read-only property; we refine that.
    @property
    def spec(self) -> gym.envs.registration.EnvSpec | None:  # type: ignore[override]
        """The inner spec plus this wrapper, marked ``nondeterministic`` (the bonus has memory)."""
        spec = super().spec
        if spec is None or spec.nondeterministic:
            return spec
        return dataclasses.replace(spec, nondeterministic=True)

    @property
    def novelty(self) -> NoveltySource:
        """The bonus machinery (also :attr:`pseudo_count`, its older name): save it with its ``state_dict()``."""
        return self.pseudo_count

    def _inputs(self, obs: Any) -> np.ndarray:
        if self._input is None:
            return preprocess_frames(np.asarray(self._frame_fn(obs)), self._shape, self._num_levels)
        frame = np.asarray(self._frame_fn(obs)) if self._custom_frames else np.asarray(obs)
        return self._input(frame[None])

    def _score(self, obs: Any) -> tuple[float, float]:
        bonus = float(self.pseudo_count.step(self._inputs(obs))[0])
        return bonus, float(last_counts(self.pseudo_count, 1)[0])

    def init_normalizer(self, steps: int, seed: int | None = None) -> None:
        """RND only (Burda et al. 2018, Sec. 2.3): play ``steps`` uniformly random actions (resetting as episodes
        end) and initialise RND's input statistics from those observations; nothing is learned. Call it before
        training; reset the env after it."""
        _init_normalizer(self.pseudo_count, [self._inputs(o) for o in random_play(self.env, steps, seed)])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        bonus, count = self._score(obs)
        info = dict(info)
        info.update(extrinsic_reward=0.0, intrinsic_reward=bonus, pseudo_count=count)
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        bonus, count = self._score(obs)
        info = dict(info)
        info.update(extrinsic_reward=float(reward), intrinsic_reward=bonus, pseudo_count=count)
        return obs, float(reward) + bonus, terminated, truncated, info


class VectorPseudoCountBonus(VectorWrapper):
    """Adds a pseudo-count bonus to every sub-environment of a ``gymnasium.vector.VectorEnv``.

    :param env: the vector env (e.g. ``ale_py.vector_env.AtariVectorEnv`` or a gymnasium
        ``SyncVectorEnv``).
    :param model: as :class:`PseudoCountBonus`. With ``shared=False`` (default) each sub-env gets its
        own density model, as A3C+ had one per thread (Bellemare et al. 2016): ``model`` must then be a
        name or a factory, not one instance. With ``shared=True`` one model learns the frames of all
        sub-envs, in sub-env order within each step.
    :param beta: bonus scale.
    :param frame_fn: maps the *batched* observation to uint8 frames ``[N, H, W]`` or ``[N, H, W, 3]``;
        default: the newest frame of ``[N, S, H, W]`` stacks, or the frames themselves.
    :param shared: one density model for all sub-envs instead of one each.
    :param prediction_gain_decay, shape, num_levels, family: as :class:`PseudoCountBonus`.

    Every frame returned by ``reset`` and ``step`` is learned and scored once, and its bonus is added
    to the reward returned with it. With autoreset mode ``NextStep`` (ALE's vector env) the step after
    an episode's end returns the new episode's first frame with reward 0: that frame is scored like any
    other and its bonus is that step's reward (agents following NextStep semantics drop that step, so
    they see the bonus of the reset frame nowhere, as with the single-env ``reset``). With ``SameStep``
    the terminal frame ``info["final_obs"][i]`` is scored for the finishing step's reward and the reset
    frame is learned too (its bonus is dropped). ``reset(options={"reset_mask": m})`` scores only the
    sub-envs that reset. ``info`` gets float64 ``[N]`` arrays ``extrinsic_reward``,
    ``intrinsic_reward`` and ``pseudo_count`` with all-true ``_``-prefixed masks.
    """

    def __init__(
        self,
        env: VectorEnv,
        model: ModelSpec = "cts",
        beta: float = 0.05,
        frame_fn: Callable[[Any], np.ndarray] | None = None,
        shared: bool = False,
        prediction_gain_decay: GainDecay | None | Literal["auto"] = "auto",
        shape: tuple[int, int] = DEFAULT_SHAPE,
        num_levels: int = DEFAULT_LEVELS,
        family: str = "auto",
    ) -> None:
        super().__init__(env)
        n = self.num_envs
        if not shared and n > 1 and isinstance(model, DensityModel) and not isinstance(model, type):
            raise ValueError(
                "one DensityModel instance cannot serve as a separate model for each of "
                f"{n} sub-envs; pass a name ('cts'), a factory (lambda: CTS()), or shared=True"
            )
        count = 1 if shared else n
        single = getattr(env, "single_observation_space", None)
        self._input = _input_spec(model, family, single, None) if single is not None and frame_fn is None else None
        if self._input is None and model == "rnd":
            raise ValueError("model='rnd' needs the env's single_observation_space and the default frame_fn")
        self.pseudo_counts = [
            _pseudo_count(model, beta, prediction_gain_decay, shape, num_levels, self._input) for _ in range(count)
        ]
        self.shared = shared
        self._frame_fn = frame_fn or _newest_frames
        self._shape = shape
        self._num_levels = num_levels
        self._autoreset_mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)

    def _score(self, obs: Any, envs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Learn the frames of sub-envs ``envs`` (in order); return bonus and count, float64 ``[N]``."""
        bonus = np.zeros(self.num_envs, dtype=np.float64)
        count = np.full(self.num_envs, np.nan, dtype=np.float64)
        if len(envs) == 0:
            return bonus, count
        small = self._inputs(obs, envs)
        if self.shared:
            pc = self.pseudo_counts[0]
            bonus[envs] = pc.step(small)
            count[envs] = last_counts(pc, len(envs))
        else:
            for k, i in enumerate(envs):
                pc = self.pseudo_counts[i]
                bonus[i] = pc.step(small[k : k + 1])[0]
                count[i] = last_counts(pc, 1)[0]
        return bonus, count

    def _inputs(self, obs: Any, envs: np.ndarray) -> np.ndarray:
        if self._input is not None:
            return self._input(np.asarray(obs)[envs])
        frames = np.asarray(self._frame_fn(obs))
        return preprocess_frames(frames[envs], self._shape, self._num_levels)

    def init_normalizer(self, steps: int, seed: int | None = None) -> None:
        """RND only: ``steps`` vector steps of uniformly random actions initialise every RND's input statistics
        (from all sub-envs' observations); see :meth:`PseudoCountBonus.init_normalizer`."""
        every = np.arange(self.num_envs)
        batches = [self._inputs(o, every) for o in random_play(self.env, steps, seed)]
        for source in self.pseudo_counts:
            _init_normalizer(source, batches)

    def _bonus_info(self, info: dict, extrinsic: np.ndarray, bonus: np.ndarray, count: np.ndarray) -> dict:
        info = dict(info)
        mask = np.ones(self.num_envs, dtype=bool)
        for key, value in (
            ("extrinsic_reward", extrinsic),
            ("intrinsic_reward", bonus),
            ("pseudo_count", count),
        ):
            info[key] = value
            info["_" + key] = mask.copy()
        return info

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict]:
        # gymnasium types VectorEnv.reset's seed as int | None; its vector envs (and ale-py's) take a list too.
        obs, info = self.env.reset(seed=seed, options=options)  # type: ignore[arg-type]
        if options is not None and "reset_mask" in options:
            envs = np.flatnonzero(np.asarray(options["reset_mask"]))
        else:
            envs = np.arange(self.num_envs)
        bonus, count = self._score(obs, envs)
        return obs, self._bonus_info(info, np.zeros(self.num_envs), bonus, count)

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict]:
        obs, reward, terminated, truncated, info = self.env.step(actions)
        extrinsic = np.asarray(reward, dtype=np.float64)
        if self._autoreset_mode == AutoresetMode.SAME_STEP and "final_obs" in info:
            bonus, count = self._score_same_step(obs, terminated | truncated, info)
        else:
            bonus, count = self._score(obs, np.arange(self.num_envs))
        return obs, extrinsic + bonus, terminated, truncated, self._bonus_info(info, extrinsic, bonus, count)

    def _score_same_step(self, obs: Any, done: np.ndarray, info: dict) -> tuple[np.ndarray, np.ndarray]:
        """SameStep: score the terminal frames of finished sub-envs, then learn their reset frames."""
        done_envs = np.flatnonzero(done)
        final = np.stack([np.asarray(info["final_obs"][i]) for i in done_envs]) if len(done_envs) else None
        merged = np.array(obs, copy=True)
        if final is not None:
            merged[done_envs] = final
        bonus, count = self._score(merged, np.arange(self.num_envs))
        self._score(obs, done_envs)  # learn the new episodes' first frames; no reward to carry them
        return bonus, count


#: The wrappers' names for what they add whatever the source (a pseudo-count or RND); the old names stay.
NoveltyBonus = PseudoCountBonus
VectorNoveltyBonus = VectorPseudoCountBonus
