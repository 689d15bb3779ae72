"""Binary-latent VAEs of binarised Atari frames (Deep AutoRegressive Networks, Gregor et al. 2014).

    from worldmodels.vae import BinaryVAE, ModelConfig, EstimatorConfig
    vae = BinaryVAE(ModelConfig(latent_dim=64), EstimatorConfig(name="vimco", samples=5))
    vae.train_step(binary_frames)          # uint8 [B, 42, 42] in {0, 1}
    vae.bounds(heldout, ks=(1, 10, 100))    # IWAE bounds per frame, nats
    vae.log_prob(frames); vae.embed(frames); vae.hash_keys(frames)

Parts: :mod:`~worldmodels.vae.made` (masked layers), :mod:`~worldmodels.vae.decoder` (masked convolutions),
:mod:`~worldmodels.vae.network`, :mod:`~worldmodels.vae.estimators` (NVIL, VIMCO, REINFORCE, relaxed),
:mod:`~worldmodels.vae.model` (``BinaryVAE``), :mod:`~worldmodels.vae.config`; `reverie fit-vae` is
:func:`worldmodels.vae.train.fit_vae` and `reverie evaluate-vae` :func:`worldmodels.vae.evaluate.evaluate_vae`.
"""

from __future__ import annotations

from worldmodels.vae.config import DataConfig, EstimatorConfig, ModelConfig, OptimConfig, RunConfig, VAEFitConfig
from worldmodels.vae.model import EVAL_KS, BinaryVAE

__all__ = ["EVAL_KS", "BinaryVAE", "DataConfig", "EstimatorConfig", "ModelConfig", "OptimConfig", "RunConfig",
           "VAEFitConfig"]
