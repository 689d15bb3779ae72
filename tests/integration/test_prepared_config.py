"""The config a run saves (``config.yaml``, every checkpoint) is the one its learner and actors were built with.

A builder's ``prepare`` derives that config (e.g. a path made absolute) and never changes the caller's: before, DQN
and MFEC rewrote paths in place after the CLI had taken the YAML to save, so the saved config and the actors'
differed (and a resume compared the saved relative path with the prepared absolute one).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from agents.registry import register_algorithm
from agents.runtime.algorithm import ActorParts, ActorSetup, EnvSpec
from launch.cli import main
from tests.algos.tabular_catch import TabularBuilder, TabularConfig, TabularLearner, make_parts
from worldmodels.common.checkpoint import find_checkpoint, load_checkpoint
from worldmodels.common.scaffold import config_yaml

#: The configs the learner and each actor were built with, in order.
BUILT: list[TabularConfig] = []


class PreparingBuilder(TabularBuilder):
    """The tabular test algorithm with a ``prepare`` that derives a config (as DQN's makes a path absolute)."""

    name = "tabular_prepared"

    def prepare(self, cfg: TabularConfig) -> TabularConfig:
        return dataclasses.replace(cfg, agent=dataclasses.replace(cfg.agent, epsilon=0.25))

    def actor_setup(self, cfg: TabularConfig, distributed: bool) -> ActorSetup:
        def parts(actor_cfg: TabularConfig, actor_id: int) -> ActorParts:
            BUILT.append(actor_cfg)
            return make_parts(actor_cfg, actor_id)

        return ActorSetup(parts)

    def make_learner(self, cfg: TabularConfig, spec: EnvSpec, device: Any) -> TabularLearner:
        BUILT.append(cfg)
        return super().make_learner(cfg, spec, device)


BUILDER = PreparingBuilder()
register_algorithm("tabular_prepared", __name__)


def test_the_saved_config_is_what_the_actors_got(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    preset = tmp_path / "prepared.yaml"
    preset.write_text("algo: tabular_prepared\nagent:\n  epsilon: 0.1\n"
                      "run:\n  total_frames: 2000\n  checkpoint_every_frames: 1000\n  eval_episodes: 0\n"
                      "  progress: false\n")
    run = tmp_path / "run"
    BUILT.clear()
    assert main(["train", str(preset), "--run-dir", str(run)]) == 0
    assert len(BUILT) == 2 and BUILT[0] == BUILT[1]  # the learner's config, then the actor's
    got = config_yaml(BUILT[1])
    assert "epsilon: 0.25" in got  # what prepare derived, not the preset's 0.1
    assert (run / "config.yaml").read_text() == got
    assert load_checkpoint(find_checkpoint(run))["config"] == got
    # A resume compares the saved config with the prepared one: the same, so it goes on.
    capsys.readouterr()
    BUILT.clear()
    assert main(["train", "--resume", str(run), "run.total_frames=3000"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["frames"] >= 3000
    assert BUILT and all(c.agent.epsilon == 0.25 for c in BUILT)


def test_dqn_prepare_derives_an_absolute_world_model_path(monkeypatch: pytest.MonkeyPatch) -> None:
    import agents.dqn.informed
    from agents.dqn.config import DQNConfig
    from agents.registry import get_builder
    from launch.config import load_config

    monkeypatch.setattr(agents.dqn.informed, "load_informed_world_model", lambda cfg: None)  # no model file here
    cfg = load_config(DQNConfig, ["dqn_catch"], ["exploration.strategy=informed", "exploration.world_model=wm/run"])
    prepared = get_builder("dqn").prepare(cfg)
    assert cfg.exploration.world_model == "wm/run"  # the caller's config is left alone
    assert prepared.exploration.world_model == str(Path("wm/run").resolve())
    assert dataclasses.replace(prepared, exploration=cfg.exploration) == cfg  # nothing else differs
    plain = load_config(DQNConfig, ["dqn_catch"], [])
    assert get_builder("dqn").prepare(plain) is plain


def test_mfec_prepare_derives_an_absolute_representation_path(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from agents.episodic.config import MFECConfig
    from agents.registry import get_builder
    from launch.config import load_config

    (tmp_path / "vae.pt").write_bytes(b"")  # prepare checks that it exists; the actors load it
    monkeypatch.chdir(tmp_path)
    cfg = load_config(MFECConfig, ["mfec_minatar"], ["representation.kind=gaussian_vae", "representation.path=vae.pt"])
    prepared = get_builder("mfec").prepare(cfg)
    assert cfg.representation.path == "vae.pt"
    assert prepared.representation.path == str(tmp_path.resolve() / "vae.pt")
