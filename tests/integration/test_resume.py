"""Resume and recovery (issue 13): a resumed run continues exactly what was saved, and a failed or damaged run never
blocks the user. Every trainer shares this code (:mod:`worldmodels.common.resume`); the runtime's trainers are
exercised through ``reverie train``, ``fit-vae`` and ``fit-world-model`` through their CLI."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from agents.dqn.config import DQNConfig
from agents.dqn.train import train
from launch.cli import main
from launch.config import load_config
from worldmodels.common.checkpoint import list_checkpoints, load_checkpoint

TINY = ["run.eval_episodes=0", "run.progress=false", "agent.learning_starts_frames=1000", "agent.batch_size=8",
        "network.hidden=32", "run.checkpoint_every_frames=1000"]


def _catch(run: Path, *overrides: str) -> DQNConfig:
    return load_config(DQNConfig, ["dqn_catch"], [*TINY, f"run.runs_dir={run.parent}", f"run.name={run.name}",
                                                  *overrides])


def _train_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict | str]:
    rc = main(["train", *argv])
    out, err = capsys.readouterr()
    return rc, (json.loads(out.strip().splitlines()[-1]) if rc == 0 else err)


def _mid_run(run: Path, *overrides: str) -> int:
    """Train 4000 frames with a checkpoint every 1000, then drop the end-of-run checkpoint: the run now stops at a
    periodic checkpoint written mid-run, as after a kill -9. Returns the frames of that checkpoint."""
    train(_catch(run, "run.total_frames=4000", *overrides))
    ckpts = list_checkpoints(run / "checkpoints")
    ckpts[-1].unlink()
    return int(load_checkpoint(ckpts[-2])["steps"]) * 4


# --- defect 1: a resumed run always makes progress --------------------------------------------------------------
@pytest.mark.timeout(120)
@pytest.mark.parametrize("saved_replay", [False, True])
def test_local_resume_from_a_mid_run_checkpoint_advances(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        saved_replay: bool) -> None:
    run = tmp_path / "run"
    extra = [f"replay.save_in_checkpoint={str(saved_replay).lower()}"]
    at = _mid_run(run, *extra)
    assert 2000 <= at < 4000
    rc, summary = _train_cli(capsys, "--resume", str(run), "run.total_frames=8000")
    assert rc == 0, summary
    assert isinstance(summary, dict) and summary["frames"] >= 8000
    ckpt = load_checkpoint(list_checkpoints(run / "checkpoints")[-1])
    # Without a saved replay the learner refills learning_starts (250 agent steps) before updating again, with one
    # update per update_period (2) after that; with it, updates go on at once.
    before = int(load_checkpoint(list_checkpoints(run / "checkpoints")[0])["updates"])
    assert ckpt["updates"] > before


@pytest.mark.timeout(180)
@pytest.mark.usefixtures("ray_local")
@pytest.mark.parametrize("saved_replay", [False, True])
def test_ray_resume_from_a_mid_run_checkpoint_advances(tmp_path: Path, saved_replay: bool) -> None:
    run = tmp_path / "ray"
    extra = ["runtime.num_actors=2", "env.num_envs=4", f"replay.save_in_checkpoint={str(saved_replay).lower()}"]
    _mid_run(run, *extra)
    before = int(load_checkpoint(list_checkpoints(run / "checkpoints")[-1])["updates"])
    state = train(_catch(run, "run.total_frames=7000", *extra), resume=True)
    assert state.frames >= 7000 and state.updates > before


# --- defect 2: resume starts from the run's saved config -------------------------------------------------------
def test_resume_keeps_the_saved_config_and_refuses_unsafe_changes(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "cfg"
    rc, _ = _train_cli(capsys, "dqn_catch", *TINY, "run.total_frames=2000", "--run-dir", str(run))
    assert rc == 0
    saved_yaml = (run / "config.yaml").read_text()
    for argv, needle in ((["dqn_catch", "network.hidden=64"], "network.hidden: saved 32, this command 64"),
                         (["agent.lr=1e-3"], "agent.lr: saved 0.0005, this command 0.001"),
                         (["smoke"], "env.game: saved 'toy/catch', this command 'Pong'")):
        rc, err = _train_cli(capsys, *argv, "--resume", str(run))
        assert rc == 2 and needle in str(err), err
        assert (run / "config.yaml").read_text() == saved_yaml  # nothing rewritten by a refused resume
    # Retyping the command that started the run does not undo its own total_frames=2000.
    rc, summary = _train_cli(capsys, "dqn_catch", *TINY, "--resume", str(run))
    assert rc == 0 and isinstance(summary, dict) and summary["frames"] < 3000
    # A safe key may change, and config.yaml then says so.
    rc, summary = _train_cli(capsys, "--resume", str(run), "run.total_frames=3000")
    assert rc == 0 and isinstance(summary, dict) and summary["frames"] >= 3000
    assert "total_frames: 3000" in (run / "config.yaml").read_text()
    assert "hidden: 32" in (run / "config.yaml").read_text()


# --- defect 3: a failed start leaves nothing that blocks a retry ------------------------------------------------
def test_a_failed_start_does_not_block_the_corrected_command(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "c4"
    rc, err = _train_cli(capsys, "dqn_catch", *TINY, "env.game=Pongg", "--run-dir", str(run))
    assert rc == 2 and "Pongg" in str(err)
    assert not run.exists()
    # A folder a start left behind before its first checkpoint (config.yaml, TensorBoard files) is reused ...
    run.mkdir()
    (run / "config.yaml").write_text("algo: dqn\n")
    (run / "events.out.tfevents.1.host").write_bytes(b"")
    rc, summary = _train_cli(capsys, "dqn_catch", *TINY, "run.total_frames=1000", "--run-dir", str(run))
    assert rc == 0 and isinstance(summary, dict) and summary["frames"] >= 1000
    assert len(list(run.glob("events.out.tfevents.*"))) == 1  # the stale event file went
    # ... as is one named with --resume (it starts afresh from its own config.yaml).
    other = tmp_path / "c5"
    other.mkdir()
    (other / "config.yaml").write_text((run / "config.yaml").read_text())
    rc, summary = _train_cli(capsys, "--resume", str(other))
    assert rc == 0 and isinstance(summary, dict) and summary["frames"] >= 1000
    # A folder with anything else in it is still refused.
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    rc, err = _train_cli(capsys, "dqn_catch", *TINY, "--run-dir", str(keep))
    assert rc == 2 and "already exists" in str(err)
    assert (keep / "notes.txt").read_text() == "mine"


def test_fit_vae_with_missing_data_leaves_no_run_directory(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "c17"
    rc = main(["fit-vae", "vae_tiny", f"data.path={tmp_path / 'DOES_NOT_EXIST'}", "run.progress=false",
               "--run-dir", str(run)])
    assert rc == 2 and "DOES_NOT_EXIST" in capsys.readouterr().err
    assert not run.exists()  # validated before the folder is made


# --- defect 5: a corrupt newest checkpoint is skipped; a checkpoint file may be named ----------------------------
def test_resume_skips_a_corrupt_newest_checkpoint_and_accepts_a_file(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str],
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    run = tmp_path / "bad"
    train(_catch(run, "run.total_frames=3000"))
    ckpts = list_checkpoints(run / "checkpoints")
    newest = ckpts[-1]
    newest.write_bytes(newest.read_bytes()[:100])  # truncated, as by a full disk
    rc, summary = _train_cli(capsys, "--resume", str(run), "run.total_frames=4000")
    assert rc == 0 and isinstance(summary, dict) and summary["frames"] >= 4000
    assert newest.name in caplog.text  # the warning names the bad file
    # A checkpoint file may be named, and the run goes on from exactly that one.
    oldest = list_checkpoints(run / "checkpoints")[0]
    steps = int(load_checkpoint(oldest)["steps"])
    rc, summary = _train_cli(capsys, "--resume", str(oldest), "run.total_frames=5000")
    assert rc == 0 and isinstance(summary, dict) and summary["frames"] >= 5000
    assert steps * 4 < 4000


# --- defect 7: a mismatched network is a one-line error, not a traceback ---------------------------------------
def test_a_checkpoint_that_does_not_fit_is_a_clear_error(tmp_path: Path) -> None:
    from agents.dqn.train import train as dqn_train
    from worldmodels.common.resume import ResumeError

    run = tmp_path / "fit"
    dqn_train(_catch(run, "run.total_frames=1000"))
    with pytest.raises(ResumeError, match="network.hidden"):
        dqn_train(_catch(run, "run.total_frames=2000", "network.hidden=64"), resume=True)


def test_fit_vae_into_a_used_run_directory_is_a_one_line_error(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from tests.algos.fakes import moving_dot_dataset

    data = moving_dot_dataset(tmp_path / "data")
    run = tmp_path / "vae"
    args = ["fit-vae", "vae_tiny", f"data.path={data}", "run.progress=false", "run.total_frames=64",
            "run.eval_frames=16", "run.grad_var_every_frames=0", "--run-dir", str(run)]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "Traceback" not in err
    # fit-vae shares the resume rules: model settings may not change, the length may.
    assert main(["fit-vae", "--resume", str(run), "model.latent_dim=8"]) == 2
    assert "model.latent_dim" in capsys.readouterr().err
    assert main(["fit-vae", "--resume", str(run), "run.total_frames=96"]) == 0


# --- defect 4: restarts count deaths, not the calls that fail while Ray restarts an actor ------------------------
@pytest.mark.timeout(120)
@pytest.mark.usefixtures("ray_local")
def test_two_kills_of_one_actor_count_two_restarts() -> None:
    import ray

    from agents.runtime.ray_runtime import RayRuntime
    from tests.algos.fakes import sleepy_parts

    runtime = RayRuntime(sleepy_parts, None, num_actors=2, seed=0, chunk_steps=1, steps_per_chunk=2,
                         actor_cpus=0.5, max_restarts=3)
    try:
        for kill in (1, 2):
            pid = ray.get(runtime.actors[1].where.remote())["pid"]
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 60
            while runtime.restarts < kill and time.monotonic() < deadline:
                runtime.poll(0, 100, block=True)
            assert runtime.restarts == kill
        # Chunks keep coming from both actors, and no further restarts are counted.
        seen: set[int] = set()
        deadline = time.monotonic() + 10
        while len(seen) < 2 and time.monotonic() < deadline:
            seen.update(out.actor_id for out in runtime.poll(0, 100, block=True))
        assert seen == {0, 1}
        assert runtime.restarts == 2
    finally:
        runtime.close()
