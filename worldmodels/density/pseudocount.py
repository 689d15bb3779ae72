r"""Pseudo-counts and exploration bonuses from a density model (Bellemare et al. 2016; Ostrovski et al. 2017).

For a frame ``x`` with probability ``rho = rho_n(x)`` before the model learns it and recoding
probability ``rho' = rho_{n+1}(x)`` just after, the prediction gain and pseudo-count are

.. math::
   \mathrm{PG} = \log\rho' - \log\rho, \qquad
   \hat N = \frac{\rho\,(1-\rho')}{\rho'-\rho} = \frac{1-\rho'}{e^{\mathrm{PG}} - 1},

and the bonus is ``beta / sqrt(N + 0.01)`` (Bellemare et al. 2016, Sec. 5). Everything is computed
from log probabilities, never from ``rho`` itself (a 42x42 frame has ``log rho`` of hundreds of nats):

.. math::
   \log \hat N = \log(1 - \rho') - \log(e^{\mathrm{PG}} - 1), \quad
   \log(1-\rho') = \mathrm{log1p}(-e^{\log\rho'}), \quad
   \log(e^{g}-1) = g + \log(-\mathrm{expm1}(-g)) \ (g > 0),

   \text{bonus} = \beta \exp\!\big(-\tfrac12 \operatorname{logaddexp}(\log\hat N, \log 0.01)\big).

Edge cases (all tested):

- ``PG <= 0`` (the model did not become more confident about ``x``, or ``-inf`` gain): the frame
  carries no novelty, ``N = +inf`` and the bonus is exactly 0. This is also the clipping of
  Ostrovski et al. ("clipped at 0"). It happens with CTS too, which is not strictly learning-positive:
  on a familiar frame the switching update can move weight towards a node's worse predictor so that
  ``rho'`` falls below ``rho`` by a few thousandths of a nat.
- tiny positive ``PG`` (down to the smallest float): ``N ~ 1/PG`` is huge or overflows to ``+inf``;
  the bonus is computed from ``log N`` so it stays finite and positive where ``log N`` is finite, and
  is 0 only when ``N`` is ``+inf`` in log space too.
- huge ``PG`` (``rho' >> rho``, e.g. a never-seen frame): ``N -> 0`` and the bonus tends to its
  maximum ``beta / sqrt(0.01) = 10 beta``; ``PG = +inf`` (``rho = 0``) gives exactly that maximum.
- ``rho' = 1``: ``N = 0`` (maximum bonus), as the formula says.
- a NaN log probability is an error (the density model is broken), not a silent zero.

For neural models whose prediction gain is not that of a count-based model, Ostrovski et al. (2017)
use ``PG_n = c n^{-1/2} (PG)_+`` with ``c = 0.1`` and ``n`` the number of frames learned:
:func:`ostrovski_gain_decay` builds that schedule for ``prediction_gain_decay``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from worldmodels.common.checks import require_number, require_positive, require_range
from worldmodels.protocols import DensityModel

__all__ = [
    "PseudoCount",
    "GainDecay",
    "ostrovski_gain_decay",
    "prediction_gain",
    "log_pseudo_count",
    "bonus_from_log_count",
]

# A prediction-gain schedule: (gains float64 [B], n float64 [B] frames learned, 1-based) -> gains [B].
GainDecay = Callable[[np.ndarray, np.ndarray], np.ndarray]

_LOG_COUNT_OFFSET = math.log(0.01)


def ostrovski_gain_decay(c: float = 0.1) -> GainDecay:
    """The PixelCNN prediction-gain schedule of Ostrovski et al. (2017): ``c * n^(-1/2) * max(PG, 0)``.

    :param c: scale (0.1 in the paper).
    :return: a function ``(gains, n) -> decayed gains``, both float64 ``[B]``; ``n`` counts frames
        learned including the current one (``n >= 1``).
    """
    c = require_number("c", c)
    require_positive({"c (the gain-decay scale)": c})

    def decay(gains: np.ndarray, n: np.ndarray) -> np.ndarray:
        return c * np.maximum(gains, 0.0) / np.sqrt(n)

    return decay


def prediction_gain(log_p_before: np.ndarray, log_p_after: np.ndarray) -> np.ndarray:
    """``PG = log rho' - log rho`` in nats, float64 ``[B]``; ``+inf`` where ``rho = 0 < rho'``."""
    before = np.asarray(log_p_before, dtype=np.float64)
    after = np.asarray(log_p_after, dtype=np.float64)
    if np.isnan(before).any() or np.isnan(after).any():
        raise ValueError("the density model returned NaN log probabilities; its state is corrupt")
    if (after > 0).any() or (before > 0).any():
        raise ValueError("log probabilities must be <= 0 (probabilities <= 1); got a positive one")
    with np.errstate(invalid="ignore"):
        gain = after - before
    # -inf - (-inf): the frame is impossible before and after; no evidence of novelty.
    return np.where(np.isnan(gain), 0.0, gain)


def log_pseudo_count(gain: np.ndarray, log_p_after: np.ndarray) -> np.ndarray:
    """``log N`` from the prediction gain and recoding log probability, float64 ``[B]``.

    ``+inf`` where ``gain <= 0``; ``-inf`` where ``gain = +inf`` or ``log_p_after = 0``.
    """
    gain = np.asarray(gain, dtype=np.float64)
    log_after = np.asarray(log_p_after, dtype=np.float64)
    out = np.full(gain.shape, np.inf, dtype=np.float64)
    positive = gain > 0
    g = gain[positive]
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        # log(e^g - 1) = g + log(1 - e^-g): exact for tiny g (-> log g) and huge g (-> g).
        log_expm1 = np.where(np.isinf(g), np.inf, g + np.log(-np.expm1(-g)))
        log_one_minus_after = np.log1p(-np.exp(log_after[positive]))
        out[positive] = log_one_minus_after - log_expm1
    return out


def bonus_from_log_count(log_count: np.ndarray, beta: float) -> np.ndarray:
    """``beta / sqrt(N + 0.01)`` computed from ``log N``, float64 ``[B]``; 0 for ``N = +inf``."""
    log_count = np.asarray(log_count, dtype=np.float64)
    return beta * np.exp(-0.5 * np.logaddexp(log_count, _LOG_COUNT_OFFSET))


class PseudoCount:
    """Exploration bonus from a density model's prediction gain.

    ``bonus = pc(frames)`` updates ``model`` on each frame in order and returns
    ``beta / sqrt(N + 0.01)`` per frame. The pseudo-counts, their logs and the prediction gains of the
    last call are kept in :attr:`last_counts`, :attr:`last_log_counts` and :attr:`last_gains` for
    logging.

    :param model: any :class:`~worldmodels.protocols.DensityModel`.
    :param beta: bonus scale (0.05 in Bellemare et al. 2016 for DQN).
    :param prediction_gain_decay: optional schedule applied to the raw gain before the count, e.g.
        :func:`ostrovski_gain_decay` for PixelCNN; called as ``decay(gains, n)`` with ``n`` the
        1-based number of frames learned (counted here).
    """

    def __init__(
        self,
        model: DensityModel,
        beta: float = 0.05,
        prediction_gain_decay: GainDecay | None = None,
    ) -> None:
        if not isinstance(model, DensityModel):
            raise TypeError(
                f"model must implement worldmodels.protocols.DensityModel (update, log_prob, state_dict, "
                f"load_state_dict); got {type(model).__name__}"
            )
        # Type first: a string beta would otherwise fail in the comparison with an opaque TypeError.
        beta = require_number("beta", beta)
        require_range("beta", beta, 0.0, math.inf, high_open=True,
                      hint="the bonus scale, 0.05 in Bellemare et al. 2016")
        self.model = model
        self.beta = beta
        self.prediction_gain_decay = prediction_gain_decay
        self.num_updates = 0
        self.last_gains = np.zeros(0, dtype=np.float64)
        self.last_counts = np.zeros(0, dtype=np.float64)
        self.last_log_counts = np.zeros(0, dtype=np.float64)
        self.last_bonus = np.zeros(0, dtype=np.float64)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return self.step(frames)

    def step(self, frames: np.ndarray) -> np.ndarray:
        """Learn ``frames`` (uint8 ``[B, H, W]``, quantised) in order; return the bonus, float64 ``[B]``."""
        log_before, log_after = self.model.update(frames)
        return self.from_log_probs(log_before, log_after)

    def from_log_probs(self, log_p_before: np.ndarray, log_p_after: np.ndarray) -> np.ndarray:
        """Bonus for frames the model has just learned, from its returned log probabilities (nats).

        Advances the frame counter used by ``prediction_gain_decay`` by ``B``.
        """
        gains = prediction_gain(log_p_before, log_p_after)
        n = self.num_updates + np.arange(1, gains.shape[0] + 1, dtype=np.float64)
        self.num_updates += int(gains.shape[0])
        if self.prediction_gain_decay is not None:
            gains = np.asarray(self.prediction_gain_decay(gains, n), dtype=np.float64)
        log_counts = log_pseudo_count(gains, log_p_after)
        bonus = bonus_from_log_count(log_counts, self.beta)
        self.last_gains = gains
        self.last_log_counts = log_counts
        with np.errstate(over="ignore"):
            self.last_counts = np.exp(log_counts)
        self.last_bonus = bonus
        return bonus

    def state_dict(self) -> dict[str, Any]:
        """The density model's state plus the frame counter and beta."""
        return {
            "model": self.model.state_dict(),
            "num_updates": np.array(self.num_updates, dtype=np.int64),
            "beta": np.array(self.beta, dtype=np.float64),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.num_updates = int(np.asarray(state["num_updates"]))
        self.beta = float(np.asarray(state["beta"]))
