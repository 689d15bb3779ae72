"""RMSProp with epsilon inside the square root (worldmodels/common/optim.py) against updates computed by hand.

The numbers are picked so that every square root is exact: with alpha 0.5 (or 0.75) and these epsilons each
``ms (- mg^2) + eps`` is a perfect square. Each tensor has two components, each with its own gradients.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from worldmodels.common.optim import RMSpropEpsInside, nature_dqn_rmsprop


def _steps(grads: list[list[float]], optimizer: Any = RMSpropEpsInside, **kwargs: Any) -> list[list[float]]:
    """The parameters after each step, from ``[0, 0]`` (float64), given each step's gradient."""
    p = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = optimizer([p], **kwargs)
    out = []
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        out.append(p.detach().tolist())
    return out


def test_uncentred_from_zero_by_hand() -> None:
    # lr 1, alpha 0.5, eps 7, ms from 0. Component 0: g = 2, then 4:
    #   step 1: ms = 0.5 * 0 + 0.5 * 4 = 2;   sqrt(2 + 7) = 3;  p = 0 - 2 / 3 = -2/3
    #   step 2: ms = 0.5 * 2 + 0.5 * 16 = 9;  sqrt(9 + 7) = 4;  p = -2/3 - 4 / 4 = -5/3
    # Component 1: g = -2, then 4 (same squares): p = +2/3, then 2/3 - 1 = -1/3.
    steps = _steps([[2.0, -2.0], [4.0, 4.0]], lr=1.0, alpha=0.5, eps=7.0, initial_square_avg=0.0)
    assert steps[0] == pytest.approx([-2 / 3, 2 / 3], rel=1e-12)
    assert steps[1] == pytest.approx([-5 / 3, -1 / 3], rel=1e-12)


def test_uncentred_from_one_as_tensorflow_by_hand() -> None:
    # lr 0.5, alpha 0.5, eps 3, ms from 1 (TensorFlow 1). Component 0: g = 1, then 5:
    #   step 1: ms = 0.5 * 1 + 0.5 * 1 = 1;   sqrt(1 + 3) = 2;   p = 0 - 0.5 * 1 / 2 = -0.25
    #   step 2: ms = 0.5 * 1 + 0.5 * 25 = 13; sqrt(13 + 3) = 4;  p = -0.25 - 0.5 * 5 / 4 = -0.875
    # Component 1: g = -1, then -5: the mirror image.
    steps = _steps([[1.0, -1.0], [5.0, -5.0]], lr=0.5, alpha=0.5, eps=3.0, initial_square_avg=1.0)
    assert steps == [[-0.25, 0.25], [-0.875, 0.875]]  # every number is exact in binary


def test_tensorflow_momentum_by_hand() -> None:
    # As above plus momentum 0.5 (TensorFlow 1's form, the PixelCNN's): mom = 0.5 mom + lr g / den; p -= mom.
    #   step 1: mom = 0 + 0.5 * 1 / 2 = 0.25;            p = -0.25
    #   step 2: mom = 0.5 * 0.25 + 0.5 * 5 / 4 = 0.75;   p = -0.25 - 0.75 = -1
    steps = _steps([[1.0, -1.0], [5.0, -5.0]], lr=0.5, alpha=0.5, eps=3.0, momentum=0.5, initial_square_avg=1.0)
    assert steps == [[-0.25, 0.25], [-1.0, 1.0]]


def test_centred_from_zero_by_hand() -> None:
    # lr 1, alpha 0.5, eps 3, ms and mg from 0 (DeepMind's DQN). Both components: g = -2 first:
    #   step 1: ms = 0.5 * 4 = 2, mg = 0.5 * -2 = -1;  sqrt(2 - 1 + 3) = 2;  p = 0 + 2 / 2 = 1
    # Component 0, then g = 1.5:
    #   step 2: ms = 1 + 0.5 * 2.25 = 2.125, mg = -0.5 + 0.75 = 0.25;
    #           sqrt(2.125 - 0.0625 + 3) = sqrt(5.0625) = 2.25;  p = 1 - 1.5 / 2.25 = 1/3
    # Component 1, then g = -3.5:
    #   step 2: ms = 1 + 0.5 * 12.25 = 7.125, mg = -0.5 - 1.75 = -2.25;
    #           sqrt(7.125 - 5.0625 + 3) = 2.25;  p = 1 + 3.5 / 2.25 = 23/9
    steps = _steps([[-2.0, -2.0], [1.5, -3.5]], lr=1.0, alpha=0.5, eps=3.0, centered=True, initial_square_avg=0.0)
    assert steps[0] == [1.0, 1.0]
    assert steps[1] == pytest.approx([1 / 3, 23 / 9], rel=1e-12)


def test_centred_from_one_as_tensorflow_by_hand() -> None:
    # lr 1, alpha 0.75, eps 0.25, ms from 1 and mg from 0 (TensorFlow 1, centered=True). Component 0: g = 4, then 1:
    #   step 1: ms = 0.75 + 0.25 * 16 = 4.75, mg = 1;  sqrt(4.75 - 1 + 0.25) = 2;  p = -4 / 2 = -2
    #   step 2: ms = 0.75 * 4.75 + 0.25 = 3.8125, mg = 0.75 + 0.25 = 1;
    #           sqrt(3.8125 - 1 + 0.25) = sqrt(3.0625) = 1.75;  p = -2 - 1 / 1.75 = -18/7
    # Component 1: g = -4, then 6:  p = 2;  ms = 3.5625 + 9 = 12.5625, mg = -0.75 + 1.5 = 0.75;
    #           sqrt(12.5625 - 0.5625 + 0.25) = 3.5;  p = 2 - 6 / 3.5 = 2/7
    steps = _steps([[4.0, -4.0], [1.0, 6.0]], lr=1.0, alpha=0.75, eps=0.25, centered=True, initial_square_avg=1.0)
    assert steps[0] == [-2.0, 2.0]
    assert steps[1] == pytest.approx([-18 / 7, 2 / 7], rel=1e-12)


def test_torchs_rmsprop_adds_epsilon_outside_the_root() -> None:
    # The first uncentred case with torch.optim.RMSprop: ms = 2, so p = -2 / (sqrt(2) + 7), not -2 / sqrt(2 + 7).
    ours = _steps([[2.0, -2.0]], lr=1.0, alpha=0.5, eps=7.0, initial_square_avg=0.0)[0]
    torchs = _steps([[2.0, -2.0]], torch.optim.RMSprop, lr=1.0, alpha=0.5, eps=7.0)[0]
    assert torchs == pytest.approx([-2 / (2**0.5 + 7), 2 / (2**0.5 + 7)], rel=1e-12)
    assert ours == pytest.approx([-2 / 3, 2 / 3], rel=1e-12)
    # Nature DQN's numbers on a small gradient: DeepMind's step is about lr g / sqrt(0.01), PyTorch's lr g / 0.01.
    g = [[1e-6, -1e-6]]
    nature = _steps(g, nature_dqn_rmsprop, lr=1.0)[0]
    torch_nature = _steps(g, torch.optim.RMSprop, lr=1.0, alpha=0.95, eps=0.01, centered=True)[0]
    assert nature[0] == pytest.approx(-1e-6 / 0.1, rel=1e-3)
    assert torch_nature[0] == pytest.approx(-1e-6 / 0.01, rel=1e-3)  # ten times DeepMind's step


def test_nature_dqn_settings_and_old_states_load() -> None:
    p = torch.nn.Parameter(torch.zeros(3))
    group = nature_dqn_rmsprop([p]).param_groups[0]
    assert (group["lr"], group["alpha"], group["eps"], group["centered"], group["momentum"],
            group["initial_square_avg"]) == (2.5e-4, 0.95, 0.01, True, 0.0, 0.0)
    # A state saved before centring and momentum were options (the former actor-critic RMSpropTF) loads as it was.
    opt = RMSpropEpsInside([p], lr=0.1, alpha=0.9, eps=0.01)
    old = {"state": {0: {"square_avg": torch.full((3,), 2.0)}}, "param_groups": [
        {"lr": 0.1, "alpha": 0.9, "eps": 0.01, "params": [0]}]}
    opt.load_state_dict(old)
    p.grad = torch.ones(3)
    opt.step()
    ms = 0.9 * 2.0 + 0.1
    assert torch.allclose(p.detach(), torch.full((3,), -0.1 / (ms + 0.01) ** 0.5))


def test_bad_arguments_are_named() -> None:
    p = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(ValueError, match="alpha"):
        RMSpropEpsInside([p], lr=0.1, alpha=1.0)
    with pytest.raises(ValueError, match="initial_square_avg"):
        RMSpropEpsInside([p], lr=0.1, initial_square_avg=-1.0)


def test_dqn_presets_name_their_rmsprop() -> None:
    from agents.dqn.config import DQNConfig
    from agents.dqn.learning import DQNLearner
    from launch.config import load_config

    def optimizer(preset: str) -> torch.optim.Optimizer:
        cfg = load_config(DQNConfig, [preset], ["network.hidden=16"])
        return DQNLearner(3, cfg.agent, cfg.network, 1, obs_shape=(4, 10, 10)).optimizer

    nature, minatar = optimizer("dqn_nature"), optimizer("dqn_minatar")
    assert type(nature) is RMSpropEpsInside  # DeepMind's: centred, 0.01 inside the root, averages from 0
    assert {k: nature.param_groups[0][k] for k in ("lr", "alpha", "eps", "centered", "initial_square_avg")} == {
        "lr": 2.5e-4, "alpha": 0.95, "eps": 0.01, "centered": True, "initial_square_avg": 0.0}
    assert type(minatar) is torch.optim.RMSprop  # MinAtar's example: PyTorch's, 0.01 outside the root
    assert {k: minatar.param_groups[0][k] for k in ("lr", "alpha", "eps", "centered")} == {
        "lr": 2.5e-4, "alpha": 0.95, "eps": 0.01, "centered": True}
