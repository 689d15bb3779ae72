"""Tests of launch/plot.py on real TensorBoard event files, and of launch/cluster.yaml."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch.utils.tensorboard import SummaryWriter

from launch import plot

torch.set_num_threads(1)

RETURN = "charts/episodic_return"
ROOMS = "explore/rooms_visited"


def _run_a() -> tuple[np.ndarray, np.ndarray]:
    # Pong-like returns: -21 .. 20 in steps of 0.5, all exact in float32; steps in emulator frames.
    steps = np.arange(1, 83, dtype=np.int64) * 12_000
    values = np.arange(82, dtype=np.float64) * 0.5 - 21.0
    return steps, values


def _run_b() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    steps = np.cumsum(rng.integers(3_000, 20_000, size=120)).astype(np.int64)
    # float32 is what TensorBoard stores: the widened float32 numbers must come back exactly.
    values = rng.normal(-15.0, 3.0, size=120).astype(np.float32).astype(np.float64)
    return steps, values


def _write(run_dir: Path, series: dict[str, tuple[np.ndarray, np.ndarray]], game: str | None) -> None:
    run_dir.mkdir(parents=True)
    if game is not None:
        (run_dir / "config.yaml").write_text(f"env:\n  game: {game}\nseed: 0\n")
    writer = SummaryWriter(str(run_dir))
    for tag, (steps, values) in series.items():
        for step, value in zip(steps, values, strict=True):
            writer.add_scalar(tag, float(value), int(step))
    writer.close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    rooms = (np.array([100_000, 400_000, 900_000], dtype=np.int64), np.array([1.0, 2.0, 4.0]))
    _write(root / "dqn_pong", {RETURN: _run_a(), ROOMS: rooms}, game="pong")
    _write(root / "bonus_pong", {RETURN: _run_b()}, game="ALE/Pong-v5")
    _write(root / "no_config", {RETURN: _run_a()}, game=None)
    _write(root / "catch", {RETURN: _run_a()}, game="toy/catch")
    return {p.name: p for p in root.iterdir()}


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _no_temp_files(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


# -------------------------------------------------------------------------------------------- read_scalars


def test_read_scalars_returns_exactly_what_was_written(runs: dict[str, Path]) -> None:
    for name, (steps, values) in [("dqn_pong", _run_a()), ("bonus_pong", _run_b())]:
        got_steps, got_values = plot.read_scalars(runs[name], RETURN)
        assert got_steps.dtype == np.int64 and got_values.dtype == np.float64
        np.testing.assert_array_equal(got_steps, steps)
        np.testing.assert_array_equal(got_values, values)
    steps, values = plot.read_scalars(str(runs["dqn_pong"]), ROOMS)
    np.testing.assert_array_equal(steps, [100_000, 400_000, 900_000])
    np.testing.assert_array_equal(values, [1.0, 2.0, 4.0])
    assert plot.scalar_tags(runs["dqn_pong"]) == [RETURN, ROOMS]


def test_read_scalars_missing_tag_lists_available(runs: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match=r"no scalar tag 'charts/episodic_retrun'.*Did you mean") as info:
        plot.read_scalars(runs["dqn_pong"], "charts/episodic_retrun")
    assert "charts/episodic_return, explore/rooms_visited" in str(info.value)


def test_read_scalars_without_event_files(runs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plot.read_scalars(tmp_path / "missing", RETURN)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="No TensorBoard event files"):
        plot.read_scalars(tmp_path / "empty", RETURN)
    # Pointing at runs/ instead of runs/<name>/ names the run directories below it.
    with pytest.raises(FileNotFoundError, match=r"Run directories below it: .*dqn_pong"):
        plot.read_scalars(runs["dqn_pong"].parent, RETURN)


def test_smooth_trailing_hand_computed() -> None:
    np.testing.assert_allclose(plot.smooth_trailing(np.array([1.0, 2.0, 3.0, 4.0]), 2), [1.0, 1.5, 2.5, 3.5])
    np.testing.assert_allclose(plot.smooth_trailing(np.array([1.0, 2.0, 3.0, 4.0]), 3), [1.0, 1.5, 2.0, 3.0])
    np.testing.assert_allclose(plot.smooth_trailing(np.array([1.0, np.nan, 3.0]), 2), [1.0, 1.0, 3.0])
    np.testing.assert_allclose(plot.smooth_trailing(np.array([5.0, -1.0]), 1), [5.0, -1.0])
    assert np.isnan(plot.smooth_trailing(np.array([np.nan, 1.0]), 1)[0])
    with pytest.raises(ValueError, match=">= 1"):
        plot.smooth_trailing(np.array([1.0]), 0)


# ----------------------------------------------------------------------------------------------- plot_runs


def test_plot_runs_without_baseline(runs: dict[str, Path], tmp_path: Path) -> None:
    out = plot.plot_runs([runs["dqn_pong"], runs["bonus_pong"]], tmp_path / "plots" / "returns.png", smooth=5)
    assert out == tmp_path / "plots" / "returns.png"
    assert _png_size(out) == (1000, 500)  # 10 x 5 inches at 100 dpi
    assert out.stat().st_size > 10_000
    assert _no_temp_files(out.parent)


def test_plot_runs_with_dqn_baseline_reads_game_from_config(runs: dict[str, Path], tmp_path: Path) -> None:
    # The two configs spell pong differently ("pong", "ALE/Pong-v5"); both are the same game.
    out = plot.plot_runs([runs["dqn_pong"], runs["bonus_pong"]], tmp_path / "b.png", baseline="DQN")
    assert _png_size(out) == (1000, 500)
    full = plot.plot_runs([runs["dqn_pong"]], tmp_path / "full.png", baseline="Rainbow", full_baseline=True)
    assert _png_size(full) == (1000, 500)
    assert out.read_bytes() != full.read_bytes()
    # Overwriting an existing plot replaces it in one step.
    again = plot.plot_runs([runs["dqn_pong"]], tmp_path / "b.png", baseline="DQN", game="Pong", dpi=50)
    assert _png_size(again) == (500, 250)
    assert _no_temp_files(tmp_path)


def test_plot_runs_two_panels(runs: dict[str, Path], tmp_path: Path) -> None:
    out = plot.plot_runs(
        [runs["dqn_pong"], runs["bonus_pong"]], tmp_path / "two.png", baseline="DQN", tags=[RETURN, ROOMS]
    )
    assert _png_size(out) == (1000, 800)  # 10 x (5 + 3) inches


def test_plot_runs_baseline_errors(runs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"toy/catch.*Games with a baseline: .*montezuma_revenge.*pong"):
        plot.plot_runs([runs["catch"]], tmp_path / "x.png", baseline="DQN")
    with pytest.raises(ValueError, match="Games with a baseline"):
        plot.plot_runs([runs["dqn_pong"]], tmp_path / "x.png", baseline="DQN", game="alien")
    with pytest.raises(ValueError, match=r"no env.game in config.yaml .*pass game="):
        plot.plot_runs([runs["no_config"]], tmp_path / "x.png", baseline="DQN")
    with pytest.raises(ValueError, match="different games"):
        plot.plot_runs([runs["dqn_pong"], runs["catch"]], tmp_path / "x.png", baseline="DQN")
    with pytest.raises(ValueError, match=r"agent 'C51'"):
        plot.plot_runs([runs["dqn_pong"]], tmp_path / "x.png", baseline="C51")
    with pytest.raises(ValueError, match="add that tag"):
        plot.plot_runs([runs["dqn_pong"]], tmp_path / "x.png", baseline="DQN", tags=[ROOMS])
    with pytest.raises(ValueError, match=r"No run has the scalar tag 'losses/td_loss'"):
        plot.plot_runs([runs["dqn_pong"]], tmp_path / "x.png", tag="losses/td_loss")
    with pytest.raises(ValueError, match="smooth"):
        plot.plot_runs([runs["dqn_pong"]], tmp_path / "x.png", smooth=0)
    assert not (tmp_path / "x.png").exists()
    # Without a baseline the game is only the title: no config is fine.
    assert _png_size(plot.plot_runs([runs["no_config"]], tmp_path / "ok.png")) == (1000, 500)


def test_plot_learning_curve(runs: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "with_eval"
    evals = (np.array([500_000, 1_000_000]), np.array([-12.0, -9.5]))
    _write(run, {RETURN: _run_b(), "eval/mean_return": evals}, game="pong")
    out = plot.plot_learning_curve(run)
    assert out == run / "learning_curve.png"
    assert _png_size(out) == (1000, 500)
    assert _no_temp_files(run)
    empty = tmp_path / "no_episodes"
    _write(empty, {"charts/frames_per_s": (np.array([4_000]), np.array([900.0]))}, game="pong")
    with pytest.raises(ValueError, match=r"no scalar tag 'charts/episodic_return'.*charts/frames_per_s"):
        plot.plot_learning_curve(empty)


# ------------------------------------------------------------------------------------------- cluster.yaml


def test_cluster_yaml_parses_and_starts_head_and_workers() -> None:
    path = Path(plot.__file__).parent / "cluster.yaml"
    cfg = yaml.safe_load(path.read_text())
    assert cfg["provider"]["type"] == "local"
    assert isinstance(cfg["provider"]["head_ip"], str) and isinstance(cfg["provider"]["worker_ips"], list)
    assert any("pip install -e ." in c for c in cfg["setup_commands"])
    head = " ".join(cfg["head_start_ray_commands"])
    assert "ray start --head --port=6379" in head and "--num-cpus=" in head
    assert any("ray start --address=$RAY_HEAD_IP:6379" in c for c in cfg["worker_start_ray_commands"])
    assert cfg["file_mounts"] == {"~/reverie": "."}
    assert "runtime.ray_address=auto" in path.read_text()  # the usage comment says how training joins
    # The same checks `ray up` runs before touching any machine: defaults filled in, JSON schema valid.
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(cfg))


def test_iterations_table_averages_each_million_frames(tmp_path: Path) -> None:
    from launch.iterations import iteration_means, iterations_table
    from launch.scores import human_normalized

    run = tmp_path / "mfec_pacman"
    run.mkdir()
    (run / "config.yaml").write_text("env:\n  game: MsPacman\n")
    writer = SummaryWriter(str(run))
    for frame, value in ((100_000, 200.0), (900_000, 400.0), (1_200_000, 700.0)):
        writer.add_scalar("charts/episodic_return", value, frame)
    for frame in (500_000, 1_000_000, 1_500_000):  # the run stopped at 1.5M: its second million is unfinished
        writer.add_scalar("charts/frames_per_s", 1000.0, frame)
    writer.close()
    assert iteration_means(run, 2) == [300.0, None]
    table = iterations_table([run], 2)
    hns = human_normalized("MsPacman", 300.0)
    assert hns is not None and f"| mfec_pacman | MsPacman | 300.0 ({100 * hns:.1f}%) | - |" in table
    assert "Dopamine DQN" in table and "386.7" in table  # Dopamine's first iteration on Ms. Pac-Man
