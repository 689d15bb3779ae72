"""A run directory names its command: every command that opens another command's run says what it is and which
command opens it (never "written by another version of Reverie"), and a preset of another command is named as one.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from launch.cli import main
from worldmodels.common.scaffold import config_yaml


@pytest.fixture(scope="module")
def train_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (tiny) `reverie train` run of the actor-critic, local mode."""
    run = tmp_path_factory.mktemp("kinds") / "a2c"
    assert main(["train", "a2c_tiny", "run.total_frames=1024", "run.eval_episodes=0", "run.progress=false",
                 "--run-dir", str(run)]) == 0
    return run


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "another version" not in err
    return err


def test_the_run_directory_records_its_command(train_run: Path) -> None:
    assert json.loads((train_run / "run.json").read_text()) == {"command": "train", "algo": "actor_critic"}


@pytest.mark.parametrize("argv", [["fit-vae", "--resume", "{run}"], ["fit-world-model", "--resume", "{run}"],
                                  ["fit-gvae", "--resume", "{run}"], ["sb3", "--resume", "{run}"],
                                  ["evaluate-vae", "{run}", "--data", "{run}"],
                                  ["collect", "toy/catch", "--policy", "{run}", "--frames", "8", "--out", "{out}"]])
def test_other_commands_name_a_train_run(train_run: Path, tmp_path: Path, argv: list[str],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    if argv[0] == "sb3":
        pytest.importorskip("stable_baselines3")
    err = _error(capsys, [a.format(run=train_run, out=tmp_path / "out") for a in argv])
    assert f"{train_run} is a `reverie train` run of actor_critic" in err, err
    assert f"`reverie train --resume {train_run}`" in err and f"`reverie evaluate {train_run}`" in err


def _fake_run(path: Path, config: object, record: dict | None = None, sb3_checkpoint: bool = False) -> Path:
    """A run directory as the command writes it: config.yaml (and run.json), a checkpoint file."""
    (path / "checkpoints").mkdir(parents=True)
    (path / "config.yaml").write_text(config_yaml(config))
    if record is not None:
        (path / "run.json").write_text(json.dumps(record))
    if sb3_checkpoint:
        with zipfile.ZipFile(path / "checkpoints" / "ckpt_000000001024.zip", "w") as z:
            z.writestr("data", "{}")
    return path


def test_train_and_evaluate_name_fit_and_sb3_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agents.actor_critic.config import ActorCriticConfig
    from worldmodels.vae import VAEFitConfig
    from worldmodels.video.config import VideoFitConfig

    vae = _fake_run(tmp_path / "vae", VAEFitConfig(), {"command": "fit-vae", "algo": None})
    err = _error(capsys, ["train", "--resume", str(vae)])
    assert "is a `reverie fit-vae` run; reverie train --resume opens a `reverie train` run" in err
    assert f"`reverie fit-vae --resume {vae}`" in err
    # Written before run.json existed: told from its config.yaml.
    video = _fake_run(tmp_path / "video", VideoFitConfig())
    err = _error(capsys, ["evaluate", str(video)])
    assert f"{video} is a `reverie fit-world-model` run; reverie evaluate opens" in err
    assert f"`reverie imagine {video} --data DATA`" in err
    sb3 = _fake_run(tmp_path / "sb3", ActorCriticConfig(), sb3_checkpoint=True)
    err = _error(capsys, ["train", "--resume", str(sb3)])
    assert f"{sb3} is a `reverie sb3` run" in err and f"`reverie sb3 --resume {sb3}`" in err


def test_a_preset_of_another_command_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    err = _error(capsys, ["train", "vae_tiny"])
    assert "vae_tiny is a `reverie fit-vae` preset" in err and "reverie fit-vae vae_tiny" in err
    err = _error(capsys, ["fit-vae", "a2c_tiny"])
    assert "a2c_tiny is a `reverie train` preset" in err


def test_a_resume_below_the_saved_count_is_refused_and_leaves_the_record(train_run: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    before = (train_run / "config.yaml").read_text()
    err = _error(capsys, ["train", "--resume", str(train_run), "run.total_frames=256"])
    assert "run.total_frames=256 is below the" in err
    assert (train_run / "config.yaml").read_text() == before


def test_resuming_an_older_checkpoint_sets_the_abandoned_branch_aside(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from worldmodels.common.checkpoint import list_checkpoints

    run = tmp_path / "run"
    assert main(["train", "a2c_tiny", "run.total_frames=2048", "run.checkpoint_every_frames=512",
                 "run.keep_checkpoints=10", "run.eval_episodes=0", "run.progress=false", "--run-dir", str(run)]) == 0
    first = list_checkpoints(run / "checkpoints")
    older = first[1]
    assert main(["train", "--resume", str(older), "run.total_frames=1280"]) == 0
    capsys.readouterr()
    abandoned = sorted(p.name for p in (run / "checkpoints").glob("*.abandoned"))
    assert abandoned == [p.name + ".abandoned" for p in first[2:]]
    assert max(int(p.name[5:17]) for p in list_checkpoints(run / "checkpoints")) <= 1280 + 512
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    steps = [e.step for e in acc.Scalars("charts/frames_per_s")]
    assert steps == sorted(steps) and max(steps) <= 1280 + 512  # the abandoned branch's steps are purged
