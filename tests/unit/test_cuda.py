"""One update of every algorithm's learner on a CUDA device, beside the same update on the CPU (skipped without a
GPU). Each learner is fed the same chunks by one CPU actor; the CUDA update must give the CPU's losses and move the
weights the same way, keep its statistics on the device (no host sync), and hand the actors CPU weights.

MFEC has no learner on a device (its memory is a CPU k-NN index whatever ``runtime.device`` says), so it has no case.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from agents.registry import get_builder
from agents.runtime.actor import EnvActor
from agents.runtime.algorithm import Counters, env_spec
from launch.config import load_config, peek_algo

CUDA_ONLY = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

_DQN = ["run.progress=false", "run.eval_episodes=0", "agent.learning_starts_frames=64", "agent.batch_size=16",
        "network.hidden=32", "replay.capacity=4096"]
_STRAW = ["env.num_envs=4", "straw.plan_len=16", "straw.num_filters=3", "network.hidden=16", "straw.hidden=8",
          "straw.latent_dim=4", "agent.unroll_length=6", "runtime.chunk_steps=6", "run.progress=false",
          "run.eval_episodes=0"]
# PPO with one minibatch: its shuffle draws from the device's generator, so CPU and CUDA would otherwise split the
# batch differently (the same steps in another order within one minibatch change only the summation order).
CASES: dict[str, tuple[str, list[str]]] = {
    "dqn": ("dqn_catch", [*_DQN, "replay.prioritized=false"]),
    "dqn_prioritized_prefetch": ("dqn_catch", [*_DQN, "replay.prioritized=true", "replay.prefetch=true"]),
    "dqn_mixed_mc": ("dqn_catch", [*_DQN, "agent.mc_mix=0.1"]),
    "a2c": ("a2c_tiny", ["run.progress=false"]),
    "ppo": ("a2c_tiny", ["run.progress=false", "agent.loss=ppo", "agent.ppo_minibatches=1"]),
    "ppo_lstm": ("a2c_tiny", ["run.progress=false", "agent.loss=ppo", "agent.ppo_minibatches=1",
                              "network.core=lstm"]),
    "impala": ("a2c_tiny", ["run.progress=false", "agent.loss=impala"]),
    "straw": ("strawe_maze", _STRAW),
}


def _load(preset: str, overrides: list[str]) -> Any:
    return load_config(get_builder(peek_algo([preset])).config_class, [preset], overrides)


def one_update_on(device: torch.device, case: str) -> None:
    """Feed a CPU learner and a learner on ``device`` the same chunks, update each once, and compare."""
    cfg = _load(*CASES[case])
    builder = get_builder(cfg.algo)
    actor = EnvActor(0, builder.actor_setup(cfg, distributed=False).parts_fn, cfg, seed=cfg.run.seed + 1000)
    spec = env_spec(actor.env)
    cpu = builder.make_learner(cfg, spec, torch.device("cpu"))
    dev = builder.make_learner(cfg, spec, device)
    before = cpu.get_weights()
    assert all(torch.equal(before[k], v) for k, v in dev.get_weights().items())  # the same initialisation
    counters = Counters(frame_skip=spec.frame_skip, total_steps=cfg.run.total_frames // spec.frame_skip)
    out = actor.run(cfg.runtime.chunk_steps, 0, before, 0)
    while True:
        cpu.ingest(out)
        dev.ingest(out)
        counters.steps += out.env_steps
        if cpu.updates_due(counters) > 0:
            break
        out = actor.run(cfg.runtime.chunk_steps, counters.frames)
    assert dev.updates_due(counters) == cpu.updates_due(counters)
    torch.manual_seed(0)
    want = cpu.update(counters)
    torch.manual_seed(0)
    got = dev.update(counters)
    assert set(got) == set(want)
    for key, value in got.items():
        if isinstance(value, torch.Tensor):  # statistics stay on the device (read once per log window)
            assert value.device.type == device.type, key
        assert float(value) == pytest.approx(float(want[key]), rel=1e-3, abs=1e-5), key
    after_cpu, after_dev = cpu.get_weights(), dev.get_weights()
    assert all(v.device.type == "cpu" for v in after_dev.values())  # what actors get
    moved = torch.cat([(after_cpu[k] - before[k]).flatten().double() for k in before])
    moved_dev = torch.cat([(after_dev[k] - before[k]).flatten().double() for k in before])
    assert moved.abs().max() > 0  # the update changed the weights ...
    cosine = float(moved @ moved_dev / (moved.norm() * moved_dev.norm()))
    assert cosine > 0.99, cosine  # ... the same way on both devices
    replay = getattr(cpu, "replay", None)
    if replay is not None and replay.prioritized:  # the priorities the update wrote back
        slots = np.arange(replay.capacity)
        np.testing.assert_allclose(dev.replay._tree.get(slots), replay._tree.get(slots), rtol=1e-3, atol=1e-6)


@CUDA_ONLY
@pytest.mark.parametrize("case", list(CASES))
def test_one_update_on_cuda_matches_the_cpu(case: str) -> None:
    one_update_on(torch.device("cuda"), case)


@CUDA_ONLY
def test_staging_buffer_moves_a_batch_in_one_copy_from_pinned_memory() -> None:
    from worldmodels.common.device import StagingBuffer

    layout: dict[str, tuple[tuple[int, ...], Any]] = {"obs": ((4, 3, 10, 10), np.uint8), "a": ((4,), np.int64),
                                                      "r": ((4,), np.float32), "v": ((4,), np.bool_)}
    buf = StagingBuffer(layout, torch.device("cuda"))
    rng = np.random.default_rng(0)
    for _ in range(3):  # reused: each fill waits for the last copy out of the host buffer
        buf.wait_host_free()
        want = {"obs": rng.integers(0, 255, (4, 3, 10, 10), dtype=np.uint8), "a": rng.integers(0, 9, 4),
                "r": rng.normal(size=4).astype(np.float32), "v": rng.random(4) < 0.5}
        for name, arr in want.items():
            buf.host[name][...] = arr
        got = buf.to_device()
        for name, arr in want.items():
            assert got[name].is_cuda and got[name].dtype == torch.from_numpy(arr).dtype
            np.testing.assert_array_equal(got[name].cpu().numpy(), arr)
        buf.release()
    assert buf._host_bytes.is_pinned()


@CUDA_ONLY
@pytest.mark.parametrize("prefetch", [False, True])
def test_replay_sampler_on_cuda_gives_the_cpu_batches(prefetch: bool) -> None:
    from agents.replay.prefetch import ReplaySampler
    from tests.unit.test_prefetch import _replay

    cpu = ReplaySampler(_replay(), 8, torch.device("cpu"), mc_returns=True, prefetch=prefetch)
    gpu = ReplaySampler(_replay(), 8, torch.device("cuda"), mc_returns=True, prefetch=prefetch)
    try:
        for k in range(4):
            a, b = cpu.take(0.5), gpu.take(0.5)
            for name in ("obs", "next_obs", "actions", "returns", "discounts", "weights", "mc_returns"):
                x, y = getattr(a, name), getattr(b, name)
                assert y.is_cuda, name
                torch.testing.assert_close(y.cpu(), x, rtol=0, atol=0, equal_nan=True, msg=name)
            np.testing.assert_array_equal(a.indices, b.indices)
            cpu.release(a)
            gpu.release(b)
            for sampler, batch in ((cpu, a), (gpu, b)):
                sampler.replay_idle()
                sampler.replay.update_priorities(batch.indices, np.full(8, k + 1.0), batch.generations)
    finally:
        cpu.close()
        gpu.close()
