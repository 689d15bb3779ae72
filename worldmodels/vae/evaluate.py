"""`reverie evaluate-vae`: held-out bounds, prior samples and reconstructions of a `reverie fit-vae` run.

:func:`evaluate_vae` loads the newest checkpoint of a run (on the CPU), scores evenly spaced held-out frames with
the ELBO and importance-weighted bounds (:meth:`BinaryVAE.bounds`), and writes PNG grids of prior samples and
reconstructions beside TensorBoard summaries. :func:`heldout_frames` is also what fit-vae scores at every
checkpoint.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np


def heldout_frames(path: str | Path, count: int, skip_corrupt: bool, *, skip_hint: str = "--skip-corrupt",
                   eval_off: str = "") -> np.ndarray:
    """``count`` evenly spaced frames of the held-out split, uint8 ``[n, 84, 84]`` (all if fewer, or if 0).

    :param skip_hint: how the calling command skips corrupt shards (evaluate-vae: ``--skip-corrupt``; fit-vae
        passes ``data.skip_corrupt=true``), named in the error for a corrupt shard.
    :param eval_off: the setting that turns this evaluation off (fit-vae: ``run.eval_frames=0``), named in every
        error as a way out; empty where there is none (evaluate-vae exists to score held-out frames).
    :raises DatasetError: no held-out split, a corrupt held-out shard (without ``skip_corrupt``), or no held-out
        frame left after skipping corrupt shards.
    """
    from worldmodels.data import DatasetError, TrajectoryDataset

    try:
        ds = TrajectoryDataset(path, "heldout", on_corrupt="skip" if skip_corrupt else "error", skip_hint=skip_hint)
        # Raises, naming the skipped files, if every held-out shard is skipped as corrupt.
        frames = np.concatenate(list(ds.frame_batches(4096)))
    except DatasetError as err:
        if not eval_off:
            raise
        raise DatasetError(f"{err} Or set {eval_off} to train without held-out scores.") from err
    if count and len(frames) > count:
        frames = frames[np.linspace(0, len(frames) - 1, count).round().astype(int)]
    return frames


def open_for_evaluation(run: str | Path, key: str, command: str,
                        out_dir: str | Path | None) -> tuple[Path, dict[str, Any], Path, Path]:
    """The newest valid checkpoint of a run made by ``command`` (a corrupt newest one is skipped, with a warning
    naming it): ``(checkpoint path, checkpoint, run directory, output folder)``; the output folder is ``out_dir``,
    default the run directory, and is created.

    :raises CheckpointError: no readable checkpoint. :raises ValueError: a checkpoint without the ``key`` state.
    """
    from worldmodels.common.checkpoint import load_latest

    ckpt_path, ckpt = load_latest(run)
    if key not in ckpt:
        raise ValueError(f"{ckpt_path} is not a {command} checkpoint (no {key!r} state): give a {command} run "
                         f"directory.")
    run_dir = ckpt_path.parent.parent if ckpt_path.parent.name == "checkpoints" else ckpt_path.parent
    out = Path(out_dir) if out_dir else run_dir
    out.mkdir(parents=True, exist_ok=True)
    return ckpt_path, ckpt, run_dir, out


def grid(frames: np.ndarray, columns: int = 8, scale: int = 2) -> np.ndarray:
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


def evaluate_vae(run: str | Path, data: str | Path, ks: tuple[int, ...] = (1, 10, 100, 1000), frames: int = 200,
                 samples: int = 64, seed: int = 0, skip_corrupt: bool = False,
                 out_dir: str | Path | None = None, active_threshold: float = 0.01) -> dict[str, Any]:
    """Held-out bounds, latent usage (active units, KL per latent: :func:`~worldmodels.representations.usage.
    binary_usage`, with a ``collapse_warning`` when fewer than half the latents are active), prior samples and
    reconstructions of a fit-vae run; returns the report.

    Writes ``prior_samples.png`` and ``reconstructions.png`` (rows of held-out frames above their
    reconstructions) into ``out_dir`` (default: the run directory) and the same, with the bounds, to
    TensorBoard (tags ``eval/iwae_nats_k<K>``, ``eval/prior_samples``, ``eval/reconstructions``) at the
    checkpoint's frame count. The model runs on the CPU, whatever device it trained on.

    :raises CheckpointError: no readable checkpoint there. :raises ValueError: a checkpoint of another kind.
    :raises DatasetError: no held-out data (none collected, a corrupt shard without ``skip_corrupt``, or none left
        after skipping corrupt shards).
    """
    import imageio.v3 as iio
    import torch
    from torch.utils.tensorboard import SummaryWriter

    from worldmodels.data import read_manifest
    from worldmodels.representations.usage import binary_usage, collapse_message, usage_of
    from worldmodels.vae.model import BinaryVAE
    from worldmodels.vae.train import COLLAPSE_FIX

    ckpt_path, ckpt, run_dir, out = open_for_evaluation(run, "vae", "fit-vae", out_dir)
    vae = BinaryVAE.from_state_dict(ckpt["vae"])
    assert vae.binarizer is not None
    manifest = read_manifest(data)
    x = vae.binarizer(heldout_frames(data, frames, skip_corrupt, skip_hint="--skip-corrupt"))
    started = time.perf_counter()
    with torch.random.fork_rng():
        bounds = vae.bounds(x, ks, seed=seed)
    seconds = time.perf_counter() - started
    pixels = vae.size * vae.size
    report = {"checkpoint": str(ckpt_path), "data": str(data), "game": manifest.get("game"),
              "frames_trained": int(ckpt["frames"]), "estimator": str(vae.estimator_cfg.name),
              "decoder": str(vae.model_cfg.decoder), "heldout_frames": len(x), "image_size": vae.size,
              "latent_dim": vae.dim, **nll_report(bounds, pixels), "bound_seconds": round(seconds, 1),
              "units": "negative log-likelihood upper bounds (smaller is better): nats per frame; bits per pixel"}
    if len(x) > 1:  # active units and KL per latent (worldmodels.representations.usage)
        report.update(binary_usage(vae, x, seed=seed, threshold=active_threshold).summary())
        warning = collapse_message(usage_of(report), f"The binary VAE of {run_dir}", COLLAPSE_FIX)
        if warning:
            report["collapse_warning"] = warning
    prior = vae.sample_prior(samples, seed=seed)
    shown = x[: min(len(x), samples // 2)]
    recon = vae.reconstruct(shown, seed=seed)
    pairs = np.concatenate([np.concatenate([shown[i: i + 8], recon[i: i + 8]]) for i in range(0, len(shown), 8)])
    report["prior_samples_png"] = str(out / "prior_samples.png")
    report["reconstructions_png"] = str(out / "reconstructions.png")
    iio.imwrite(report["prior_samples_png"], grid(prior))
    iio.imwrite(report["reconstructions_png"], grid(pairs))
    writer = SummaryWriter(str(out))
    step = int(ckpt["frames"])
    for k, v in report["iwae_nats"].items():
        writer.add_scalar(f"eval/iwae_nats_k{k}", v, step)
    writer.add_image("eval/prior_samples", grid(prior)[None], step)
    writer.add_image("eval/reconstructions", grid(pairs)[None], step)
    writer.close()
    return report
