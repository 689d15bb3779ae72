"""Every setting of a `reverie fit-world-model` run, as one typed tree of dataclasses (loaded by ``launch.config``).

Presets: ``configs/video_paper_ff.yaml`` and ``video_paper_rnn.yaml`` (Oh et al. 2015's architectures and
training schedule, Sec. 3 and App. B), ``video_cpu_ff.yaml`` / ``video_cpu_rnn.yaml`` (small residual
networks that train in minutes on a CPU core), ``video_tiny.yaml`` (tests). ``key=value`` overrides apply
on top.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from worldmodels.common.checks import Choice, require_nonnegative, require_positive
from worldmodels.common.device import DeviceChoice


class ArchitectureChoice(Choice):
    feedforward = "feedforward"
    recurrent = "recurrent"


class BodyChoice(Choice):
    paper = "paper"
    residual = "residual"


@dataclass
class ModelConfig:
    """Sizes of :class:`worldmodels.video.model.VideoPredictor`."""

    architecture: ArchitectureChoice = ArchitectureChoice.feedforward
    """"feedforward" (Sec. 3.1: the last ``context`` frames stacked as channels) or "recurrent" (Sec. 3.2: a
    per-frame encoder and an LSTM that carries the past)."""
    body: BodyChoice = BodyChoice.residual
    """"paper": the paper's dense bottleneck (strided convolutions, a ``hidden``-unit encoding, ``factors``
    factors, mirrored deconvolutions, predicts the frame); "residual": a small spatial network (stride-2
    stem, residual blocks with the same factored multiplicative action transform at every location,
    predicts the change from the last frame). See :mod:`worldmodels.video.networks`."""
    context: int = 4
    """Real frames given before the first prediction (the paper's k = 4)."""
    channels: int = 1
    """Colour channels per frame: 1 (luminance, what `reverie collect` stores) or 3 (RGB, the paper's input)."""
    height: int = 84
    """Frame height in pixels (the paper: 210)."""
    width: int = 84
    """Frame width in pixels (the paper: 160)."""
    # -- body "paper" (Sec. 3, App. B.1)
    conv_channels: list[int] = field(default_factory=lambda: [64, 128, 128, 128])
    """Encoder convolutions' output channels (the decoder mirrors them)."""
    conv_kernels: list[int] = field(default_factory=lambda: [8, 6, 6, 4])
    """Encoder convolutions' kernel sizes (all stride 2)."""
    conv_padding: list[int] = field(default_factory=lambda: [0, 1, 1, 0])
    """Encoder convolutions' zero padding."""
    hidden: int = 2048
    """Width of the encoding h (and of the recurrent model's LSTM)."""
    factors: int = 2048
    """Factors of the multiplicative action transform (Sec. 3.3)."""
    # -- body "residual"
    stem_channels: int = 16
    """Channels of the first stride-2 convolution (half resolution)."""
    res_channels: int = 32
    """Channels of the quarter-resolution residual blocks (and of the ConvLSTM of the recurrent model)."""
    res_blocks: int = 2
    """Residual blocks, each followed by a factored multiplicative action transform."""
    res_factors: int = 32
    """Factors of each per-location action transform."""
    # -- reward / game-over head
    reward_head: bool = True
    """Predict the sign of the reward and the game-over probability of each step from the transformed features
    (a small head on detached features, so it never changes the frame predictions); used by
    :class:`envs.ImaginedEnv`."""


@dataclass
class PhaseConfig:
    """One stage of the training curriculum (Sec. 3.4: 1-, then 3-, then 5-step objectives)."""

    steps: int = 1
    """Prediction steps K of the objective; steps 2..K take the model's own predictions as input."""
    updates: int = 1000
    """Gradient updates of this stage (it ends at this count or at ``cpu_minutes``, whichever comes first)."""
    lr: float = 1e-4
    """Adam learning rate."""
    batch_size: int = 32
    """Windows per update."""
    cpu_minutes: float = 0.0
    """CPU-time budget of this stage in minutes (0: none); CPU time of the whole training process, so runs
    that share cores get the same compute as runs alone."""


@dataclass
class OptimConfig:
    phases: list[PhaseConfig] = field(default_factory=lambda: [
        PhaseConfig(steps=1, updates=1_500_000, lr=1e-4, batch_size=32),
        PhaseConfig(steps=3, updates=1_000_000, lr=1e-5, batch_size=8),
        PhaseConfig(steps=5, updates=1_000_000, lr=1e-5, batch_size=8),
    ])
    """The curriculum, in order (default: the paper's Adam schedule, App. B.2)."""
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    """Adam's second-moment decay (the paper: 0.95)."""
    max_grad_norm: float = 10.0
    """Global gradient-norm clip (0 disables); long feedback rollouts produce occasional huge gradients."""
    moving_loss_weight: float = 0.0
    """Weight of the moving-pixel squared error added to each step's whole-frame MSE (0: the paper's objective).
    Ours: the error where the real frame changed since the frame before (where objects are and were), so a
    model cannot score well by keeping the background and letting small moving objects fade; see
    :func:`worldmodels.video.model.moving_pixel_mse`."""
    reward_loss_weight: float = 1.0
    """Weight of the reward/game-over head's cross-entropy (its features are detached, so it trains only the head)."""


@dataclass
class DataConfig:
    path: str = "data/pong"
    """Dataset folder written by `reverie collect` (manifest.json + shards)."""
    skip_corrupt: bool = False
    """Skip (with a warning naming it) a shard whose checksum does not match, instead of stopping."""


#: The settings a resumed ``fit-world-model`` run may change: the length of each curriculum stage and stages
#: appended after the saved ones (``+``), how often it logs, checkpoints and evaluates, and whether corrupt shards
#: are skipped (see :mod:`worldmodels.common.resume`).
RESUME_SAFE_KEYS = ("optim.phases.*.updates", "optim.phases.*.cpu_minutes", "+optim.phases.*",
                    "run.checkpoint_every_updates", "run.keep_checkpoints", "run.log_every_updates",
                    "run.eval_every_updates", "run.eval_rollouts", "run.eval_horizon", "run.progress", "run.name",
                    "run.runs_dir", "data.skip_corrupt")


@dataclass
class RunConfig:
    name: str = "world_model"
    """Run name: the run directory is runs_dir/name unless --run-dir is given."""
    runs_dir: str = "runs"
    seed: int = 0
    """Seeds torch, numpy and the data order."""
    checkpoint_every_updates: int = 2000
    """Updates between atomic checkpoints (a last one is always written at the end or on Ctrl-C)."""
    keep_checkpoints: int = 3
    log_every_updates: int = 100
    """Updates between scalar summaries (losses, frames/s)."""
    eval_every_updates: int = 2000
    """Updates between held-out evaluations (per-step MSE against copy-last) and sample predictions in
    TensorBoard (0: never)."""
    eval_rollouts: int = 32
    """Held-out rollouts in each evaluation."""
    eval_horizon: int = 10
    """Steps of each held-out evaluation rollout."""
    torch_threads: int = 1
    """Torch threads (one per process on a shared machine)."""
    progress: bool = True
    """Show a progress bar with frames/s."""
    device: DeviceChoice = DeviceChoice.auto
    """Where the model trains: "auto" (CUDA if torch sees a GPU, else the CPU), "cpu" or "cuda" (an error where
    there is none). Checkpoints load on the CPU either way, and imagination (`reverie imagine`, ImaginedEnv, informed
    exploration) runs the model on the CPU."""


@dataclass
class VideoFitConfig:
    """The whole `reverie fit-world-model` config."""

    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    run: RunConfig = field(default_factory=RunConfig)


def validate(cfg: VideoFitConfig) -> None:
    """Check the values OmegaConf's type checks cannot: ranges, sizes and combinations (string choices are Enums,
    which OmegaConf checks while loading; they are checked here again for configs built in Python).

    :raises ValueError: naming the key, the bad value and what would be valid.
    """
    m = cfg.model
    for key, value, kind in (("model.architecture", m.architecture, ArchitectureChoice),
                             ("model.body", m.body, BodyChoice), ("run.device", cfg.run.device, DeviceChoice)):
        if str(value) not in kind.__members__:  # a config built in Python (OmegaConf refuses these while loading)
            raise ValueError(f"{key}={value!r}: choose one of {', '.join(kind.__members__)}.")
    if m.channels not in (1, 3):
        raise ValueError(f"model.channels={m.channels}: use 1 (luminance) or 3 (RGB).")
    n = len(m.conv_channels)
    if n == 0 or len(m.conv_kernels) != n or len(m.conv_padding) != n:
        raise ValueError(f"model.conv_channels, conv_kernels and conv_padding need the same non-zero length; got "
                         f"{n}, {len(m.conv_kernels)}, {len(m.conv_padding)}.")
    if m.body == "residual" and (m.height % 4 or m.width % 4):
        raise ValueError(f"model.height={m.height} and model.width={m.width} must be multiples of 4 for the residual "
                         f"body (two stride-2 stages).")
    positive = {"model.context": m.context, "model.height": m.height, "model.width": m.width,
                "model.hidden": m.hidden, "model.factors": m.factors, "model.stem_channels": m.stem_channels,
                "model.res_channels": m.res_channels, "model.res_factors": m.res_factors,
                "run.checkpoint_every_updates": cfg.run.checkpoint_every_updates,
                "run.log_every_updates": cfg.run.log_every_updates, "run.keep_checkpoints": cfg.run.keep_checkpoints,
                "run.torch_threads": cfg.run.torch_threads, "run.eval_rollouts": cfg.run.eval_rollouts,
                "run.eval_horizon": cfg.run.eval_horizon}
    positive |= {f"model.conv_channels[{i}]": c for i, c in enumerate(m.conv_channels)}
    positive |= {f"model.conv_kernels[{i}]": c for i, c in enumerate(m.conv_kernels)}
    require_positive(positive)
    require_nonnegative({"model.res_blocks": m.res_blocks, "run.eval_every_updates": cfg.run.eval_every_updates,
                         "optim.max_grad_norm": cfg.optim.max_grad_norm,
                         "optim.moving_loss_weight": cfg.optim.moving_loss_weight})
    if not cfg.optim.phases:
        raise ValueError("optim.phases is empty: give at least one curriculum stage (steps, updates, lr, batch_size).")
    for i, p in enumerate(cfg.optim.phases):
        require_positive({f"optim.phases[{i}].{key}": getattr(p, key) for key in ("steps", "updates", "lr",
                                                                                  "batch_size")})
        require_nonnegative({f"optim.phases[{i}].cpu_minutes": p.cpu_minutes})
