"""Density models over quantised frames and the pseudo-count exploration bonus built on them.

``CTS`` (numba) and the pseudo-count code import quickly; ``PixelCNNDensity`` pulls in torch and is
loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from worldmodels.density.cts import CTS
from worldmodels.density.preprocess import preprocess_frames
from worldmodels.density.pseudocount import PseudoCount, ostrovski_gain_decay

if TYPE_CHECKING:
    from worldmodels.density.pixelcnn import PixelCNNConfig, PixelCNNDensity

__all__ = [
    "CTS",
    "PixelCNNConfig",
    "PixelCNNDensity",
    "PseudoCount",
    "ostrovski_gain_decay",
    "preprocess_frames",
]


def __getattr__(name: str) -> Any:
    # Lazy: importing torch costs about a second, and CTS users do not need it.
    if name in ("PixelCNNDensity", "PixelCNNConfig"):
        from worldmodels.density import pixelcnn

        return getattr(pixelcnn, name)
    raise AttributeError(f"module 'worldmodels.density' has no attribute {name!r}")
