"""Replay batches on the learner's device, gathered into preallocated buffers, optionally one update ahead.

:class:`ReplaySampler` samples a :class:`~agents.replay.buffer.PrioritizedReplay` into a
:class:`~worldmodels.common.device.StagingBuffer` (pinned host memory when the learner is on CUDA) and moves the
whole batch to the device with one copy. Two modes (``replay.prefetch``):

- sequential (``prefetch=False``): :meth:`ReplaySampler.take` samples batch k when update k asks for it, after the
  priorities of update k - 1 were written and every chunk ingested so far is in the replay. This is the exact
  algorithm (Schaul et al. 2016, Alg. 1).
- prefetch (``prefetch=True``): :meth:`~ReplaySampler.take` hands over batch k, sampled by a worker thread while
  update k - 1 ran, and at once sets the thread on batch k + 1, which it gathers and copies to the device while the
  caller runs update k. So batch k + 1 is drawn before update k writes its priorities and before the chunks that
  arrive between the two updates are ingested: priorities and data one update staler than sequential sampling
  (as in Ape-X, Horgan et al. 2018, where the learner always trails the replay). The importance-sampling exponent
  is the one of update k (it anneals over the whole run: the difference is negligible). The priorities written by
  update k are those of batch k (its slots and generations travel with the batch).

Either way the result is deterministic for a fixed seed: the thread samples at a fixed point of the update (after
:meth:`~ReplaySampler.take`, before :meth:`~ReplaySampler.replay_idle` returns), never while the caller writes the
replay.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from agents.replay.buffer import PrioritizedReplay
from worldmodels.common.device import StagingBuffer


@dataclass
class DeviceBatch:
    """A sampled batch on the learner's device (views of a staging buffer, valid until the next
    :meth:`ReplaySampler.take` but one) and where it came from in the replay."""

    obs: torch.Tensor
    """uint8 ``[B, *obs_shape]``."""
    actions: torch.Tensor
    """int64 ``[B]``."""
    returns: torch.Tensor
    """float32 ``[B]``."""
    discounts: torch.Tensor
    """float32 ``[B]``."""
    next_obs: torch.Tensor
    """uint8 ``[B, *obs_shape]``."""
    weights: torch.Tensor
    """float32 ``[B]`` importance weights."""
    mc_returns: torch.Tensor | None
    """float32 ``[B]`` Monte Carlo returns (NaN = unknown), or None when not sampled (``agent.mc_mix = 0``)."""
    indices: np.ndarray
    """int64 ``[B]`` replay slots, for :meth:`PrioritizedReplay.update_priorities`."""
    generations: np.ndarray
    """int64 ``[B]`` their generations at sampling time."""
    slot: int
    """Which staging buffer holds it."""


class ReplaySampler:
    """Batches of ``batch_size`` from ``replay`` on ``device`` (see the module docstring).

    :param replay: the replay (written only by the caller, between updates).
    :param batch_size: B.
    :param device: the learner's device.
    :param mc_returns: sample the Monte Carlo returns (only ``agent.mc_mix > 0`` needs them).
    :param prefetch: sample the next batch in a worker thread during the current update.
    """

    def __init__(self, replay: PrioritizedReplay, batch_size: int, device: torch.device, mc_returns: bool,
                 prefetch: bool) -> None:
        self.replay = replay
        self.batch_size = int(batch_size)
        self.device = device
        self.mc_returns = bool(mc_returns)
        self.prefetch = bool(prefetch)
        B, obs = self.batch_size, (self.batch_size, *replay.obs_shape)
        layout: dict[str, tuple[tuple[int, ...], Any]] = {
            "obs": (obs, np.uint8), "next_obs": (obs, np.uint8), "actions": ((B,), np.int64),
            "returns": ((B,), np.float32), "discounts": ((B,), np.float32), "weights": ((B,), np.float32)}
        if self.mc_returns:
            layout["mc_returns"] = ((B,), np.float32)
        # Two buffers when prefetching: the thread fills one while the update reads the other.
        self._buffers = [StagingBuffer(layout, device) for _ in range(2 if self.prefetch else 1)]
        self._where: list[tuple[np.ndarray, np.ndarray]] = [(np.empty(0, np.int64), np.empty(0, np.int64))] * len(
            self._buffers)
        self._next = 0
        self._pending: Future[int] | None = None
        self._sampled = threading.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="replay-prefetch") if self.prefetch else None
        self._stream = torch.cuda.Stream(device) if self.prefetch and device.type == "cuda" else None

    def _fill(self, slot: int, beta: float, stream: torch.cuda.Stream | None) -> int:
        """Sample into buffer ``slot`` and start its copy to the device (on ``stream``)."""
        buf = self._buffers[slot]
        try:
            buf.wait_host_free()
            batch = self.replay.sample(self.batch_size, beta=beta, out=buf.host, mc_returns=self.mc_returns)
            self._where[slot] = (batch.indices, batch.generations)
        finally:
            self._sampled.set()  # done with the replay, whatever happened
        buf.to_device(stream)
        if stream is not None:
            stream.synchronize()  # the host buffer is free again once this thread returns
        return slot

    def take(self, beta: float) -> DeviceBatch:
        """The next batch on the device (sampled now, or during the previous update when prefetching); with
        prefetch, the thread starts on the batch after it. Call :meth:`release` once its update is queued."""
        if self._pending is None:  # sequential, or the first batch (or the first after :meth:`discard`)
            self._sampled.clear()
            slot = self._fill(self._next, beta, None)
        else:
            slot, self._pending = self._pending.result(), None
        self._next = (slot + 1) % len(self._buffers)
        if self._executor is not None:
            self._sampled.clear()
            self._pending = self._executor.submit(self._fill, self._next, beta, self._stream)
        t = self._buffers[slot].ready()
        indices, generations = self._where[slot]
        return DeviceBatch(t["obs"], t["actions"], t["returns"], t["discounts"], t["next_obs"], t["weights"],
                           t.get("mc_returns"), indices, generations, slot)

    def release(self, batch: DeviceBatch) -> None:
        """The update of ``batch`` is queued on the device: its buffer may be refilled once that work has run."""
        self._buffers[batch.slot].release()

    def replay_idle(self) -> None:
        """Wait until the worker thread no longer reads the replay: call before writing the replay (priorities,
        new chunks, a restore)."""
        if self._pending is not None:
            self._sampled.wait()

    def discard(self) -> None:
        """Drop a batch sampled ahead (the replay was replaced, e.g. restored from a checkpoint)."""
        if self._pending is not None:
            self._pending.result()
            self._pending = None

    def close(self) -> None:
        self.discard()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
