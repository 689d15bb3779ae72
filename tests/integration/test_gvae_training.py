"""fit-gvae end to end on a tiny dataset written here: training, TensorBoard, PNGs, held-out ELBO, checkpoints, resume
(through ``launch.gvae_cli``), then the checkpoint as the ``gaussian_vae`` representation; and a tiny fit-vae run as
the ``binary_vae`` representation."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from launch.config import load_config
from worldmodels.common.checkpoint import list_checkpoints, load_checkpoint
from worldmodels.data import DatasetError, DatasetWriter
from worldmodels.representations import load_representation, make_representation, representation_spec
from worldmodels.representations.gaussian_vae import GaussianVAE
from worldmodels.representations.train_gvae import GVAEFitConfig, fit_gvae
from worldmodels.vae import VAEFitConfig
from worldmodels.vae.train import fit_vae


def write_dataset(root: Path, episodes: int = 6, length: int = 50, size: int = 84) -> Path:
    """``episodes`` x ``length`` frames of a bright square moving over a dark background, a quarter held out."""
    rng = np.random.default_rng(0)
    w = DatasetWriter(root, {"game": "squares"}, heldout_fraction=0.25, shard_frames=100)
    for _ in range(episodes):
        f = np.full((length, size, size), 30, np.uint8)
        y, x = rng.integers(0, size - 10, 2)
        for t in range(length):
            y, x = np.clip([y + rng.integers(-3, 4), x + rng.integers(-3, 4)], 0, size - 10)
            f[t, y: y + 10, x: x + 10] = 220
        actions = rng.integers(0, 3, length).astype(np.int64)
        actions[-1] = -1
        w.add_episode(f, actions, np.zeros(length, np.float32), terminal=True)
    w.close(num_actions=3)
    return root


TINY = ["optim.name=adam", "optim.lr=1e-3", "optim.batch_size=16", "run.total_steps=24",
        "run.checkpoint_every_steps=12", "run.log_every_steps=4", "run.eval_frames=32", "run.progress=false",
        "run.device=cpu"]
"""The paper's network (so 64-number keys) for 24 Adam steps of 16 frames: a few seconds."""


def fit_gvae_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    from launch.gvae_cli import register

    parser = argparse.ArgumentParser(prog="reverie")
    register(parser.add_subparsers())
    args = parser.parse_args(["fit-gvae", *argv])
    assert args.func(args) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_fit_gvae_then_embed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, run = write_dataset(tmp_path / "data"), tmp_path / "run"
    fit = fit_gvae_cli(["gvae_paper", f"data.path={data}", *TINY, "--run-dir", str(run)], capsys)
    assert fit["steps"] == 24 and fit["frames"] == 24 * 16 and fit["cpu_frames_per_s"] > 0
    assert np.isfinite(fit["elbo_nats"]) and fit["nats_per_pixel"] == pytest.approx(fit["elbo_nats"] / 7056)
    assert fit["kl"] >= 0 and fit["elbo_nats"] == pytest.approx(fit["nll_nats"] + fit["kl"])
    ckpts = list_checkpoints(run / "checkpoints")
    assert [p.name for p in ckpts] == ["ckpt_000000000012.pt", "ckpt_000000000024.pt"]
    ckpt = load_checkpoint(ckpts[-1])
    assert ckpt["steps"] == 24 and (run / "config.yaml").read_text() == ckpt["config"]
    for name, shape in (("reconstructions.png", (2 * 86, 8 * 86)), ("samples.png", (2 * 86, 8 * 86))):
        img = iio.imread(run / name)
        assert img.shape == shape and img.dtype == np.uint8
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"worldmodel/elbo_nats", "worldmodel/nats_per_pixel", "worldmodel/kl", "worldmodel/decoder_std",
            "charts/frames_per_s", "charts/cpu_frames_per_s", "losses/grad_norm", "eval/elbo_nats"} <= tags
    assert {"eval/reconstructions", "eval/samples"} <= set(acc.Tags()["images"])
    elbo = [e.value for e in acc.Scalars("worldmodel/elbo_nats")]
    assert len(elbo) == 6 and elbo[-1] < elbo[0]  # nats per frame fall
    assert [e.step for e in acc.Scalars("eval/elbo_nats")] == [12, 24]

    # The checkpoint (or its run directory) is the gaussian_vae representation's path.
    frames = np.stack([np.full((84, 84), 30, np.uint8), np.full((84, 84), 220, np.uint8)])
    rep = make_representation("gaussian_vae", (84, 84), 64, path=str(run))
    key = rep.embed(frames)
    assert key.shape == (2, 64) and key.dtype == np.float32 and np.isfinite(key).all()
    np.testing.assert_array_equal(key, GaussianVAE.from_export(ckpt["gvae"]).embed(frames))
    assert not np.allclose(key[0], key[1])
    np.testing.assert_array_equal(load_representation(representation_spec(rep)).embed(frames), key)
    with pytest.raises(ValueError, match="set dim=64"):
        make_representation("gaussian_vae", (84, 84), 32, path=str(ckpts[0]))

    # Resume continues the counters; only the safe keys may change.
    fit = fit_gvae_cli(["--resume", str(run), "run.total_steps=36"], capsys)
    assert fit["steps"] == 36 and fit["frames"] == 36 * 16
    assert load_checkpoint(list_checkpoints(run / "checkpoints")[-1])["steps"] == 36


def test_kl_warmup_weights_and_posterior_spread(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from worldmodels.representations.train_gvae import heldout_elbo

    data, run = write_dataset(tmp_path / "data"), tmp_path / "run"
    fit = fit_gvae_cli(["gvae_cpu", f"data.path={data}", *TINY, "run.total_steps=12", "optim.kl_warmup_steps=8",
                        "--run-dir", str(run)], capsys)
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    # logged every 4 steps: the mean weight of steps 0-3, 4-7, 8-11 is (0+1+2+3)/32, (4+5+6+7)/32, then 1
    weights = [e.value for e in acc.Scalars("losses/kl_weight")]
    assert weights == pytest.approx([6 / 32, 22 / 32, 1.0])
    # the reported ELBO is still the true one, whatever weight the KL had in training
    assert fit["elbo_nats"] == pytest.approx(fit["nll_nats"] + fit["kl"])
    # posterior spread: the std across frames of each latent's posterior mean (the first half of a key), averaged
    model = GaussianVAE.from_export(load_checkpoint(list_checkpoints(run / "checkpoints")[-1])["gvae"])
    frames = np.random.default_rng(1).integers(0, 256, (10, 84, 84), dtype=np.uint8)
    keys = model.embed(frames).astype(np.float64)
    scores = heldout_elbo(model, frames)
    assert scores["posterior_spread"] == pytest.approx(keys[:, :32].std(0, ddof=1).mean(), rel=1e-4)
    assert scores["posterior_std"] == pytest.approx(np.exp(keys[:, 32:]).mean(), rel=1e-4)
    assert fit["posterior_spread"] > 0 and "eval/posterior_spread" in acc.Tags()["scalars"]
    with pytest.raises(ValueError, match="optim.kl_warmup_steps"):
        fit_gvae_cli(["gvae_cpu", f"data.path={data}", *TINY, "optim.kl_warmup_steps=-1", "--run-dir",
                      str(tmp_path / "bad")], capsys)


def test_fit_gvae_refuses_frames_it_cannot_model(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "small", episodes=2, length=20, size=42)
    cfg = load_config(GVAEFitConfig, ["gvae_paper"], [f"data.path={data}", *TINY])
    with pytest.raises(DatasetError, match=r"frames of shape \(42, 42\).*--frame-size 84x84"):
        fit_gvae(cfg, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # a failed start leaves nothing behind
    with pytest.raises(ValueError, match="optim.lr=0.0 must be positive"):
        fit_gvae(load_config(GVAEFitConfig, ["gvae_paper"], [f"data.path={data}", "optim.lr=0"]),
                 run_dir=tmp_path / "run")


def test_fit_vae_checkpoint_is_the_binary_vae_representation(tmp_path: Path) -> None:
    data, run = write_dataset(tmp_path / "data"), tmp_path / "vae"
    cfg = load_config(VAEFitConfig, ["vae_tiny"], [f"data.path={data}", "run.progress=false", "run.device=cpu",
                                                   "run.total_frames=64", "run.eval_frames=8",
                                                   "run.grad_var_every_frames=0"])
    fit_vae(cfg, run_dir=run)
    rep = make_representation("binary_vae", (84, 84), 16, path=str(run))
    frames = np.stack([np.full((84, 84), 30, np.uint8), np.full((84, 84), 220, np.uint8)])
    key = rep.embed(frames)
    assert key.shape == (2, 16) and key.dtype == np.float32 and bool(((key > 0) & (key < 1)).all())
    np.testing.assert_array_equal(load_representation(representation_spec(rep)).embed(frames), key)


def test_fit_gvae_checks_every_shard_before_it_starts(tmp_path: Path) -> None:
    """As fit-vae does: a truncated shard is refused up front, not when the shuffled reader reaches it."""
    data = write_dataset(tmp_path / "data")
    shard = sorted((data / "train").glob("shard_*.npz"))[-1]
    shard.write_bytes(shard.read_bytes()[:1000])
    cfg = load_config(GVAEFitConfig, ["gvae_paper"], [f"data.path={data}", *TINY])
    with pytest.raises(DatasetError, match=rf"{shard.name}.*truncated or corrupt.*data.skip_corrupt=true"):
        fit_gvae(cfg, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before the run directory (or a checkpoint) exists


def test_free_bits_floor_each_latents_kl_in_the_objective(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from worldmodels.representations.train_gvae import free_bits_kl

    kl = torch.tensor([[0.1, 2.0, 0.0], [0.3, 4.0, 0.0]])  # per-latent means 0.2, 3.0, 0.0
    assert float(free_bits_kl(kl, 0.0)) == pytest.approx(3.2)
    assert float(free_bits_kl(kl, 0.5)) == pytest.approx(0.5 + 3.0 + 0.5)
    data, run = write_dataset(tmp_path / "data"), tmp_path / "run"
    fit = fit_gvae_cli(["gvae_cpu", f"data.path={data}", *TINY, "run.total_steps=8", "optim.free_bits=0.25",
                        "--run-dir", str(run)], capsys)
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    # 32 latents, each floored at 0.25 nats: the objective's KL is never below 8; the reported ELBO stays the true one.
    assert min(e.value for e in acc.Scalars("losses/kl_objective")) >= 8.0 - 1e-4
    assert fit["elbo_nats"] == pytest.approx(fit["nll_nats"] + fit["kl"])
    with pytest.raises(ValueError, match="optim.free_bits"):
        fit_gvae_cli(["gvae_cpu", f"data.path={data}", *TINY, "optim.free_bits=-1", "--run-dir",
                      str(tmp_path / "bad")], capsys)


def write_constant(root: Path, episodes: int = 4, length: int = 40) -> Path:
    """Every frame the same: nothing for a latent to carry, so any VAE fitted on it collapses."""
    w = DatasetWriter(root, {"game": "constant"}, heldout_fraction=0.25, shard_frames=100)
    for _ in range(episodes):
        actions = np.zeros(length, np.int64)
        actions[-1] = -1
        w.add_episode(np.full((length, 84, 84), 90, np.uint8), actions, np.zeros(length, np.float32), terminal=True)
    w.close(num_actions=1)
    return root


def test_a_collapsed_fit_warns_and_so_does_its_representation(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from launch.cli import main

    data, run = write_constant(tmp_path / "data"), tmp_path / "run"
    fit = fit_gvae_cli(["gvae_cpu", f"data.path={data}", *TINY, "run.total_steps=4", "--run-dir", str(run)], capsys)
    assert fit["active_units"] == 0 and fit["latents"] == 32 and fit["collapsed"]
    assert "0 of its 32 latents are active" in fit["collapse_warning"] and "optim.free_bits" in fit["collapse_warning"]
    assert load_checkpoint(list_checkpoints(run / "checkpoints")[-1])["usage"]["active_units"] == 0
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    assert [e.value for e in acc.Scalars("eval/active_units")] == [0.0]
    with pytest.warns(UserWarning, match="0 of its 32 latents are active"):
        make_representation("gaussian_vae", (84, 84), 64, path=str(run))
    # evaluate-vae opens a fit-gvae run too: held-out ELBO, active units, the warning.
    assert main(["evaluate-vae", str(run), "--data", str(data), "--frames", "20"]) == 0
    out = capsys.readouterr().out
    assert "active units: 0 of 32" in out and "warning: The Gaussian VAE" in out and "negative ELBO" in out


def test_key_quality_scores_a_fitted_vae_beside_random_projections(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from worldmodels.representations.quality import key_quality

    data, run = write_dataset(tmp_path / "data", episodes=8), tmp_path / "run"
    fit_gvae_cli(["gvae_cpu", f"data.path={data}", *TINY, "run.total_steps=4", "--run-dir", str(run)], capsys)
    report = key_quality(data, [f"gaussian_vae={run}"], k=3, projection_seeds=2)
    kinds = [r["kind"] for r in report["rows"]]
    assert kinds == ["gaussian_vae", "random_projection", "random_projection"]
    vae = report["rows"][0]
    assert vae["dim"] == 64 and vae["latents"] == 32 and 0 <= vae["active_units"] <= 32
    assert all(r["dim"] == 64 and r["queries"] == report["queries"] > 0 for r in report["rows"])
