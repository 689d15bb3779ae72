"""Every setting of a Model-Free Episodic Control run (Blundell et al. 2016, "Model-Free Episodic Control", arXiv
1606.04460): the shared ``env``, ``runtime`` and ``run`` sections, the ``representation`` that turns frames into
keys, and the ``episodic`` memory and policy, selected by ``algo: mfec``.

The paper's Atari settings (Sec. 4) are the ``mfec_atari`` preset: 84x84 grey frames, action repeat 4, keys of 64
dimensions, k = 11 neighbours, buffers of 1M keys per action, epsilon-greedy with epsilon 0.005, undiscounted
returns (gamma = 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agents.runtime.config import EnvConfig, RunConfig, RuntimeConfig, validate_common
from worldmodels.common.checks import Choice, require_positive, require_range


class RepresentationChoice(Choice):
    random_projection = "random_projection"
    gaussian_vae = "gaussian_vae"
    binary_vae = "binary_vae"


class IndexChoice(Choice):
    flat = "flat"
    ivf = "ivf"
    numpy = "numpy"


class EvictionChoice(Choice):
    lru_updated = "lru_updated"
    lru_used = "lru_used"


@dataclass
class RepresentationConfig:
    kind: RepresentationChoice = RepresentationChoice.random_projection
    """What a key is (Sec. 3): "random_projection" (a Gaussian random matrix times the newest frame), "gaussian_vae"
    (the posterior means and log-stds of a Gaussian VAE, Appendix A) or "binary_vae" (the posterior of our binary
    VAE's latents); the VAEs need ``path``."""
    dim: int = 64
    """Key length D (the paper: 64 for random projections; a Gaussian VAE of 32 latents gives 64)."""
    path: str | None = None
    """Checkpoint of the trained VAE (``gaussian_vae``, ``binary_vae``); unused by ``random_projection``."""


@dataclass
class EpisodicConfig:
    capacity: int = 1_000_000
    """Keys per action buffer (the paper: 1M). Arrays are allocated up front but the OS commits pages only as
    they are written, so a run uses memory in proportion to what it stores: D x 4 bytes per key plus ~200 bytes of
    bookkeeping."""
    k: int = 11
    """Nearest neighbours averaged for a key not stored exactly (the paper: 11)."""
    gamma: float = 1.0
    """Discount of the returns written into the memory (the paper: 1, undiscounted to the episode's end)."""
    epsilon: float = 0.005
    """Epsilon-greedy exploration in training (the paper: 0.005)."""
    eval_epsilon: float = 0.005
    """Epsilon of evaluation games."""
    index: IndexChoice = IndexChoice.flat
    """k-NN index (``reverie bench episodic`` measures them): "flat" (exact; fastest to ~100k keys per action),
    "ivf" (approximate, faiss IVF-Flat: at 1M keys per action 17x faster queries than flat), "numpy" (reference)."""
    nprobe: int = 32
    """Cells an "ivf" query scans (more: slower, closer to exact)."""
    eviction: EvictionChoice = EvictionChoice.lru_updated
    """Which entry a full buffer drops: the least recently "lru_updated" (written) or "lru_used" (written or used
    by a query). The paper says both; updated keeps queries read-only, so actors' copies stay identical."""
    try_untried_first: bool = True
    """An action whose buffer is empty is estimated at +inf, so every action is tried once at the start; False
    estimates it at 0 and leaves first tries to epsilon."""
    clip_rewards: bool = False
    """Write clipped rewards' returns (the env's rewards under the Nature preset) instead of the raw score changes;
    the paper writes raw returns."""


@dataclass
class MFECConfig:
    algo: str = "mfec"
    """Algorithm: selects this schema (``reverie train`` reads it first)."""
    env: EnvConfig = field(default_factory=EnvConfig)
    representation: RepresentationConfig = field(default_factory=RepresentationConfig)
    episodic: EpisodicConfig = field(default_factory=EpisodicConfig)
    runtime: RuntimeConfig = field(default_factory=lambda: RuntimeConfig(chunk_steps=8, max_ahead_chunks=1,
                                                                         publish_every_updates=1))
    run: RunConfig = field(default_factory=lambda: RunConfig(name="mfec"))


def validate(cfg: MFECConfig) -> None:
    """Checks OmegaConf's type checks cannot make.

    :raises ValueError: naming the key, the bad value and what would be valid.
    """
    if cfg.algo != "mfec":
        raise ValueError(f"algo={cfg.algo!r}: this is MFEC's config; select another algorithm's schema with algo.")
    validate_common(cfg.env, cfg.runtime, cfg.run)
    e, r = cfg.episodic, cfg.representation
    require_positive({"episodic.capacity": e.capacity, "episodic.k": e.k, "episodic.nprobe": e.nprobe,
                      "representation.dim": r.dim})
    require_range("episodic.gamma", e.gamma, 0.0, 1.0)
    require_range("episodic.epsilon", e.epsilon, 0.0, 1.0)
    require_range("episodic.eval_epsilon", e.eval_epsilon, 0.0, 1.0)
    if str(r.kind) != "random_projection" and not r.path:
        raise ValueError(f"representation.kind={r.kind} needs representation.path, the trained VAE's checkpoint "
                         "(or use representation.kind=random_projection).")
