"""Temporal attention for STRAW: DRAW's Gaussian filterbank, in one dimension, on the time axis of a plan.

STRAW (Vezhnevets et al. 2016, Sec. 3, "attentive read and write") reads a patch of K columns from a plan of T
columns and writes a patch back, with the filterbank of DRAW (Gregor et al. 2015, Sec. 3.2) applied to the time
axis only. Equation numbers are DRAW's as we read them: 19 mu_X, 21 the linear map, 22 g_X, 24 delta, 25 F_X,
27 read, 29 write. What is DRAW's and what is ours:

DRAW's (the image's x axis become the plan's time axis):

- the four attention parameters come from a linear map of a feature vector (eq. 21, without the y centre):
  ``(g~, log sigma^2, log delta~, log gamma)``;
- centre ``g = (T + 1) / 2 * (g~ + 1)`` (eq. 22): g~ = -1, 0, 1 put the grid's centre just before the first
  column, at the middle, just after the last;
- stride ``delta = (T - 1) / (K - 1) * delta~`` (eq. 24, ``max(A, B)`` become ``T``), ``delta~ = exp(log delta~)``;
- filter centres ``mu_i = g + (i - K / 2 - 0.5) * delta`` (eq. 19);
- ``F[i, a] = exp(-(a - mu_i)^2 / (2 sigma^2)) / Z_i`` with ``Z_i = sum_a exp(...)``, each filter summing to 1
  (eq. 25);
- ``read(A) = gamma * A F^T`` (eq. 27, one axis) and ``write(p) = (1 / gamma) * p F`` (eq. 29: DRAW divides the
  write by the intensity ``gamma`` that multiplies the read; we follow DRAW here, so a written patch value v lands
  as ``v / gamma`` spread by F).

Ours:

- **1-D**: one filterbank ``F`` of shape ``[K, T]`` per plan, applied to every row (the |A| + 1 rows of the action
  plan share one attention), where DRAW has ``F_X`` and ``F_Y``.
- **Index origin**: DRAW leaves it implicit; we read its formulae with 1-based indices, ``i = 1..K`` and
  ``a = 1..T``: then the filter centres are symmetric about g (offsets ``-(K - 1) / 2 .. (K - 1) / 2``) and
  g~ = 0, delta~ = 1 spread the K filters from the first column (``mu_1 = 1``) to the last (``mu_K = T``).
  Column ``a = 1`` is the plan's column 0, the current step.
- **K = 1**: eq. 24 divides by K - 1. With one filter its centre is ``mu_1 = g`` whatever the stride, so we set
  ``delta = 0`` and ignore ``log delta~`` (it receives no gradient). STRAW's commitment write is the one K = 1 user.
- **The bounded centre** (``window=W``, ``straw.attention_centre=bounded``; ours, not DRAW's or STRAW's): the grid's
  centre ``g = 0.5 + W sigmoid(g~)`` lies in ``(0.5, W + 0.5)``, inside the plan's first W columns (0-based
  ``(-0.5, W - 0.5)``), for any input, and the stride ``delta = S sigmoid(log delta~ - log(S - 1))`` with
  ``S = max(2, (T - 1) / (K - 1))`` lies in ``(0, S)``: 1 column at ``log delta~ = 0`` (scaled to the K filters, not
  to the T columns) and never wider than DRAW's whole-plan grid. Why: with DRAW's ``g``, one unit of g~ moves the
  centre ``(T + 1) / 2`` columns; under RMSProp the grid drifts off the plan's start, and once every filter is a few
  widths from the columns an unroll reads, the gradient that could bring it back is exactly 0 (measured; README's
  STRAW section). Bounded, the grid always covers columns that the current step or the next few steps read, so its
  writes (and the gradient to f_psi) can never vanish for good; only the sigmoid's saturation slows it, at a place
  that still writes the first columns. Raw zeros give the grid of ``attention_init=near``: filter i on column i.
- **The bounded intensity** (``intensity_bound=c``, ``straw.write_intensity=bounded``; ours, not DRAW's or STRAW's):
  ``gamma = exp(log c * tanh(log gamma~ / log c))`` lies in ``(1 / c, c)`` for any input, where DRAW's
  ``gamma = exp(log gamma~)`` (eq. 21) is unbounded; near ``log gamma~ = 0`` the two agree to first order (equal value
  1 and slope), and ``c = 1`` fixes ``gamma = 1`` (the read is not scaled, the write not divided). Why: DRAW's write
  (eq. 29) divides the patch by gamma, and STRAW (Sec. 3, "attentive read and write") writes its action plan that
  way, so a per-state gamma that shrinks multiplies every logit and value the plan holds. Measured (STRAW on a fixed
  5 x 5 maze, ``launch/results/straw/fixes.md``): a unit patch wrote 207 into column 0 with the feature value head
  and 5.7e3 in the run that collapsed to a deterministic policy walking into a wall. With a bounded gamma the
  write's scale can still grow, but only through the patch ``f_p`` (linear) rather than through an exponential of a
  linear output. It applies to the action plan's read and write; the commitment filter keeps DRAW's gamma.
- **Numerics**: ``Z_i`` gets ``+ 1e-8`` (a filter centred far outside the plan with a narrow width would otherwise
  divide 0 by 0; such a filter reads and writes about nothing, as in DRAW) and ``sigma^2`` is floored at ``1e-4``
  (``exp`` of a very negative ``log sigma^2`` underflows to 0, and 0 / 0 at ``a = mu_i``); neither bites in the
  ordinary range.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

#: Number of raw attention parameters a linear map must produce: (g~, log sigma^2, log delta~, log gamma).
NUM_PARAMS = 4
_Z_EPS = 1e-8
_MIN_SIGMA2 = 1e-4


class Attention(NamedTuple):
    """Attention parameters of a batch of B plans, each ``[B]`` float, in plan columns (1-based, see the module).

    :ivar centre: g, the grid centre. :ivar sigma2: sigma^2, the filters' variance (columns^2).
    :ivar stride: delta, the distance between filter centres (columns). :ivar gamma: the intensity (read gain).
    """

    centre: torch.Tensor
    sigma2: torch.Tensor
    stride: torch.Tensor
    gamma: torch.Tensor


def bounded_stride_scale(plan_len: int, num_filters: int) -> float:
    """S, the bounded stride's upper limit in columns (see the module docstring): ``max(2, (T - 1) / (K - 1))``, so a
    grid never spans more than DRAW's whole-plan grid, and 1 (at ``log delta~ = 0``) is always inside ``(0, S)``."""
    return max(2.0, (plan_len - 1.0) / max(num_filters - 1.0, 1.0))


def bounded_intensity(log_gamma: torch.Tensor, bound: float) -> torch.Tensor:
    """Ours (see the module docstring): ``exp(log c * tanh(log gamma~ / log c))`` in ``(1 / c, c)`` (the closed ends
    only where float32's tanh saturates), equal to DRAW's ``exp(log gamma~)`` to first order at 0; 1 for ``c = 1``.

    :param log_gamma: the raw ``log gamma~`` ``[B]``. :param bound: c >= 1.
    :raises ValueError: c below 1 (or not finite).
    """
    if not math.isfinite(bound) or bound < 1.0:
        raise ValueError(f"the intensity bound c ({bound}) must be a finite number >= 1: gamma lies in (1 / c, c)")
    if bound == 1.0:
        return torch.ones_like(log_gamma)
    log_c = math.log(bound)
    return torch.exp(log_c * torch.tanh(log_gamma / log_c))


def attention_params(raw: torch.Tensor, plan_len: int, num_filters: int, window: int | None = None,
                     intensity_bound: float | None = None) -> Attention:
    """DRAW's eqs. 22 and 24 in 1-D (``window`` None), or our bounded centre and stride (``window`` W >= 1): the
    parameters of the output ``[B, 4]`` of a linear map.

    :param raw: ``[B, 4]``: ``(g~, log sigma^2, log delta~, log gamma)`` per row.
    :param plan_len: T, the plan's width (columns). :param num_filters: K >= 1.
    :param window: None: DRAW's ``g = (T + 1) / 2 (g~ + 1)`` and ``delta = (T - 1) / (K - 1) delta~``. W: ours,
        ``g = 0.5 + W sigmoid(g~)`` in ``[0.5, W + 0.5]`` and ``delta = S sigmoid(log delta~ - log(S - 1))`` in
        ``[0, S]`` (:func:`bounded_stride_scale`; the closed ends only where float32's sigmoid saturates).
    :param intensity_bound: None: DRAW's ``gamma = exp(log gamma~)``. c >= 1: ours, gamma in ``(1 / c, c)``
        (:func:`bounded_intensity`).
    :raises ValueError: ``raw`` is not ``[B, 4]``, T, K or W is below 1, or c is below 1.
    """
    if raw.dim() != 2 or raw.shape[1] != NUM_PARAMS:
        raise ValueError(f"attention parameters must be [B, {NUM_PARAMS}] (g~, log sigma^2, log delta~, log gamma), "
                         f"got {tuple(raw.shape)}: map the features with nn.Linear(in, {NUM_PARAMS})")
    if plan_len < 1 or num_filters < 1:
        raise ValueError(f"the plan width T ({plan_len}) and the number of filters K ({num_filters}) must be >= 1")
    if window is not None and window < 1:
        raise ValueError(f"the bounded centre's window W ({window}) must be >= 1 column")
    g_tilde, log_sigma2, log_delta_tilde, log_gamma = raw.unbind(dim=1)
    if window is None:
        centre = (plan_len + 1) / 2.0 * (g_tilde + 1.0)
    else:
        # Ours: squashed into the first W columns, so it can never leave the columns the next steps read.
        centre = 0.5 + window * torch.sigmoid(g_tilde)
    sigma2 = torch.exp(log_sigma2).clamp(min=_MIN_SIGMA2)
    if num_filters > 1 and window is None:
        stride = (plan_len - 1) / (num_filters - 1) * torch.exp(log_delta_tilde)
    elif num_filters > 1:
        # Ours: bounded by S (the whole plan), and 1 column at log delta~ = 0 (S sigmoid(-log(S - 1)) = 1).
        scale = bounded_stride_scale(plan_len, num_filters)
        stride = scale * torch.sigmoid(log_delta_tilde - math.log(scale - 1.0))
    else:
        # Ours: one filter sits at the centre whatever the stride (eq. 19 with K = 1 gives mu_1 = g).
        stride = torch.zeros_like(g_tilde)
    # DRAW's exp(log gamma~) (eq. 21), or ours: squashed into (1 / c, c).
    gamma = torch.exp(log_gamma) if intensity_bound is None else bounded_intensity(log_gamma, intensity_bound)
    return Attention(centre=centre, sigma2=sigma2, stride=stride, gamma=gamma)


def filterbank(att: Attention, plan_len: int, num_filters: int) -> torch.Tensor:
    """DRAW's eqs. 19 and 25 (mu_X, F_X) in 1-D: the normalised filterbank ``F`` ``[B, K, T]`` (each of the K
    rows sums to 1, up to the ``1e-8`` in Z, unless the filter lies far outside the plan).

    :param att: parameters with ``[B]`` fields. :param plan_len: T. :param num_filters: K.
    """
    dtype, device = att.centre.dtype, att.centre.device
    # 1-based filter and column indices (ours: DRAW leaves the origin implicit; see the module docstring).
    i = torch.arange(1, num_filters + 1, dtype=dtype, device=device)
    a = torch.arange(1, plan_len + 1, dtype=dtype, device=device)
    mu = att.centre[:, None] + (i - num_filters / 2.0 - 0.5)[None, :] * att.stride[:, None]  # [B, K]
    sq = (a[None, None, :] - mu[:, :, None]) ** 2  # [B, K, T]
    weights = torch.exp(-sq / (2.0 * att.sigma2[:, None, None]))
    return weights / (weights.sum(dim=2, keepdim=True) + _Z_EPS)


def read(plan: torch.Tensor, att: Attention, num_filters: int, fb: torch.Tensor | None = None) -> torch.Tensor:
    """DRAW's read (eq. 27) on the time axis: ``gamma * plan F^T``.

    :param plan: ``[B, R, T]`` (R rows: |A| + 1 for the action plan).
    :param att: ``[B]`` parameters. :param num_filters: K.
    :param fb: ``filterbank(att, T, K)`` when the caller has it already (a read and a write with the same
        attention share it); computed when None.
    :return: the patch ``[B, R, K]``.
    """
    fb = filterbank(att, plan.shape[-1], num_filters) if fb is None else fb
    return att.gamma[:, None, None] * torch.bmm(plan, fb.transpose(1, 2))


def write(patch: torch.Tensor, att: Attention, plan_len: int, fb: torch.Tensor | None = None) -> torch.Tensor:
    """DRAW's write (eq. 29) on the time axis: ``(1 / gamma) * patch F``.

    :param patch: ``[B, R, K]``. :param att: ``[B]`` parameters. :param plan_len: T.
    :param fb: ``filterbank(att, T, K)`` if at hand; computed when None.
    :return: ``[B, R, T]``, to be added to (action plan) or squashed into (commitment plan) a plan.
    """
    fb = filterbank(att, plan_len, patch.shape[-1]) if fb is None else fb
    return torch.bmm(patch, fb) / att.gamma[:, None, None]


def shift(plan: torch.Tensor) -> torch.Tensor:
    """STRAW's time shift rho (Sec. 3.1): drop the first column, append a column of zeros.

    :param plan: ``[..., T]``. :return: ``[..., T]`` with ``out[..., j] = plan[..., j + 1]`` and ``out[..., -1] = 0``.
    """
    return torch.cat([plan[..., 1:], torch.zeros_like(plan[..., :1])], dim=-1)
