"""``reverie fit-gvae``: train the Gaussian VAE of Model-Free Episodic Control (Blundell et al. 2016, App. A), whose
encoder is MFEC's ``gaussian_vae`` representation. :func:`register` adds the command to the CLI.

The training loop is :func:`worldmodels.representations.train_gvae.fit_gvae`; this module only wires it to the
command line.
"""

from __future__ import annotations

import argparse

from launch.config import add_config_arguments, preset_names


def cmd_fit_gvae(args: argparse.Namespace) -> int:
    from launch.config import run_fit
    from worldmodels.representations.train_gvae import RESUME_SAFE_KEYS, GVAEFitConfig, fit_gvae

    return run_fit(GVAEFitConfig, args, RESUME_SAFE_KEYS, fit_gvae)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``fit-gvae`` to the ``reverie`` subparsers."""
    p = sub.add_parser("fit-gvae", help="train MFEC's Gaussian VAE (the gaussian_vae representation) on a dataset",
                       description="Train worldmodels.representations.gaussian_vae.GaussianVAE (Blundell et al. "
                                   "2016, App. A) on the 84x84 frames of a `reverie collect` dataset; its checkpoint "
                                   "is the path of the gaussian_vae representation. CONFIG is a YAML path or a preset "
                                   f"name ({', '.join(preset_names('gvae'))}); key=value pairs override it, e.g. "
                                   "data.path=data/pong run.total_steps=1000.")
    add_config_arguments(p)
    p.set_defaults(func=cmd_fit_gvae)
