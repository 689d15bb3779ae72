"""Gradient estimators for binary latents, one small module each (see their docstrings for the papers).

==============  ===========================================================  =========================
name            estimator                                                    objective
==============  ===========================================================  =========================
``reinforce``   score function, no control variate (the floor)              ELBO, or K-sample bound
``nvil``        score function, learned baseline C(x) + running mean/var     ELBO
``vimco``       score function, leave-one-out baseline over K samples        K-sample bound
``relaxed``     straight-through Gumbel-sigmoid (pathwise, biased)           ELBO
==============  ===========================================================  =========================
"""

from __future__ import annotations

from worldmodels.vae.config import EstimatorConfig
from worldmodels.vae.estimators.base import Estimator, Samples, draw, multi_sample_bound
from worldmodels.vae.estimators.nvil import NVIL
from worldmodels.vae.estimators.reinforce import Reinforce
from worldmodels.vae.estimators.relaxed import StraightThroughGumbel
from worldmodels.vae.estimators.vimco import VIMCO, leave_one_out_signal


def make_estimator(cfg: EstimatorConfig, pixels: int) -> Estimator:
    """Build the estimator ``cfg.name`` names; ``pixels`` is S * S (NVIL's baseline input size).

    :raises ValueError: unknown name.
    """
    if cfg.name == "nvil":
        return NVIL(pixels, cfg.nvil_hidden, cfg.nvil_alpha, cfg.nvil_normalise)
    if cfg.name == "vimco":
        return VIMCO(cfg.samples)
    if cfg.name == "reinforce":
        return Reinforce(cfg.samples)
    if cfg.name == "relaxed":
        return StraightThroughGumbel(cfg.temperature)
    raise ValueError(f"estimator.name={cfg.name!r}: choose one of nvil, vimco, reinforce, relaxed.")


__all__ = ["NVIL", "VIMCO", "Estimator", "Reinforce", "Samples", "StraightThroughGumbel", "draw",
           "leave_one_out_signal", "make_estimator", "multi_sample_bound"]
