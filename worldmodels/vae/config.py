"""Every setting of a binary-VAE run, as one typed tree of dataclasses (loaded by ``launch.config``).

Presets live in ``configs/vae_*.yaml``; ``key=value`` overrides apply on top. Units: ``*_frames`` count
dataset frames (binarised frames the model trains on), not emulator frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from worldmodels.common.checks import Choice, require_nonnegative, require_positive, require_range
from worldmodels.common.device import DeviceChoice


class DecoderChoice(Choice):
    pixelcnn = "pixelcnn"
    factorised = "factorised"


class EstimatorChoice(Choice):
    nvil = "nvil"
    vimco = "vimco"
    reinforce = "reinforce"
    relaxed = "relaxed"


class RelaxedKLChoice(Choice):
    concrete = "concrete"
    analytic = "analytic"


@dataclass
class ModelConfig:
    """Sizes of :class:`worldmodels.vae.network.VAENetwork`."""

    image_size: int = 42
    """Side of the binarised frame (42 or 84; see :mod:`worldmodels.data.binarize`)."""
    latent_dim: int = 64
    """Binary latent units z (the prior and posterior are autoregressive over them)."""
    encoder_channels: int = 32
    """Channels of the first stride-2 convolution of the encoder of x (the second has twice as many)."""
    encoder_hidden: int = 256
    """Width of the encoding of x that conditions the posterior MADE."""
    made_hidden: int = 256
    """Width of each hidden masked layer of the prior and posterior MADEs."""
    made_layers: int = 1
    """Hidden masked layers of each MADE."""
    decoder: DecoderChoice = DecoderChoice.pixelcnn
    """"pixelcnn": autoregressive Bernoulli p(x | z) (masked convolutions, each pixel sees the pixels above and
    to its left, and z); "factorised": independent Bernoulli pixels given z (faster, weaker)."""
    decoder_channels: int = 16
    """Feature planes of the decoder's masked convolutions."""
    decoder_layers: int = 2
    """Residual 3x3 type-B masked convolution layers after the first (type-A) layer."""
    decoder_kernel: int = 5
    """Side of the first, type-A masked convolution."""
    cond_channels: int = 16
    """Channels of the spatial map computed from z that conditions every decoder layer."""


@dataclass
class EstimatorConfig:
    """How the gradient of the bound with respect to the posterior q(z|x) is estimated."""

    name: EstimatorChoice = EstimatorChoice.nvil
    """"nvil" (Mnih & Gregor 2014), "vimco" (Mnih & Rezende 2016), "reinforce" (no control variate; with
    samples > 1 on the multi-sample bound) or "relaxed" (binary Concrete / Gumbel-sigmoid, pathwise)."""
    samples: int = 1
    """Posterior samples per frame: the K of the multi-sample bound for vimco (>= 2) and reinforce."""
    nvil_alpha: float = 0.8
    """NVIL: decay of the running mean and variance of the learning signal (the paper's alpha = 0.8)."""
    nvil_hidden: int = 100
    """NVIL: hidden tanh units of the input-dependent baseline C(x) (the paper used 100)."""
    nvil_normalise: bool = True
    """NVIL: divide the learning signal by max(1, running standard deviation)."""
    temperature: float = 1.0
    """relaxed: starting temperature tau_0 of the binary Concrete relaxation."""
    temperature_min: float = 0.5
    """relaxed: floor of the annealed temperature, tau = max(temperature_min, temperature exp(-anneal_rate step))
    (Jang et al. 2017); must not exceed ``temperature``."""
    anneal_rate: float = 0.0
    """relaxed: r of the annealing schedule, per update (0: the temperature stays at ``temperature``)."""
    relaxed_kl: RelaxedKLChoice = RelaxedKLChoice.concrete
    """relaxed: "concrete" (relaxed log-densities of Maddison et al. 2017, App. C, in logit space: a KL gradient
    that does not vanish when the posterior saturates) or "analytic" (Bernoulli KL of each unit's conditional
    given the relaxed prefix: tends to the ELBO's KL as tau -> 0, but lets the posterior saturate at lr 1e-3)."""
    straight_through: bool = False
    """relaxed: feed the hard sample 1[a + L > 0] forward and differentiate the relaxed one (analytic KL only)."""


@dataclass
class OptimConfig:
    lr: float = 3e-4
    """Adam learning rate of the model (prior, posterior, decoder, encoder)."""
    baseline_lr: float = 3e-3
    """Adam learning rate of NVIL's input-dependent baseline."""
    batch_size: int = 32
    """Frames per update."""
    max_grad_norm: float = 0.0
    """Global gradient-norm clip (0 disables, the default): Adam's per-coordinate scaling already bounds each
    step, and one global clip would let the posterior's huge score-function gradients shrink the decoder's."""
    kl_warmup_steps: int = 0
    """KL warm-up: the KL weight rises linearly from 0 to 1 over this many updates (0: weight 1 throughout;
    Bowman et al. 2016, Sonderby et al. 2016). Every estimator uses the weighted objective."""
    free_bits: float = 0.0
    """Free bits (Kingma et al. 2016): nats per group of ``free_bits_group`` latent units whose KL is not
    penalised (0: off). Must be below the group's maximum KL, free_bits_group * log 2."""
    free_bits_group: int = 1
    """Latent units per free-bits group (contiguous; must divide ``model.latent_dim``)."""


@dataclass
class DataConfig:
    path: str = "data/pong"
    """Dataset folder written by `reverie collect` (manifest.json + shards)."""
    threshold: int = 24
    """Binarisation: grey levels a pixel must differ from the per-pixel background mode to be on."""
    skip_corrupt: bool = False
    """Skip (with a warning naming it) a shard whose checksum does not match, instead of stopping."""


#: The settings a resumed ``fit-vae`` run may change: how long it trains, how often it logs, checkpoints and
#: evaluates, and whether corrupt shards are skipped (see :mod:`worldmodels.common.resume`).
RESUME_SAFE_KEYS = ("run.total_frames", "run.max_seconds", "run.checkpoint_every_frames", "run.keep_checkpoints",
                    "run.log_every_frames", "run.grad_var_every_frames", "run.grad_var_repeats", "run.eval_frames",
                    "run.active_threshold", "run.progress", "run.name", "run.runs_dir", "data.skip_corrupt")


@dataclass
class RunConfig:
    name: str = "vae"
    """Run name: the run directory is runs_dir/name unless --run-dir is given."""
    runs_dir: str = "runs"
    """Parent folder of run directories."""
    seed: int = 0
    """Seeds torch, numpy and the data order."""
    total_frames: int = 1_000_000
    """Training frames (dataset frames consumed, counting repeats over epochs) to train for."""
    max_seconds: float = 0.0
    """Training budget in CPU seconds of the training steps (0: none; evaluation and logging are not counted);
    training stops at whichever limit comes first. CPU time, not wall-clock, so that runs sharing the cores get
    the same compute."""
    checkpoint_every_frames: int = 100_000
    """Frames between atomic checkpoints (a last one is always written at the end or on Ctrl-C)."""
    keep_checkpoints: int = 3
    """Checkpoints kept on disk (oldest deleted first)."""
    log_every_frames: int = 5_000
    """Frames between scalar summaries (ELBO, KL, frames/s)."""
    grad_var_every_frames: int = 50_000
    """Frames between measurements of the estimator's gradient variance (0: never)."""
    grad_var_repeats: int = 8
    """Independent gradient estimates on one batch used to measure the variance."""
    eval_frames: int = 256
    """Held-out frames for the ELBO and IWAE bounds logged at each checkpoint (0: none)."""
    active_threshold: float = 0.01
    """A latent is active when the variance over held-out frames of its posterior mean (along the greedy code, the
    ``binary_vae`` key) exceeds this (Burda et al. 2015, Sec. 5.2): ``eval/active_units`` at every checkpoint, and
    a warning at the end of a fit with fewer than half of its latents active."""
    torch_threads: int = 1
    """Torch threads (one per process on a shared machine)."""
    progress: bool = True
    """Show a progress bar with frames/s."""
    device: DeviceChoice = DeviceChoice.auto
    """Where the model trains: "auto" (CUDA if torch sees a GPU, else the CPU), "cpu" or "cuda" (an error where
    there is none). Checkpoints load on the CPU either way; `reverie evaluate-vae` scores on the CPU."""


@dataclass
class VAEFitConfig:
    """The whole `reverie fit-vae` config."""

    model: ModelConfig = field(default_factory=ModelConfig)
    estimator: EstimatorConfig = field(default_factory=EstimatorConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    run: RunConfig = field(default_factory=RunConfig)


def validate(cfg: VAEFitConfig) -> None:
    """Check the values OmegaConf's type checks cannot: ranges and combinations (string choices are Enums, which
    OmegaConf checks while loading; they are checked here again for configs built in Python).

    :raises ValueError: naming the key, the bad value and what would be valid.
    """
    m, e, o = cfg.model, cfg.estimator, cfg.optim
    for key, value, kind in (("model.decoder", m.decoder, DecoderChoice), ("estimator.name", e.name, EstimatorChoice),
                             ("estimator.relaxed_kl", e.relaxed_kl, RelaxedKLChoice),
                             ("run.device", cfg.run.device, DeviceChoice)):
        if str(value) not in kind.__members__:  # a config built in Python (OmegaConf refuses these while loading)
            raise ValueError(f"{key}={value!r}: choose one of {', '.join(kind.__members__)}.")
    if m.image_size not in (42, 84):
        raise ValueError(f"model.image_size={m.image_size} is not supported: use 42 or 84.")
    if e.name == "vimco" and e.samples < 2:
        raise ValueError(f"estimator.samples={e.samples}: VIMCO's leave-one-out baseline needs at least 2.")
    if e.name in ("nvil", "relaxed") and e.samples != 1:
        raise ValueError(f"estimator.samples={e.samples}: {e.name} uses one sample per frame; set it to 1.")
    if m.decoder_kernel % 2 == 0 or m.decoder_kernel < 3:
        raise ValueError(f"model.decoder_kernel={m.decoder_kernel} must be an odd number >= 3.")
    require_positive({
        "model.latent_dim": m.latent_dim, "model.encoder_channels": m.encoder_channels,
        "model.encoder_hidden": m.encoder_hidden, "model.made_hidden": m.made_hidden,
        "model.made_layers": m.made_layers, "model.decoder_channels": m.decoder_channels,
        "model.cond_channels": m.cond_channels, "estimator.samples": e.samples,
        "estimator.temperature": e.temperature, "optim.lr": o.lr, "optim.batch_size": o.batch_size,
        "optim.free_bits_group": o.free_bits_group, "run.total_frames": cfg.run.total_frames,
        "run.checkpoint_every_frames": cfg.run.checkpoint_every_frames,
        "run.log_every_frames": cfg.run.log_every_frames, "run.keep_checkpoints": cfg.run.keep_checkpoints,
        "run.torch_threads": cfg.run.torch_threads, "run.grad_var_repeats": cfg.run.grad_var_repeats})
    require_nonnegative({"model.decoder_layers": m.decoder_layers, "estimator.anneal_rate": e.anneal_rate,
                         "optim.kl_warmup_steps": o.kl_warmup_steps, "optim.free_bits": o.free_bits,
                         "run.active_threshold": cfg.run.active_threshold})
    if e.relaxed_kl == "concrete" and e.straight_through:
        raise ValueError("estimator.relaxed_kl=concrete needs the relaxed sample: "
                         "set estimator.straight_through=false.")
    require_range("estimator.temperature_min", e.temperature_min, 0.0, e.temperature, low_open=True,
                  hint="at most estimator.temperature")
    if m.latent_dim % o.free_bits_group:
        raise ValueError(f"optim.free_bits_group={o.free_bits_group} must be a positive divisor of "
                         f"model.latent_dim={m.latent_dim}.")
    if o.free_bits >= o.free_bits_group * math.log(2):
        raise ValueError(f"optim.free_bits={o.free_bits} nats is not below the most a group of "
                         f"{o.free_bits_group} binary units can hold ({o.free_bits_group * math.log(2):.3f} nats): "
                         f"its KL would never be penalised. Lower it or raise optim.free_bits_group.")
    require_range("estimator.nvil_alpha", e.nvil_alpha, 0.0, 1.0, high_open=True)
