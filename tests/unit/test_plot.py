"""Tests of launch/plot.py on real TensorBoard event files, and of launch/cluster.yaml."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from matplotlib.axes import Axes
from matplotlib.figure import Figure
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
# The figures are read back: every line's points and label, against the data written to the event files.


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """The figures plot_runs and plot_learning_curve draw, in order (each is still saved as its PNG)."""
    drawn: list[Figure] = []
    save = plot.save_png

    def capture(fig: Figure, out: Path) -> Path:
        drawn.append(fig)
        return save(fig, out)

    monkeypatch.setattr(plot, "save_png", capture)
    return drawn


def _lines(ax: Axes) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(label, x, y) of every line on ``ax``, in drawing order (matplotlib labels an unlabelled line "_child<i>")."""
    return [(str(line.get_label()), np.asarray(line.get_xdata(), dtype=np.float64),
             np.asarray(line.get_ydata(), dtype=np.float64)) for line in ax.get_lines()]


def _trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    return np.array([values[max(0, i - window + 1) : i + 1].mean() for i in range(values.size)])


def _assert_run_drawn(lines: list[tuple[str, np.ndarray, np.ndarray]], label: str, steps: np.ndarray,
                      values: np.ndarray, window: int) -> None:
    """The run's raw points (unlabelled, light) then their trailing mean (labelled), x in millions of frames."""
    i = next(i for i, (name, _, _) in enumerate(lines) if name == label)
    raw, smooth = lines[i - 1], lines[i]
    assert raw[0].startswith("_")
    np.testing.assert_array_equal(raw[1], steps / 1e6)
    np.testing.assert_array_equal(raw[2], values)
    np.testing.assert_array_equal(smooth[1], steps / 1e6)
    np.testing.assert_allclose(smooth[2], _trailing_mean(values, window), rtol=1e-12)


def test_plot_runs_without_baseline(runs: dict[str, Path], tmp_path: Path, figures: list[Figure]) -> None:
    out = plot.plot_runs([runs["dqn_pong"], runs["bonus_pong"]], tmp_path / "plots" / "returns.png", smooth=5)
    assert out == tmp_path / "plots" / "returns.png" and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _no_temp_files(out.parent)
    (fig,) = figures
    (ax,) = fig.axes
    lines = _lines(ax)
    assert len(lines) == 4  # raw and smoothed, per run
    _assert_run_drawn(lines, "dqn_pong", *_run_a(), window=5)
    _assert_run_drawn(lines, "bonus_pong", *_run_b(), window=5)
    assert ax.get_ylabel() == RETURN
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["dqn_pong", "bonus_pong"]


def test_plot_runs_up_to_equal_frames(runs: dict[str, Path], tmp_path: Path, figures: list[Figure]) -> None:
    # Runs that went on for different budgets are drawn only up to the frames given: equal frames.
    cut = 500_000
    plot.plot_runs([runs["dqn_pong"], runs["bonus_pong"]], tmp_path / "cut.png", smooth=5, up_to_frames=cut)
    lines = _lines(figures[0].axes[0])
    for name, run in (("dqn_pong", _run_a()), ("bonus_pong", _run_b())):
        keep = run[0] <= cut
        assert keep.sum() < len(keep)  # something was dropped
        # The window is at most a tenth of the points that remain (plot._window).
        _assert_run_drawn(lines, name, run[0][keep], run[1][keep], window=plot._window(5, int(keep.sum())))
    with pytest.raises(ValueError, match="up_to_frames"):
        plot.plot_runs([runs["dqn_pong"]], tmp_path / "bad.png", up_to_frames=0)


def test_plot_runs_with_dqn_baseline_reads_game_from_config(runs: dict[str, Path], tmp_path: Path,
                                                            figures: list[Figure]) -> None:
    from launch import scores

    # The two configs spell pong differently ("pong", "ALE/Pong-v5"); both are the same game.
    plot.plot_runs([runs["dqn_pong"], runs["bonus_pong"]], tmp_path / "b.png", baseline="DQN")
    plot.plot_runs([runs["dqn_pong"]], tmp_path / "full.png", baseline="Rainbow", full_baseline=True)
    dopamine = {agent: np.stack([v for _, v in scores.load_dopamine("pong", agent).values()])
                for agent in ("DQN", "Rainbow")}
    # Cut to our runs: the iterations (1M frames each) that start by the longest run's last frame.
    longest = int(_run_b()[0].max())
    kept = longest // 1_000_000 + 1
    label, x, y = _lines(figures[0].axes[0])[-1]
    assert label.startswith("Dopamine DQN (mean of")
    np.testing.assert_allclose(x, np.arange(kept) + 0.5)
    np.testing.assert_allclose(y, dopamine["DQN"][:, :kept].mean(axis=0))
    assert figures[0].texts[0].get_text() == "pong"  # the suptitle: the game both configs name
    label, x, y = _lines(figures[1].axes[0])[-1]  # the full curve: every iteration
    assert label.startswith("Dopamine Rainbow")
    np.testing.assert_allclose(y, dopamine["Rainbow"].mean(axis=0))
    assert x.size == dopamine["Rainbow"].shape[1] > kept
    # Overwriting an existing plot replaces it in one step; dpi sets the size.
    again = plot.plot_runs([runs["dqn_pong"]], tmp_path / "b.png", baseline="DQN", game="Pong", dpi=50)
    assert _png_size(again) == (500, 250)
    assert _no_temp_files(tmp_path)


def test_plot_runs_two_panels(runs: dict[str, Path], tmp_path: Path, figures: list[Figure]) -> None:
    plot.plot_runs([runs["dqn_pong"], runs["bonus_pong"]], tmp_path / "two.png", baseline="DQN",
                   tags=[RETURN, ROOMS])
    top, bottom = figures[0].axes
    assert (top.get_ylabel(), bottom.get_ylabel()) == (RETURN, ROOMS)
    assert [name for name, _, _ in _lines(top) if not name.startswith("_")] == [
        "dqn_pong", "bonus_pong", next(n for n, _, _ in _lines(top) if n.startswith("Dopamine"))]
    # Only dqn_pong logged rooms: three points, too few to smooth, drawn as they are.
    ((label, x, y),) = _lines(bottom)
    assert label == "dqn_pong"
    np.testing.assert_array_equal(x, [0.1, 0.4, 0.9])
    np.testing.assert_array_equal(y, [1.0, 2.0, 4.0])


def test_plot_runs_baseline_errors(runs: dict[str, Path], tmp_path: Path, figures: list[Figure]) -> None:
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
    assert not (tmp_path / "x.png").exists() and not figures  # nothing drawn before an error
    # Without a baseline the game is only the title: no config is fine.
    plot.plot_runs([runs["no_config"]], tmp_path / "ok.png")
    assert figures[0].texts[0].get_text() == "Learning curves"
    _assert_run_drawn(_lines(figures[0].axes[0]), "no_config", *_run_a(), window=82 // 10)


def test_plot_learning_curve(runs: dict[str, Path], tmp_path: Path, figures: list[Figure]) -> None:
    run = tmp_path / "with_eval"
    evals = (np.array([500_000, 1_000_000]), np.array([-12.0, -9.5]))
    _write(run, {RETURN: _run_b(), "eval/mean_return": evals}, game="pong")
    out = plot.plot_learning_curve(run)
    assert out == run / "learning_curve.png" and out.is_file()
    assert _no_temp_files(run)
    lines = _lines(figures[0].axes[0])
    _assert_run_drawn(lines, f"training episodes ({RETURN})", *_run_b(), window=120 // 10)
    label, x, y = lines[-1]
    assert label == "eval/mean_return"
    np.testing.assert_array_equal(x, [0.5, 1.0])
    np.testing.assert_array_equal(y, [-12.0, -9.5])
    assert figures[0].texts[0].get_text() == "with_eval (pong)"
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
