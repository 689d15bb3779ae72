"""The Nature CNN Q-network (Mnih et al. 2015, Methods: "Model architecture") and the dueling head.

Input: uint8 stacked frames ``[B, 4, 84, 84]``; scaled to [0, 1] inside the network so frames stay uint8 in
replay and across process boundaries. Output: Q-values ``float32 [B, A]``.
"""

from __future__ import annotations

import torch
from torch import nn


class QNetwork(nn.Module):
    """Conv 32x8x8/4 -> 64x4x4/2 -> 64x3x3/1 -> FC hidden -> A (or dueling V + A - mean A, Wang et al. 2016).

    :param num_actions: size of the discrete action space A.
    :param stack: frames per observation (input channels).
    :param hidden: width of the fully connected layer.
    :param dueling: use the dueling head.
    """

    def __init__(self, num_actions: int, stack: int = 4, hidden: int = 512, dueling: bool = False) -> None:
        super().__init__()
        self.num_actions = num_actions
        self.dueling = dueling
        self.torso = nn.Sequential(
            nn.Conv2d(stack, 32, 8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
            nn.Flatten(),
        )
        torso_out = 64 * 7 * 7  # for 84x84 inputs
        if dueling:
            self.value = nn.Sequential(nn.Linear(torso_out, hidden), nn.ReLU(), nn.Linear(hidden, 1))
            self.advantage = nn.Sequential(nn.Linear(torso_out, hidden), nn.ReLU(), nn.Linear(hidden, num_actions))
        else:
            self.head = nn.Sequential(nn.Linear(torso_out, hidden), nn.ReLU(), nn.Linear(hidden, num_actions))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """:param obs: uint8 ``[B, stack, 84, 84]``. :return: float32 Q-values ``[B, A]``."""
        x = self.torso(obs.float().div_(255.0))
        if not self.dueling:
            return self.head(x)
        adv = self.advantage(x)
        return self.value(x) + adv - adv.mean(dim=1, keepdim=True)
