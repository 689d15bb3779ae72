"""``reverie bench dyna``: what the Dyna agent (``algo: dyna``, :mod:`agents.dyna`) costs, beside the model-free
DQN it is built on, measured side by side in one run.

**MinAtar** (``--env minatar/<game>``, default Breakout): the real training loop, one run after the other in this
process, each for ``seconds`` of wall clock after its first learner update (start-up, the random steps before
``agent.learning_starts_frames`` and the first compilation of kernels are excluded), on one torch thread:

- ``dqn``: the ``dqn_minatar`` preset;
- ``dyna_mbpo`` and ``dyna_simple``: the ``dyna_minatar`` preset (the same DQN settings: network, optimiser,
  batch 32, one update per agent step, replay, epsilon schedule) with ``dyna.scheme`` mbpo (k-step rollouts
  branched from replayed real states) and simple (imagined games in an ImaginedEnv), and
  ``dyna.model_warmup_transitions=0``: the measured window is the steady state after the model's warm-up, in
  which every update trains the world model, imagines and mixes imagined transitions into the DQN batch.

Figures per run: real frames/s (agent steps x frame skip; 1 on MinAtar), imagined transitions/s (one imagined
agent step each), learner updates/s (the loop's ``learner.update`` calls; a Dyna update is the world model's
training round, the imagination and ``dyna.q_updates_per_learner_update`` DQN steps) and the learner's busy
fraction (seconds inside ``learner.update`` over wall seconds; in local mode the rest is acting, with Ray actors
it is the driver's idle or ingesting time). Ratios: each Dyna run's real frames/s and updates/s over DQN's, and its
imagined transitions per real frame. ``--mode ray`` runs each with 2 Ray actors instead of local mode.

**Atari** (``--env <Atari game>``, e.g. ``Pong``): the dyna agent has no online Atari world model yet (its learner
fits the grid model of :mod:`worldmodels.grid`; see :data:`agents.dyna.config.WORLD_MODEL_FAMILIES`), so this
measures what each piece of the same agent would cost with the CPU video model (``video_cpu_ff``, the network of
``video_cpu_motion`` too) in its place, each piece alone on one torch thread, and adds them up:

- real: DQN's actor (the ``dqn_pong`` preset's env: Machado's settings, 4 emulator frames per agent step, one
  game; the Nature CNN's epsilon-greedy policy) into a replay, no learning: agent steps/s;
- world model: Adam updates of the video model on the one-step objective (windows of context 4 + 1 frames
  built from replayed real transitions, with their actions, clipped rewards and game overs), batch
  ``dyna.model_batch_size``: updates/s;
- imagination: an :class:`envs.ImaginedEnv` of ``dyna.rollouts_per_update`` games on the video model, started
  from replayed real observations, the Q-network's epsilon-greedy policy choosing the actions: imagined
  transitions/s;
- DQN: the Nature CNN's update (``dqn_pong``'s loss and optimiser) at batch 32 (DQN) and at batch 32 + the
  imagined share (Dyna's mixed batch): updates/s.

The projection for the Atari 100k protocol (100k agent steps = 400k frames; Kaiser et al. 2019, Table 3) uses
the ``dyna_minatar`` preset's schedule (``dyna.scheme: simple``): one learner update per agent step after
``agent.learning_starts_frames`` steps, each ``dyna.model_updates_per_learner_update`` video-model updates every
``dyna.model_update_every`` learner updates, ``rollouts_per_update x rollout_k`` imagined transitions and
``q_updates_per_learner_update`` mixed DQN steps. Hours = acting + updates x (model + imagination + DQN) at
the measured rates, beside DQN at the same schedule (acting + updates x a batch-32 DQN step), for one process on
one core (local mode), in which acting and learning alternate. The model's weights are untrained: the cost of a
step does not depend on them.
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from launch.bench.vae import timed

NEVER = str(10**13)  # frames: a run that never ends, checkpoints or logs by itself
#: name -> (preset, overrides) of the MinAtar measurements; the first is the reference of every ratio.
MINATAR_RUNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "dqn": ("dqn_minatar", ()),
    "dyna_mbpo": ("dyna_minatar", ("dyna.scheme=mbpo", "dyna.model_warmup_transitions=0")),
    "dyna_simple": ("dyna_minatar", ("dyna.scheme=simple", "dyna.model_warmup_transitions=0")),
}
#: Settings of every measured run: nothing stops, logs, evaluates or checkpoints inside the window.
QUIET = ("run.progress=false", "run.eval_episodes=0", f"run.total_frames={NEVER}",
         f"run.checkpoint_every_frames={NEVER}", f"run.log_every_frames={NEVER}")
#: Agent steps of the Atari 100k protocol (Kaiser et al. 2019): 400k frames at frame skip 4.
ATARI_100K_STEPS = 100_000


def _mode_overrides(mode: str) -> tuple[str, ...]:
    if mode == "local":
        return ("runtime.num_actors=0",)
    if mode == "ray":
        return ("runtime.num_actors=2", "runtime.actor_cpus=0.5")
    raise ValueError(f"mode={mode!r}: choose local (one process) or ray (2 Ray actors).")


def minatar_configs(game: str = "minatar/breakout", mode: str = "local",
                    extra: Sequence[str] = ()) -> dict[str, Any]:
    """The configs of :data:`MINATAR_RUNS` on ``game``, quiet (see :data:`QUIET`), in ``mode``; ``extra``
    overrides apply to every run (DQN keys only, e.g. to shrink a test's networks) after the presets'."""
    from agents.registry import get_builder
    from launch.config import load_config, peek_algo

    if not game.startswith("minatar/"):
        raise ValueError(f"env={game!r}: the MinAtar comparison runs on minatar/<game>; an Atari game name "
                         f"measures the Atari costs instead (run_atari_costs).")
    out = {}
    for name, (preset, overrides) in MINATAR_RUNS.items():
        out[name] = load_config(get_builder(peek_algo([preset])).config_class, [preset], [
            f"env.game={game}", *QUIET, *_mode_overrides(mode), *overrides, *extra])
    return out


def measure_run(cfg: Any, seconds: float) -> dict[str, float]:
    """The real training run of ``cfg`` (any algorithm on the runtime) for ``seconds`` after its first update.

    The learner's ``update`` is wrapped (on the instance, from the first update on) to add up its wall seconds.

    :return: raw counts over the window: ``elapsed`` (wall s), ``frames`` (real emulator frames), ``steps``
        (real agent steps), ``updates`` (learner updates), ``imagined`` (imagined transitions the learner made;
        0 for a learner without ``num_imagined``), ``busy`` (s inside ``learner.update``).
    """
    from agents.registry import get_builder
    from agents.runtime.loop import StopTraining, run_training

    marks: dict[str, float] = {}
    busy = [0.0]

    def timed_update(update: Any) -> Any:
        def wrapper(counters: Any) -> Any:
            start = time.perf_counter()
            try:
                return update(counters)
            finally:
                busy[0] += time.perf_counter() - start
        return wrapper

    def counts(state: Any) -> dict[str, float]:
        return {"frames": float(state.frames), "steps": float(state.steps), "updates": float(state.updates),
                "imagined": float(getattr(state.learner, "num_imagined", 0)), "busy": busy[0]}

    def hook(state: Any) -> None:
        now = time.perf_counter()
        if "t0" not in marks:
            if state.updates >= 1:
                state.learner.update = timed_update(state.learner.update)
                marks.update(t0=now, **{f"{k}0": v for k, v in counts(state).items()})
            return
        if now - marks["t0"] >= seconds:
            marks.update(elapsed=now - marks["t0"], **{k: v - marks[f"{k}0"] for k, v in counts(state).items()})
            raise StopTraining

    with tempfile.TemporaryDirectory() as tmp:
        run_training(get_builder(cfg.algo), cfg, run_dir=os.path.join(tmp, "bench"), hooks=[hook])
    if "elapsed" not in marks:
        raise RuntimeError("the training run ended before the measurement did")
    return {k: marks[k] for k in ("elapsed", "frames", "steps", "updates", "imagined", "busy")}


def summarise(raw: dict[str, dict[str, float]], reference: str = "dqn") -> dict[str, dict[str, float]]:
    """Rates and ratios from :func:`measure_run`'s counts, per run.

    :param raw: run name -> counts (``elapsed`` s, ``frames``, ``steps``, ``updates``, ``imagined``, ``busy`` s).
    :param reference: the run every ratio divides by (the model-free DQN).
    :return: run name -> ``real_frames_per_s``, ``real_steps_per_s``, ``imagined_per_s``, ``updates_per_s``,
        ``learner_busy_fraction`` (0-1), ``imagined_per_real_frame``, and ``real_frames_ratio`` /
        ``updates_ratio`` (this run's rate over the reference's; 1 for the reference itself).
    """
    rows: dict[str, dict[str, float]] = {}
    for name, r in raw.items():
        elapsed = max(r["elapsed"], 1e-9)
        rows[name] = {"real_frames_per_s": r["frames"] / elapsed, "real_steps_per_s": r["steps"] / elapsed,
                      "imagined_per_s": r["imagined"] / elapsed, "updates_per_s": r["updates"] / elapsed,
                      "learner_busy_fraction": r["busy"] / elapsed,
                      "imagined_per_real_frame": r["imagined"] / r["frames"] if r["frames"] else 0.0}
    base = rows[reference]
    for row in rows.values():
        row["real_frames_ratio"] = row["real_frames_per_s"] / base["real_frames_per_s"]
        row["updates_ratio"] = row["updates_per_s"] / base["updates_per_s"]
    return rows


def run_minatar_bench(game: str = "minatar/breakout", seconds: float = 20.0, mode: str = "local",
                      extra: Sequence[str] = ()) -> dict[str, Any]:
    """Measure every run of :data:`MINATAR_RUNS` (see the module docstring)."""
    torch.set_num_threads(1)
    cfgs = minatar_configs(game, mode, extra)
    raw = {name: measure_run(cfg, seconds) for name, cfg in cfgs.items()}
    dyna = cfgs["dyna_mbpo"].dyna
    return {"env": game, "mode": mode, "seconds": seconds, "cores": os.cpu_count(), "raw": raw,
            "rows": summarise(raw),
            "settings": {"rollout_k": dyna.rollout_k, "rollouts_per_update": dyna.rollouts_per_update,
                         "imagined_ratio": dyna.imagined_ratio,
                         "q_updates_per_learner_update": dyna.q_updates_per_learner_update,
                         "model_updates_per_learner_update": dyna.model_updates_per_learner_update,
                         "model_batch_size": dyna.model_batch_size, "batch_size": cfgs["dqn"].agent.batch_size,
                         "update_period": cfgs["dqn"].agent.update_period}}


def format_minatar_table(result: dict[str, Any]) -> str:
    s = result["settings"]
    head = (f"reverie bench dyna: {result['env']}, {result['mode']} mode, {result['cores']} cores, one torch thread, "
            f"{result['seconds']:.0f} s per run after its first update (Dyna after the model's warm-up)")
    lines = [head, "-" * len(head),
             f"per learner update: DQN {s['q_updates_per_learner_update']} step(s) of {s['batch_size']} real "
             f"(+ {round(s['imagined_ratio'] * s['batch_size'])} imagined for Dyna); Dyna also "
             f"{s['model_updates_per_learner_update']} world-model step(s) of {s['model_batch_size']} and "
             f"{s['rollouts_per_update']} x {s['rollout_k']} imagined transitions; "
             f"one update per {s['update_period']} real step(s)",
             f"  {'run':<12} {'real f/s':>9} {'x DQN':>6} {'imagined/s':>11} {'imag/real':>10} {'updates/s':>10} "
             f"{'x DQN':>6} {'learner busy':>13}"]
    for name, r in result["rows"].items():
        lines.append(f"  {name:<12} {r['real_frames_per_s']:>9,.1f} {r['real_frames_ratio']:>5.2f}x "
                     f"{r['imagined_per_s']:>11,.1f} {r['imagined_per_real_frame']:>10.2f} "
                     f"{r['updates_per_s']:>10,.1f} {r['updates_ratio']:>5.2f}x {r['learner_busy_fraction']:>13.0%}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- Atari pieces

def atari_configs(game: str) -> tuple[Any, Any]:
    """``(dqn, dyna)``: the ``dqn_pong`` preset on ``game`` with one env in local mode (the real side and the
    Q-network), and the ``dyna_minatar`` preset with ``dyna.scheme=simple`` (the schedule of the projection)."""
    from agents.dqn.config import DQNConfig
    from agents.dyna.config import DynaConfig
    from launch.config import load_config

    dqn = load_config(DQNConfig, ["dqn_pong"], [f"env.game={game}", "env.num_envs=1", "runtime.num_actors=0",
                                                "replay.capacity=20000", *QUIET])
    dyna = load_config(DynaConfig, ["dyna_minatar"], ["dyna.scheme=simple"])
    return dqn, dyna


def project_hours(rates: dict[str, float], plan: dict[str, float], steps: int = ATARI_100K_STEPS) -> dict[str, float]:
    """Hours of ``steps`` agent steps at the measured ``rates``, one process on one core.

    :param rates: ``real_steps_per_s`` (acting), ``model_updates_per_s``, ``imagined_per_s`` (transitions),
        ``dqn_updates_per_s`` (batch 32) and ``mixed_updates_per_s`` (batch 32 + the imagined share).
    :param plan: ``learning_starts_steps``, ``update_period`` (agent steps per learner update),
        ``model_updates_per_learner_update``, ``model_update_every``, ``imagined_per_update`` (transitions) and
        ``q_updates_per_learner_update``.
    :return: ``updates`` (learner updates in the run), the seconds of each piece (``acting_s``, ``model_s``,
        ``imagination_s``, ``dqn_s``), ``dyna_hours`` (their sum), ``dqn_hours`` (acting plus the same
        learner updates, each ``q_updates_per_learner_update`` batch-32 DQN steps, no model) and
        ``dyna_over_dqn`` (the ratio of the two).
    """
    updates = max(0.0, (steps - plan["learning_starts_steps"]) / plan["update_period"])
    q = plan["q_updates_per_learner_update"]
    acting = steps / rates["real_steps_per_s"]
    model = updates * plan["model_updates_per_learner_update"] / plan["model_update_every"] / rates[
        "model_updates_per_s"]
    imagination = updates * plan["imagined_per_update"] / rates["imagined_per_s"]
    dqn = updates * q / rates["mixed_updates_per_s"]
    dyna_hours = (acting + model + imagination + dqn) / 3600
    dqn_hours = (acting + updates * q / rates["dqn_updates_per_s"]) / 3600
    return {"updates": updates, "acting_s": acting, "model_s": model, "imagination_s": imagination, "dqn_s": dqn,
            "dyna_hours": dyna_hours, "dqn_hours": dqn_hours, "dyna_over_dqn": dyna_hours / dqn_hours}


def run_atari_costs(game: str = "Pong", seconds: float = 20.0, video_preset: str = "video_cpu_ff",
                    fill_steps: int = 2000) -> dict[str, Any]:
    """Measure each piece of the module docstring's Atari list and project the Atari 100k hours.

    :param fill_steps: real agent steps collected (and timed) before the learner pieces sample from them.
    """
    from agents.dqn.actor import EpsilonGreedyPolicy, make_dqn_parts
    from agents.dqn.learning import DQNLearner
    from agents.replay.buffer import PrioritizedReplay
    from agents.runtime.actor import EnvActor
    from envs import ImaginedEnv
    from launch.config import load_config
    from worldmodels.video import VideoFitConfig, VideoPredictor

    torch.set_num_threads(1)
    dqn_cfg, dyna_cfg = atari_configs(game)
    d = dyna_cfg.dyna
    # Real: DQN's actor into a replay of one-step transitions (agent.n_step = 1, as the dyna agent needs).
    actor = EnvActor(0, make_dqn_parts, dqn_cfg, seed=0, torch_threads=1)
    replay = PrioritizedReplay(dqn_cfg.replay.capacity, num_shards=1, prioritized=False, seed=0, stack=4,
                               frame_shape=(84, 84))  # Atari's observations: 4 stacked 84x84 frames
    steps, start = 0, time.perf_counter()
    while steps < fill_steps or time.perf_counter() - start < min(seconds, 10.0):
        out = actor.run(dqn_cfg.runtime.chunk_steps, frames=0)
        replay.add(out.payload)
        steps += out.env_steps
    real_steps_per_s = steps / (time.perf_counter() - start)
    assert isinstance(actor.policy, EpsilonGreedyPolicy)  # what make_dqn_parts builds
    num_actions = int(actor.policy.num_actions)
    actor.close()

    # World model: the video model's one-step objective on windows of replayed real transitions.
    model_cfg = load_config(VideoFitConfig, [video_preset]).model
    model = VideoPredictor(model_cfg, num_actions, game=game)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    k = model_cfg.context

    def windows(n: int) -> dict[str, np.ndarray]:
        b = replay.sample(n, mc_returns=False)
        frames = np.concatenate([b.obs[:, -k:], b.next_obs[:, -1:]], 1)  # [n, k + 1, 84, 84]
        actions = np.zeros((n, k + 1), np.int64)
        rewards = np.zeros((n, k + 1), np.float32)
        terminals = np.zeros((n, k + 1), bool)
        actions[:, k - 1], rewards[:, k - 1], terminals[:, k] = b.actions, b.returns, b.discounts == 0
        return {"frames": frames, "actions": actions, "rewards": rewards, "terminals": terminals}

    def model_update() -> None:
        loss = model.loss(windows(d.model_batch_size))["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model_updates_per_s = timed(model_update, 1, seconds)

    # Imagination: an ImaginedEnv of rollouts_per_update games on the video model, the Q-network acting.
    model.eval()
    learner = DQNLearner(num_actions, dqn_cfg.agent, dqn_cfg.network, target_update_period=8000)
    # The policy freezes the network it is given: a copy, as the dyna learner's imagination policy holds.
    policy = EpsilonGreedyPolicy(copy.deepcopy(learner.online), dqn_cfg, actor_id=0, seed=0, fixed_epsilon=0.1)

    def starts(_: np.random.Generator, n: int) -> np.ndarray:
        return replay.sample(n, mc_returns=False).obs[:, -k:]  # [n, k, 84, 84]

    env = ImaginedEnv(model, starts, num_envs=d.rollouts_per_update, stack=4,
                      max_episode_steps=d.imagined_episode_steps, frame_skip=4, seed=0)
    obs = [env.reset()[0]]

    def imagined_step() -> None:
        actions = policy.act(obs[0], 10**9)[0]
        obs[0] = env.step(actions)[0]

    imagined_per_s = timed(imagined_step, d.rollouts_per_update, seconds)

    # DQN: batch 32 (model-free) and 32 + the imagined share (Dyna's mixed batch).
    real_batch = dqn_cfg.agent.batch_size
    mixed_batch = real_batch + round(d.imagined_ratio * real_batch)

    def dqn_update(n: int) -> Any:
        def update() -> None:
            b = replay.sample(n, mc_returns=False)
            learner.step(torch.from_numpy(b.obs), torch.from_numpy(b.actions), torch.from_numpy(b.returns),
                         torch.from_numpy(b.discounts), torch.from_numpy(b.next_obs), torch.from_numpy(b.weights))
        return update

    dqn_updates_per_s = timed(dqn_update(real_batch), 1, seconds)
    mixed_updates_per_s = timed(dqn_update(mixed_batch), 1, seconds)
    rates = {"real_steps_per_s": real_steps_per_s, "real_frames_per_s": 4 * real_steps_per_s,
             "model_updates_per_s": model_updates_per_s,
             "model_frames_per_s": model_updates_per_s * d.model_batch_size,
             "imagined_per_s": imagined_per_s, "imagined_frames_per_s": 4 * imagined_per_s,
             "dqn_updates_per_s": dqn_updates_per_s, "mixed_updates_per_s": mixed_updates_per_s}
    plan = {"learning_starts_steps": float(dyna_cfg.agent.learning_starts_frames),  # MinAtar: 1 frame per step
            "update_period": float(dyna_cfg.agent.update_period),
            "model_updates_per_learner_update": float(d.model_updates_per_learner_update),
            "model_update_every": float(d.model_update_every),
            "imagined_per_update": float(d.rollouts_per_update * d.rollout_k),
            "imagined_games": float(d.rollouts_per_update),
            "q_updates_per_learner_update": float(d.q_updates_per_learner_update),
            "model_batch_size": float(d.model_batch_size), "batch_size": float(real_batch),
            "mixed_batch_size": float(mixed_batch)}
    return {"env": game, "video_preset": video_preset, "seconds": seconds, "cores": os.cpu_count(),
            "threads": torch.get_num_threads(), "rates": rates, "plan": plan,
            "projection": project_hours(rates, plan), "steps": ATARI_100K_STEPS}


def format_atari_table(result: dict[str, Any]) -> str:
    r, plan, p = result["rates"], result["plan"], result["projection"]
    head = (f"reverie bench dyna: Atari {result['env']}, costs of each piece with the {result['video_preset']} world "
            f"model, {result['cores']} cores, {result['threads']} torch thread, {result['seconds']:.0f} s per piece")
    rows = [
        ("real: DQN actor, 1 game (no learning)", f"{r['real_steps_per_s']:,.1f} steps/s = "
                                                   f"{r['real_frames_per_s']:,.1f} frames/s"),
        (f"world model: video updates, batch {plan['model_batch_size']:.0f}, 1 step",
         f"{r['model_updates_per_s']:,.2f} updates/s = {r['model_frames_per_s']:,.1f} frames/s"),
        (f"imagination: ImaginedEnv, {plan['imagined_games']:.0f} games, Q-network acting",
         f"{r['imagined_per_s']:,.1f} transitions/s = {r['imagined_frames_per_s']:,.1f} frames/s"),
        (f"DQN update, batch {plan['batch_size']:.0f}", f"{r['dqn_updates_per_s']:,.2f} updates/s"),
        (f"Dyna's mixed DQN update, batch {plan['mixed_batch_size']:.0f}",
         f"{r['mixed_updates_per_s']:,.2f} updates/s"),
    ]
    width = max(len(a) for a, _ in rows)
    lines = [head, "-" * len(head)] + [f"{a:<{width}}  {b}" for a, b in rows]
    steps = result["steps"]
    lines += [
        f"projection, Atari 100k ({steps:,} agent steps = {4 * steps:,} frames), one process on one core, the "
        f"dyna_minatar schedule:",
        f"  {p['updates']:,.0f} learner updates (one per {plan['update_period']:.0f} step(s) after "
        f"{plan['learning_starts_steps']:,.0f}), each {plan['model_updates_per_learner_update']:.0f} model update(s) "
        f"every {plan['model_update_every']:.0f}, {plan['imagined_per_update']:.0f} imagined transitions, "
        f"{plan['q_updates_per_learner_update']:.0f} mixed DQN step(s)",
        f"  acting {p['acting_s'] / 3600:.2f} h + world model {p['model_s'] / 3600:.2f} h + imagination "
        f"{p['imagination_s'] / 3600:.2f} h + DQN {p['dqn_s'] / 3600:.2f} h = Dyna {p['dyna_hours']:.2f} h",
        f"  model-free DQN at the same schedule: {p['dqn_hours']:.2f} h; Dyna / DQN = {p['dyna_over_dqn']:.2f}x",
    ]
    return "\n".join(lines)
