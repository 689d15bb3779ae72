"""The learner loop without per-update host syncs: replay batches gathered into preallocated buffers (optionally one
update ahead by a thread), staging buffers that move a batch in one copy, and the runtime's log window that reads
device scalars once per window."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from agents.replay.buffer import PrioritizedReplay
from agents.replay.nstep import NStepBuilder
from agents.replay.prefetch import ReplaySampler
from agents.runtime.loop import _Window
from worldmodels.common.device import StagingBuffer

CPU = torch.device("cpu")
SIDE = 10  # frames of 10x10: the smallest size a DQN torso takes (MinAtar's)


def _replay(prioritized: bool = True, seed: int = 0, steps: int = 300) -> PrioritizedReplay:
    """A replay of ``steps`` transitions of 2 envs with 10x10 frames, stack 2, random rewards and episode ends."""
    rng = np.random.default_rng(seed)
    replay = PrioritizedReplay(1000, stack=2, frame_shape=(SIDE, SIDE), prioritized=prioritized, seed=seed)
    builder = NStepBuilder(2, n=2, gamma=0.9, stack=2, frame_shape=(SIDE, SIDE), seed=seed, mc_returns=True)
    builder.reset(rng.integers(0, 255, (2, SIDE, SIDE), dtype=np.uint8))
    resetting = np.zeros(2, bool)
    for t in range(steps):
        ended = (rng.random(2) < 0.05) & ~resetting  # NextStep autoreset: the step after an end only resets
        resetting = ended
        builder.step(rng.integers(0, 3, 2), rng.normal(size=(2, 3)).astype(np.float32), rng.normal(size=2),
                     ended, np.zeros(2, bool), rng.integers(0, 255, (2, SIDE, SIDE), dtype=np.uint8))
        if t % 50 == 49:
            replay.add(builder.flush())
    return replay


def test_sample_into_preallocated_arrays_equals_a_plain_sample() -> None:
    a, b = _replay(), _replay()
    buf = StagingBuffer({"obs": ((8, 2, SIDE, SIDE), np.uint8), "next_obs": ((8, 2, SIDE, SIDE), np.uint8),
                         "actions": ((8,), np.int64), "returns": ((8,), np.float32),
                         "discounts": ((8,), np.float32), "weights": ((8,), np.float32),
                         "mc_returns": ((8,), np.float32)}, CPU)
    for beta in (0.4, 0.7):
        plain = a.sample(8, beta=beta)
        into = b.sample(8, beta=beta, out=buf.host)
        assert into.obs is buf.host["obs"]  # gathered in place
        for name in ("obs", "next_obs", "actions", "returns", "discounts", "weights", "indices", "generations",
                     "mc_returns"):
            np.testing.assert_array_equal(getattr(plain, name), getattr(into, name), err_msg=name)
    assert a.sample(4, mc_returns=False).mc_returns is None


def test_staging_buffer_packs_aligned_arrays_and_views_them_on_the_cpu_without_a_copy() -> None:
    layout: dict[str, tuple[tuple[int, ...], Any]] = {"a": ((3, 5), np.uint8), "b": ((7,), np.int64),
                                                      "c": ((2, 3), np.float32), "d": ((4,), np.bool_)}
    buf = StagingBuffer(layout, CPU)
    assert buf.fits(layout) and not buf.fits({**layout, "a": ((3, 6), np.uint8)})
    for name, (shape, dtype) in layout.items():
        arr = buf.host[name]
        assert arr.shape == shape and arr.dtype == dtype and arr.ctypes.data % 64 == 0
        arr[...] = np.arange(arr.size).reshape(shape).astype(dtype)
    out = buf.to_device()
    for name, arr in buf.host.items():
        assert out[name].data_ptr() == arr.ctypes.data  # the same memory
        np.testing.assert_array_equal(out[name].numpy(), arr)


@pytest.mark.parametrize("prioritized", [True, False])
def test_sequential_sampler_draws_what_the_replay_draws(prioritized: bool) -> None:
    a, b = _replay(prioritized), _replay(prioritized)
    sampler = ReplaySampler(b, 8, CPU, mc_returns=False, prefetch=False)
    for k in range(5):
        want = a.sample(8, beta=0.5)
        got = sampler.take(0.5)
        assert got.mc_returns is None
        np.testing.assert_array_equal(got.obs.numpy(), want.obs)
        np.testing.assert_array_equal(got.indices, want.indices)
        sampler.release(got)
        td = np.full(8, float(k + 1))
        a.update_priorities(want.indices, td, want.generations)
        b.update_priorities(got.indices, td, got.generations)


def test_prefetch_draws_the_next_batch_before_the_current_priorities_are_written() -> None:
    """Prefetch = sequential sampling with every batch drawn one update earlier: batch k + 1 sees the priorities
    written up to update k - 1. Replayed by hand on a twin replay; and the priorities each update writes are those
    of its own batch (slots and generations)."""
    a, b = _replay(), _replay()
    sampler = ReplaySampler(b, 8, CPU, mc_returns=True, prefetch=True)
    try:
        expected = [a.sample(8, beta=0.4)]  # batch 0, drawn at update 0
        for k in range(6):
            got = sampler.take(0.4)  # batch k; the thread now draws batch k + 1 from b (priorities up to k - 1)
            expected.append(a.sample(8, beta=0.4))  # ... as a draws it here, before writing update k's priorities
            want = expected[k]
            np.testing.assert_array_equal(got.indices, want.indices)
            np.testing.assert_array_equal(got.generations, want.generations)
            np.testing.assert_array_equal(got.obs.numpy(), want.obs)
            assert got.mc_returns is not None and want.mc_returns is not None
            np.testing.assert_array_equal(got.mc_returns.numpy(), want.mc_returns)
            td = np.arange(8, dtype=np.float64) * (k + 1)
            sampler.release(got)
            sampler.replay_idle()
            b.update_priorities(got.indices, td, got.generations)
            a.update_priorities(want.indices, td, want.generations)
            np.testing.assert_array_equal(a._tree.get(want.indices), b._tree.get(got.indices))
    finally:
        sampler.close()


def test_window_sums_device_scalars_without_reading_them_until_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    window = _Window()
    reads: list[str] = []
    for name in ("item", "tolist", "__float__"):
        original = getattr(torch.Tensor, name)

        def spy(self: torch.Tensor, *args: Any, _name: str = name, _original: Any = original) -> Any:
            reads.append(_name)
            return _original(self, *args)

        monkeypatch.setattr(torch.Tensor, name, spy)
    for k in range(4):
        window.add({"losses/a": torch.tensor(float(k)), "b": torch.tensor(2.0 * k), "charts/c": 0.5 * k})
    assert reads == []
    out = window.flush()
    assert reads == ["tolist"]  # one read for the whole window
    assert out == pytest.approx({"losses/a": 1.5, "losses/b": 3.0, "charts/c": 0.75})
    assert window.flush() == {}


def _dqn_run(tmp_path: Path, name: str, *overrides: str) -> tuple[Any, dict[str, torch.Tensor]]:
    from agents.dqn.config import DQNConfig
    from agents.dqn.train import train
    from launch.config import load_config
    from worldmodels.common.checkpoint import find_checkpoint, load_checkpoint

    cfg = load_config(DQNConfig, ["dqn_catch"], [
        "run.total_frames=2500", "run.eval_episodes=0", "run.progress=false", "agent.learning_starts_frames=800",
        "agent.batch_size=8", "network.hidden=16", "run.log_every_frames=500", f"run.runs_dir={tmp_path}",
        f"run.name={name}", *overrides])
    state = train(cfg)
    return state, load_checkpoint(find_checkpoint(tmp_path / name))["learner"]["online"]


@pytest.mark.parametrize("prioritized", ["true", "false"])
def test_dqn_with_prefetch_is_deterministic_and_differs_from_sequential_only_by_the_staleness(
        tmp_path: Path, prioritized: str) -> None:
    p = f"replay.prioritized={prioritized}"
    a, wa = _dqn_run(tmp_path, "a", "replay.prefetch=true", p)
    b, wb = _dqn_run(tmp_path, "b", "replay.prefetch=true", p)
    c, wc = _dqn_run(tmp_path, "c", "replay.prefetch=false", p)
    assert a.updates == b.updates == c.updates > 0
    assert a.returns == b.returns and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)  # batches one update staler: another run


def test_uniform_replay_copies_no_td_errors_and_plain_dqn_samples_no_mc_returns(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from agents.dqn.config import DQNConfig
    from agents.dqn.learning import DQNReplayLearner
    from agents.runtime.algorithm import Counters

    cfg = DQNConfig()
    cfg.replay.capacity, cfg.replay.prioritized, cfg.agent.batch_size = 1000, False, 8
    cfg.network.hidden = 16
    learner = DQNReplayLearner(3, (2, SIDE, SIDE), (SIDE, SIDE), 2, 1, cfg)
    learner.replay = _replay(prioritized=False)
    learner.sampler = ReplaySampler(learner.replay, 8, CPU, mc_returns=False, prefetch=False)
    assert not learner.sampler.mc_returns  # mc_mix = 0: the sampler gathers no Monte Carlo returns

    def no_priorities(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("update_priorities called for uniform replay")

    def no_host_copy(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a tensor was copied to the host during an update")

    learner.update(Counters(steps=100, total_steps=1000))  # the optimiser's state now exists
    # Adam's step counters are host tensors (also with CUDA parameters): reading them is no device sync.
    steps = {id(state["step"]) for state in learner.core.optimizer.state.values()}
    item = torch.Tensor.item

    def step_counter_only(self: torch.Tensor) -> Any:
        if id(self) not in steps:
            raise AssertionError("a tensor was read on the host during an update")
        return item(self)

    monkeypatch.setattr(learner.replay, "update_priorities", no_priorities)
    for name in ("cpu", "numpy", "tolist", "__float__"):
        monkeypatch.setattr(torch.Tensor, name, no_host_copy)
    monkeypatch.setattr(torch.Tensor, "item", step_counter_only)
    stats = learner.update(Counters(steps=101, total_steps=1000))
    monkeypatch.undo()
    assert set(stats) == {"losses/td_loss", "losses/q_values"}
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in stats.values())
