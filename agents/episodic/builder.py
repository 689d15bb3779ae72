"""Model-Free Episodic Control on the runtime seam: the :class:`agents.runtime.algorithm.Builder` the generic loop
trains with. Actors build ``make_mfec_parts`` (vector env, epsilon-greedy policy on the memory, episode adder);
the driver holds an :class:`MFECLearner`, whose memory is the run's "weights"."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.episodic.actor import make_mfec_parts
from agents.episodic.config import MFECConfig, validate
from agents.episodic.evaluate import evaluate_policy
from agents.episodic.learning import MFECLearner
from agents.runtime.algorithm import ActorSetup, EnvSpec, EvalResult


class MFECBuilder:
    """MFEC (Blundell et al. 2016) with a random-projection, Gaussian-VAE or binary-VAE representation."""

    name = "mfec"
    config_class = MFECConfig

    def validate(self, cfg: MFECConfig) -> None:
        validate(cfg)

    def prepare(self, cfg: MFECConfig) -> MFECConfig:
        """A VAE representation's checkpoint (a file, or a run directory: its newest valid checkpoint) must exist
        before actors start. The run uses a copy of ``cfg`` whose path is absolute, so Ray actors (another working
        directory) find it, and where a run directory becomes the checkpoint it holds now, so every actor embeds
        with the same weights even if that run writes newer ones meanwhile (name a checkpoint file to pin it across
        resumes too)."""
        path = cfg.representation.path
        if not path:
            return cfg
        resolved = Path(path).expanduser().resolve()
        if not resolved.exists():
            raise FileNotFoundError(f"representation.path={path!r}: no such file or run directory; train the "
                                    "representation first, or use representation.kind=random_projection")
        if resolved.is_dir():
            from worldmodels.common.checkpoint import load_latest

            resolved = load_latest(resolved)[0].resolve()
        return dataclasses.replace(cfg, representation=dataclasses.replace(cfg.representation, path=str(resolved)))

    def actor_setup(self, cfg: MFECConfig, distributed: bool) -> ActorSetup:
        return ActorSetup(make_mfec_parts)

    def make_learner(self, cfg: MFECConfig, spec: EnvSpec, device: torch.device) -> MFECLearner:
        return MFECLearner(spec, cfg)  # no tensors: the memory lives on the CPU whatever the device

    def evaluate(self, cfg: MFECConfig, weights: Any, episodes: int, seed: int,
                 record: list[np.ndarray] | None = None) -> EvalResult:
        return evaluate_policy(cfg, weights, episodes, seed=seed, record=record)

    def checkpoint_weights(self, ckpt: dict[str, Any]) -> Any:
        return MFECLearner.checkpoint_weights(ckpt)


BUILDER = MFECBuilder()
