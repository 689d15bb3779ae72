"""Config loading: presets, overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.dqn.config import DQNConfig, validate
from launch.config import CONFIG_DIR, ConfigError, load_config, to_yaml
from worldmodels.common.scaffold import RunExistsError, prepare_run_dir

AGENT_PRESETS = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if not p.stem.startswith(("vae_", "video_", "gvae_")))


@pytest.mark.parametrize("preset", AGENT_PRESETS)
def test_every_agent_preset_loads_and_validates(preset: str) -> None:
    from agents.registry import get_builder
    from launch.config import peek_algo

    builder = get_builder(peek_algo([preset]))  # the preset's algo key picks the schema, as in `reverie train`
    cfg = load_config(builder.config_class, [preset])
    builder.validate(cfg)
    assert cfg.algo == builder.name


def test_presets_stack_and_overrides_win() -> None:
    cfg = load_config(DQNConfig, ["dqn_nature"], ["agent.lr=0.001", "runtime.num_actors=3"])
    assert cfg.env.preset == "nature"            # from dqn_nature
    assert cfg.replay.capacity == 1_000_000      # inherited from dqn_pong
    assert cfg.agent.lr == 0.001 and cfg.runtime.num_actors == 3


def test_dopamine_preset_values() -> None:
    cfg = load_config(DQNConfig, ["dqn_pong"])
    assert (cfg.agent.lr, cfg.agent.adam_eps, cfg.agent.update_period) == (6.25e-5, 1.5e-4, 4)
    assert cfg.agent.target_update_frames == 32_000 and cfg.agent.learning_starts_frames == 80_000
    assert cfg.exploration.eps_end == 0.01 and cfg.exploration.eps_decay_frames == 1_000_000


def test_unknown_key_names_key_and_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"agent\.lrate.*Did you mean agent\.lr.*Valid keys: agent\.gamma"):
        load_config(DQNConfig, [], ["agent.lrate=1"])


def test_unknown_key_in_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("replay:\n  capacty: 10\n")
    with pytest.raises(ConfigError, match=r"replay\.capacty.*bad\.yaml.*replay\.capacity"):
        load_config(DQNConfig, [bad])


def test_wrong_type_names_key() -> None:
    with pytest.raises(ConfigError, match=r"run\.seed"):
        load_config(DQNConfig, [], ["run.seed=abc"])


def test_malformed_override_and_missing_preset() -> None:
    with pytest.raises(ConfigError, match="key=value"):
        load_config(DQNConfig, [], ["run.seed"])
    with pytest.raises(ConfigError, match="not found.*smoke"):
        load_config(DQNConfig, ["no_such_preset"])


def test_validate_rejects_impossible_values() -> None:
    # String choices are Enums: OmegaConf refuses a bad one while loading, naming the key and the choices.
    with pytest.raises(ConfigError, match=r"env\.preset.*atari2600.*machado, nature"):
        load_config(DQNConfig, ["smoke"], ["env.preset=atari2600"])
    with pytest.raises(ConfigError, match=r"exploration\.bonus.*cst.*none, cts, pixelcnn"):
        load_config(DQNConfig, ["smoke"], ["exploration.bonus=cst"])
    cfg = load_config(DQNConfig, ["smoke"], ["replay.capacity=100"])
    with pytest.raises(ValueError, match="replay.capacity=100 is too small"):
        validate(cfg)
    with pytest.raises(ValueError, match="env.colour=true applies to Atari games only"):
        validate(load_config(DQNConfig, ["dqn_minatar"], ["env.colour=true"]))
    with pytest.raises(ValueError, match="env.colour=true needs env.backend='ale_vector'"):
        validate(load_config(DQNConfig, ["dqn_pong"], ["env.colour=true", "env.backend=gymnasium"]))


def test_saved_yaml_round_trips(tmp_path: Path) -> None:
    cfg = load_config(DQNConfig, ["smoke"], ["run.seed=7"])
    (tmp_path / "config.yaml").write_text(to_yaml(cfg))
    again = load_config(DQNConfig, [tmp_path / "config.yaml"])
    assert again == cfg


def test_existing_run_dir_is_never_overwritten(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("x")
    (run / "checkpoints" / "ckpt_000000001000.pt").write_bytes(b"")
    with pytest.raises(RunExistsError, match="--resume"):
        prepare_run_dir(run, resume=False)
    assert prepare_run_dir(run, resume=True) == run
    assert (run / "config.yaml").read_text() == "x"
    # A config without a checkpoint is a start that failed: a new start reuses the folder.
    (run / "checkpoints" / "ckpt_000000001000.pt").unlink()
    assert prepare_run_dir(run, resume=False) == run and not (run / "config.yaml").exists()
    with pytest.raises(FileNotFoundError, match="no run"):
        prepare_run_dir(tmp_path / "other", resume=True)


VIDEO_PRESETS = sorted(p.stem for p in CONFIG_DIR.glob("video_*.yaml"))


@pytest.mark.parametrize("name", VIDEO_PRESETS)
def test_every_video_preset_loads_and_validates(name: str) -> None:
    from worldmodels.video import VideoFitConfig
    from worldmodels.video.config import validate as validate_video

    cfg = load_config(VideoFitConfig, [name])
    validate_video(cfg)
    assert cfg.optim.phases and cfg.model.context >= 1
