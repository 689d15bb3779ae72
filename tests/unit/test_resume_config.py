"""The shared resume rules (worldmodels.common.resume): which config differences a resume may carry."""

from __future__ import annotations

from pathlib import Path

import pytest

from launch.config import load_config
from worldmodels.common.resume import ResumeError, check_resume_config, config_changes, flatten_config, is_safe
from worldmodels.video.config import RESUME_SAFE_KEYS as VIDEO_SAFE
from worldmodels.video.config import VideoFitConfig


def test_flatten_and_changes_index_lists_of_sections() -> None:
    a = load_config(VideoFitConfig, ["video_tiny"])
    flat = flatten_config(a)
    assert flat["optim.phases.0.updates"] == a.optim.phases[0].updates
    assert flat["model.conv_channels"] == a.model.conv_channels  # a list of numbers stays one value
    b = load_config(VideoFitConfig, ["video_tiny"], ["optim.phases.1.updates=77", "model.context=2"])
    assert config_changes(a, b) == {"model.context": (a.model.context, 2),
                                    "optim.phases.1.updates": (a.optim.phases[1].updates, 77)}


def test_safe_patterns_and_appended_stages(tmp_path: Path) -> None:
    assert is_safe("optim.phases.3.lr", "<absent>", ["+optim.phases.*"])
    assert not is_safe("optim.phases.0.lr", 1e-4, ["+optim.phases.*"])
    saved = load_config(VideoFitConfig, ["video_tiny"])
    longer = load_config(VideoFitConfig, ["video_tiny"], ["optim.phases.0.updates=99"])
    assert list(check_resume_config(saved, longer, VIDEO_SAFE, tmp_path)) == ["optim.phases.0.updates"]
    with pytest.raises(ResumeError, match=r"optim.phases.0.lr: saved .*, this command 0.5"):
        check_resume_config(saved, load_config(VideoFitConfig, ["video_tiny"], ["optim.phases.0.lr=0.5"]),
                            VIDEO_SAFE, tmp_path)


def test_a_fit_refuses_to_resume_another_trainers_checkpoint(tmp_path: Path) -> None:
    from launch.config import to_yaml
    from worldmodels.common.checkpoint import save_checkpoint
    from worldmodels.common.fit import start_fit

    cfg = load_config(VideoFitConfig, ["video_tiny"], ["run.seed=7"])
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(to_yaml(cfg))
    save_checkpoint(run / "checkpoints", 10, {"gvae": {}, "config": to_yaml(cfg)})
    with pytest.raises(ResumeError, match="its checkpoint is not a fit-world-model checkpoint"):
        start_fit(cfg, VideoFitConfig, VIDEO_SAFE, run, True, None, "", "world_model", "fit-world-model")
    fresh = start_fit(cfg, VideoFitConfig, VIDEO_SAFE, tmp_path / "new", False, None, "", "world_model",
                      "fit-world-model")
    assert fresh.ckpt is None and fresh.path == tmp_path / "new" and not fresh.path.exists()
    assert "seed: 7" in fresh.config_yaml and fresh.device.type == "cpu"
