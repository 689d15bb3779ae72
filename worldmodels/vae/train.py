"""`reverie fit-vae`: train a :class:`BinaryVAE` on a trajectory dataset.

Reads top to bottom: load the train split as a stream of frames, fit the binariser on it (per-pixel background,
:mod:`worldmodels.data.binarize`), then repeat ``BinaryVAE.train_step`` on binarised batches on ``run.device``,
logging to TensorBoard, measuring the estimator's gradient variance, scoring held-out frames at every
checkpoint, and writing checkpoints atomically. ``--resume RUN_DIR`` continues from the newest checkpoint
(weights, optimiser, estimator state, binariser, counters, RNG); the data order is re-drawn from the seed and
the step count. The frame around the loop (run directory, ``config.yaml``, TensorBoard, progress bar,
Ctrl-C / SIGTERM -> last checkpoint, cleanup) is :class:`worldmodels.common.scaffold.RunScaffold`.

Logged: ``worldmodel/elbo_nats`` (the negative ELBO: positive nats, like ``eval/elbo_nats``, the JSON summary and
the progress bar), ``worldmodel/multi_sample_nats`` (VIMCO's bound, negated too), ``worldmodel/kl``,
``worldmodel/log_lik`` (log p(x|z), a log-probability: negative), ``losses/surrogate``,
``losses/grad_norm`` (and the estimator's own scalars) per log window; ``charts/frames_per_s`` (wall clock) and
``charts/cpu_frames_per_s`` (frames per CPU second of the training steps alone, the unit of ``run.max_seconds``);
``losses/grad_var`` and ``losses/grad_snr``; ``eval/elbo_nats`` and ``eval/iwae10_nats`` at every checkpoint.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from worldmodels.common.checkpoint import rng_state, save_checkpoint, set_rng_state
from worldmodels.common.fit import start_fit
from worldmodels.common.resume import ResumePoint, refuse_shorter_total
from worldmodels.common.scaffold import Rates, RunScaffold
from worldmodels.representations.usage import binary_usage, collapse_message, usage_of
from worldmodels.vae.config import RESUME_SAFE_KEYS, VAEFitConfig, validate
from worldmodels.vae.evaluate import heldout_frames
from worldmodels.vae.model import BinaryVAE

if TYPE_CHECKING:
    from worldmodels.data.reader import OnCorrupt

log = logging.getLogger(__name__)

COLLAPSE_FIX = ("Refit with a remedy: optim.free_bits (nats per group of optim.free_bits_group latents) or "
                "optim.kl_warmup_steps; `reverie key-quality DATA --key binary_vae=RUN` scores the keys against "
                "random projections.")

TB = {"elbo": "worldmodel/elbo_nats", "kl": "worldmodel/kl", "log_lik": "worldmodel/log_lik",
      "bound": "worldmodel/multi_sample_nats", "loss": "losses/surrogate", "grad_norm": "losses/grad_norm",
      "baseline": "losses/nvil_baseline"}
# Bounds on log p(x) are logged negated, as positive nats (upper bounds on -log p(x)): the convention of the
# README, evaluate-vae, the eval/ tags and the JSON summary, so a training curve and a held-out one can be compared.
NEGATED = frozenset({"elbo", "bound"})




def fit_vae(cfg: VAEFitConfig, run_dir: str | Path | None = None, resume: bool = False,
            config_yaml: str = "", resume_from: ResumePoint | None = None) -> dict[str, Any]:
    """Train a :class:`BinaryVAE` as ``cfg`` says; returns a summary (run dir, checkpoint, frames, updates,
    ``frames_per_s`` by wall clock, ``cpu_frames_per_s`` per CPU second of training, last held-out bounds).

    :param run_dir: where to write (default ``runs_dir/name``); with ``resume``, the run or one of its checkpoints.
    :param resume: continue that run from its newest valid checkpoint with its saved settings (only
        :data:`worldmodels.vae.config.RESUME_SAFE_KEYS` may differ; see :mod:`worldmodels.common.resume`).
    :param config_yaml: the config as YAML, saved as ``config.yaml`` and in every checkpoint (default: ``cfg``'s).
    :param resume_from: the checkpoint already found and loaded (by the CLI).
    :raises RunExistsError: (a FileExistsError) a new run whose directory already holds files.
    :raises CheckpointError: ``resume`` without a usable checkpoint.
    :raises DatasetError: missing or corrupt data.
    :raises ValueError: bad settings (``run.device=cuda`` without a GPU); :class:`ResumeError` (a ValueError), a
        resumed run whose settings differ.
    """
    from worldmodels.data import Binarizer, TrajectoryDataset

    validate(cfg)
    fit = start_fit(cfg, VAEFitConfig, RESUME_SAFE_KEYS, run_dir, resume, resume_from, config_yaml, "vae", "fit-vae")
    path, ckpt, config_yaml, device = fit.path, fit.ckpt, fit.config_yaml, fit.device
    on_corrupt: OnCorrupt = "skip" if cfg.data.skip_corrupt else "error"

    if ckpt is not None:
        vae = BinaryVAE.from_state_dict(ckpt["vae"])
        set_rng_state(ckpt["rng"])
        frames, elapsed = int(ckpt["frames"]), float(ckpt.get("train_seconds", 0.0))
        refuse_shorter_total(fit.point, VAEFitConfig, "run.total_frames", cfg.run.total_frames, frames)
    else:
        fit_ds = TrajectoryDataset(cfg.data.path, "train", on_corrupt=on_corrupt)
        binarizer = Binarizer.fit(fit_ds.frame_batches(4096), size=cfg.model.image_size, threshold=cfg.data.threshold)
        vae = BinaryVAE(cfg.model, cfg.estimator, cfg.optim, seed=cfg.run.seed, binarizer=binarizer)
        frames, elapsed = 0, 0.0
    vae.to(device)
    assert vae.binarizer is not None
    binarize = vae.binarizer
    train = TrajectoryDataset(cfg.data.path, "train", shuffle=True, seed=cfg.run.seed + vae.steps, epochs=None,
                              on_corrupt=on_corrupt)
    if ckpt is not None:  # a new run's binarizer read every shard above; a resumed one checks them here, up front
        train.verify()
    # No held-out frame left (none collected, or all skipped as corrupt) is an error naming run.eval_frames=0,
    # as in fit-world-model: a run that silently stops scoring held-out data would be mistaken for one that does.
    heldout = binarize(heldout_frames(cfg.data.path, cfg.run.eval_frames, cfg.data.skip_corrupt,
                                      skip_hint="data.skip_corrupt=true", eval_off="run.eval_frames=0")) \
        if cfg.run.eval_frames else None

    with RunScaffold(path, resume=ckpt is not None, config_yaml=config_yaml, total=cfg.run.total_frames,
                     initial=frames,
                     progress=cfg.run.progress, desc=f"fit-vae {cfg.estimator.name}",
                     command="fit-vae", resumed_from=fit.point.checkpoint if fit.point else None) as run:
        writer = run.writer

        def checkpoint(keep: int = cfg.run.keep_checkpoints) -> Path:
            # The latest held-out latent usage travels with the weights: the binary_vae representation warns when
            # a collapsed model is named as MFEC's key source.
            payload = {"vae": vae.state_dict(), "frames": frames, "train_seconds": elapsed, "config": config_yaml,
                       "rng": rng_state(), "data": str(cfg.data.path), "usage": usage_of(last_eval)}
            return save_checkpoint(path / "checkpoints", frames, payload, keep=keep)

        def evaluate() -> dict[str, Any]:
            if heldout is None:
                return {}
            b = vae.bounds(heldout, (1, 10), seed=cfg.run.seed)
            out: dict[str, Any] = {"elbo_nats": float(-b[1].mean()), "iwae10_nats": float(-b[10].mean())}
            if len(heldout) > 1:
                usage = binary_usage(vae, heldout, seed=cfg.run.seed, threshold=cfg.run.active_threshold)
                out.update(usage.summary())
                writer.add_scalar("eval/active_units", usage.active, frames)
                writer.add_histogram("eval/kl_per_dim", usage.kl_per_dim, frames)
            for k in ("elbo_nats", "iwae10_nats"):
                writer.add_scalar(f"eval/{k}", out[k], frames)
            return out

        run.on_interrupt(checkpoint)  # Ctrl-C / SIGTERM: a last checkpoint, then the interrupt goes on
        run.on_error(lambda: checkpoint(cfg.run.keep_checkpoints + 1))  # any other error: keep older ones
        batches = train.frame_batches(cfg.optim.batch_size, drop_last=True)
        next_log = frames + cfg.run.log_every_frames
        next_ckpt = frames + cfg.run.checkpoint_every_frames
        next_var = frames + cfg.run.grad_var_every_frames if cfg.run.grad_var_every_frames else math.inf
        window: dict[str, list[float]] = {}
        log_frames, log_time = frames, elapsed
        start_frames, started, rates = frames, time.perf_counter(), Rates(frames)
        last_eval: dict[str, Any] = {}
        while frames < cfg.run.total_frames and not (cfg.run.max_seconds and elapsed >= cfg.run.max_seconds):
            run.check_interrupt()  # a SIGINT / SIGTERM stops the run here, between updates
            t0 = time.process_time()
            x = binarize(next(batches))
            stats = vae.train_step(x)
            # CPU time of the training steps only (not evaluation or logging): runs that share the cores get
            # the same compute for the same budget, so estimators can be compared on a busy machine.
            elapsed += time.process_time() - t0
            frames += len(x)
            for k, v in stats.items():
                window.setdefault(k, []).append(v)
            if frames >= next_log:
                cpu_fps = (frames - log_frames) / max(1e-9, elapsed - log_time)
                wall_fps, _, _ = rates.measure(frames)
                for k, vs in window.items():
                    sign = -1.0 if k in NEGATED else 1.0
                    writer.add_scalar(TB.get(k, f"worldmodel/{k}"), sign * float(np.mean(vs)), frames)
                writer.add_scalar("charts/frames_per_s", wall_fps, frames)
                writer.add_scalar("charts/cpu_frames_per_s", cpu_fps, frames)
                # Positive nats (the negative ELBO, an upper bound on -log p(x)), as in the JSON, eval/ and README.
                run.advance(frames, elbo_nats=f"{-np.mean(window['elbo']):.1f}", cpu_fps=f"{cpu_fps:.0f}")
                window, log_frames, log_time = {}, frames, elapsed
                next_log = frames + cfg.run.log_every_frames
            else:
                run.advance(frames)
            if frames >= next_var:
                gv = vae.gradient_variance(x, cfg.run.grad_var_repeats)
                writer.add_scalar("losses/grad_var", gv["grad_var"], frames)
                writer.add_scalar("losses/grad_snr", gv["grad_snr"], frames)
                next_var = frames + cfg.run.grad_var_every_frames
            if frames >= next_ckpt:
                last_eval = evaluate()
                checkpoint()
                next_ckpt = frames + cfg.run.checkpoint_every_frames
        wall = time.perf_counter() - started
        last_eval = evaluate() or last_eval  # first, so the last checkpoint holds the final latent usage
        ckpt_path = checkpoint()
    warning = collapse_message(usage_of(last_eval), f"The binary VAE of {path}", COLLAPSE_FIX)
    if warning:
        log.warning("fit-vae: %s", warning)
        last_eval["collapse_warning"] = warning
    return {"run_dir": str(path), "checkpoint": str(ckpt_path), "frames": frames, "updates": vae.steps,
            "train_seconds": round(elapsed, 1), "estimator": str(cfg.estimator.name),
            "frames_per_s": round((frames - start_frames) / max(wall, 1e-9), 1),
            "cpu_frames_per_s": round(frames / max(elapsed, 1e-9), 1) if frames else 0.0, **last_eval}
