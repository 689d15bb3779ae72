"""collect (real Pong, 2 Ray actors) -> fit-vae (tiny preset) -> evaluate-vae, through the `reverie` CLI."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from launch.cli import main
from worldmodels.common.checkpoint import list_checkpoints, load_checkpoint
from worldmodels.data import TrajectoryDataset, read_manifest

pytestmark = pytest.mark.usefixtures("ray_local")


@pytest.mark.parametrize("command", ["collect", "fit-vae", "evaluate-vae"])
def test_commands_have_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0 and "usage: reverie " + command in capsys.readouterr().out


def test_collect_fit_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, run = tmp_path / "pong", tmp_path / "run"
    assert main(["collect", "Pong", "--frames", "600", "--out", str(data), "--actors", "2", "--envs-per-actor", "2",
                 "--heldout-fraction", "0.25", "--shard-frames", "200", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["frames"] == 600 and summary["heldout"]["frames"] > 0 and summary["train"]["frames"] > 0
    manifest = read_manifest(data)
    assert manifest["game"] == "Pong" and manifest["preset"] == "machado" and manifest["policy"] == {"kind": "random"}
    assert manifest["frame_shape"] == [84, 84] and manifest["num_actions"] == 6 and manifest["complete"]
    assert manifest["emulator_frames"] >= 4 * 600
    train_ids = {i for s in manifest["shards"] if s["split"] == "train" for i in s["episode_ids"]}
    held_ids = {i for s in manifest["shards"] if s["split"] == "heldout" for i in s["episode_ids"]}
    assert train_ids and held_ids and not train_ids & held_ids  # split by whole episodes
    window = next(iter(TrajectoryDataset(data, "train", window=4)))
    assert window["frames"].shape == (4, 84, 84) and window["frames"].dtype == np.uint8
    assert window["frames"].max() > 0 and np.all((window["actions"] >= 0) & (window["actions"] < 6))

    assert main(["fit-vae", "vae_tiny", f"data.path={data}", "run.total_frames=128", "run.grad_var_every_frames=64",
                 "estimator.name=vimco", "estimator.samples=2", "--run-dir", str(run)]) == 0
    fit = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert fit["frames"] == 128 and fit["updates"] == 8 and fit["elbo_nats"] > 0
    ckpt = load_checkpoint(list_checkpoints(run / "checkpoints")[-1])
    assert ckpt["frames"] == 128 and ckpt["vae"]["binarizer"]["background"].shape == (42, 42)
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"worldmodel/elbo_nats", "worldmodel/kl", "losses/grad_var", "charts/frames_per_s", "eval/elbo_nats",
            "eval/active_units"} <= tags
    # Latent usage is measured at every checkpoint and kept with the weights (the representation warns from it).
    assert 0 <= fit["active_units"] <= fit["latents"] == ckpt["usage"]["latents"]
    assert ckpt["usage"]["active_units"] == fit["active_units"] and "kl_per_dim_sorted" in fit

    # Resume continues the counters.
    assert main(["fit-vae", "vae_tiny", f"data.path={data}", "run.total_frames=192", "estimator.name=vimco",
                 "estimator.samples=2", "--resume", str(run)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["frames"] == 192

    assert main(["evaluate-vae", str(run), "--data", str(data), "--ks", "1,10,100", "--frames", "6", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    nats = [report["iwae_nats"][k] for k in ("1", "10", "100")]
    assert nats[0] == report["elbo_nats"] and nats[0] >= nats[1] >= nats[2] > 0  # NLL bounds tighten with K
    bpp = report["iwae_bits_per_pixel"]["100"]
    assert bpp == pytest.approx(nats[2] / (42 * 42 * np.log(2)))
    for key in ("prior_samples_png", "reconstructions_png"):
        img = iio.imread(report[key])
        assert img.ndim == 2 and img.dtype == np.uint8 and img.max() == 255
    # Active units and KL per latent over the 6 held-out frames: the per-latent KLs sum to the total, all >= 0.
    kls = report["kl_per_dim_sorted"]
    assert report["usage_frames"] == 6 and len(kls) == report["latents"] and min(kls) >= 0
    assert sum(kls) == pytest.approx(report["kl_total"], abs=1e-3) and kls == sorted(kls, reverse=True)
    assert main(["evaluate-vae", str(run), "--data", str(data), "--ks", "1", "--frames", "6"]) == 0
    assert f"active units: {report['active_units']} of {report['latents']}" in capsys.readouterr().out

    # A corrupt shard is refused by name, or skipped when asked to.
    shard = data / "heldout" / "shard_00000.npz"
    shard.write_bytes(shard.read_bytes()[:100])
    assert main(["evaluate-vae", str(run), "--data", str(data), "--ks", "1", "--frames", "2"]) == 2
    assert "shard_00000.npz: checksum mismatch" in capsys.readouterr().err


def test_fit_vae_errors_name_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit-vae", "vae_tiny", "estimator.nam=vimco", "--run-dir", str(tmp_path / "a")]) == 2
    assert "unknown config key 'estimator.nam'" in capsys.readouterr().err
    assert main(["fit-vae", "vae_tiny", "estimator.name=vimco", "--run-dir", str(tmp_path / "b")]) == 2
    assert "at least 2" in capsys.readouterr().err
    assert main(["fit-vae", "vae_tiny", f"data.path={tmp_path / 'none'}", "--run-dir", str(tmp_path / "c")]) == 2
    assert "reverie collect" in capsys.readouterr().err


def test_bench_vae_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "vae", "--seconds", "0.05", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = {(r["what"], r["estimator"], r["decoder"]): r["frames_per_s"] for r in result["rows"]}
    assert len(rows) == 9 and all(v > 0 for v in rows.values())
    assert ("train", "vimco", "pixelcnn") in rows and ("log-likelihood", "IWAE K=100", "factorised") in rows
    # K = 100 samples per frame cost more than one.
    assert rows[("log-likelihood", "IWAE K=100", "pixelcnn")] < rows[("log-likelihood", "ELBO (K=1)", "pixelcnn")]
