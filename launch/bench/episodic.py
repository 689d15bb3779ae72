"""``reverie bench episodic``: what MFEC's episodic memory costs per query and per insert, by k-NN method and size.

For each size (entries in ONE action buffer, full) and each method, on one thread, side by side in one process:

- ``flat``: our :class:`~agents.episodic.EpisodicMemory` with ``index="flat"`` (exact, faiss's brute-force kernel);
- ``ivf``: the same with ``index="ivf"`` (approximate, faiss IVF-Flat; see :mod:`agents.episodic.knn`), retrained
  at the measured size before measuring (the state a full buffer reaches);
- ``kdtree``: scikit-learn's ``KDTree`` rebuilt on every insert, as the public MFEC code does (skipped, with a
  note, if scikit-learn is missing: ``pip install -e .[bench]``).

Figures:

- ``query_ms``: milliseconds per ``estimate`` call (k nearest + mean of their values; for our memory also the
  exact-match look-up) for a batch of 16 keys and of 1 key, none of them stored. This is for one action: an agent
  queries all A buffers each step.
- ``insert_us``: microseconds per new entry inserted into the full buffer, each insert evicting the least recently
  used entry, in ``update`` calls of ``insert_batch`` entries (an episode's worth). For ``ivf`` it includes the
  periodic retraining amortised over the writes between two trainings (``rebuild_s / (retrain_factor * size)``):
  the measured loop itself runs with retraining switched off so that one retraining does not land in (or miss)
  the few seconds measured. For ``kdtree`` it is one rebuild of the tree at that size (measured once: at 1M
  entries a build takes long), the cost per insert of a rebuild-per-insert policy; rebuilding once per episode
  instead would divide it by the episode's inserts (and leave the episode's new keys out of the tree meanwhile).
- ``rebuild_s``: seconds to build the index from all entries (``ivf``: train k-means + add; ``kdtree``: build).
- ``recall``: recall@k of the approximate index against the exact k nearest (1.0 for the exact methods), over
  256 queries.
- ``fill_s``: seconds to fill the buffer through ``update`` in calls of 100k entries (hashing, LRU stamps, and
  for ``ivf`` the trainings on the way).

Keys are standard Gaussian float32 vectors (returns uniform in [0, 1]): the worst case for IVF's recall and for
a k-d tree's pruning, since real embeddings of game frames are far more clustered; the costs of flat search and
of inserts do not depend on the data. ``--keys RUN...`` (:func:`run_recall_bench`) measures IVF's recall on the
keys real MFEC runs stored instead.
"""

from __future__ import annotations

import functools
import importlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

METHODS = ("flat", "ivf", "kdtree")


def _per_call_s(call: Callable[[int], object], seconds: float, min_calls: int = 3) -> float:
    """Mean seconds of ``call(i)`` over ``seconds`` (at least ``min_calls`` calls, after one warm-up call)."""
    call(0)
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < seconds:
        call(calls + 1)
        calls += 1
    return (time.perf_counter() - start) / calls


def _sklearn_kdtree() -> Any:
    """scikit-learn's KDTree class, or None if scikit-learn is not installed (it is a benchmark-only extra)."""
    try:
        return importlib.import_module("sklearn.neighbors").KDTree
    except ImportError:
        return None


def _bench_memory(kind: str, keys: np.ndarray, returns: np.ndarray, queries: np.ndarray, k: int, seconds: float,
                  insert_batch: int, rng: np.random.Generator) -> dict[str, float]:
    import faiss

    from agents.episodic import EpisodicMemory
    from agents.episodic.knn import IVFIndex

    size, dim = keys.shape
    memory = EpisodicMemory(num_actions=1, key_dim=dim, capacity=size, k=k, index=kind, empty_value=0.0)
    start = time.perf_counter()
    for lo in range(0, size, 100_000):
        memory.update(keys[lo:lo + 100_000], np.zeros(len(keys[lo:lo + 100_000]), np.int64), returns[lo:lo + 100_000])
    out = {"fill_s": time.perf_counter() - start, "recall": 1.0}
    index = memory.buffers[0].index
    amortised_us = 0.0
    if isinstance(index, IVFIndex):
        start = time.perf_counter()
        index.rebuild()
        out["rebuild_s"] = time.perf_counter() - start
        amortised_us = 1e6 * out["rebuild_s"] / (index.retrain_factor * size)
        exact = np.asarray(faiss.knn(queries[:256], keys, k)[1])
        approx = index.search(queries[:256], k)
        out["recall"] = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(exact, approx)]))
        index.retrain_factor = float("inf")  # see the module docstring: amortised instead of measured
    n_q = len(queries)
    out["batch16"] = 1e3 * _per_call_s(lambda i: memory.estimate(queries[(16 * i) % (n_q - 16):][:16]), seconds)
    out["batch1"] = 1e3 * _per_call_s(lambda i: memory.estimate(queries[i % n_q:][:1]), seconds)
    batch = min(insert_batch, size)

    def insert(_: int) -> None:
        memory.update(rng.standard_normal((batch, dim), dtype=np.float32), np.zeros(batch, np.int64),
                      rng.uniform(0, 1, batch).astype(np.float32))

    out["insert_us"] = 1e6 * _per_call_s(insert, seconds) / batch + amortised_us
    assert memory.sizes == [size]
    return out


def _bench_kdtree(kdtree: Any, keys: np.ndarray, returns: np.ndarray, queries: np.ndarray, k: int,
                  seconds: float) -> dict[str, float]:
    start = time.perf_counter()
    tree = kdtree(keys)
    rebuild_s = time.perf_counter() - start
    n_q = len(queries)

    def estimate(batch: np.ndarray) -> np.ndarray:
        _, ind = tree.query(batch, k=k)
        return returns[ind].mean(axis=1)

    return {
        "fill_s": rebuild_s, "rebuild_s": rebuild_s, "recall": 1.0, "insert_us": 1e6 * rebuild_s,
        # min_calls=1: at 1M entries one batch of 16 takes seconds (a k-d tree prunes little in 64 dimensions).
        "batch16": 1e3 * _per_call_s(lambda i: estimate(queries[(16 * i) % (n_q - 16):][:16]), seconds, 1),
        "batch1": 1e3 * _per_call_s(lambda i: estimate(queries[i % n_q:][:1]), seconds, 1),
    }


def run_episodic_bench(sizes: Sequence[int] = (10_000, 100_000, 1_000_000), key_dim: int = 64, k: int = 11,
                       seconds: float = 2.0, methods: Sequence[str] = METHODS, insert_batch: int = 1000,
                       seed: int = 0) -> dict[str, Any]:
    """The figures of the module docstring, for each size and method.

    :param sizes: entries in the one action buffer measured (it is full at that size).
    :param seconds: time spent measuring each figure (after filling; at least a few calls each).
    :param methods: a subset of ``METHODS``.
    :param insert_batch: new entries per ``update`` call in the insert measurement.
    :return: ``{"query_ms": {method: {size: {"batch16": ms, "batch1": ms}}}, "insert_us": {method: {size: us}},
        "rebuild_s": {method: {size: s}}, "recall": {method: {size: r}}, "fill_s": {method: {size: s}},
        "settings": {...}, "notes": [str]}``.
    """
    import faiss

    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}: choose from {', '.join(METHODS)}")
    faiss.omp_set_num_threads(1)  # OMP_NUM_THREADS=1 does the same from the environment
    kdtree = _sklearn_kdtree() if "kdtree" in methods else None
    notes: list[str] = []
    if "kdtree" in methods and kdtree is None:
        notes.append("kdtree skipped: scikit-learn is not installed (pip install -e .[bench])")
    result: dict[str, Any] = {key: {} for key in ("query_ms", "insert_us", "rebuild_s", "recall", "fill_s")}
    rng = np.random.default_rng(seed)
    for size in sizes:
        keys = rng.standard_normal((size, key_dim), dtype=np.float32)
        returns = rng.uniform(0, 1, size).astype(np.float32)
        queries = rng.standard_normal((1024, key_dim), dtype=np.float32)
        for method in methods:
            if method == "kdtree":
                if kdtree is None:
                    continue
                figures = _bench_kdtree(kdtree, keys, returns, queries, k, seconds)
            else:
                figures = _bench_memory(method, keys, returns, queries, k, seconds, insert_batch, rng)
            result["query_ms"].setdefault(method, {})[size] = {"batch16": figures["batch16"],
                                                               "batch1": figures["batch1"]}
            result["insert_us"].setdefault(method, {})[size] = figures["insert_us"]
            result["recall"].setdefault(method, {})[size] = figures["recall"]
            result["fill_s"].setdefault(method, {})[size] = figures["fill_s"]
            if "rebuild_s" in figures:
                result["rebuild_s"].setdefault(method, {})[size] = figures["rebuild_s"]
    result["settings"] = {"sizes": list(sizes), "key_dim": key_dim, "k": k, "seconds": seconds,
                          "insert_batch": insert_batch, "keys": "standard Gaussian float32", "threads": 1}
    result["notes"] = notes
    return result


def format_episodic_table(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [f"episodic memory, one full action buffer of {s['key_dim']}-d Gaussian keys, k={s['k']}, one thread",
             f"  {'method':<7} {'entries':>10} {'query16 ms':>11} {'x flat':>7} {'query1 ms':>10} "
             f"{'insert us/entry':>16} {'rebuild s':>10} {'recall@k':>9}"]
    for size in s["sizes"]:
        flat = result["query_ms"].get("flat", {}).get(size, {}).get("batch16")
        for method, per_size in result["query_ms"].items():
            if size not in per_size:
                continue
            q = per_size[size]
            ratio = f"{q['batch16'] / flat:.2f}" if flat else "n/a"
            rebuild = result["rebuild_s"].get(method, {}).get(size)
            lines.append(f"  {method:<7} {size:>10,} {q['batch16']:>11.3f} {ratio:>7} {q['batch1']:>10.3f} "
                         f"{result['insert_us'][method][size]:>16,.1f} "
                         f"{'-' if rebuild is None else f'{rebuild:.2f}':>10} "
                         f"{result['recall'][method][size]:>9.2f}")
    lines.append("  insert: ivf includes its periodic retraining amortised; kdtree is one rebuild (rebuild per insert)")
    lines += [f"  note: {note}" for note in result.get("notes", [])]
    return "\n".join(lines)


class _MemoryHost:
    """A Ray actor holding an :class:`~agents.episodic.EpisodicMemory`: the "server" side of the sharing bench, and
    the actor-side replica that a publication refreshes."""

    def __init__(self, num_actions: int, key_dim: int, capacity: int) -> None:
        import faiss

        from agents.episodic import EpisodicMemory

        faiss.omp_set_num_threads(1)
        self.memory = EpisodicMemory(num_actions, key_dim, capacity)

    def load(self, state: dict[str, Any]) -> int:
        self.memory.load_state_dict(state)
        return self.memory.size

    def estimate(self, keys: np.ndarray) -> np.ndarray:
        return self.memory.estimate(keys).values


def _query_local(memory: Any, queries: np.ndarray, _: int) -> object:
    return memory.estimate(queries)


def _query_server(server: Any, queries: np.ndarray, _: int) -> object:
    import ray

    return ray.get(server.estimate.remote(queries))


def _publish(replica: Any, memory: Any, _: int) -> object:
    import ray

    return ray.get(replica.load.remote(ray.put(memory.state_dict())))


def run_sharing_bench(sizes: Sequence[int] = (10_000, 100_000, 250_000), num_actions: int = 9, key_dim: int = 64,
                      batch: int = 16, seconds: float = 2.0, seed: int = 0) -> dict[str, Any]:
    """How Ray actors should share MFEC's memory, measured: a replica per actor refreshed by publication, or one
    memory in a Ray actor queried every step.

    For memories of ``size`` keys in all (spread evenly over ``num_actions`` buffers, the exact index), milliseconds:

    - ``local_query_ms``: one ``estimate`` of a batch of ``batch`` keys (a vector step of 16 envs) in-process, what
      an actor with a replica pays per step;
    - ``server_query_ms``: the same through a Ray actor holding the memory (``ray.get(server.estimate.remote(..))``,
      the round trip included), what every actor pays per step without a replica;
    - ``publish_ms``: one refresh of a replica: ``state_dict()``, ``ray.put``, and the replica's
      ``load_state_dict`` in another Ray actor (rebuilding its hash table), end to end;
    - ``break_even_steps``: vector steps between publications above which replicas cost less than the server
      (``publish_ms / (server_query_ms - local_query_ms)``; inf where the server measured no slower, which a busy
      machine can make happen). This counts one actor: a server answers every actor's queries in turn, replicas
      answer in parallel.

    Starts Ray (bound to loopback) if it is not running.
    """
    import ray

    from agents.episodic import EpisodicMemory
    from agents.runtime.ray_runtime import init_ray

    if not ray.is_initialized():
        init_ray(None, num_cpus=2)
    rng = np.random.default_rng(seed)
    # Any: Ray actor handles, whose methods' `.remote` the type system cannot follow.
    host: Any = ray.remote(num_cpus=0)(_MemoryHost)
    result: dict[str, Any] = {"local_query_ms": {}, "server_query_ms": {}, "publish_ms": {}, "break_even_steps": {}}
    for size in sizes:
        memory = EpisodicMemory(num_actions, key_dim, capacity=size // num_actions + 1)
        keys = rng.standard_normal((size, key_dim)).astype(np.float32)
        memory.update(keys, np.arange(size) % num_actions, rng.random(size).astype(np.float32))
        queries = rng.standard_normal((batch, key_dim)).astype(np.float32)
        server: Any = host.remote(num_actions, key_dim, size // num_actions + 1)
        replica: Any = host.remote(num_actions, key_dim, size // num_actions + 1)
        ray.get(server.load.remote(memory.state_dict()))
        local = _per_call_s(functools.partial(_query_local, memory, queries), seconds)
        remote = _per_call_s(functools.partial(_query_server, server, queries), seconds)
        publish = _per_call_s(functools.partial(_publish, replica, memory), seconds, min_calls=2)
        for actor in (server, replica):
            ray.kill(actor)
        result["local_query_ms"][size] = 1e3 * local
        result["server_query_ms"][size] = 1e3 * remote
        result["publish_ms"][size] = 1e3 * publish
        result["break_even_steps"][size] = publish / (remote - local) if remote > local else float("inf")
    result["settings"] = {"sizes": list(sizes), "num_actions": num_actions, "key_dim": key_dim, "batch": batch}
    return result


def format_sharing_table(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [f"sharing the memory between Ray actors ({s['num_actions']} actions, {s['key_dim']}-d keys, flat, "
             f"batches of {s['batch']}):",
             f"  {'keys':>10} {'local query ms':>15} {'server query ms':>16} {'publish ms':>11} "
             f"{'break-even steps':>17}"]
    for size in s["sizes"]:
        lines.append(f"  {size:>10,} {result['local_query_ms'][size]:>15.2f} {result['server_query_ms'][size]:>16.2f} "
                     f"{result['publish_ms'][size]:>11.1f} {result['break_even_steps'][size]:>17.1f}")
    return "\n".join(lines)


def run_agent_bench(game: str = "MsPacman", seconds: float = 20.0,
                    kinds: Sequence[str] = ("random_projection", "gaussian_vae")) -> dict[str, Any]:
    """Agent steps/s of MFEC training (``mfec_atari`` on ``game``, local mode, one thread) with each representation,
    one after the other in this process, over ``seconds`` after the first update.

    The Gaussian VAE is the paper's network (``gvae_paper``'s model) freshly initialised and saved as a
    ``fit-gvae`` checkpoint in a temporary folder: its cost per frame does not depend on its weights. The memory
    starts empty, so these are the rates of a run's first minutes, when k-NN is cheapest.

    :return: ``{"steps_per_s": {kind: x}, "learner_busy_fraction": {kind: y}, "settings": {...}}``.
    """
    import tempfile
    from pathlib import Path

    import torch

    from agents.registry import get_builder
    from launch.bench.ac import NEVER, measure_ours
    from launch.config import load_config
    from worldmodels.common.checkpoint import save_checkpoint
    from worldmodels.representations.gaussian_vae import GaussianVAE

    torch.set_num_threads(1)
    result: dict[str, Any] = {"steps_per_s": {}, "learner_busy_fraction": {}}
    with tempfile.TemporaryDirectory() as tmp:
        gvae_path = save_checkpoint(Path(tmp) / "gvae", 0, {"gvae": GaussianVAE().export()})
        for kind in kinds:
            path = [f"representation.path={gvae_path}"] if kind == "gaussian_vae" else []
            cfg = load_config(get_builder("mfec").config_class, ["mfec_atari"], [
                f"env.game={game}", f"representation.kind={kind}", *path, "run.progress=false",
                "run.eval_episodes=0", f"run.total_frames={NEVER}", f"run.checkpoint_every_frames={NEVER}",
                f"run.log_every_frames={NEVER}"])
            figures = measure_ours(cfg, seconds)
            result["steps_per_s"][kind] = figures["steps_per_s"]
            result["learner_busy_fraction"][kind] = figures["learner_busy_fraction"]
    result["settings"] = {"game": game, "seconds": seconds, "preset": "mfec_atari"}
    return result


def format_agent_table(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [f"MFEC training ({s['preset']}, {s['game']}, local mode, one thread, {s['seconds']:.0f} s each):",
             f"  {'representation':<18} {'agent steps/s':>14} {'learner busy':>13}"]
    for kind, rate in result["steps_per_s"].items():
        lines.append(f"  {kind:<18} {rate:>14,.0f} {result['learner_busy_fraction'][kind]:>13.0%}")
    return "\n".join(lines)


def _search_batch(search: Callable[[np.ndarray, int], object], batch: np.ndarray, k: int, _: int) -> object:
    return search(batch, k)


def run_recall_bench(runs: Sequence[str], nprobes: Sequence[int] = (8, 32, 128), k: int = 11,
                     num_queries: int = 256, seconds: float = 1.0, seed: int = 0) -> dict[str, Any]:
    """IVF's recall on the keys an MFEC run really stored, beside standard-Gaussian keys of the same size and width.

    For each run (a run directory or checkpoint file; its newest valid checkpoint) and each action buffer in it:
    the buffer's stored keys are the database, and the queries are up to ``num_queries`` keys stored under the
    *other* actions (real frames of the same game, so what the agent asks; a query stored exactly in this buffer
    is left out, since an exact match never reaches the k-NN search). The IVF index is built afresh from the
    buffer (``nlist = sqrt(size)``, the state a retraining leaves) and searched at each ``nprobe``.

    Figures, averaged over the buffers of a run (weighted by queries):

    - ``recall``: recall@k against faiss's exact search, per ``nprobe``;
    - ``value_error``: mean |estimate with IVF - exact estimate| (the mean of the k neighbours' values), divided
      by the standard deviation of the buffer's values: how much the approximation moves Q^EC;
    - ``query_ms``: milliseconds per ``estimate`` call of 16 queries on the largest buffer, flat and per nprobe;
    - ``gaussian_recall``: recall@k of standard-Gaussian keys (the ``run_episodic_bench`` data) at the largest
      buffer's size, per ``nprobe``: the worst case, side by side.

    :return: ``{"runs": {run: {"checkpoint", "sizes", "recall": {nprobe: r}, "value_error": {nprobe: e},
        "query_ms": {"flat" | nprobe: ms}, "gaussian_recall": {nprobe: r}, "key_dim"}}, "settings": {...}}``.
    """
    import faiss

    from agents.episodic.knn import IVFIndex
    from agents.episodic.learning import MFECLearner
    from worldmodels.common.checkpoint import load_latest

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(seed)
    result: dict[str, Any] = {"runs": {}, "settings": {"k": k, "nprobes": list(nprobes), "num_queries": num_queries,
                                                       "threads": 1}}

    def ivf_of(keys: np.ndarray, nprobe: int) -> IVFIndex:
        index = IVFIndex(keys, nprobe=nprobe, seed=seed)
        index.size = len(keys)
        index.rebuild()  # trained on every stored key, whatever min_train says
        return index

    def recall(exact: np.ndarray, approx: np.ndarray) -> float:
        return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(exact, approx)]))

    for run in runs:
        ckpt, state = load_latest(run)
        try:
            memory = MFECLearner.checkpoint_weights(state)
        except (KeyError, TypeError):
            raise ValueError(f"{ckpt} holds no episodic memory: give an MFEC run directory or checkpoint "
                             f"(reverie train mfec_atari ...)") from None
        sizes = np.asarray(memory["sizes"], dtype=np.int64)
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        all_keys = np.ascontiguousarray(memory["keys"], dtype=np.float32)
        values = np.asarray(memory["values"], dtype=np.float32)
        hits = {p: 0.0 for p in nprobes}
        errors = {p: 0.0 for p in nprobes}
        counted = 0
        largest = int(np.argmax(sizes))
        query_ms: dict[str, float] = {}
        for a, size in enumerate(sizes):
            if size <= 4 * k:
                continue  # too few keys for an index worth measuring
            lo, hi = int(bounds[a]), int(bounds[a + 1])
            keys, vals = all_keys[lo:hi], values[lo:hi]
            others = np.concatenate([np.arange(0, lo), np.arange(hi, len(all_keys))])
            if len(others) == 0:
                continue
            queries = all_keys[rng.choice(others, min(num_queries, len(others)), replace=False)]
            dist, exact = faiss.knn(queries, keys, k)
            keep = dist[:, 0] > 0  # an exact match is answered by the hash, never by the k-NN search
            queries, exact = queries[keep], exact[keep]
            if len(queries) == 0:
                continue
            exact_q = vals[exact].mean(axis=1)
            scale = float(vals.std()) or 1.0
            indexes = {p: ivf_of(keys, p) for p in nprobes}
            for p, index in indexes.items():
                approx = index.search(queries, k)
                hits[p] += recall(exact, approx) * len(queries)
                errors[p] += float(np.abs(vals[approx].mean(axis=1) - exact_q).sum()) / scale
            counted += len(queries)
            if a == largest:
                flat = faiss.IndexFlatL2(keys.shape[1])
                flat.add(keys)
                searches: dict[str, Callable[[np.ndarray, int], object]] = {"flat": flat.search}
                searches.update({str(p): index.search for p, index in indexes.items()})
                batch = queries[:16]
                for name, search in searches.items():
                    query_ms[name] = 1e3 * _per_call_s(functools.partial(_search_batch, search, batch, k), seconds)
        if counted == 0:
            raise ValueError(f"{ckpt}: no action buffer holds more than {4 * k} keys; train the run longer first")
        big = int(sizes[largest])
        gauss = rng.standard_normal((big, all_keys.shape[1]), dtype=np.float32)
        gauss_q = rng.standard_normal((num_queries, all_keys.shape[1]), dtype=np.float32)
        gauss_exact = faiss.knn(gauss_q, gauss, k)[1]
        result["runs"][str(run)] = {
            "checkpoint": str(ckpt), "sizes": [int(n) for n in sizes], "key_dim": int(all_keys.shape[1]),
            "recall": {p: hits[p] / counted for p in nprobes},
            "value_error": {p: errors[p] / counted for p in nprobes},
            "query_ms": query_ms,
            "gaussian_recall": {p: recall(gauss_exact, ivf_of(gauss, p).search(gauss_q, k)) for p in nprobes},
        }
    return result


def format_recall_table(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [f"IVF on the keys MFEC runs stored (recall@{s['k']} vs exact; value error = |Q_ivf - Q_exact| / std "
             f"of the buffer's values; Gaussian = random keys of the largest buffer's size), one thread"]
    head = f"  {'run':<40} {'keys/action':>11} {'nprobe':>7} {'recall':>7} {'value err':>10} {'Gaussian':>9} " \
           f"{'query16 ms':>11} {'flat ms':>8}"
    lines.append(head)
    for run, r in result["runs"].items():
        name = run if len(run) <= 40 else "..." + run[-37:]
        mean_size = f"{int(np.mean(r['sizes'])):,}"
        for p in s["nprobes"]:
            lines.append(f"  {name:<40} {mean_size:>11} {p:>7} {r['recall'][p]:>7.2f} {r['value_error'][p]:>10.3f} "
                         f"{r['gaussian_recall'][p]:>9.2f} {r['query_ms'].get(str(p), float('nan')):>11.3f} "
                         f"{r['query_ms'].get('flat', float('nan')):>8.3f}")
            name, mean_size = "", ""
    return "\n".join(lines)
