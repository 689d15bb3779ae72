"""What a novelty source scores, per env family: one preprocessing of the newest observation for each family and
kind of source, written once and used by DQN's actors and the Gymnasium bonus wrappers (:mod:`envs.wrappers`).

A bonus must score the whole newest observation the agent sees. The env families (see :mod:`envs`) lay their
observations out differently, so each gets its own input:

============  ==================================  =================================================================
family        observation (one env)               pseudo-count input (CTS, PixelCNN): uint8 ``[H, W]`` symbols
============  ==================================  =================================================================
``atari``     uint8 ``[S, 84, 84]`` grey stack     the newest frame ``obs[-1]`` area-averaged to 42x42 and quantised
              (also ``toy/catch``; an RGB stack    to 8 levels (``grey // 32``): Bellemare et al. 2016, App. C, and
              ``[S, 84, 84, 3]`` is made grey)     Ostrovski et al. 2017 (:func:`worldmodels.density.preprocess_frames`)
``minatar``   uint8 ``[C, 10, 10]``, 0/1 channels  one categorical symbol per cell packing the C channel bits:
``maze``      uint8 ``[3, n, n]``, 0/1 channels    ``symbol = sum_c [obs[c] != 0] * 2**c``, ``2**C`` levels (8 for
                                                   the maze: walls 1, agent 2, goal 4); ``C <= 8`` (CTS's and our
                                                   uint8 alphabets hold at most 256 symbols)
============  ==================================  =================================================================

and for Random Network Distillation (float32 ``[C, H, W]``, whitened by RND itself): Atari's newest frame as one
channel ``[1, 84, 84]`` (Burda et al. 2018, App. A: the newest frame, not the stack), a grid's whole observation as
its ``C`` float channels. ``"grid"`` names any such 0/1 ``[C, n, n]`` observation (MinAtar's, the maze's, a user's);
:func:`family_of_observation` tells the families apart from an observation space, for envs we did not write.

A family a source cannot score is refused, naming the key and the fix: MinAtar's Seaquest has 10 channels,
``2**10`` symbols per cell, too many for a pseudo-count; RND scores it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from worldmodels.protocols import NoveltySource

__all__ = [
    "FAMILIES",
    "SOURCES",
    "NoveltyInput",
    "env_family",
    "family_of_observation",
    "last_counts",
    "make_novelty_source",
    "novelty_input",
]

FAMILIES = ("atari", "minatar", "maze", "grid")
SOURCES = ("cts", "pixelcnn", "rnd")
GRID_FAMILIES = ("minatar", "maze", "grid")
#: Most symbols a pseudo-count's uint8 frames (and CTS's alphabet) hold.
MAX_LEVELS = 256


def env_family(game: str) -> str:
    """The family of a game name: ``"minatar"`` (``minatar/...``), ``"maze"`` (``maze/...``), else ``"atari"``
    (Atari games and ``toy/catch``, whose observations are stacks of 84x84 frames)."""
    if game.startswith("minatar/"):
        return "minatar"
    if game.startswith("maze/"):
        return "maze"
    return "atari"


def family_of_observation(shape: tuple[int, ...], high: Any = 255) -> str:
    """The family whose preprocessing fits one observation of ``shape`` (and maximum value ``high``): ``"grid"`` for
    ``[C, n, n]`` arrays of 0/1 values, ``"atari"`` for frames (``[S, H, W]``, ``[S, H, W, 3]``, ``[H, W, 3]``,
    ``[H, W]``)."""
    top = float(np.max(np.asarray(high)))
    if len(shape) == 3 and top <= 1:
        return "grid"
    return "atari"


def _refuse(key: str, message: str) -> ValueError:
    return ValueError(f"{key}: {message}")


@dataclass(frozen=True)
class NoveltyInput:
    """The preprocessing of one env family's observations for one kind of source; call it on a batch.

    :param family: ``"atari"``, ``"minatar"``, ``"maze"`` or ``"grid"``.
    :param source: ``"cts"``, ``"pixelcnn"`` or ``"rnd"``.
    :param obs_shape: one observation's shape.
    :param shape: one output's shape: ``(H, W)`` for pseudo-counts, ``(C, H, W)`` for RND.
    :param num_levels: symbols per cell of a pseudo-count's input (0 for RND).
    """

    family: str
    source: str
    obs_shape: tuple[int, ...]
    shape: tuple[int, ...]
    num_levels: int

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Observations ``[N, *obs_shape]`` -> the source's input ``[N, *shape]`` (see the module docstring)."""
        obs = np.asarray(obs)
        if tuple(obs.shape[1:]) != self.obs_shape:
            raise ValueError(f"the {self.family} novelty input takes observations [N, {list(self.obs_shape)}], got "
                             f"{list(obs.shape)}")
        if self.family in GRID_FAMILIES:
            if self.source == "rnd":
                return obs.astype(np.float32)
            bits = (obs != 0).astype(np.uint16) << np.arange(obs.shape[1], dtype=np.uint16)[None, :, None, None]
            return bits.sum(axis=1).astype(np.uint8)
        newest = _newest_atari_frame(obs)
        if self.source == "rnd":
            return (_grey(newest) if newest.ndim == 4 else newest)[:, None].astype(np.float32)
        from worldmodels.density.preprocess import DEFAULT_LEVELS, DEFAULT_SHAPE, preprocess_frames

        return preprocess_frames(newest, DEFAULT_SHAPE, DEFAULT_LEVELS)


def _newest_atari_frame(obs: np.ndarray) -> np.ndarray:
    """``[N, S, H, W]`` -> ``[N, H, W]``; ``[N, S, H, W, 3]`` -> ``[N, H, W, 3]``; single frames as they are."""
    if obs.ndim == 5 or obs.ndim == 4 and obs.shape[-1] != 3:
        return obs[:, -1]
    return obs


def _grey(rgb: np.ndarray) -> np.ndarray:
    import cv2

    out = np.empty(rgb.shape[:3], np.uint8)
    for b in range(rgb.shape[0]):
        cv2.cvtColor(np.ascontiguousarray(rgb[b]), cv2.COLOR_RGB2GRAY, dst=out[b])
    return out


def novelty_input(family: str, source: str, obs_shape: tuple[int, ...], key: str = "exploration.bonus"
                  ) -> NoveltyInput:
    """The input of a ``source`` bonus on observations of ``family`` (see the module docstring).

    :param family: ``"atari"``, ``"minatar"``, ``"maze"`` or ``"grid"`` (:func:`env_family`,
        :func:`family_of_observation`).
    :param source: ``"cts"``, ``"pixelcnn"`` or ``"rnd"``.
    :param obs_shape: one observation's shape, e.g. ``(4, 84, 84)``, ``(7, 10, 10)``, ``(3, 21, 21)``.
    :param key: the setting that chose the source, named in errors (``exploration.bonus``; the wrappers' ``model``).
    :raises ValueError: an unknown family or source, a shape that is not the family's, or a family the source cannot
        score; each names ``key`` and the fix.
    """
    obs_shape = tuple(int(s) for s in obs_shape)
    if source not in SOURCES:
        raise _refuse(key, f"unknown novelty source {source!r}; choose one of {list(SOURCES)}")
    if family not in FAMILIES:
        raise _refuse(key, f"unknown env family {family!r}; families: {list(FAMILIES)}")
    if family in GRID_FAMILIES:
        if len(obs_shape) != 3:
            raise _refuse(key, f"{family} observations are [C, n, n] 0/1 channels, got shape {list(obs_shape)}")
        channels = obs_shape[0]
        if source == "rnd":
            return NoveltyInput(family, source, obs_shape, obs_shape, 0)
        if channels > 8:
            raise _refuse(key, f"{source!r} cannot score {family} observations of {channels} channels: one symbol per "
                               f"cell would need 2**{channels} = {2 ** channels} levels, more than a pseudo-count's "
                               f"{MAX_LEVELS}; use {key}=rnd (Random Network Distillation scores any grid)")
        return NoveltyInput(family, source, obs_shape, obs_shape[1:], max(2, 2**channels))
    if not (len(obs_shape) in (2, 3) or len(obs_shape) == 4 and obs_shape[-1] == 3):
        raise _refuse(key, f"atari observations are frames ([S, H, W], [S, H, W, 3], [H, W, 3] or [H, W]), got "
                           f"shape {list(obs_shape)}")
    frame = obs_shape[1:] if len(obs_shape) == 4 or len(obs_shape) == 3 and obs_shape[-1] != 3 else obs_shape
    if source == "rnd":
        return NoveltyInput(family, source, obs_shape, (1, *frame[:2]), 0)
    from worldmodels.density.preprocess import DEFAULT_LEVELS, DEFAULT_SHAPE

    return NoveltyInput(family, source, obs_shape, DEFAULT_SHAPE, DEFAULT_LEVELS)


def make_novelty_source(source: str, spec: NoveltyInput, beta: float, seed: int = 0) -> NoveltySource:
    """The papers' bonus machinery for ``spec`` (a :class:`~worldmodels.protocols.NoveltySource`):

    - ``"cts"``: a :class:`~worldmodels.density.PseudoCount` over a CTS of ``spec``'s shape and levels, raw
      prediction gain (Bellemare et al. 2016);
    - ``"pixelcnn"``: the same over a PixelCNN, the gain decayed by ``0.1 n^-1/2`` (Ostrovski et al. 2017);
    - ``"rnd"``: :class:`~worldmodels.density.RND` with the paper's settings on ``spec.shape``, bonus ``beta * error``.
    """
    if source != spec.source:
        raise ValueError(f"source {source!r} does not match the novelty input's {spec.source!r}")
    if source == "rnd":
        from worldmodels.density.rnd import RND, RNDConfig

        shape = spec.shape
        return RND(RNDConfig(input_shape=(shape[0], shape[1], shape[2]), beta=beta, seed=seed))
    from worldmodels.density import PseudoCount, ostrovski_gain_decay

    shape2 = (spec.shape[0], spec.shape[1])
    if source == "cts":
        from worldmodels.density.cts import CTS

        return PseudoCount(CTS(shape=shape2, num_levels=spec.num_levels), beta=beta)
    from worldmodels.density.pixelcnn import PixelCNNConfig, PixelCNNDensity

    return PseudoCount(PixelCNNDensity(PixelCNNConfig(shape=shape2, num_levels=spec.num_levels)), beta=beta,
                       prediction_gain_decay=ostrovski_gain_decay(0.1))


def last_counts(source: NoveltySource, n: int) -> np.ndarray:
    """The pseudo-counts float64 ``[n]`` of a pseudo-count's last batch; NaN for a source without counts (RND)."""
    counts = getattr(source, "last_counts", None)
    return np.asarray(counts, np.float64) if counts is not None else np.full(n, np.nan)
