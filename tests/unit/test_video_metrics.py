"""Frame metrics of imagined rollouts (worldmodels.video.metrics): hand-computed cases and an independent
loop-by-loop SSIM, plus a cross-check against scikit-image when it is installed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from worldmodels.video.metrics import C1, C2, gaussian_window, mse, per_step_metrics, psnr, psnr_from_mse, ssim, to_unit


def _ssim_loops(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM written straight from the paper: a weighted window at every valid position, float64 loops."""
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5 ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    vals = []
    for i in range(a.shape[0] - 10):
        for j in range(a.shape[1] - 10):
            x, y = a[i:i + 11, j:j + 11], b[i:i + 11, j:j + 11]
            mx, my = (w * x).sum(), (w * y).sum()
            vx, vy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum()
            cxy = (w * (x - mx) * (y - my)).sum()
            vals.append((2 * mx * my + C1) * (2 * cxy + C2) / ((mx ** 2 + my ** 2 + C1) * (vx + vy + C2)))
    return float(np.mean(vals))


def test_identical_frames() -> None:
    rng = np.random.default_rng(0)
    f = rng.integers(0, 256, size=(3, 2, 20, 24), dtype=np.uint8)
    assert mse(f, f).shape == (3, 2) and np.all(mse(f, f) == 0)
    assert np.allclose(ssim(f, f), 1.0, atol=1e-12) and ssim(f, f).shape == (3, 2)
    assert psnr(f, f) == math.inf
    m = per_step_metrics(f, f)
    assert m["mse"] == [0.0, 0.0] and m["psnr"] == [math.inf, math.inf] and np.allclose(m["ssim"], 1.0)


def test_constant_offset_gives_known_mse_and_psnr() -> None:
    a = np.full((2, 16, 16), 0.3)
    b = a + 0.1  # every pixel off by 0.1 -> MSE 0.01 -> PSNR 20 dB
    assert np.allclose(mse(a, b), 0.01)
    assert psnr(a, b) == pytest.approx(20.0)
    assert psnr_from_mse(1e-4) == pytest.approx(40.0)
    assert np.allclose(psnr_from_mse(np.array([1.0, 0.1])), [0.0, 10.0])
    # uint8 frames are put on [0, 1] first: a difference of 51 levels is 0.2.
    u = np.zeros((1, 16, 16), np.uint8)
    assert np.allclose(mse(u, u + 51), 0.04)
    assert to_unit(np.array([255], np.uint8)).item() == 1.0


def test_ssim_of_flat_images_is_the_luminance_term() -> None:
    # No variance, no covariance: SSIM = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1).
    a, b = np.full((12, 12), 0.5), np.full((12, 12), 0.25)
    expected = (2 * 0.5 * 0.25 + C1) / (0.5 ** 2 + 0.25 ** 2 + C1)
    assert ssim(a, b) == pytest.approx(expected, rel=1e-12)
    # Flat black vs flat white: C1 / (1 + C1), almost 0.
    assert ssim(np.zeros((11, 11)), np.ones((11, 11))) == pytest.approx(C1 / (1 + C1))


def test_ssim_matches_the_paper_written_as_loops() -> None:
    rng = np.random.default_rng(1)
    a = rng.random((18, 17))
    b = np.clip(a + 0.2 * rng.standard_normal(a.shape), 0, 1)
    assert ssim(a, b) == pytest.approx(_ssim_loops(a, b), rel=1e-10)
    assert ssim(a, b) == pytest.approx(ssim(b, a), rel=1e-12)  # symmetric
    assert ssim(a, 1 - a) < 0  # anticorrelated structure
    batch = rng.random((5, 2, 18, 17))
    assert np.array_equal(ssim(batch, batch[::-1], chunk=3), ssim(batch, batch[::-1]))
    assert ssim(a, b) < ssim(a, (a + b) / 2) < 1


def test_gaussian_window_and_small_frames() -> None:
    g = gaussian_window()
    assert g.shape == (11,) and float(g.sum()) == pytest.approx(1.0)
    assert float(g[6] / g[5]) == pytest.approx(math.exp(-1 / (2 * 1.5 ** 2)))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(np.zeros((10, 40)), np.zeros((10, 40)))


def test_per_step_metrics_averages_rollouts_and_broadcasts_a_mean_frame() -> None:
    real = np.zeros((2, 3, 16, 16))
    real[0, :, :, :] = 0.2  # rollout 0 is off by 0.2 from a black mean frame, rollout 1 is exact
    m = per_step_metrics(np.zeros((16, 16)), real)
    assert len(m["mse"]) == len(m["psnr"]) == len(m["ssim"]) == 3
    # PSNR from the mean MSE (0.02), not the mean of per-rollout PSNRs (which would be inf).
    assert m["mse"] == pytest.approx([0.02] * 3) and m["psnr"] == pytest.approx([10 * math.log10(50)] * 3)


def test_matches_scikit_image_when_installed() -> None:
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(2)
    a = rng.random((40, 36))
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)
    ref = metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                        data_range=1.0)
    assert ssim(a, b) == pytest.approx(ref, rel=1e-8)
    assert psnr(a, b) == pytest.approx(metrics.peak_signal_noise_ratio(a, b, data_range=1.0))


def test_colour_frames_average_channels() -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, size=(2, 3, 16, 18, 3), dtype=np.uint8)
    b = a.copy()
    b[..., 1] = 255 - b[..., 1]  # one channel wrong
    per_channel = ((a.astype(float) - b) / 255) ** 2
    assert np.allclose(mse(a, b, channels_last=True), per_channel.mean(axis=(-3, -2, -1)))
    # SSIM of colour: the mean of the three channels' SSIMs; identical channels score 1.
    s = ssim(a, b, channels_last=True)
    assert s.shape == (2, 3)
    expected = np.mean([ssim(a[..., c], b[..., c]) for c in range(3)], axis=0)
    assert np.allclose(s, expected, rtol=1e-12)
    assert np.allclose(ssim(a, a, channels_last=True), 1.0)
    # per_step_metrics takes five axes as colour; the mean frame [H, W, C] broadcasts.
    m = per_step_metrics(b, a)
    assert m["mse"] == pytest.approx(mse(a, b, channels_last=True).mean(axis=0).tolist())
    assert m["ssim"] == pytest.approx(s.mean(axis=0).tolist())
    flat = per_step_metrics(np.full((16, 18, 3), 0.5), a)
    assert len(flat["mse"]) == 3 and all(v > 0 for v in flat["mse"])


def test_colour_ssim_matches_scikit_image_when_installed() -> None:
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(4)
    a = rng.random((30, 26, 3))
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)
    ref = metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                        data_range=1.0, channel_axis=-1)
    assert ssim(a, b, channels_last=True) == pytest.approx(ref, rel=1e-8)


# --- tensors on any device -----------------------------------------------------------------------------------------
def _frames_pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    real = rng.integers(0, 256, size=(3, 2, 16, 16), dtype=np.uint8)
    pred = np.clip(real.astype(np.int16) + rng.integers(-30, 30, size=real.shape), 0, 255).astype(np.uint8)
    colour = rng.integers(0, 256, size=(2, 2, 12, 12, 3), dtype=np.uint8)
    return real, pred, colour


def _check_tensors_match_numpy(device: torch.device) -> None:
    real, pred, colour = _frames_pair()
    want_mse, want_ssim = mse(pred, real), ssim(pred, real)
    want_steps = per_step_metrics(pred, real)
    t_real, t_pred = torch.from_numpy(real).to(device), torch.from_numpy(pred).to(device)
    # Floats that require grad (a model's output), uint8 tensors, and a numpy array beside a tensor.
    t_unit = (t_pred.double() / 255.0).requires_grad_(True)
    for a, b in ((t_pred, t_real), (t_unit, t_real), (pred, t_real), (t_pred, real)):
        got_mse, got_ssim = mse(a, b), ssim(a, b)
        assert isinstance(got_mse, np.ndarray) and isinstance(got_ssim, np.ndarray)
        np.testing.assert_allclose(got_mse, want_mse, rtol=1e-12)
        np.testing.assert_allclose(got_ssim, want_ssim, rtol=1e-10)
        assert psnr(a, b) == pytest.approx(psnr(pred, real), rel=1e-12)
    steps = per_step_metrics(t_pred, t_real)
    for key in want_steps:
        assert steps[key] == pytest.approx(want_steps[key], rel=1e-10), key
    # One mean frame against every real one (broadcast), and colour frames.
    mean_frame = real.mean(axis=(0, 1)) / 255.0
    got, want = per_step_metrics(torch.from_numpy(mean_frame).to(device), t_real), per_step_metrics(mean_frame, real)
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-10), key
    t_colour = torch.from_numpy(colour).to(device)
    np.testing.assert_allclose(ssim(t_colour, t_colour.flip(-2), channels_last=True),
                               ssim(colour, colour[..., ::-1, :], channels_last=True), rtol=1e-10)
    assert to_unit(t_real).device == t_real.device


def test_metrics_take_cpu_tensors_and_mixed_inputs() -> None:
    _check_tensors_match_numpy(torch.device("cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_metrics_take_cuda_tensors() -> None:
    _check_tensors_match_numpy(torch.device("cuda"))
