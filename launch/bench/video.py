"""``reverie bench world-model``: video-predictor throughput on CPU, every architecture and preset side by side.

Rows: both architectures (feedforward, recurrent) of the two presets (``video_cpu_*``: the residual CPU body;
``video_paper_*``: the paper's dense body on our 84x84 luminance frames) and the paper's own input size
(210x160 RGB, feedforward and recurrent). For each row:

- training frames/s: predicted frames per second of gradient updates on the 3-step objective (batch 8,
  the paper's batch for its multi-step stages), counting each of the 3 predictions of each window;
- imagination frames/s: frames per second of :meth:`VideoPredictor.imagine` (batch 32, 20 steps, no gradients).

Inputs are random frames (seeded): the cost does not depend on the content. Each measurement runs for
``seconds`` of wall-clock after one warm-up call, with the process's torch threads (1 by default in
``reverie``); ``ratio`` columns compare each row with the CPU feedforward model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from launch.bench.vae import timed
from launch.config import load_config
from worldmodels.video import VideoFitConfig, VideoPredictor

ROWS: list[tuple[str, dict[str, Any]]] = [
    ("video_cpu_ff", {}), ("video_cpu_rnn", {}), ("video_paper_ff", {}), ("video_paper_rnn", {}),
    ("video_paper_ff", {"channels": 3, "height": 210, "width": 160}),
    ("video_paper_rnn", {"channels": 3, "height": 210, "width": 160}),
]


def video_train_step(model: VideoPredictor, cfg: Any, batch: int, steps: int, num_actions: int,
                     rng: np.random.Generator) -> Any:
    """One Adam update of ``model`` on the ``steps``-step objective, on a fixed batch of random windows of
    ``cfg.context + steps`` uint8 frames, as a callable."""
    shape = (cfg.height, cfg.width) if cfg.channels == 1 else (cfg.height, cfg.width, cfg.channels)
    window = {"frames": rng.integers(0, 256, (batch, cfg.context + steps, *shape), dtype=np.uint8),
              "actions": rng.integers(0, num_actions, (batch, cfg.context + steps))}
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)

    def train_step() -> None:
        loss = model.loss(window)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return train_step


def run_world_model_bench(seconds: float = 5.0, num_actions: int = 6, seed: int = 0,
                          rows: list[tuple[str, dict[str, Any]]] | None = None) -> dict[str, Any]:
    """Measure every row (see the module docstring); returns ``{"rows": [...], "threads": int, ...}``."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    out: list[dict[str, Any]] = []
    for preset, size in rows or ROWS:
        cfg = load_config(VideoFitConfig, [preset]).model
        for key, value in size.items():
            setattr(cfg, key, value)
        model = VideoPredictor(cfg, num_actions)
        shape = (cfg.height, cfg.width) if cfg.channels == 1 else (cfg.height, cfg.width, cfg.channels)
        k, steps, batch = cfg.context, 3, 8
        train_step = video_train_step(model, cfg, batch, steps, num_actions, rng)
        train_fps = timed(train_step, batch * steps, seconds)
        model.eval()
        ctx = rng.integers(0, 256, (32, k, *shape), dtype=np.uint8)
        acts = rng.integers(0, num_actions, (32, 20))
        imagine_fps = timed(lambda model=model, ctx=ctx, acts=acts: model.imagine(ctx, acts), 32 * 20, seconds)
        out.append({"preset": preset, "architecture": cfg.architecture, "body": cfg.body,
                    "frame": f"{cfg.height}x{cfg.width}x{cfg.channels}",
                    "parameters": sum(p.numel() for p in model.parameters()),
                    "train_frames_per_s": train_fps, "imagine_frames_per_s": imagine_fps})
    base = out[0]
    for r in out:
        r["train_ratio"] = r["train_frames_per_s"] / base["train_frames_per_s"]
        r["imagine_ratio"] = r["imagine_frames_per_s"] / base["imagine_frames_per_s"]
    return {"rows": out, "threads": torch.get_num_threads(), "seconds_per_measurement": seconds,
            "train": "3-step objective, batch 8", "imagine": "batch 32, 20 steps"}


def format_world_model_table(result: dict[str, Any]) -> str:
    lines = [f"video predictors, {result['threads']} torch thread(s), {result['seconds_per_measurement']:.0f} s per "
             f"measurement; train: {result['train']}; imagine: {result['imagine']}",
             f"{'preset':<16} {'arch':<12} {'frame':<11} {'params':>10} {'train f/s':>10} {'ratio':>6} "
             f"{'imagine f/s':>12} {'ratio':>6}"]
    for r in result["rows"]:
        lines.append(f"{r['preset']:<16} {r['architecture']:<12} {r['frame']:<11} {r['parameters']:>10,} "
                     f"{r['train_frames_per_s']:>10.1f} {r['train_ratio']:>6.3f} {r['imagine_frames_per_s']:>12.1f} "
                     f"{r['imagine_ratio']:>6.3f}")
    return "\n".join(lines)
