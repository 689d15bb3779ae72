"""Actor-side n-step transition builder: vector-env steps in, frame-deduplicated chunks out.

Each frame an actor sees gets an actor-local id (consecutive integers per builder) and is sent to the replay
exactly once. A transition refers to its stacked observations by frame ids (oldest first, -1 for the zero
padding at the start of an episode), so the replay stores one copy of every 84x84 frame instead of the eight
copies that (s_t, s_{t+n}) stacks of four would need. A frame is ``(H, W)`` (Atari luminance) or channels-first
``(C, H, W)`` (MinAtar, whose observation is a single such frame: stack 1); the builder only moves whole frames.

Priorities follow Ape-X (Horgan et al. 2018): the actor already computes Q(s_t, .) to pick a_t, so the n-step
TD error |G + gamma^k max_a Q(s_{t+k}, a) - Q(s_t, a_t)| costs nothing extra. The max over Q(s_{t+k}) only
exists once the actor evaluates s_{t+k}, i.e. in the step() call after the transition's last reward; the
transition waits until then (transitions that end in termination do not bootstrap and are ready at once).

Mixed Monte Carlo returns (Bellemare et al. 2016, Sec. 5; Ostrovski et al. 2017): with ``mc_returns=True`` every
transition also carries ``G^MC_t = sum_{j >= t} gamma^(j-t) r_j`` up to the end of its *learning* episode (the
next ``terminated`` or ``truncated``, so a life-loss terminal ends it, exactly where the bootstrapped target stops
too). That sum is known only when the episode ends, so the builder holds each finished transition until then;
chunks carry transitions in the order their episodes end. The end of an episode:

- ``terminated``: no bootstrap, ``G^MC_t = sum_{t <= j < T} gamma^(j-t) r_j``;
- ``truncated`` (the 108k-frame cap, a time limit that is not part of the game): the sum is bootstrapped with
  ``gamma^(T-t) max_a Q(s_T, a)`` from the Q-values the actor computes on the final observation in the next
  ``step()`` call (the same value that n-step transitions truncated there bootstrap from); NaN if no Q-values
  are given;
- a mid-stream ``reset()``: the episode's return is unknown, NaN.

NaN means "unknown": the learner then uses the n-step target alone for that transition. Without
``mc_returns`` nothing is held and chunks carry ``mc_returns=None`` (the replay stores NaN: unknown).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import numpy as np


@dataclass
class Chunk:
    """A batch of n-step transitions and the frames they need, as sent from one actor to the replay.

    ``T`` transitions, ``M`` new frames, stack size ``S``.
    """

    actor_id: int
    incarnation: int  # random 63-bit id drawn when the builder is created; a new one = the actor restarted
    first_frame_id: int  # actor-local id of frames[0]; ids are consecutive per builder
    frames: np.ndarray  # uint8 [M, *frame_shape] ([M, H, W] or [M, C, H, W]) new frames since the last chunk, id order
    obs_ids: np.ndarray  # int64 [T, S] frame ids of the stacked s_t, oldest first; -1 = zero padding
    next_ids: np.ndarray  # int64 [T, S] ids of s_{t+k} (bootstrap state; k = n, or fewer at episode end)
    actions: np.ndarray  # int64 [T]
    returns: np.ndarray  # float32 [T]  sum_{j<k} gamma^j r_{t+j}
    discounts: np.ndarray  # float32 [T]  gamma^k, or 0 if the episode terminated within those k steps
    priorities: np.ndarray  # float32 [T]  |n-step TD error| from the actor's Q-values, NaN where unknown
    num_steps: int  # real agent steps since the last chunk (autoreset steps not counted), for frame counters
    mc_returns: np.ndarray | None = None  # float32 [T] Monte Carlo return to the episode end, NaN = unknown; None: not
    # computed (the builder's mc_returns=False, i.e. agent.mc_mix = 0), all unknown

    def __len__(self) -> int:
        return int(self.actions.shape[0])


_FIELDS = ("obs_ids", "next_ids", "actions", "returns", "discounts", "priorities", "mc_returns")
_MC_KEYS = ("env", "ep", "t")  # env index, learning-episode number of that env, step index inside the episode


def _empty_transitions(stack: int) -> dict[str, np.ndarray]:
    return {
        "obs_ids": np.empty((0, stack), np.int64),
        "next_ids": np.empty((0, stack), np.int64),
        "actions": np.empty(0, np.int64),
        "returns": np.empty(0, np.float64),
        "discounts": np.empty(0, np.float64),
        "priorities": np.empty(0, np.float64),
        "mc_returns": np.empty(0, np.float64),
    }


def discounted_returns(rewards: np.ndarray, gamma: float, bootstrap: float = 0.0) -> np.ndarray:
    """Monte Carlo returns of one episode: ``G_t = r_t + gamma * G_{t+1}`` with ``G_T = bootstrap``.

    :param rewards: float [T] rewards in order. :param bootstrap: value of the state after the last reward.
    :return: float64 [T].
    """
    r = np.asarray(rewards, dtype=np.float64)
    out = np.empty(len(r), np.float64)
    g = float(bootstrap)
    for t in range(len(r) - 1, -1, -1):  # a plain loop: gamma^T underflows for long episodes in closed form
        g = float(r[t]) + gamma * g
        out[t] = g
    return out


class NStepBuilder:
    """Turns the steps of a vector env (autoreset mode "NextStep") into n-step transitions over frame ids.

    :param num_envs: N, the number of sub-environments of the vector env.
    :param n: the n of n-step returns (>= 1).
    :param gamma: discount per agent step, in [0, 1].
    :param stack: S, frames per stacked observation (4 for Atari), oldest first.
    :param frame_shape: (H, W) of one uint8 frame, or channels-first (C, H, W) (MinAtar: the whole observation).
    :param actor_id: copied into every chunk (the replay shards by it).
    :param seed: seeds the incarnation id. Leave it None in actors that can be restarted (Ray
        ``max_restarts``): a restarted actor must draw a new incarnation, and OS entropy guarantees that,
        whereas the same seed would repeat it. Pass a seed only in tests or where the caller varies it per
        restart.
    :param mc_returns: compute Monte Carlo returns (see the module docstring); transitions are then held until
        their episode ends.

    Usage per vector-env step: ``obs, r, term, trunc, _ = env.step(a)``, then
    ``builder.step(a, q, r, term, trunc, obs[:, -1])`` (in general ``envs.newest_frames(obs, stack, frame_shape)``;
    for MinAtar that is ``obs`` itself) where ``q`` are the Q-values the policy computed on the
    observation in which ``a`` was chosen (or None). ``flush()`` whenever a chunk should go to the replay.
    """

    def __init__(
        self,
        num_envs: int,
        n: int,
        gamma: float,
        stack: int = 4,
        frame_shape: tuple[int, ...] = (84, 84),
        actor_id: int = 0,
        seed: int | None = None,
        mc_returns: bool = False,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if n < 1:
            raise ValueError(f"n (n-step) must be >= 1, got {n}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        if stack < 1:
            raise ValueError(f"stack must be >= 1, got {stack}")
        self.num_envs = int(num_envs)
        self.n = int(n)
        self.gamma = float(gamma)
        self.stack = int(stack)
        self.frame_shape = tuple(int(x) for x in frame_shape)
        if len(self.frame_shape) not in (2, 3) or min(self.frame_shape) < 1:
            raise ValueError(f"frame_shape must be (H, W) or channels-first (C, H, W), got {tuple(frame_shape)}")
        self.actor_id = int(actor_id)
        if seed is None:
            self.incarnation = secrets.randbits(63)
        else:
            self.incarnation = int(np.random.default_rng(seed).integers(0, 2**63 - 1, dtype=np.int64))

        N, S = self.num_envs, self.stack
        self._next_id = 0  # id of the next frame received
        self._first_unsent = 0  # id of the first frame not yet in a chunk
        self._frame_buf: list[np.ndarray] = []
        self._started = False
        self._stack_ids = np.full((N, S), -1, np.int64)  # ids of the current observation of each env
        self._resets_next = np.zeros(N, bool)  # game ended last call: this call is the env's autoreset
        # Open transitions (fewer than n rewards seen), one ring of n per env indexed by episode step % n.
        self._ep_step = np.zeros(N, np.int64)
        self._p_obs = np.full((N, self.n, S), -1, np.int64)
        self._p_act = np.zeros((N, self.n), np.int64)
        self._p_ret = np.zeros((N, self.n), np.float64)
        self._p_age = np.zeros((N, self.n), np.int64)  # rewards accumulated so far (k)
        self._p_qsa = np.full((N, self.n), np.nan, np.float64)  # Q(s_t, a_t), NaN if unknown
        self._p_active = np.zeros((N, self.n), bool)
        # Complete transitions waiting for max_a Q(s_{t+k}, a), which the next step() call brings.
        self._await: dict[str, np.ndarray] | None = None
        self._ready: list[dict[str, np.ndarray]] = []
        self._num_steps = 0
        # Monte Carlo returns: rewards of each env's current learning episode, finished transitions held per env
        # until their episode's returns are known, and the returns of ended episodes not yet fully released.
        self.mc_returns = bool(mc_returns)
        self._p_ep = np.zeros((N, self.n), np.int64)
        self._p_t = np.zeros((N, self.n), np.int64)
        self._ep_id = np.zeros(N, np.int64)
        self._ep_rewards: list[list[float]] = [[] for _ in range(N)]
        self._held: list[list[dict[str, np.ndarray]]] = [[] for _ in range(N)]
        self._closing: dict[int, tuple[int, np.ndarray]] = {}  # env -> (episode, rewards): truncated, awaits Q
        self._closed: dict[tuple[int, int], list] = {}  # (env, episode) -> [returns float64 [L], unreleased]

    # ----------------------------------------------------------------------------------------------- input
    def _check_frames(self, frames: np.ndarray, name: str) -> np.ndarray:
        f = np.asarray(frames)
        want = (self.num_envs, *self.frame_shape)
        if f.dtype != np.uint8 or f.shape != want:
            raise ValueError(
                f"{name} must be uint8 {list(want)} (the newest frame of each observation: obs[:, -1] for Atari "
                f"stacks); got {f.dtype} {list(f.shape)}"
            )
        return f

    def _add_frames(self, frames: np.ndarray) -> np.ndarray:
        """Assign ids to N new frames (one per env, env order) and buffer a copy; returns int64 [N] ids."""
        ids = self._next_id + np.arange(self.num_envs, dtype=np.int64)
        self._next_id += self.num_envs
        self._frame_buf.append(np.array(frames, dtype=np.uint8, copy=True))  # envs may reuse their buffers
        return ids

    @property
    def pending(self) -> int:
        """Transitions started but not yet ready (open windows, those waiting for a bootstrap Q, and with
        ``mc_returns`` those held until their episode ends)."""
        waiting = 0 if self._await is None else len(self._await["actions"])
        held = sum(len(p["actions"]) for parts in self._held for p in parts)
        return int(self._p_active.sum()) + waiting + held

    def reset(self, frames: np.ndarray) -> None:
        """Start N new episodes whose first frames are ``frames`` (uint8 [N, *frame_shape], the newest frames).

        Called mid-stream (the caller reset the vector env by hand), the running episodes are cut: their open
        transitions are emitted as truncated at the current observation, with unknown (NaN) priority.
        """
        f = self._check_frames(frames, "frames")
        if self._started:
            self._cut_all_episodes()
        ids = self._add_frames(f)
        self._start_episodes(np.arange(self.num_envs), ids)
        self._resets_next[:] = False
        self._started = True

    def _start_episodes(self, envs: np.ndarray, ids: np.ndarray) -> None:
        self._stack_ids[envs] = -1
        self._stack_ids[envs, -1] = ids[envs]
        self._ep_step[envs] = 0

    def _emit(self, part: dict[str, np.ndarray]) -> None:
        """Finished transitions (``_FIELDS`` except mc_returns, plus ``_MC_KEYS``): ready now, or held for their
        Monte Carlo returns."""
        if not self.mc_returns:
            self._ready.append({k: part[k] for k in _FIELDS if k != "mc_returns"})
            return
        env = part["env"]
        bounds = np.flatnonzero(np.diff(env)) + 1  # parts are grouped by env (see step())
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(env)]):
            self._held[int(env[lo])].append({k: v[lo:hi] for k, v in part.items()})

    def _close_episode(self, env: int, episode: int, returns: np.ndarray) -> None:
        self._closed[(env, episode)] = [returns, len(returns)]

    def _release(self, force: bool = False) -> None:
        """Move held transitions whose episode returns are known to the ready list (all of them if ``force``,
        with NaN returns where unknown)."""
        envs = range(self.num_envs) if force else sorted({e for e, _ in self._closed})
        for e in envs:
            parts = self._held[e]
            if not parts:
                continue
            held = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
            mc = np.full(len(held["actions"]), np.nan)
            done = np.zeros(len(mc), bool)
            for ep in np.unique(held["ep"]):
                entry = self._closed.get((e, int(ep)))
                if entry is None:
                    continue
                sel = held["ep"] == ep
                mc[sel] = entry[0][held["t"][sel]]
                done |= sel
                entry[1] -= int(sel.sum())
                if entry[1] <= 0:
                    del self._closed[(e, int(ep))]
            if force:
                done[:] = True
            if done.any():
                out = {k: held[k][done] for k in _FIELDS if k != "mc_returns"}
                out["mc_returns"] = mc[done]
                self._ready.append(out)
            self._held[e] = [] if done.all() else [{k: v[~done] for k, v in held.items()}]
        if force:
            self._closed.clear()

    def _cut_all_episodes(self) -> None:
        if self._await is not None:
            aw = self._await
            aw["priorities"] = np.full(len(aw["actions"]), np.nan)
            self._emit({k: aw[k] for k in (*_FIELDS[:-1], *_MC_KEYS)})
            self._await = None
        e, s = np.nonzero(self._p_active)
        if len(e):
            k = self._p_age[e, s]
            self._emit(
                {
                    "obs_ids": self._p_obs[e, s],
                    "next_ids": self._stack_ids[e],
                    "actions": self._p_act[e, s],
                    "returns": self._p_ret[e, s],
                    "discounts": self.gamma ** k.astype(np.float64),
                    "priorities": np.full(len(e), np.nan),
                    "env": e,
                    "ep": self._p_ep[e, s],
                    "t": self._p_t[e, s],
                }
            )
            self._p_active[:] = False
        if self.mc_returns:
            # The cut episodes' Monte Carlo returns are unknown (NaN); truncated ones awaiting Q too.
            self._closing.clear()
            self._release(force=True)
            self._ep_id += 1
            self._ep_rewards = [[] for _ in range(self.num_envs)]

    def step(
        self,
        actions: np.ndarray,
        q_values: np.ndarray | None,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        next_frames: np.ndarray,
        game_over: np.ndarray | None = None,
    ) -> None:
        """Record one vector-env step.

        :param actions: int64 [N] actions sent to the env (ignored for envs that autoreset in this call).
        :param q_values: float [N, A] Q-values of the observation in which ``actions`` were chosen, or None.
            For an env that autoresets in this call this is Q of its final observation, which is exactly the
            bootstrap value its truncated transitions wait for.
        :param rewards: float [N] rewards returned by the env.
        :param terminated: bool [N].
        :param truncated: bool [N].
        :param next_frames: uint8 [N, *frame_shape] newest frame of the returned observations (obs[:, -1] for
            Atari stacks [N, S, H, W]; the whole observation for MinAtar).
        :param game_over: bool [N], which envs autoreset in the next call (default: terminated | truncated).
            A terminated env whose game goes on (a life-loss terminal, ``info["game_over"]`` False) ends
            its transitions with discount 0, but its next call is a real step whose stack continues the old
            frames.
        """
        if not self._started:
            raise RuntimeError("NStepBuilder.step() before reset(): pass the first frames of the episodes")
        N = self.num_envs
        a = np.asarray(actions)
        if a.shape != (N,) or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"actions must be an integer array [{N}], got {a.dtype} {list(a.shape)}")
        a = a.astype(np.int64, copy=False)
        r = np.asarray(rewards, dtype=np.float64)
        term = np.asarray(terminated, dtype=bool)
        trunc = np.asarray(truncated, dtype=bool)
        for name, arr in (("rewards", r), ("terminated", term), ("truncated", trunc)):
            if arr.shape != (N,):
                raise ValueError(f"{name} must have shape [{N}], got {list(arr.shape)}")
        frames = self._check_frames(next_frames, "next_frames")
        q = None
        if q_values is not None:
            q = np.asarray(q_values, dtype=np.float64)
            if q.ndim != 2 or q.shape[0] != N:
                raise ValueError(f"q_values must be float [{N}, num_actions] or None, got {list(q.shape)}")
        resetting = self._resets_next
        normal = ~resetting
        if q is not None and normal.any():
            an = a[normal]
            if an.min() < 0 or an.max() >= q.shape[1]:
                raise ValueError(f"actions must lie in [0, {q.shape[1]}) (q_values has {q.shape[1]} actions)")
        if np.any((term | trunc) & resetting):
            raise ValueError(
                "terminated/truncated set in the step right after an episode end: the vector env must use "
                "autoreset_mode='NextStep' (that step returns a reset observation with term=trunc=False)"
            )
        go = (term | trunc) if game_over is None else np.asarray(game_over, dtype=bool)
        if go.shape != (N,) or np.any(go & ~(term | trunc)):
            raise ValueError(
                f"game_over must be bool [{N}] and set only where terminated or truncated is; got {go}"
            )

        # 1. Transitions completed last call bootstrap from the observation evaluated now.
        if self._await is not None:
            aw = self._await
            if q is None:
                prio = np.full(len(aw["actions"]), np.nan)
            else:
                boot = q[aw["env"]].max(axis=1)
                prio = np.abs(aw["returns"] + aw["discounts"] * boot - aw["qsa"])
            aw["priorities"] = prio
            self._emit({k: aw[k] for k in (*_FIELDS[:-1], *_MC_KEYS)})
            self._await = None
        # Episodes truncated last call: their Monte Carlo returns bootstrap from max_a Q(s_T, a), known now.
        for e, (ep, rewards) in self._closing.items():
            boot = np.nan if q is None else float(q[e].max())
            returns = discounted_returns(rewards, self.gamma, 0.0 if np.isnan(boot) else boot)
            self._close_episode(e, ep, returns if not np.isnan(boot) else np.full(len(rewards), np.nan))
        self._closing = {}

        ids = self._add_frames(frames)
        # 2. Autoreset envs: the frame starts a new episode; no transition.
        self._start_episodes(np.flatnonzero(resetting), ids)

        # 3. Real steps: open a transition at s_t, then move the stack to s_{t+1}.
        envs = np.flatnonzero(normal)
        slot = self._ep_step[envs] % self.n
        self._p_obs[envs, slot] = self._stack_ids[envs]
        self._p_act[envs, slot] = a[envs]
        self._p_ret[envs, slot] = 0.0
        self._p_age[envs, slot] = 0
        self._p_active[envs, slot] = True
        self._p_qsa[envs, slot] = np.nan if q is None else q[envs, a[envs]]
        if self.mc_returns:
            self._p_ep[envs, slot] = self._ep_id[envs]
            for e, sl in zip(envs.tolist(), slot.tolist()):
                self._p_t[e, sl] = len(self._ep_rewards[e])
                self._ep_rewards[e].append(float(r[e]))
        self._stack_ids[envs, :-1] = self._stack_ids[envs, 1:]
        self._stack_ids[envs, -1] = ids[envs]
        self._ep_step[envs] += 1
        self._num_steps += len(envs)

        live = self._p_active & normal[:, None]
        self._p_ret += np.where(live, self.gamma ** self._p_age.astype(np.float64) * r[:, None], 0.0)
        self._p_age += live
        ended = normal & (term | trunc)
        done = live & ((self._p_age == self.n) | ended[:, None])
        de, ds = np.nonzero(done)  # env and slot of each finished transition
        if len(de):
            k = self._p_age[de, ds]
            order = np.lexsort((-k, de))  # per env, oldest transition first
            de, ds, k = de[order], ds[order], k[order]
            self._p_active[de, ds] = False
            out = {
                "env": de,
                "obs_ids": self._p_obs[de, ds],
                "next_ids": self._stack_ids[de],
                "actions": self._p_act[de, ds],
                "returns": self._p_ret[de, ds],
                "discounts": np.where(term[de], 0.0, self.gamma ** k.astype(np.float64)),
                "qsa": self._p_qsa[de, ds],
                "ep": self._p_ep[de, ds],
                "t": self._p_t[de, ds],
            }
            # Terminated: no bootstrap, priority known now. Unknown Q(s_t, a_t): NaN whatever comes next.
            now = term[de] | np.isnan(out["qsa"])
            if now.any():
                sel = {key: v[now] for key, v in out.items()}
                sel["priorities"] = np.abs(sel["returns"] - sel["qsa"])  # NaN where qsa is NaN
                self._emit({key: sel[key] for key in (*_FIELDS[:-1], *_MC_KEYS)})
            if not now.all():
                self._await = {key: v[~now] for key, v in out.items()}
        if self.mc_returns:
            for e in np.flatnonzero(ended).tolist():
                rewards = np.asarray(self._ep_rewards[e], np.float64)
                if term[e]:
                    self._close_episode(int(e), int(self._ep_id[e]), discounted_returns(rewards, self.gamma))
                else:
                    self._closing[int(e)] = (int(self._ep_id[e]), rewards)
                self._ep_id[e] += 1
                self._ep_rewards[e] = []
            if self._closed:
                self._release()
        self._resets_next = ended & go

    # ---------------------------------------------------------------------------------------------- output
    def flush(self) -> Chunk:
        """Everything ready since the last flush, plus every frame received since then (in id order).

        Frames are sent exactly once; a chunk may carry frames only later chunks' transitions refer to.
        """
        frames = np.concatenate(self._frame_buf) if self._frame_buf else np.empty((0, *self.frame_shape), np.uint8)
        parts = self._ready or [_empty_transitions(self.stack)]
        fields = _FIELDS if self.mc_returns else _FIELDS[:-1]  # no Monte Carlo returns: none sent
        cat = {k: np.concatenate([p[k] for p in parts]) for k in fields}
        chunk = Chunk(
            actor_id=self.actor_id,
            incarnation=self.incarnation,
            first_frame_id=self._first_unsent,
            frames=frames,
            obs_ids=cat["obs_ids"].astype(np.int64),
            next_ids=cat["next_ids"].astype(np.int64),
            actions=cat["actions"].astype(np.int64),
            returns=cat["returns"].astype(np.float32),
            discounts=cat["discounts"].astype(np.float32),
            priorities=cat["priorities"].astype(np.float32),
            num_steps=self._num_steps,
            mc_returns=cat["mc_returns"].astype(np.float32) if self.mc_returns else None,
        )
        self._first_unsent = self._next_id
        self._frame_buf = []
        self._ready = []
        self._num_steps = 0
        return chunk
