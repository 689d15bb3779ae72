"""What the vector envs of :mod:`envs` share beyond Gymnasium's ``VectorEnv``."""

from __future__ import annotations

from typing import Any

import numpy as np


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
