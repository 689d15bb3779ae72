"""Atari game names: turn any common spelling into ale-py's snake_case rom id.

The truth is the list of roms that the installed ale-py ships (``ale_py.roms.get_all_rom_ids()``), so a
game name is valid here exactly when ale-py can load it. Accepted spellings of one game::

    "Pong", "pong", "ALE/Pong-v5", "Pong-v5", "PongNoFrameskip-v4", "PongDeterministic-v4",
    "MontezumaRevenge", "montezuma_revenge", "montezuma-revenge", "ALE/MontezumaRevenge-v5"
"""

from __future__ import annotations

import difflib
import functools
import re

from ale_py import roms

# Gym ids look like "[ALE/]<Name>[NoFrameskip|Deterministic][-v<k>]"; these are stripped before matching.
_VERSION_SUFFIX = re.compile(r"-v\d+$")
_MODE_SUFFIXES = ("NoFrameskip", "Deterministic")
# ale-py ships these roms but they have no single-player mode: loading them fails, and ale-py's own
# registration (ale_py/registration.py, register_v5_envs) skips them for the same reason.
MULTIPLAYER_ONLY = frozenset({"combat", "joust", "maze_craze", "warlords"})


def list_games() -> list[str]:
    """Every playable rom id ale-py ships, sorted, in snake_case (e.g. ``["adventure", "air_raid", ...]``).

    Leaves out :data:`MULTIPLAYER_ONLY` (roms without a single-player mode).
    """
    return sorted(r for r in roms.get_all_rom_ids() if r not in MULTIPLAYER_ONLY)


def display_name(rom_id: str) -> str:
    """The CamelCase name Gymnasium registers for a rom id: ``"montezuma_revenge" -> "MontezumaRevenge"``.

    Uses the same rule as ``ale_py.registration.rom_id_to_name`` so that ``f"ALE/{display_name(r)}-v5"``
    is always a registered id. ``rom_id`` may be any accepted spelling (it is resolved first).
    """
    return resolve_game(rom_id).title().replace("_", "")


def _squash(name: str) -> str:
    """Lower-case and drop separators, so "MontezumaRevenge" and "montezuma_revenge" compare equal."""
    return re.sub(r"[\s_\-]", "", name).lower()


@functools.lru_cache(maxsize=1)
def _squashed_to_rom() -> dict[str, str]:
    table: dict[str, str] = {}
    for rom in roms.get_all_rom_ids():
        key = _squash(rom)
        # Two roms that differ only by underscores would make resolution ambiguous; ale-py has none today.
        if key in table:
            raise RuntimeError(f"ale-py rom ids {table[key]!r} and {rom!r} collide after removing '_'")
        table[key] = rom
    return table


def _strip_gym_decorations(name: str) -> str:
    base = name.strip()
    if base.startswith("ALE/"):
        base = base[len("ALE/") :]
    base = _VERSION_SUFFIX.sub("", base)
    for suffix in _MODE_SUFFIXES:
        if base.endswith(suffix) and len(base) > len(suffix):
            base = base[: -len(suffix)]
    return base


@functools.lru_cache(maxsize=512)
def resolve_game(name: str) -> str:
    """Return ale-py's snake_case rom id for a game name in any common spelling.

    :param name: e.g. ``"Pong"``, ``"ALE/Pong-v5"``, ``"PongNoFrameskip-v4"``, ``"montezuma_revenge"``.
    :returns: the rom id, e.g. ``"pong"``, ``"montezuma_revenge"``.
    :raises ValueError: for an unknown game; the message names the input, lists close matches and says how
        to list every game.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"game name must be a non-empty string, got {name!r}")
    table = _squashed_to_rom()
    key = _squash(_strip_gym_decorations(name))
    if key in table:
        rom = table[key]
        if rom in MULTIPLAYER_ONLY:
            raise ValueError(
                f"Atari game {name!r} (rom {rom!r}) has no single-player mode, so ale-py cannot load it; "
                "pick another game (`python -c 'import envs; print(envs.list_games())'`)."
            )
        return rom
    playable = [k for k, rom in table.items() if rom not in MULTIPLAYER_ONLY]
    close = difflib.get_close_matches(key, playable, n=5, cutoff=0.6)
    suggestions = ", ".join(repr(table[c]) for c in close) if close else "none"
    raise ValueError(
        f"unknown Atari game {name!r}. Close matches: {suggestions}. "
        "List all games with `python -c 'import envs; print(envs.list_games())'`."
    )
