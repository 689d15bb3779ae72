"""The policy core: the one contract between the actor-critic actor and learner and the networks they train.

The feed-forward and LSTM networks (:class:`agents.actor_critic.networks.ActorCriticNetwork`) and STRAW's planning
core (:class:`agents.straw.network.STRAWNetwork`) implement :class:`PolicyCore`; ``ActorCriticConfig.build_network``
returns one, and an algorithm built on the actor-critic learner (STRAW) brings its own core by overriding that
hook. The actor (:class:`agents.actor_critic.actor.ACPolicy`, the :class:`agents.actor_critic.actor.TrajectoryAdder`)
and the learner (:class:`agents.actor_critic.learning.ActorCriticLearner`) call only what is written here, so
neither names a concept of one core (STRAW's gates, its committed fraction): a core's own per-step inputs travel as
:meth:`PolicyCore.step_inputs`, its own loss as :attr:`Replay.aux_loss`, its own statistics as
:meth:`PolicyCore.replay_stats`.

Why here and not beside the runtime's contracts (:mod:`agents.runtime.algorithm`): the runtime never sees a core. It
sees a ``Policy`` that acts and a ``Learner`` that updates; what runs inside them is the actor-critic family's
business, and ``agents/runtime`` may not import an algorithm folder. DQN's Q-network and MFEC's memory are not
policy cores.

The life of a core's state, for B envs:

    state = core.initial_state(B)                         # the actor, once
    inputs_t = core.step_inputs(state)                    # what replay needs of step t (recorded by the adder)
    logits, values, state = core.step(obs_t, state, starts_t)
    ...                                                   # T steps, then the learner:
    out = core.replay(obs[0..T], state_0, starts, actions, rewards, inputs[0..T])
    # out.logits[t], out.values[t] are what step() gave at step t (up to float rounding), for t = 0..T

Shapes: B envs, T steps per unroll (``agent.unroll_length``), A actions; observations are uint8.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple, Protocol

import torch
from torch import nn

#: A core's recurrent state: tensors with leading dim B (empty for a feed-forward core).
State = dict[str, torch.Tensor]


class Replay(NamedTuple):
    """The learner's pass over a batch of unrolls (:meth:`PolicyCore.replay`), for any policy core."""

    logits: torch.Tensor
    """``[T + 1, B, A]``."""
    values: torch.Tensor
    """``[T + 1, B]``."""
    aux_loss: torch.Tensor | None = None
    """``[T + 1, B]``: the core's own loss per step, already weighted (STRAWe's KL and commitment cost), added to
    the objective by the learner with its reduction (logged as ``losses/core_loss``); None: none."""
    per_step: dict[str, torch.Tensor] | None = None
    """``[T + 1, B]`` tensors the core reports per step for its own :meth:`PolicyCore.replay_stats` and
    diagnostics (STRAW: ``gates``, 1 where the step ran the whole network); the learner does not read them."""


class PolicyCore(Protocol):
    """Policy logits and state values of uint8 observations, acted step by step and replayed by unrolls.

    An ``nn.Module`` (the learner trains its parameters, the actor loads its ``state_dict``); the methods below
    are the module methods the actor-critic code calls, written out so that mypy checks each core against them.
    """

    @property
    def recurrent(self) -> bool:
        """True: the core carries a state between steps, so the learner replays whole unrolls from the state the
        actor stored at their start (PPO's minibatches are then whole unrolls); False (feed-forward): every step
        stands alone, and the learner may call the core on single observations (:meth:`__call__`)."""

    def initial_state(self, batch: int) -> State:
        """The state of ``batch`` fresh envs (``{}`` for a feed-forward core)."""

    def step(self, obs: torch.Tensor, state: State, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, State]:
        """The actor's step: logits ``[B, A]``, values ``[B]`` and the state after it.

        :param obs: uint8 ``[B, *obs_shape]``. :param state: the state entering this step.
        :param starts: bool ``[B]``, True where ``obs`` is the first observation of a game (the core resets its
            state there).
        """

    def step_inputs(self, state: State) -> dict[str, torch.Tensor]:
        """The replay inputs the core needs of the step that ``state`` enters, each ``[B, ...]`` (STRAW: the gate
        and noise drawn for it; ``{}`` for the feed-forward and LSTM cores). The actor records them at every step,
        and for the bootstrap step, as ``input_<name>`` and ``next_input_<name>`` extras; the adder stores them
        as :attr:`agents.actor_critic.actor.Unroll.inputs` ``[T + 1, B, ...]``, which :meth:`replay` receives."""

    def replay(self, obs: torch.Tensor, state: State, starts: torch.Tensor, actions: torch.Tensor,
               rewards: torch.Tensor, inputs: dict[str, torch.Tensor] | None = None,
               bootstrap_grad: bool = True) -> Replay:
        """The learner's pass over unrolls from a stored state: logits ``[T + 1, B, A]`` and values ``[T + 1, B]``
        as :meth:`step` gave them to the actor (the last step is the bootstrap observation's), and the core's own
        loss and per-step reports.

        :param obs: uint8 ``[T + 1, B, *obs_shape]``. :param state: the state entering step 0, as the actor
            stored it. :param starts: bool ``[T + 1, B]``.
        :param actions: int64 ``[T, B]`` and ``rewards`` float32 ``[T, B]`` (clipped): the previous action and
            reward inputs of steps 1..T, for a core that takes them.
        :param inputs: the recorded :meth:`step_inputs`, each ``[T + 1, B, ...]``.
        :param bootstrap_grad: False: the bootstrap step's outputs need carry no gradient (a core may then spare
            its backward their rows).
        """

    def replay_stats(self, out: Replay, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Scalars (0-dim, detached) the core reports of a replay, over the learner's steps ``mask`` (float
        ``[T, B]``, 0 on autoreset steps): by bare name (logged as ``losses/<name>``) or full TensorBoard tag
        (STRAW's ``charts/committed_fraction``); ``{}`` for a core with nothing to report."""

    def __call__(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Feed-forward cores only: logits ``[B, A]`` and values ``[B]`` of uint8 observations ``[B, *obs_shape]``."""

    # --- the nn.Module methods the actor and learner call ---------------------------------------------------------
    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any: ...

    def to(self, device: torch.device) -> PolicyCore: ...

    def eval(self) -> PolicyCore: ...

    def requires_grad_(self, requires_grad: bool = True) -> PolicyCore: ...
