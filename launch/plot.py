"""Learning-curve plots from TensorBoard run directories, optionally beside Dopamine's published curves.

A run directory (``runs/<name>/``) holds TensorBoard event files directly inside it and ``config.yaml``.
Every scalar's step is the number of emulator frames (agent steps x frame skip), so our curves and
Dopamine's (one iteration = 1M emulator frames) share the x axis without conversion.

Figures are drawn with matplotlib's Agg canvas on a private ``Figure`` (no pyplot state, safe in
worker threads and headless machines) and written atomically: a reader never sees a half-written PNG.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from omegaconf import OmegaConf
from tensorboard.backend.event_processing import event_accumulator

from launch import scores

__all__ = [
    "DEFAULT_SMOOTH",
    "RETURN_TAG",
    "plot_learning_curve",
    "plot_runs",
    "read_many",
    "read_scalars",
    "scalar_tags",
    "smooth_trailing",
]

#: The tag that Dopamine's curves are comparable with: mean return of training episodes.
RETURN_TAG = "charts/episodic_return"
EVAL_TAG = "eval/mean_return"
#: Default smoothing window, in logged points (episodes for ``charts/episodic_return``).
DEFAULT_SMOOTH = 50

# Figure geometry in inches; the PNG is (width x height) * dpi pixels.
_WIDTH_IN = 10.0
_FIRST_PANEL_IN = 5.0
_EXTRA_PANEL_IN = 3.0
_EVENT_FILE_MARK = "tfevents"

# Keep every scalar (0 = no reservoir sampling); keep as little as possible of the heavy kinds we never plot.
_SIZE_GUIDANCE = {
    event_accumulator.SCALARS: 0,
    event_accumulator.IMAGES: 1,
    event_accumulator.AUDIO: 1,
    event_accumulator.HISTOGRAMS: 1,
    event_accumulator.COMPRESSED_HISTOGRAMS: 1,
    event_accumulator.TENSORS: 1,
}


# ----------------------------------------------------------------------------------------------- reading


def _has_event_files(directory: Path) -> bool:
    return any(p.is_file() and _EVENT_FILE_MARK in p.name for p in directory.iterdir())


def _load(run_dir: Path | str) -> event_accumulator.EventAccumulator:
    """Load all scalars of the event files directly inside ``run_dir`` (not its subdirectories)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"Run directory {run_dir} does not exist (expected runs/<name>/).")
    if not _has_event_files(run_dir):
        below = sorted(str(p) for p in run_dir.glob("*/") if p.is_dir() and _has_event_files(p))
        hint = f" Run directories below it: {', '.join(below)}; pass those instead." if below else ""
        raise FileNotFoundError(
            f"No TensorBoard event files (events.out.tfevents.*) directly in {run_dir}.{hint}"
        )
    # TensorBoard's own loader: reads the event files in order and, like the TensorBoard UI, drops
    # events orphaned by a restart from an earlier checkpoint (a step that goes backwards).
    acc = event_accumulator.EventAccumulator(str(run_dir), size_guidance=_SIZE_GUIDANCE)
    acc.Reload()
    return acc


def _tags(acc: event_accumulator.EventAccumulator) -> list[str]:
    return sorted(acc.Tags()[event_accumulator.SCALARS])


def _missing_tag_error(run_dir: Path | str, tag: str, available: list[str]) -> ValueError:
    close = difflib.get_close_matches(tag, available, n=3)
    hint = f" Did you mean {close}?" if close else ""
    return ValueError(
        f"Run {run_dir} has no scalar tag {tag!r}.{hint} Its scalar tags: {', '.join(available) or '(none)'}."
    )


def _scalars(
    acc: event_accumulator.EventAccumulator, run_dir: Path | str, tag: str
) -> tuple[np.ndarray, np.ndarray]:
    available = _tags(acc)
    if tag not in available:
        raise _missing_tag_error(run_dir, tag, available)
    events = acc.Scalars(tag)
    steps = np.array([e.step for e in events], dtype=np.int64)
    values = np.array([e.value for e in events], dtype=np.float64)
    return steps, values


def scalar_tags(run_dir: Path | str) -> list[str]:
    """Sorted scalar tags logged in a run directory.

    :raises FileNotFoundError: if ``run_dir`` is missing or has no event files directly inside it.
    """
    return _tags(_load(run_dir))


def read_many(run_dir: Path | str, tags: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The points of each of ``tags`` the run logged (:func:`read_scalars`' arrays), reading its event files once;
    tags it never logged are left out."""
    acc = _load(run_dir)
    logged = set(_tags(acc))
    return {tag: _scalars(acc, run_dir, tag) for tag in tags if tag in logged}


def read_scalars(run_dir: Path | str, tag: str) -> tuple[np.ndarray, np.ndarray]:
    """All points of one scalar tag of a run, in logging order.

    :param run_dir: a run directory with TensorBoard event files directly inside it.
    :param tag: e.g. ``"charts/episodic_return"``.
    :return: ``(steps int64 [N], values float64 [N])``; steps are emulator frames, values are the logged
        float32 numbers widened to float64 (exactly).
    :raises FileNotFoundError: if ``run_dir`` is missing or has no event files directly inside it.
    :raises ValueError: if the tag was never logged; the message lists the tags the run has.
    """
    return _scalars(_load(run_dir), run_dir, tag)


def config_game(run_dir: Path) -> str | None:
    """``env.game`` of the run's saved config, or None without a config or key."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return None
    value = OmegaConf.select(OmegaConf.load(path), "env.game", default=None)
    return None if value is None else str(value)


# ----------------------------------------------------------------------------------------------- drawing


def smooth_trailing(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over the last ``window`` points (fewer at the start), ignoring non-finite values.

    A trailing (not centred) window keeps the curve causal: the smoothed value at a step is "the mean of
    the last ``window`` episodes", the number RL papers report, and never uses later data.

    :param values: float [N].
    :param window: number of points >= 1 (1 returns a copy).
    :return: float64 [N]; NaN where the window holds no finite value.
    """
    if window < 1:
        raise ValueError(f"smoothing window must be >= 1 point, got {window}")
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    sums = np.concatenate([[0.0], np.cumsum(np.where(finite, values, 0.0))])
    counts = np.concatenate([[0], np.cumsum(finite)])
    end = np.arange(1, values.size + 1)
    start = np.maximum(0, end - window)
    n = counts[end] - counts[start]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (sums[end] - sums[start]) / np.maximum(n, 1), np.nan)


def _new_figure(n_panels: int, dpi: int) -> tuple[Figure, list[Axes]]:
    height = _FIRST_PANEL_IN + _EXTRA_PANEL_IN * (n_panels - 1)
    fig = Figure(figsize=(_WIDTH_IN, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)  # attach the Agg canvas: rendering never depends on the user's backend
    axes = fig.subplots(n_panels, 1, sharex=True, squeeze=False)[:, 0]
    for ax in axes:
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel("emulator frames (millions)")
    return fig, list(axes)


def _window(smooth: int, n_points: int) -> int:
    # A window over a tenth of a curve lags it visibly (a sparse tag such as explore/rooms_visited has few
    # points where episodic returns have thousands), so a curve is smoothed over at most 10% of its points.
    return max(1, min(smooth, n_points // 10))


def _draw_curve(ax: Axes, steps: np.ndarray, values: np.ndarray, color: str, label: str, smooth: int) -> None:
    x = steps / 1e6
    window = _window(smooth, values.size)
    if window > 1:
        ax.plot(x, values, color=color, alpha=0.25, linewidth=0.8)
        ax.plot(x, smooth_trailing(values, window), color=color, linewidth=2.0, label=label)
    else:
        ax.plot(x, values, color=color, linewidth=1.5, label=label, marker="." if values.size < 30 else None)


def _draw_baseline(ax: Axes, game: str, agent: str, max_frames: float | None) -> None:
    # max_frames keeps only iterations that overlap our runs: a 200M-frame curve would squash a short run.
    frames, mean, low, high = scores.dopamine_curve(game, agent, max_frames)
    n_runs = len(scores.load_dopamine(game, agent))
    x = frames / 1e6
    ax.fill_between(x, low, high, color="0.5", alpha=0.2, linewidth=0)
    ax.plot(
        x,
        mean,
        color="black",
        linestyle="--",
        linewidth=1.8,
        marker="o" if x.size < 20 else None,
        label=f"Dopamine {agent} (mean of {n_runs} runs, band: min-max)",
    )


def _draw_random(ax: Axes, level: float) -> None:
    ax.axhline(level, color="0.4", linestyle="--", linewidth=1.2, label=f"random policy ({level:.2f})")


def _run_labels(run_dirs: Sequence[Path]) -> list[str]:
    names = [d.name for d in run_dirs]
    if len(set(names)) == len(names):
        return names
    # Same leaf name in different experiments (runs/a/seed0, runs/b/seed0): add the parent.
    return [f"{d.parent.name}/{d.name}" for d in run_dirs]


def save_png(fig: Figure, out: Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png")
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a plot is meant to be shared
        os.replace(tmp, out)  # atomic on POSIX within one directory
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def resolve_game(run_dirs: Sequence[Path], game: str | None, required: bool) -> str | None:
    if game is not None:
        return game
    found = {d: config_game(d) for d in run_dirs}
    # Compare spellings of one game as one ("pong" and "ALE/Pong-v5").
    games = {scores.snake_case_game(g) for g in found.values() if g is not None}
    if len(games) == 1 and None not in found.values():
        return games.pop()
    if not required:
        return games.pop() if len(games) == 1 else None
    if len(games) > 1:
        listing = ", ".join(f"{d.name}: {g}" for d, g in found.items())
        raise ValueError(
            f"The runs are of different games ({listing}); plot one game at a time or pass game=."
        )
    missing = ", ".join(str(d) for d, g in found.items() if g is None)
    raise ValueError(
        f"Cannot tell the game for the baseline: no env.game in config.yaml of {missing}; pass game=."
    )


# ----------------------------------------------------------------------------------------------- public


def plot_runs(
    run_dirs: Sequence[Path | str],
    out: Path | str,
    baseline: str | None = None,
    game: str | None = None,
    tag: str = RETURN_TAG,
    smooth: int = DEFAULT_SMOOTH,
    *,
    tags: Sequence[str] | None = None,
    full_baseline: bool = False,
    title: str | None = None,
    dpi: int = 100,
    random_level: float | None = None,
    up_to_frames: float | None = None,
) -> Path:
    """Plot scalar curves of several runs into one PNG, one panel per tag, optionally with a baseline.

    Each run is a light raw line plus a bold trailing mean over ``smooth`` points, labelled with the run
    directory's name. The x axis is emulator frames (the event step) in millions.

    :param run_dirs: run directories with TensorBoard event files directly inside them.
    :param out: the PNG to write (parent directories are created; written atomically).
    :param baseline: ``"DQN"`` or ``"Rainbow"`` to draw Dopamine's published curve for the game (mean of
        its 5 runs and their min-max band, at iteration centres ``(i + 0.5) * 1M`` frames) on the
        ``charts/episodic_return`` panel; None for no baseline.
    :param game: game for the baseline and the title; None reads ``env.game`` from each run's
        ``config.yaml`` (required to agree across runs when a baseline is drawn).
    :param tag: the scalar tag to plot when ``tags`` is not given.
    :param smooth: smoothing window in logged points (1 = raw only); a curve is smoothed over at most a
        tenth of its points, so sparse tags are not flattened by a window meant for thousands of episodes.
    :param tags: several tags, one panel each, top to bottom (e.g. ``["charts/episodic_return",
        "explore/rooms_visited"]``). A run without a tag is left out of that panel; each tag must exist in
        at least one run.
    :param full_baseline: draw the baseline's whole 200M frames instead of only the iterations that
        overlap the runs' frames.
    :param title: figure title; default is the game (or "Learning curves").
    :param dpi: pixels per inch; the PNG is 10 x (5 + 3 (panels - 1)) inches.
    :param random_level: the mean return of random play (:func:`launch.scores.random_return`), a dashed line on the
        ``charts/episodic_return`` panel; None draws none.
    :param up_to_frames: drop every point logged after this many frames, so runs that went on for different
        budgets are drawn at equal frames (None: every point).
    :return: ``out`` as a Path.
    :raises FileNotFoundError: a run directory is missing or has no event files.
    :raises ValueError: a tag no run has, a baseline without a game, or a game/agent without published data
        (the message lists the games that have one).
    """
    dirs = [Path(d) for d in run_dirs]
    if not dirs:
        raise ValueError("plot_runs needs at least one run directory.")
    if smooth < 1:
        raise ValueError(f"smooth is a window in logged points: >= 1 (1 = no smoothing), got {smooth}")
    if up_to_frames is not None and up_to_frames <= 0:
        raise ValueError(f"up_to_frames={up_to_frames}: give a positive frame count (or None for every point).")
    panel_tags = list(tags) if tags is not None else [tag]
    if not panel_tags:
        raise ValueError("tags is empty; give at least one scalar tag.")
    if baseline is not None and RETURN_TAG not in panel_tags:
        raise ValueError(f"A baseline is drawn on the {RETURN_TAG!r} panel; add that tag to tags.")
    game = resolve_game(dirs, game, required=baseline is not None)
    if baseline is not None:
        assert game is not None  # _resolve_game raised otherwise
        scores.load_dopamine(game, baseline)  # fail on an unknown game/agent before reading any events

    # Read everything first so that no half-drawn figure is left behind by a bad run or tag.
    accs = [_load(d) for d in dirs]
    data: list[dict[str, tuple[np.ndarray, np.ndarray]]] = []
    for d, acc in zip(dirs, accs, strict=True):
        available = set(_tags(acc))
        run = {t: _scalars(acc, d, t) for t in panel_tags if t in available}
        if up_to_frames is not None:
            run = {t: (steps[steps <= up_to_frames], values[steps <= up_to_frames])
                   for t, (steps, values) in run.items()}
        data.append(run)
    for t in panel_tags:
        if not any(t in run for run in data):
            every = sorted({x for acc in accs for x in _tags(acc)})
            close = difflib.get_close_matches(t, every, n=3)
            hint = f" Did you mean {close}?" if close else ""
            raise ValueError(
                f"No run has the scalar tag {t!r}.{hint} Tags the runs have: {', '.join(every)}."
            )

    fig, axes = _new_figure(len(panel_tags), dpi)
    colors = [f"C{i % 10}" for i in range(len(dirs))]
    labels = _run_labels(dirs)
    max_frames = max(float(s.max()) for run in data for s, _ in run.values() if s.size)
    first_runs: list[str] | None = None
    for ax, t in zip(axes, panel_tags, strict=True):
        drawn = [label for run, label in zip(data, labels, strict=True) if t in run]
        for run, color, label in zip(data, colors, labels, strict=True):
            if t in run:
                _draw_curve(ax, *run[t], color=color, label=label, smooth=smooth)
        with_baseline = baseline is not None and t == RETURN_TAG
        if with_baseline:
            assert game is not None and baseline is not None
            _draw_baseline(ax, game, baseline, None if full_baseline else max_frames)
        if random_level is not None and t == RETURN_TAG:
            _draw_random(ax, random_level)
        ax.set_ylabel(t)
        # A legend on the first panel, and again only where the baseline or a different set of runs appears.
        with_random = random_level is not None and t == RETURN_TAG
        if first_runs is None or with_baseline or with_random or drawn != first_runs:
            ax.legend(loc="best", fontsize="small", framealpha=0.8)
        first_runs = drawn if first_runs is None else first_runs
    if smooth > 1:
        note = f"bold: trailing mean of up to {smooth} points; light: raw"
        axes[0].set_title(note, fontsize="small", loc="right")
    fig.suptitle(title or (scores.snake_case_game(game) if game else "Learning curves"), fontweight="bold")
    return save_png(fig, Path(out))


def plot_learning_curve(
    run_dir: Path | str, out: Path | str | None = None, smooth: int = DEFAULT_SMOOTH,
    random_level: float | None = None,
) -> Path:
    """Plot one run's training episodic return (and ``eval/mean_return`` points, if logged).

    Called at the end of training; writes ``<run_dir>/learning_curve.png`` unless ``out`` is given.

    :param run_dir: the run directory (event files directly inside it, ``config.yaml`` for the title).
    :param out: PNG path; default ``<run_dir>/learning_curve.png``.
    :param smooth: smoothing window in episodes for the training return (at most a tenth of them).
    :param random_level: the mean return of random play (:func:`launch.scores.random_return`), drawn as a dashed
        line; None draws none.
    :return: the PNG path.
    :raises FileNotFoundError: no event files in ``run_dir``.
    :raises ValueError: neither ``charts/episodic_return`` nor ``eval/mean_return`` was logged (e.g. no
        episode finished yet); the message lists the tags the run has.
    """
    run_dir = Path(run_dir)
    acc = _load(run_dir)
    available = _tags(acc)
    if RETURN_TAG not in available and EVAL_TAG not in available:
        raise _missing_tag_error(run_dir, RETURN_TAG, available)
    fig, (ax,) = _new_figure(1, dpi=100)
    if RETURN_TAG in available:
        steps, values = _scalars(acc, run_dir, RETURN_TAG)
        _draw_curve(ax, steps, values, color="C0", label=f"training episodes ({RETURN_TAG})", smooth=smooth)
        window = _window(smooth, values.size)
        if window > 1:
            note = f"bold: trailing mean of {window} episodes; light: raw"
            ax.set_title(note, fontsize="small", loc="right")
    if EVAL_TAG in available:
        steps, values = _scalars(acc, run_dir, EVAL_TAG)
        ax.plot(steps / 1e6, values, color="C3", marker="o", linestyle="-", linewidth=1.0, label=EVAL_TAG)
    if random_level is not None:
        _draw_random(ax, random_level)
    ax.set_ylabel("episodic return")
    ax.legend(loc="best", fontsize="small")
    game = config_game(run_dir)
    fig.suptitle(f"{run_dir.name}" + (f" ({game})" if game else ""), fontweight="bold")
    return save_png(fig, Path(out) if out is not None else run_dir / "learning_curve.png")
