"""Value targets and advantages over fixed-length unrolls: n-step / GAE (A2C, PPO) and V-trace (IMPALA).

All functions take time-major tensors: ``T`` steps of ``B`` unrolls (one per env). With ``x_t`` the observation
step ``t`` acted in and ``x_T`` the bootstrap observation:

- ``rewards`` ``[T, B]``: the (clipped) reward of step t;
- ``discounts`` ``[T, B]``: ``gamma``, or 0 where step t terminated the episode;
- ``carry`` ``[T, B]``: 1 where the return of step t continues into step t + 1, 0 where an episode ended at step t
  (terminated, or truncated by the time limit: then ``x_{t+1}`` is the episode's last observation and the return
  bootstraps from ``V(x_{t+1})`` alone) -- so nothing of the NextStep autoreset step that follows (whose own
  targets the learner masks out) flows back into the episode that ended;
- ``values`` ``[T + 1, B]``: ``V(x_0) .. V(x_T)``.

With carry 1 everywhere these are the papers' formulas: GAE (Schulman et al. 2016, eq. 16) and V-trace
(Espeholt et al. 2018, Sec. 4.1, eq. 1 in its recursive form, Remark 1).
"""

from __future__ import annotations

import torch


def gae_advantages(rewards: torch.Tensor, discounts: torch.Tensor, carry: torch.Tensor, values: torch.Tensor,
                   lam: float) -> torch.Tensor:
    """Generalised advantage estimates ``[T, B]``: ``A_t = delta_t + discount_t * lam * carry_t * A_{t+1}`` with
    ``delta_t = r_t + discount_t V(x_{t+1}) - V(x_t)`` and ``A_T = 0``. With ``lam = 1``, ``A_t + V(x_t)`` is the
    n-step return to the unroll's end (A2C's target); the value target is ``A + values[:-1]`` for any lam."""
    deltas = rewards + discounts * values[1:] - values[:-1]
    advantages = torch.zeros_like(deltas)
    next_adv = torch.zeros_like(deltas[0])
    for t in range(deltas.shape[0] - 1, -1, -1):
        next_adv = deltas[t] + discounts[t] * lam * carry[t] * next_adv
        advantages[t] = next_adv
    return advantages


def vtrace(log_rhos: torch.Tensor, rewards: torch.Tensor, discounts: torch.Tensor, carry: torch.Tensor,
           values: torch.Tensor, rho_bar: float = 1.0, c_bar: float = 1.0,
           pg_rho_bar: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """V-trace targets and policy-gradient advantages (Espeholt et al. 2018, Sec. 4.1 and 4.2).

    :param log_rhos: ``[T, B]`` log importance weights ``log pi(a_t|x_t) - log mu(a_t|x_t)`` (target policy pi,
        behaviour policy mu of the actor).
    :param rho_bar: truncation of ``rho_t = min(rho_bar, pi/mu)`` in the temporal differences.
    :param c_bar: truncation of the trace coefficients ``c_t = min(c_bar, pi/mu)``.
    :param pg_rho_bar: truncation of the policy gradient's weight (default: ``rho_bar``, as in the paper).
    :return: ``v_s`` ``[T, B]`` (the value targets, no gradient) and the policy-gradient advantages
        ``rho_s (r_s + discount_s v_{s+1} - V(x_s))`` ``[T, B]``, where ``v_{s+1}`` is ``V(x_{s+1})`` at the unroll's
        end and where an episode ended at s (carry 0).

    The recursion: ``v_s - V(x_s) = rho_s delta_s + discount_s carry_s c_s (v_{s+1} - V(x_{s+1}))`` with
    ``delta_s = r_s + discount_s V(x_{s+1}) - V(x_s)``. On-policy (rho = c = 1) ``v_s`` is the n-step return.
    """
    with torch.no_grad():
        ratios = torch.exp(log_rhos)
        rhos = torch.clamp(ratios, max=rho_bar)
        cs = torch.clamp(ratios, max=c_bar)
        deltas = rhos * (rewards + discounts * values[1:] - values[:-1])
        corrections = torch.zeros_like(deltas)  # v_s - V(x_s)
        acc = torch.zeros_like(deltas[0])
        for t in range(deltas.shape[0] - 1, -1, -1):
            acc = deltas[t] + discounts[t] * carry[t] * cs[t] * acc
            corrections[t] = acc
        vs = values[:-1] + corrections
        # v_{s+1}: the next target where the return carries on, the plain value at the unroll's end or an episode end.
        next_vs = torch.cat([vs[1:], values[-1:]], dim=0)
        next_vs = torch.where(carry > 0, next_vs, values[1:])
        pg_rhos = torch.clamp(ratios, max=rho_bar if pg_rho_bar is None else pg_rho_bar)
        pg_advantages = pg_rhos * (rewards + discounts * next_vs - values[:-1])
    return vs, pg_advantages
