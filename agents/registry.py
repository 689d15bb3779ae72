"""Which algorithm an ``algo`` key names: a map from names to the modules that define their ``BUILDER``.

The generic runtime never names an algorithm; the command line (``launch``) looks them up here. Modules are
imported only when asked for, so ``reverie --help`` stays fast and an algorithm's dependencies load with it.
Tests (or users) add their own with :func:`register_algorithm`.
"""

from __future__ import annotations

import importlib
from typing import Any

_ALGORITHMS: dict[str, str] = {
    "actor_critic": "agents.actor_critic.builder",
    "dqn": "agents.dqn.builder",
    "dyna": "agents.dyna.builder",
    "mfec": "agents.episodic.builder",
    "straw": "agents.straw.builder",
}


def register_algorithm(name: str, module: str) -> None:
    """Make ``algo: name`` select the ``BUILDER`` of ``module`` (an importable module path)."""
    _ALGORITHMS[name] = module


def algorithm_names() -> list[str]:
    """The registered ``algo`` values."""
    return sorted(_ALGORITHMS)


def get_builder(name: str) -> Any:
    """The :class:`agents.runtime.algorithm.Builder` of algorithm ``name``.

    :raises ValueError: an unknown name, listing the known ones.
    """
    if name not in _ALGORITHMS:
        raise ValueError(f"algo={name!r} is not a known algorithm; choose one of {', '.join(algorithm_names())}.")
    return importlib.import_module(_ALGORITHMS[name]).BUILDER
