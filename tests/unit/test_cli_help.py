"""``--help`` names every preset in configs/ (read from the files) and every default; ``-v`` works after the
command too (issue 13, defect 9)."""

from __future__ import annotations

import pytest

from launch.cli import build_parser
from launch.config import CONFIG_DIR


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--help"])
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines: compare with single spaces


def test_train_and_fit_help_list_every_preset_of_their_kind(capsys: pytest.CaptureFixture[str]) -> None:
    names = {p.stem for p in CONFIG_DIR.glob("*.yaml")}
    train, vae, video = _help(capsys, "train"), _help(capsys, "fit-vae"), _help(capsys, "fit-world-model")
    agent = {n for n in names if not n.startswith(("vae_", "video_", "gvae_"))}
    assert {"dqn_nature", "dqn_cts_montezuma", "dqn_informed_breakout", "a2c_pong", "impala_minatar"} <= agent
    for name in agent:
        assert name in train, name
    for name in names - agent:
        assert name not in train.replace("configs/", ""), name
    assert all(n in vae for n in ("vae_atari", "vae_atari_factorised", "vae_tiny"))
    assert all(n in video for n in ("video_cpu_ff", "video_cpu_rnn", "video_paper_ff", "video_tiny"))
    gvae = _help(capsys, "fit-gvae")
    assert "gvae_cpu" in gvae and "gvae_paper" in gvae and "gvae_cpu" not in video
    sb3 = _help(capsys, "sb3")
    assert "ppo_minatar" in sb3 and "dqn_pong" not in sb3


def test_help_shows_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert "(default: 12345)" in _help(capsys, "evaluate")
    collect = _help(capsys, "collect")
    assert "(default: 0.1)" in collect and "(default: machado)" in collect and "(default: 0)" in collect
    assert "(default: 1,10,100,1000)" in _help(capsys, "evaluate-vae")


def test_verbose_after_the_command() -> None:
    parser = build_parser()
    assert parser.parse_args(["train", "smoke", "-v"]).verbose is True
    assert parser.parse_args(["-v", "train", "smoke"]).verbose is True
    assert parser.parse_args(["train", "smoke"]).verbose is False


def test_ctrl_c_in_collect_says_what_was_kept(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    import launch.collect
    from launch.cli import main

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(launch.collect, "collect", interrupted)
    assert main(["collect", "toy/catch", "--frames", "100", "--out", "unused", "--actors", "0"]) == 130
    err = capsys.readouterr().err
    assert "checkpoint" not in err and "--resume RUN_DIR" not in err  # collect has no checkpoints
    assert "kept" in err and "--resume" in err


def test_an_earlier_commands_sigterm_is_not_this_ones_exit_status(monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # main() runs many commands in one test process: a SIGTERM recorded by an earlier one must not turn this
    # command's Ctrl-C (130) into 143 (once an order-dependent failure of the test above).
    import signal

    import launch.collect
    from launch.cli import main
    from worldmodels.common import scaffold

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    scaffold._record_stop(signal.SIGTERM)
    monkeypatch.setattr(launch.collect, "collect", interrupted)
    assert main(["collect", "toy/catch", "--frames", "100", "--out", "unused", "--actors", "0"]) == 130
    assert scaffold.stop_signal() is None
