"""Frame-comparison metrics for imagined rollouts: MSE, PSNR and SSIM, per frame and per horizon step.

Every metric works on the [0, 1] scale: uint8 frames are divided by 255 first, float frames are taken as
they are. Frames are luminance ``[..., H, W]`` (what `reverie collect` stores) or, with ``channels_last=True``,
colour ``[..., H, W, C]`` (``collect --rgb``, the paper's 210x160 RGB input); any leading axes are kept.

- **MSE**: mean over pixels (and colour channels) of the squared difference.
- **PSNR**: ``10 log10(1 / mse)`` dB with a data range of 1. Per horizon step it is computed from the *mean*
  MSE over rollouts (not the mean of per-frame PSNRs, which a few perfect frames would send to infinity);
  identical inputs give ``inf``.
- **SSIM**: Wang, Bovik, Sheikh and Simoncelli (2004): local statistics under an 11x11 Gaussian window of
  standard deviation 1.5, ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2`` with ``L = 1``, population (biased)
  variances, averaged over the window positions that lie wholly inside the image (the paper's ``valid``
  filtering, as its reference MATLAB code and ``skimage.metrics.structural_similarity(...,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)`` do). Colour frames: the mean
  of the per-channel SSIMs (what ``structural_similarity(..., channel_axis=-1)`` does).

Inputs may be numpy arrays or torch tensors on any device (a tensor that requires grad is detached): the arithmetic
runs on the device of the tensor inputs (a GPU's, if any is there; numpy arrays are moved to it), and the results
come back to the host once, as numpy arrays or Python floats.

Motion-aware scores (error on the moving pixels, object recall and precision) are in
:mod:`worldmodels.video.motion`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["C1", "C2", "SSIM_SIGMA", "SSIM_WINDOW", "finite_or_none", "gaussian_window", "mse", "per_step_metrics",
           "psnr", "psnr_from_mse", "ssim", "to_unit"]

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
C1 = 0.01 ** 2
C2 = 0.03 ** 2


def _device_of(*frames: np.ndarray | torch.Tensor) -> torch.device:
    """Where to compute on ``frames``: the device of the first tensor not on the CPU, else the CPU."""
    for f in frames:
        if isinstance(f, torch.Tensor) and f.device.type != "cpu":
            return f.device
    return torch.device("cpu")


def _host(t: torch.Tensor) -> np.ndarray:
    """A result as a float64 numpy array on the host (one copy from the device)."""
    return t.detach().to("cpu", torch.float64).numpy()


def to_unit(frames: np.ndarray | torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """Frames as float64 on the [0, 1] scale: uint8 is divided by 255, floats are kept as they are.

    float64 because SSIM subtracts nearly equal local moments; float32 loses about 1e-4 of it (except on Apple's
    ``mps``, which has no float64: float32 there).

    :param device: where the result lives (default: where ``frames`` are; the CPU for a numpy array).
    """
    # ascontiguousarray: torch refuses numpy views with negative strides (e.g. frames[::-1]).
    t = frames.detach() if isinstance(frames, torch.Tensor) else torch.as_tensor(np.ascontiguousarray(frames))
    if device is not None:
        t = t.to(device)
    dtype = torch.float32 if t.device.type == "mps" else torch.float64
    if t.dtype == torch.uint8:
        return t.to(dtype) / 255.0
    return t.to(dtype)


def mse(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, channels_last: bool = False) -> np.ndarray:
    """Mean squared error per frame.

    :param a: frames ``[..., H, W]`` (``[..., H, W, C]`` with ``channels_last``), uint8 or floats on [0, 1].
    :param b: frames broadcastable to ``a`` (e.g. one mean frame ``[H, W]``).
    :param channels_last: the last axis holds colour channels (averaged over with the pixels).
    :return: float64 ``[...]`` (the leading axes of the broadcast shape), on the [0, 1] scale.
    """
    device = _device_of(a, b)
    d = to_unit(a, device) - to_unit(b, device)
    return _host((d * d).mean(dim=(-3, -2, -1) if channels_last else (-2, -1)))


def psnr_from_mse(value: float | np.ndarray) -> float | np.ndarray:
    """PSNR in dB for a data range of 1: ``10 log10(1 / mse)``; ``inf`` where ``mse == 0``."""
    arr = np.asarray(value, dtype=np.float64)
    with np.errstate(divide="ignore"):
        out = 10.0 * np.log10(1.0 / arr)
    return float(out) if out.ndim == 0 else out


def psnr(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, channels_last: bool = False) -> float:
    """PSNR in dB of all frames together, from their mean MSE (see the module docstring)."""
    return float(psnr_from_mse(float(mse(a, b, channels_last).mean())))


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Normalised 1-D Gaussian weights, float64 ``[size]`` (the 2-D window is its outer product)."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x * x) / (2 * sigma * sigma))
    return g / g.sum()


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filtering of ``[N, 1, H, W]`` with ``valid`` borders -> ``[N, 1, H-10, W-10]``."""
    x = F.conv2d(x, g.view(1, 1, -1, 1))
    return F.conv2d(x, g.view(1, 1, 1, -1))


def ssim(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, chunk: int = 128,
         channels_last: bool = False) -> np.ndarray:
    """Mean structural similarity per frame (Wang et al. 2004; constants in the module docstring).

    :param a: frames ``[..., H, W]`` (``[..., H, W, C]`` with ``channels_last``) with ``H, W >= 11``, uint8 or
        floats on [0, 1].
    :param b: frames of the same shape as ``a``, or broadcastable to it.
    :param chunk: frames filtered at once (memory only; the result does not depend on it).
    :param channels_last: the last axis holds colour channels: each is scored alone and the SSIMs averaged.
    :return: float64 ``[...]``, 1 for identical frames, in [-1, 1].
    """
    device = _device_of(a, b)
    x, y = torch.broadcast_tensors(to_unit(a, device), to_unit(b, device))
    if channels_last:
        # [..., H, W, C] -> [..., C, H, W]: every channel is a frame of its own; their SSIMs are averaged below.
        x, y = x.movedim(-1, -3), y.movedim(-1, -3)
    lead, (h, w) = x.shape[:-2], x.shape[-2:]
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {h}x{w}.")
    x = x.reshape(-1, 1, h, w)
    y = y.reshape(-1, 1, h, w)
    g = gaussian_window().to(x.device, x.dtype)
    out = []
    # Chunks bound the memory of the ~10 float64 maps per frame (a 32 x 20 rollout evaluation is 640 frames).
    for i in range(0, len(x), chunk):
        xc, yc = x[i: i + chunk], y[i: i + chunk]
        mu_x, mu_y = _blur(xc, g), _blur(yc, g)
        # Population moments under the window: E[xy] - E[x]E[y] (the paper's definition, no n/(n-1)).
        var_x = _blur(xc * xc, g) - mu_x * mu_x
        var_y = _blur(yc * yc, g) - mu_y * mu_y
        cov = _blur(xc * yc, g) - mu_x * mu_y
        num = (2 * mu_x * mu_y + C1) * (2 * cov + C2)
        den = (mu_x * mu_x + mu_y * mu_y + C1) * (var_x + var_y + C2)
        out.append((num / den).mean(dim=(-3, -2, -1)))
    result = torch.cat(out).reshape(lead)
    return _host(result.mean(dim=-1) if channels_last else result)


def per_step_metrics(pred: np.ndarray | torch.Tensor, real: np.ndarray | torch.Tensor,
                     with_ssim: bool = True) -> dict[str, list[float]]:
    """Metrics of ``N`` rollouts at each of their ``T`` steps.

    :param pred: predicted frames ``[N, T, H, W]`` or anything that broadcasts to ``real`` (one mean frame
        ``[H, W]``, the last context frame ``[N, 1, H, W]``).
    :param real: real frames ``[N, T, H, W]``, or colour frames ``[N, T, H, W, C]`` (five axes mean colour).
    :return: ``{"mse": [T], "psnr": [T], "ssim": [T]}``: per step, the mean MSE over rollouts, the PSNR of
        that mean MSE (dB), and the mean SSIM over rollouts; plain Python floats.
    """
    colour = real.ndim == 5
    # One step at a time: float64 copies of a whole evaluation (640 frames of 210x160 RGB are 0.5 GB each) would
    # not fit; one step of N frames does.
    pred_b = pred.expand(real.shape) if isinstance(pred, torch.Tensor) else np.broadcast_to(pred, real.shape)
    out: dict[str, list[float]] = {"mse": [], "psnr": []}
    if with_ssim:
        out["ssim"] = []
    device = _device_of(pred, real)
    for t in range(real.shape[1]):
        p, r = to_unit(pred_b[:, t], device), to_unit(real[:, t], device)
        m = float(mse(p, r, colour).mean())
        out["mse"].append(m)
        out["psnr"].append(float(psnr_from_mse(m)))
        if with_ssim:
            out["ssim"].append(float(ssim(p, r, channels_last=colour).mean()))
    return out


def finite_or_none(value: float) -> float | None:
    """``value`` unless it is inf/nan (strict JSON has neither), then ``None``."""
    return value if math.isfinite(value) else None
