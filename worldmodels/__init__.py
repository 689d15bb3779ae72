"""Generative models of frames (density models, world models, representations).

Imports neither ``agents`` nor ``launch``: anybody's agent can use these models.
"""

from __future__ import annotations

from worldmodels.protocols import DensityModel, Representation, WorldModel

__all__ = ["DensityModel", "Representation", "WorldModel"]
