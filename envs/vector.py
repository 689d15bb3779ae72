"""What the vector envs of :mod:`envs` share beyond Gymnasium's ``VectorEnv``."""

from __future__ import annotations

from typing import Any

import numpy as np

#: One vector-env step: ``(obs, reward, terminated, truncated, info)``, each with leading dim N.
VectorStep = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]


def reset_mask(options: dict[str, Any] | None, num_envs: int) -> np.ndarray:
    """The envs a ``reset(options=...)`` resets: ``options["reset_mask"]`` (bool ``[num_envs]``), or all of them.

    :raises ValueError: a mask that is not a bool array of shape ``(num_envs,)``.
    """
    if options is None or "reset_mask" not in options:
        return np.ones(num_envs, dtype=bool)
    mask = np.asarray(options["reset_mask"])
    if mask.dtype != np.bool_ or mask.shape != (num_envs,):
        raise ValueError(f"reset_mask must be a bool array of shape ({num_envs},)")
    return mask


class SplitVector:
    """One actor's N envs as K groups, each a vector env that steps asynchronously: ``send_group(k, actions)``
    returns at once while group k's emulators run in their own thread, ``recv_group(k)`` waits for them. An actor
    acts on one group while the others emulate (Sample Factory's double-buffered sampling, Petrenko et al. 2020,
    Sec. 3.1), so the policy's forward pass and the actor's bookkeeping overlap the emulator on a second core.

    As a whole it is a vector env of N envs with the API of its groups (NextStep autoreset): :meth:`step` sends
    every group its actions, then receives them in order (the groups' emulators run side by side), and returns
    what one vector env of N envs would. Env i of the whole is env ``i - start`` of its group; a group built
    with seed ``seed + start`` seeds its env j with ``seed + start + j``, so env i's games are those of an
    unsplit vector env seeded with ``seed``.

    :param groups: K >= 1 vector envs with ``send(actions)`` / ``recv()`` (the five-tuple of ``step``), equal
        observation and action spaces; their ``frame_skip``, ``stack``, ``frame_shape`` (and ``preset``, ``game``
        where they have one) are the whole's.
    """

    def __init__(self, groups: list[Any]) -> None:
        if not groups:
            raise ValueError("SplitVector needs at least one group")
        for group in groups:
            if not (hasattr(group, "send") and hasattr(group, "recv")):
                raise TypeError(f"{type(group).__name__} cannot step asynchronously (no send/recv): env.splits > 1 "
                                "needs Atari's ale_vector backend")
        self.groups = groups
        sizes = [int(g.num_envs) for g in groups]
        bounds = np.cumsum([0, *sizes])
        self.group_slices = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
        self.num_envs = int(bounds[-1])
        first = groups[0]
        self.single_observation_space = first.single_observation_space
        self.single_action_space = first.single_action_space
        self.observation_space = _batched(first.single_observation_space, self.num_envs)
        # A vector env's batched action space, as gymnasium's have: random play (RND's input statistics) samples it.
        self.action_space = _batched(first.single_action_space, self.num_envs)
        self.frame_skip = first.frame_skip
        self.stack = first.stack
        self.frame_shape = first.frame_shape
        for name in ("preset", "game"):
            if hasattr(first, name):
                setattr(self, name, getattr(first, name))

    @property
    def num_groups(self) -> int:
        return len(self.groups)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None,
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every group (or the envs of ``options["reset_mask"]``, bool ``[N]``); ``seed``: env i gets
        ``seed + i``."""
        results = []
        for group, part in zip(self.groups, self.group_slices):
            group_seed = None if seed is None else seed + part.start
            group_options = None
            if options is not None:
                group_options = {**options, "reset_mask": reset_mask(options, self.num_envs)[part]}
            results.append(group.reset(seed=group_seed, options=group_options))
        return (np.concatenate([obs for obs, _ in results]),
                self._merge_info([info for _, info in results]))

    def send_group(self, k: int, actions: np.ndarray) -> None:
        """Start group k's step with its actions (int ``[n_k]``); returns at once."""
        self.groups[k].send(np.asarray(actions, dtype=np.int64))

    def recv_group(self, k: int) -> VectorStep:
        """Group k's step, once its emulators finish: ``(obs, reward, terminated, truncated, info)`` with leading
        dim ``n_k`` (``info["env_id"]`` is the env's index in the whole)."""
        obs, reward, terminated, truncated, info = self.groups[k].recv()
        return obs, reward, terminated, truncated, self._offset_ids(info, self.group_slices[k].start)

    def step(self, actions: np.ndarray) -> VectorStep:
        """Step all N envs: every group is sent its actions first, so their emulators run side by side."""
        actions = np.asarray(actions)
        for k, part in enumerate(self.group_slices):
            self.send_group(k, actions[part])
        return self.merge([self.recv_group(k) for k in range(self.num_groups)])

    def merge(self, results: list[VectorStep]) -> VectorStep:
        """The groups' steps (in group order) as one step of all N envs."""
        return (np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results]),
                np.concatenate([r[2] for r in results]), np.concatenate([r[3] for r in results]),
                self._merge_info([r[4] for r in results], offset=False))

    def _merge_info(self, infos: list[dict[str, Any]], offset: bool = True) -> dict[str, Any]:
        if offset:
            infos = [self._offset_ids(info, part.start) for info, part in zip(infos, self.group_slices)]
        return {key: np.concatenate([np.asarray(info[key]) for info in infos]) for key in infos[0]}

    @staticmethod
    def _offset_ids(info: dict[str, Any], start: int) -> dict[str, Any]:
        if "env_id" in info and start:
            info = {**info, "env_id": np.asarray(info["env_id"]) + start}
        return info

    def close(self) -> None:
        for group in self.groups:
            group.close()


def _batched(space: Any, n: int) -> Any:
    from gymnasium.vector.utils import batch_space

    return batch_space(space, n)
