"""Loading configs: dataclass defaults <- YAML presets <- ``key=value`` overrides.

Built on OmegaConf structured configs, which reject unknown keys and wrong types; this module turns their
messages into errors that name the key and list the valid ones. Presets may stack (``defaults: [other]``
inside a YAML file, or several files on the command line), like DreamerV3's ``--configs atari debug``.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar, overload

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

from worldmodels.common.resume import ResumePoint, config_changes, find_resume_point, is_safe

T = TypeVar("T")


#: The repository's presets: ``reverie train smoke`` finds ``configs/smoke.yaml``.
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(ValueError):
    """A config file or override that cannot be applied; the message says what to change."""


def resolve_preset(name_or_path: str | Path) -> Path:
    """Find a YAML preset by path or by name in ``configs/``.

    :raises ConfigError: if neither exists, listing the presets there are.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    for candidate in (CONFIG_DIR / path, CONFIG_DIR / f"{path}.yaml"):
        if candidate.is_file():
            return candidate
    known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    raise ConfigError(f"config {str(name_or_path)!r} not found: give a YAML path or one of {', '.join(known)}.")


def _valid_keys(schema: Any, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(schema):
        value = getattr(schema, f.name)
        if dataclasses.is_dataclass(value):
            keys += _valid_keys(value, f"{prefix}{f.name}.")
        elif isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
            keys += _valid_keys(value[0], f"{prefix}{f.name}.N.")  # list elements: optim.phases.N.lr
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def _explain(err: Exception, schema: Any, where: str) -> ConfigError:
    valid = _valid_keys(schema)
    full_key = getattr(err, "full_key", None) or ""
    key = re.sub(r"\[\d+\]", ".N", full_key)  # optim.phases[0].lr -> optim.phases.N.lr, as _valid_keys spells it
    if isinstance(err, (ConfigAttributeError, ConfigKeyError)):
        close = difflib.get_close_matches(key, valid, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        section = key.rsplit(".", 1)[0] + "." if "." in key else ""
        same = [k for k in valid if k.startswith(section)] if section else valid
        return ConfigError(f"unknown config key {full_key!r} in {where}.{hint} Valid keys: {', '.join(same)}.")
    msg = str(err).splitlines()[0]
    return ConfigError(f"bad value for config key {full_key!r} in {where}: {msg}")


def _load_yaml(path: Path, seen: tuple[Path, ...] = ()) -> list[Any]:
    """A preset and the presets it names under ``defaults`` (applied first), as OmegaConf nodes."""
    if path in seen:
        raise ConfigError(f"config {path} includes itself through 'defaults'.")
    try:
        node = OmegaConf.load(path)
    except Exception as err:  # YAML syntax errors come in several types
        raise ConfigError(f"cannot parse YAML config {path}: {err}") from err
    if node is None:
        return []
    if not isinstance(node, DictConfig):  # what OmegaConf.is_dict checks, in a form mypy narrows
        raise ConfigError(f"config {path} must be a mapping of keys, not {type(node).__name__}.")
    layers: list[Any] = []
    base = node.pop("defaults", None)
    for name in base or []:
        layers += _load_yaml(resolve_preset(path.parent / f"{name}.yaml")
                             if (path.parent / f"{name}.yaml").is_file() else resolve_preset(name),
                             (*seen, path))
    layers.append((node, str(path)))
    return layers


def _stacked_layers(presets: Sequence[str | Path]) -> list[Any]:
    """The layers of several presets in order, each file applied once: a preset that a later one names under
    ``defaults`` but that an earlier one already brought in is not applied again (``reverie train dqn_catch smoke``:
    smoke's ``defaults: [dqn_pong]`` must not undo dqn_catch's game)."""
    applied: set[str] = set()
    layers = []
    for preset in presets:
        for node, where in _load_yaml(resolve_preset(preset)):
            key = str(Path(where).resolve())
            if key not in applied:
                applied.add(key)
                layers.append((node, where))
    return layers


def preset_names(kind: str, algo: str | None = None) -> list[str]:
    """The presets in ``configs/`` of one command, read from the files (never listed by hand).

    :param kind: "agent" (``reverie train``: presets with an ``env`` section), "vae" (``fit-vae``: an
        ``estimator`` section), "gvae" (``fit-gvae``: the ``gvae_*`` files) or "world-model" (``fit-world-model``:
        the rest with a ``model`` section).
    :param algo: agent presets of this algorithm only (``actor_critic`` for ``reverie sb3``).
    """
    names = []
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        try:
            found = preset_kind(path)
        except ConfigError:
            continue  # a broken preset is reported when it is used, not in --help
        if found == kind and (algo is None or peek_algo([path]) == algo):
            names.append(path.stem)
    return names


def preset_kind(preset: str | Path) -> str | None:
    """Which command's preset this is, as :func:`preset_names` sorts them ("agent", "vae", "gvae", "world-model"),
    from its keys; None for an overlay that sets none of the telling sections (``smoke``).

    :raises ConfigError: a preset that does not load."""
    path = resolve_preset(preset)
    keys = {str(k) for node, _ in _stacked_layers([path]) for k in node}
    return "vae" if "estimator" in keys else "agent" if "env" in keys or "algo" in keys else \
        "gvae" if path.stem.startswith("gvae_") else "world-model" if "model" in keys else None


#: The preset kind of each training command, and the command of each kind.
_COMMAND_KIND = {"train": "agent", "sb3": "agent", "fit-vae": "vae", "fit-gvae": "gvae",
                 "fit-world-model": "world-model"}
_KIND_COMMAND = {"agent": "train", "vae": "fit-vae", "gvae": "fit-gvae", "world-model": "fit-world-model"}


def check_presets_for(command: str, presets: Sequence[str | Path]) -> None:
    """Refuse a preset of another command (``reverie train vae_tiny``), naming the command it configures.

    :raises ConfigError: naming the preset and its command."""
    wanted = _COMMAND_KIND.get(command)
    if wanted is None:
        return
    for preset in presets:
        kind = preset_kind(preset)
        # fit-gvae and fit-world-model presets share their sections (told apart by name only): never refused
        # between those two, a user's own YAML may be either.
        if kind is None or kind == wanted or {kind, wanted} == {"gvae", "world-model"}:
            continue
        raise ConfigError(f"{preset} is a `reverie {_KIND_COMMAND[kind]}` preset, not one of `reverie {command}`: "
                          f"run `reverie {_KIND_COMMAND[kind]} {preset} ...` (`reverie {command} --help` lists this "
                          f"command's presets).")


def split_presets(config: str | None, extra: list[str]) -> tuple[list[str], list[str]]:
    """The command line's ``CONFIG [CONFIG ...] [key=value ...]``: presets (words without "=", applied in order)
    and overrides. ``reverie train dqn_catch smoke run.seed=3`` stacks smoke on dqn_catch, then sets the seed.
    CONFIG may be absent (``reverie train --resume RUN run.total_frames=...``)."""
    words = ([config] if config is not None else []) + list(extra)
    return [w for w in words if "=" not in w], [w for w in words if "=" in w]


def peek_algo(presets: Sequence[str | Path], overrides: Sequence[str] = (), default: str = "dqn") -> str:
    """The ``algo`` the stacked presets and overrides select (the last one that sets it wins), read before any
    schema is chosen; ``default`` if none sets it."""
    algo = default
    for node, _ in _stacked_layers(presets):
        if "algo" in node:
            algo = str(node["algo"])
    for item in overrides:
        key, _, value = item.partition("=")
        if key.strip() == "algo":
            algo = value.strip()
    return algo


def load_config(schema_cls: type[T], presets: Sequence[str | Path] = (), overrides: Sequence[str] = (),
                base: T | None = None) -> T:
    """Merge defaults, presets (in order) and ``key=value`` overrides into a typed config object.

    :param schema_cls: the dataclass tree, e.g. ``agents.dqn.config.DQNConfig``.
    :param presets: YAML paths or names in ``configs/``.
    :param overrides: dotted ``key=value`` strings; values are parsed as YAML (``true``, ``1e-4``, ``null``).
    :param base: start from this config instead of the defaults (a resumed run's saved config).
    :raises ConfigError: unknown key, wrong type or malformed override, naming the key and the valid ones.
    """
    schema = schema_cls()
    cfg = OmegaConf.structured(base if base is not None else schema)
    for node, where in _stacked_layers(presets):
        try:
            cfg = OmegaConf.merge(cfg, node)
        except (ConfigAttributeError, ConfigKeyError, ValidationError) as err:
            raise _explain(err, schema, where) from err
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. run.seed=3).")
        key, value = item.split("=", 1)
        try:
            if any(part.isdigit() for part in key.split(".")):
                # A path through a list (optim.phases.1.lr=...): merging a dotlist would turn the list into a
                # dict, so update the element in place, after checking the index exists.
                _check_list_path(cfg, key)
                OmegaConf.update(cfg, key, OmegaConf.from_dotlist([f"v={value}"]).v, merge=True)
            else:
                cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([item]))
        except (ConfigAttributeError, ConfigKeyError, ValidationError) as err:
            raise _explain(err, schema, f"override {item!r}") from err
    return OmegaConf.to_object(cfg)  # type: ignore[return-value]


def _check_list_path(cfg: Any, key: str) -> None:
    """:raises ConfigError: an index past the end of a list on the way to ``key``."""
    node, walked = cfg, []
    for part in key.split(".")[:-1]:
        walked.append(part)
        if OmegaConf.is_list(node):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"override {key!r}: {'.'.join(walked[:-1])} has {len(node)} entries "
                                  f"(indices 0..{len(node) - 1}); set the whole list instead, e.g. "
                                  f"{'.'.join(walked[:-1])}=[...].")
            node = node[int(part)]
        else:
            node = node[part] if part in node else None
            if node is None:
                return  # an unknown key: OmegaConf's own error names it
    return


@overload
def load_run_config(schema_cls: type[T], run_or_checkpoint: str | Path) -> tuple[T, dict[str, Any], Path]: ...
@overload
def load_run_config(schema_cls: None, run_or_checkpoint: str | Path) -> tuple[Any, dict[str, Any], Path]: ...
def load_run_config(schema_cls: type[T] | None, run_or_checkpoint: str | Path) -> tuple[T, dict[str, Any], Path]:
    """The config a run trained with, its newest checkpoint (or the checkpoint given) and that file's path.

    The config is the one embedded in the checkpoint (exactly what trained those weights), or else the run
    directory's ``config.yaml``. With ``schema_cls=None`` the schema is the config class of the algorithm the
    checkpoint names (``algo``; an older checkpoint without it is migrated or refused by
    :meth:`agents.runtime.algorithm.CheckpointLayout.migrate`).

    :raises worldmodels.common.checkpoint.CheckpointError: no (readable) checkpoint there.
    :raises ConfigError: neither the checkpoint nor the run directory holds a config, or it does not load.
    """
    from worldmodels.common.checkpoint import load_latest
    from worldmodels.common.resume import ResumeError, run_dir_of, saved_config

    path, ckpt = load_latest(run_or_checkpoint)
    run_dir = run_dir_of(path)
    text = ckpt.get("config")
    if schema_cls is None:
        from agents.registry import get_builder
        from agents.runtime.algorithm import CheckpointLayout

        schema_cls = get_builder(CheckpointLayout.algo(ckpt, path)).config_class
    if text:
        try:
            return saved_config(schema_cls, text, path), ckpt, path
        except ResumeError as err:
            raise ConfigError(str(err)) from err
    if (run_dir / "config.yaml").is_file():
        return load_config(schema_cls, [run_dir / "config.yaml"]), ckpt, path
    raise ConfigError(f"{path} carries no config and {run_dir} has no config.yaml: cannot rebuild the network.")


def resume_config(schema_cls: type[T], point: ResumePoint, presets: Sequence[str | Path],
                  overrides: Sequence[str], safe_keys: Sequence[str]) -> T:
    """The config a resumed run continues with: the run's saved config, with ``overrides`` applied (the trainer
    refuses those outside ``safe_keys``). Presets named on the command line are not applied: with the overrides
    they must describe the saved config outside ``safe_keys`` (else :class:`ConfigError`; retyping the command that
    started the run does), and where they differ on a safe key the saved value stays. A folder whose run saved no
    checkpoint starts afresh from the presets given, or else from its own ``config.yaml``.

    :raises ConfigError: the presets contradict the run's settings, or an override does not apply.
    """
    from worldmodels.common.resume import ResumeError, saved_config

    run_dir = point.run_dir
    if point.state is None:
        return load_config(schema_cls, presets or [run_dir / "config.yaml"], overrides)
    text = point.state.get("config")
    if not text and (run_dir / "config.yaml").is_file():
        text = (run_dir / "config.yaml").read_text()
    try:
        saved = saved_config(schema_cls, text, point.checkpoint or run_dir)
    except ResumeError as err:
        raise ConfigError(str(err)) from err
    if presets:
        # The command names presets: it must describe this run (as retyping the command that started it does).
        named = load_config(schema_cls, presets, overrides)
        differ = {k: v for k, v in config_changes(saved, named).items() if not is_safe(k, v[0], safe_keys)}
        if differ:
            listed = "; ".join(f"{k}: saved {old!r}, this command {new!r}"
                               for k, (old, new) in list(differ.items())[:8])
            more = f"; and {len(differ) - 8} more" if len(differ) > 8 else ""
            raise ConfigError(
                f"--resume {run_dir}: {' '.join(map(str, presets))} with these overrides does not describe this run "
                f"({listed}{more}). A resumed run continues with its own saved settings: resume with `--resume "
                f"{run_dir}` and no presets (overrides of {', '.join(p.lstrip('+') for p in safe_keys)} are "
                f"allowed), or start a new run.")
    return load_config(schema_cls, [], overrides, base=saved)


def _run_algo(point: ResumePoint, presets: Sequence[str], overrides: Sequence[str]) -> str:
    """The agent algorithm a resumed run trains (the checkpoint's); presets that select another are refused."""
    if point.state is None:  # a run that saved no checkpoint starts afresh, as a new run would
        return peek_algo(presets or [point.run_dir / "config.yaml"], overrides)
    from agents.runtime.algorithm import CheckpointLayout

    algo = CheckpointLayout.algo(point.state, point.checkpoint or point.run_dir)
    if presets and peek_algo(presets, [], default=algo) != algo:
        raise ConfigError(f"--resume {point.run_dir}: the run trains {algo!r}, the presets {' '.join(presets)} "
                          f"select {peek_algo(presets, [], default=algo)!r}; resume with `--resume "
                          f"{point.run_dir}` and no presets.")
    return algo


def config_from_args(schema_cls: type[T] | None, args: argparse.Namespace,
                     safe_keys: Sequence[str] = ()) -> tuple[T, ResumePoint | None]:
    """The config of a training command (``CONFIG [more presets] [key=value ...] [--resume RUN]``) and, when it
    resumes, the checkpoint it continues from.

    :param schema_cls: the config dataclass; None: the agent algorithm the presets select (``algo``), or on resume
        the one the checkpoint names.
    :param safe_keys: the keys a resume may change (the trainer's ``RESUME_SAFE_KEYS``).
    :raises ConfigError: no CONFIG and no --resume, presets that contradict a resumed run, bad overrides.
    """
    presets, overrides = split_presets(args.config, args.overrides)
    if getattr(args, "resume", None) is not None and getattr(args, "run_dir", None):
        raise ConfigError(f"give --resume {args.resume} or --run-dir {args.run_dir}, not both: a resumed run writes "
                          f"into its own directory.")
    if getattr(args, "resume", None) is None:
        if not presets:
            raise ConfigError("give CONFIG (a preset name in configs/ or a YAML path), or --resume RUN_DIR to "
                              "continue a run.")
        if getattr(args, "command", None):
            check_presets_for(args.command, presets)
        if schema_cls is None:
            from agents.registry import get_builder

            schema_cls = get_builder(peek_algo(presets, overrides)).config_class
        return load_config(schema_cls, presets, overrides), None
    from worldmodels.common.runrecord import check_run_command

    if getattr(args, "command", None):  # another command's run says what it is and which command opens it
        check_run_command(args.resume, args.command, usage=f"reverie {args.command} --resume")
    point = find_resume_point(args.resume)
    if schema_cls is None:
        from agents.registry import get_builder

        schema_cls = get_builder(_run_algo(point, presets, overrides)).config_class
    return resume_config(schema_cls, point, presets, overrides, safe_keys), point


def run_fit(schema_cls: type, args: argparse.Namespace, safe_keys: Sequence[str], fit: Any) -> int:
    """A ``fit-*`` command's body (``fit-vae``, ``fit-world-model``, ``fit-gvae``): the config from the command line
    (the run's saved one with ``--resume``), then ``fit(cfg, run_dir=, resume=, config_yaml=, resume_from=)``, whose
    summary is printed as one JSON line."""
    import json

    cfg: Any
    cfg, point = config_from_args(schema_cls, args, safe_keys)
    summary = fit(cfg, run_dir=point.run_dir if point else args.run_dir, resume=point is not None,
                  config_yaml=to_yaml(cfg), resume_from=point)
    print(json.dumps(summary))
    return 0


def to_yaml(cfg: Any) -> str:
    """The config as YAML, as saved in a run directory."""
    from worldmodels.common.scaffold import config_yaml

    return config_yaml(cfg)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments every config-driven command shares: CONFIG, ``key=value`` overrides, --run-dir, --resume."""
    parser.add_argument("config", nargs="?",
                        help="YAML file or preset name in configs/ (optional with --resume: the run's own config)")
    parser.add_argument("overrides", nargs="*",
                        help="more presets to stack on CONFIG, in order (e.g. smoke), then dotted key=value "
                             "overrides (e.g. run.seed=3)")
    parser.add_argument("--run-dir", help="run directory (default runs/<run.name>); must not exist yet")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue this run with its saved settings from its newest valid checkpoint (or "
                             "RUN_DIR/checkpoints/FILE); overrides may change only how long it runs and how often "
                             "it logs, checkpoints and evaluates")
