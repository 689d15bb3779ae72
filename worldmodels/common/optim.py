"""RMSProp with epsilon inside the square root: the one the project uses wherever a reference implementation was
tuned with DeepMind's or TensorFlow's RMSProp (Nature DQN, A2C, IMPALA, the PixelCNN density model).

PyTorch's ``torch.optim.RMSprop`` differs in where epsilon goes, ``lr g / (sqrt(ms) + eps)``, and that matters
when epsilon is large: Nature DQN's 0.01 inside the root bounds the step by ``lr |g| / 0.1`` at small gradients;
outside it, by ``lr |g| / 0.01``, ten times more. The references differ among themselves in where the average of
squared gradients starts, so that is a constructor argument:

- DeepMind's Lua DQN (Mnih et al. 2015, ``NeuralQLearner.lua``): centred, ``ms`` and ``mg`` start at 0,
  ``sqrt(ms - mg^2 + 0.01)``, decay 0.95, no momentum;
- TensorFlow 1's ``RMSPropOptimizer`` (OpenAI Baselines' A2C, DeepMind's scalable_agent IMPALA, Dopamine's DQN,
  Ostrovski et al.'s PixelCNN): ``ms`` starts at 1, ``mg`` at 0, optional centring and momentum. Starting at 0 with
  a small epsilon, the first steps are ``lr g / sqrt((1 - alpha) g^2) = lr / sqrt(1 - alpha)`` in the sign of every
  gradient component (10 lr at alpha 0.99), a jolt that can wreck a fresh network's features; TensorFlow's 1 avoids
  it. Stable-Baselines3 ships TensorFlow's for its Atari A2C settings (``RMSpropTFLike``) for that reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class RMSpropEpsInside(torch.optim.Optimizer):
    """RMSProp with epsilon inside the square root, per parameter element::

        ms  = alpha ms + (1 - alpha) g^2                     (ms starts at initial_square_avg)
        mg  = alpha mg + (1 - alpha) g                       (centered only; mg starts at 0)
        den = sqrt(ms - mg^2 + eps)  if centered  else  sqrt(ms + eps)
        p  -= lr g / den                                     (momentum 0)
        mom = momentum mom + lr g / den;  p -= mom           (momentum > 0, TensorFlow 1's form)

    State per parameter: ``square_avg`` (ms), ``grad_avg`` (mg, centred only), ``momentum_buffer`` (mom, momentum
    only).

    :param params: parameters to optimise. :param lr: learning rate. :param alpha: decay of the averages.
    :param eps: added inside the square root. :param centered: divide by an estimate of the gradient's standard
        deviation instead of its root mean square (DeepMind's DQN, Graves 2013).
    :param momentum: TensorFlow 1's momentum on the scaled step; 0 for none.
    :param initial_square_avg: where ``ms`` starts: 0 in DeepMind's Lua DQN, 1 in TensorFlow 1.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, alpha: float = 0.99, eps: float = 1e-5,
                 centered: bool = False, momentum: float = 0.0, initial_square_avg: float = 1.0) -> None:
        if lr < 0 or eps < 0 or momentum < 0 or initial_square_avg < 0:
            raise ValueError(f"lr, eps, momentum and initial_square_avg must be >= 0, got {lr}, {eps}, {momentum}, "
                             f"{initial_square_avg}")
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"alpha must be in [0, 1), got {alpha}")
        super().__init__(params, {"lr": lr, "alpha": alpha, "eps": eps, "centered": centered,
                                  "momentum": momentum, "initial_square_avg": initial_square_avg})

    def __setstate__(self, state: dict[str, Any]) -> None:
        # load_state_dict adopts the saved groups: one saved before a key existed gets the constructor's default.
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("centered", False)
            group.setdefault("momentum", 0.0)
            group.setdefault("initial_square_avg", 1.0)

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            alpha, lr = group["alpha"], group["lr"]
            for p in params:
                state = self.state[p]
                if "square_avg" not in state:
                    state["square_avg"] = torch.full_like(p, group["initial_square_avg"],
                                                          memory_format=torch.preserve_format)
                if group["centered"] and "grad_avg" not in state:
                    state["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if group["momentum"] > 0 and "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            squares = [self.state[p]["square_avg"] for p in params]
            # One multi-tensor kernel per operation for all parameters (few calls per update on the CPU).
            torch._foreach_mul_(squares, alpha)
            torch._foreach_addcmul_(squares, grads, grads, value=1.0 - alpha)
            if group["centered"]:
                means = [self.state[p]["grad_avg"] for p in params]
                torch._foreach_mul_(means, alpha)
                torch._foreach_add_(means, grads, alpha=1.0 - alpha)
                denominators = torch._foreach_addcmul(squares, means, means, value=-1.0)
                torch._foreach_add_(denominators, group["eps"])
            else:
                denominators = torch._foreach_add(squares, group["eps"])
            torch._foreach_sqrt_(denominators)
            if group["momentum"] > 0:
                buffers = [self.state[p]["momentum_buffer"] for p in params]
                torch._foreach_mul_(buffers, group["momentum"])
                torch._foreach_addcdiv_(buffers, grads, denominators, value=lr)
                torch._foreach_sub_(params, buffers)
            else:
                torch._foreach_addcdiv_(params, grads, denominators, value=-lr)


def nature_dqn_rmsprop(params: Iterable[torch.nn.Parameter], lr: float = 2.5e-4) -> RMSpropEpsInside:
    """DeepMind's Nature DQN RMSProp (Mnih et al. 2015, Extended Data Table 1 and ``NeuralQLearner.lua``):
    centred, decay ("squared gradient momentum") 0.95, 0.01 ("min squared gradient") inside the root, averages
    starting at 0, no momentum."""
    return RMSpropEpsInside(params, lr=lr, alpha=0.95, eps=0.01, centered=True, initial_square_avg=0.0)


def clipped_step(optimizer: torch.optim.Optimizer, params: Iterable[torch.nn.Parameter], max_norm: float) -> float:
    """One optimiser step after clipping the gradients' global L2 norm to ``max_norm`` (no clipping when
    ``max_norm <= 0``); returns the norm before clipping (the figure the learners log as ``grad_norm``).

    Parameters without a gradient are skipped, so a head that took no part in the loss neither counts nor moves.
    """
    with_grad = [p for p in params if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(with_grad, max_norm if max_norm > 0 else float("inf"))
    optimizer.step()
    return float(norm)

