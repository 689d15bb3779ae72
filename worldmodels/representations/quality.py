"""Key quality: how well a representation's keys predict returns by nearest neighbours, without an agent run.

MFEC (Blundell et al. 2016, Sec. 2) estimates ``Q(s, a)`` of an unseen state as the mean of the values stored
under its k = 11 nearest keys. A key is good for MFEC when frames whose keys are near have similar returns. This
module scores exactly that on a dataset of real episodes (`reverie collect`):

1. every frame gets its discounted return-to-go ``G_t = sum_{i >= 0} gamma^i r_{t+i}`` (gamma 1 by default, as
   MFEC writes returns), computed within its episode; episodes the collection cut short (no terminal) are left
   out, since their returns are truncated;
2. the train split's frames are the memory: their keys, stored with their returns;
3. each held-out frame's return is predicted as the mean return of its k nearest stored keys (exact L2 search,
   faiss's flat index, as MFEC's ``flat`` memory);
4. scores over the held-out frames: the RMSE and MAE of the prediction, the RMSE of predicting every frame by the
   stored returns' mean (``baseline_rmse``), their ratio ``rmse_ratio`` (below 1: the keys carry information about
   the return; 0 would be perfect), and Spearman's rank correlation between predicted and true returns.

Differences from an MFEC run, ours and stated: one memory for all actions (the data's policy is random, so the
return of a state does not depend on which action the memory is keyed by); the stored value is each frame's own
return, not the maximum over visits; frames of random play, not of the agent's improving policy. Random
projections of the same key size (:func:`score_keys` with several seeds) stand beside every learned key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["EpisodeData", "KeyScore", "discounted_returns", "load_split", "predict_by_neighbours", "score_keys"]

MIN_STORED = 100
"""Fewest complete train frames a key-quality score accepts."""
MIN_QUERIES = 20
"""Fewest complete held-out frames a key-quality score accepts."""


@dataclass(frozen=True)
class EpisodeData:
    """The frames of one split whose returns are known: frames uint8 ``[N, H, W]``, returns float64 ``[N]``,
    episode ids int64 ``[N]``."""

    frames: np.ndarray
    returns: np.ndarray
    episode_ids: np.ndarray


@dataclass(frozen=True)
class KeyScore:
    """One key's score on the held-out frames (see the module docstring)."""

    name: str
    dim: int
    k: int
    rmse: float
    mae: float
    baseline_rmse: float
    spearman: float
    queries: int
    stored: int

    @property
    def rmse_ratio(self) -> float:
        return self.rmse / self.baseline_rmse if self.baseline_rmse > 0 else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dim": self.dim, "k": self.k, "rmse": round(self.rmse, 4),
                "mae": round(self.mae, 4), "baseline_rmse": round(self.baseline_rmse, 4),
                "rmse_ratio": round(self.rmse_ratio, 4), "spearman": round(self.spearman, 4),
                "queries": self.queries, "stored": self.stored}


def discounted_returns(rewards: np.ndarray, episode_ids: np.ndarray, terminals: np.ndarray,
                       gamma: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Return-to-go of each row and whether it is complete.

    :param rewards: float ``[T]``, the reward of the action taken at each row (the dataset's convention).
    :param episode_ids: int ``[T]``; an episode's rows are contiguous.
    :param terminals: bool ``[T]``, True at the last row of an episode that ended.
    :param gamma: the discount in [0, 1].
    :return: float64 ``[T]`` returns ``G_t = r_t + gamma G_{t+1}`` within the episode, and bool ``[T]``: True for
        rows of episodes that end in a terminal (the others' returns are truncated by the end of collection).
    :raises ValueError: gamma outside [0, 1], or arrays of different lengths.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma={gamma}: a discount is in [0, 1] (MFEC writes undiscounted returns: 1).")
    r = np.asarray(rewards, np.float64)
    ids = np.asarray(episode_ids)
    ends = np.asarray(terminals, bool)
    if not (len(r) == len(ids) == len(ends)):
        raise ValueError(f"rewards, episode_ids and terminals have lengths {len(r)}, {len(ids)}, {len(ends)}: they "
                         f"must be aligned rows of one dataset.")
    out = np.zeros(len(r), np.float64)
    complete = np.zeros(len(r), bool)
    running, last_id = 0.0, None
    for t in range(len(r) - 1, -1, -1):
        if ids[t] != last_id:  # the last row of an episode (walking backwards)
            running, last_id = 0.0, ids[t]
            done = bool(ends[t])
        running = r[t] + gamma * running
        out[t] = running
        complete[t] = done
    return out, complete


def load_split(path: str | Path, split: str, gamma: float = 1.0, max_frames: int = 0, seed: int = 0,
               skip_corrupt: bool = False) -> EpisodeData:
    """The complete episodes of one split of a `reverie collect` dataset, with their returns.

    :param max_frames: keep at most this many frames (0: all), drawn uniformly at random with ``seed`` after the
        returns are computed, so each kept frame's return is its whole episode's.
    :raises DatasetError: no such split, corrupt shards (without ``skip_corrupt``), or frames that are not 84x84.
    """
    from worldmodels.data import DatasetError, TrajectoryDataset

    ds = TrajectoryDataset(path, split, on_corrupt="skip" if skip_corrupt else "error", skip_hint="--skip-corrupt")
    frames, returns, ids = [], [], []
    for arrays in ds.iter_shards():
        g, complete = discounted_returns(arrays["rewards"], arrays["episode_ids"], arrays["terminals"], gamma)
        frames.append(arrays["frames"][complete])
        returns.append(g[complete])
        ids.append(arrays["episode_ids"][complete])
    data = EpisodeData(np.concatenate(frames), np.concatenate(returns), np.concatenate(ids))
    if data.frames.ndim != 3:
        raise DatasetError(f"{path} holds frames of shape {data.frames.shape[1:]}; key quality reads luminance "
                           f"frames [H, W] (collect without --rgb).")
    if max_frames and len(data.frames) > max_frames:
        keep = np.sort(np.random.default_rng(seed).choice(len(data.frames), max_frames, replace=False))
        data = EpisodeData(data.frames[keep], data.returns[keep], data.episode_ids[keep])
    return data


def predict_by_neighbours(stored_keys: np.ndarray, stored_returns: np.ndarray, query_keys: np.ndarray,
                          k: int) -> np.ndarray:
    """The mean return of each query's ``k`` nearest stored keys (exact L2; ties broken by faiss's order).

    :param stored_keys: float ``[M, D]``; ``stored_returns``: float ``[M]``; ``query_keys``: float ``[Q, D]``.
    :return: float64 ``[Q]``.
    :raises ValueError: ``k`` outside [1, M], or keys of different sizes.
    """
    import faiss

    stored = np.ascontiguousarray(stored_keys, np.float32)
    queries = np.ascontiguousarray(query_keys, np.float32)
    if stored.ndim != 2 or queries.ndim != 2 or stored.shape[1] != queries.shape[1]:
        raise ValueError(f"stored keys {stored.shape} and query keys {queries.shape} must be [N, D] with the same D.")
    if not 1 <= k <= len(stored):
        raise ValueError(f"k={k} neighbours need at least k stored keys (have {len(stored)}) and k >= 1.")
    index = faiss.IndexFlatL2(stored.shape[1])
    index.add(stored)
    _, neighbours = index.search(queries, k)
    return np.asarray(stored_returns, np.float64)[neighbours].mean(axis=1)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (ties get their average rank); NaN when either side is constant."""
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def score_keys(name: str, stored_keys: np.ndarray, stored_returns: np.ndarray, query_keys: np.ndarray,
               query_returns: np.ndarray, k: int = 11) -> KeyScore:
    """Score one key (see the module docstring): returns-by-neighbours on the queries against their true returns.

    :raises ValueError: fewer than :data:`MIN_STORED` stored or :data:`MIN_QUERIES` query keys (naming the fix),
        or a bad ``k``.
    """
    if len(stored_keys) < max(MIN_STORED, k) or len(query_keys) < MIN_QUERIES:
        raise ValueError(f"key quality needs at least {max(MIN_STORED, k)} stored frames and {MIN_QUERIES} held-out "
                         f"frames of complete episodes; got {len(stored_keys)} and {len(query_keys)}: collect more "
                         f"(e.g. `reverie collect GAME --frames 100000 --out DATA`, whose held-out split is whole "
                         f"episodes).")
    predicted = predict_by_neighbours(stored_keys, stored_returns, query_keys, k)
    truth = np.asarray(query_returns, np.float64)
    error = predicted - truth
    baseline = float(np.sqrt(np.mean((truth - np.mean(stored_returns)) ** 2)))
    return KeyScore(name=name, dim=int(stored_keys.shape[1]), k=int(k), rmse=float(np.sqrt(np.mean(error ** 2))),
                    mae=float(np.mean(np.abs(error))), baseline_rmse=baseline, spearman=spearman(predicted, truth),
                    queries=len(truth), stored=len(stored_keys))


KEY_KINDS = ("gaussian_vae", "binary_vae")


def parse_key(spec: str) -> tuple[str, str]:
    """``KIND=PATH`` (a learned key: ``gaussian_vae`` or ``binary_vae`` and its run directory or checkpoint) ->
    ``(kind, path)``.

    :raises ValueError: another form, naming the accepted ones.
    """
    kind, sep, path = str(spec).partition("=")
    if not sep or kind not in KEY_KINDS or not path:
        raise ValueError(f"--key {spec!r}: give KIND=PATH with KIND one of {', '.join(KEY_KINDS)} and PATH its "
                         f"`reverie fit-gvae` / `reverie fit-vae` run directory or checkpoint (random projections "
                         f"of the same size are always scored beside it).")
    return kind, path


def embed_all(rep: Any, frames: np.ndarray, batch: int = 256) -> np.ndarray:
    """``rep.embed`` over uint8 ``[N, H, W]`` frames in batches: float32 ``[N, rep.dim]``."""
    return np.concatenate([rep.embed(frames[b: b + batch]) for b in range(0, len(frames), batch)]) \
        if len(frames) else np.zeros((0, rep.dim), np.float32)


def key_quality(data: str | Path, keys: list[str], k: int = 11, gamma: float = 1.0, stored: int = 20_000,
                queries: int = 2_000, projection_seeds: int = 3, dim: int = 64, seed: int = 0,
                skip_corrupt: bool = False, usage_frames: int = 1_000) -> dict[str, Any]:
    """Score learned keys and random projections of the same sizes on a dataset (see the module docstring).

    :param data: a `reverie collect` dataset of 84x84 luminance frames with a held-out split.
    :param keys: ``KIND=PATH`` specs (:func:`parse_key`); none scores random projections of ``dim`` alone.
    :param stored: train frames kept as the memory (0: all), drawn at random with ``seed``.
    :param queries: held-out frames scored (0: all), drawn at random with ``seed + 1``.
    :param projection_seeds: random projections per key size (seeds 0..n-1), to show their spread.
    :param usage_frames: held-out frames on which each VAE's active units are measured.
    :return: ``{"data", "k", "gamma", "stored", "queries", "rows": [...]}``; each row is
        :meth:`KeyScore.as_dict` plus ``kind`` and, for VAEs, ``path`` and the latent usage summary
        (:mod:`worldmodels.representations.usage`).
    :raises ValueError: a bad spec or setting; :class:`DatasetError`: too little data (naming the fix).
    """
    from worldmodels.data import DatasetError
    from worldmodels.representations.random_projection import RandomProjection
    from worldmodels.representations.usage import binary_usage, gaussian_usage

    if k < 1 or projection_seeds < 0 or dim < 1 or stored < 0 or queries < 0:
        raise ValueError(f"k={k}, dim={dim} must be >= 1 and projection_seeds={projection_seeds}, stored={stored}, "
                         f"queries={queries} >= 0.")
    specs = [parse_key(s) for s in keys]
    train = load_split(data, "train", gamma, stored, seed, skip_corrupt)
    held = load_split(data, "heldout", gamma, queries, seed + 1, skip_corrupt)
    if len(train.frames) < max(MIN_STORED, k) or len(held.frames) < MIN_QUERIES:
        raise DatasetError(f"{data}: {len(train.frames)} train and {len(held.frames)} held-out frames of complete "
                           f"episodes; key quality needs at least {max(MIN_STORED, k)} and {MIN_QUERIES}. Collect "
                           f"more (`reverie collect GAME --frames 100000 --out DATA`), or a held-out split of whole "
                           f"episodes (--heldout-fraction).")
    shape = tuple(train.frames.shape[1:])
    rows: list[dict[str, Any]] = []

    def score(name: str, kind: str, rep: Any, extra: dict[str, Any]) -> None:
        result = score_keys(name, embed_all(rep, train.frames), train.returns, embed_all(rep, held.frames),
                            held.returns, k)
        rows.append({"kind": kind, **result.as_dict(), **extra})

    dims: list[int] = []
    for kind, path in specs:
        rep: Any
        if kind == "gaussian_vae":
            from worldmodels.representations.gaussian_vae import GaussianVAERepresentation

            rep = GaussianVAERepresentation.load(path)
            usage = gaussian_usage(rep.model, held.frames[:usage_frames])
        else:
            from worldmodels.representations.binary import BinaryVAERepresentation

            rep = BinaryVAERepresentation.load(path)
            assert rep.vae.binarizer is not None
            usage = binary_usage(rep.vae, rep.vae.binarizer(held.frames[:usage_frames]), seed=seed)
        summary = usage.summary()
        score(f"{kind} ({path})", kind, rep, {"path": str(path), "active_units": summary["active_units"],
                                              "latents": summary["latents"], "collapsed": summary["collapsed"],
                                              "kl_total": summary["kl_total"]})
        dims.append(rep.dim)
    for d in dict.fromkeys(dims or [dim]):  # each size once, in the order met
        for s in range(projection_seeds):
            score(f"random_projection (dim {d}, seed {s})", "random_projection", RandomProjection(shape, d, s),
                  {"seed": s})
    return {"data": str(data), "k": k, "gamma": gamma, "stored": len(train.frames), "queries": len(held.frames),
            "rows": rows}
