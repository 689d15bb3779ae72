"""collect (real Pong, 2 Ray actors) -> fit-world-model (tiny preset, with resume) -> imagine, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from launch.cli import main
from tests.integration.test_imagine_cli import check_imagine_outputs
from worldmodels.common.checkpoint import list_checkpoints, load_checkpoint

pytestmark = pytest.mark.usefixtures("ray_local")


@pytest.mark.parametrize("command", ["fit-world-model", "imagine"])
def test_commands_have_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0 and "usage: reverie " + command in capsys.readouterr().out


def last_json(capsys: pytest.CaptureFixture[str]) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_collect_fit_imagine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, run = tmp_path / "pong", tmp_path / "run"
    assert main(["collect", "Pong", "--frames", "800", "--out", str(data), "--actors", "2", "--envs-per-actor", "2",
                 "--heldout-fraction", "0.25", "--shard-frames", "200", "--no-progress"]) == 0
    capsys.readouterr()
    # Stop inside the second stage (1-step x 6, then 3-step x 2 of 4), then resume to the end of the curriculum.
    assert main(["fit-world-model", "video_tiny", f"data.path={data}", "optim.phases.1.updates=2",
                 "run.progress=false", "--run-dir", str(run)]) == 0
    fit = last_json(capsys)
    assert fit["updates"] == 8 and fit["frames"] == 6 * 4 + 2 * 2 * 3
    assert len(fit["heldout_mse"]) == 3 == len(fit["heldout_copy_last_mse"])
    ckpt = load_checkpoint(list_checkpoints(run / "checkpoints")[-1])
    assert ckpt["curriculum"]["updates"] == 8 and ckpt["world_model"]["game"] == "Pong"
    # The run keeps its saved settings (stage 2: 2 updates) unless an override lengthens the stage.
    assert main(["fit-world-model", "--resume", str(run)]) == 0
    assert last_json(capsys)["updates"] == 8
    assert main(["fit-world-model", "video_tiny", f"data.path={data}", "run.progress=false", "--resume",
                 str(run), "optim.phases.1.updates=4"]) == 0
    fit = last_json(capsys)
    assert fit["updates"] == 10 and fit["frames"] == 6 * 4 + 4 * 2 * 3  # stage 2 ran to its 4 updates, no more
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"losses/mse", "losses/mse_step3", "losses/reward_head", "charts/frames_per_s", "eval/mse_step3",
            "eval/copy_last_mse_step1"} <= tags
    assert "eval/predictions" in acc.Tags()["images"]

    out = tmp_path / "imagine"
    assert main(["imagine", str(run), "--data", str(data), "--horizon", "3", "--episodes", "2",
                 "--starts-per-episode", "2", "--samples", "2", "--out", str(out), "--no-progress", "--json"]) == 0
    printed = last_json(capsys)
    report = check_imagine_outputs(out, horizon=3, samples=2)
    assert printed["mse"] == report["mse"] and report["game"] == "Pong" and report["num_actions"] == 6


def test_fit_refuses_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit-world-model", "video_tiny", f"data.path={tmp_path / 'nothing'}", "--run-dir",
                 str(tmp_path / "r")]) == 2
    assert "does not exist: create one with `reverie collect" in capsys.readouterr().err
    assert main(["fit-world-model", "video_tiny", "model.architecure=recurrent", "--run-dir", str(tmp_path / "r")]) == 2
    assert "Did you mean model.architecture" in capsys.readouterr().err
    assert main(["fit-world-model", "video_tiny", "optim.phases.7.lr=1", "--run-dir", str(tmp_path / "r")]) == 2
    assert "optim.phases has 2 entries" in capsys.readouterr().err


def test_world_model_bench_rows() -> None:
    from launch.bench.video import format_world_model_table, run_world_model_bench

    result = run_world_model_bench(seconds=0.2, rows=[("video_tiny", {}), ("video_cpu_rnn", {})])
    first, second = result["rows"]
    assert first["train_ratio"] == 1.0 == first["imagine_ratio"]
    assert second["architecture"] == "recurrent" and second["parameters"] > first["parameters"]
    assert all(r["train_frames_per_s"] > 0 and r["imagine_frames_per_s"] > 0 for r in result["rows"])
    assert "video_cpu_rnn" in format_world_model_table(result)


def test_paper_preset_trains_on_rgb_210x160_frames(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The paper's input: `collect --frame-size 210x160 --rgb`, then the paper preset at 3 channels."""
    data = tmp_path / "rgb"
    assert main(["collect", "Pong", "--frames", "120", "--out", str(data), "--actors", "0", "--envs-per-actor", "2",
                 "--frame-size", "210x160", "--rgb", "--heldout-fraction", "0", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["fit-world-model", "video_paper_ff", f"data.path={data}", "model.channels=3", "model.height=210",
                 "model.width=160", "model.hidden=64", "model.factors=64",
                 "optim.phases=[{steps: 2, updates: 2, lr: 1.0e-4, batch_size: 2}]", "run.eval_every_updates=0",
                 "run.progress=false", "--run-dir", str(tmp_path / "run")]) == 0
    fit = last_json(capsys)
    assert fit["updates"] == 2 and fit["frames"] == 8
    from worldmodels.video import load_world_model

    model = load_world_model(tmp_path / "run")
    assert model.mean_frame.shape == (210, 160, 3) and model.channels == 3
    assert main(["collect", "Pong", "--frames", "10", "--out", str(tmp_path / "bad"), "--actors", "0",
                 "--frame-size", "210by160"]) == 2
    assert "HEIGHTxWIDTH" in capsys.readouterr().err
