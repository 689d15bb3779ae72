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
    assert proc.returncode == 130, err
    assert "last checkpoint" in err
    ckpts = list_checkpoints(run / "checkpoints")
    assert len(ckpts) == 1
    assert load_checkpoint(ckpts[0])["steps"] > 0
