"""PrioritizedReplay and NStepBuilder with channels-first 3-D frames (C, H, W), as MinAtar's: each frame stored
once, sampled observations in the environment's shape [B, S * C, H, W], checkpoints with the full frame shape."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from agents.replay.buffer import PrioritizedReplay
from agents.replay.nstep import Chunk, NStepBuilder

FRAME = (2, 3, 3)  # C, H, W


def frame(k: int) -> np.ndarray:
    """A distinct frame per k: channel c holds 10 k + c + 1 everywhere, then 100 + k in the corner."""
    f = np.stack([np.full(FRAME[1:], 10 * k + c + 1, np.uint8) for c in range(FRAME[0])])
    f[1, 0, 0] = 100 + k
    return f


def chunk(num_frames: int = 4, stack: int = 2, first_frame_id: int = 0) -> Chunk:
    """Frames 0..num_frames-1 of one episode; transition t goes from the stack ending in frame t to the one ending
    in frame t + 1 (zero padding before frame 0), action t, return t, discount 0.5."""
    T = num_frames - 1
    ids = np.arange(num_frames) + first_frame_id
    stacks = np.array([[ids[j] if j >= 0 else -1 for j in range(t - stack + 1, t + 1)] for t in range(num_frames)])
    return Chunk(actor_id=0, incarnation=1, first_frame_id=first_frame_id,
                 frames=np.stack([frame(k) for k in range(num_frames)]), obs_ids=stacks[:-1], next_ids=stacks[1:],
                 actions=np.arange(T), returns=np.arange(T, dtype=np.float32), discounts=np.full(T, 0.5, np.float32),
                 priorities=np.ones(T, np.float32), num_steps=T)


def expected_obs(t: int, stack: int = 2) -> np.ndarray:
    """The stacked observation ending in frame t: the frames' channels concatenated, oldest first."""
    parts = [frame(j) if j >= 0 else np.zeros(FRAME, np.uint8) for j in range(t - stack + 1, t + 1)]
    return np.concatenate(parts, axis=0)


def test_sampled_batch_of_3d_frames_is_exact() -> None:
    replay = PrioritizedReplay(10, stack=2, frame_shape=FRAME, seed=0)
    assert replay.frame_shape == FRAME and replay.obs_shape == (4, 3, 3)
    replay.add(chunk())
    assert replay._frames.shape[1:] == FRAME  # each frame stored once, as it came
    batch = replay.sample(30)
    assert batch.obs.shape == batch.next_obs.shape == (30, 4, 3, 3) and batch.obs.dtype == np.uint8
    assert set(batch.actions.tolist()) == {0, 1, 2}
    for k, t in enumerate(batch.actions.tolist()):
        np.testing.assert_array_equal(batch.obs[k], expected_obs(t))
        np.testing.assert_array_equal(batch.next_obs[k], expected_obs(t + 1))
        assert batch.returns[k] == t and batch.discounts[k] == 0.5
    # Transition 0 by hand: zero padding, then frame 0; its successor: frame 0, then frame 1.
    k = batch.actions.tolist().index(0)
    np.testing.assert_array_equal(batch.obs[k, :2], 0)
    np.testing.assert_array_equal(batch.obs[k, 2:], frame(0))
    np.testing.assert_array_equal(batch.next_obs[k], np.concatenate([frame(0), frame(1)]))


def test_stack_one_gives_the_minatar_observation_shape() -> None:
    replay = PrioritizedReplay(10, stack=1, frame_shape=(7, 10, 10), seed=0)
    frames = np.random.default_rng(0).integers(0, 2, (3, 7, 10, 10), dtype=np.uint8)
    replay.add(Chunk(actor_id=0, incarnation=1, first_frame_id=0, frames=frames, obs_ids=np.array([[0], [1]]),
                     next_ids=np.array([[1], [2]]), actions=np.array([0, 1]), returns=np.zeros(2, np.float32),
                     discounts=np.ones(2, np.float32), priorities=np.ones(2, np.float32), num_steps=2))
    batch = replay.sample(8)
    assert batch.obs.shape == (8, 7, 10, 10)
    for k, a in enumerate(batch.actions.tolist()):
        np.testing.assert_array_equal(batch.obs[k], frames[a])
        np.testing.assert_array_equal(batch.next_obs[k], frames[a + 1])


def test_builder_chunks_of_3d_frames() -> None:
    builder = NStepBuilder(1, n=1, gamma=0.5, stack=2, frame_shape=FRAME, seed=0)
    builder.reset(frame(0)[None])
    for t in range(1, 4):
        builder.step(np.array([t - 1]), None, np.array([float(t - 1)]), np.array([False]), np.array([False]),
                     frame(t)[None])
    c = builder.flush()
    assert c.frames.shape == (4, *FRAME)
    np.testing.assert_array_equal(c.frames, np.stack([frame(k) for k in range(4)]))
    np.testing.assert_array_equal(c.obs_ids, [[-1, 0], [0, 1], [1, 2]])
    replay = PrioritizedReplay(10, stack=2, frame_shape=FRAME, seed=0)
    replay.add(c)
    batch = replay.sample(12)
    for k, t in enumerate(batch.actions.tolist()):
        np.testing.assert_array_equal(batch.obs[k], expected_obs(t))
        np.testing.assert_array_equal(batch.next_obs[k], expected_obs(t + 1))
    assert builder.flush().frames.shape == (0, *FRAME)
    with pytest.raises(ValueError, match=r"next_frames must be uint8 \[1, 2, 3, 3\]"):
        builder.step(np.array([0]), None, np.zeros(1), np.zeros(1, bool), np.zeros(1, bool), frame(0))
    with pytest.raises(ValueError, match="frame_shape"):
        NStepBuilder(1, n=1, gamma=0.5, frame_shape=(1, 2, 3, 4))


def test_3d_state_dict_round_trip_and_shape_checks() -> None:
    replay = PrioritizedReplay(10, stack=2, frame_shape=FRAME, seed=3)
    replay.add(chunk(5))
    replay.sample(4)
    state = replay.state_dict()
    assert tuple(state["frame_shape"]) == FRAME and "frame_height" not in state
    buf = io.BytesIO()
    torch.save({"replay": state}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=False)["replay"]
    copy = PrioritizedReplay(10, stack=2, frame_shape=FRAME, seed=99)
    copy.load_state_dict(state)
    a, b = replay.sample(16), copy.sample(16)
    for key in ("obs", "actions", "returns", "discounts", "next_obs", "weights", "indices", "generations"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    with pytest.raises(ValueError, match=r"frame_shape=\(2, 3, 3\) but this replay has frame_shape=\(3, 3, 2\)"):
        PrioritizedReplay(10, stack=2, frame_shape=(3, 3, 2)).load_state_dict(state)
    with pytest.raises(ValueError, match="chunk.frames must be uint8"):
        PrioritizedReplay(10, stack=2, frame_shape=(3, 3)).add(chunk())


def test_old_checkpoints_with_frame_height_and_width_still_load() -> None:
    replay = PrioritizedReplay(10, stack=1, frame_shape=(3, 4), seed=0)
    frames = np.arange(3 * 12, dtype=np.uint8).reshape(3, 3, 4)
    replay.add(Chunk(actor_id=0, incarnation=1, first_frame_id=0, frames=frames, obs_ids=np.array([[0], [1]]),
                     next_ids=np.array([[1], [2]]), actions=np.array([0, 1]), returns=np.zeros(2, np.float32),
                     discounts=np.ones(2, np.float32), priorities=np.ones(2, np.float32), num_steps=2))
    old = dict(replay.state_dict())
    del old["frame_shape"]
    old["frame_height"], old["frame_width"] = 3, 4  # the format before 3-D frames
    copy = PrioritizedReplay(10, stack=1, frame_shape=(3, 4), seed=0)
    copy.load_state_dict(old)
    np.testing.assert_array_equal(copy.sample(8).obs, replay.sample(8).obs)
    with pytest.raises(ValueError, match="frame_shape"):
        PrioritizedReplay(10, stack=1, frame_shape=(1, 3, 4)).load_state_dict(old)


def test_memory_plan_counts_every_channel() -> None:
    for shape in ((84, 84), (10, 10, 10), (4, 10, 10)):
        r = PrioritizedReplay(1000, num_shards=2, stack=1, frame_shape=shape)
        assert r.memory_bytes() == PrioritizedReplay.bytes_for(1000, num_shards=2, stack=1, frame_shape=shape)
    per_frame = PrioritizedReplay.bytes_for(10_000, stack=1, frame_shape=(10, 10, 10)) - PrioritizedReplay.bytes_for(
        10_000, stack=1, frame_shape=(1, 10, 10))
    frames = 10_000 + 10_000 // 16 + 256 + 1
    assert per_frame == frames * 9 * 100
    with pytest.raises(ValueError, match="frame_shape"):
        PrioritizedReplay(10, frame_shape=(84,))
