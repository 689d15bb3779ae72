"""The actor-critic network: a conv torso, a fully connected layer, an optional LSTM core, policy and value heads.

- Torsos (``agents.torsos``): the A3C network (Mnih et al. 2016, Sec. 5.1 / 8: conv 16 8x8/4, conv 32 4x4/2, 256
  units), the Nature CNN (Mnih et al. 2015; CleanRL's PPO, 512 units) and MinAtar's (16 3x3/1).
- ``core: ff``: ``torso -> fc (ReLU) -> {policy logits, value}``.
- ``core: lstm`` (A3C LSTM; STRAW's LSTM baseline with ``prev_action_reward``): ``torso -> fc (ReLU) [+ one-hot
  previous action, previous clipped reward] -> LSTMCell -> {policy logits, value}``. The state is zeroed wherever
  an observation starts a game, in the actor (:meth:`ActorCriticNetwork.step`) and in the learner
  (:meth:`ActorCriticNetwork.unroll`), which re-runs each unroll from the state the actor stored at its start
  (truncated backpropagation through time over the unroll).

The recurrent state is a dict of tensors with leading dim B: ``h``, ``c`` ``[B, lstm_size]`` and, with
``prev_action_reward``, ``prev_action`` (int64 ``[B]``) and ``prev_reward`` (float32 ``[B]``); empty for ``ff``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from agents.actor_critic.config import ACNetworkConfig
from agents.actor_critic.core import Replay, State
from agents.torsos import GRID_MAX, make_torso

__all__ = ["GRID_MAX", "ActorCriticNetwork", "Replay", "State", "torso_kind"]


def torso_kind(obs_shape: tuple[int, ...], torso: str) -> str:
    """The torso ``network.torso`` names for ``obs_shape``; "auto" is the A3C network on pixels, MinAtar's (one 3x3
    convolution at full resolution) on grids of cells such as MinAtar's 10x10 and the maze's n x n."""
    if torso != "auto":
        return torso
    return "minatar" if max(obs_shape[1:]) <= GRID_MAX else "a3c"


class ActorCriticNetwork(nn.Module):
    """Policy logits and state value of uint8 observations: the feed-forward and LSTM
    :class:`~agents.actor_critic.core.PolicyCore` s.

    :param obs_shape: one observation (``(4, 84, 84)`` on Atari, ``(C, 10, 10)`` on MinAtar).
    :param num_actions: size of the discrete action space.
    :param cfg: the ``network`` section.
    :param input_divisor: what uint8 observations are divided by (the env's ``EnvSpec.obs_high``: 255 for pixels,
        1 for 0/1 channels); None: :func:`agents.torsos.make_torso`'s rule by size.
    :param value_heads: 1, or 2 for an intrinsic reward stream (RND's second value head, Burda et al. 2018, Sec.
        2.3): the values are then ``[..., 2]``, extrinsic first, instead of ``[...]``.
    """

    def __init__(self, obs_shape: tuple[int, ...], num_actions: int, cfg: ACNetworkConfig,
                 input_divisor: float | None = None, value_heads: int = 1) -> None:
        super().__init__()
        if value_heads not in (1, 2):
            raise ValueError(f"value_heads={value_heads}: 1 (extrinsic) or 2 (extrinsic, intrinsic)")
        self.num_actions = num_actions
        self.value_heads = value_heads
        self.recurrent = str(cfg.core) == "lstm"
        self.prev_action_reward = self.recurrent and bool(cfg.prev_action_reward)
        self.torso, features = make_torso(tuple(obs_shape), torso_kind(tuple(obs_shape), str(cfg.torso)),
                                          input_divisor=input_divisor)
        self.fc = nn.Sequential(nn.Linear(features, cfg.hidden), nn.ReLU())
        head_in = cfg.hidden
        if self.recurrent:
            extra = num_actions + 1 if self.prev_action_reward else 0
            self.lstm = nn.LSTMCell(cfg.hidden + extra, cfg.lstm_size)
            head_in = cfg.lstm_size
        self.policy = nn.Linear(head_in, num_actions)
        self.value = nn.Linear(head_in, value_heads)
        if cfg.orthogonal_init:
            self._orthogonal_init()

    def _orthogonal_init(self) -> None:
        """Baselines' / CleanRL's initialisation: orthogonal weights (gain sqrt(2) for ReLU layers, 0.01 for the
        policy logits, 1 for the value), zero biases; the LSTM keeps PyTorch's."""
        layers: list[tuple[nn.Module, float]] = [(m, 2 ** 0.5) for m in (*self.torso, *self.fc)
                                                 if isinstance(m, (nn.Conv2d, nn.Linear))]
        for module, gain in layers + [(self.policy, 0.01), (self.value, 1.0)]:
            assert isinstance(module, (nn.Conv2d, nn.Linear))
            nn.init.orthogonal_(module.weight, gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def initial_state(self, batch: int) -> State:
        """The zero state of ``batch`` envs (empty for a feed-forward core)."""
        if not self.recurrent:
            return {}
        size = self.lstm.hidden_size
        device = self.policy.weight.device
        state = {"h": torch.zeros(batch, size, device=device), "c": torch.zeros(batch, size, device=device)}
        if self.prev_action_reward:
            state["prev_action"] = torch.zeros(batch, dtype=torch.int64, device=device)
            state["prev_reward"] = torch.zeros(batch, device=device)
        return state

    def heads(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[..., A]`` and values ``[...]`` (``[..., 2]`` with two value heads) of core outputs
        ``[..., head_in]``."""
        values = self.value(features)
        return self.policy(features), values.squeeze(-1) if self.value_heads == 1 else values

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Feed-forward core only: logits ``[B, A]`` and values ``[B]`` of uint8 observations ``[B, *obs_shape]``."""
        if self.recurrent:
            raise RuntimeError("an LSTM network needs its state: call step() or unroll()")
        return self.heads(self.fc(self.torso(obs)))

    def _core_step(self, x: torch.Tensor, state: State, starts: torch.Tensor) -> tuple[torch.Tensor, State]:
        """One LSTM step on fc features ``x`` ``[B, hidden]``; the state is zeroed where ``starts`` (bool ``[B]``)."""
        keep = (~starts).to(x.dtype).unsqueeze(1)
        h, c = state["h"] * keep, state["c"] * keep
        if self.prev_action_reward:
            # A new game has no previous action or reward: both inputs are zero at its first step.
            one_hot = F.one_hot(state["prev_action"], self.num_actions).to(x.dtype) * keep
            reward = state["prev_reward"].unsqueeze(1) * keep
            x = torch.cat([x, one_hot, reward], dim=1)
        h, c = self.lstm(x, (h, c))
        return h, {"h": h, "c": c}

    def step(self, obs: torch.Tensor, state: State, starts: torch.Tensor,
             ) -> tuple[torch.Tensor, torch.Tensor, State]:
        """The actor's step: logits ``[B, A]``, values ``[B]`` and the next state (its ``prev_action`` and
        ``prev_reward`` still those given: the actor fills them in once it knows the action and reward).

        :param obs: uint8 ``[B, *obs_shape]``. :param state: the state entering this step.
        :param starts: bool ``[B]``, True where ``obs`` is the first observation of a game.
        """
        x = self.fc(self.torso(obs))
        if not self.recurrent:
            logits, values = self.heads(x)
            return logits, values, {}
        out, new_state = self._core_step(x, state, starts)
        if self.prev_action_reward:
            new_state.update(prev_action=state["prev_action"], prev_reward=state["prev_reward"])
        logits, values = self.heads(out)
        return logits, values, new_state

    def step_inputs(self, state: State) -> dict[str, torch.Tensor]:
        """None: the state, the observations, actions and rewards are all :meth:`replay` needs."""
        return {}

    def replay(self, obs: torch.Tensor, state: State, starts: torch.Tensor, actions: torch.Tensor,
               rewards: torch.Tensor, inputs: dict[str, torch.Tensor] | None = None,
               bootstrap_grad: bool = True) -> Replay:
        """The learner's pass, as every policy core offers it: :meth:`unroll`'s logits and values (``inputs``,
        the recorded :meth:`step_inputs`, are none here)."""
        logits, values = self.unroll(obs, state, starts, actions, rewards, bootstrap_grad)
        return Replay(logits, values)

    def replay_stats(self, out: Replay, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Nothing to report beyond the learner's own losses."""
        return {}

    def unroll(self, obs: torch.Tensor, state: State, starts: torch.Tensor, actions: torch.Tensor,
               rewards: torch.Tensor, bootstrap_grad: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """The learner's pass over unrolls: logits ``[T + 1, B, A]`` and values ``[T + 1, B]``.

        :param obs: uint8 ``[T + 1, B, *obs_shape]`` (the last one is the bootstrap observation).
        :param state: the state entering step 0 (as the actor stored it); ignored by a feed-forward core.
        :param starts: bool ``[T + 1, B]``.
        :param actions: int64 ``[T, B]`` and ``rewards`` float32 ``[T, B]`` (clipped): the previous action and
            reward inputs of steps 1..T (step 0 takes them from ``state``).
        :param bootstrap_grad: False: the outputs of step T (the bootstrap observation) carry no gradient. A
            feed-forward core then computes them in a pass apart, which spares the batched backward their rows
            (1/(T + 1) of it: 1/6 at A2C's T = 5); an LSTM needs them in sequence and ignores it.
        """
        steps, batch = obs.shape[:2]
        if not self.recurrent and not bootstrap_grad:
            flat = obs[:-1].reshape((steps - 1) * batch, *obs.shape[2:])
            logits, values = self.heads(self.fc(self.torso(flat)))
            with torch.no_grad():
                last_logits, last_values = self.heads(self.fc(self.torso(obs[-1])))
            return (torch.cat([logits.reshape(steps - 1, batch, -1), last_logits.unsqueeze(0)]),
                    torch.cat([values.reshape(steps - 1, batch, *values.shape[1:]), last_values.unsqueeze(0)]))
        # The torso and fc see all T + 1 steps as one batch; only the LSTM runs step by step.
        x = self.fc(self.torso(obs.reshape(steps * batch, *obs.shape[2:])))
        if not self.recurrent:
            logits, values = self.heads(x)
            return logits.reshape(steps, batch, -1), values.reshape(steps, batch, *values.shape[1:])
        x = x.reshape(steps, batch, -1)
        outputs = []
        current = dict(state)
        for t in range(steps):
            if self.prev_action_reward and t > 0:
                current.update(prev_action=actions[t - 1], prev_reward=rewards[t - 1])
            out, new_state = self._core_step(x[t], current, starts[t])
            current.update(new_state)
            outputs.append(out)
        logits, values = self.heads(torch.stack(outputs))
        return logits, values
