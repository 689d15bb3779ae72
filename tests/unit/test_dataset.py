"""Trajectory datasets: shard/manifest round trip, episode splits, windows, corrupt shards, binarisation,
and the collector's episode stitching on the tiny Catch game."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from worldmodels.data import Binarizer, DatasetError, DatasetWriter, TrajectoryDataset, read_manifest, resize_frames


def _episode(eid: int, n: int, terminal: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames whose pixels encode (episode, step), so every row can be traced back."""
    frames = np.zeros((n, 84, 84), dtype=np.uint8)
    frames[:, 0, 0] = eid
    frames[:, 0, 1] = np.arange(n)
    actions = np.arange(n, dtype=np.int64) % 3
    if terminal:
        actions[-1] = -1
    rewards = np.where(np.arange(n) % 4 == 3, 1.0, 0.0).astype(np.float32)
    return frames, actions, rewards


def _write(root: Path, lengths: list[int], fraction: float = 0.25, shard_frames: int = 25) -> dict:
    w = DatasetWriter(root, {"game": "test"}, heldout_fraction=fraction, shard_frames=shard_frames)
    for i, n in enumerate(lengths):
        w.add_episode(*_episode(i, n), terminal=i != len(lengths) - 1)
    return w.close()


def test_round_trip_split_and_windows(tmp_path: Path) -> None:
    manifest = _write(tmp_path / "d", [10] * 8)
    # Greedy split with fraction 0.25: episode 0 (first one always), then episode 7 (20 <= 0.25 * 80).
    held = sorted(i for s in manifest["shards"] if s["split"] == "heldout" for i in s["episode_ids"])
    assert held == [0, 7]
    assert manifest["counts"]["heldout"] == {"frames": 20, "episodes": 2, "complete_episodes": 1}
    assert manifest["counts"]["train"] == {"frames": 60, "episodes": 6, "complete_episodes": 6}
    assert manifest["complete"] and read_manifest(tmp_path / "d")["shards"] == manifest["shards"]
    # Shards hold whole episodes: 25-frame target -> 3 + 3 train episodes, 2 held out in one shard.
    assert [s["frames"] for s in manifest["shards"] if s["split"] == "train"] == [30, 30]
    assert (tmp_path / "d/train/shard_00001.npz").is_file() and (tmp_path / "d/heldout/shard_00000.npz").is_file()

    ds = TrajectoryDataset(tmp_path / "d", "train", window=3)
    windows = list(ds)
    assert len(windows) == 6 * (10 - 3 + 1)
    for w in windows:
        assert w["frames"].shape == (3, 84, 84) and w["frames"].dtype == np.uint8
        assert len(set(w["episode_ids"])) == 1 and w["episode_ids"][0] not in (0, 7)
        assert list(w["frames"][:, 0, 1]) == list(range(w["frames"][0, 0, 1], w["frames"][0, 0, 1] + 3))
        assert list(w["actions"]) == [(int(s) % 3 if s != 9 else -1) for s in w["frames"][:, 0, 1]]
    terminal = [w for w in windows if w["terminals"][-1]]
    assert len(terminal) == 6 and all(w["actions"][-1] == -1 and w["frames"][-1, 0, 1] == 9 for w in terminal)
    held = list(TrajectoryDataset(tmp_path / "d", "heldout", window=1))
    assert sorted({int(w["episode_ids"][0]) for w in held}) == [0, 7]
    # The cut-off last episode has no terminal flag.
    assert not any(w["terminals"][0] for w in held if w["episode_ids"][0] == 7)


def test_shuffled_stream_and_frame_batches(tmp_path: Path) -> None:
    _write(tmp_path / "d", [10] * 8)
    ds = TrajectoryDataset(tmp_path / "d", "train", window=2, shuffle=True, seed=3, epochs=2)
    a = [tuple(w["frames"][:, 0, :2].ravel()) for w in ds]
    assert len(a) == 2 * 6 * 9 and sorted(a[:54]) == sorted(a[54:])
    assert a == [tuple(w["frames"][:, 0, :2].ravel()) for w in ds]  # same seed, same order
    batches = list(TrajectoryDataset(tmp_path / "d", "train").frame_batches(16))
    assert [len(b) for b in batches] == [16, 16, 16, 12]
    rows = np.concatenate(batches)[:, 0, :2]
    assert sorted(map(tuple, rows)) == sorted((e, s) for e in range(1, 7) for s in range(10))


def test_corrupt_shard_is_refused_or_skipped_by_name(tmp_path: Path) -> None:
    _write(tmp_path / "d", [10] * 8)
    shard = tmp_path / "d/train/shard_00001.npz"
    shard.write_bytes(shard.read_bytes()[:-100])  # truncated
    with pytest.raises(DatasetError, match=r"shard_00001\.npz: checksum mismatch"):
        list(TrajectoryDataset(tmp_path / "d", "train"))
    ds = TrajectoryDataset(tmp_path / "d", "train", on_corrupt="skip")
    ids = {int(w["episode_ids"][0]) for w in ds}
    assert ids == {1, 2, 3} and ds.skipped == [str(shard)]
    shard.unlink()
    with pytest.raises(DatasetError, match=r"shard_00001\.npz is unreadable"):
        TrajectoryDataset(tmp_path / "d", "train").verify()


def test_bad_folders_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="reverie collect"):
        TrajectoryDataset(tmp_path / "nothing")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy/x").write_text("keep")
    with pytest.raises(DatasetError, match="not empty"):
        DatasetWriter(tmp_path / "busy", {})
    _write(tmp_path / "d", [10, 10], fraction=0.0)
    with pytest.raises(DatasetError, match="no 'heldout' shards"):
        TrajectoryDataset(tmp_path / "d", "heldout")
    manifest = json.loads((tmp_path / "d/manifest.json").read_text())
    assert manifest["counts"]["heldout"]["frames"] == 0


def test_binarizer_background_rule_by_hand() -> None:
    # 84 -> 42 block average: each 2x2 block of (10, 20, 30, 40) becomes 25.
    block = np.tile(np.array([[10, 20], [30, 40]], dtype=np.uint8), (42, 42))[None]
    assert np.all(resize_frames(block, 42) == 25)
    assert np.array_equal(resize_frames(block, 84), block)
    # Background 100 everywhere; pixel (0, 0) is 200 in one frame of three, pixel (1, 1) is 110 in all three.
    frames = np.full((3, 84, 84), 100, dtype=np.uint8)
    frames[0, 0:2, 0:2] = 200
    frames[:, 2:4, 2:4] = 110
    b = Binarizer.fit([frames[:2], frames[2:]], size=42, threshold=24)
    assert b.background[0, 0] == 100 and b.background[1, 1] == 110 and b.background[5, 5] == 100
    test = np.full((1, 84, 84), 100, dtype=np.uint8)
    test[0, 0:2, 0:2] = 200   # |200 - 100| > 24 -> on
    test[0, 2:4, 2:4] = 100   # |100 - 110| <= 24 -> off
    test[0, 4:6, 4:6] = 125   # |125 - 100| = 25 > 24 -> on
    test[0, 6:8, 6:8] = 124   # exactly 24 -> off
    out = b(test)
    assert out.dtype == np.uint8 and out.shape == (1, 42, 42)
    assert out.sum() == 2 and out[0, 0, 0] == 1 and out[0, 2, 2] == 1
    again = Binarizer.from_state_dict(b.state_dict())
    assert np.array_equal(again(test), out)
    with pytest.raises(ValueError, match="42, 84"):
        Binarizer.fit([frames], size=21)


def test_collector_stitches_catch_episodes(tmp_path: Path) -> None:
    from launch.collect import collect

    m = collect("toy/catch", tmp_path / "c", 300, actors=0, envs_per_actor=3, chunk_steps=7, shard_frames=100,
                progress=False, heldout_fraction=0.2)
    assert m["counts"]["frames"] == 300 and m["num_actions"] == 3
    windows = [w for s in ("train", "heldout") for w in TrajectoryDataset(tmp_path / "c", s)]
    rows = {k: np.concatenate([w[k] for w in windows])
            for k in ("episode_ids", "actions", "rewards", "frames", "terminals")}
    assert set(rows["actions"].tolist()) == {-1, 0, 1, 2}  # the uniformly random policy plays every action
    complete = 0
    for e in np.unique(rows["episode_ids"]):
        sel = rows["episode_ids"] == e
        acts, rews = rows["actions"][sel], rows["rewards"][sel]
        frames, term = rows["frames"][sel], rows["terminals"][sel]
        # Catch: 5 balls x 6 steps = 30 actions and 31 frames (the last is the game-over observation).
        if term[-1]:
            complete += 1
            assert len(acts) == 31 and acts[-1] == -1 and np.all(acts[:-1] >= 0)
        # A ball lands every 6th step: the reward is +-1 there and 0 elsewhere.
        landed = np.arange(len(rews)) % 6 == 5
        assert np.all(np.abs(rews[landed & (acts >= 0)]) == 1) and np.all(rews[~landed] == 0)
        # The first frame shows the paddle (128) in the middle column (12-pixel cells: columns 36..47).
        assert np.all(frames[0, 72:84, 36:48] >= 128)
    assert complete >= 6


def test_collect_with_a_dqn_run_as_policy(tmp_path: Path) -> None:
    from agents.dqn.config import DQNConfig
    from agents.dqn.networks import QNetwork
    from launch.collect import collect
    from launch.config import to_yaml
    from worldmodels.common.checkpoint import save_checkpoint

    cfg = DQNConfig()
    cfg.env.game = "toy/catch"
    cfg.network.hidden = 16
    net = QNetwork(3, hidden=16)
    save_checkpoint(tmp_path / "run" / "checkpoints", 400, {"learner": {"online": net.state_dict()}, "steps": 100,
                                                             "config": to_yaml(cfg)})
    m = collect("toy/catch", tmp_path / "d", 64, policy=str(tmp_path / "run"), actors=0, envs_per_actor=2,
                chunk_steps=8, epsilon=0.0, progress=False)
    assert m["policy"]["kind"] == "dqn" and m["policy"]["frames_trained"] == 400 and m["policy"]["epsilon"] == 0.0
    # epsilon 0: every stored action is the network's greedy choice for the observation rebuilt from the stored
    # frames (the 4 newest of its episode, zero-padded at the start), which also checks frame/action alignment.
    import torch

    windows = [w for s in ("train", "heldout") for w in TrajectoryDataset(tmp_path / "d", s)]
    ids, acts = np.concatenate([w["episode_ids"] for w in windows]), np.concatenate([w["actions"] for w in windows])
    frames = np.concatenate([w["frames"] for w in windows])
    assert len(acts) == 64
    checked = 0
    for e in np.unique(ids):
        f, a = frames[ids == e], acts[ids == e]
        padded = np.concatenate([np.zeros((3, 84, 84), np.uint8), f])
        for t in np.flatnonzero(a >= 0):
            with torch.no_grad():
                greedy = int(net(torch.from_numpy(padded[t: t + 4][None])).argmax())
            assert greedy == a[t]
            checked += 1
    assert checked >= 60
    with pytest.raises(ValueError, match="trained on 'toy/catch', not 'Pong'"):
        collect("Pong", tmp_path / "e", 10, policy=str(tmp_path / "run"), actors=0, progress=False)


def test_rgb_frames_round_trip_and_the_binariser_refuses_them(tmp_path: Path) -> None:
    from worldmodels.data import WindowSampler

    w = DatasetWriter(tmp_path / "rgb", {"game": "test"}, heldout_fraction=0.0, shard_frames=100)
    frames = np.random.default_rng(0).integers(0, 256, (12, 21, 16, 3), dtype=np.uint8)
    actions = np.zeros(12, np.int64)
    actions[-1] = -1
    w.add_episode(frames, actions, np.zeros(12, np.float32), terminal=True)
    manifest = w.close()
    assert manifest["frame_shape"] == [21, 16, 3]
    s = WindowSampler(tmp_path / "rgb", "train", 12)
    np.testing.assert_array_equal(s.sample(1)["frames"][0], frames)
    assert s.mean_frame().shape == (21, 16, 3)
    with pytest.raises(ValueError, match="without --rgb"):
        Binarizer.fit([frames], size=42)
    with pytest.raises(ValueError, match="frame shape"):  # one dataset, one frame shape
        w2 = DatasetWriter(tmp_path / "mixed", {"game": "test"}, heldout_fraction=0.0)
        w2.add_episode(frames, actions, np.zeros(12, np.float32), terminal=True)
        w2.add_episode(frames[..., 0], actions, np.zeros(12, np.float32), terminal=True)
