"""STRAW / STRAWe (Vezhnevets et al. 2016): a macro-action planning core for the actor-critic learner.

- :mod:`agents.straw.attention`: DRAW's Gaussian filterbank on the time axis (read, write) and the plan shift.
- :mod:`agents.straw.core`: :class:`~agents.straw.core.STRAWCore`, the action and commitment plans, the gate.
"""

from agents.straw.core import STRAWCore, STRAWUnroll

__all__ = ["STRAWCore", "STRAWUnroll"]
