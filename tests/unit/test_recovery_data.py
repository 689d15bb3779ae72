"""Recovering from damaged or interrupted data (issue 13: defects 6, 8 and 10).

- A corrupt shard's error names the way to skip it that the command raising it accepts (``--skip-corrupt`` for
  evaluate-vae, ``data.skip_corrupt=true`` for fit-vae and fit-world-model).
- No held-out data left (every held-out shard skipped as corrupt, or none collected) is one clear error in fit-vae,
  fit-world-model and evaluate-vae, naming the dataset and the fix (re-collect, or turn the evaluation off).
- ``collect --resume`` continues an interrupted dataset folder: the shards written are kept, only the missing frames
  are collected, and the manifest ends consistent; Ctrl-C's message says so.
- The pseudo-count bonus names a non-numeric argument; fit-vae's progress bar, JSON and TensorBoard agree on the
  sign of the ELBO (positive nats, the README's convention).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import launch.collect as collect_module
from launch.collect import collect
from launch.config import load_config
from tests.algos.fakes import moving_dot_dataset, sprite_dataset
from worldmodels.common.scaffold import RunScaffold
from worldmodels.data import DatasetError, DatasetWriter, TrajectoryDataset, read_manifest
from worldmodels.vae import VAEFitConfig
from worldmodels.video import VideoFitConfig
from worldmodels.video.train import fit_world_model

HELD_OUT_GONE = "no held-out data is left after skipping corrupt shards"


def tiny_vae(data: Path, *overrides: str) -> VAEFitConfig:
    """vae_tiny for 128 frames (8 updates of 16), logging every 2 updates, 8 held-out frames, on the CPU."""
    return load_config(VAEFitConfig, ["vae_tiny"], [f"data.path={data}", "run.progress=false", "run.device=cpu",
                                                    "run.total_frames=128", "run.log_every_frames=32",
                                                    "run.eval_frames=8", *overrides])


class Screen(gym.Env):
    """A one-step env whose observation is a grey 84x84 frame: all the bonus wrapper needs."""

    observation_space = gym.spaces.Box(0, 255, (84, 84), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        return np.zeros((84, 84), np.uint8), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        return np.zeros((84, 84), np.uint8), 0.0, True, False, {}


def corrupt(root: Path, split: str) -> list[Path]:
    """Truncate every shard of ``split`` (the checksum no longer matches); returns them."""
    shards = sorted((root / split).glob("shard_*.npz"))
    assert shards
    for shard in shards:
        shard.write_bytes(shard.read_bytes()[:-50])
    return shards


def tiny_video(data: Path, *overrides: str) -> VideoFitConfig:
    """video_tiny on the CPU, evaluating on held-out windows every 5 updates."""
    return load_config(VideoFitConfig, ["video_tiny"], [f"data.path={data}", "run.progress=false", "run.device=cpu",
                                                        *overrides])


def dots(root: Path, heldout_fraction: float = 0.25) -> Path:
    return moving_dot_dataset(root, episodes=4, length=24, heldout_fraction=heldout_fraction, shard_frames=50)


# ------------------------------------------------------------------ 6: the skip hint each command accepts
def test_corrupt_heldout_shard_names_the_config_key_in_the_trainers(tmp_path: Path) -> None:
    from worldmodels.vae.train import fit_vae

    sprites, dot = sprite_dataset(tmp_path / "sprites"), dots(tmp_path / "dots")
    corrupt(sprites, "heldout")
    corrupt(dot, "heldout")
    with pytest.raises(DatasetError, match="checksum mismatch") as vae_err:
        fit_vae(tiny_vae(sprites), run_dir=tmp_path / "vae")
    with pytest.raises(DatasetError, match="checksum mismatch") as video_err:
        fit_world_model(tiny_video(dot), run_dir=tmp_path / "video")
    for err, off in ((vae_err, "run.eval_frames=0"), (video_err, "run.eval_every_updates=0")):
        message = str(err.value)
        # fit-vae and fit-world-model reject --skip-corrupt: only the config key they accept is named.
        assert "data.skip_corrupt=true" in message and "--skip-corrupt" not in message and off in message


def test_corrupt_train_shard_names_each_command_with_its_spelling(tmp_path: Path) -> None:
    """A reader without a hint (the trainers' training split, the Python API) names every command's spelling
    correctly, never `--skip-corrupt` alone."""
    dot = dots(tmp_path / "dots")
    corrupt(dot, "train")
    with pytest.raises(DatasetError) as err:
        fit_world_model(tiny_video(dot, "run.eval_every_updates=0"), run_dir=tmp_path / "video")
    assert "data.skip_corrupt=true (fit-vae, fit-world-model)" in str(err.value)
    assert "--skip-corrupt (evaluate-vae, imagine)" in str(err.value)
    with pytest.raises(DatasetError, match=r"skip bad shards explicitly with --skip-corrupt \("):
        list(TrajectoryDataset(dot, "train", skip_hint="--skip-corrupt"))


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny fit-vae run on intact sprite data: (run dir, data dir)."""
    from worldmodels.vae.train import fit_vae

    root = tmp_path_factory.mktemp("vae")
    data = sprite_dataset(root / "data")
    fit_vae(tiny_vae(data, "run.total_frames=32"), run_dir=root / "run")
    return root / "run", data


def test_evaluate_vae_names_its_flag(vae_run: tuple[Path, Path], tmp_path: Path) -> None:
    from worldmodels.vae.evaluate import evaluate_vae

    run, data = vae_run
    broken = Path(shutil.copytree(data, tmp_path / "data"))
    corrupt(broken, "heldout")
    with pytest.raises(DatasetError, match="checksum mismatch") as err:
        evaluate_vae(run, broken, ks=(1, 2), frames=4, out_dir=tmp_path / "out")
    assert "--skip-corrupt" in str(err.value) and "data.skip_corrupt" not in str(err.value)
    # ... and with every held-out shard skipped: the one clear error, not numpy's "need at least one array".
    with pytest.raises(DatasetError, match=HELD_OUT_GONE) as err:
        evaluate_vae(run, broken, ks=(1, 2), frames=4, skip_corrupt=True, out_dir=tmp_path / "out")
    assert str(broken) in str(err.value) and "re-collect" in str(err.value) and "heldout/shard_00000.npz" in str(
        err.value)


# ------------------------------------------------------------------ 6: no held-out data left, one behaviour
def test_no_heldout_left_is_one_clear_error_in_both_trainers(tmp_path: Path) -> None:
    from worldmodels.vae.train import fit_vae

    sprites, dot = sprite_dataset(tmp_path / "sprites"), dots(tmp_path / "dots")
    corrupt(sprites, "heldout")
    corrupt(dot, "heldout")
    with pytest.raises(DatasetError, match=HELD_OUT_GONE) as vae_err:
        fit_vae(tiny_vae(sprites, "data.skip_corrupt=true"), run_dir=tmp_path / "vae")
    # fit-world-model used to warn and train on without evaluating.
    with pytest.raises(DatasetError, match=HELD_OUT_GONE) as video_err:
        fit_world_model(tiny_video(dot, "data.skip_corrupt=true"), run_dir=tmp_path / "video")
    assert str(sprites) in str(vae_err.value) and "run.eval_frames=0" in str(vae_err.value)
    assert str(dot) in str(video_err.value) and "run.eval_every_updates=0" in str(video_err.value)
    # The way out named works: the evaluation off, the corrupt held-out shards are never read.
    assert fit_vae(tiny_vae(sprites, "data.skip_corrupt=true", "run.eval_frames=0", "run.total_frames=32"),
                   run_dir=tmp_path / "vae2")["frames"] == 32
    assert fit_world_model(tiny_video(dot, "data.skip_corrupt=true", "run.eval_every_updates=0"),
                           run_dir=tmp_path / "video2")["updates"] == 10


def test_no_heldout_split_is_the_same_error_in_both_trainers(tmp_path: Path) -> None:
    from worldmodels.vae.train import fit_vae

    dot = dots(tmp_path / "dots", heldout_fraction=0.0)
    with pytest.raises(DatasetError, match="no 'heldout' shards") as vae_err:
        fit_vae(tiny_vae(dot), run_dir=tmp_path / "vae")
    with pytest.raises(DatasetError, match="no 'heldout' shards") as video_err:
        fit_world_model(tiny_video(dot), run_dir=tmp_path / "video")
    assert "run.eval_frames=0" in str(vae_err.value) and "run.eval_every_updates=0" in str(video_err.value)


# ------------------------------------------------------------------ 8: collect --resume
def interrupt_after(monkeypatch: pytest.MonkeyPatch, episodes: int) -> None:
    """Ctrl-C as the collector hands its ``episodes + 1``-th episode to the writer."""
    add = collect_module._add
    calls = {"n": 0}

    def patched(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] > episodes:
            raise KeyboardInterrupt
        add(*args, **kwargs)

    monkeypatch.setattr(collect_module, "_add", patched)


CATCH: dict[str, Any] = dict(actors=0, envs_per_actor=2, chunk_steps=8, shard_frames=70, heldout_fraction=0.2,
                             progress=False)


def test_collect_resume_keeps_the_shards_and_collects_the_rest(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "c"
    interrupt_after(monkeypatch, 7)  # Catch episodes have 31 frames: 2 train shards written, the rest buffered
    with pytest.raises(KeyboardInterrupt):
        collect("toy/catch", out, 600, **CATCH)
    monkeypatch.undo()
    partial = read_manifest(out)
    assert not partial["complete"] and partial["num_actions"] == 3
    # Ctrl-C wrote the buffered finished episodes too: all 7, and the counts are those of the shards listed.
    assert partial["counts"]["episodes"] == 7 == sum(s["episodes"] for s in partial["shards"])
    assert partial["counts"]["frames"] == sum(s["frames"] for s in partial["shards"]) == 7 * 31
    kept = {s["file"]: (out / s["file"]).read_bytes() for s in partial["shards"]}
    for split in ("train", "heldout"):
        TrajectoryDataset(out, split).verify()  # usable as it is
    # What an interrupt can leave beside them: a shard written before the manifest caught up, a temp file.
    (out / "train/shard_00042.npz").write_bytes(b"orphan")
    (out / "heldout/.shard_00009.npz.abc.tmp").write_bytes(b"half")

    with pytest.raises(DatasetError, match="not empty.*--resume"):
        collect("toy/catch", out, 600, **CATCH)
    with pytest.raises(DatasetError, match="seed=0.*1"):
        collect("toy/catch", out, 600, seed=1, resume=True, **CATCH)
    m = collect("toy/catch", out, 600, resume=True, **CATCH)

    assert m["complete"] and m["counts"]["frames"] == 600 and m == read_manifest(out)
    assert not (out / "train/shard_00042.npz").exists() and not (out / "heldout/.shard_00009.npz.abc.tmp").exists()
    for name, data in kept.items():  # the first session's shards, untouched and still listed
        assert (out / name).read_bytes() == data and name in [s["file"] for s in m["shards"]]
    listed = sorted(str(p.relative_to(out)) for p in out.rglob("*.npz"))
    assert listed == sorted(s["file"] for s in m["shards"])
    ids = [i for s in m["shards"] for i in s["episode_ids"]]
    assert len(ids) == len(set(ids)) == m["counts"]["episodes"]
    rows = {s: {k: np.concatenate([w[k] for w in TrajectoryDataset(out, s)]) for k in ("frames", "episode_ids")}
            for s in ("train", "heldout")}
    assert sum(len(r["frames"]) for r in rows.values()) == 600
    for split in ("train", "heldout"):
        counts = m["counts"][split]
        assert counts["frames"] == len(rows[split]["frames"]) == sum(s["frames"] for s in m["shards"]
                                                                     if s["split"] == split)
    # The resumed session played new games (its own seeds), not the stored ones again.
    assert m["seed"] == 0 and m["resumes"][0]["frames_before"] == 7 * 31 and m["resumes"][0]["seed"] != 0
    episodes = [r["frames"][r["episode_ids"] == e].tobytes() for r in rows.values()
                for e in np.unique(r["episode_ids"])]
    assert len(set(episodes)) == len(episodes)
    # A finished dataset: --resume with the same request does nothing, another request is refused.
    assert collect("toy/catch", out, 600, resume=True, **CATCH) == m
    with pytest.raises(DatasetError, match="finished dataset of 600 frames"):
        collect("toy/catch", out, 900, resume=True, **CATCH)


def test_collect_resume_before_the_first_shard_starts_afresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "c"
    (out / "train").mkdir(parents=True)
    (out / "train/shard_00000.npz").write_bytes(b"written before its manifest")
    m = collect("toy/catch", out, 100, resume=True, **CATCH)
    assert m["complete"] and m["counts"]["frames"] == 100 and "resumes" not in m
    (tmp_path / "other").mkdir()
    (tmp_path / "other/notes.txt").write_text("not a dataset")
    with pytest.raises(DatasetError, match="not an interrupted collection"):
        collect("toy/catch", tmp_path / "other", 100, resume=True, **CATCH)


def test_collect_interrupt_hint_and_resume_flag() -> None:
    from launch.cli import build_parser

    args = build_parser().parse_args(["collect", "toy/catch", "--frames", "10", "--out", "d", "--resume"])
    assert args.resume
    assert "--resume" in args.interrupt_hint and "checkpoint" not in args.interrupt_hint
    train = build_parser().parse_args(["train", "smoke"])
    assert getattr(train, "interrupt_hint", None) is None  # the trainers keep main()'s checkpoint message


def test_writer_reopen_refuses_a_changed_folder(tmp_path: Path) -> None:
    w = DatasetWriter(tmp_path / "d", {"game": "test"}, heldout_fraction=0.0, shard_frames=5)
    frames = np.zeros((6, 84, 84), np.uint8)
    w.add_episode(frames, np.zeros(6, np.int64), np.zeros(6, np.float32), terminal=False)
    (tmp_path / "d/train/shard_00000.npz").write_bytes(b"short")
    with pytest.raises(DatasetError, match=r"shard_00000\.npz is 5 bytes.*changed"):
        DatasetWriter.reopen(tmp_path / "d")
    manifest = json.loads((tmp_path / "d/manifest.json").read_text())
    assert manifest["counts"]["train"] == {"frames": 6, "episodes": 1, "complete_episodes": 0}


# ------------------------------------------------------------------ 10: numbers named; one sign for the ELBO
def test_pseudo_count_bonus_names_a_non_numeric_argument() -> None:
    from envs.wrappers import PseudoCountBonus
    from worldmodels.density import CTS, PseudoCount

    with pytest.raises(TypeError, match=r"beta='0\.05' must be a number"):
        PseudoCountBonus(Screen(), beta="0.05")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"beta='0\.05' must be a number"):
        PseudoCount(CTS(), beta="0.05")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"shape\[1\]='42' must be an integer"):
        PseudoCountBonus(Screen(), shape=(42, "42"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_levels=6 must be a power of two"):
        PseudoCountBonus(Screen(), num_levels=6)
    with pytest.raises(ValueError, match=r"beta=-1\.0 must lie in \[0, inf\)"):
        PseudoCountBonus(Screen(), beta=-1)
    assert PseudoCountBonus(Screen(), beta=np.float32(0.1)).pseudo_count.beta == pytest.approx(0.1)


def test_fit_vae_bar_json_and_tensorboard_agree_on_positive_nats(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from worldmodels.vae.train import fit_vae

    postfixes: list[dict[str, Any]] = []
    advance = RunScaffold.advance

    def spy(self: RunScaffold, count: int, **postfix: Any) -> None:
        if postfix:
            postfixes.append(postfix)
        advance(self, count, **postfix)

    monkeypatch.setattr(RunScaffold, "advance", spy)
    data = sprite_dataset(tmp_path / "data")
    summary = fit_vae(tiny_vae(data, "run.total_frames=64"), run_dir=tmp_path / "run")
    assert postfixes and all("elbo" not in p for p in postfixes)
    bar = [float(p["elbo_nats"]) for p in postfixes]
    acc = EventAccumulator(str(tmp_path / "run")).Reload()
    train = [e.value for e in acc.Scalars("worldmodel/elbo_nats")]
    assert summary["elbo_nats"] > 0 and all(v > 0 for v in bar) and all(v > 0 for v in train)
    assert bar == pytest.approx(train, abs=0.06)  # the bar shows the logged window mean, rounded to 0.1
    assert all(e.value > 0 for e in acc.Scalars("eval/elbo_nats"))
    assert "worldmodel/elbo" not in acc.Tags()["scalars"]
