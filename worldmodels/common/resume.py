"""Resuming a run, the same way for every trainer (agents on the runtime, ``fit-vae``, ``fit-world-model``).

- **Which checkpoint.** ``--resume RUN`` continues from RUN's newest *valid* checkpoint (a corrupt newer one is
  skipped with a warning naming it); ``--resume RUN/checkpoints/FILE`` from that file.
- **Which config.** The run's own, as saved in that checkpoint: a resumed run continues exactly what was saved.
  A command may change only the trainer's *safe* keys (how long it runs, how often it logs, checkpoints and
  evaluates), each named in a warning; any other difference raises :class:`ResumeError` naming the keys, their
  saved and requested values and what to do.
- **A start that failed.** A run directory that holds a config but no checkpoint (the run stopped before its first
  one) is not a run to resume: :func:`find_resume_point` returns no checkpoint and the trainer starts afresh there.

Safe keys are ``fnmatch`` patterns over dotted keys (``optim.phases.*.updates``); a pattern prefixed with ``+``
matches only keys the saved config does not have (a curriculum stage appended to a list).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, TypeVar

from worldmodels.common.checkpoint import list_checkpoints, load_latest

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Keys that configs saved by older versions may hold and that were removed since: ``env.frame_skip`` was never
#: passed to the env (the frame skip is the env's own: 4 on Atari, 1 on MinAtar).
RETIRED_KEYS = ("env.frame_skip",)

_ABSENT = "<absent>"


class ResumeError(ValueError):
    """A resume that would not continue what was saved; the message names the keys and what to do."""


@dataclass
class ResumePoint:
    """Where a resumed run continues from."""

    run_dir: Path
    """The run directory."""
    checkpoint: Path | None
    """The checkpoint file (None: the directory holds a run that saved none; start it afresh)."""
    state: dict[str, Any] | None
    """The checkpoint's contents (None with ``checkpoint``)."""


def run_dir_of(checkpoint: Path) -> Path:
    """The run directory a checkpoint file belongs to (``RUN/checkpoints/FILE`` -> ``RUN``)."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def find_resume_point(run_or_checkpoint: str | Path) -> ResumePoint:
    """The checkpoint a resume continues from: a file named explicitly, or the run's newest valid one.

    :raises FileNotFoundError: ``run_or_checkpoint`` holds no run (neither ``config.yaml`` nor checkpoints).
    :raises CheckpointError: the named file is corrupt, or every checkpoint of the run is.
    """
    path = Path(run_or_checkpoint)
    if path.is_file():
        ckpt, state = load_latest(path)
        return ResumePoint(run_dir_of(ckpt), ckpt, state)
    if not list_checkpoints(path / "checkpoints"):
        if (path / "config.yaml").is_file():
            log.warning("%s holds a run that saved no checkpoint (it stopped before its first one): starting it "
                        "afresh", path)
            return ResumePoint(path, None, None)
        raise FileNotFoundError(f"cannot resume: {path} holds no run (no config.yaml, no checkpoints/); give the "
                                f"run directory a training command wrote, or one of its checkpoint files.")
    ckpt, state = load_latest(path)
    return ResumePoint(path, ckpt, state)


def saved_config(schema_cls: type[T], text: str | None, where: str | Path) -> T:
    """A config saved as YAML (in a checkpoint or ``config.yaml``), as ``schema_cls``; settings added since it was
    saved take their defaults, settings retired since (:data:`RETIRED_KEYS`) are dropped.

    :raises ResumeError: no config saved, or one this version cannot read.
    """
    from omegaconf import DictConfig, OmegaConf

    if not text:
        raise ResumeError(f"{where} carries no config: cannot tell what the run trained with.")
    saved = OmegaConf.create(text)
    for key in RETIRED_KEYS:
        section, _, name = key.rpartition(".")
        node = OmegaConf.select(saved, section) if section else saved
        if isinstance(node, DictConfig) and name in node:
            node.pop(name)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema_cls()), saved)
    except Exception as err:  # OmegaConf's key and validation errors
        raise ResumeError(f"the config saved in {where} does not load ({str(err).splitlines()[0]}); it was "
                          f"written by another version of Reverie.") from err
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def flatten_config(cfg: Any) -> dict[str, Any]:
    """A config dataclass (or nested dict) as ``{"dotted.key": value}``; list elements that are dataclasses or
    dicts are indexed (``optim.phases.0.lr``), lists of plain values stay one value; Enums become their names."""
    from omegaconf import OmegaConf

    tree = OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True) \
        if dataclasses.is_dataclass(cfg) else cfg
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        elif isinstance(node, list) and node and all(isinstance(v, dict) for v in node):
            for i, value in enumerate(node):
                walk(value, f"{prefix}{i}.")
        else:
            out[prefix[:-1]] = node

    walk(tree, "")
    return out


def config_changes(saved: Any, new: Any) -> dict[str, tuple[Any, Any]]:
    """Keys whose values differ between two configs, as ``{key: (saved, new)}`` (``"<absent>"`` for a key only one
    of them has)."""
    a, b = flatten_config(saved), flatten_config(new)
    return {k: (a.get(k, _ABSENT), b.get(k, _ABSENT)) for k in sorted(set(a) | set(b))
            if a.get(k, _ABSENT) != b.get(k, _ABSENT)}


def is_safe(key: str, saved_value: Any, patterns: Iterable[str]) -> bool:
    """Whether ``key`` matches a safe pattern (``+pattern``: only a key the saved config lacks)."""
    for pattern in patterns:
        if pattern.startswith("+"):
            if saved_value == _ABSENT and fnmatch(key, pattern[1:]):
                return True
        elif fnmatch(key, pattern):
            return True
    return False


def check_resume_config(saved: Any, new: Any, safe_keys: Sequence[str], run: str | Path,
                        source: str = "this command") -> dict[str, tuple[Any, Any]]:
    """Refuse a resume whose config differs from the saved one outside ``safe_keys``; log each safe change.

    :param saved: the config the run was saved with. :param new: the config this resume would run with.
    :param safe_keys: patterns of the keys a resume may change (see the module docstring).
    :param run: the run directory (named in the message). :param source: what asked for the change.
    :returns: the changes, as :func:`config_changes`.
    :raises ResumeError: naming each key that may not change, with both values.
    """
    changes = config_changes(saved, new)
    unsafe = {k: v for k, v in changes.items() if not is_safe(k, v[0], safe_keys)}
    if unsafe:
        listed = "; ".join(f"{k}: saved {old!r}, {source} {value!r}" for k, (old, value) in unsafe.items())
        allowed = ", ".join(p.lstrip("+") for p in safe_keys)
        raise ResumeError(
            f"cannot resume {run} with different settings ({listed}). A resumed run continues with the settings "
            f"it was saved with; only {allowed} may change. Resume with `--resume {run}` and overrides of those "
            f"keys only, or start a new run (a new --run-dir) to train with other settings.")
    for key, (old, value) in changes.items():
        log.warning("resume: %s changes from %r to %r", key, old, value)
    return changes


def refuse_shorter_total(point: ResumePoint | None, schema_cls: type, key: str, requested: int, done: int,
                         unit: str = "frames") -> None:
    """Refuse a resume that lowers the run's length (``key``, e.g. ``run.total_frames``) below what it has trained
    (``done``): it would train nothing and rewrite ``config.yaml`` with the lower number. Resuming a finished run
    with its own length (a no-op) is left alone.

    :raises ResumeError: naming the key, both numbers and what to do."""
    if point is None or point.state is None or requested >= done:
        return
    saved: Any = saved_config(schema_cls, point.state.get("config"), point.checkpoint or point.run_dir)
    node = saved
    for part in key.split("."):
        node = getattr(node, part)
    if requested == node:
        return
    raise ResumeError(f"--resume {point.run_dir}: {key}={requested} is below the {done} {unit} the run has trained "
                      f"(saved: {key}={node}); pass a larger {key} to train on, or leave the run as it is.")


def open_run(path: str | Path, resume: bool, schema_cls: type, cfg: Any, safe_keys: Sequence[str],
             resume_from: ResumePoint | None = None) -> tuple[Path, ResumePoint | None]:
    """Where a trainer writes and what it resumes from; checks only, creates nothing (the trainer validates its
    data and settings next, and :class:`worldmodels.common.scaffold.RunScaffold` makes the folder after that).

    :param path: the run directory (or, with ``resume``, one of its checkpoint files).
    :param resume: continue that run. :param schema_cls: the trainer's config class.
    :param cfg: the config this command would run with. :param safe_keys: what a resume may change.
    :param resume_from: the point already found (by the CLI), so the checkpoint is not loaded twice.
    :returns: (run directory, the checkpoint to continue from: None for a new run, or for a run directory that
        saved no checkpoint, which starts afresh there).
    :raises RunExistsError: a new run into a used folder. :raises ResumeError: a resume that changes settings
        outside ``safe_keys``. :raises CheckpointError: only corrupt checkpoints.
    """
    from worldmodels.common.scaffold import check_run_dir

    if not resume:
        return check_run_dir(path, resume=False), None
    point = resume_from or find_resume_point(path)
    if point.state is None:
        return check_run_dir(point.run_dir, resume=False), None
    saved: Any = saved_config(schema_cls, point.state.get("config"), point.checkpoint or point.run_dir)
    check_resume_config(saved, cfg, safe_keys, point.run_dir)
    return point.run_dir, point
