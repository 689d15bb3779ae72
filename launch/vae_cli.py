"""``reverie collect``, ``reverie fit-vae`` and ``reverie evaluate-vae``: data, training and evaluation of the
binary-latent VAE (:mod:`worldmodels.vae`). :func:`register` adds the three commands to the CLI.

fit-vae reads top to bottom: load the train split as a stream of frames, fit the binariser on it (per-pixel
background, :mod:`worldmodels.data.binarize`), then repeat ``BinaryVAE.train_step`` on binarised batches,
logging to TensorBoard, measuring the estimator's gradient variance, scoring held-out frames at every
checkpoint, and writing checkpoints atomically. ``--resume RUN_DIR`` continues from the newest checkpoint
(weights, optimiser, estimator state, binariser, counters, RNG); the data order is re-drawn from the seed
and the step count.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np

from launch.config import add_config_arguments

log = logging.getLogger(__name__)

TB = {"elbo": "worldmodel/elbo", "kl": "worldmodel/kl", "log_lik": "worldmodel/log_lik",
      "bound": "worldmodel/multi_sample_bound", "loss": "losses/surrogate", "grad_norm": "losses/grad_norm",
      "baseline": "losses/nvil_baseline"}


# ------------------------------------------------------------------------------------------------ helpers
def _heldout_frames(path: str, count: int, skip_corrupt: bool) -> np.ndarray:
    """``count`` evenly spaced frames of the held-out split, uint8 ``[n, 84, 84]`` (all if fewer)."""
    from worldmodels.data import TrajectoryDataset

    ds = TrajectoryDataset(path, "heldout", on_corrupt="skip" if skip_corrupt else "error")
    frames = np.concatenate(list(ds.frame_batches(4096)))
    if count and len(frames) > count:
        frames = frames[np.linspace(0, len(frames) - 1, count).round().astype(int)]
    return frames


def _grid(frames: np.ndarray, columns: int = 8, scale: int = 2) -> np.ndarray:
    """uint8 {0,1} ``[n, S, S]`` -> one uint8 grey image ``[rows * (S + 2), columns * (S + 2)]`` (0/255)."""
    n, s = len(frames), frames.shape[-1]
    rows = math.ceil(n / columns)
    img = np.full((rows * (s + 2), columns * (s + 2)), 128, dtype=np.uint8)
    for i, f in enumerate(frames):
        r, c = divmod(i, columns)
        img[r * (s + 2) + 1: r * (s + 2) + 1 + s, c * (s + 2) + 1: c * (s + 2) + 1 + s] = f * 255
    return np.kron(img, np.ones((scale, scale), dtype=np.uint8))


def nll_report(bounds: dict[int, np.ndarray], pixels: int) -> dict[str, Any]:
    """Negative log-likelihood upper bounds from per-frame bounds on log p(x): nats per frame and bits per
    pixel, keyed by K as strings (``elbo_*`` is K = 1)."""
    nats = {str(k): float(-v.mean()) for k, v in sorted(bounds.items())}
    bpp = {k: v / (pixels * math.log(2)) for k, v in nats.items()}
    out: dict[str, Any] = {"iwae_nats": nats, "iwae_bits_per_pixel": bpp}
    if "1" in nats:
        out["elbo_nats"], out["elbo_bits_per_pixel"] = nats["1"], bpp["1"]
    return out


# --------------------------------------------------------------------------------------------- fit-vae
def fit_vae(cfg: Any, run_dir: str | Path | None = None, resume: bool = False, config_yaml: str = "") -> dict:
    """Train a :class:`BinaryVAE` as ``cfg`` (a :class:`worldmodels.vae.VAEFitConfig`) says; returns a summary.

    :raises FileExistsError: a new run whose directory already holds files.
    :raises CheckpointError: ``resume`` without a usable checkpoint.
    :raises DatasetError: missing or corrupt data.
    """
    import torch
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    from agents.runtime.checkpoint import find_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state
    from worldmodels.data import Binarizer, TrajectoryDataset
    from worldmodels.vae import BinaryVAE
    from worldmodels.vae.config import validate

    validate(cfg)
    path = Path(run_dir) if run_dir else Path(cfg.run.runs_dir) / cfg.run.name
    if resume:
        ckpt = load_checkpoint(find_checkpoint(path))
    elif path.exists() and any(path.iterdir()):
        raise FileExistsError(f"run directory {path} already exists: continue it with --resume {path}, "
                              f"or choose another --run-dir / run.name.")
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(config_yaml)
    torch.set_num_threads(cfg.run.torch_threads)
    torch.manual_seed(cfg.run.seed)
    np.random.seed(cfg.run.seed)
    on_corrupt = "skip" if cfg.data.skip_corrupt else "error"
    size = cfg.model.image_size

    if resume:
        from dataclasses import asdict

        from worldmodels.vae import EstimatorConfig, ModelConfig

        saved = ckpt["vae"]
        for key, kind, mine in (("model", ModelConfig, asdict(cfg.model)),
                                ("estimator", EstimatorConfig, asdict(cfg.estimator))):
            # Fill settings added since the run was saved with their defaults (what the run used).
            theirs = asdict(kind(**saved[f"{key}_config"]))
            if theirs != mine:
                diff = sorted(k for k in mine if mine[k] != theirs.get(k))
                raise ValueError(f"--resume {path}: {key}.{', '.join(diff)} differ from the run's saved settings; "
                                 f"resume with the run's own config ({path / 'config.yaml'}) or start a new run.")
        vae = BinaryVAE.from_state_dict(saved)
        set_rng_state(ckpt["rng"])
        frames, elapsed = int(ckpt["frames"]), float(ckpt.get("train_seconds", 0.0))
    else:
        fit_ds = TrajectoryDataset(cfg.data.path, "train", on_corrupt=on_corrupt)
        binarizer = Binarizer.fit(fit_ds.frame_batches(4096), size=size, threshold=cfg.data.threshold)
        vae = BinaryVAE(cfg.model, cfg.estimator, cfg.optim, seed=cfg.run.seed, binarizer=binarizer)
        frames, elapsed = 0, 0.0
    assert vae.binarizer is not None
    binarize = vae.binarizer
    train = TrajectoryDataset(cfg.data.path, "train", shuffle=True, seed=cfg.run.seed + vae.steps, epochs=None,
                              on_corrupt=on_corrupt)
    heldout = binarize(_heldout_frames(cfg.data.path, cfg.run.eval_frames, cfg.data.skip_corrupt)) \
        if cfg.run.eval_frames else None
    writer = SummaryWriter(str(path))

    def checkpoint() -> Path:
        payload = {"vae": vae.state_dict(), "frames": frames, "train_seconds": elapsed, "config": config_yaml,
                   "rng": rng_state(), "data": str(cfg.data.path)}
        return save_checkpoint(path / "checkpoints", frames, payload, keep=cfg.run.keep_checkpoints)

    def evaluate() -> dict[str, float]:
        if heldout is None:
            return {}
        b = vae.bounds(heldout, (1, 10), seed=cfg.run.seed)
        out = {"elbo_nats": float(-b[1].mean()), "iwae10_nats": float(-b[10].mean())}
        for k, v in out.items():
            writer.add_scalar(f"eval/{k}", v, frames)
        return out

    def stop(signum: int, _: Any) -> None:
        raise KeyboardInterrupt

    old_term = signal.signal(signal.SIGTERM, stop)
    bar = tqdm(total=cfg.run.total_frames, initial=frames, unit="frame", disable=not cfg.run.progress,
               desc=f"fit-vae {cfg.estimator.name}")
    batches = train.frame_batches(cfg.optim.batch_size, drop_last=True)
    next_log = frames + cfg.run.log_every_frames
    next_ckpt = frames + cfg.run.checkpoint_every_frames
    next_var = frames + cfg.run.grad_var_every_frames if cfg.run.grad_var_every_frames else math.inf
    window: dict[str, list[float]] = {}
    log_frames, log_time = frames, elapsed
    last_eval: dict[str, float] = {}
    try:
        while frames < cfg.run.total_frames and not (cfg.run.max_seconds and elapsed >= cfg.run.max_seconds):
            t0 = time.process_time()
            x = binarize(next(batches))
            stats = vae.train_step(x)
            # CPU time of the training steps only (not evaluation or logging): runs that share the cores get the
            # same compute for the same budget, so estimators can be compared on a busy machine.
            elapsed += time.process_time() - t0
            frames += len(x)
            bar.update(len(x))
            for k, v in stats.items():
                window.setdefault(k, []).append(v)
            if frames >= next_log:
                fps = (frames - log_frames) / max(1e-9, elapsed - log_time)
                for k, vs in window.items():
                    writer.add_scalar(TB.get(k, f"worldmodel/{k}"), float(np.mean(vs)), frames)
                writer.add_scalar("charts/frames_per_s", fps, frames)
                bar.set_postfix(elbo=f"{np.mean(window['elbo']):.1f}", fps=f"{fps:.0f}")
                window, log_frames, log_time = {}, frames, elapsed
                next_log = frames + cfg.run.log_every_frames
            if frames >= next_var:
                gv = vae.gradient_variance(x, cfg.run.grad_var_repeats)
                writer.add_scalar("losses/grad_var", gv["grad_var"], frames)
                writer.add_scalar("losses/grad_snr", gv["grad_snr"], frames)
                next_var = frames + cfg.run.grad_var_every_frames
            if frames >= next_ckpt:
                last_eval = evaluate()
                checkpoint()
                next_ckpt = frames + cfg.run.checkpoint_every_frames
    finally:
        bar.close()
        signal.signal(signal.SIGTERM, old_term)
        ckpt_path = checkpoint()  # also on Ctrl-C / SIGTERM
        writer.flush()
    last_eval = evaluate() or last_eval
    writer.close()
    return {"run_dir": str(path), "checkpoint": str(ckpt_path), "frames": frames, "updates": vae.steps,
            "train_seconds": round(elapsed, 1), "estimator": cfg.estimator.name,
            "frames_per_s": round(frames / max(elapsed, 1e-9), 1) if frames else 0.0, **last_eval}


# ---------------------------------------------------------------------------------------- evaluate-vae
def evaluate_vae(run: str | Path, data: str | Path, ks: tuple[int, ...] = (1, 10, 100, 1000), frames: int = 200,
                 samples: int = 64, seed: int = 0, skip_corrupt: bool = False,
                 out_dir: str | Path | None = None) -> dict[str, Any]:
    """Held-out bounds, prior samples and reconstructions of a fit-vae run; returns the report.

    Writes ``prior_samples.png`` and ``reconstructions.png`` (rows of held-out frames above their
    reconstructions) into ``out_dir`` (default: the run directory) and the same, with the bounds, to
    TensorBoard (tags ``eval/iwae_nats_k<K>``, ``eval/prior_samples``, ``eval/reconstructions``) at the
    checkpoint's frame count.
    """
    import imageio.v3 as iio
    import torch
    from torch.utils.tensorboard import SummaryWriter

    from agents.runtime.checkpoint import find_checkpoint, load_checkpoint
    from worldmodels.data import read_manifest
    from worldmodels.vae import BinaryVAE

    ckpt_path = find_checkpoint(run)
    ckpt = load_checkpoint(ckpt_path)
    if "vae" not in ckpt:
        raise ValueError(f"{ckpt_path} is not a fit-vae checkpoint (no 'vae' state): give a fit-vae run directory.")
    run_dir = ckpt_path.parent.parent if ckpt_path.parent.name == "checkpoints" else ckpt_path.parent
    out = Path(out_dir) if out_dir else run_dir
    out.mkdir(parents=True, exist_ok=True)
    vae = BinaryVAE.from_state_dict(ckpt["vae"])
    assert vae.binarizer is not None
    manifest = read_manifest(data)
    x = vae.binarizer(_heldout_frames(str(data), frames, skip_corrupt))
    started = time.perf_counter()
    with torch.random.fork_rng():
        bounds = vae.bounds(x, ks, seed=seed)
    seconds = time.perf_counter() - started
    pixels = vae.size * vae.size
    report = {"checkpoint": str(ckpt_path), "data": str(data), "game": manifest.get("game"),
              "frames_trained": int(ckpt["frames"]), "estimator": vae.estimator_cfg.name,
              "decoder": vae.model_cfg.decoder, "heldout_frames": len(x), "image_size": vae.size,
              "latent_dim": vae.dim, **nll_report(bounds, pixels), "bound_seconds": round(seconds, 1),
              "units": "negative log-likelihood upper bounds (smaller is better): nats per frame; bits per pixel"}
    prior = vae.sample_prior(samples, seed=seed)
    shown = x[: min(len(x), samples // 2)]
    recon = vae.reconstruct(shown, seed=seed)
    pairs = np.concatenate([np.concatenate([shown[i: i + 8], recon[i: i + 8]]) for i in range(0, len(shown), 8)])
    report["prior_samples_png"] = str(out / "prior_samples.png")
    report["reconstructions_png"] = str(out / "reconstructions.png")
    iio.imwrite(report["prior_samples_png"], _grid(prior))
    iio.imwrite(report["reconstructions_png"], _grid(pairs))
    writer = SummaryWriter(str(out))
    step = int(ckpt["frames"])
    for k, v in report["iwae_nats"].items():
        writer.add_scalar(f"eval/iwae_nats_k{k}", v, step)
    writer.add_image("eval/prior_samples", _grid(prior)[None], step)
    writer.add_image("eval/reconstructions", _grid(pairs)[None], step)
    writer.close()
    return report


# ------------------------------------------------------------------------------------------- commands
def _frame_size(text: str) -> tuple[int, int]:
    """``"84x84"`` -> ``(84, 84)``. :raises ValueError: not HEIGHTxWIDTH with positive sizes."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"--frame-size {text!r}: give HEIGHTxWIDTH in pixels, e.g. 84x84 or 210x160.")
    return int(parts[0]), int(parts[1])


def cmd_collect(args: argparse.Namespace) -> int:
    from launch.collect import collect

    manifest = collect(args.game, args.out, args.frames, policy=args.policy, actors=args.actors,
                       envs_per_actor=args.envs_per_actor, seed=args.seed, heldout_fraction=args.heldout_fraction,
                       preset=args.preset, epsilon=args.epsilon, shard_frames=args.shard_frames,
                       ray_address=args.ray_address, progress=not args.no_progress,
                       frame_size=_frame_size(args.frame_size), rgb=args.rgb)
    summary = {"out": args.out, "game": manifest["game"], **manifest["counts"], "shards": len(manifest["shards"]),
               "emulator_frames": manifest["emulator_frames"], "wall_seconds": manifest["wall_seconds"]}
    print(json.dumps(summary))
    return 0


def cmd_fit_vae(args: argparse.Namespace) -> int:
    from launch.config import load_config, to_yaml
    from worldmodels.vae import VAEFitConfig

    cfg = load_config(VAEFitConfig, [args.config], args.overrides)
    summary = fit_vae(cfg, run_dir=args.resume or args.run_dir, resume=args.resume is not None,
                      config_yaml=to_yaml(cfg))
    print(json.dumps(summary))
    return 0


def cmd_evaluate_vae(args: argparse.Namespace) -> int:
    ks = tuple(int(k) for k in args.ks.split(","))
    report = evaluate_vae(args.run, args.data, ks=ks, frames=args.frames, seed=args.seed,
                          skip_corrupt=args.skip_corrupt)
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['game']}: {report['heldout_frames']} held-out frames, {report['image_size']}x"
              f"{report['image_size']} binary, estimator {report['estimator']}, "
              f"{report['frames_trained']} frames trained")
        print(f"{'bound':>10} {'NLL nats/frame':>15} {'bits/pixel':>11}")
        for k, v in report["iwae_nats"].items():
            name = "ELBO" if k == "1" else f"IWAE {k}"
            print(f"{name:>10} {v:15.2f} {report['iwae_bits_per_pixel'][k]:11.4f}")
        print(f"images: {report['prior_samples_png']}, {report['reconstructions_png']}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``collect``, ``fit-vae`` and ``evaluate-vae`` to the ``reverie`` subparsers."""
    p = sub.add_parser("collect", help="record trajectories of play into a dataset (Ray actors)",
                       description="Play GAME with a random or DQN policy on Ray actors and write the newest frame "
                                   "of every observation, actions, raw rewards and episode ends as shards + "
                                   "manifest.json; train and held-out episodes in separate files.")
    p.add_argument("game", help="Atari game (Pong, ALE/Pong-v5, pong) or toy/catch")
    p.add_argument("--policy", default="random", help="'random' or a DQN run directory / checkpoint")
    p.add_argument("--frames", type=int, required=True, help="frames to store (emulator frames are 4x more)")
    p.add_argument("--out", required=True, help="dataset folder (must not exist or be empty)")
    p.add_argument("--actors", type=int, default=2, help="Ray actors (0: in-process, no Ray)")
    p.add_argument("--envs-per-actor", type=int, default=8, help="envs in each actor's vector env")
    p.add_argument("--seed", type=int, default=0, help="actor i seeds its envs with seed + 1000 (i + 1)")
    p.add_argument("--heldout-fraction", type=float, default=0.1, help="share of frames in held-out episodes")
    p.add_argument("--preset", default="machado", help="Atari preset: machado or nature")
    p.add_argument("--epsilon", type=float, default=0.05, help="exploration of a DQN policy")
    p.add_argument("--shard-frames", type=int, default=10_000, help="frames per shard (whole episodes)")
    p.add_argument("--ray-address", help="join this Ray cluster instead of starting a local one")
    p.add_argument("--frame-size", default="84x84", help="HEIGHTxWIDTH of stored frames (210x160: the full screen)")
    p.add_argument("--rgb", action="store_true", help="store RGB frames [T, H, W, 3] instead of luminance "
                                                       "(the video-prediction paper's input; random policy only)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("fit-vae", help="train a binary-latent VAE on a collected dataset",
                       description="Train worldmodels.vae.BinaryVAE. CONFIG is a YAML path or a preset name "
                                   "(vae_atari, vae_tiny); key=value pairs override it, e.g. estimator.name=vimco "
                                   "estimator.samples=5 data.path=data/pong.")
    add_config_arguments(p)
    p.set_defaults(func=cmd_fit_vae)

    p = sub.add_parser("evaluate-vae", help="held-out ELBO and IWAE bounds, samples and reconstructions",
                       description="Score held-out frames of DIR with the newest checkpoint of RUN_DIR: negative "
                                   "log-likelihood bounds (ELBO and importance-weighted, K samples) in nats per "
                                   "frame and bits per pixel; PNG grids of prior samples and reconstructions.")
    p.add_argument("run", metavar="RUN_DIR", help="fit-vae run directory or checkpoint file")
    p.add_argument("--data", required=True, help="dataset folder (its held-out split is scored)")
    p.add_argument("--ks", default="1,10,100,1000", help="sample counts K, each dividing the next")
    p.add_argument("--frames", type=int, default=200, help="held-out frames scored (evenly spaced; 0: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the posterior and prior samples")
    p.add_argument("--skip-corrupt", action="store_true", help="skip corrupt shards (named in a warning)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_evaluate_vae)
