"""``reverie bench density``: speed and memory of the density models and the bonus wrapper, side by side.

On real Atari frames (random play in ale-py's vector env, machado preset, the newest frame of each
observation preprocessed to 42x42 with 8 levels), in one process on one core:

(a) CTS: milliseconds per frame for ``update`` (learning plus the recoding probability), one frame per
    call, and the model's memory after those frames: the bytes of its node pool (``CTS.nbytes``,
    allocated capacity included; ``cts_memory_used_mb`` counts only the nodes in use). 1 MB = 10^6 bytes.
(b) PixelCNN (Ostrovski et al.'s setting): milliseconds per frame, online (one RMSProp step per frame,
    the paper's procedure) and batched (one step per 32 frames, a documented deviation).
(d) RND (Burda et al. 2018, the paper's networks and Adam, one torch thread) on the newest 84x84 frame of each
    observation: milliseconds per frame scored and learned (a quarter of them trained on, the paper's proportion),
    one frame per call (a single env under the wrapper) and 32 per call (a vector env or an actor's batch), after
    the input statistics were initialised from 128 random-play frames; and its memory: both networks, Adam's two
    moments and the normaliser's mean and variance (float32 parameters, float64 statistics). RND's memory does not
    grow with the frames seen, unlike CTS's.
(c) The wrapper's overhead: env steps/s of one Gymnasium Atari env (``envs.make_atari(num_envs=None)``)
    bare and wrapped in ``PseudoCountBonus(model="cts")``, run in alternating blocks so that machine load
    hits both alike; likewise the 8-env vector env bare and under ``VectorPseudoCountBonus``.

:func:`cts_memory_after` checks the 200 MB target on a long stream (e.g. 100k frames).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from worldmodels.density import CTS, preprocess_frames

_MB = 1e6


def iter_atari_frames(
    game: str = "montezuma_revenge", frames: int = 2000, seed: int = 0, num_envs: int = 8
) -> Iterator[np.ndarray]:
    """Yield quantised frames of random play, uint8 ``[num_envs, 42, 42]`` per step, ``frames`` in all.

    Uses ``envs.make_atari`` (ale-py's vector env, machado preset, one emulator thread); each step's
    newest frame per env (``obs[:, -1]``) is preprocessed. The last batch is cut to the total.
    """
    from envs import latest_frame, make_atari

    env = make_atari(game, num_envs=num_envs, seed=seed, num_threads=1)
    rng = np.random.default_rng(seed)
    try:
        obs, _ = env.reset(seed=seed)
        n_actions = int(env.single_action_space.n)
        left = frames
        while left > 0:
            obs, *_ = env.step(rng.integers(0, n_actions, size=num_envs))
            batch = preprocess_frames(latest_frame(obs))[:left]
            left -= len(batch)
            yield batch
    finally:
        env.close()


def collect_atari_frames(game: str = "montezuma_revenge", frames: int = 2000, seed: int = 0) -> np.ndarray:
    """``frames`` quantised frames of random play, uint8 ``[frames, 42, 42]`` (:func:`iter_atari_frames`)."""
    return np.concatenate(list(iter_atari_frames(game, frames, seed)))


def cts_memory_after(frames_iterable: Iterable[np.ndarray]) -> dict[str, float]:
    """Train a fresh CTS on every frame of ``frames_iterable`` (batches uint8 ``[B, 42, 42]``) and measure it.

    :return: ``frames``, ``memory_mb`` (node pool bytes incl. spare capacity / 10^6), ``memory_used_mb``
        (nodes in use only), ``nodes``, ``update_seconds`` (time inside ``CTS.update`` only) and
        ``ms_per_frame``; ``wall_seconds`` includes producing the frames.
    """
    _warm_up_cts()
    model = CTS()
    count, update_seconds = 0, 0.0
    start = time.perf_counter()
    for batch in frames_iterable:
        t0 = time.perf_counter()
        model.update(batch)
        update_seconds += time.perf_counter() - t0
        count += len(batch)
    return {
        "frames": count,
        "memory_mb": model.nbytes / _MB,
        "memory_used_mb": model.num_nodes * model.bytes_per_node / _MB,
        "nodes": model.num_nodes,
        "update_seconds": update_seconds,
        "ms_per_frame": 1e3 * update_seconds / max(count, 1),
        "wall_seconds": time.perf_counter() - start,
    }


def _warm_up_cts() -> None:
    """Compile (or load from numba's cache) the CTS kernels outside any timed region."""
    tiny = CTS(shape=(2, 2), num_levels=2)
    frames = np.zeros((1, 2, 2), dtype=np.uint8)
    tiny.update(frames)
    tiny.log_prob(frames)


def measure_cts(frames: np.ndarray) -> dict[str, float]:
    """CTS update + recoding, one frame per call; memory after all frames."""
    _warm_up_cts()
    model = CTS()
    start = time.perf_counter()
    for b in range(len(frames)):
        model.update(frames[b : b + 1])
    seconds = time.perf_counter() - start
    return {
        "cts_ms_per_frame": 1e3 * seconds / len(frames),
        "cts_memory_mb": model.nbytes / _MB,
        "cts_memory_used_mb": model.num_nodes * model.bytes_per_node / _MB,
        "cts_nodes": model.num_nodes,
    }


def measure_pixelcnn(frames: np.ndarray, batch_size: int = 32) -> dict[str, float]:
    """PixelCNN (paper setting, CPU, one torch thread): online and batched ms per frame."""
    import torch

    from worldmodels.density import PixelCNNConfig, PixelCNNDensity

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        online_ms = ms_per_frame(PixelCNNDensity(PixelCNNConfig()).update, frames, 1)
        batched_ms = ms_per_frame(PixelCNNDensity(PixelCNNConfig(update_mode="batched")).update, frames, batch_size)
    finally:
        torch.set_num_threads(threads)
    return {"pixelcnn_ms_per_frame": online_ms, "pixelcnn_batched_ms_per_frame": batched_ms}


def ms_per_frame(update: Callable[[np.ndarray], Any], frames: np.ndarray, batch: int) -> float:
    """Milliseconds per frame of ``update`` called on ``frames`` ``batch`` at a time (a first call on
    ``max(2, batch)`` frames outside the timing takes the first-call allocations)."""
    update(frames[: max(2, batch)])
    start = time.perf_counter()
    for b in range(0, len(frames), batch):
        update(frames[b : b + batch])
    return 1e3 * (time.perf_counter() - start) / len(frames)


def collect_raw_frames(game: str = "montezuma_revenge", frames: int = 512, seed: int = 0, num_envs: int = 8
                       ) -> np.ndarray:
    """The newest 84x84 grey frame of each observation of random play, uint8 ``[frames, 84, 84]`` (RND's input)."""
    from envs import latest_frame, make_atari

    env = make_atari(game, num_envs=num_envs, seed=seed, num_threads=1)
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    try:
        env.reset(seed=seed)
        n_actions = int(env.single_action_space.n)
        while sum(len(b) for b in out) < frames:
            obs, *_ = env.step(rng.integers(0, n_actions, size=num_envs))
            out.append(np.array(latest_frame(obs)))
    finally:
        env.close()
    return np.concatenate(out)[:frames]


def measure_rnd(raw: np.ndarray, batch_size: int = 32, init_frames: int = 128) -> dict[str, float]:
    """RND (paper setting, CPU, one torch thread) on uint8 ``[N, 84, 84]`` frames: ms per frame one at a time and
    ``batch_size`` at a time, and memory in MB (parameters of both networks, Adam's state, the normaliser)."""
    import torch

    from worldmodels.density.rnd import RND

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        init = raw[:init_frames]
        frames = raw[init_frames:] if len(raw) > init_frames else raw
        online, batched = RND(), RND()
        online.init_normalizer(init)
        batched.init_normalizer(init)
        online_ms = ms_per_frame(online.step, frames, 1)
        batched_ms = ms_per_frame(batched.step, frames, batch_size)
    finally:
        torch.set_num_threads(threads)
    tensors: list[torch.Tensor] = [*online.target.parameters(), *online.predictor.parameters()]
    tensors += [v for state in online.optimizer.state.values() for v in state.values()
                if isinstance(v, torch.Tensor) and v.ndim > 0]
    nbytes = sum(t.numel() * t.element_size() for t in tensors)
    nbytes += online.normalizer.mean.nbytes + online.normalizer.var.nbytes
    return {"rnd_frames": len(frames), "rnd_ms_per_frame": online_ms, "rnd_batched_ms_per_frame": batched_ms,
            "rnd_memory_mb": nbytes / _MB}


def measure_wrapper(game: str, steps: int, seed: int = 0, block: int = 100) -> dict[str, float]:
    """Env steps/s bare vs wrapped (CTS bonus), single env and 8-env vector env, in alternating blocks."""
    from envs import make_atari
    from envs.wrappers import PseudoCountBonus, VectorPseudoCountBonus

    _warm_up_cts()
    rng = np.random.default_rng(seed)
    block = max(1, min(block, steps))
    result: dict[str, float] = {}
    for label, num_envs in (("", None), ("vector_", 8)):
        # One Gymnasium env or an AtariVector, as num_envs says: the loop below serves both.
        plain: Any = make_atari(game, num_envs=num_envs, seed=seed)
        inner: Any = make_atari(game, num_envs=num_envs, seed=seed)
        wrapped = VectorPseudoCountBonus(inner) if num_envs else PseudoCountBonus(inner)
        n_actions = int(plain.single_action_space.n if num_envs else plain.action_space.n)
        per_step = num_envs or 1
        timings = {"plain": 0.0, "wrapped": 0.0}
        for env in (plain, wrapped):
            env.reset(seed=seed)
        done_steps = 0
        while done_steps < steps:
            for name, env in (("plain", plain), ("wrapped", wrapped)):
                actions = rng.integers(0, n_actions, size=(block, per_step))
                start = time.perf_counter()
                for a in actions:
                    if num_envs:
                        env.step(a)
                    else:
                        _, _, terminated, truncated, _ = env.step(int(a[0]))
                        if terminated or truncated:
                            env.reset()
                timings[name] += time.perf_counter() - start
            done_steps += block
        plain.close()
        wrapped.close()
        plain_rate = done_steps * per_step / timings["plain"]
        wrapped_rate = done_steps * per_step / timings["wrapped"]
        result[f"{label}plain_steps_per_s"] = plain_rate
        result[f"{label}wrapped_steps_per_s"] = wrapped_rate
        result[f"{label}wrapper_steps_per_s_ratio"] = wrapped_rate / plain_rate
    return result


def run_density_bench(
    frames: int = 2000,
    game: str = "montezuma_revenge",
    seed: int = 0,
    pixelcnn_frames: int | None = None,
    wrapper_steps: int | None = None,
    rnd_frames: int | None = None,
) -> dict[str, Any]:
    """Run (a)-(c) of the module docstring and return the numbers.

    :param frames: real Atari frames for CTS (and the default sizes of the other parts).
    :param game: any name ``envs.make_atari`` accepts.
    :param seed: seeds the random play.
    :param pixelcnn_frames: frames for PixelCNN timing (default ``min(frames, 256)``: it is ~50x slower).
    :param wrapper_steps: agent steps per env for the wrapper comparison (default ``min(frames, 1000)``).
    :param rnd_frames: frames for RND timing after the 128 that initialise its statistics (default
        ``min(frames, 512)``).
    :return: keys ``cts_ms_per_frame``, ``cts_memory_mb``, ``cts_memory_used_mb``, ``cts_nodes``,
        ``pixelcnn_ms_per_frame``, ``pixelcnn_batched_ms_per_frame``, ``plain_steps_per_s``,
        ``wrapped_steps_per_s``, ``wrapper_steps_per_s_ratio`` (wrapped / plain) and the ``vector_``
        versions of the last three, ``rnd_ms_per_frame``, ``rnd_batched_ms_per_frame``, ``rnd_memory_mb``, plus the
        settings.
    """
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    start = time.perf_counter()
    data = collect_atari_frames(game, frames, seed)
    result: dict[str, Any] = {"game": game, "frames": int(len(data)), "seed": seed}
    result["collect_seconds"] = time.perf_counter() - start
    result.update(measure_cts(data))
    n_pixelcnn = min(frames, 256) if pixelcnn_frames is None else pixelcnn_frames
    result["pixelcnn_frames"] = n_pixelcnn
    result.update(measure_pixelcnn(data[:n_pixelcnn]))
    n_rnd = min(frames, 512) if rnd_frames is None else rnd_frames
    result.update(measure_rnd(collect_raw_frames(game, 128 + n_rnd, seed), init_frames=128))
    n_steps = min(frames, 1000) if wrapper_steps is None else wrapper_steps
    result["wrapper_steps"] = n_steps
    result.update(measure_wrapper(game, n_steps, seed))
    return result


def format_density_table(result: dict[str, Any]) -> str:
    """A plain-text table of :func:`run_density_bench`'s result."""
    rows = [
        ("CTS update + recoding", f"{result['cts_ms_per_frame']:.3f} ms/frame", f"{result['frames']} frames"),
        (
            "CTS memory",
            f"{result['cts_memory_mb']:.1f} MB",
            f"{result['cts_memory_used_mb']:.1f} MB in {result['cts_nodes']:,} nodes",
        ),
        (
            "PixelCNN online (paper)",
            f"{result['pixelcnn_ms_per_frame']:.2f} ms/frame",
            f"{result['pixelcnn_frames']} frames",
        ),
        ("PixelCNN batched (32)", f"{result['pixelcnn_batched_ms_per_frame']:.2f} ms/frame", "deviation"),
        ("RND online (1 per call)", f"{result['rnd_ms_per_frame']:.2f} ms/frame", f"{result['rnd_frames']} frames"),
        ("RND batched (32)", f"{result['rnd_batched_ms_per_frame']:.2f} ms/frame", "a vector env's step"),
        ("RND memory", f"{result['rnd_memory_mb']:.1f} MB", "networks, Adam, normaliser; constant"),
        (
            "single env steps/s",
            f"{result['plain_steps_per_s']:.0f} -> {result['wrapped_steps_per_s']:.0f}",
            f"ratio {result['wrapper_steps_per_s_ratio']:.2f} (CTS wrapper)",
        ),
        (
            "8-env vector steps/s",
            f"{result['vector_plain_steps_per_s']:.0f} -> {result['vector_wrapped_steps_per_s']:.0f}",
            f"ratio {result['vector_wrapper_steps_per_s_ratio']:.2f} (one CTS per env)",
        ),
    ]
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    title = f"density bench: {result['game']}, random play, one core"
    lines = [title, "-" * len(title)]
    lines += [f"{a:<{width[0]}}  {b:>{width[1]}}  {c}" for a, b, c in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """``python -m launch.bench.density [--frames N] [--game G] [--json]``."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--game", default="montezuma_revenge")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    result = run_density_bench(args.frames, args.game, args.seed)
    print(json.dumps(result, indent=2) if args.json else format_density_table(result))


if __name__ == "__main__":
    main()
