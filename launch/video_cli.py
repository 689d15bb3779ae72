"""``reverie fit-world-model``: train an action-conditional video predictor (:mod:`worldmodels.video`).

:func:`register` adds the command to the CLI; the training loop is :func:`worldmodels.video.train.fit_world_model`.
``reverie imagine`` (evaluation of imagined rollouts) is in :mod:`launch.imagine_cli`.
"""

from __future__ import annotations

import argparse

from launch.config import add_config_arguments, preset_names


def cmd_fit_world_model(args: argparse.Namespace) -> int:
    from launch.config import run_fit
    from worldmodels.video import VideoFitConfig
    from worldmodels.video.config import RESUME_SAFE_KEYS
    from worldmodels.video.train import fit_world_model

    return run_fit(VideoFitConfig, args, RESUME_SAFE_KEYS, fit_world_model)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``fit-world-model`` to the ``reverie`` subparsers."""
    p = sub.add_parser("fit-world-model", help="train an action-conditional video predictor on a dataset",
                       description="Train worldmodels.video.VideoPredictor (Oh et al. 2015) with the 1-, 3-, 5-step "
                                   "curriculum. CONFIG is a YAML path or a preset name "
                                   f"({', '.join(preset_names('world-model'))}); key=value pairs override it, e.g. "
                                   "data.path=data/pong optim.phases.0.updates=500.")
    add_config_arguments(p)
    p.set_defaults(func=cmd_fit_world_model)
