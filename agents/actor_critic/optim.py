"""RMSProp as TensorFlow 1 defines it, which the A2C and IMPALA reference implementations (OpenAI Baselines,
DeepMind's scalable_agent) were tuned with; PyTorch's ``RMSprop`` differs in two ways that matter:

- the running average of squared gradients starts at 1, not 0: PyTorch's first steps are ``lr * g / sqrt(0.01 g^2)
  = 10 lr`` in the sign of every gradient component, a jolt that can wreck a fresh network's features;
- epsilon sits inside the square root: ``p -= lr * g / sqrt(ms + eps)`` (PyTorch: ``sqrt(ms) + eps``).

Stable-Baselines3 ships the same optimiser (``RMSpropTFLike``) for its Atari A2C settings for this reason.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


class RMSpropTF(torch.optim.Optimizer):
    """``ms = alpha ms + (1 - alpha) g^2`` (``ms`` starts at 1), ``p -= lr g / sqrt(ms + eps)``; no momentum.

    :param params: parameters to optimise. :param lr: learning rate. :param alpha: squared-gradient decay.
    :param eps: added to the average inside the square root.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, alpha: float = 0.99,
                 eps: float = 1e-5) -> None:
        super().__init__(params, {"lr": lr, "alpha": alpha, "eps": eps})

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            squares = []
            for p in params:
                state = self.state[p]
                if "square_avg" not in state:
                    state["square_avg"] = torch.ones_like(p, memory_format=torch.preserve_format)
                squares.append(state["square_avg"])
            # One multi-tensor kernel per operation for all parameters (few calls per update on the CPU).
            torch._foreach_mul_(squares, group["alpha"])
            torch._foreach_addcmul_(squares, grads, grads, value=1.0 - group["alpha"])
            denominators = torch._foreach_add(squares, group["eps"])
            torch._foreach_sqrt_(denominators)
            torch._foreach_addcdiv_(params, grads, denominators, value=-group["lr"])
