"""One writer per run directory: a second process is refused naming the live one, and the lock dies with its
process (kill -9 leaves no stale lock)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from worldmodels.common.scaffold import RunExistsError, RunScaffold

_HOLDER = """
import sys, time
from worldmodels.common.scaffold import RunScaffold
with RunScaffold(sys.argv[1], resume=sys.argv[2] == "resume", config_yaml="a: 1\\n", progress=False):
    print("running", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A process in the middle of a run in ``tmp_path / "run"``."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path / "run"), "new"], stdout=subprocess.PIPE,
                            text=True, cwd=Path(__file__).parents[2])
    assert proc.stdout is not None and proc.stdout.readline().strip() == "running"
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_a_second_writer_is_refused_naming_the_live_process(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    run = tmp_path / "run"
    config_before = (run / "config.yaml").read_text()
    for resume in (False, True):  # a second start, and a --resume, while the first one runs
        with pytest.raises(RunExistsError, match=f"in use by pid {holder.pid} "):
            RunScaffold(run, resume=resume, config_yaml="a: 2\n", progress=False)
    assert (run / "config.yaml").read_text() == config_before  # nothing of the live run touched


def test_kill_9_leaves_no_stale_lock(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    run = tmp_path / "run"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with RunScaffold(run, resume=True, progress=False) as scaffold:  # the kernel released the lock
        assert scaffold.path == run
    with RunScaffold(run, resume=True, progress=False):  # and the scaffold released it again when it closed
        pass


def test_collect_refuses_a_dataset_folder_another_process_writes(tmp_path: Path) -> None:
    from launch.collect import collect
    from worldmodels.common.runlock import DirectoryLock

    out = tmp_path / "data"
    code = ("import sys, time\nfrom worldmodels.common.runlock import DirectoryLock\n"
            "DirectoryLock(sys.argv[1]).acquire()\nprint('locked', flush=True)\ntime.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).parents[2])
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        for resume in (False, True):
            with pytest.raises(RunExistsError, match=f"in use by pid {proc.pid} "):
                collect("toy/catch", out, frames=50, actors=0, envs_per_actor=1, progress=False, resume=resume)
    finally:
        proc.kill()
        proc.wait()
    time.sleep(0.1)
    manifest = collect("toy/catch", out, frames=50, actors=0, envs_per_actor=1, progress=False)
    assert manifest["counts"]["frames"] == 50
    with DirectoryLock(out):  # collect released its lock when it returned
        pass
