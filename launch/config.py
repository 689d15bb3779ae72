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

T = TypeVar("T")

#: Keys that configs saved by older versions may hold and that were removed since: ``env.frame_skip`` was never
#: passed to the env (the frame skip is the env's own: 4 on Atari, 1 on MinAtar).
RETIRED_KEYS = ("env.frame_skip",)

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


def split_presets(config: str, extra: list[str]) -> tuple[list[str], list[str]]:
    """The command line's ``CONFIG [CONFIG ...] [key=value ...]``: presets (words without "=", applied in order)
    and overrides. ``reverie train dqn_catch smoke run.seed=3`` stacks smoke on dqn_catch, then sets the seed."""
    presets = [config] + [item for item in extra if "=" not in item]
    return presets, [item for item in extra if "=" in item]


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


def load_config(schema_cls: type[T], presets: Sequence[str | Path] = (), overrides: Sequence[str] = ()) -> T:
    """Merge defaults, presets (in order) and ``key=value`` overrides into a typed config object.

    :param schema_cls: the dataclass tree, e.g. ``agents.dqn.config.DQNConfig``.
    :param presets: YAML paths or names in ``configs/``.
    :param overrides: dotted ``key=value`` strings; values are parsed as YAML (``true``, ``1e-4``, ``null``).
    :raises ConfigError: unknown key, wrong type or malformed override, naming the key and the valid ones.
    """
    schema = schema_cls()
    cfg = OmegaConf.structured(schema)
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
    checkpoint names (``algo``; older checkpoints without it are DQN's).

    :raises worldmodels.common.checkpoint.CheckpointError: no (readable) checkpoint there.
    :raises ConfigError: neither the checkpoint nor the run directory holds a config, or it does not load.
    """
    from worldmodels.common.checkpoint import find_checkpoint, load_checkpoint

    path = find_checkpoint(run_or_checkpoint)
    ckpt = load_checkpoint(path)
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    text = ckpt.get("config")
    if schema_cls is None:
        from agents.registry import get_builder

        algo = ckpt.get("algo") or (OmegaConf.create(text).get("algo") if text else None) or "dqn"
        schema_cls = get_builder(str(algo)).config_class
    if text:
        schema = schema_cls()
        saved = OmegaConf.create(text)
        for key in RETIRED_KEYS:  # settings older runs saved that no longer exist (their behaviour is kept)
            section, _, name = key.rpartition(".")
            node = OmegaConf.select(saved, section) if section else saved
            if node is not None and name in node:
                node.pop(name)
        try:
            cfg = OmegaConf.merge(OmegaConf.structured(schema), saved)
        except (ConfigAttributeError, ConfigKeyError, ValidationError) as err:
            raise _explain(err, schema, f"the config saved in {path}") from err
        return OmegaConf.to_object(cfg), ckpt, path  # type: ignore[return-value]
    if (run_dir / "config.yaml").is_file():
        return load_config(schema_cls, [run_dir / "config.yaml"]), ckpt, path
    raise ConfigError(f"{path} carries no config and {run_dir} has no config.yaml: cannot rebuild the network.")


def to_yaml(cfg: Any) -> str:
    """The config as YAML, as saved in a run directory."""
    from worldmodels.common.scaffold import config_yaml

    return config_yaml(cfg)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments every config-driven command shares: CONFIG, ``key=value`` overrides, --run-dir, --resume."""
    parser.add_argument("config", help="YAML file or preset name in configs/")
    parser.add_argument("overrides", nargs="*",
                        help="more presets to stack on CONFIG, in order (e.g. smoke), then dotted key=value "
                             "overrides (e.g. run.seed=3)")
    parser.add_argument("--run-dir", help="run directory (default runs/<run.name>); must not exist yet")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue this run from its newest checkpoint")
