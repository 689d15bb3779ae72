"""The run scaffold: signals stop a run between steps (a second one at once), and everything is closed however the
run ends."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from worldmodels.common.checkpoint import save_checkpoint
from worldmodels.common.scaffold import RunExistsError, RunScaffold


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_run_at_the_next_check_and_writes_a_last_checkpoint(tmp_path: Path, sig: int) -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    written, closed, steps = [], [], []
    with pytest.raises(KeyboardInterrupt):
        with RunScaffold(tmp_path / "run", config_yaml="a: 1\n", progress=False) as run:
            run.on_interrupt(lambda: written.append(len(steps)))
            run.add_cleanup(lambda: closed.append(True))
            for step in range(10):
                run.check_interrupt()
                if step == 3:
                    os.kill(os.getpid(), sig)  # arrives inside step 3, which still finishes
                steps.append(step)
    assert steps == [0, 1, 2, 3] and written == [4] and closed == [True]
    assert {s: signal.getsignal(s) for s in before} == before
    assert (tmp_path / "run" / "config.yaml").read_text() == "a: 1\n"


def test_a_second_signal_stops_at_once(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        with RunScaffold(tmp_path / "run", progress=False) as run:
            os.kill(os.getpid(), signal.SIGTERM)
            assert run.stop_requested
            os.kill(os.getpid(), signal.SIGTERM)  # raises here, without waiting for a check
            pytest.fail("the second signal did not stop the run")


def test_another_error_writes_a_checkpoint_and_still_cleans_up(tmp_path: Path) -> None:
    written, closed = [], []
    with pytest.raises(ValueError, match="a bug in the loop"):
        with RunScaffold(tmp_path / "run", progress=False) as run:
            run.on_error(lambda: written.append(save_checkpoint(run.path / "checkpoints", 10, {})))
            run.add_cleanup(lambda: closed.append(True))
            raise ValueError("a bug in the loop")
    assert [p.name for p in written] == ["ckpt_000000000010.pt"] and closed == [True]
    with pytest.raises(RunExistsError):  # a run with a checkpoint: only --resume continues it
        RunScaffold(tmp_path / "run")


def test_a_plain_keyboard_interrupt_after_sigterm_exits_143(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Interrupted that SIGTERM's handler raises can come back from inside a library call (Ray's ray.get) as a
    plain KeyboardInterrupt: the command still exits 143, from the signal the handler recorded."""
    import launch.plot
    from launch.cli import main
    from worldmodels.common import scaffold

    monkeypatch.setattr(scaffold, "_stop_signal", None)

    def library_call(*args: object, **kwargs: object) -> None:
        try:
            scaffold.raise_interrupted(signal.SIGTERM, None)
        except KeyboardInterrupt:
            raise KeyboardInterrupt from None  # what a library that catches and re-raises its own does

    monkeypatch.setattr(launch.plot, "plot_runs", library_call)
    assert scaffold.stop_signal() is None
    assert main(["plot", "somewhere", "-o", "x.png"]) == 143
    assert scaffold.stop_signal() == signal.SIGTERM
    monkeypatch.setattr(scaffold, "_stop_signal", None)
    monkeypatch.setattr(launch.plot, "plot_runs", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert main(["plot", "somewhere", "-o", "x.png"]) == 130  # Ctrl-C with no handler involved
