"""`reverie fit-world-model`: train a :class:`VideoPredictor` on a trajectory dataset with the paper's curriculum.

Reads top to bottom: load the train split into memory (:class:`worldmodels.data.WindowSampler`; held-out
episodes are never read here except for the periodic evaluation), build the model (the mean training frame
is its input normalisation), then run the curriculum of Oh et al. 2015, Sec. 3.4: stage by stage, K-step
objectives (K = 1, then 3, then 5 in the paper) whose steps 2..K read the model's own predictions, each
stage with its own Adam learning rate and batch size. Every stage ends after its ``updates`` or its
``cpu_minutes`` (CPU time of this process), whichever comes first.

Logged to TensorBoard: ``losses/mse`` (per pixel, [0, 1] scale, averaged over the K steps),
``losses/mse_step<k>``, ``losses/reward_head``, ``charts/frames_per_s`` (predicted frames per second of
wall clock), ``charts/cpu_frames_per_s`` (per CPU second of the updates alone, the unit of the stages'
``cpu_minutes``), ``charts/phase`` and ``charts/steps``; at each evaluation ``eval/mse_step<k>`` and
``eval/copy_last_mse_step<k>`` on fixed held-out windows, and an image ``eval/predictions`` (rows: real,
imagined, absolute error). Checkpoints are atomic and carry the optimiser, the curriculum position and the
RNG state, so ``--resume`` continues where the run stopped (Ctrl-C and SIGTERM write a last one). The model
trains on ``run.device``; the frame around the loop (run directory, ``config.yaml``, TensorBoard, progress bar,
Ctrl-C / SIGTERM -> last checkpoint, cleanup) is :class:`worldmodels.common.scaffold.RunScaffold`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from worldmodels.common.checkpoint import rng_state, save_checkpoint, set_rng_state
from worldmodels.common.device import to_device
from worldmodels.common.fit import start_fit
from worldmodels.common.resume import ResumePoint
from worldmodels.common.scaffold import Rates, RunScaffold
from worldmodels.video.config import RESUME_SAFE_KEYS, VideoFitConfig, validate
from worldmodels.video.model import VideoPredictor

if TYPE_CHECKING:
    from worldmodels.data.reader import OnCorrupt

log = logging.getLogger(__name__)


def heldout_windows(path: str, length: int, count: int, seed: int, skip_corrupt: bool = False
                    ) -> dict[str, np.ndarray]:
    """``count`` held-out windows of ``length`` frames, drawn once with ``seed``.

    :raises DatasetError: no held-out data to evaluate on (no held-out split, a corrupt shard without
        ``skip_corrupt``, every held-out shard skipped as corrupt, or no held-out episode ``length`` frames long),
        naming ``run.eval_every_updates=0`` as a way out. An error, not a warning, as in fit-vae: a run that
        silently never evaluates would be mistaken for one that does.
    """
    from worldmodels.data import DatasetError, WindowSampler

    try:
        sampler = WindowSampler(path, "heldout", length, seed=seed, on_corrupt="skip" if skip_corrupt else "error",
                                skip_hint="data.skip_corrupt=true")
    except DatasetError as err:
        raise DatasetError(f"{err} Or set run.eval_every_updates=0 to train without held-out evaluation.") from err
    return sampler.sample(count)


def prediction_strip(real: np.ndarray, imagined: np.ndarray, steps: int = 8) -> np.ndarray:
    """One grey image: real frames (top row), imagined (middle), absolute error (bottom), ``steps`` columns.

    :param real: uint8 ``[T, H, W]``. :param imagined: uint8 ``[T, H, W]``. :return: uint8 ``[3 H + 4, n (W + 2)]``.
    """
    n = min(steps, len(real))
    err = np.abs(real[:n].astype(np.int16) - imagined[:n].astype(np.int16)).astype(np.uint8)
    rows = [np.concatenate([np.pad(f, ((0, 0), (1, 1)), constant_values=128) for f in r], 1)
            for r in (real[:n], imagined[:n], err)]
    return np.concatenate([np.pad(r, ((1, 1), (0, 0)), constant_values=128) for r in rows], 0)[: 3 * real.shape[1] + 4]


def evaluate(model: VideoPredictor, windows: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per-step MSE ([0, 1] scale) of the model and of copy-last on held-out windows; plus one strip image."""
    k = model.context
    frames, actions = windows["frames"], windows["actions"]
    horizon = frames.shape[1] - k
    was_training = model.training
    model.eval()
    imagined = model.imagine(frames[:, :k], actions[:, k - 1: k - 1 + horizon])
    model.train(was_training)
    real = frames[:, k:].astype(np.float32) / 255.0
    mse = ((imagined.astype(np.float32) / 255.0 - real) ** 2).mean(axis=(0, 2, 3))
    copy = ((frames[:, k - 1: k].astype(np.float32) / 255.0 - real) ** 2).mean(axis=(0, 2, 3))
    return {"mse": mse.tolist(), "copy_last_mse": copy.tolist(),
            "strip": prediction_strip(frames[0, k:], imagined[0])}


def fit_world_model(cfg: VideoFitConfig, run_dir: str | Path | None = None, resume: bool = False,
                    config_yaml: str = "", resume_from: ResumePoint | None = None) -> dict[str, Any]:
    """Train per ``cfg``; returns a summary (run dir, checkpoint, updates, ``frames_per_s`` by wall clock,
    ``cpu_frames_per_s`` per CPU second of the updates, last held-out MSEs).

    :param run_dir: where to write (default ``runs_dir/name``); with ``resume``, the run or one of its checkpoints.
    :param resume: continue that run from its newest valid checkpoint with its saved settings (only
        :data:`worldmodels.video.config.RESUME_SAFE_KEYS` may differ: stages may be lengthened or appended).
    :param config_yaml: the config as YAML, saved as ``config.yaml`` and in every checkpoint (default: ``cfg``'s).
    :param resume_from: the checkpoint already found and loaded (by the CLI).
    :raises RunExistsError: (a FileExistsError) a non-empty run directory without ``resume``.
    :raises ValueError: bad settings (``run.device=cuda`` without a GPU); :class:`ResumeError` (a ValueError), a
        resumed run whose settings differ.
    :raises worldmodels.data.DatasetError: a bad dataset (named).
    """
    from worldmodels.data import DatasetError, WindowSampler

    validate(cfg)
    fit = start_fit(cfg, VideoFitConfig, RESUME_SAFE_KEYS, run_dir, resume, resume_from, config_yaml, "world_model",
                    "fit-world-model")
    path, ckpt, config_yaml, device = fit.path, fit.ckpt, fit.config_yaml, fit.device
    m = cfg.model
    phases = cfg.optim.phases
    on_corrupt: OnCorrupt = "skip" if cfg.data.skip_corrupt else "error"
    sampler = WindowSampler(cfg.data.path, "train", m.context + phases[0].steps, seed=cfg.run.seed,
                            on_corrupt=on_corrupt)
    manifest = sampler.manifest
    shape = sampler.frame_shape
    want = (m.height, m.width) if m.channels == 1 else (m.height, m.width, m.channels)
    if shape != want:
        raise DatasetError(f"{cfg.data.path} holds frames of shape {shape}, the model is built for {want}: set "
                           f"model.height/model.width/model.channels to match the data, or collect matching data.")
    num_actions = int(manifest.get("num_actions", 0))
    if num_actions < 1:
        raise DatasetError(f"{cfg.data.path}/manifest.json has no num_actions; re-collect the dataset.")

    if ckpt is not None:
        model = VideoPredictor.from_state_dict_full(ckpt["world_model"])
        pos = ckpt["curriculum"]
    else:
        model = VideoPredictor(m, num_actions, sampler.mean_frame(), game=str(manifest.get("game", "")))
        pos = {"phase_updates": [], "phase_cpu": [], "updates": 0, "frames": 0, "cpu": 0.0}
    # Per-stage counters, so a resumed run may also lengthen a stage or add stages to its curriculum.
    pos["phase_updates"] += [0] * (len(phases) - len(pos["phase_updates"]))
    pos["phase_cpu"] += [0.0] * (len(phases) - len(pos["phase_cpu"]))

    def unfinished(i: int) -> bool:
        p = phases[i]
        return pos["phase_updates"][i] < p.updates and not (p.cpu_minutes and pos["phase_cpu"][i] >= 60 * p.cpu_minutes)

    def current_phase() -> int:
        return next((i for i in range(len(phases)) if unfinished(i)), len(phases))

    def done_updates() -> int:
        return sum(pos["phase_updates"][: len(phases)])
    model.to(device).train()
    eval_windows = heldout_windows(cfg.data.path, m.context + cfg.run.eval_horizon, cfg.run.eval_rollouts,
                                   seed=cfg.run.seed + 1, skip_corrupt=cfg.data.skip_corrupt) \
        if cfg.run.eval_every_updates else None

    # One Adam for the whole curriculum (each stage only sets its learning rate), so its moments carry over.
    optimizer = torch.optim.Adam(model.parameters(), lr=phases[0].lr,
                                 betas=(cfg.optim.adam_beta1, cfg.optim.adam_beta2))
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])  # moments go to the device of their parameters
        set_rng_state(ckpt["rng"])
        sampler.rng = np.random.default_rng(cfg.run.seed + 7919 * pos["updates"])

    # With CPU-time budgets the number of updates is not known in advance: the bar then counts without a total.
    total_updates = None if any(p.cpu_minutes for p in phases) else sum(p.updates for p in phases)
    with RunScaffold(path, resume=ckpt is not None, config_yaml=config_yaml, total=total_updates,
                     initial=done_updates(),
                     unit="upd", progress=cfg.run.progress, desc="fit-world-model",
                     command="fit-world-model", resumed_from=fit.point.checkpoint if fit.point else None) as run:
        writer = run.writer

        def checkpoint(keep: int = cfg.run.keep_checkpoints) -> Path:
            payload = {"world_model": model.state_dict_full(), "optimizer": optimizer.state_dict(),
                       "curriculum": dict(pos), "rng": rng_state(), "config": config_yaml,
                       "data": str(cfg.data.path)}
            return save_checkpoint(path / "checkpoints", pos["updates"], payload, keep=keep)

        last_eval: dict[str, Any] = {}

        def run_eval() -> None:
            nonlocal last_eval
            if eval_windows is None:
                return
            last_eval = evaluate(model, eval_windows)
            for step, (a, b) in enumerate(zip(last_eval["mse"], last_eval["copy_last_mse"]), start=1):
                writer.add_scalar(f"eval/mse_step{step}", a, pos["updates"])
                writer.add_scalar(f"eval/copy_last_mse_step{step}", b, pos["updates"])
            writer.add_image("eval/predictions", last_eval["strip"][None], pos["updates"])

        run.on_interrupt(checkpoint)  # Ctrl-C / SIGTERM: a last checkpoint, then the interrupt goes on
        run.on_error(lambda: checkpoint(cfg.run.keep_checkpoints + 1))  # any other error: keep older ones
        window: dict[str, list[float]] = {}
        log_frames, log_cpu = pos["frames"], pos["cpu"]
        start_frames, started, rates = pos["frames"], time.perf_counter(), Rates(pos["frames"])
        while (i := current_phase()) < len(phases):
            phase = phases[i]
            sampler.set_length(m.context + phase.steps)
            for group in optimizer.param_groups:
                group["lr"] = phase.lr
            while unfinished(i):
                run.check_interrupt()  # a SIGINT / SIGTERM stops the run here, between updates
                c0 = time.process_time()
                batch = {k: to_device(v, device) for k, v in sampler.sample(phase.batch_size).items()}
                out = model.loss(batch, reward_weight=cfg.optim.reward_loss_weight,
                                 moving_weight=cfg.optim.moving_loss_weight)
                optimizer.zero_grad(set_to_none=True)
                out["loss"].backward()
                if cfg.optim.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.max_grad_norm)
                optimizer.step()
                spent = time.process_time() - c0
                pos["phase_cpu"][i] += spent
                pos["cpu"] += spent
                pos["phase_updates"][i] += 1
                pos["updates"] += 1
                pos["frames"] += phase.batch_size * phase.steps
                window.setdefault("mse", []).append(float(out["mse"].detach()))
                window.setdefault("moving_mse", []).append(float(out["moving_mse"].detach()))
                for step, v in enumerate(out["step_mse"], start=1):
                    window.setdefault(f"mse_step{step}", []).append(v)
                if out["head_loss"] is not None:
                    window.setdefault("reward_head", []).append(float(out["head_loss"].detach()))
                if pos["updates"] % cfg.run.log_every_updates == 0:
                    cpu_fps = (pos["frames"] - log_frames) / max(1e-9, pos["cpu"] - log_cpu)
                    wall_fps, _, _ = rates.measure(pos["frames"])
                    for key, vs in window.items():
                        writer.add_scalar(f"losses/{key}", float(np.mean(vs)), pos["updates"])
                    writer.add_scalar("charts/frames_per_s", wall_fps, pos["updates"])
                    writer.add_scalar("charts/cpu_frames_per_s", cpu_fps, pos["updates"])
                    writer.add_scalar("charts/phase", i, pos["updates"])
                    writer.add_scalar("charts/steps", phase.steps, pos["updates"])
                    run.advance(done_updates(), K=phase.steps, mse=f"{np.mean(window['mse']):.2e}",
                                fps=f"{wall_fps:.0f}", cpu_min=f"{pos['cpu'] / 60:.1f}")
                    window, log_frames, log_cpu = {}, pos["frames"], pos["cpu"]
                else:
                    run.advance(done_updates())
                if cfg.run.eval_every_updates and pos["updates"] % cfg.run.eval_every_updates == 0:
                    run_eval()
                if pos["updates"] % cfg.run.checkpoint_every_updates == 0:
                    checkpoint()
        wall = time.perf_counter() - started
        ckpt_path = checkpoint()
        run_eval()
    summary = {"run_dir": str(path), "checkpoint": str(ckpt_path), "updates": pos["updates"],
               "frames": pos["frames"], "cpu_seconds": round(pos["cpu"], 1),
               "frames_per_s": round((pos["frames"] - start_frames) / max(wall, 1e-9), 1),
               "cpu_frames_per_s": round(pos["frames"] / max(pos["cpu"], 1e-9), 1)}
    if last_eval:
        summary["heldout_mse"] = [round(v, 6) for v in last_eval["mse"]]
        summary["heldout_copy_last_mse"] = [round(v, 6) for v in last_eval["copy_last_mse"]]
    return summary


