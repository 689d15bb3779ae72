"""``reverie imagine RUN`` for a grid world model (MinAtar): a Dyna run, or a checkpoint of
:func:`worldmodels.grid.save_grid_world_model`.

Reads top to bottom:

1. load the model from the run's newest checkpoint (:func:`load_grid_run`; a Dyna checkpoint's ``world_model``
   entry, or a saved model's ``grid_world_model``), and the run's config when the checkpoint carries one;
2. play held-out real games (:func:`worldmodels.grid.play_episodes`) in a MinAtar env of the model's game (or
   ``--game``, refused unless its observation shape and action count are the model's), under a documented policy:
   ``agent``, the run's own Q-network from the same checkpoint, epsilon-greedy with ``--epsilon`` (default 0.05),
   or ``random``, uniform actions. Game ``i`` is reset with seed ``run.seed + HELDOUT_SEED + 1000 * --seed + i``,
   never a training actor's (``run.seed + 1000 (a + 1)`` for actor ``a``) nor evaluation's (``run.seed + 99991``);
3. cut ``--starts-per-episode`` windows of ``--horizon`` steps from each game (:func:`worldmodels.grid.sample_windows`;
   a window near a game's end is shorter, its later steps masked) and score the model's open-loop rollouts under the
   real actions at every horizon step beside copy-last and the model under shuffled actions
   (:func:`worldmodels.grid.rollout_metrics`): cell error, the error on the cells that changed since the start,
   whole frames exact, object recall and precision (pooled, and per channel), reward and game-over accuracy;
4. write to ``--out`` (default ``RUN/imagine/``): ``report.json`` (the per-step lists; ``null`` where a score has
   no denominator), ``rollouts.gif`` (``--samples`` windows, real | imagined | error, channels in colour,
   :func:`worldmodels.grid.pictures.rollout_frames`), ``errors.png`` (the scores against the horizon step) and
   ``tb/`` (TensorBoard: ``imagine/<key>``, ``imagine/copy_last_<key>``, ``imagine/shuffled_actions_<key>`` with
   the horizon step as global step, and the side-by-side frames); and print the per-step table.
"""

from __future__ import annotations

import io
import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from envs.minatar import MinAtarEnv

log = logging.getLogger(__name__)

#: Seeds of the held-out games, from ``run.seed``: apart from the actors' and evaluation's.
HELDOUT_SEED = 777_000
#: Default epsilon of the ``agent`` policy: a little exploration, so that the actions vary as they did in training.
DEFAULT_EPSILON = 0.05
#: The predictors of a report, in table order, and their column titles.
PREDICTORS = {"model": "model", "copy_last": "copy-last", "shuffled_actions": "shuffled"}
#: Per-step scores written to TensorBoard for every predictor.
TB_KEYS = ("cell_error", "changed_cell_error", "frame_exact", "object_recall", "object_precision",
           "reward_accuracy", "reward_recall", "terminal_accuracy", "terminal_recall")


class GridRun:
    """A grid world model loaded from a run or checkpoint, with what the run says about it.

    :ivar model: the :class:`worldmodels.grid.GridWorldModel` (on the CPU, in eval mode).
    :ivar checkpoint: the checkpoint file it came from.
    :ivar cfg: the run's config (None for a bare saved model). :ivar ckpt: the checkpoint's contents.
    """

    def __init__(self, model: Any, checkpoint: Path, cfg: Any, ckpt: dict[str, Any]) -> None:
        self.model, self.checkpoint, self.cfg, self.ckpt = model, checkpoint, cfg, ckpt

    @property
    def seed(self) -> int:
        """The run's seed (0 for a bare saved model)."""
        return int(self.cfg.run.seed) if self.cfg is not None else 0

    @property
    def has_q_network(self) -> bool:
        """The run trained a Q-network (DQN or Dyna) whose weights the checkpoint holds."""
        from agents.dqn.config import DQNConfig

        return isinstance(self.cfg, DQNConfig) and "learner" in self.ckpt


def is_grid_run(run: str | Path, data: str | None) -> bool:
    """Whether ``reverie imagine RUN`` scores a grid world model: a ``reverie train`` run (only Dyna's hold one;
    :func:`load_grid_run` refuses the others, naming what they are), or a run or checkpoint no command recorded
    (a :func:`worldmodels.grid.save_grid_world_model` file) scored without ``--data``."""
    from worldmodels.common.runrecord import run_kind

    kind = run_kind(run)
    if kind is None:
        return data is None
    return kind[0] == "train"


def load_grid_run(run: str | Path) -> GridRun:
    """The grid world model of a run directory (its newest valid checkpoint) or of a checkpoint file.

    :raises FileNotFoundError: no such path.
    :raises ValueError: the checkpoint holds no grid world model (the message says what does).
    :raises worldmodels.common.checkpoint.CheckpointError: no checkpoint there, or a corrupt one.
    """
    from worldmodels.common.checkpoint import load_latest
    from worldmodels.common.resume import ResumeError, saved_config
    from worldmodels.grid.model import GridWorldModel, export_in_checkpoint

    if not Path(run).exists():
        raise FileNotFoundError(f"run {run} does not exist: give the run directory (or a checkpoint) of a dyna run "
                                f"(`reverie train` with algo=dyna) or of `reverie fit-world-model`.")
    path, ckpt = load_latest(run)
    state = export_in_checkpoint(ckpt)
    if state is None:
        algo = ckpt.get("algo")
        what = f"a checkpoint of {algo}" if algo else "a checkpoint"
        hint = f" Open this run with `reverie evaluate {run}`." if algo else ""
        raise ValueError(f"{path} is {what} that holds no grid world model: `reverie imagine` scores the world "
                         f"model of a dyna run (`reverie train dyna_minatar`, algo=dyna), or the video model of a "
                         f"`reverie fit-world-model` run with --data DIR.{hint}")
    model = GridWorldModel.from_export(state, where=str(path)).eval()
    cfg = None
    if ckpt.get("algo") and ckpt.get("config"):
        from agents.registry import get_builder

        try:
            cfg = saved_config(get_builder(str(ckpt["algo"])).config_class, ckpt["config"], path)
        except (ResumeError, ValueError):
            cfg = None  # the model alone is still scored, under the random policy
    return GridRun(model, path, cfg, ckpt)


def _heldout_env(model: Any, game: str | None) -> MinAtarEnv:
    """The held-out env (one MinAtar game), checked against the model.

    :raises ValueError: not a MinAtar game, or observations or actions that are not the model's (naming the fix).
    """
    from envs.minatar import MinAtarEnv

    name = game or model.game
    if not name:
        raise ValueError("the world model does not record its game: give --game minatar/<game>, the game it was "
                         "trained on.")
    if not name.startswith("minatar/"):
        raise ValueError(f"--game {name}: a grid world model imagines MinAtar's grids; give --game minatar/<game> "
                         f"(the model's own game is {model.game or 'not recorded'}).")
    env = MinAtarEnv(name, seed=0)  # sticky actions and difficulty ramping as in training (MinAtar's defaults)
    shape, actions = tuple(env.observation_space.shape), int(env.action_space.n)
    if shape != tuple(model.frame_shape) or actions != model.num_actions:
        raise ValueError(f"the world model was trained on {model.game or 'another game'}: observations "
                         f"{tuple(model.frame_shape)} and {model.num_actions} actions, but {name} has observations "
                         f"{shape} and {actions} actions. Leave --game out to play the model's own game"
                         + (f" ({model.game})" if model.game else "") + f", or score a model trained on {name}.")
    if model.game and name != model.game:  # the same grid and actions, another game's rules: allowed, but said
        log.warning("scoring a world model of %s on %s: its observations and actions fit, its rules are another "
                    "game's", model.game, name)
    return env


def _policy(grid: GridRun, env: Any, name: str, epsilon: float, seed: int) -> Any:
    """Observations uint8 ``[1, C, H, W]`` -> actions int64 ``[1]``: the run's Q-network epsilon-greedy, or uniform.

    :raises ValueError: ``agent`` for a run without a Q-network, or an epsilon outside [0, 1].
    """
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"--epsilon {epsilon} must lie in [0, 1].")
    num_actions = int(env.action_space.n)
    if name == "random":
        rng = np.random.default_rng(seed)
        return lambda obs: rng.integers(num_actions, size=len(obs)).astype(np.int64)
    if not grid.has_q_network:
        raise ValueError(f"--policy agent plays the run's own Q-network, and {grid.checkpoint} holds none (a saved "
                         f"world model alone): use --policy random.")
    from agents.dqn.actor import EpsilonGreedyPolicy
    from agents.dqn.networks import QNetwork
    from agents.registry import get_builder

    cfg = grid.cfg
    network = QNetwork(num_actions, obs_shape=tuple(env.observation_space.shape), hidden=cfg.network.hidden,
                       dueling=cfg.network.dueling)
    network.load_state_dict(get_builder(cfg.algo).checkpoint_weights(grid.ckpt))
    policy = EpsilonGreedyPolicy(network, cfg, 0, seed, fixed_epsilon=epsilon)
    return lambda obs: policy.act(obs, 0)[0]


def channel_names(env: Any, channels: int) -> list[str]:
    """The env's names of its observation channels (MinAtar's), or ``ch0``, ``ch1``, ..."""
    names = list(getattr(env, "channel_names", ()) or ())
    return names if len(names) == channels else [f"ch{c}" for c in range(channels)]


def _clean(x: Any) -> Any:
    """JSON-ready: NaN and infinities as None (strict JSON has neither), numpy scalars as Python numbers."""
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def _sample_rows(windows: Any, samples: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of up to ``samples`` windows for the video: full-length ones first, from different episodes where
    possible, drawn with ``rng``, in order."""
    full = windows.valid.all(axis=1)
    order = np.concatenate([rng.permutation(np.flatnonzero(full)), rng.permutation(np.flatnonzero(~full))])
    chosen: list[int] = []
    seen: set[int] = set()
    for i in order:  # one window per episode first, then any
        if int(windows.episode[i]) not in seen and len(chosen) < samples:
            chosen.append(int(i))
            seen.add(int(windows.episode[i]))
    chosen += [int(i) for i in order if int(i) not in chosen][: samples - len(chosen)]
    return np.sort(np.asarray(chosen, np.int64))


def run_imagine_grid(run: str | Path, horizon: int = 20, episodes: int = 8, starts_per_episode: int = 4,
                     seed: int = 0, out: str | Path | None = None, video: str = "rollouts.gif", samples: int = 4,
                     batch_size: int = 256, policy: str | None = None, epsilon: float = DEFAULT_EPSILON,
                     game: str | None = None, max_episode_steps: int = 2000,
                     grid: GridRun | None = None) -> dict[str, Any]:
    """Score a grid world model's open-loop rollouts on held-out real games and write the outputs (module docstring).

    :param run: a dyna run directory, or a checkpoint file holding a grid world model.
    :param horizon: imagined steps per rollout. :param episodes: held-out games played.
    :param starts_per_episode: rollouts started in each game. :param seed: seeds the games (with the run's seed),
        the policy, the starts, the action shuffle and the video's choice of rollouts.
    :param out: output folder (default ``RUN/imagine/``). :param video: the GIF's file name in ``out``.
    :param samples: rollouts in the GIF. :param batch_size: rollouts imagined at once (memory only).
    :param policy: ``agent`` (the run's Q-network, epsilon-greedy) or ``random``; None: ``agent`` where the run has
        a Q-network, else ``random``. :param epsilon: the agent policy's exploration.
    :param game: the held-out env (default the model's game). :param max_episode_steps: a game is cut after this
        many steps. :param grid: an already loaded model (tests); None loads ``run``.
    :return: the JSON report (``report.json``) with ``outputs``: the paths written.
    :raises ValueError: bad settings, no grid model in the run, an env that does not fit the model.
    """
    import torch

    from launch.imagine_cli import default_out
    from worldmodels.common.atomic import atomic_write
    from worldmodels.grid import open_loop_rollout, play_episodes, rollout_metrics, sample_windows

    for key, value in (("--horizon", horizon), ("--episodes", episodes), ("--starts-per-episode", starts_per_episode),
                       ("--samples", samples), ("--batch-size", batch_size),
                       ("--max-episode-steps", max_episode_steps)):
        if value < 1:
            raise ValueError(f"{key} {value} must be at least 1.")
    if policy not in (None, "agent", "random"):
        raise ValueError(f"--policy {policy}: choose agent (the run's Q-network) or random.")
    grid = grid or load_grid_run(run)
    model = grid.model
    env = _heldout_env(model, game)
    policy = policy or ("agent" if grid.has_q_network else "random")
    heldout_seed = grid.seed + HELDOUT_SEED + 1000 * seed
    act = _policy(grid, env, policy, epsilon, heldout_seed)
    torch.manual_seed(seed)
    games = play_episodes(env, act, episodes, heldout_seed, max_steps=max_episode_steps)
    rng = np.random.default_rng(seed)
    windows = sample_windows(games, horizon, starts_per_episode, rng, model.context)
    scores = rollout_metrics(model, windows.history, windows.actions, windows.next_frames, windows.rewards,
                             windows.terminals, windows.valid, seed=seed, batch_size=batch_size)
    names = channel_names(env, model.channels)
    report: dict[str, Any] = {
        "run": str(run), "checkpoint": str(grid.checkpoint), "game": env.game, "model_game": model.game,
        "context": model.context, "obs_shape": list(model.frame_shape), "num_actions": model.num_actions,
        "channels": names, "policy": policy, "epsilon": epsilon if policy == "agent" else None,
        "heldout_seed": heldout_seed, "episodes": len(games), "episode_lengths": [len(g) for g in games],
        "episode_returns": [float(g.rewards.sum()) for g in games],
        "episodes_ended": int(sum(g.terminated for g in games)), "max_episode_steps": max_episode_steps,
        "horizon": horizon, "rollouts": len(windows), "starts_per_episode": starts_per_episode, "seed": seed,
        "max_reward": model.cfg.max_reward, **scores,
    }
    rows = _sample_rows(windows, samples, rng)
    picked = windows.take(rows)
    imagined = open_loop_rollout(model, picked.history, picked.actions, batch_size)["frames"]
    real = np.concatenate([picked.history[:, -1:], picked.next_frames], axis=1)
    out_dir = Path(out) if out else default_out(run)
    report["samples"] = {"rollouts": rows.tolist(), "episodes": picked.episode.tolist(),
                         "starts": picked.start.tolist()}
    report["outputs"] = write_outputs(report, real, imagined, picked.valid, out_dir, video)
    result = _clean(report)
    atomic_write(out_dir / "report.json", (json.dumps(result, indent=1) + "\n").encode())
    return dict(result)


# ------------------------------------------------------------------------------------------------ outputs
def write_outputs(report: dict[str, Any], real: np.ndarray, imagined: np.ndarray, valid: np.ndarray,
                  out_dir: Path, video: str) -> dict[str, str]:
    """The GIF, the errors plot and the TensorBoard events of a report into ``out_dir``; the paths (and the
    report's, written by the caller).

    :param real: uint8 ``[S, K + 1, C, H, W]``: the sample windows' real start and frames.
    :param imagined: uint8 ``[S, K, C, H, W]``. :param valid: bool ``[S, K]``.
    """
    from worldmodels.grid.pictures import rollout_frames, write_gif

    out_dir.mkdir(parents=True, exist_ok=True)
    movie = rollout_frames(real, imagined, valid)
    outputs = {"video": str(write_gif(out_dir / video, movie)),
               "plot": str(plot_scores(report, out_dir / "errors.png")),
               "tensorboard": str(out_dir / "tb"), "report": str(out_dir / "report.json")}
    log_tensorboard(report, out_dir / "tb", movie)
    return outputs


#: The errors plot's panels: report key, title.
PANELS = (("cell_error", "cell error (lower is better)"),
          ("changed_cell_error", "error on the cells that changed since the start"),
          ("object_recall", "object recall (real objects imagined)"),
          ("object_precision", "object precision (imagined objects real)"),
          ("reward_accuracy", "reward accuracy"), ("terminal_accuracy", "game-over accuracy"))


def plot_scores(report: dict[str, Any], path: Path) -> Path:
    """PNG of the per-step scores (:data:`PANELS`) of the model, copy-last and shuffled actions against the
    horizon step."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from worldmodels.common.atomic import atomic_write

    fig = Figure(figsize=(13.5, 7.5))
    FigureCanvasAgg(fig)
    styles = {"model": ("-o", "C0"), "copy_last": ("--.", "C1"), "shuffled_actions": ("-.", "C3")}
    for ax, (key, title) in zip(fig.subplots(2, 3).ravel(), PANELS):
        for name, label in PREDICTORS.items():
            values = np.array([np.nan if v is None else v for v in report[name][key]], np.float64)
            style, colour = styles[name]
            ax.plot(report["steps"], values, style, color=colour, label=label, markersize=3)
        ax.set(title=title, xlabel="horizon step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{report['game']}: {report['rollouts']} open-loop rollouts from {report['episodes']} held-out "
                 f"games ({report['policy']} policy), context {report['context']}")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write(path, buf.getvalue())
    return path


def log_tensorboard(report: dict[str, Any], tb_dir: Path, movie: np.ndarray) -> None:
    """Per-step scalars (global step = horizon step) ``imagine/<key>`` for the model and
    ``imagine/<predictor>_<key>`` for copy-last and shuffled actions (keys :data:`TB_KEYS`), and the frames of the
    GIF as ``imagine/side_by_side``. Events of an earlier run into the same folder are replaced."""
    from torch.utils.tensorboard import SummaryWriter

    for old in Path(tb_dir).glob("events.out.tfevents.*"):
        old.unlink()
    writer = SummaryWriter(str(tb_dir))
    try:
        for name in PREDICTORS:
            prefix = "imagine/" if name == "model" else f"imagine/{name}_"
            for key in TB_KEYS:
                for step, value in zip(report["steps"], report[name][key]):
                    if value is not None and math.isfinite(value):
                        writer.add_scalar(prefix + key, value, step)
        for t, frame in enumerate(movie):
            writer.add_image("imagine/side_by_side", frame, t, dataformats="HWC")
    finally:
        writer.close()


# ------------------------------------------------------------------------------------------------ table
def _fmt(value: Any, fmt: str, width: int) -> str:
    return ("-" if value is None or (isinstance(value, float) and not math.isfinite(value))
            else fmt.format(value)).rjust(width)


def _block(title: str, report: dict[str, Any], columns: list[tuple[str, list[Any], str]],
           counts: tuple[str, list[Any]] | None = None) -> list[str]:
    """A titled per-step block, one column per ``(name, values, format)``; ``counts`` a leading count column."""
    widths = [max(9, len(name)) for name, _, _ in columns]
    head = f"{'step':>4} " + (f"{counts[0]:>8} " if counts else "")
    lines = [title, head + " ".join(f"{name:>{w}}" for (name, _, _), w in zip(columns, widths))]
    for i, step in enumerate(report["steps"]):
        row = f"{step:>4} " + (f"{counts[1][i]:>8} " if counts else "")
        lines.append(row + " ".join(_fmt(values[i], fmt, w) for (_, values, fmt), w in zip(columns, widths)))
    return lines


def format_grid_table(report: dict[str, Any]) -> str:
    """The per-step table: cell errors, objects, reward and game-over accuracy of the model beside copy-last and
    shuffled actions, then the model's recall and precision per channel."""
    m, c, s = report["model"], report["copy_last"], report["shuffled_actions"]
    policy = (f"the run's Q-network, epsilon {report['epsilon']:g}" if report["policy"] == "agent"
              else "uniform random actions")
    lengths = report["episode_lengths"]
    lines = [f"{report['game']}: {report['rollouts']} open-loop rollouts of up to {report['horizon']} steps from "
             f"{report['episodes']} held-out games ({policy}; seeds from {report['heldout_seed']}; lengths "
             f"{min(lengths)}-{max(lengths)} steps, mean return {np.mean(report['episode_returns']):.2f}), "
             f"context {report['context']}",
             "'n': rollouts whose real game had not ended before the step; fractions in [0, 1]; '-': nothing to count",
             ""]
    lines += _block("cells wrong (all channels); 'changed': among the cells that changed since the start (copy-last "
                    "gets all of them wrong)", report,
                    [("model", m["cell_error"], "{:9.5f}"), ("copy-last", c["cell_error"], "{:9.5f}"),
                     ("shuffled", s["cell_error"], "{:9.5f}"), ("changed", m["changed_cell_error"], "{:9.4f}"),
                     ("chg shuf", s["changed_cell_error"], "{:9.4f}"), ("exact", m["frame_exact"], "{:9.3f}"),
                     ("exact c-l", c["frame_exact"], "{:9.3f}")], ("n", report["windows"]))
    lines += [""] + _block("objects: recall (real object cells imagined) and precision (imagined object cells real), "
                           "pooled over channels", report,
                           [("recall", m["object_recall"], "{:9.4f}"), ("rec c-l", c["object_recall"], "{:9.4f}"),
                            ("rec shuf", s["object_recall"], "{:9.4f}"), ("precision", m["object_precision"],
                                                                          "{:9.4f}"),
                            ("prec c-l", c["object_precision"], "{:9.4f}"),
                            ("prec shuf", s["object_precision"], "{:9.4f}")])
    lines += [""] + _block("reward (most likely value = real) and game over (probability > 0.5 = real); copy-last "
                           "says 0 and never over", report,
                           [("reward", m["reward_accuracy"], "{:9.4f}"), ("rew c-l", c["reward_accuracy"], "{:9.4f}"),
                            ("rew shuf", s["reward_accuracy"], "{:9.4f}"), ("rewarded", report["rewarded"], "{:d}"),
                            ("rew recall", m["reward_recall"], "{:9.3f}"),
                            ("over", m["terminal_accuracy"], "{:9.4f}"), ("over shuf", s["terminal_accuracy"],
                                                                          "{:9.4f}"),
                            ("overs", report["game_overs"], "{:d}"), ("over rec", m["terminal_recall"], "{:9.3f}")])
    names = [n[:9] for n in report["channels"]]
    for key, what in (("recall_per_channel", "recall"), ("precision_per_channel", "precision")):
        per = m[key]
        lines += [""] + _block(f"model's {what} per channel", report,
                               [(name, [row[j] for row in per], "{:9.4f}") for j, name in enumerate(names)])
    return "\n".join(lines)
