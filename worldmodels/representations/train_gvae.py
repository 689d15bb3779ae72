"""`reverie fit-gvae`: train the Gaussian VAE of Model-Free Episodic Control (Blundell et al. 2016, App. A) on a
trajectory dataset, for the ``gaussian_vae`` representation.

Reads top to bottom, as ``fit-vae`` (:mod:`worldmodels.vae.train`) does and with its machinery: the train split
of a dataset written by `reverie collect` (frames of a random policy, as in the paper) is streamed in shuffled
batches (:class:`worldmodels.data.TrajectoryDataset`), scaled to [0, 1], and each batch is one optimiser step on
the negative ELBO (RMSProp in the paper). Every ``run.checkpoint_every_steps`` the held-out split is scored
(the negative ELBO with one fixed-seed posterior sample per frame), reconstructions and prior samples are
written as PNG beside TensorBoard images, and a checkpoint is written atomically. ``--resume RUN_DIR``
continues from the newest checkpoint (weights, optimiser, counters, RNG; the data order is re-drawn from the
seed and the step count). The frame around the loop (run directory, ``config.yaml``, TensorBoard, progress bar
with frames/s, Ctrl-C / SIGTERM -> last checkpoint, cleanup) is :class:`worldmodels.common.scaffold.RunScaffold`.

Presets: ``configs/gvae_paper.yaml`` (the paper's RMSProp, lr 1e-5, batch 100, 400k steps) and
``configs/gvae_cpu.yaml`` (about 30 CPU-minutes on one core).

Logged (all nats are positive "negative ELBO" nats, per frame unless the tag says per pixel):
``worldmodel/elbo_nats``, ``worldmodel/nats_per_pixel``, ``worldmodel/nll_nats`` (-log p(x | z)),
``worldmodel/kl`` (KL(q || p), nats), ``worldmodel/decoder_std`` (mean per-pixel std, [0, 1] scale),
``losses/loss`` and ``losses/grad_norm`` per log window; ``charts/frames_per_s`` (wall clock) and
``charts/cpu_frames_per_s`` (frames per CPU second of the training steps, the unit of ``run.max_seconds``);
``eval/elbo_nats``, ``eval/nats_per_pixel``, ``eval/kl`` and the images ``eval/reconstructions`` and
``eval/samples`` at every checkpoint.
"""

from __future__ import annotations

import io
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from worldmodels.common.atomic import atomic_write
from worldmodels.common.checkpoint import rng_state, save_checkpoint, set_rng_state
from worldmodels.common.checks import Choice, require_nonnegative, require_positive, require_range
from worldmodels.common.device import DeviceChoice, to_device
from worldmodels.common.fit import start_fit
from worldmodels.common.resume import ResumePoint
from worldmodels.common.scaffold import Rates, RunScaffold
from worldmodels.representations.gaussian_vae import IMAGE_SIZE, GaussianVAE, GaussianVAEConfig, validate_model
from worldmodels.representations.usage import (
    ACTIVE_THRESHOLD,
    collapse_message,
    usage_of,
    usage_of_gaussian_posteriors,
)

if TYPE_CHECKING:
    from worldmodels.data.reader import OnCorrupt

log = logging.getLogger(__name__)

PIXELS = IMAGE_SIZE * IMAGE_SIZE


class OptimizerChoice(Choice):
    rmsprop = "rmsprop"
    adam = "adam"


@dataclass
class GVAEOptimConfig:
    name: OptimizerChoice = OptimizerChoice.rmsprop
    """"rmsprop" (the paper's) or "adam"."""
    lr: float = 1e-5
    """Learning rate (the paper: 1e-5 with RMSProp)."""
    batch_size: int = 100
    """Frames per update (the paper: 100)."""
    rmsprop_alpha: float = 0.99
    """RMSProp: decay of the running mean of squared gradients (torch's default; the paper does not say)."""
    eps: float = 1e-8
    """The optimiser's epsilon (torch's default for both)."""
    max_grad_norm: float = 0.0
    """Global gradient-norm clip (0: none, as in the paper)."""
    kl_warmup_steps: int = 0
    """Updates over which the KL term's weight rises linearly from 0 to 1 (0: weight 1 throughout, the paper's
    ELBO). Ours: a common remedy for posterior collapse (see ``posterior_spread``), which the 30-minute CPU fits
    show on Ms. Pac-Man and Q*bert, where frames differ in a few sprites. Measured there, 2000 warm-up updates did
    not prevent it (README, MFEC section). Scores and checkpoints report the true ELBO either way."""
    free_bits: float = 0.0
    """Nats per latent below which its KL is not penalised: the objective's KL is ``sum_j max(free_bits,
    mean_batch KL_j)`` (Kingma et al. 2016, "Improved Variational Inference with Inverse Autoregressive Flow",
    App. C, with one group per latent). 0: the paper's ELBO. Ours, against posterior collapse: a latent may carry
    up to ``free_bits`` nats about the frame at no cost, so the encoder is not pushed to the prior before the
    decoder has learned to use it. Scores and checkpoints report the true ELBO either way."""


@dataclass
class GVAEDataConfig:
    path: str = "data/pong"
    """Dataset folder written by `reverie collect` (84x84 luminance frames, the default there)."""
    skip_corrupt: bool = False
    """Skip (with a warning naming it) a shard whose checksum does not match, instead of stopping."""


@dataclass
class GVAERunConfig:
    name: str = "gvae"
    """Run name: the run directory is runs_dir/name unless --run-dir is given."""
    runs_dir: str = "runs"
    """Parent folder of run directories."""
    seed: int = 0
    """Seeds the initial weights, the posterior samples and the data order."""
    total_steps: int = 400_000
    """Updates to train for (the paper: 400k)."""
    max_seconds: float = 0.0
    """Training budget in CPU seconds of the training steps (0: none; evaluation and logging are not counted);
    training stops at whichever limit comes first."""
    checkpoint_every_steps: int = 10_000
    """Updates between atomic checkpoints, each with a held-out score and PNGs (a last one is always written)."""
    keep_checkpoints: int = 3
    """Checkpoints kept on disk (oldest deleted first)."""
    log_every_steps: int = 100
    """Updates between scalar summaries."""
    eval_frames: int = 256
    """Held-out frames scored at every checkpoint and at the end (0: none; evenly spaced over the split)."""
    image_frames: int = 8
    """Held-out frames shown with their reconstructions in ``reconstructions.png`` (and as many prior samples,
    twice over, in ``samples.png``); 0: no images."""
    torch_threads: int = 1
    """Torch threads (one per process on a shared machine)."""
    active_threshold: float = 0.01
    """A latent is active when the variance over held-out frames of its posterior mean exceeds this (Burda et al.
    2015, Sec. 5.2); ``eval/active_units`` counts them at every checkpoint, and a fit that ends with fewer than half
    of its latents active warns that it has collapsed (:mod:`worldmodels.representations.usage`)."""
    progress: bool = True
    """Show a progress bar with frames/s."""
    device: DeviceChoice = DeviceChoice.auto
    """"auto" (CUDA if torch sees a GPU, else the CPU), "cpu" or "cuda". Checkpoints load on the CPU either way."""


@dataclass
class GVAEFitConfig:
    """The whole `reverie fit-gvae` config."""

    model: GaussianVAEConfig = field(default_factory=GaussianVAEConfig)
    optim: GVAEOptimConfig = field(default_factory=GVAEOptimConfig)
    data: GVAEDataConfig = field(default_factory=GVAEDataConfig)
    run: GVAERunConfig = field(default_factory=GVAERunConfig)


#: What a resumed run may change: how long it trains, how often it logs, checkpoints and evaluates.
RESUME_SAFE_KEYS = ("run.total_steps", "run.max_seconds", "run.checkpoint_every_steps", "run.keep_checkpoints",
                    "run.log_every_steps", "run.eval_frames", "run.image_frames", "run.active_threshold",
                    "run.progress", "run.name",
                    "run.runs_dir", "data.skip_corrupt")

TB = {"neg_elbo": "worldmodel/elbo_nats", "nll": "worldmodel/nll_nats", "kl": "worldmodel/kl",
      "std": "worldmodel/decoder_std", "loss": "losses/loss", "grad_norm": "losses/grad_norm",
      "kl_weight": "losses/kl_weight", "kl_objective": "losses/kl_objective"}


def validate(cfg: GVAEFitConfig) -> None:
    """Check ranges and combinations OmegaConf's type checks cannot.

    :raises ValueError: naming the key, the bad value and what would be valid.
    """
    o, r = cfg.optim, cfg.run
    for key, value, kind in (("optim.name", o.name, OptimizerChoice), ("run.device", r.device, DeviceChoice)):
        if str(value) not in kind.__members__:  # a config built in Python (OmegaConf refuses these while loading)
            raise ValueError(f"{key}={value!r}: choose one of {', '.join(kind.__members__)}.")
    validate_model(cfg.model)
    require_positive({"optim.lr": o.lr, "optim.batch_size": o.batch_size, "optim.eps": o.eps,
                      "run.total_steps": r.total_steps, "run.checkpoint_every_steps": r.checkpoint_every_steps,
                      "run.keep_checkpoints": r.keep_checkpoints, "run.log_every_steps": r.log_every_steps,
                      "run.torch_threads": r.torch_threads})
    require_nonnegative({"optim.max_grad_norm": o.max_grad_norm, "optim.kl_warmup_steps": o.kl_warmup_steps,
                         "optim.free_bits": o.free_bits, "run.active_threshold": r.active_threshold,
                         "run.max_seconds": r.max_seconds,
                         "run.eval_frames": r.eval_frames, "run.image_frames": r.image_frames})
    require_range("optim.rmsprop_alpha", o.rmsprop_alpha, 0.0, 1.0, high_open=True)


def make_optimizer(model: torch.nn.Module, o: GVAEOptimConfig) -> torch.optim.Optimizer:
    """The optimiser ``optim.name`` names over every parameter of ``model``."""
    if o.name == OptimizerChoice.rmsprop:
        return torch.optim.RMSprop(model.parameters(), lr=o.lr, alpha=o.rmsprop_alpha, eps=o.eps)
    return torch.optim.Adam(model.parameters(), lr=o.lr, eps=o.eps)


@torch.no_grad()
def heldout_elbo(model: GaussianVAE, frames: np.ndarray, seed: int = 0, batch: int = 100,
                 active_threshold: float = ACTIVE_THRESHOLD) -> dict[str, Any]:
    """Mean negative ELBO, reconstruction NLL and KL of uint8 ``[N, 84, 84]`` frames, nats per frame (and the ELBO
    per pixel), with one posterior sample per frame from a generator seeded with ``seed``: repeatable, so scores
    at successive checkpoints differ by the weights only.

    Also ``posterior_spread``: the standard deviation across the frames of each latent's posterior mean, averaged
    over latents, beside ``posterior_std``, the posterior's own std averaged likewise. A spread far below the
    posterior's std means the encoder gives every frame nearly the same key (posterior collapse): MFEC's
    nearest neighbours are then noise.

    And, with two frames or more, the latent usage of :func:`worldmodels.representations.usage.gaussian_usage`:
    ``active_units`` of ``latents``, ``collapsed``, ``kl_per_dim_sorted`` and the rest of its summary."""
    device = next(model.parameters()).device
    gen = torch.Generator(device).manual_seed(seed)
    was_training = model.training
    model.eval()
    sums = {"neg_elbo": 0.0, "nll": 0.0, "kl": 0.0}
    means, log_stds = [], []
    with torch.no_grad():
        for b in range(0, len(frames), batch):
            x = GaussianVAE.scale(frames[b: b + batch]).to(device)
            out = model.loss(x, generator=gen)
            for k in sums:
                sums[k] += float(out[k].double().sum())
            mean, log_std = model.encode(x)
            means.append(mean.double().cpu())
            log_stds.append(log_std.double().cpu())
    model.train(was_training)
    n = max(1, len(frames))
    spread = float(torch.cat(means).std(0).mean()) if len(frames) > 1 else 0.0
    posterior_std = float(torch.exp(torch.cat(log_stds)).mean()) if len(frames) else 0.0
    scores: dict[str, Any] = {"elbo_nats": sums["neg_elbo"] / n, "nats_per_pixel": sums["neg_elbo"] / (n * PIXELS),
                              "nll_nats": sums["nll"] / n, "kl": sums["kl"] / n, "posterior_spread": spread,
                              "posterior_std": posterior_std}
    if len(frames) > 1:  # the posteriors just computed, not a second pass of the encoder
        scores.update(usage_of_gaussian_posteriors(torch.cat(means).numpy(), torch.cat(log_stds).numpy(),
                                                   active_threshold).summary())
    return scores


def free_bits_kl(kl_per_dim: torch.Tensor, free_bits: float) -> torch.Tensor:
    """The objective's KL under free bits: ``sum_j max(free_bits, mean_b KL_bj)`` (a scalar), from float32
    ``[B, latents]`` per-frame, per-latent KLs; with ``free_bits`` 0 it is the batch mean of the summed KL."""
    per_dim = kl_per_dim.mean(0)
    if free_bits > 0:
        per_dim = torch.clamp(per_dim, min=free_bits)
    return per_dim.sum()


COLLAPSE_FIX = ("Refit with a remedy: model.mean_frame=true (the decoder starts at the data's per-pixel mean; on "
                "Ms. Pac-Man it took a 6-CPU-minute fit from 0 to 32 of 32 latents active), optim.free_bits=0.5 (nats "
                "per latent), optim.kl_warmup_steps, or a longer run.max_seconds; `reverie key-quality DATA --key "
                "gaussian_vae=RUN` scores the keys against random projections.")

MEAN_FRAME_SAMPLE = 8192
"""Training frames (evenly spaced over the split) that ``model.mean_frame=true`` takes its per-pixel mean and std
from."""


def spread_sample(data: Any, n: int) -> np.ndarray:
    """About ``n`` frames (uint8 ``[m, H, W]``, ``m <= n``) evenly spaced over every shard of a
    :class:`worldmodels.data.TrajectoryDataset` split (its first epoch's shard order): one pass that keeps one shard
    and the sample in memory, never the whole split."""
    stride = max(1, math.ceil(data.num_frames / n))
    parts = [arrays["frames"][::stride].copy() for arrays in data.iter_shards()]  # a copy: a view keeps its shard
    return np.concatenate(parts)[:n]


def grey_grid(frames: np.ndarray, columns: int = 8, pad: int = 2) -> np.ndarray:
    """uint8 ``[n, H, W]`` grey frames -> one uint8 image ``[rows (H + pad), columns (W + pad)]`` on mid grey."""
    n, h, w = frames.shape
    rows = max(1, math.ceil(n / columns))
    img = np.full((rows * (h + pad), columns * (w + pad)), 128, dtype=np.uint8)
    for i, f in enumerate(frames):
        r, c = divmod(i, columns)
        top, left = r * (h + pad) + pad // 2, c * (w + pad) + pad // 2
        img[top: top + h, left: left + w] = f
    return img


def write_png(path: Path, image: np.ndarray) -> None:
    """Write a uint8 grey image as PNG, atomically (a reader never sees half a file)."""
    import imageio.v3 as iio

    buf = io.BytesIO()
    iio.imwrite(buf, image, extension=".png")
    atomic_write(path, buf.getvalue())


def fit_gvae(cfg: GVAEFitConfig, run_dir: str | Path | None = None, resume: bool = False,
             config_yaml: str = "", resume_from: ResumePoint | None = None) -> dict[str, Any]:
    """Train a :class:`GaussianVAE` as ``cfg`` says; returns a summary (run dir, checkpoint, steps, frames,
    ``frames_per_s`` by wall clock, ``cpu_frames_per_s`` and ``steps_per_cpu_s`` of the training steps, the last
    held-out scores, the PNG paths).

    :param run_dir: where to write (default ``runs_dir/name``); with ``resume``, the run or one of its checkpoints.
    :param resume: continue that run from its newest valid checkpoint with its saved settings (only
        :data:`RESUME_SAFE_KEYS` may differ).
    :param config_yaml: the config as YAML, saved as ``config.yaml`` and in every checkpoint (default: ``cfg``'s).
    :param resume_from: the checkpoint already found and loaded (by the CLI).
    :raises RunExistsError: (a FileExistsError) a new run whose directory already holds files.
    :raises DatasetError: missing or corrupt data, or frames that are not 84x84 luminance.
    :raises ValueError: bad settings; :class:`ResumeError` (a ValueError), a resumed run whose settings differ.
    :raises FloatingPointError: the loss became NaN or infinite (the weights before that step are checkpointed).
    """
    from worldmodels.data import DatasetError, TrajectoryDataset
    from worldmodels.vae.evaluate import heldout_frames

    validate(cfg)
    fit = start_fit(cfg, GVAEFitConfig, RESUME_SAFE_KEYS, run_dir, resume, resume_from, config_yaml, "gvae", "fit-gvae")
    path, ckpt, config_yaml, device = fit.path, fit.ckpt, fit.config_yaml, fit.device
    on_corrupt: OnCorrupt = "skip" if cfg.data.skip_corrupt else "error"

    if ckpt is not None:
        model = GaussianVAE.from_export(ckpt["gvae"])
        set_rng_state(ckpt["rng"])
        steps, frames, elapsed = int(ckpt["steps"]), int(ckpt["frames"]), float(ckpt.get("train_seconds", 0.0))
        from worldmodels.common.resume import refuse_shorter_total

        refuse_shorter_total(fit.point, GVAEFitConfig, "run.total_steps", cfg.run.total_steps, steps, "steps")
    else:
        model = GaussianVAE(cfg.model, seed=cfg.run.seed)
        steps, frames, elapsed = 0, 0, 0.0
    model.to(device).train()
    optimizer = make_optimizer(model, cfg.optim)
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])  # moments go to the device of their parameters
    train = TrajectoryDataset(cfg.data.path, "train", shuffle=True, seed=cfg.run.seed + steps, epochs=None,
                              on_corrupt=on_corrupt, skip_hint="data.skip_corrupt=true")
    shape = tuple(train.manifest.get("frame_shape") or ())
    if shape != (IMAGE_SIZE, IMAGE_SIZE):
        raise DatasetError(f"{cfg.data.path} holds frames of shape {shape}; the Gaussian VAE models 84x84 luminance "
                           f"frames: collect them with `reverie collect GAME --frame-size 84x84` (no --rgb).")
    # Every shard checked now, before the run directory exists, as fit-vae's binarizer reads them: a bad one is
    # refused up front (or, with data.skip_corrupt=true, named in a warning), not when the shuffled reader reaches it.
    train.verify()
    if ckpt is None and cfg.model.mean_frame:  # a resumed model holds its statistics in its weights
        model.set_frame_statistics(spread_sample(train, MEAN_FRAME_SAMPLE))
    # No held-out frame left is an error naming run.eval_frames=0, as in fit-vae: a run that silently stops scoring
    # held-out data would be mistaken for one that does.
    heldout = heldout_frames(cfg.data.path, cfg.run.eval_frames, cfg.data.skip_corrupt,
                             skip_hint="data.skip_corrupt=true", eval_off="run.eval_frames=0") \
        if cfg.run.eval_frames else None
    batch_size = cfg.optim.batch_size
    images = cfg.run.image_frames

    with RunScaffold(path, resume=ckpt is not None, config_yaml=config_yaml, total=cfg.run.total_steps * batch_size,
                     initial=steps * batch_size, progress=cfg.run.progress, desc="fit-gvae", command="fit-gvae",
                     resumed_from=fit.point.checkpoint if fit.point else None) as run:
        writer = run.writer
        shown = heldout[:images] if heldout is not None else None  # set from the first batch if there is no split

        def checkpoint(keep: int = cfg.run.keep_checkpoints) -> Path:
            # The latest held-out latent usage travels with the weights: the gaussian_vae representation warns
            # when a collapsed model is named as MFEC's key source.
            payload = {"gvae": model.export(), "optimizer": optimizer.state_dict(), "steps": steps,
                       "frames": frames, "train_seconds": elapsed, "config": config_yaml, "rng": rng_state(),
                       "data": str(cfg.data.path), "usage": usage_of(last_eval)}
            return save_checkpoint(path / "checkpoints", steps, payload, keep=keep)

        def evaluate() -> dict[str, Any]:
            out: dict[str, Any] = {}
            if heldout is not None:
                out = heldout_elbo(model, heldout, seed=cfg.run.seed, active_threshold=cfg.run.active_threshold)
                for k in ("elbo_nats", "nats_per_pixel", "kl", "posterior_spread", "posterior_std", "active_units"):
                    if k in out:
                        writer.add_scalar(f"eval/{k}", out[k], steps)
                if "kl_per_dim_sorted" in out:
                    writer.add_histogram("eval/kl_per_dim", np.asarray(out["kl_per_dim_sorted"]), steps)
            if images and shown is not None and len(shown):
                model.eval()
                recon = grey_grid(np.concatenate([shown, model.reconstruct(shown)]), columns=len(shown))
                samples = grey_grid(model.sample(2 * images, seed=cfg.run.seed), columns=images)
                model.train()
                out["reconstructions_png"] = str(path / "reconstructions.png")
                out["samples_png"] = str(path / "samples.png")
                write_png(path / "reconstructions.png", recon)
                write_png(path / "samples.png", samples)
                writer.add_image("eval/reconstructions", recon[None], steps)
                writer.add_image("eval/samples", samples[None], steps)
            return out

        run.on_interrupt(checkpoint)  # Ctrl-C / SIGTERM: a last checkpoint, then the interrupt goes on
        run.on_error(lambda: checkpoint(cfg.run.keep_checkpoints + 1))  # any other error: keep older ones
        batches = train.frame_batches(batch_size, drop_last=True)
        next_log = steps + cfg.run.log_every_steps
        next_ckpt = steps + cfg.run.checkpoint_every_steps
        window: dict[str, list[float]] = {}
        log_frames, log_time = frames, elapsed
        start_frames, started, rates = frames, time.perf_counter(), Rates(frames)
        last_eval: dict[str, Any] = {}
        saved_at, ckpt_path = -1, Path()
        clip = cfg.optim.max_grad_norm if cfg.optim.max_grad_norm > 0 else math.inf
        while steps < cfg.run.total_steps and not (cfg.run.max_seconds and elapsed >= cfg.run.max_seconds):
            run.check_interrupt()  # a SIGINT / SIGTERM stops the run here, between updates
            batch = next(batches)
            if shown is None:
                shown = batch[:images]
            t0 = time.process_time()
            out = model.loss(to_device(batch, device).to(torch.float32).unsqueeze(1) / 255.0)
            warmup = cfg.optim.kl_warmup_steps
            kl_weight = min(1.0, steps / warmup) if warmup else 1.0
            kl_objective = free_bits_kl(out.pop("kl_per_dim"), cfg.optim.free_bits)
            out["kl_objective"] = kl_objective
            loss = out["nll"].mean() + kl_weight * kl_objective
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the negative ELBO is {loss.item()} at step {steps}: lower optim.lr "
                                         f"(now {cfg.optim.lr:g}) or set optim.max_grad_norm; the last checkpoint "
                                         f"holds the weights before this step.")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            # CPU time of the training steps only (not evaluation or logging): runs that share the cores get the
            # same compute for the same budget.
            elapsed += time.process_time() - t0
            steps += 1
            frames += len(batch)
            for k, v in out.items():
                window.setdefault(k, []).append(float(v.detach().mean()))
            window.setdefault("loss", []).append(float(loss.detach()))
            window.setdefault("kl_weight", []).append(kl_weight)
            window.setdefault("grad_norm", []).append(float(norm))
            if steps >= next_log:
                cpu_fps = (frames - log_frames) / max(1e-9, elapsed - log_time)
                wall_fps, _, _ = rates.measure(frames)
                for k, vs in window.items():
                    writer.add_scalar(TB[k], float(np.mean(vs)), steps)
                writer.add_scalar("worldmodel/nats_per_pixel", float(np.mean(window["neg_elbo"])) / PIXELS, steps)
                writer.add_scalar("charts/frames_per_s", wall_fps, steps)
                writer.add_scalar("charts/cpu_frames_per_s", cpu_fps, steps)
                run.advance(frames, elbo_nats=f"{np.mean(window['neg_elbo']):.0f}", cpu_fps=f"{cpu_fps:.0f}")
                window, log_frames, log_time = {}, frames, elapsed
                next_log = steps + cfg.run.log_every_steps
            else:
                run.advance(frames)
            if steps >= next_ckpt:
                last_eval = evaluate() or last_eval
                ckpt_path, saved_at = checkpoint(), steps
                next_ckpt = steps + cfg.run.checkpoint_every_steps
        wall = time.perf_counter() - started
        if saved_at != steps:  # else the loop has just scored and saved this very step
            last_eval = evaluate() or last_eval
            ckpt_path = checkpoint()
    if "elbo_nats" in last_eval:
        log.info("fit-gvae: held-out negative ELBO %.1f nats per frame (%.4f per pixel) after %d steps; %s of %s "
                 "latents active", last_eval["elbo_nats"], last_eval["nats_per_pixel"], steps,
                 last_eval.get("active_units", "?"), last_eval.get("latents", "?"))
    warning = collapse_message(usage_of(last_eval), f"The Gaussian VAE of {path}", COLLAPSE_FIX)
    if warning:
        log.warning("fit-gvae: %s", warning)
        last_eval["collapse_warning"] = warning
    return {"run_dir": str(path), "checkpoint": str(ckpt_path), "steps": steps, "frames": frames,
            "train_seconds": round(elapsed, 1),
            "frames_per_s": round((frames - start_frames) / max(wall, 1e-9), 1),
            "cpu_frames_per_s": round(frames / max(elapsed, 1e-9), 1) if frames else 0.0,
            "steps_per_cpu_s": round(steps / max(elapsed, 1e-9), 2) if steps else 0.0, **last_eval}


def evaluate_gvae(run: str | Path, data: str | Path, frames: int = 256, seed: int = 0,
                  skip_corrupt: bool = False, active_threshold: float = ACTIVE_THRESHOLD,
                  out_dir: str | Path | None = None) -> dict[str, Any]:
    """`reverie evaluate-vae` on a fit-gvae run: the held-out ELBO, posterior spread and latent usage (active units,
    KL per dimension) of its newest checkpoint on ``frames`` evenly spaced held-out frames of ``data``, and
    ``reconstructions.png`` (held-out frames above their reconstructions) in ``out_dir`` (default: the run's).

    :raises CheckpointError: no readable checkpoint. :raises ValueError: a checkpoint of another kind.
    :raises DatasetError: no usable held-out frames.
    """
    from worldmodels.vae.evaluate import heldout_frames, open_for_evaluation

    ckpt_path, ckpt, run_dir, out = open_for_evaluation(run, "gvae", "fit-gvae", out_dir)
    model = GaussianVAE.from_export(ckpt["gvae"])
    x = heldout_frames(data, frames, skip_corrupt, skip_hint="--skip-corrupt")
    report: dict[str, Any] = {"checkpoint": str(ckpt_path), "data": str(data), "model": "gaussian_vae",
                              "steps_trained": int(ckpt["steps"]), "heldout_frames": len(x),
                              **heldout_elbo(model, x, seed=seed, active_threshold=active_threshold)}
    shown = x[:8]
    report["reconstructions_png"] = str(out / "reconstructions.png")
    write_png(out / "reconstructions.png", grey_grid(np.concatenate([shown, model.reconstruct(shown)]),
                                                     columns=max(1, len(shown))))
    warning = collapse_message(usage_of(report), f"The Gaussian VAE of {run_dir}", COLLAPSE_FIX)
    if warning:
        report["collapse_warning"] = warning
    return report
