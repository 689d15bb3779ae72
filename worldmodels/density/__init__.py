"""Novelty sources: density models over quantised frames with the pseudo-count bonus built on them, and Random
Network Distillation (:mod:`worldmodels.density.rnd`); all satisfy :class:`worldmodels.protocols.NoveltySource`.

``CTS`` (numba) and the pseudo-count code import quickly; ``PixelCNNDensity`` and ``RND`` pull in torch and are
loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from worldmodels.density.cts import CTS
from worldmodels.density.preprocess import preprocess_frames
from worldmodels.density.pseudocount import PseudoCount, ostrovski_gain_decay

if TYPE_CHECKING:
    from worldmodels.density.pixelcnn import PixelCNNConfig, PixelCNNDensity
    from worldmodels.density.rnd import RND, RNDConfig

__all__ = [
    "CTS",
    "PixelCNNConfig",
    "PixelCNNDensity",
    "PseudoCount",
    "RND",
    "RNDConfig",
    "ostrovski_gain_decay",
    "preprocess_frames",
]


def __getattr__(name: str) -> Any:
    # Lazy: importing torch costs about a second, and CTS users do not need it.
    if name in ("PixelCNNDensity", "PixelCNNConfig"):
        from worldmodels.density import pixelcnn

        return getattr(pixelcnn, name)
    if name in ("RND", "RNDConfig"):
        from worldmodels.density import rnd

        return getattr(rnd, name)
    raise AttributeError(f"module 'worldmodels.density' has no attribute {name!r}")
