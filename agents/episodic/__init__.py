"""Model-Free Episodic Control (Blundell et al. 2016): a per-action k-NN memory of the best returns seen."""

from agents.episodic.memory import (
    EVICTIONS,
    PAPER_CAPACITY,
    ActionBuffer,
    EpisodicMemory,
    Estimate,
    discounted_returns,
)

__all__ = ["EVICTIONS", "PAPER_CAPACITY", "ActionBuffer", "EpisodicMemory", "Estimate", "discounted_returns"]
