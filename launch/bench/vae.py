"""``reverie bench vae``: binary-VAE throughput on CPU, side by side in one process.

Rows: training frames/s for each estimator (batch 32, the ``vae_atari`` preset's model, PixelCNN decoder;
NVIL also with the factorised decoder), and log-likelihood evaluation frames/s: the ELBO (K = 1) and the
importance-weighted bound with K = 100 (what ``BinaryVAE.log_prob`` computes by default), for both decoders.
Inputs are random sparse binary frames (5% of pixels on, seeded): the cost does not depend on the content.
Each row runs for ``seconds`` of wall-clock after one warm-up step, with the torch threads the process has
(``OMP_NUM_THREADS``, 1 by default in ``reverie``).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from worldmodels.vae import BinaryVAE, EstimatorConfig, ModelConfig
from worldmodels.vae.config import DecoderChoice, EstimatorChoice


def timed(fn: Any, frames_per_call: int, seconds: float) -> float:
    """Frames per second of ``fn`` (``frames_per_call`` frames per call) over ``seconds`` after one warm-up call."""
    fn()  # warm-up
    done, start = 0, time.perf_counter()
    while True:
        fn()
        done += frames_per_call
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def run_vae_bench(seconds: float = 5.0, batch_size: int = 32, seed: int = 0) -> dict[str, Any]:
    """Measure every row (see the module docstring); returns ``{"rows": [...], "threads": int, ...}``."""
    rng = np.random.default_rng(seed)
    frames = (rng.random((batch_size, 42, 42)) < 0.05).astype(np.uint8)
    rows = []
    trainings = [("nvil", "pixelcnn", 1), ("vimco", "pixelcnn", 5), ("reinforce", "pixelcnn", 1),
                 ("relaxed", "pixelcnn", 1), ("nvil", "factorised", 1)]
    for name, decoder, k in trainings:
        vae = BinaryVAE(ModelConfig(decoder=DecoderChoice(decoder)),
                        EstimatorConfig(name=EstimatorChoice(name), samples=k), seed=seed)
        fps = timed(lambda vae=vae: vae.train_step(frames), batch_size, seconds)
        rows.append({"what": "train", "estimator": name, "samples": k, "decoder": decoder, "frames_per_s": fps})
    for decoder in ("pixelcnn", "factorised"):
        vae = BinaryVAE(ModelConfig(decoder=DecoderChoice(decoder)), seed=seed)
        for k in (1, 100):
            n = batch_size if k == 1 else 8
            fps = timed(lambda vae=vae, k=k, n=n: vae.bounds(frames[:n], (k,)), n, seconds)
            rows.append({"what": "log-likelihood", "estimator": f"IWAE K={k}" if k > 1 else "ELBO (K=1)",
                         "samples": k, "decoder": decoder, "frames_per_s": fps})
    return {"rows": rows, "threads": torch.get_num_threads(), "seconds_per_row": seconds, "batch_size": batch_size,
            "image_size": 42, "latent_dim": ModelConfig().latent_dim}


def format_vae_table(result: dict[str, Any]) -> str:
    lines = [f"binary VAE, 42x42 frames, {result['latent_dim']} latents, batch {result['batch_size']}, "
             f"{result['threads']} torch thread(s), {result['seconds_per_row']:.0f} s per row",
             f"{'what':<15} {'estimator / bound':<18} {'decoder':<11} {'frames/s':>10}"]
    for r in result["rows"]:
        label = r["estimator"] + (f" K={r['samples']}" if r["what"] == "train" and r["samples"] > 1 else "")
        lines.append(f"{r['what']:<15} {label:<18} {r['decoder']:<11} {r['frames_per_s']:10.1f}")
    return "\n".join(lines)
