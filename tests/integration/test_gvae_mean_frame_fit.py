"""`reverie fit-gvae ... model.mean_frame=true` on the tiny dataset of test_gvae_training: the fit takes the per-pixel
mean of its training frames before the first update, the checkpoint keeps it, a resumed fit keeps it too, and the
checkpoint embeds as the ``gaussian_vae`` representation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.integration.test_gvae_training import TINY, fit_gvae_cli, write_dataset
from worldmodels.common.checkpoint import list_checkpoints, load_checkpoint
from worldmodels.data import TrajectoryDataset
from worldmodels.representations import make_representation
from worldmodels.representations.gaussian_vae import GaussianVAE


@pytest.mark.filterwarnings("ignore:The Gaussian VAE at .* has collapsed")  # 36 tiny updates: it has, and says so
def test_fit_gvae_starts_from_the_training_frames_mean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, run = write_dataset(tmp_path / "data"), tmp_path / "run"
    fit = fit_gvae_cli(["gvae_paper", f"data.path={data}", *TINY, "model.mean_frame=true", "--run-dir", str(run)],
                       capsys)
    assert fit["steps"] == 24 and np.isfinite(fit["elbo_nats"])
    train = np.concatenate([a["frames"] for a in TrajectoryDataset(data, "train").iter_shards()])
    assert len(train) < 8192  # every training frame is in the sample here
    expected = train.astype(np.float64).mean(0) / 255.0
    first = load_checkpoint(list_checkpoints(run / "checkpoints")[0])["gvae"]
    assert first["config"]["mean_frame"] is True
    np.testing.assert_allclose(first["weights"]["frame_mean"][0, 0].numpy(), expected, atol=1e-6)
    fit_gvae_cli(["--resume", str(run), "run.total_steps=36"], capsys)
    last = load_checkpoint(list_checkpoints(run / "checkpoints")[-1])
    assert last["steps"] == 36
    np.testing.assert_array_equal(last["gvae"]["weights"]["frame_mean"], first["weights"]["frame_mean"])
    frames = np.stack([np.full((84, 84), 30, np.uint8), np.full((84, 84), 220, np.uint8)])
    key = make_representation("gaussian_vae", (84, 84), 64, path=str(run)).embed(frames)
    np.testing.assert_array_equal(key, GaussianVAE.from_export(last["gvae"]).embed(frames))
