"""Ctrl-C (SIGINT) and SIGTERM write a last checkpoint from which the run resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from worldmodels.common.checkpoint import list_checkpoints, load_checkpoint


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_writes_last_checkpoint(tmp_path: Path, sig: signal.Signals) -> None:
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "launch.cli", "train", "dqn_catch", "--run-dir", str(run),
           "run.total_frames=100000000", "run.checkpoint_every_frames=100000000", "run.progress=false",
           "agent.learning_starts_frames=400", "agent.batch_size=8"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 120
    # Wait until training is under way (TensorBoard file exists and some frames are logged), then interrupt.
    while time.time() < deadline and not list(run.glob("events.out.tfevents.*")):
        time.sleep(0.5)
    time.sleep(4)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err  # 130 for SIGINT, 143 for SIGTERM, as a shell reports them
    assert "last checkpoint" in err
    ckpts = list_checkpoints(run / "checkpoints")
    assert len(ckpts) == 1
    assert load_checkpoint(ckpts[0])["steps"] > 0


def _ray_actors_of(pid: int) -> list[str]:
    """Command lines of the Ray actor processes the process ``pid`` started (Ray names them ``ray::Class``)."""
    import psutil

    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    names = []
    for child in children:
        try:
            names.append(" ".join(child.cmdline()))
        except psutil.Error:
            pass
    return [n for n in names if n.startswith("ray::EnvActor")]


def _start_and_signal(cmd: list[str], run: Path, sig: signal.Signals, wait_for: str = "events.out.tfevents.*",
                      settle: float = 3.0) -> tuple[int, str]:
    """Start ``cmd``, wait until ``run`` holds ``wait_for`` and its Ray actors run (training is under way), then
    send ``sig``; returns (exit status, stderr)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 150
    while time.time() < deadline and proc.poll() is None and not (list(run.glob(wait_for))
                                                                   and _ray_actors_of(proc.pid)):
        time.sleep(0.5)
    time.sleep(settle)
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"the run did not stop within 120 s of {sig.name}: {err[-3000:]}")
    return proc.returncode, err


def test_sigterm_under_ray_writes_a_last_checkpoint(tmp_path: Path) -> None:
    """Ray's ray.init installs its own SIGTERM handler (sys.exit(15), no checkpoint): the run's must stay."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "launch.cli", "train", "a2c_tiny", "agent.loss=impala", "runtime.num_actors=2",
           "runtime.max_ahead_chunks=1", "run.total_frames=100000000", "run.checkpoint_every_frames=100000000",
           "run.eval_episodes=0", "run.progress=false", "--run-dir", str(run)]
    status, err = _start_and_signal(cmd, run, signal.SIGTERM)
    assert status == 143, err[-3000:]
    assert "interrupted; last checkpoint" in err and "Traceback" not in err, err[-3000:]
    ckpts = list_checkpoints(run / "checkpoints")
    assert len(ckpts) == 1 and load_checkpoint(ckpts[0])["steps"] > 0


def test_sigterm_stops_collect_under_ray_keeping_its_episodes(tmp_path: Path) -> None:
    out = tmp_path / "data"
    cmd = [sys.executable, "-m", "launch.cli", "collect", "toy/catch", "--out", str(out), "--frames", "100000000",
           "--actors", "2", "--envs-per-actor", "2", "--shard-frames", "200", "--no-progress"]
    status, err = _start_and_signal(cmd, out, signal.SIGTERM, wait_for="manifest.json", settle=1.0)
    assert status == 143, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    from worldmodels.data import read_manifest

    manifest = read_manifest(out)
    assert manifest["complete"] is False and manifest["counts"]["frames"] > 0
