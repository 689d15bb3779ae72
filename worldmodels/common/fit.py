"""The start every ``fit-*`` trainer shares (``fit-vae``, ``fit-world-model``, ``fit-gvae``): the learner device,
the run directory and resume checks (before any data is read), the checkpoint's kind, the saved config, seeds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldmodels.common.device import resolve_device
from worldmodels.common.resume import ResumeError, ResumePoint, open_run
from worldmodels.common.scaffold import config_yaml as scaffold_config_yaml
from worldmodels.common.scaffold import run_path


@dataclass
class FitStart:
    """Where a fit runs and what it resumes from."""

    path: Path
    """The run directory (not created yet: a failed start leaves nothing behind)."""
    point: ResumePoint | None
    """The checkpoint a resume continues from; None for a new run."""
    ckpt: dict[str, Any] | None
    """That checkpoint's contents (``point.state``)."""
    config_yaml: str
    """The config as YAML, saved as ``config.yaml`` and in every checkpoint."""
    device: torch.device
    """Where the model trains (``run.device``)."""


def start_fit(cfg: Any, config_class: type, safe_keys: tuple[str, ...], run_dir: str | Path | None, resume: bool,
              resume_from: ResumePoint | None, config_yaml: str, ckpt_key: str, command: str) -> FitStart:
    """Resolve ``run.device``, check the run directory and a resume (:func:`worldmodels.common.resume.open_run`),
    refuse a checkpoint of another trainer, and seed torch and numpy from ``run.seed`` with ``run.torch_threads``.

    :param ckpt_key: the key this trainer's checkpoints hold its model under (``"vae"``, ``"world_model"``, ...).
    :param command: the trainer's command, for the error (``"fit-vae"``).
    :raises ResumeError: a resume that changes settings, or of another trainer's checkpoint.
    """
    device = resolve_device(cfg.run.device, key="run.device")
    # Refuse a used run directory or a resume that changes settings before reading any data; the folder itself is
    # made once the data has loaded, so a failed start leaves nothing behind.
    path, point = open_run(run_path(run_dir, cfg.run.runs_dir, cfg.run.name), resume, config_class, cfg, safe_keys,
                           resume_from)
    ckpt = point.state if point is not None else None
    if ckpt is not None and ckpt_key not in ckpt:
        raise ResumeError(f"--resume {path}: its checkpoint is not a {command} checkpoint.")
    torch.set_num_threads(cfg.run.torch_threads)
    torch.manual_seed(cfg.run.seed)
    np.random.seed(cfg.run.seed)
    return FitStart(path, point, ckpt, config_yaml or scaffold_config_yaml(cfg), device)
