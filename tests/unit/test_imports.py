"""Imports point one way: ``launch -> agents -> (worldmodels, envs)``, ``envs -> worldmodels``.

Every module is parsed (no import is run), and every import counts, those inside functions too: a deferred import
is still a dependency. ``agents/runtime`` never imports an algorithm folder, and an env family (Atari, MinAtar,
Catch) never imports another: the generic layers must not know the specific ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    """Absolute module names a file imports anywhere in its body (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names.add(".".join([*base, node.module] if node.module else base))
            else:
                names.add(node.module or "")
    return names


def modules_under(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def offenders(folder: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    bad = []
    for path in modules_under(folder):
        for name in sorted(imported_modules(path)):
            if name.startswith(allowed):
                continue
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    return bad


def test_the_checker_sees_imports_inside_functions_and_relative_ones() -> None:
    import tempfile

    with tempfile.TemporaryDirectory(dir=ROOT / "worldmodels") as folder:
        probe = Path(folder) / "probe.py"
        probe.write_text("def f():\n    from agents.runtime import loop\n    import launch.cli\n"
                         "    from ..common import checks\n")
        assert imported_modules(probe) == {"agents.runtime", "launch.cli", "worldmodels.common"}


@pytest.mark.parametrize("folder", ["worldmodels", "envs"])
def test_worldmodels_and_envs_import_neither_agents_nor_launch(folder: str) -> None:
    assert offenders(folder, ("agents", "launch")) == []


def test_worldmodels_does_not_import_envs() -> None:
    assert offenders("worldmodels", ("envs",)) == []


def test_agents_never_import_launch() -> None:
    assert offenders("agents", ("launch",)) == []


#: Component folders under ``agents/``: shared parts that algorithms pick, not algorithms.
COMPONENTS = ("runtime", "replay")


def algorithm_folders() -> tuple[str, ...]:
    return tuple(f"agents.{p.name}" for p in (ROOT / "agents").iterdir()
                 if p.is_dir() and (p / "__init__.py").exists() and p.name not in COMPONENTS)


def test_runtime_never_imports_an_algorithm_folder() -> None:
    algorithms = algorithm_folders()
    assert "agents.dqn" in algorithms and "agents.replay" not in algorithms
    assert offenders("agents/runtime", algorithms + ("agents.registry", "agents.replay")) == []


def test_replay_imports_neither_the_runtime_nor_an_algorithm() -> None:
    """Replay is a component below the algorithms: it knows no algorithm and not the loop."""
    assert offenders("agents/replay", algorithm_folders() + ("agents.registry", "agents.runtime")) == []


def test_runtime_holds_only_the_loop_the_actors_ray_and_the_seam() -> None:
    assert sorted(p.name for p in (ROOT / "agents" / "runtime").glob("*.py")) == [
        "__init__.py", "actor.py", "algorithm.py", "config.py", "evaluate.py", "local.py", "loop.py",
        "ray_runtime.py"]


@pytest.mark.parametrize(("family", "others"), [
    ("envs/atari.py", ("envs.toy", "envs.minatar")),
    ("envs/toy.py", ("envs.atari", "envs.minatar")),
    ("envs/minatar.py", ("envs.atari", "envs.toy")),
])
def test_an_env_family_does_not_import_another(family: str, others: tuple[str, ...]) -> None:
    names = imported_modules(ROOT / family)
    assert not [n for n in names if n.startswith(others)]


def test_no_two_test_modules_share_a_file_name() -> None:
    # tests/unit and tests/integration have no __init__.py, so pytest imports their files by base name: a second
    # test_x.py anywhere under tests/ stops the whole run at collection ("import file mismatch").
    seen: dict[str, Path] = {}
    clashes = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        if path.name in seen:
            clashes.append(f"{seen[path.name].relative_to(ROOT)} and {path.relative_to(ROOT)}")
        seen.setdefault(path.name, path)
    assert not clashes, f"rename one of each pair: {clashes}"
