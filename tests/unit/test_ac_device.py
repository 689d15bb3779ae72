"""The actor-critic learner's device path: the batch moved in one copy (several unrolls packed side by side), and
updates (a2c, ppo, impala) that read nothing on the host, PPO's shuffling included (no ``nonzero``, no ``.item()``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import torch

from agents.actor_critic.actor import Unroll
from agents.actor_critic.config import ActorCriticConfig
from agents.actor_critic.learning import ActorCriticLearner, Batch
from agents.runtime.algorithm import Counters, EnvSpec
from launch.config import load_config

CPU = torch.device("cpu")
SPEC = EnvSpec(obs_shape=(1, 10, 10), num_actions=3, frame_skip=1, stack=1, frame_shape=(1, 10, 10), obs_high=1.0)


def _cfg(*overrides: str) -> ActorCriticConfig:
    return load_config(ActorCriticConfig, ["a2c_tiny"], ["run.progress=false", "network.torso=minatar", *overrides])


def _unroll(seed: int, steps: int = 6, envs: int = 4, lstm: int = 0) -> Unroll:
    """A random unroll with one autoreset step (invalid, reward 0, carry 0) in every column, after a terminal step
    (discount 0, carry 0)."""
    rng = np.random.default_rng(seed)
    valid = np.ones((steps, envs), bool)
    valid[rng.integers(1, steps, envs), np.arange(envs)] = False
    ends = np.roll(~valid, -1, axis=0)
    ends[-1] = False
    state = {} if lstm == 0 else {"h": rng.normal(size=(envs, lstm)).astype(np.float32),
                                  "c": rng.normal(size=(envs, lstm)).astype(np.float32)}
    return Unroll(obs=rng.integers(0, 2, (steps + 1, envs, *SPEC.obs_shape), dtype=np.uint8),
                  starts=rng.random((steps + 1, envs)) < 0.1, actions=rng.integers(0, 3, (steps, envs)),
                  logits=rng.normal(size=(steps, envs, 3)).astype(np.float32),
                  rewards=(rng.normal(size=(steps, envs)) * valid).astype(np.float32),
                  discounts=np.full((steps, envs), 0.99, np.float32) * (valid & ~ends),
                  carry=(valid & ~ends).astype(np.float32), valid=valid, state=state,
                  values=rng.normal(size=(steps, envs)).astype(np.float32))


def test_a_batch_of_several_unrolls_is_their_concatenation() -> None:
    parts = [_unroll(0, lstm=8), _unroll(1, lstm=8)]
    one = Batch(Unroll.concat(parts), CPU)
    two = Batch(parts, CPU)
    for name in ("obs", "starts", "actions", "behaviour_logits", "rewards", "discounts", "carry", "mask",
                 "behaviour_values"):
        assert torch.equal(getattr(one, name), getattr(two, name)), name
    assert one.state.keys() == two.state.keys() == {"h", "c"}
    assert all(torch.equal(one.state[k], two.state[k]) for k in one.state)
    assert two.mask.dtype == torch.float32 and two.obs.dtype == torch.uint8 and two.obs.shape[1] == 8


@contextmanager
def _no_host_reads(learner: ActorCriticLearner) -> Iterator[None]:
    """Fail on any read of a tensor's value on the host (``item``, ``tolist``, ``float``, ``.cpu()``, ``.numpy()``)
    and on ``nonzero`` (its shape depends on the data: a sync); the optimiser's step counters (host tensors, also
    with CUDA parameters) may be read."""
    steps = {id(state["step"]) for state in learner.optimizer.state.values() if "step" in state}
    saved = {name: getattr(torch.Tensor, name) for name in ("item", "tolist", "__float__", "cpu", "numpy", "nonzero")}
    saved_nonzero = torch.nonzero

    def forbid(name: str) -> Any:
        def read(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if name == "item" and id(self) in steps:
                return saved[name](self, *args, **kwargs)
            raise AssertionError(f"Tensor.{name} during an update")
        return read

    def no_nonzero(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("torch.nonzero during an update")

    try:
        for name in saved:
            setattr(torch.Tensor, name, forbid(name))
        setattr(torch, "nonzero", no_nonzero)  # noqa: B010 (setattr: torch types the function as its own)
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch.Tensor, name, fn)
        setattr(torch, "nonzero", saved_nonzero)  # noqa: B010


@pytest.mark.parametrize(("loss", "core"), [("a2c", "ff"), ("ppo", "ff"), ("ppo", "lstm"), ("impala", "ff")])
def test_an_update_reads_nothing_on_the_host_and_returns_device_scalars(loss: str, core: str) -> None:
    cfg = _cfg(f"agent.loss={loss}", f"network.core={core}", "network.lstm_size=8")
    learner = ActorCriticLearner(SPEC, cfg, CPU)
    lstm = 8 if core == "lstm" else 0
    counters = Counters(frame_skip=1, total_steps=10**6)
    for seed in range(2):  # the second update has the optimiser's state
        learner.pending = [_unroll(seed, lstm=lstm) for _ in range(learner.batch_chunks)]
        if seed == 0:
            learner.update(counters)
            continue
        with _no_host_reads(learner):
            stats = learner.update(counters)
    assert {"losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/grad_norm"} <= set(stats)
    for key, value in stats.items():
        assert isinstance(value, torch.Tensor) and value.dim() == 0 and torch.isfinite(value), key


def test_ppo_drops_autoreset_steps_by_weight_alone() -> None:
    """PPO's feed-forward minibatches are a permutation of every step with the autoreset steps weighted 0: what an
    autoreset step holds (its observation, action, behaviour logits and value) changes nothing of the update."""
    cfg = _cfg("agent.loss=ppo", "agent.normalize_advantages=true", "agent.gae_lambda=0.9")
    a, b, c = (ActorCriticLearner(SPEC, cfg, CPU) for _ in range(3))
    unroll = _unroll(3)
    other = Unroll(**{**unroll.__dict__})
    rng = np.random.default_rng(9)
    bad = ~unroll.valid
    other.obs = unroll.obs.copy()
    other.obs[:-1][bad] = rng.integers(0, 2, other.obs[:-1][bad].shape, dtype=np.uint8)
    other.actions = np.where(bad, (unroll.actions + 1) % 3, unroll.actions)
    other.logits = np.where(bad[..., None], rng.normal(size=unroll.logits.shape), unroll.logits).astype(np.float32)
    assert other.values is not None and unroll.values is not None
    other.values = np.where(bad, 5.0, unroll.values).astype(np.float32)
    counters = Counters(frame_skip=1, total_steps=10**6)
    torch.manual_seed(0)
    a.pending = [unroll] * a.batch_chunks
    sa = a.update(counters)
    torch.manual_seed(0)
    b.pending = [other] * b.batch_chunks
    sb = b.update(counters)
    for (name, pa), pb in zip(a.network.state_dict().items(), b.network.state_dict().values(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=1e-6, msg=name)
    for key in ("losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/approx_kl"):
        assert float(sa[key]) == pytest.approx(float(sb[key]), abs=1e-6), key
    # The control: the same change to one valid step's action does change the update.
    valid_step = Unroll(**{**unroll.__dict__})
    valid_step.actions = unroll.actions.copy()
    t, col = np.argwhere(unroll.valid)[0]
    valid_step.actions[t, col] = (unroll.actions[t, col] + 1) % 3
    torch.manual_seed(0)
    c.pending = [valid_step] * c.batch_chunks
    c.update(counters)
    assert any((pa - pc).abs().max() > 1e-5
               for pa, pc in zip(a.network.state_dict().values(), c.network.state_dict().values(), strict=True))
