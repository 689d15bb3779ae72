"""PixelCNN density model: causal masks, online learning, optimiser arithmetic, state round trip."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from worldmodels.density import PixelCNNConfig, PixelCNNDensity
from worldmodels.density.pixelcnn import MaskedConv2d, PixelCNN
from worldmodels.protocols import DensityModel

torch.set_num_threads(1)


def _frame(seed: int, shape: tuple[int, int] = (42, 42), levels: int = 8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frame = np.zeros(shape, dtype=np.uint8)
    frame[shape[0] // 4 : shape[0] // 2, 3:20] = rng.integers(1, levels)
    frame[shape[0] // 2 :, shape[1] // 2 :] = rng.integers(1, levels)
    return frame[None]


def test_mask_shapes() -> None:
    a = MaskedConv2d("A", 1, 1, 3).mask[0, 0]
    b = MaskedConv2d("B", 1, 1, 3).mask[0, 0]
    assert a.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert b.tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]
    assert MaskedConv2d("B", 4, 4, 1).mask.flatten().tolist() == [1.0]


@pytest.mark.parametrize("config", [PixelCNNConfig(shape=(9, 9)), PixelCNNConfig.small(shape=(9, 9))])
def test_no_pixel_sees_itself_or_later_pixels(config: PixelCNNConfig) -> None:
    """d logits(i, j) / d input(k, l) is zero for every (k, l) at or after (i, j) in raster order,
    and non-zero for the left and upper neighbours (the mask does not cut everything)."""
    torch.manual_seed(0)
    net = PixelCNN(config).double()
    with torch.no_grad():  # non-zero biases/weights everywhere so no path is accidentally dead
        for p in net.parameters():
            p.normal_(0.0, 0.5)
    x = torch.rand(1, 1, *config.shape, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda inp: net(inp), x)  # [1, L, H, W, 1, 1, H, W]
    h, w = config.shape
    sensitivity = jac.abs().sum(dim=(0, 1, 4, 5))  # [H, W (output), H, W (input)]
    for i in range(h):
        for j in range(w):
            flat = sensitivity[i, j].flatten()
            assert torch.all(flat[i * w + j :] == 0), (i, j)
            if j > 0:
                assert sensitivity[i, j, i, j - 1] > 0
            if i > 0:
                assert sensitivity[i, j, i - 1, j] > 0


def test_satisfies_protocol_and_probabilities_sum_to_one() -> None:
    model = PixelCNNDensity(PixelCNNConfig.small())
    assert isinstance(model, DensityModel)
    probs = model.symbol_probs(_frame(0)[0])
    assert probs.shape == (42, 42, 8)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
    chosen = np.take_along_axis(probs, _frame(0)[0][..., None].astype(np.int64), axis=-1)
    assert model.log_prob(_frame(0))[0] == pytest.approx(np.log(chosen).sum(), rel=1e-5)


def test_loss_falls_on_a_repeated_frame() -> None:
    model = PixelCNNDensity()  # the paper's setting
    frames = np.repeat(_frame(1), 25, axis=0)
    before, after = model.update(frames)
    assert before.dtype == np.float64 and before.shape == (25,)
    assert -before[-1] < 0.1 * -before[0]  # NLL falls tenfold in 25 steps
    # The recoding probability is mostly higher (momentum makes a few steps overshoot).
    assert np.mean(after > before) >= 0.7
    # Online: frame b is scored by the model after frame b-1's step, i.e. its recoding model.
    np.testing.assert_allclose(before[1:], after[:-1], rtol=1e-9)
    assert model.num_frames == 25


def test_batched_mode_scores_every_frame_with_one_model() -> None:
    model = PixelCNNDensity(PixelCNNConfig.small(update_mode="batched"))
    frames = np.concatenate([_frame(2), _frame(3), _frame(2)])
    expected_before = model.log_prob(frames)
    before, after = model.update(frames)
    np.testing.assert_allclose(before, expected_before, rtol=1e-9)
    np.testing.assert_allclose(after, model.log_prob(frames), rtol=1e-9)
    assert before[0] == pytest.approx(before[2], rel=1e-12)  # same frame, same (pre-step) model


def test_state_dict_round_trip_gives_identical_results() -> None:
    config = PixelCNNConfig.small(seed=3)
    model = PixelCNNDensity(config)
    model.update(np.concatenate([_frame(4), _frame(5)]))
    clone = PixelCNNDensity(PixelCNNConfig.small(seed=99))  # different initial weights, same sizes
    with pytest.raises(ValueError, match="saved config"):
        clone.load_state_dict(model.state_dict())
    clone = PixelCNNDensity(config)
    clone.load_state_dict(model.state_dict())
    frames = np.concatenate([_frame(6), _frame(4), _frame(7)])
    b1, a1 = model.update(frames)
    b2, a2 = clone.update(frames)
    np.testing.assert_array_equal(b1, b2)
    np.testing.assert_array_equal(a1, a2)


def test_a_state_saved_by_the_former_tf_rmsprop_loads() -> None:
    """PixelCNN states saved when the optimiser was this module's own TFRMSProp (``ms``, ``mom``, ``decay``)."""
    config = PixelCNNConfig.small()
    model = PixelCNNDensity(config)
    model.update(np.concatenate([_frame(6), _frame(4)]))
    state = copy.deepcopy(model.state_dict())
    for entry in state["optimizer"]["state"].values():
        entry["ms"], entry["mom"] = entry.pop("square_avg"), entry.pop("momentum_buffer")
    for group in state["optimizer"]["param_groups"]:
        group["decay"] = group.pop("alpha")
        del group["centered"], group["initial_square_avg"]
    clone = PixelCNNDensity(config)
    clone.load_state_dict(state)
    frames = _frame(7)
    np.testing.assert_array_equal(model.update(frames)[1], clone.update(frames)[1])


def test_bad_input_is_named() -> None:
    model = PixelCNNDensity(PixelCNNConfig.small())
    with pytest.raises(ValueError, match=r"\[B, 42, 42\]"):
        model.update(np.zeros((42, 42), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        model.log_prob(np.full((1, 42, 42), 9, dtype=np.uint8))
    with pytest.raises(ValueError, match="update_mode"):
        PixelCNNDensity(PixelCNNConfig(update_mode="sometimes"))  # type: ignore[arg-type]
