"""Errors of the runtime that the command line reports in one line (light: no Ray, no torch)."""

from __future__ import annotations


class ActorsLostError(RuntimeError):
    """Ray actors died beyond what ``runtime.max_actor_restarts`` allows: the run stops.

    No checkpoint is written after it (``checkpoint_after``, read by
    :class:`worldmodels.common.scaffold.RunScaffold`): it would lack the dead actors' state; the run's last
    periodic checkpoint is where ``--resume`` continues."""

    checkpoint_after = False
