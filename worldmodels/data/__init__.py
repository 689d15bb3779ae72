"""Recorded play as datasets: the shard + manifest format, its writer and streaming reader, binarisation.

One format serves every model trained on trajectories (binary VAE, video prediction); see
:mod:`worldmodels.data.format`. ``reverie collect`` (``launch/collect.py``) fills it from Ray actors.
"""

from __future__ import annotations

from worldmodels.data.binarize import SIZES, Binarizer, resize_frames
from worldmodels.data.format import FIELDS, FORMAT, SPLITS, DatasetError, read_manifest
from worldmodels.data.reader import TrajectoryDataset
from worldmodels.data.sampler import WindowSampler
from worldmodels.data.writer import DatasetWriter

__all__ = [
    "FIELDS", "FORMAT", "SIZES", "SPLITS", "Binarizer", "DatasetError", "DatasetWriter", "TrajectoryDataset",
    "WindowSampler", "read_manifest", "resize_frames",
]
