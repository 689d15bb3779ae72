"""The ``reverie`` command line: train, evaluate, plot and benchmark.

Every command has ``--help``. Errors a user can fix (unknown config key, unknown game, missing or corrupt
checkpoint, existing run directory) print one line saying what to change and exit with status 2, never a
traceback from deep inside a library (`-v` shows the traceback too).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from worldmodels.common.allocator import tune_allocator

# One OpenMP thread per process unless the user says otherwise: several processes share the cores
# (measured here: default threading slows a contended 2-core machine 10-100x).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


class UserError(Exception):
    """An error whose message tells the user what to change."""


def _user_errors() -> tuple[type[BaseException], ...]:
    from launch.config import ConfigError
    from worldmodels.common.atomic import DiskFullError
    from worldmodels.common.checkpoint import CheckpointError
    from worldmodels.common.scaffold import RunExistsError

    return (ConfigError, RunExistsError, CheckpointError, UserError, ValueError, FileNotFoundError, DiskFullError)


def cmd_train(args: argparse.Namespace) -> int:
    from agents.registry import get_builder
    from agents.runtime.algorithm import DrawsPictures
    from agents.runtime.config import RESUME_SAFE_KEYS
    from agents.runtime.loop import run_training
    from launch.config import config_from_args
    from launch.plot import plot_learning_curve

    cfg: Any
    cfg, point = config_from_args(None, args, RESUME_SAFE_KEYS)  # the algorithm (`algo`) selects the schema
    builder = get_builder(cfg.algo)
    state = run_training(builder, cfg, run_dir=point.run_dir if point else args.run_dir, resume=point is not None,
                         resume_from=point)
    assert state.run_dir is not None
    path = state.run_dir
    summary: dict[str, Any] = {"run_dir": str(path), "frames": state.frames, "updates": state.updates,
                               "episodes": state.episodes}
    if isinstance(builder, DrawsPictures):  # an algorithm with pictures of what it learnt (STRAW's plans)
        try:
            summary["pictures"] = [str(p) for p in builder.pictures(cfg, state.learner.get_weights(), path)]
        except Exception as err:  # a picture must never fail a finished run
            logging.warning("could not draw the pictures: %s", err)
    if state.returns:
        summary["mean_return_last_20"] = sum(state.returns[-20:]) / len(state.returns[-20:])
        try:
            from launch.scores import random_return

            summary["learning_curve"] = str(plot_learning_curve(path, random_level=random_return(cfg.env.game)))
        except Exception as err:  # a plot must never fail a finished run
            logging.warning("could not plot the learning curve: %s", err)
    print(json.dumps(summary))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from agents.registry import get_builder
    from agents.runtime.algorithm import CheckpointLayout
    from agents.runtime.loop import probe_env
    from launch.config import load_run_config
    from launch.scores import human_normalized
    from worldmodels.common.runrecord import check_run_command

    check_run_command(args.path, "train", usage="reverie evaluate")  # another command's run says what it is
    cfg, ckpt, ckpt_path = load_run_config(None, args.path)  # the schema of the algorithm the checkpoint names
    builder = get_builder(cfg.algo)
    if args.episodes <= 0:
        raise UserError(f"--episodes {args.episodes} must be positive.")
    # Atari is evaluated under Machado et al.'s protocol; MinAtar and Catch have their own (fixed) dynamics.
    protocol = cfg.env.game.split("/")[0] if "/" in cfg.env.game else "machado"
    frames: list | None = [] if args.gif else None
    result = builder.evaluate(cfg, builder.checkpoint_weights(ckpt), args.episodes, seed=args.seed, record=frames)
    report = {
        "checkpoint": str(ckpt_path), "algo": cfg.algo, "game": cfg.env.game, "protocol": protocol,
        "episodes": args.episodes, "frames_trained": CheckpointLayout.steps(ckpt) * probe_env(cfg).frame_skip,
        "mean": result.mean, "std": result.std,
        "human_normalized": human_normalized(cfg.env.game, result.mean), "returns": result.returns,
    }
    if args.gif:
        report["gif"] = str(write_gif(cfg, frames or [], Path(args.gif)))
    if args.json:
        print(json.dumps(report))
    else:
        hns = report["human_normalized"]
        print(f"{cfg.env.game}: {result.mean:.2f} +- {result.std:.2f} over {args.episodes} games "
              f"({protocol} protocol); human-normalised "
              f"{'n/a (no human score for this game)' if hns is None else f'{100 * hns:.1f}%'}")
    return 0


def write_gif(cfg: object, observations: list, path: Path, fps: int = 15) -> Path:
    """A GIF of one evaluation game (observations as :func:`envs.observation_to_rgb` draws them), written
    atomically."""
    import imageio.v2 as imageio
    from numpy.typing import ArrayLike

    from agents.runtime.loop import probe_env
    from envs import observation_to_rgb
    from worldmodels.common.atomic import atomic_write

    if not observations:
        raise UserError("no frames were recorded for the GIF (the game ended at once?)")
    spec = probe_env(cfg)
    scale = 16 if spec.frame_shape[-1] <= 16 else 2  # MinAtar 10x10 -> 160x160, Atari 84x84 -> 168x168
    frames: list[ArrayLike] = [observation_to_rgb(o, spec.stack, spec.frame_shape, scale) for o in observations]
    atomic_write(path, lambda f: imageio.mimwrite(f, frames, format="GIF", duration=1000 / fps, loop=0))
    return path


def cmd_plot(args: argparse.Namespace) -> int:
    from launch.plot import plot_runs

    random_level = None
    if args.random:
        from launch.plot import resolve_game
        from launch.scores import random_return

        game = resolve_game([Path(p) for p in args.run_dirs], args.game, required=True)
        assert game is not None
        random_level = random_return(game)
    if args.smooth < 1:
        raise UserError(f"--smooth {args.smooth}: give a window of at least 1 logged point.")
    out = plot_runs([Path(p) for p in args.run_dirs], Path(args.output), baseline=args.baseline,
                    game=args.game, tags=args.tag or None, random_level=random_level, smooth=args.smooth,
                    up_to_frames=args.up_to_frames)
    print(out)
    return 0


def cmd_explore_report(args: argparse.Namespace) -> int:
    from launch.explore_report import exploration_summary, format_exploration_table

    rows = [exploration_summary(run, args.window_frames) for run in args.run_dirs]
    print(json.dumps(rows) if args.json else format_exploration_table(rows, args.window_frames))
    if args.visits:
        from launch.explore_report import draw_visits, maze_visits

        print(draw_visits([maze_visits(run, args.visit_games) for run in args.run_dirs], args.visits))
    return 0


def cmd_sb3(args: argparse.Namespace) -> int:
    try:
        import stable_baselines3  # noqa: F401
    except ImportError as err:
        raise UserError("reverie sb3 needs Stable-Baselines3: pip install -e .[bench]") from err
    from agents.actor_critic.config import ActorCriticConfig
    from agents.runtime.config import RESUME_SAFE_KEYS
    from launch.config import check_presets_for, load_config, peek_algo, resume_config, split_presets, to_yaml
    from launch.plot import plot_learning_curve
    from launch.sb3_runs import train_sb3
    from worldmodels.common.resume import ResumePoint
    from worldmodels.common.runrecord import check_run_command

    presets, overrides = split_presets(args.config, args.overrides)
    if args.resume is not None:
        if args.run_dir:
            raise UserError(f"give --resume {args.resume} or --run-dir {args.run_dir}, not both.")
        run_dir = Path(args.resume)
        check_run_command(run_dir, "sb3")  # a `reverie train` run (or another command's) says so
        if not (run_dir / "config.yaml").is_file():
            raise UserError(f"cannot resume: {run_dir} holds no run (no config.yaml).")
        # SB3 checkpoints carry no config of ours: the run's config.yaml is what it trained with.
        saved = ResumePoint(run_dir, None, {"config": (run_dir / "config.yaml").read_text()})
        cfg = resume_config(ActorCriticConfig, saved, presets, overrides, RESUME_SAFE_KEYS)
    else:
        check_presets_for("sb3", presets)  # a fit-* preset is named as one
        algo = peek_algo(presets, overrides)
        if not presets or algo != "actor_critic":
            raise UserError(f"reverie sb3 trains the actor-critic presets (algo: actor_critic, e.g. a2c_pong, "
                            f"ppo_pong); {' '.join(presets) or 'no CONFIG'} selects algo={algo}.")
        cfg = load_config(ActorCriticConfig, presets, overrides)
    result = train_sb3(cfg, run_dir=args.resume or args.run_dir, resume=args.resume is not None,
                       config_yaml=to_yaml(cfg))
    summary: dict[str, object] = {"run_dir": str(result.run_dir), "frames": result.frames,
                                  "episodes": result.episodes}
    if result.returns:
        summary["mean_return_last_20"] = sum(result.returns[-20:]) / len(result.returns[-20:])
        try:
            from launch.scores import random_return

            summary["learning_curve"] = str(plot_learning_curve(result.run_dir,
                                                                random_level=random_return(cfg.env.game)))
        except Exception as err:  # a plot must never fail a finished run
            logging.warning("could not plot the learning curve: %s", err)
    print(json.dumps(summary))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if (args.env or args.mode != "local") and args.name != "dyna":
        raise UserError(f"--env and --mode apply to `reverie bench dyna` only, not {args.name}.")
    if args.algo and args.name != "throughput":
        raise UserError(f"--algo applies to `reverie bench throughput` only, not {args.name}.")
    if args.bonus:
        from launch.bench.ac import AC_PRESETS, expand_algos

        # Checked before anything is measured: the bonus measurements come after minutes of others.
        if args.name != "throughput" or not any(a in AC_PRESETS for a in expand_algos(args.algo or ["dqn"])):
            raise UserError("--bonus measures the actor-critic loop: give it with `reverie bench throughput --algo "
                            "a2c|ppo|impala|all`" + ("" if args.name == "throughput" else f", not {args.name}") + ".")
    if args.name == "throughput":
        from launch.bench.ac import expand_algos

        algos = expand_algos(args.algo or ["dqn"])
        seconds = args.seconds or 20.0
        if algos == ["dqn"]:
            from launch.bench.throughput import format_throughput_table, run_throughput_bench

            result = run_throughput_bench(seconds=seconds, game=args.game)
            print(json.dumps(result) if args.json else format_throughput_table(result))
            return 0
        tables: list[str] = []
        figures: dict[str, object] = {}
        if "dqn" in algos:
            from launch.bench.throughput import format_throughput_table, run_throughput_bench

            figures["dqn"] = dqn = run_throughput_bench(seconds=seconds, game=args.game)
            tables.append(format_throughput_table(dqn))
        ac = [a for a in algos if a != "dqn"]
        if ac:
            from launch.bench.ac import format_ac_table, run_ac_bench

            ac_result = run_ac_bench(ac, seconds=seconds, game=args.game, bonuses=args.bonus)
            figures.update(ac_result)
            tables.append(format_ac_table(ac_result))
        print(json.dumps(figures) if args.json else "\n\n".join(tables))
    elif args.name == "straw":
        from launch.bench.straw import format_straw_table, run_straw_bench

        result = run_straw_bench(seconds=args.seconds or 20.0, atari=args.atari)
        print(json.dumps(result) if args.json else format_straw_table(result))
    elif args.name == "episodic":
        from launch.bench.episodic import format_episodic_table, run_episodic_bench

        if args.keys:
            from launch.bench.episodic import format_recall_table, run_recall_bench

            result = run_recall_bench(args.keys, seconds=args.seconds or 1.0)
            print(json.dumps(result) if args.json else format_recall_table(result))
        elif args.agent:
            from launch.bench.episodic import format_agent_table, run_agent_bench

            result = run_agent_bench(game="MsPacman" if args.game == "pong" else args.game,
                                     seconds=args.seconds or 20.0)
            print(json.dumps(result) if args.json else format_agent_table(result))
        elif args.sharing:
            from launch.bench.episodic import format_sharing_table, run_sharing_bench

            sizes = tuple(args.sizes) if args.sizes else (10_000, 100_000, 250_000)
            result = run_sharing_bench(sizes=sizes, seconds=args.seconds or 2.0)
            print(json.dumps(result) if args.json else format_sharing_table(result))
        else:
            sizes = tuple(args.sizes) if args.sizes else (10_000, 100_000, 1_000_000)
            result = run_episodic_bench(sizes=sizes, seconds=args.seconds or 2.0)
            print(json.dumps(result) if args.json else format_episodic_table(result))
    elif args.name == "density":
        from launch.bench.density import format_density_table, run_density_bench

        result = run_density_bench(frames=args.frames)
        print(json.dumps(result) if args.json else format_density_table(result))
    elif args.name == "vae":
        from launch.bench.vae import format_vae_table, run_vae_bench

        result = run_vae_bench(seconds=args.seconds or 20.0)
        print(json.dumps(result) if args.json else format_vae_table(result))
    elif args.name == "world-model":
        from launch.bench.video import format_world_model_table, run_world_model_bench

        result = run_world_model_bench(seconds=args.seconds or 5.0)
        print(json.dumps(result) if args.json else format_world_model_table(result))
    elif args.name == "dyna":
        from launch.bench.dyna import format_atari_table, format_minatar_table, run_atari_costs, run_minatar_bench

        env = args.env or "minatar/breakout"
        if env.startswith("minatar/"):
            result = run_minatar_bench(game=env, seconds=args.seconds or 20.0, mode=args.mode)
            print(json.dumps(result) if args.json else format_minatar_table(result))
        else:
            if args.mode != "local":
                raise UserError(f"--mode {args.mode}: the Atari costs are measured piece by piece in this process; "
                                f"leave --mode out (local).")
            result = run_atari_costs(game=env, seconds=args.seconds or 20.0)
            print(json.dumps(result) if args.json else format_atari_table(result))
    elif args.name == "allocator":
        from launch.bench.allocator import format_allocator_table, run_allocator_bench

        result = run_allocator_bench(seconds=args.seconds or 20.0, rounds=args.rounds)
        print(json.dumps(result) if args.json else format_allocator_table(result))
    return 0


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none to show (None, off switches) or the help already
    names it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if any(action.default is none for none in (None, False, argparse.SUPPRESS)) or "default" in text:
            return text
        return super()._get_help_string(action) or text


class _CommandParser(argparse.ArgumentParser):
    """A subcommand's parser: options show their defaults in --help, and ``-v`` works after the command too
    (``reverie train smoke -v``) as well as before it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)
        # SUPPRESS: absent after the command, it leaves the value `reverie -v` set before it.
        self.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                          help="log at INFO level (tracebacks of errors too)")


def build_parser() -> argparse.ArgumentParser:
    from launch.config import add_config_arguments, preset_names

    parser = argparse.ArgumentParser(prog="reverie", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level (tracebacks of errors too)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_CommandParser)

    p = sub.add_parser("train", help="train an agent from YAML presets",
                       description=f"Train an agent. CONFIG is a YAML path or a preset name in configs/ "
                                   f"({', '.join(preset_names('agent'))}); more presets after it stack in "
                                   f"order (`reverie train dqn_catch smoke`), key=value pairs override them. The "
                                   f"top-level `algo` key selects the algorithm. `--resume RUN` continues a run with "
                                   f"its saved settings (CONFIG may then be left out).")
    add_config_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a checkpoint under the Machado protocol",
                       description="Play full games with sticky actions (0.25) and epsilon 0.001; report mean, "
                                   "std and human-normalised score.")
    p.add_argument("path", help="run directory (newest checkpoint) or checkpoint file")
    p.add_argument("--episodes", type=int, default=10, help="games to play (default 10)")
    p.add_argument("--seed", type=int, default=12345, help="evaluation seed")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--gif", metavar="FILE.gif", help="also write a GIF of the first evaluation game")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("explore-report", help="what an exploration bonus did in runs: goals, rooms, bonus decay",
                       description="Per run, from its TensorBoard scalars: frames, the first frame a maze game reached "
                                   "its goal, goal rate and return over the last frames, rooms seen, and the bonus "
                                   "and pseudo-count at the run's start and end. Compare runs only at equal frames.")
    p.add_argument("run_dirs", nargs="+", help="run directories")
    p.add_argument("--window-frames", type=int, default=100_000,
                   help="trailing window of the goal rate and the return, in frames (default 100000)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--visits", metavar="OUT.png",
                   help="maze runs: draw where each run's newest checkpoint goes, one panel per run")
    p.add_argument("--visit-games", type=int, default=16, help="games per run of --visits (default 16)")
    p.set_defaults(func=cmd_explore_report)

    p = sub.add_parser("plot", help="learning curves of runs, optionally beside Dopamine's",
                       description="Plot TensorBoard scalars of several runs on one figure.")
    p.add_argument("run_dirs", nargs="+", help="run directories")
    p.add_argument("-o", "--output", required=True, help="PNG file to write")
    p.add_argument("--baseline", choices=["DQN", "Rainbow"], help="draw the published Dopamine curve too")
    p.add_argument("--game", help="game of the baseline (default: from the first run's config.yaml)")
    p.add_argument("--tag", action="append", help="scalar tag (repeatable; default charts/episodic_return)")
    from launch.plot import DEFAULT_SMOOTH

    p.add_argument("--smooth", type=int, default=DEFAULT_SMOOTH,
                   help="trailing-mean window in logged points (games, for returns); at most a tenth of a curve's "
                        "points is used")
    p.add_argument("--random", action="store_true",
                   help="draw the random-policy return (published for Atari, measured for MinAtar and toy/catch)")
    p.add_argument("--up-to-frames", type=float, default=None, metavar="N",
                   help="draw only what was logged up to N frames, so runs of different lengths compare at equal "
                        "frames")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("sb3", help="train Stable-Baselines3's A2C or PPO with an actor-critic preset's settings",
                       description="Train Stable-Baselines3's A2C or PPO (agent.loss) with the settings of our "
                                   f"actor-critic presets ({', '.join(preset_names('agent', 'actor_critic'))}) on the "
                                   "same env, "
                                   "logged like `reverie train` (TensorBoard at emulator frames, checkpoints, "
                                   "--resume), as the yardstick of our implementation. CONFIG and overrides as for "
                                   "`reverie train`; needs `pip install -e .[bench]`.")
    add_config_arguments(p)
    p.set_defaults(func=cmd_sb3)

    from launch import gvae_cli, imagine_cli, iterations, key_quality_cli, vae_cli, video_cli

    vae_cli.register(sub)
    gvae_cli.register(sub)
    key_quality_cli.register(sub)
    video_cli.register(sub)
    imagine_cli.register(sub)
    iterations.register(sub)

    p = sub.add_parser("bench", help="benchmarks: throughput, density, vae, world-model, straw, episodic, dyna, "
                                     "allocator",
                       description="Side-by-side benchmarks that print a table (or --json).")
    p.add_argument("name", choices=["throughput", "density", "vae", "world-model", "straw", "episodic", "dyna",
                                    "allocator"])
    p.add_argument("--seconds", type=float, default=None,
                   help="seconds per measurement (default 20 for throughput, vae, straw, dyna and allocator, 5 for "
                        "world-model, 2 for episodic)")
    p.add_argument("--rounds", type=int, default=2,
                   help="allocator: measurements per workload and setting, alternating the settings")
    p.add_argument("--sizes", type=int, nargs="+", default=None,
                   help="episodic: entries per action buffer to measure (default 10000 100000 1000000)")
    p.add_argument("--game", default="pong", help="Atari game of the throughput benchmark (episodic --agent: "
                                                 "MsPacman unless given)")
    p.add_argument("--frames", type=int, default=2000, help="frames of the density benchmark")
    p.add_argument("--algo", action="append", choices=["dqn", "a2c", "ppo", "impala", "all"],
                   help="throughput of which training (repeatable; default dqn): dqn (the DQN pipeline, Ray, SB3's "
                        "DQN), a2c / ppo (ours vs SB3's with the a2c_pong / ppo_pong settings), impala "
                        "(impala_pong, 2 Ray actors: steps/s, learner busy fraction); all = a2c, ppo, impala")
    p.add_argument("--bonus", action="append", choices=["none", "cts", "pixelcnn", "rnd"],
                   help="throughput with an actor-critic --algo: also measure our loop with this exploration bonus "
                        "(repeatable): cts / pixelcnn with one stream (A3C+), rnd with two (RND); steps/s and the "
                        "ratio to bonus-free steps/s (goal >= 0.7 for cts and pixelcnn, >= 0.85 for rnd)")
    p.add_argument("--agent", action="store_true",
                   help="episodic: agent steps/s of MFEC training with each representation (mfec_atari; --game, "
                        "default MsPacman)")
    p.add_argument("--sharing", action="store_true",
                   help="episodic: how Ray actors should share the memory (replicas refreshed by publication vs one "
                        "memory in a Ray actor queried every step)")
    p.add_argument("--keys", nargs="+", metavar="RUN", default=None,
                   help="episodic: IVF's recall and value error on the keys MFEC runs stored (run directories or "
                        "checkpoints), beside Gaussian keys of the same size")
    p.add_argument("--atari", action="store_true",
                   help="straw: the Atari presets (strawe_atari, lstm_atari on Frostbite, colour frames) instead of "
                        "the maze ones")
    p.add_argument("--env", default=None,
                   help="dyna: minatar/<game> (default minatar/breakout): the Dyna agent's training beside DQN's "
                        "(real and imagined steps/s, updates/s, learner busy fraction, ratios); an Atari game (e.g. "
                        "Pong): each piece's cost with the CPU video model and the hours of Atari 100k")
    p.add_argument("--mode", choices=["local", "ray"], default="local",
                   help="dyna on MinAtar: local mode (one process) or 2 Ray actors")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Overrides may follow options (`train smoke --resume RUN k=v`): argparse leaves those over.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides += extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    # Before the command's work: glibc keeps freed batch-sized blocks instead of an mmap/munmap per batch
    # (`reverie bench allocator`); a variable the user set wins.
    tune_allocator()
    # SIGTERM (a scheduler's or Kubernetes' stop) ends every command as Ctrl-C does: a trainer's run scaffold
    # takes both signals over for its run (a last checkpoint), collect keeps its finished episodes.
    from worldmodels.common.scaffold import RunFailed, clear_stop_signal, raise_interrupted, stop_signal

    clear_stop_signal()  # a signal an earlier command in this process received is not this one's
    previous = signal.signal(signal.SIGTERM, raise_interrupted) \
        if threading.current_thread() is threading.main_thread() else None
    try:
        return args.func(args)
    except KeyboardInterrupt as err:
        # A command without checkpoints (collect) says what it kept instead.
        print(getattr(args, "interrupt_hint", "interrupted: a last checkpoint was written; continue with "
                                              "--resume RUN_DIR"), file=sys.stderr)
        # 130 for SIGINT, 143 for SIGTERM, as a shell reports; a plain KeyboardInterrupt (an Interrupted that a
        # library call re-raised as its own) takes the signal the handler recorded.
        return 128 + int(getattr(err, "signum", None) or stop_signal() or signal.SIGINT)
    except _user_errors() as err:
        if args.verbose:
            raise
        print(f"reverie {args.command}: error: {err}", file=sys.stderr)
        return 2
    except RunFailed as err:  # e.g. Ray actors lost: one line naming the setting; the traceback only with -v
        if args.verbose:
            raise
        print(f"reverie {args.command}: error: {err}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:  # main() called in-process (tests) leaves the caller's handler
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
