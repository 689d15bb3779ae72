"""The DQN Q-network: a torso chosen from the observation shape (:mod:`agents.torsos`), then the Q head.

Atari (default): the Nature CNN (Mnih et al. 2015, Methods: "Model architecture") on uint8 stacked frames
``[B, 4, 84, 84]``; MinAtar (Young & Tian 2019): one 16 3x3 conv on uint8 0/1 channels ``[B, C, 10, 10]``. The torso
scales its uint8 input itself (pixels / 255; MinAtar's channels as they are), so observations stay uint8 in replay
and across process boundaries. Output: Q-values ``float32 [B, A]``; the head is FC hidden -> A, or the dueling head.
"""

from __future__ import annotations

import torch
from torch import nn

from agents.torsos import make_torso


class QNetwork(nn.Module):
    """Torso -> FC hidden -> A (or dueling V + A - mean A, Wang et al. 2016).

    Parameter names: ``torso.*`` (the conv layers, ``torso.0.weight`` first), then ``head.*`` or ``value.*`` and
    ``advantage.*`` (for the Nature torso the same names and shapes as before the torsos were shared).

    :param num_actions: size of the discrete action space A.
    :param obs_shape: one observation's shape (C, H, W): (4, 84, 84) for Atari stacks, (C, 10, 10) for MinAtar.
    :param hidden: width of the fully connected layer (512 in Nature DQN, 128 in MinAtar's example).
    :param dueling: use the dueling head.
    :param torso: torso kind for :func:`agents.torsos.make_torso` ("auto": MinAtar for 10x10, Nature for 84x84).
    :param stack: deprecated, for callers written before ``obs_shape``: ``stack=S`` means ``obs_shape=(S, 84, 84)``.
    """

    def __init__(self, num_actions: int, obs_shape: tuple[int, ...] = (4, 84, 84), hidden: int = 512,
                 dueling: bool = False, torso: str = "auto", *, stack: int | None = None) -> None:
        super().__init__()
        self.num_actions = num_actions
        self.dueling = dueling
        if stack is not None:
            if tuple(obs_shape) != (4, 84, 84) and tuple(obs_shape) != (stack, 84, 84):
                raise ValueError(f"give obs_shape or (deprecated) stack, not both: {tuple(obs_shape)}, {stack}")
            obs_shape = (int(stack), 84, 84)
        self.obs_shape = tuple(int(x) for x in obs_shape)
        self.torso, torso_out = make_torso(self.obs_shape, kind=torso)
        if dueling:
            self.value = nn.Sequential(nn.Linear(torso_out, hidden), nn.ReLU(), nn.Linear(hidden, 1))
            self.advantage = nn.Sequential(nn.Linear(torso_out, hidden), nn.ReLU(), nn.Linear(hidden, num_actions))
        else:
            self.head = nn.Sequential(nn.Linear(torso_out, hidden), nn.ReLU(), nn.Linear(hidden, num_actions))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """:param obs: uint8 ``[B, *obs_shape]``. :return: float32 Q-values ``[B, A]``."""
        x = self.torso(obs)
        if not self.dueling:
            return self.head(x)
        adv = self.advantage(x)
        return self.value(x) + adv - adv.mean(dim=1, keepdim=True)
