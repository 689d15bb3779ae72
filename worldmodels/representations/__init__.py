"""The representations of Model-Free Episodic Control (Blundell et al. 2016, arXiv 1606.04460, Sec. 3): what turns
a frame into the key of MFEC's k-nearest-neighbour memory.

    from worldmodels.representations import make_representation, representation_spec, load_representation
    rep = make_representation("random_projection", (84, 84), dim=64, seed=0)
    keys = rep.embed(frames)                 # uint8 [B, 84, 84] -> float32 [B, 64]
    same = load_representation(representation_spec(rep))   # e.g. inside a Ray actor: identical embeddings

Kinds (:data:`REPRESENTATION_KINDS`):

- ``random_projection``: phi(o) = A o, A ~ N(0, 1)^{D x F} seeded by ``seed``; any frame shape
  (:mod:`~worldmodels.representations.random_projection`).
- ``gaussian_vae``: the 32 means and 32 log-stds of the posterior of the paper's Gaussian VAE (App. A), trained by
  `reverie fit-gvae` (:mod:`~worldmodels.representations.gaussian_vae`, :mod:`~.train_gvae`); 84x84 frames.
- ``binary_vae``: the posterior Bernoulli means of a `reverie fit-vae` binary VAE, on frames binarised as its
  checkpoint says (:mod:`~worldmodels.representations.binary`); 84x84 frames.

Every representation satisfies :class:`worldmodels.protocols.Representation` (``dim``, ``embed``: numpy in, numpy
out, torch inside on the CPU without gradients) and has ``state_dict()`` / ``from_state(state)``: a plain dict of
ints, strings and lists (and, for the VAEs, the weights as CPU tensors) that pickles to another process.
"""

from __future__ import annotations

from typing import Any

from worldmodels.protocols import Representation
from worldmodels.representations.random_projection import RandomProjection

__all__ = ["REPRESENTATION_KINDS", "RandomProjection", "load_representation", "make_representation",
           "representation_spec"]

REPRESENTATION_KINDS = ("random_projection", "gaussian_vae", "binary_vae")
VAE_SHAPE = (84, 84)


def _check_kind(kind: str, where: str = "kind") -> str:
    kind = str(kind)
    if kind not in REPRESENTATION_KINDS:
        raise ValueError(f"{where}={kind!r} is not a representation: choose one of {', '.join(REPRESENTATION_KINDS)}.")
    return kind


def make_representation(kind: str, frame_shape: tuple[int, ...], dim: int = 64, seed: int = 0,
                        path: str | None = None) -> Representation:
    """The representation ``kind`` for frames of ``frame_shape``, with keys of length ``dim``.

    :param kind: one of :data:`REPRESENTATION_KINDS`.
    :param frame_shape: one frame's shape (the newest frame of an observation): ``(84, 84)`` on Atari,
        ``(C, 10, 10)`` on MinAtar. The VAEs read 84x84 luminance only.
    :param dim: the key length. ``random_projection``: any D >= 1 (the paper: 64); ``gaussian_vae``: must be
        2 * the model's latents (64 for the paper's 32); ``binary_vae``: must be the model's latent count.
    :param seed: seeds the random projection's matrix (unused by the VAEs, whose weights are trained).
    :param path: the VAEs' checkpoint: a `reverie fit-gvae` (``gaussian_vae``) or `reverie fit-vae`
        (``binary_vae``) checkpoint file or run directory (its newest valid checkpoint); unused by
        ``random_projection``.
    :raises ValueError: an unknown kind (listing the kinds), a VAE without ``path``, a frame shape a VAE cannot
        read, a ``dim`` that differs from the model's key length (naming both), a checkpoint of another kind.
    :raises CheckpointError: no readable checkpoint at ``path``.
    """
    kind = _check_kind(kind)
    shape = tuple(int(d) for d in frame_shape)
    if kind == "random_projection":
        return RandomProjection(shape, dim, seed)
    if not path:
        trainer = "`reverie fit-gvae`" if kind == "gaussian_vae" else "`reverie fit-vae`"
        raise ValueError(f"the {kind} representation needs path: the checkpoint file or run directory of a {trainer} "
                         f"run (or use random_projection, which needs none).")
    if shape != VAE_SHAPE:
        raise ValueError(f"the {kind} representation reads 84x84 luminance frames, frame_shape (84, 84); got {shape}: "
                         f"use random_projection for other frames (MinAtar's (C, 10, 10)).")
    rep: Any
    if kind == "gaussian_vae":
        from worldmodels.representations.gaussian_vae import GaussianVAERepresentation

        rep = GaussianVAERepresentation.load(path)
        if rep.dim != dim:
            raise ValueError(f"dim={dim}, but the Gaussian VAE at {path} has {rep.model.latents} latents, so its keys "
                             f"(means and log-stds) have 2 x {rep.model.latents} = {rep.dim} entries: set dim="
                             f"{rep.dim}.")
    else:
        from worldmodels.representations.binary import BinaryVAERepresentation

        rep = BinaryVAERepresentation.load(path)
        if rep.dim != dim:
            raise ValueError(f"dim={dim}, but the binary VAE at {path} has {rep.dim} latents (one key entry each): "
                             f"set dim={rep.dim}.")
    return rep


def representation_spec(rep: Any, weights: bool = True) -> dict[str, Any]:
    """What rebuilds ``rep`` elsewhere (a Ray actor, a restored agent): a plain dict with ``kind``,
    ``frame_shape`` (a list), ``dim``, and ``seed`` (random projection) or ``path`` and ``state`` (the VAEs' config
    and weights, CPU tensors).

    :param weights: keep the VAEs' weights; False leaves ``state`` out, and :func:`load_representation` then reads
        ``path`` (every process must see that file, and it must not have changed).
    :raises ValueError: an object that is not one of this package's representations.
    """
    state = getattr(rep, "state_dict", None)
    spec = state() if callable(state) else None
    if not isinstance(spec, dict) or spec.get("kind") not in REPRESENTATION_KINDS:
        raise ValueError(f"{type(rep).__name__} is not a representation made by make_representation: it has no spec.")
    if not weights:
        spec.pop("state", None)
    return spec


def load_representation(spec: dict[str, Any]) -> Representation:
    """The representation :func:`representation_spec` described: the same embeddings, in any process.

    :raises ValueError: a spec without a known ``kind``.
    """
    if not isinstance(spec, dict) or "kind" not in spec:
        raise ValueError("a representation spec is the dict representation_spec(rep) returns, with a 'kind'.")
    kind = _check_kind(spec["kind"], "spec['kind']")
    if kind == "random_projection":
        return RandomProjection.from_state(spec)
    if kind == "gaussian_vae":
        from worldmodels.representations.gaussian_vae import GaussianVAERepresentation

        return GaussianVAERepresentation.from_state(spec)
    from worldmodels.representations.binary import BinaryVAERepresentation

    return BinaryVAERepresentation.from_state(spec)
