"""A FIFO ring of one-step transitions of single frames: the imagined buffer (MBPO keeps imagined data apart from
real data) and the held-out window of recent real transitions the world model is scored on.

Frames are MinAtar's uint8 0/1 channels ``[C, H, W]``, one per observation, so a transition stores its two frames
whole (no frame sharing as in :mod:`agents.replay.buffer`: imagined rollouts are short and branch everywhere). With
``obs_frames > 1`` (Atari's 4-frame stacks, or a grid model's histories) ``obs`` holds those frames and ``next_obs``
only the next observation's newest frame: five 84x84 frames (35 KB) per Atari transition instead of eight.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: The arrays of a batch of transitions, name -> dtype: ``obs`` and ``next_obs`` ``[N, C, H, W]``, the rest ``[N]``.
FIELDS: dict[str, Any] = {"obs": np.uint8, "actions": np.int64, "rewards": np.float32, "next_obs": np.uint8,
                          "terminals": np.bool_}


class TransitionRing:
    """The newest ``capacity`` transitions, sampled uniformly with replacement.

    :param capacity: transitions kept (the oldest are overwritten first).
    :param frame_shape: one frame ``(C, H, W)``.
    :param seed: seeds the sampling generator (saved with :meth:`state_dict`).
    :param obs_frames: frames of each ``obs``: 1 stores ``[C, H, W]``; more stores histories ``[obs_frames, C, H, W]``
        (newest last; what a world model with that ``context`` reads). ``next_obs`` is always one frame.
    """

    def __init__(self, capacity: int, frame_shape: tuple[int, ...], seed: int, obs_frames: int = 1) -> None:
        if capacity < 1:
            raise ValueError(f"capacity={capacity} must be positive.")
        self.capacity = int(capacity)
        self.frame_shape = tuple(int(s) for s in frame_shape)
        self.obs_shape = self.frame_shape if obs_frames == 1 else (int(obs_frames), *self.frame_shape)
        shapes = {"obs": self.obs_shape, "next_obs": self.frame_shape}
        self._data = {name: np.zeros((self.capacity, *shapes.get(name, ())), dtype) for name, dtype in FIELDS.items()}
        self._rng = np.random.default_rng(seed)
        self.written = 0
        """Transitions ever added (the next one goes to row ``written % capacity``)."""

    def __len__(self) -> int:
        return min(self.written, self.capacity)

    def add(self, batch: dict[str, np.ndarray]) -> None:
        """Append a batch of transitions (the arrays of :data:`FIELDS`, one leading dimension ``N``); when ``N``
        exceeds the capacity only its last ``capacity`` are kept."""
        n = len(batch["actions"])
        if n == 0:
            return
        shape = tuple(batch["obs"].shape[1:])
        if shape != self.obs_shape or tuple(batch["next_obs"].shape[1:]) != self.frame_shape:
            raise ValueError(f"transitions of observations {shape} for a buffer of observations {self.obs_shape}.")
        skip = max(0, n - self.capacity)
        rows = (self.written + skip + np.arange(n - skip)) % self.capacity
        for name, dtype in FIELDS.items():
            self._data[name][rows] = np.asarray(batch[name][skip:], dtype)
        self.written += n

    def sample(self, n: int) -> dict[str, np.ndarray]:
        """``n`` transitions drawn uniformly, with replacement, from those kept (new arrays).

        :raises ValueError: the buffer is empty."""
        if len(self) == 0:
            raise ValueError("cannot sample from an empty buffer")
        rows = self._rng.integers(0, len(self), int(n))
        return {name: arr[rows] for name, arr in self._data.items()}

    def contents(self) -> dict[str, np.ndarray]:
        """Every transition kept, oldest first (new arrays)."""
        rows = (self.written - len(self) + np.arange(len(self))) % self.capacity
        return {name: arr[rows] for name, arr in self._data.items()}

    def state_dict(self) -> dict[str, Any]:
        """The transitions kept (oldest first), the count and the sampling generator's state."""
        return {"capacity": self.capacity, "written": self.written, "rng": self._rng.bit_generator.state,
                **self.contents()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output into a buffer of the same capacity and frame shape, so that it samples
        what the saved one would have."""
        if int(state["capacity"]) != self.capacity:
            raise ValueError(f"a buffer of capacity {state['capacity']} cannot be restored into one of "
                             f"{self.capacity}.")
        kept = len(state["actions"])
        written = int(state["written"])
        self.written = 0
        for name in FIELDS:
            self._data[name][...] = 0
        # Rows as the saved buffer had them: the oldest kept transition at row (written - kept) % capacity.
        rows = (written - kept + np.arange(kept)) % self.capacity
        for name, dtype in FIELDS.items():
            self._data[name][rows] = np.asarray(state[name], dtype)
        self.written = written
        self._rng.bit_generator.state = state["rng"]
