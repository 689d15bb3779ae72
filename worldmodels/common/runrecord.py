"""Which command made a run directory, so that every command that opens one can say what it is.

:class:`worldmodels.common.scaffold.RunScaffold` writes ``run.json`` (``{"command": "train", "algo": "dqn"}``)
into every run directory it opens. :func:`run_kind` reads it, or, for a run written before the record existed,
tells the command from the run's ``config.yaml`` and checkpoints. :func:`check_run_command` refuses a directory
another command made with one line naming what it is and the commands that open it (never "written by another
version of Reverie", nor "saved no checkpoint").
"""

from __future__ import annotations

import json
from pathlib import Path

RECORD = "run.json"

#: How each command's runs are opened (``{run}``: the run directory).
OPENERS: dict[str, tuple[str, ...]] = {
    "train": ("reverie train --resume {run}", "reverie evaluate {run}"),
    "sb3": ("reverie sb3 --resume {run}",),
    "fit-vae": ("reverie fit-vae --resume {run}", "reverie evaluate-vae {run} --data DATA"),
    "fit-gvae": ("reverie fit-gvae --resume {run}", "reverie evaluate-vae {run} --data DATA"),
    "fit-world-model": ("reverie fit-world-model --resume {run}", "reverie imagine {run} --data DATA"),
}


class WrongRunError(ValueError):
    """A run directory made by another command than the one opening it."""


def write_record(run_dir: Path, command: str, algo: str | None = None) -> None:
    """Record in ``run_dir`` which command (and algorithm) writes it (atomically)."""
    from worldmodels.common.atomic import atomic_write

    atomic_write(Path(run_dir) / RECORD, (json.dumps({"command": command, "algo": algo}) + "\n").encode())


def _run_dir(path: Path) -> Path:
    if path.is_file():
        return path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return path


def run_kind(run_or_checkpoint: str | Path) -> tuple[str, str | None] | None:
    """(command, algorithm) that made a run directory (or the run of a checkpoint file); None if it cannot tell."""
    run_dir = _run_dir(Path(run_or_checkpoint))
    try:
        record = json.loads((run_dir / RECORD).read_text())
        return str(record["command"]), record.get("algo")
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if list((run_dir / "checkpoints").glob("ckpt_*.zip")):  # only SB3 saves zips under that name
        return "sb3", None
    try:
        from omegaconf import OmegaConf

        cfg = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"))
    except Exception:  # no config, or not YAML: not a run this can name
        return None
    if not isinstance(cfg, dict):
        return None
    section = cfg.get("run")
    run: dict = section if isinstance(section, dict) else {}
    if "algo" in cfg or "env" in cfg:
        return "train", str(cfg.get("algo", "dqn"))
    if "estimator" in cfg:
        return "fit-vae", None
    if "total_steps" in run:
        return "fit-gvae", None
    if "checkpoint_every_updates" in run:
        return "fit-world-model", None
    return None


def check_run_command(run_or_checkpoint: str | Path, command: str, algos: tuple[str, ...] | None = None,
                      usage: str | None = None) -> None:
    """Refuse a run directory that ``command`` cannot open, saying what it is and which commands open it.

    :param command: the command the run must have been made by. :param algos: its algorithms that may be opened.
    :param usage: how the refusing command is named in the message (default ``reverie COMMAND``).
    :raises WrongRunError: a run made by another command, or of another algorithm.
    """
    kind = run_kind(run_or_checkpoint)
    if kind is None:
        return
    theirs, algo = kind
    if theirs == command and (algos is None or algo in algos):
        return
    run_dir = _run_dir(Path(run_or_checkpoint))
    what = f"a `reverie {theirs}` run" + (f" of {algo}" if algo else "")
    wanted = f"a `reverie {command}` run" + (f" of {' or '.join(algos)}" if algos else "")
    openers = " or ".join(f"`{o.format(run=run_dir)}`" for o in OPENERS.get(theirs, ()))
    raise WrongRunError(f"{run_dir} is {what}; {usage or f'reverie {command}'} opens {wanted}"
                        + (f". Open this one with {openers}." if openers else "."))
