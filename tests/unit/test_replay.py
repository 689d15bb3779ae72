"""PrioritizedReplay: frames stored once, sampled stacks identical to what an ale-py-style env shows,
proportional sampling, importance weights, eviction, actor restarts, checkpoints and sizing."""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from agents.replay.buffer import PrioritizedReplay
from agents.replay.nstep import Chunk, NStepBuilder

SHAPE = (3, 4)  # small frames keep the tests fast; 84x84 changes nothing but bytes
NUM_ACTIONS = 3


class AleLikeEnv:
    """Vector env with ale-py's observation semantics over synthetic, all-distinct frames.

    Stacks of ``stack`` frames, oldest first, zero-padded at episode start; autoreset "NextStep" (the call
    after a game ends ignores the action and returns the new game's first observation, reward 0);
    truncations; optional life-loss terminals after which the game (and the stack) goes on. It records every
    observation it shows (keyed by the bytes of its newest frame, which are unique) and every real step, so
    that any n-step transition can be recomputed from scratch.
    """

    def __init__(self, num_envs: int, stack: int = 4, seed: int = 0, end_prob: float = 0.15,
                 trunc_prob: float = 0.3, life_prob: float = 0.3) -> None:
        self.n, self.stack = num_envs, stack
        self.rng = np.random.default_rng(seed)
        self.end_prob, self.trunc_prob, self.life_prob = end_prob, trunc_prob, life_prob
        self.counter = 0
        self.obs = np.zeros((num_envs, stack, *SHAPE), np.uint8)
        self.resets_next = np.zeros(num_envs, bool)
        self.shown: dict[bytes, np.ndarray] = {}  # newest frame -> the stacked observation shown
        # newest frame of s_t -> (a_t, r_t, terminated, truncated, newest frame of s_{t+1})
        self.steps: dict[bytes, tuple[int, float, bool, bool, bytes]] = {}

    def _frame(self) -> np.ndarray:
        c = self.counter
        self.counter += 1
        f = np.full(SHAPE, 1 + c % 200, np.uint8)
        f.flat[:4] = [255, (c >> 16) & 255, (c >> 8) & 255, c & 255]  # distinct, never the zero frame
        return f

    def _new_game(self, i: int) -> None:
        self.obs[i] = 0
        self.obs[i, -1] = self._frame()

    def _show(self, i: int) -> None:
        self.shown[self.obs[i, -1].tobytes()] = self.obs[i].copy()

    def reset(self) -> np.ndarray:
        for i in range(self.n):
            self._new_game(i)
            self._show(i)
        self.resets_next[:] = False
        return self.obs.copy()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        rew = np.zeros(self.n, np.float32)
        term, trunc, game_over = (np.zeros(self.n, bool) for _ in range(3))
        for i in range(self.n):
            if self.resets_next[i]:
                self._new_game(i)
                self.resets_next[i] = False
            else:
                key = self.obs[i, -1].tobytes()
                rew[i] = float(self.rng.integers(-3, 4))
                self.obs[i, :-1] = self.obs[i, 1:].copy()
                self.obs[i, -1] = self._frame()
                if self.rng.random() < self.end_prob:
                    trunc[i] = self.rng.random() < self.trunc_prob
                    term[i] = not trunc[i]
                    game_over[i] = trunc[i] or self.rng.random() >= self.life_prob
                    self.resets_next[i] = game_over[i]
                self.steps[key] = (int(actions[i]), float(rew[i]), bool(term[i]), bool(trunc[i]),
                                   self.obs[i, -1].tobytes())
            self._show(i)
        return self.obs.copy(), rew, term, trunc, game_over

    def reference(self, key: bytes, n: int, gamma: float) -> tuple[int, float, float, bytes]:
        """(a_t, G, discount, key of s_{t+k}) of the n-step transition starting in observation ``key``."""
        action = self.steps[key][0]
        ret, k, cur = 0.0, 0, key
        while True:
            _, r, te, tr, nxt = self.steps[cur]
            ret += gamma**k * r
            k += 1
            if te:
                return action, ret, 0.0, nxt
            if tr or k == n:
                return action, ret, gamma**k, nxt
            cur = nxt


def q_of(obs: np.ndarray) -> np.ndarray:
    """Deterministic fake Q-values float32 [N, A] of observations [N, S, H, W] (from the newest frame)."""
    c = obs[:, -1, 0, 3].astype(np.float64)[:, None] + 7 * obs[:, -1, 0, 2].astype(np.float64)[:, None]
    return ((c * np.array([3.0, 5.0, 7.0])) % 11 - 5).astype(np.float32) / 2


def run_actor(env: AleLikeEnv, builder: NStepBuilder, steps: int, rng: np.random.Generator,
              with_q: bool = True) -> list[Chunk]:
    """Drive ``env`` with random actions for ``steps`` vector steps, flushing at random points."""
    obs = env.reset()
    builder.reset(obs[:, -1])
    chunks = []
    for _ in range(steps):
        actions = rng.integers(0, NUM_ACTIONS, env.n)
        q = q_of(obs) if with_q else None
        obs, r, te, tr, go = env.step(actions)
        builder.step(actions, q, r, te, tr, obs[:, -1], game_over=go)
        if rng.random() < 0.3:
            chunks.append(builder.flush())
    chunks.append(builder.flush())
    return chunks


def check_against_env(env: AleLikeEnv, obs: np.ndarray, actions: np.ndarray, returns: np.ndarray,
                      discounts: np.ndarray, next_obs: np.ndarray, n: int, gamma: float) -> None:
    """Every transition equals, pixel by pixel, what the env showed, with the recomputed n-step target."""
    for i in range(len(actions)):
        key = obs[i, -1].tobytes()
        np.testing.assert_array_equal(obs[i], env.shown[key])
        a, g, d, nxt = env.reference(key, n, gamma)
        np.testing.assert_array_equal(next_obs[i], env.shown[nxt])
        assert actions[i] == a
        np.testing.assert_allclose([returns[i], discounts[i]], [g, d], rtol=1e-5, atol=1e-6)


def test_builder_and_replay_reproduce_the_env_pixel_by_pixel() -> None:
    n, gamma = 3, 0.9
    env = AleLikeEnv(num_envs=3, seed=1)
    builder = NStepBuilder(3, n=n, gamma=gamma, frame_shape=SHAPE, actor_id=0, seed=3)
    chunks = run_actor(env, builder, 300, np.random.default_rng(2))
    # Every frame the env produced is sent exactly once, in id order.
    frames = np.concatenate([c.frames for c in chunks])
    assert len(frames) == env.counter
    assert [c.first_frame_id for c in chunks] == list(np.cumsum([0] + [len(c.frames) for c in chunks[:-1]]))
    # Every chunk transition, decoded through its frame ids, is what the env showed (all, not a sample).
    table = np.concatenate([frames, np.zeros((1, *SHAPE), np.uint8)])  # id -1 -> the zero frame
    for c in chunks:
        check_against_env(env, table[c.obs_ids], c.actions, c.returns, c.discounts, table[c.next_ids], n,
                          gamma)
        # Ape-X priority from the actor's own Q-values.
        for i in range(len(c)):
            q_s = q_of(table[c.obs_ids[i]][None])[0]
            q_next = q_of(table[c.next_ids[i]][None])[0]
            td = c.returns[i] + c.discounts[i] * q_next.max() - q_s[c.actions[i]]
            np.testing.assert_allclose(c.priorities[i], abs(td), rtol=1e-5, atol=1e-5)
    total = sum(len(c) for c in chunks)
    assert total + builder.pending == len(env.steps)  # one transition per real step
    assert sum(c.num_steps for c in chunks) == len(env.steps)

    replay = PrioritizedReplay(10_000, stack=4, frame_shape=SHAPE, seed=0)
    for c in chunks:
        replay.add(c)
    assert len(replay) == replay.num_added == total
    for _ in range(20):
        b = replay.sample(64)
        check_against_env(env, b.obs, b.actions, b.returns, b.discounts, b.next_obs, n, gamma)
        assert b.obs.dtype == np.uint8 and b.obs.shape == (64, 4, *SHAPE) and b.weights.dtype == np.float32


def drive(env: AleLikeEnv, builder: NStepBuilder, steps: int, flush_every: int = 3) -> Iterator[Chunk]:
    """Play ``env`` with seeded random actions through ``builder`` for ``steps`` vector steps; yield the chunk
    the builder flushes every ``flush_every`` steps."""
    rng = np.random.default_rng(0)
    obs = env.reset()
    builder.reset(obs[:, -1])
    for t in range(steps):
        actions = rng.integers(0, NUM_ACTIONS, len(obs))
        q = q_of(obs)
        obs, r, te, tr, go = env.step(actions)
        builder.step(actions, q, r, te, tr, obs[:, -1], game_over=go)
        if t % flush_every == flush_every - 1:
            yield builder.flush()


@pytest.mark.parametrize(("end_prob", "margin"), [(0.1, 8), (0.6, 0)])
def test_wrapping_and_eviction_keep_every_sample_consistent(end_prob: float, margin: int) -> None:
    """Many wraps of a small ring; with short episodes (many reset frames) and no margin the frame ring is the
    binding limit and transitions must be evicted before their frames are overwritten."""
    n, gamma = 2, 0.8
    env = AleLikeEnv(num_envs=4, seed=5, end_prob=end_prob)
    builder = NStepBuilder(4, n=n, gamma=gamma, frame_shape=SHAPE, seed=1)
    replay = PrioritizedReplay(60, frame_shape=SHAPE, frame_margin=margin, seed=1)
    for chunk in drive(env, builder, 400):
        replay.add(chunk)
        assert 0 < len(replay) <= 60
        b = replay.sample(16)
        check_against_env(env, b.obs, b.actions, b.returns, b.discounts, b.next_obs, n, gamma)
        # Evicted (invalid) slots have priority 0 and are never sampled.
        assert replay._t["valid"][b.indices].all()
    assert replay.num_added > 10 * 60
    if margin == 0:
        assert replay.num_evicted > 0  # the frame ring, not the transition ring, was the limit
    # All live slots (not just sampled ones) still show the env's observations.
    live = np.flatnonzero(replay._t["valid"])
    check_against_env(env, replay._frames[replay._t["obs_ref"][live]], replay._t["actions"][live],
                      replay._t["returns"][live], replay._t["discounts"][live],
                      replay._frames[replay._t["next_ref"][live]], n, gamma)
    assert replay._tree.total() == pytest.approx(replay._tree.get(live).sum())


def check_live(replay: PrioritizedReplay, envs: list[AleLikeEnv], n: int, gamma: float) -> int:
    """Check every live slot (not only sampled ones) against the env that showed its observation."""
    live = np.flatnonzero(replay._t["valid"])
    t = replay._t
    obs, next_obs = replay._frames[t["obs_ref"][live]], replay._frames[t["next_ref"][live]]
    seen = np.zeros(len(live), bool)
    for env in envs:
        mine = np.array([o[-1].tobytes() in env.shown for o in obs], bool)
        seen |= mine
        check_against_env(env, obs[mine], t["actions"][live][mine], t["returns"][live][mine],
                          t["discounts"][live][mine], next_obs[mine], n, gamma)
    assert seen.all()
    return len(live)


def test_actors_sharing_a_shard() -> None:
    """Three actors on two shards (actors 0 and 2 share shard 0), chunks interleaved, rings wrapping."""
    n, gamma = 2, 0.9
    replay = PrioritizedReplay(200, num_shards=2, frame_shape=SHAPE, frame_margin=16, seed=3)
    envs = [AleLikeEnv(2, seed=10 + a) for a in range(3)]
    for a, e in enumerate(envs):
        e.counter = a * 1_000_000  # distinct frames across actors
    rng = np.random.default_rng(4)
    builders = [NStepBuilder(2, n=n, gamma=gamma, frame_shape=SHAPE, actor_id=a, seed=a) for a in range(3)]
    streams = [run_actor(e, b, 150, rng) for e, b in zip(envs, builders, strict=True)]
    order = [a for a in range(3) for _ in streams[a]]
    rng.shuffle(order)
    pos = [0, 0, 0]
    for i, a in enumerate(order):
        replay.add(streams[a][pos[a]])
        pos[a] += 1
        if i % 5 == 4:
            b = replay.sample(16)
            mine = [np.array([o[-1].tobytes() in e.shown for o in b.obs], bool) for e in envs]
            assert np.sum(mine, axis=0).tolist() == [1] * 16
            for e, m in zip(envs, mine, strict=True):
                check_against_env(e, b.obs[m], b.actions[m], b.returns[m], b.discounts[m], b.next_obs[m], n,
                                  gamma)
    assert check_live(replay, envs, n, gamma) > 150
    assert replay.num_dropped == 0


def test_actor_restart_starts_a_new_mapping_and_keeps_old_transitions() -> None:
    n, gamma = 3, 0.9
    env = AleLikeEnv(2, seed=8)
    rng = np.random.default_rng(0)
    old = run_actor(env, NStepBuilder(2, n=n, gamma=gamma, frame_shape=SHAPE, seed=1), 40, rng)
    restarted = NStepBuilder(2, n=n, gamma=gamma, frame_shape=SHAPE, seed=2)  # the actor came back
    new = run_actor(env, restarted, 40, rng)  # frame ids start at 0 again
    replay = PrioritizedReplay(1000, frame_shape=SHAPE, seed=0)
    for c in old + new:
        replay.add(c)
    total = sum(len(c) for c in old + new)
    assert len(replay) == total and replay.num_dropped == 0
    assert check_live(replay, [env], n, gamma) == total
    # A restart that reuses the incarnation (a seeded builder) cannot be told from a duplicate: an error
    # that says how to fix it.
    again = run_actor(env, NStepBuilder(2, n=n, gamma=gamma, frame_shape=SHAPE, seed=2), 5, rng)
    with pytest.raises(ValueError, match="seed=None"):
        replay.add(again[0])


def test_gap_in_frame_ids_is_an_error() -> None:
    env = AleLikeEnv(2, seed=0)
    builder = NStepBuilder(2, n=2, gamma=0.9, frame_shape=SHAPE, seed=0)
    chunks = run_actor(env, builder, 30, np.random.default_rng(0))
    chunks = [c for c in chunks if len(c.frames)]
    replay = PrioritizedReplay(100, frame_shape=SHAPE)
    replay.add(chunks[0])
    expected = chunks[1].first_frame_id
    with pytest.raises(ValueError, match=rf"gap of frame ids \[{expected}, {chunks[2].first_frame_id}\)"):
        replay.add(chunks[2])
    replay.add(chunks[1])  # the replay was left unchanged by the failed add
    with pytest.raises(ValueError, match="overlap"):
        replay.add(chunks[1])
    replay.add(chunks[2])
    bad = hand_chunk([1.0, 1.0])
    bad.next_ids[-1, 0] = 3  # the chunk sent ids 0..2 only
    with pytest.raises(ValueError, match=r"frame id 3, which this incarnation never sent \(sent ids \[0, 3"):
        PrioritizedReplay(10, stack=1, frame_shape=SHAPE).add(bad)


def hand_chunk(priorities: list[float], actor_id: int = 0, first_frame_id: int = 0) -> Chunk:
    """T transitions over T + 1 one-frame observations (stack 1): s_t = frame t, s_{t+1} = frame t + 1."""
    T = len(priorities)
    frames = np.stack([np.full(SHAPE, 10 + t, np.uint8) for t in range(T + 1)])
    ids = first_frame_id + np.arange(T + 1)
    return Chunk(actor_id=actor_id, incarnation=7, first_frame_id=first_frame_id, frames=frames,
                 obs_ids=ids[:-1, None], next_ids=ids[1:, None], actions=np.arange(T) % 2,
                 returns=np.arange(T, dtype=np.float32), discounts=np.full(T, 0.9, np.float32),
                 priorities=np.array(priorities, np.float32), num_steps=T)


def test_sampling_frequencies_follow_priority_to_the_alpha() -> None:
    replay = PrioritizedReplay(16, stack=1, frame_shape=SHAPE, alpha=0.5, eps=0.0, seed=0)
    replay.add(hand_chunk([1.0, 2.0, 3.0, 4.0]))
    counts = np.zeros(16)
    for _ in range(1000):
        b = replay.sample(32)
        np.add.at(counts, b.indices, 1)
        # The sampled pixels belong to the sampled slot: frame 10 + t and 11 + t.
        np.testing.assert_array_equal(b.obs[:, 0, 0, 0], 10 + b.indices)
        np.testing.assert_array_equal(b.next_obs[:, 0, 0, 0], 11 + b.indices)
    expected = np.sqrt([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(counts[:4] / counts.sum(), expected / expected.sum(), atol=0.01)
    assert counts[4:].sum() == 0


def test_importance_weights_hand_computed() -> None:
    replay = PrioritizedReplay(4, stack=1, frame_shape=SHAPE, alpha=0.5, beta=1.0, eps=0.0, seed=0)
    replay.add(hand_chunk([1.0, 4.0, 16.0]))  # p^alpha = 1, 2, 4: P = 1/7, 2/7, 4/7
    b = replay.sample(30)  # the first of 30 strata ([0, 7/30)) always picks slot 0, whose weight is the max
    # w_i = (N P_i)^-beta / max_j w_j with N = 3: (3/7)^-1 : (6/7)^-1 : (12/7)^-1 = 1 : 1/2 : 1/4
    np.testing.assert_allclose(b.weights, np.array([1.0, 0.5, 0.25])[b.indices], rtol=1e-6)
    b = replay.sample(30, beta=0.5)
    np.testing.assert_allclose(b.weights, np.array([1.0, 0.5**0.5, 0.5])[b.indices], rtol=1e-6)
    uniform = PrioritizedReplay(4, stack=1, frame_shape=SHAPE, prioritized=False, seed=0)
    uniform.add(hand_chunk([1.0, 4.0, 16.0]))
    b = uniform.sample(3000)
    np.testing.assert_array_equal(b.weights, np.ones(3000, np.float32))
    freq = np.bincount(b.indices, minlength=4) / 3000
    np.testing.assert_allclose(freq, [1 / 3, 1 / 3, 1 / 3, 0], atol=0.01)


def test_new_priorities_and_update_priorities() -> None:
    replay = PrioritizedReplay(8, stack=1, frame_shape=SHAPE, alpha=0.5, eps=0.01, seed=0)
    replay.add(hand_chunk([0.99, float("nan")]))  # NaN: the max priority so far, which starts at 1
    np.testing.assert_allclose(replay._tree.get(np.array([0, 1])), [1.0, 1.0])
    replay.update_priorities(np.array([0, 1]), np.array([-3.99, 0.0]))  # (|td| + eps)^alpha
    np.testing.assert_allclose(replay._tree.get(np.array([0, 1])), [2.0, 0.1])
    replay.add(hand_chunk([float("nan")], first_frame_id=3))  # new max priority 2
    np.testing.assert_allclose(replay._tree.get(np.array([2])), [2.0])
    counts = np.bincount(replay.sample(4100).indices, minlength=3)
    np.testing.assert_allclose(counts / 4100, np.array([2.0, 0.1, 2.0]) / 4.1, atol=0.01)
    # A stale update (slot overwritten since sampling) is ignored thanks to the generation counter.
    b = replay.sample(8)
    replay.add(hand_chunk([1.0] * 8, first_frame_id=5))  # wraps the ring: every slot overwritten
    before = replay._tree.get(np.arange(8)).copy()
    replay.update_priorities(b.indices, np.full(8, 50.0), b.generations)
    np.testing.assert_array_equal(replay._tree.get(np.arange(8)), before)
    with pytest.raises(ValueError, match="NaN"):
        replay.update_priorities(np.array([0]), np.array([np.nan]))


def test_state_dict_round_trip_gives_identical_samples() -> None:
    env = AleLikeEnv(2, seed=3, end_prob=0.3)
    builder = NStepBuilder(2, n=2, gamma=0.9, frame_shape=SHAPE, actor_id=1, seed=0)
    chunks = run_actor(env, builder, 200, np.random.default_rng(1))
    replay = PrioritizedReplay(120, num_shards=2, frame_shape=SHAPE, frame_margin=4, seed=5)
    for c in chunks[:-3]:
        replay.add(c)
    replay.sample(8)  # advance the generator: its state is part of the checkpoint
    state = replay.state_dict()
    assert "frames.0.0" not in state  # shard 0 is empty: nothing saved
    assert state["frames.1.0"].shape[0] <= replay.frames_per_shard  # the used part of shard 1's ring
    buf = io.BytesIO()  # through a checkpoint file, as worldmodels.common.checkpoint writes it
    torch.save({"replay": state}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=False)["replay"]
    copy = PrioritizedReplay(120, num_shards=2, frame_shape=SHAPE, frame_margin=4, seed=123)
    copy.load_state_dict(state)
    assert len(copy) == len(replay) and copy.num_added == replay.num_added
    for c in chunks[-3:]:  # the actor's stream continues after the restore
        replay.add(c)
        copy.add(c)
    for _ in range(5):
        a, b = replay.sample(16), copy.sample(16)
        for key in ("obs", "actions", "returns", "discounts", "next_obs", "weights", "indices",
                    "generations"):
            np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    with pytest.raises(ValueError, match="capacity"):
        PrioritizedReplay(60, num_shards=2, frame_shape=SHAPE, frame_margin=4).load_state_dict(state)


def test_memory_plan() -> None:
    assert PrioritizedReplay.bytes_for(1_000_000) <= 8e9
    # The frames dominate: one 84x84 frame per slot plus the margin, not 2 x 4 frames per transition.
    assert PrioritizedReplay.bytes_for(1_000_000) < 1.1 * 1_000_000 * 84 * 84
    r = PrioritizedReplay(1000, num_shards=3, frame_shape=SHAPE)
    assert r.memory_bytes() == PrioritizedReplay.bytes_for(1000, num_shards=3, frame_shape=SHAPE)
    assert r.capacity == 999 and r.slots_per_shard == 333
    with pytest.raises(ValueError, match="empty replay"):
        r.sample(4)
