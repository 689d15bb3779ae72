"""MFEC's episodic memory (agents/episodic): eq. 1 and 2 on hand-made buffers, LRU eviction, the exact-match hash,
the faiss indexes against the numpy reference, discounted returns, checkpoints and the errors for bad settings."""

from __future__ import annotations

import math
from collections import OrderedDict

import faiss
import numpy as np
import pytest

from agents.episodic import EpisodicMemory, discounted_returns
from agents.episodic.knn import IVFIndex

faiss.omp_set_num_threads(1)

KINDS = ("flat", "ivf", "numpy")


def keys_of(*rows: tuple[float, ...]) -> np.ndarray:
    return np.asarray(rows, dtype=np.float32)


def ivf_memory(min_train: int, nprobe: int = 32, **kwargs) -> EpisodicMemory:
    """An IVF memory that trains as soon as a buffer holds ``min_train`` keys (4096 by default)."""
    memory = EpisodicMemory(index="ivf", nprobe=nprobe, **kwargs)
    for buf in memory.buffers:
        assert isinstance(buf.index, IVFIndex)
        buf.index.min_train = min_train
    return memory


def stored(memory: EpisodicMemory, keys: np.ndarray, action: int = 0) -> list[bool]:
    return memory.estimate(keys).exact[:, action].tolist()


# ---- eq. 2: exact match vs the mean of the k nearest -------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_exact_match_reads_the_value_and_a_new_key_averages_its_k_nearest(kind: str) -> None:
    memory = EpisodicMemory(num_actions=2, key_dim=2, capacity=10, k=2, index=kind)
    memory.update(keys_of((0, 0), (1, 0), (3, 0), (10, 0)), np.zeros(4, np.int64), np.array([1, 2, 4, 100]))
    est = memory.estimate(keys_of((0, 0), (0.4, 0), (2.1, 0), (10, 0)))
    # (0, 0) and (10, 0) are stored: their values. (0.4, 0): nearest (0, 0) at 0.4 and (1, 0) at 0.6 -> (1+2)/2.
    # (2.1, 0): nearest (3, 0) at 0.9 and (1, 0) at 1.1 -> (4+2)/2.
    assert est.values[:, 0].tolist() == [1.0, 1.5, 3.0, 100.0]
    assert est.exact[:, 0].tolist() == [True, False, False, True]
    # Action 1 has no data: empty_value (+inf by default), never an exact match.
    assert est.values[:, 1].tolist() == [math.inf] * 4 and not est.exact[:, 1].any()
    assert est.values.dtype == np.float32 and est.exact.dtype == np.bool_


def test_fewer_than_k_stored_averages_all_and_empty_value_is_a_setting() -> None:
    memory = EpisodicMemory(num_actions=2, key_dim=2, capacity=10, k=11, empty_value=0.0)
    memory.update(keys_of((0, 0), (1, 0), (2, 0)), np.zeros(3, np.int64), np.array([3, 6, 12]))
    est = memory.estimate(keys_of((5, 5)))
    assert est.values.tolist() == [[7.0, 0.0]]  # (3 + 6 + 12) / 3; the empty action gets empty_value = 0
    assert memory.sizes == [3, 0] and memory.size == 3


# ---- eq. 1: the max-update -----------------------------------------------------------------------------------------


def test_a_lower_return_does_not_overwrite_a_higher_one_and_a_higher_one_does() -> None:
    memory = EpisodicMemory(num_actions=1, key_dim=3, capacity=10, k=1)
    key = keys_of((0.5, -1.0, 2.0))
    memory.update(key, [0], [5.0])
    memory.update(key, [0], [3.0])
    assert memory.estimate(key).values.tolist() == [[5.0]]
    memory.update(key, [0], [7.5])
    assert memory.estimate(key).values.tolist() == [[7.5]]
    # Twice in one batch: inserted once, then max-updated.
    other = keys_of((9.0, 9.0, 9.0))
    memory.update(np.concatenate([other, other, other]), [0, 0, 0], [2.0, 9.0, 4.0])
    assert memory.estimate(other).values.tolist() == [[9.0]]
    assert memory.sizes == [2]


def test_each_action_has_its_own_buffer() -> None:
    memory = EpisodicMemory(num_actions=3, key_dim=2, capacity=10, k=1)
    key = keys_of((1, 1))
    memory.update(np.concatenate([key, key]), [0, 2], [4.0, -1.0])
    est = memory.estimate(key)
    assert est.values.tolist() == [[4.0, math.inf, -1.0]]
    assert est.exact.tolist() == [[True, False, True]]


# ---- eviction ------------------------------------------------------------------------------------------------------

A, B, C, D, E = ((0.0, 0.0), (10.0, 0.0), (20.0, 0.0), (30.0, 0.0), (40.0, 0.0))


def contents(memory: EpisodicMemory) -> list[bool]:
    """Which of A..E are stored in action 0's buffer, looked up without touching anything (``estimate`` would
    count as a use under lru_used)."""
    rows = [row.tobytes() for row in keys_of(A, B, C, D, E)]
    return (memory.buffers[0].lookup(rows, [hash(r) for r in rows]) >= 0).tolist()


@pytest.mark.parametrize("kind", KINDS)
def test_lru_updated_evicts_the_least_recently_written_and_ignores_queries(kind: str) -> None:
    memory = EpisodicMemory(num_actions=1, key_dim=2, capacity=3, k=1, index=kind, eviction="lru_updated")
    memory.update(keys_of(A, B, C), [0, 0, 0], [1, 2, 3])
    memory.estimate(keys_of(A))  # a query: not a use under lru_updated
    memory.update(keys_of(D), [0], [4])  # evicts A, the oldest write
    assert contents(memory) == [False, True, True, True, False]
    memory.update(keys_of(B), [0], [0])  # revisiting B counts (even though the max keeps 2)
    memory.update(keys_of(E), [0], [5])  # so C, not B, goes
    assert contents(memory) == [False, True, False, True, True]
    assert memory.estimate(keys_of(B, (39.0, 0.0))).values[:, 0].tolist() == [2.0, 5.0]  # the index follows


@pytest.mark.parametrize("kind", KINDS)
def test_lru_used_counts_exact_hits_and_nearest_neighbours(kind: str) -> None:
    memory = EpisodicMemory(num_actions=1, key_dim=2, capacity=3, k=1, index=kind, eviction="lru_used")
    memory.update(keys_of(A, B, C), [0, 0, 0], [1, 2, 3])
    memory.estimate(keys_of(A))  # exact hit: A is used, so B is now the oldest
    memory.update(keys_of(D), [0], [4])
    assert contents(memory) == [True, False, True, True, False]
    # Order now C < A < D. A query near C (not exact, k = 1) uses C as its nearest neighbour: A < D < C.
    memory.estimate(keys_of((21.0, 0.0)))
    memory.update(keys_of(E), [0], [5])  # evicts A
    assert contents(memory) == [False, False, True, True, True]


@pytest.mark.parametrize("eviction", ["lru_updated", "lru_used"])
def test_one_batch_that_overflows_evicts_in_order_and_skips_what_it_revisited(eviction: str) -> None:
    memory = EpisodicMemory(num_actions=1, key_dim=2, capacity=3, k=1, eviction=eviction)
    memory.update(keys_of(A, B, C), [0, 0, 0], [1, 2, 3])
    memory.update(keys_of(A, D, E), [0, 0, 0], [0, 4, 5])  # A revisited first, so D evicts B and E evicts C
    assert contents(memory) == [True, False, False, True, True]
    again = EpisodicMemory(num_actions=1, key_dim=2, capacity=3, k=1, eviction=eviction)
    again.update(keys_of(A, B, C), [0, 0, 0], [1, 2, 3])
    again.update(keys_of(D, B, E), [0, 0, 0], [4, 0, 5])  # D evicts A; B is revisited after that, so E evicts C
    assert contents(again) == [False, True, False, True, True]
    small = EpisodicMemory(num_actions=1, key_dim=2, capacity=2, k=1, eviction=eviction)
    small.update(keys_of(A, B, C, D, E), [0] * 5, [1, 2, 3, 4, 5])  # more new keys than slots: the last two stay
    assert contents(small) == [False, False, False, True, True]
    assert small.estimate(keys_of((0.0, 1.0))).values.tolist() == [[4.0]]  # nearest of D, E to (0, 1) is D


@pytest.mark.parametrize("eviction", ["lru_updated", "lru_used"])
def test_eviction_matches_a_plain_lru_over_many_calls(eviction: str) -> None:
    """Against an OrderedDict LRU, over calls that revisit, evict and (under lru_used) query: this covers the
    victim candidates kept from one call to the next (capacity 256 picks 4 at a time)."""
    rng = np.random.default_rng(6)
    pool = rng.standard_normal((400, 4)).astype(np.float32)
    memory = EpisodicMemory(num_actions=1, key_dim=4, capacity=256, k=3, eviction=eviction)
    lru: OrderedDict[bytes, float] = OrderedDict()  # key bytes -> value, least recently used first
    for _ in range(60):
        picks = rng.integers(0, len(pool), 30)
        returns = rng.uniform(0, 1, 30).astype(np.float32)
        memory.update(pool[picks], np.zeros(30, np.int64), returns)
        for key, ret in zip(pool[picks], returns.tolist()):
            kb = key.tobytes()
            if kb in lru:
                lru[kb] = max(lru[kb], ret)
                lru.move_to_end(kb)
            else:
                if len(lru) == 256:
                    lru.popitem(last=False)
                lru[kb] = ret
        queries = pool[rng.integers(0, len(pool), 5)]
        memory.estimate(queries)
        if eviction == "lru_used":  # exact hits first, then each other query's 3 nearest, nearest first
            held = np.frombuffer(b"".join(lru), dtype=np.float32).reshape(-1, 4)
            names = list(lru)
            exact = [q.tobytes() for q in queries if q.tobytes() in lru]
            near = [names[i] for q in queries if q.tobytes() not in lru
                    for i in np.argsort(np.square(held - q).sum(1))[:3]]
            for kb in exact + near:
                lru.move_to_end(kb)
        buf = memory.buffers[0]
        ours = {buf.keys[s].tobytes(): float(buf.values[s]) for s in np.argsort(buf.last_use[: buf.size])}
        assert list(ours) == list(lru) and list(ours.values()) == list(lru.values())


# ---- the exact-match hash ------------------------------------------------------------------------------------------


def test_only_bitwise_identical_keys_match() -> None:
    rng = np.random.default_rng(0)
    key = rng.standard_normal((1, 8)).astype(np.float32)
    memory = EpisodicMemory(num_actions=1, key_dim=8, capacity=10, k=1)
    memory.update(key, [0], [3.0])
    near = key.copy()
    near[0, 5] = np.nextafter(near[0, 5], np.float32(np.inf))  # one float, one ulp away
    est = memory.estimate(np.concatenate([key, near, key.astype(np.float64)]))
    assert est.exact[:, 0].tolist() == [True, False, True]  # float64 input is converted, then matches
    assert est.values[:, 0].tolist() == [3.0, 3.0, 3.0]  # the near key's nearest neighbour is the key
    zero = EpisodicMemory(num_actions=1, key_dim=2, capacity=10, k=1)
    zero.update(keys_of((0.0, 1.0)), [0], [1.0])
    assert stored(zero, keys_of((-0.0, 1.0), (0.0, 1.0))) == [False, True]  # bytes, not ==


def test_a_hash_collision_never_gives_a_false_match() -> None:
    memory = EpisodicMemory(num_actions=1, key_dim=2, capacity=10, k=1)
    memory.update(keys_of((1, 1)), [0], [5.0])
    buf = memory.buffers[0]
    other = keys_of((2, 2))
    # Forge a collision: the other key's hash points to the slot of (1, 1).
    buf._slot_of[hash(other[0].tobytes())] = 0
    assert buf.lookup([other[0].tobytes()], [hash(other[0].tobytes())]).tolist() == [-1]
    memory.update(other, [0], [7.0])  # inserted as new, not a max-update of (1, 1)
    assert memory.estimate(keys_of((1, 1), (2, 2))).values[:, 0].tolist() == [5.0, 7.0]


# ---- the faiss indexes against the numpy reference -----------------------------------------------------------------


def random_memories(kinds: dict[str, EpisodicMemory], rng: np.random.Generator, n: int, dim: int) -> None:
    """The same random updates (several calls) into every memory."""
    for _ in range(4):
        keys = rng.standard_normal((n // 4, dim)).astype(np.float32)
        returns = rng.uniform(0, 1, n // 4).astype(np.float32)
        for memory in kinds.values():
            memory.update(keys, np.zeros(len(keys), np.int64), returns)


def test_flat_is_faiss_index_flat_l2_on_the_buffer() -> None:
    rng = np.random.default_rng(1)
    memory = EpisodicMemory(num_actions=1, key_dim=16, capacity=3000, k=11)
    random_memories({"flat": memory}, rng, 2000, 16)
    buf = memory.buffers[0]
    queries = rng.standard_normal((40, 16)).astype(np.float32)
    reference = faiss.IndexFlatL2(16)
    reference.add(buf.keys[: buf.size])
    for q in (queries[:1], queries[:16], queries):  # below and above faiss's BLAS threshold (20 queries)
        assert np.array_equal(buf.index.search(q, 11), reference.search(q, 11)[1])


def test_flat_numpy_and_ivf_agree_while_filling_and_evicting() -> None:
    rng = np.random.default_rng(2)
    dim, capacity = 16, 3000
    memories = {
        "numpy": EpisodicMemory(num_actions=1, key_dim=dim, capacity=capacity, index="numpy"),
        "flat": EpisodicMemory(num_actions=1, key_dim=dim, capacity=capacity, index="flat"),
        # Scanning every cell, IVF is exact: any slot bookkeeping error (a replaced key left in its old cell,
        # a wrong id) shows up as a difference.
        "ivf_all": ivf_memory(min_train=256, nprobe=10_000, num_actions=1, key_dim=dim, capacity=capacity),
        "ivf": ivf_memory(min_train=256, nprobe=8, num_actions=1, key_dim=dim, capacity=capacity),
    }
    queries = rng.standard_normal((30, dim)).astype(np.float32)
    for n in (2000, 2000):  # the second round evicts 1000 keys (replaced in place)
        random_memories(memories, rng, n, dim)
        est = {name: memory.estimate(queries).values for name, memory in memories.items()}
        assert np.array_equal(est["flat"], est["numpy"])
        assert np.array_equal(est["ivf_all"], est["numpy"])
        slots = {name: memories[name].buffers[0].index.search(queries, 11) for name in ("numpy", "ivf")}
        recall = np.mean([len(set(a) & set(b)) / 11 for a, b in zip(slots["numpy"], slots["ivf"])])
        assert recall >= 0.6, recall  # 8 of ~55 cells of unclustered Gaussian keys
        assert np.abs(est["ivf"] - est["numpy"]).mean() < 0.1  # returns are uniform in [0, 1]
    ivf = memories["ivf"].buffers[0].index
    assert isinstance(ivf, IVFIndex) and ivf.nlist > 1 and memories["ivf"].sizes == [capacity]


def test_ivf_retrains_at_geometric_sizes_not_per_insert() -> None:
    memory = ivf_memory(min_train=64, num_actions=1, key_dim=4, capacity=2000)
    index = memory.buffers[0].index
    assert isinstance(index, IVFIndex)
    rng = np.random.default_rng(3)
    for _ in range(40):  # 2000 keys, 50 per call
        memory.update(rng.standard_normal((50, 4)).astype(np.float32), np.zeros(50, np.int64), np.ones(50))
    # Trained at 100 keys, retrained at 400 (300 written since) and 1600 (1200 since); 400 since then.
    assert index.trainings == 3 and index.trained_size == 1600 and index.nlist == 40


# ---- discounted returns --------------------------------------------------------------------------------------------


def test_discounted_returns_by_hand() -> None:
    assert discounted_returns(np.array([1.0, 0.0, 2.0]), gamma=0.5).tolist() == [1.5, 1.0, 2.0]
    assert discounted_returns(np.array([1.0, 0.0, 2.0])).tolist() == [3.0, 2.0, 2.0]  # gamma = 1 by default
    assert discounted_returns(np.array([4.0, 1.0]), gamma=0.0).tolist() == [4.0, 1.0]
    assert discounted_returns(np.zeros(0)).shape == (0,)
    assert discounted_returns(np.ones(3)).dtype == np.float32
    with pytest.raises(ValueError, match="gamma"):
        discounted_returns(np.ones(3), gamma=1.5)


# ---- checkpoints ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "eviction"), [("flat", "lru_updated"), ("ivf", "lru_used"), ("numpy", "lru_used")])
def test_state_dict_round_trip_gives_identical_estimates_and_evictions(kind: str, eviction: str) -> None:
    rng = np.random.default_rng(4)
    dim = 8

    def build() -> EpisodicMemory:
        settings = {"num_actions": 3, "key_dim": dim, "capacity": 500, "k": 5, "eviction": eviction}
        return ivf_memory(min_train=100, nprobe=2, **settings) if kind == "ivf" else EpisodicMemory(
            index=kind, **settings)

    def episode(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (rng.standard_normal((n, dim)).astype(np.float32), rng.integers(0, 3, n),
                discounted_returns(rng.uniform(0, 1, n), 0.9))

    memory = build()
    for _ in range(4):
        memory.update(*episode(400))  # about 530 per action: buffers full, some evicted
        memory.estimate(rng.standard_normal((8, dim)))
    state = memory.state_dict()
    assert all(isinstance(v, (int, np.ndarray)) for v in state.values())
    restored = build()
    restored.load_state_dict(state)
    assert restored.sizes == memory.sizes == [500, 500, 500]
    queries = np.concatenate([rng.standard_normal((20, dim)).astype(np.float32), state["keys"][:5]])
    before, after = memory.estimate(queries), restored.estimate(queries)
    assert np.array_equal(before.values, after.values) and np.array_equal(before.exact, after.exact)
    assert before.exact[-5:, 0].all()
    # And they go on alike: the same updates evict the same entries.
    more = episode(300)
    memory.update(*more)
    restored.update(*more)
    assert np.array_equal(memory.estimate(queries).values, restored.estimate(queries).values)
    assert all(np.array_equal(a, b) for a, b in zip(memory.state_dict()["last_use"], restored.state_dict()["last_use"]))


def test_a_saved_ivf_memory_loads_into_a_flat_one() -> None:
    rng = np.random.default_rng(5)
    ivf = ivf_memory(min_train=50, num_actions=1, key_dim=4, capacity=300)
    ivf.update(rng.standard_normal((200, 4)).astype(np.float32), np.zeros(200, np.int64), np.arange(200.0))
    flat = EpisodicMemory(num_actions=1, key_dim=4, capacity=300)
    flat.load_state_dict(ivf.state_dict())
    queries = ivf.state_dict()["keys"][:10]
    assert flat.estimate(queries).values[:, 0].tolist() == list(range(10))
    # A representation of another key size: named with both sizes and where the memory's own settings are.
    with pytest.raises(ValueError, match="keys have 4 entries, this memory's representation gives 5") as err:
        EpisodicMemory(num_actions=1, key_dim=5, capacity=300).load_state_dict(ivf.state_dict())
    assert "config.yaml" in str(err.value)


# ---- errors --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("settings", "message"), [
    ({"k": 0}, "k must be >= 1"),
    ({"capacity": 0}, "capacity must be >= 1"),
    ({"num_actions": 0}, "num_actions must be >= 1"),
    ({"key_dim": 0}, "key_dim must be >= 1"),
    ({"index": "hnsw"}, "unknown index 'hnsw': use one of flat, ivf, numpy"),
    ({"eviction": "fifo"}, "unknown eviction 'fifo'"),
    ({"nprobe": 0}, "nprobe must be >= 1"),
    ({"empty_value": math.nan}, "empty_value"),
])
def test_bad_settings_are_named(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EpisodicMemory(**{"num_actions": 2, "key_dim": 4, "capacity": 10, **settings})


def test_bad_inputs_are_named() -> None:
    memory = EpisodicMemory(num_actions=2, key_dim=4, capacity=10)
    with pytest.raises(ValueError, match=r"key_dim=4\], got shape \(3, 5\)"):
        memory.estimate(np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="key_dim=4"):
        memory.update(np.zeros((2, 3), np.float32), [0, 1], [1.0, 1.0])
    with pytest.raises(ValueError, match="key_dim=4"):
        memory.estimate(np.zeros(4, np.float32))  # one key still needs its batch axis
    with pytest.raises(ValueError, match=r"actions must be integers in \[0, 2\)"):
        memory.update(np.zeros((2, 4), np.float32), [0, 2], [1.0, 1.0])
    with pytest.raises(ValueError, match="actions and returns must be"):
        memory.update(np.zeros((2, 4), np.float32), [0], [1.0, 1.0])
    with pytest.raises(ValueError, match="returns contain NaN"):
        memory.update(np.zeros((1, 4), np.float32), [0], [math.nan])
    with pytest.raises(ValueError, match="non-finite"):
        memory.estimate(np.full((1, 4), np.inf, np.float32))


# ---- the benchmark, at a toy size ----------------------------------------------------------------------------------


def test_the_benchmark_runs_and_formats_its_table() -> None:
    from launch.bench.episodic import format_episodic_table, run_episodic_bench

    result = run_episodic_bench(sizes=(2000,), key_dim=8, seconds=0.01, insert_batch=100)
    methods = ["flat", "ivf"] + (["kdtree"] if "kdtree" in result["query_ms"] else [])
    assert list(result["query_ms"]) == methods
    assert set(result["query_ms"]["flat"][2000]) == {"batch16", "batch1"}
    assert all(result["insert_us"][m][2000] > 0 for m in methods) and result["recall"]["flat"][2000] == 1.0
    assert 0 < result["recall"]["ivf"][2000] <= 1
    table = format_episodic_table(result)
    assert "2,000" in table and "ivf" in table
    with pytest.raises(ValueError, match="unknown methods"):
        run_episodic_bench(sizes=(10,), methods=("annoy",))
