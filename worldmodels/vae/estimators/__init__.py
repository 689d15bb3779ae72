"""Gradient estimators for binary latents, one small module each (see their docstrings for the papers).

==============  ===========================================================  =========================
name            estimator                                                    objective
==============  ===========================================================  =========================
``reinforce``   score function, no control variate (the floor)              ELBO, or K-sample bound
``nvil``        score function, learned baseline C(x) + running mean/var     ELBO
``vimco``       score function, leave-one-out baseline over K samples        K-sample bound
``relaxed``     binary Concrete / Gumbel-sigmoid, annealed (pathwise, biased) relaxed ELBO
==============  ===========================================================  =========================

Every estimator applies the same KL warm-up and free bits (:class:`~.base.KLPenalty`, from ``optim.*``).
"""

from __future__ import annotations

from worldmodels.vae.config import EstimatorConfig
from worldmodels.vae.estimators.base import Estimator, KLPenalty, Samples, bernoulli_kl, draw, multi_sample_bound
from worldmodels.vae.estimators.nvil import NVIL
from worldmodels.vae.estimators.reinforce import Reinforce
from worldmodels.vae.estimators.relaxed import Concrete, annealed_temperature
from worldmodels.vae.estimators.vimco import VIMCO, leave_one_out_signal


def make_estimator(cfg: EstimatorConfig, pixels: int, penalty: KLPenalty | None = None) -> Estimator:
    """Build the estimator ``cfg.name`` names; ``pixels`` is S * S (NVIL's baseline input size).

    :param penalty: KL warm-up and free bits (default: none, the plain ELBO / K-sample bound).
    :raises ValueError: unknown name.
    """
    est: Estimator
    if cfg.name == "nvil":
        est = NVIL(pixels, cfg.nvil_hidden, cfg.nvil_alpha, cfg.nvil_normalise)
    elif cfg.name == "vimco":
        est = VIMCO(cfg.samples)
    elif cfg.name == "reinforce":
        est = Reinforce(cfg.samples)
    elif cfg.name == "relaxed":
        est = Concrete(cfg.temperature, cfg.temperature_min, cfg.anneal_rate, cfg.relaxed_kl, cfg.straight_through)
    else:
        raise ValueError(f"estimator.name={cfg.name!r}: choose one of nvil, vimco, reinforce, relaxed.")
    est.penalty = penalty or KLPenalty()
    return est


__all__ = ["NVIL", "VIMCO", "Concrete", "Estimator", "KLPenalty", "Reinforce", "Samples", "annealed_temperature",
           "bernoulli_kl", "draw", "leave_one_out_signal", "make_estimator", "multi_sample_bound"]
