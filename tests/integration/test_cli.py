"""Every `reverie` command on the tiny presets, in-process (one Ray instance for the module)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from launch.cli import main
from worldmodels.common.checkpoint import list_checkpoints, load_checkpoint

pytestmark = pytest.mark.usefixtures("ray_local")


def _scalars(run: Path, tag: str) -> list[tuple[int, float]]:
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


@pytest.mark.parametrize("command", ["train", "evaluate", "plot", "bench", "sb3"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: reverie " + command in capsys.readouterr().out


def test_smoke_train_checkpoint_evaluate_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "smoke"
    assert main(["train", "smoke", "--run-dir", str(run)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["frames"] >= 4096 and summary["updates"] > 0
    assert (run / "config.yaml").is_file()
    ckpts = list_checkpoints(run / "checkpoints")
    assert ckpts, "no checkpoint written"
    first = load_checkpoint(ckpts[-1])
    assert first["steps"] * 4 == summary["frames"] and "replay" in first
    fps = _scalars(run, "charts/frames_per_s")
    assert fps and all(v > 0 for _, v in fps)
    assert _scalars(run, "losses/td_loss")

    assert main(["evaluate", str(run), "--episodes", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["game"] == "Pong" and report["episodes"] == 1 and len(report["returns"]) == 1
    assert -21 <= report["mean"] <= 21 and report["human_normalized"] is not None

    # The trained network as a data-collection policy (its config comes from the checkpoint).
    data = tmp_path / "data"
    assert main(["collect", "Pong", "--policy", str(run), "--epsilon", "0.1", "--frames", "64", "--actors", "0",
                 "--envs-per-actor", "2", "--no-progress", "--out", str(data)]) == 0
    capsys.readouterr()
    policy = json.loads((data / "manifest.json").read_text())["policy"]
    assert policy["kind"] == "dqn" and policy["epsilon"] == 0.1 and policy["checkpoint"] == str(ckpts[-1])
    assert main(["collect", "Breakout", "--policy", str(run), "--frames", "8", "--actors", "0", "--out",
                 str(tmp_path / "other")]) == 2
    assert "trained on 'Pong', not 'Breakout'" in capsys.readouterr().err

    # Resume: the frame and update counters continue from the checkpoint, not from zero.
    assert main(["train", "smoke", "--resume", str(run), "run.total_frames=6144"]) == 0
    resumed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert resumed["frames"] >= 6144 and resumed["updates"] > summary["updates"]
    assert load_checkpoint(list_checkpoints(run / "checkpoints")[-1])["steps"] * 4 == resumed["frames"]
    assert min(step for step, _ in _scalars(run, "charts/frames_per_s")[len(fps):]) > summary["frames"]


def test_existing_run_dir_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "taken"
    run.mkdir()
    (run / "keep.txt").write_text("precious")
    assert main(["train", "smoke", "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--resume" in err
    assert (run / "keep.txt").read_text() == "precious"


def test_bad_input_gives_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "smoke", "agent.lrr=1", "--run-dir", str(tmp_path / "a")]) == 2
    assert "unknown config key 'agent.lrr'" in capsys.readouterr().err
    assert main(["train", "smoke", "env.game=Pongg", "--run-dir", str(tmp_path / "b")]) == 2
    assert "Pong" in capsys.readouterr().err
    bad = tmp_path / "ckpt_000000000001.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["evaluate", str(bad)]) == 2
    assert "corrupt or truncated" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_plot_runs_with_baseline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = []
    for seed in (0, 1):
        run = tmp_path / f"catch{seed}"
        assert main(["train", "dqn_catch", "--run-dir", str(run), f"run.seed={seed}", "run.total_frames=4000",
                     "run.eval_episodes=0", "run.progress=false"]) == 0
        runs.append(run)
        assert (run / "learning_curve.png").stat().st_size > 10_000
    out = tmp_path / "curves.png"
    assert main(["plot", *map(str, runs), "-o", str(out), "--baseline", "DQN", "--game", "pong"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000


def test_bench_throughput_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "throughput", "--seconds", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("raw_env_steps_per_s", "actor_steps_per_s", "learner_updates_per_s", "train_steps_per_s",
                "train_learner_updates_per_s"):
        assert result[key] > 0, key
    assert "sb3_steps_per_s" in result


def test_bench_straw_json(capsys: pytest.CaptureFixture[str]) -> None:
    from launch.bench.straw import STRAW_RUNS

    assert main(["bench", "straw", "--seconds", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["env"]) == {"maze/11", "maze/15/curriculum"} and min(result["env"].values()) > 0
    assert set(result["train"]) == set(STRAW_RUNS)
    for figures in result["train"].values():
        assert figures["steps_per_s"] > 0 and 0 < figures["learner_busy_fraction"] <= 1.0
        assert 0 < figures["env_share"] < 1.0


def test_bench_straw_atari_figures() -> None:
    from launch.bench.straw import format_straw_table, run_straw_bench

    result = run_straw_bench(seconds=1.0, names=("ff", "strawe"), atari=True)
    assert set(result["env"]) == {"Frostbite, grey", "Frostbite, colour"} and min(result["env"].values()) > 0
    assert set(result["train"]) == {"ff", "strawe"}
    for figures in result["train"].values():
        assert figures["steps_per_s"] > 0 and 0 < figures["env_share"] < 1.0
        # 10M frames at 4 frames per agent step, in hours
        assert figures["hours_per_10m_frames"] == pytest.approx(10e6 / 4 / figures["steps_per_s"] / 3600)
    assert "h / 10M frames" in format_straw_table(result)


def test_bench_episodic_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "episodic", "--sizes", "5000", "--seconds", "0.05", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for method in ("flat", "ivf"):
        assert result["query_ms"][method]["5000"]["batch16"] > 0 and result["query_ms"][method]["5000"]["batch1"] > 0
        assert result["insert_us"][method]["5000"] > 0


def test_bench_episodic_sharing_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "episodic", "--sharing", "--sizes", "900", "--seconds", "0.05", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("local_query_ms", "server_query_ms", "publish_ms"):
        assert result[key]["900"] > 0
    gap = result["server_query_ms"]["900"] - result["local_query_ms"]["900"]
    expected = result["publish_ms"]["900"] / gap if gap > 0 else math.inf
    assert result["break_even_steps"]["900"] == pytest.approx(expected)


def test_bench_episodic_agent_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "episodic", "--agent", "--seconds", "0.5", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["steps_per_s"]) == {"random_projection", "gaussian_vae"}
    assert min(result["steps_per_s"].values()) > 0 and result["settings"]["game"] == "MsPacman"


def _clustered_memory_checkpoint(tmp_path: Path) -> Path:
    """An MFEC-shaped checkpoint: 2 actions, keys in 20 tight clusters, each cluster's keys sharing one value."""
    from agents.episodic import EpisodicMemory
    from worldmodels.common.checkpoint import save_checkpoint

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, 16)).astype(np.float32) * 10
    which = rng.integers(0, 20, 2300)
    keys = (centres[which] + 0.01 * rng.standard_normal((2300, 16))).astype(np.float32)
    memory = EpisodicMemory(num_actions=2, key_dim=16, capacity=3000, index="flat")
    memory.update(keys, (np.arange(2300) >= 2000).astype(np.int64), which.astype(np.float32))
    return save_checkpoint(tmp_path / "checkpoints", 100, {"learner": {"memory": memory.state_dict()}})


def test_bench_episodic_keys_recall(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from launch.bench.episodic import run_recall_bench
    from worldmodels.common.checkpoint import save_checkpoint

    ckpt = _clustered_memory_checkpoint(tmp_path)
    assert main(["bench", "episodic", "--keys", str(ckpt), "--seconds", "0.05", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    r = result["runs"][str(ckpt)]
    assert r["sizes"] == [2000, 300] and r["key_dim"] == 16
    # nprobe 128 scans every cell (sqrt(2000) = 45 cells), so IVF is exact: recall 1, values unchanged
    assert r["recall"]["128"] == 1.0 and r["value_error"]["128"] == 0.0
    # clustered keys are IVF's easy case: better than Gaussian keys at the same nprobe
    assert r["recall"]["8"] > r["gaussian_recall"]["8"]
    assert set(r["query_ms"]) == {"flat", "8", "32", "128"}
    other = save_checkpoint(tmp_path / "other", 1, {"model": {}})
    with pytest.raises(ValueError, match="no episodic memory"):
        run_recall_bench([str(other)])
