"""The random projection of Model-Free Episodic Control (Blundell et al. 2016, arXiv 1606.04460, Sec. 3).

phi(o) = A o, with A a D x F matrix whose entries are drawn from a standard Gaussian (the paper: D = 64), o the
frame flattened to F values scaled to [0, 1]. By the Johnson-Lindenstrauss lemma such a projection roughly keeps
Euclidean distances between frames, which is all MFEC's k-nearest-neighbour lookup needs. A is not normalised
(no 1 / sqrt(D)): the paper draws plain N(0, 1) entries, and a common scale does not change which neighbours
are nearest.

Scaling: uint8 frames are divided by 255 (pixels, 0..255), except MinAtar-sized frames (a 10x10 grid,
``frame_shape[-2:] == (10, 10)``), whose channels already hold 0/1 and are divided by 1: the rule of
``agents.torsos.make_torso``'s ``input_divisor`` (pixels / 255, MinAtar / 1). The divisor is applied after the
product (``A (o / s) = (A o) / s``), which saves a pass over the frames.

Reproducibility: A depends only on ``(frame_shape, dim, seed)``: it is drawn by numpy's PCG64 generator seeded
with ``seed`` (``np.random.default_rng(seed).standard_normal((dim, F), dtype=float32)``), so actors in
different processes, and a restored agent, build the same A from those three numbers; it is never saved.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

KIND = "random_projection"
MINATAR_SIZE = (10, 10)


def input_divisor(frame_shape: tuple[int, ...]) -> float:
    """What uint8 frames of ``frame_shape`` are divided by to lie in [0, 1]: 1 for MinAtar's 10x10 grids of 0/1
    channels, 255 for pixels."""
    return 1.0 if tuple(frame_shape[-2:]) == MINATAR_SIZE else 255.0


class RandomProjection:
    """phi(o) = A (o / s): uint8 ``[B, *frame_shape]`` -> float32 ``[B, dim]`` (``Representation``).

    :param frame_shape: one frame's shape: ``(84, 84)`` for Atari grey frames, ``(C, 10, 10)`` for MinAtar.
    :param dim: D, the key length (the paper: 64).
    :param seed: seeds A (see the module docstring).
    :raises ValueError: an empty or non-positive frame shape, or ``dim < 1``.
    """

    def __init__(self, frame_shape: tuple[int, ...], dim: int = 64, seed: int = 0) -> None:
        shape = tuple(int(d) for d in frame_shape)
        if not shape or any(d < 1 for d in shape):
            raise ValueError(f"frame_shape={tuple(frame_shape)}: give one frame's shape, e.g. (84, 84) or (C, 10, 10).")
        if int(dim) < 1:
            raise ValueError(f"dim={dim}: the random projection needs at least 1 output dimension (the paper: 64).")
        self.frame_shape, self._dim, self.seed = shape, int(dim), int(seed)
        self.features = math.prod(shape)
        self.divisor = input_divisor(shape)
        # Stored transposed, [F, D], so embedding is one row-major [B, F] @ [F, D] product.
        self.matrix_t = np.ascontiguousarray(
            np.random.default_rng(self.seed).standard_normal((self._dim, self.features), dtype=np.float32).T)

    @property
    def dim(self) -> int:
        """D, the key length."""
        return self._dim

    @property
    def matrix(self) -> np.ndarray:
        """A, float32 ``[D, F]`` (a view)."""
        return self.matrix_t.T

    def embed(self, frames: np.ndarray) -> np.ndarray:
        """A (o / s) of each frame.

        :param frames: uint8 (or bool) ``[B, *frame_shape]``, the newest frame of each observation.
        :return: float32 ``[B, dim]``.
        :raises ValueError: another shape or dtype.
        """
        frames = np.asarray(frames)
        if frames.shape[1:] != self.frame_shape or frames.ndim != len(self.frame_shape) + 1:
            raise ValueError(f"the random projection was built for frames {self.frame_shape}: expected "
                             f"[B, {', '.join(map(str, self.frame_shape))}], got {frames.shape}.")
        if frames.dtype not in (np.uint8, np.bool_):
            raise ValueError(f"frames must be uint8 (or bool), as observations are; got {frames.dtype}.")
        flat = frames.reshape(len(frames), self.features).astype(np.float32)
        out = flat @ self.matrix_t
        if self.divisor != 1.0:
            out *= np.float32(1.0 / self.divisor)
        return out

    def state_dict(self) -> dict[str, Any]:
        """The plain values A is rebuilt from: ``{"kind", "frame_shape", "dim", "seed"}`` (A itself is not saved)."""
        return {"kind": KIND, "frame_shape": list(self.frame_shape), "dim": self._dim, "seed": self.seed}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RandomProjection:
        """Rebuild from :meth:`state_dict`'s output: the same A, the same embeddings."""
        return cls(tuple(state["frame_shape"]), int(state["dim"]), int(state["seed"]))
