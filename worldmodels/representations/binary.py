"""The binary VAE of `reverie fit-vae` (:class:`worldmodels.vae.BinaryVAE`) as an MFEC representation.

A BinaryVAE models binarised frames (:mod:`worldmodels.data.binarize`): 84x84 luminance is block-averaged to the
model's ``image_size`` (42 by default) and a pixel is on when it differs from the per-pixel background mode of the
training frames by more than ``threshold`` grey levels. Both the background and the threshold were fitted by
fit-vae and are saved in its checkpoint (``vae.binarizer``), so the adapter applies exactly the preprocessing the
model was trained on: ``vae.binarizer(frames)``, no other.

Key: the posterior's Bernoulli means along its greedy code, float32 ``[B, latents]`` in (0, 1). The posterior is
autoregressive, q(z | x) = prod_i Bern(z_i | f_i(z_<i, x)), so it has no one vector of means; we take the
greedy code z* (z*_i = 1 iff q(z_i = 1 | z*_<i, x) > 1/2, :meth:`BinaryVAE.codes`) and return the probabilities
p_i = q(z_i = 1 | z*_<i, x) along it. Thresholding the key at 1/2 gives the bits z* (``BinaryVAE.embed``), but
the probabilities are kept: MFEC looks keys up by Euclidean k-nearest neighbours, and bits would make many
frames equidistant (ties at Hamming distances), while the probabilities also say how sure each bit is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldmodels.vae.model import BinaryVAE

KIND = "binary_vae"
FRAME_SHAPE = (84, 84)


class BinaryVAERepresentation:
    """uint8 ``[B, 84, 84]`` luminance -> float32 ``[B, latents]``, the posterior's Bernoulli means along the greedy
    code of the binarised frame (see the module docstring); ``Representation``. Runs on the CPU, without gradients.

    :param vae: a trained model with its binariser (as fit-vae saves it).
    :param path: the checkpoint file it came from (kept in :meth:`state_dict`; a spec without weights reloads it).
    :raises ValueError: a model without a binariser.
    """

    def __init__(self, vae: BinaryVAE, path: str = "") -> None:
        if vae.binarizer is None:
            raise ValueError("this binary VAE has no binariser: it cannot read luminance frames; use a checkpoint "
                             "written by `reverie fit-vae` (it saves the binariser it fitted).")
        self.vae = vae.to("cpu")
        self.path = str(path)

    @property
    def dim(self) -> int:
        """The number of binary latents."""
        return self.vae.dim

    @property
    def frame_shape(self) -> tuple[int, int]:
        return FRAME_SHAPE

    @torch.no_grad()
    def embed(self, frames: np.ndarray) -> np.ndarray:
        """:param frames: uint8 ``[B, 84, 84]`` luminance. :return: float32 ``[B, latents]`` in (0, 1).
        :raises ValueError: another shape."""
        frames = np.asarray(frames)
        if frames.ndim != 3 or frames.shape[1:] != FRAME_SHAPE:
            raise ValueError(f"the binary-VAE representation reads 84x84 luminance frames, uint8 [B, 84, 84]; got "
                             f"{frames.shape}.")
        assert self.vae.binarizer is not None
        net = self.vae.net
        net.eval()
        h = net.encode(self.vae.to_tensor(self.vae.binarizer(frames)))
        z = net.sample_posterior(h, greedy=True)
        # Logit i depends on z_<i only, so one pass over the greedy code gives every p_i met while building it.
        return torch.sigmoid(net.posterior(z, h)).numpy().astype(np.float32, copy=False)

    @classmethod
    def load(cls, path: str | Path) -> BinaryVAERepresentation:
        """From a `reverie fit-vae` checkpoint file, or the newest valid one of a run directory.

        :raises CheckpointError: no readable checkpoint there. :raises ValueError: a checkpoint of another kind.
        """
        from worldmodels.common.checkpoint import load_latest

        ckpt_path, ckpt = load_latest(path)
        if "vae" not in ckpt:
            other = (" (a `reverie fit-gvae` Gaussian VAE: use the gaussian_vae representation)"
                     if "gvae" in ckpt else "")
            raise ValueError(f"{ckpt_path} is not a `reverie fit-vae` checkpoint{other}; train a binary VAE with "
                             f"`reverie fit-vae vae_atari data.path=DATA` and give its run directory.")
        from worldmodels.representations.usage import warn_if_collapsed

        warn_if_collapsed(ckpt, f"The binary VAE at {ckpt_path}")
        return cls(BinaryVAE.from_state_dict(ckpt["vae"]), str(ckpt_path))  # the file: a run may write newer ones

    def state_dict(self) -> dict[str, Any]:
        """``{"kind", "frame_shape", "dim", "path", "state"}``; ``state`` is :meth:`BinaryVAE.state_dict` (configs,
        weights, binariser), so a process without the checkpoint file rebuilds the same model."""
        return {"kind": KIND, "frame_shape": list(FRAME_SHAPE), "dim": self.dim, "path": self.path,
                "state": self.vae.state_dict()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> BinaryVAERepresentation:
        """Rebuild from :meth:`state_dict`'s output: from its weights if it holds them, else from its path."""
        if state.get("state") is not None:
            return cls(BinaryVAE.from_state_dict(state["state"]), str(state.get("path") or ""))
        return cls.load(state["path"])
