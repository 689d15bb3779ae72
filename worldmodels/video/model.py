"""``VideoPredictor``: action-conditional video prediction (Oh, Guo, Lee, Lewis and Singh 2015), a WorldModel.

The two architectures of the paper's Sec. 3 (layers in :mod:`worldmodels.video.networks`):

- ``feedforward`` (Sec. 3.1): the last ``k`` frames, stacked as channels, are encoded; the encoding is
  transformed with the action; the decoder produces the next frame. Rolling forward shifts the stack and
  appends the prediction.
- ``recurrent`` (Sec. 3.2): each frame is encoded alone and fed to an LSTM; the LSTM's output is transformed
  with the action and decoded. The ``k`` context frames warm the LSTM up; afterwards each prediction is the
  next input.

Frames enter as uint8 luminance (``[B, T, H, W]``) or colour (``[B, T, C, H, W]``) and are scaled to [0, 1]
and centred on the training data's mean frame (the paper's preprocessing, App. B.1: "subtracting the mean
pixel values and dividing each pixel value by 255"). Body ``paper`` predicts the centred frame, to which the
mean is added back; body ``residual`` predicts the change from the last frame. Predictions are clipped to
[0, 1] before they are fed back, so the model always reads frames from the range it was trained on.

Training (Sec. 3.4, :meth:`VideoPredictor.loss`): the K-step objective
``1/(2K) sum_k ||x_hat_{t+k} - x_{t+k}||^2`` in which steps 2..K read the model's own earlier predictions,
never the ground truth, and gradients flow back through them (backpropagation through time); we report it
as the mean squared error per pixel on the [0, 1] scale (the same minimiser; the scale only matters to
plain SGD, not to Adam). The curriculum K = 1, 3, 5 lives in :mod:`worldmodels.video.train`.

Reward and game over (for :class:`envs.ImaginedEnv`): the paper predicts frames only. A small head on the
*detached* transformed features classifies the reward's sign (-1, 0, +1, clipped as DQN's rewards are) and
whether the game ended at that step; detached so it cannot change the frame predictions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from worldmodels.video.config import ModelConfig
from worldmodels.video.motion import CHANGE_THRESHOLD
from worldmodels.video.networks import (
    ActionBody,
    ConvLSTMCell,
    DenseDecoder,
    DenseEncoder,
    FactoredActionTransform,
    ResidualDecoder,
    ResidualEncoder,
    RewardHead,
)

FORMAT = "reverie-video-predictor-v1"


@dataclass
class RolloutState:
    """What a rollout carries between steps (callers treat ``tensors`` as opaque).

    :ivar tensors: the model's state: ``{"stack": [B, k, C, H, W]}`` (feedforward) or ``{"h", "c",
        "frame": [B, C, H, W]}`` (recurrent); frames on the [0, 1] scale.
    :ivar reward: float32 ``[B]``: expected clipped reward of the last step, in [-1, 1] (0 before any step).
    :ivar terminal: float32 ``[B]``: predicted probability that the game ended at the last step.
    """

    tensors: dict[str, torch.Tensor]
    reward: np.ndarray
    terminal: np.ndarray

    @property
    def batch_size(self) -> int:
        return len(self.reward)


class VideoPredictor(nn.Module):
    """An action-conditional frame predictor; satisfies :class:`worldmodels.protocols.WorldModel`.

    :param cfg: architecture and sizes.
    :param num_actions: size of the game's action set.
    :param mean_frame: float32 ``[H, W]`` or ``[H, W, C]``: the mean training frame on the [0, 1] scale.
    :param game: the game of the training data (kept to refuse data of another game).
    """

    mean: torch.Tensor  # buffer [C, H, W]
    # The body picks the layers: DenseEncoder returns features, ResidualEncoder (features, skip).
    encoder: DenseEncoder | ResidualEncoder
    lstm: nn.LSTMCell | ConvLSTMCell | None
    transform: FactoredActionTransform | ActionBody
    decoder: DenseDecoder | ResidualDecoder

    def __init__(self, cfg: ModelConfig, num_actions: int, mean_frame: np.ndarray | None = None,
                 game: str = "") -> None:
        super().__init__()
        self.cfg, self.num_actions, self.game = cfg, int(num_actions), game
        self.context, self.channels = cfg.context, cfg.channels
        self.frame_shape = (cfg.height, cfg.width)
        c, size = cfg.channels, (cfg.height, cfg.width)
        mean = np.zeros((*size, c) if c > 1 else size, np.float32) if mean_frame is None else mean_frame
        self.register_buffer("mean", self._to_chw(torch.as_tensor(np.asarray(mean, np.float32))))
        recurrent = cfg.architecture == "recurrent"
        enc_in = c if recurrent else c * cfg.context
        if cfg.body == "paper":
            self.encoder = DenseEncoder(enc_in, size, cfg.conv_channels, cfg.conv_kernels, cfg.conv_padding,
                                        cfg.hidden)
            self.lstm = nn.LSTMCell(cfg.hidden, cfg.hidden) if recurrent else None
            self.transform = FactoredActionTransform(cfg.hidden, cfg.factors, num_actions)
            self.decoder = DenseDecoder(self.encoder, cfg.conv_channels, cfg.conv_kernels, cfg.conv_padding,
                                        cfg.hidden, c)
            head_in: tuple[int, ...] = (cfg.hidden,)
        else:
            self.encoder = ResidualEncoder(enc_in, cfg.stem_channels, cfg.res_channels)
            self.lstm = ConvLSTMCell(cfg.res_channels) if recurrent else None
            self.transform = ActionBody(cfg.res_channels, cfg.res_blocks, cfg.res_factors, num_actions)
            self.decoder = ResidualDecoder(cfg.res_channels, cfg.stem_channels, c)
            head_in = (cfg.res_channels, cfg.height // 4, cfg.width // 4)
        self.head = RewardHead(head_in) if cfg.reward_head else None

    # ------------------------------------------------------------------------------------ conversions
    def _to_chw(self, mean: torch.Tensor) -> torch.Tensor:
        """``[H, W]`` or ``[H, W, C]`` -> ``[C, H, W]``."""
        return mean[None] if mean.ndim == 2 else mean.permute(2, 0, 1).contiguous()

    @property
    def mean_frame(self) -> np.ndarray:
        """float32 ``[H, W]`` (``[H, W, C]`` for colour): the mean training frame on the [0, 1] scale."""
        m = self.mean.cpu().numpy()
        return m[0] if self.channels == 1 else m.transpose(1, 2, 0)

    def frames_in(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, T, H, W]`` or ``[B, T, H, W, C]`` -> float ``[B, T, C, H, W]`` on the [0, 1] scale.

        :raises ValueError: a frame size or colour count this model was not built for.
        """
        x = torch.as_tensor(frames)
        if x.ndim == 4 and self.channels == 1:
            x = x[:, :, None]
        elif x.ndim == 5 and x.shape[-1] == self.channels:
            x = x.permute(0, 1, 4, 2, 3)
        if x.ndim != 5 or tuple(x.shape[2:]) != (self.channels, *self.frame_shape):
            raise ValueError(f"frames of shape {tuple(frames.shape)} do not fit this model, which predicts "
                             f"{self.channels}-channel {self.frame_shape[0]}x{self.frame_shape[1]} frames "
                             f"([B, T, H, W] luminance or [B, T, H, W, C] colour).")
        return x.to(self.mean.device).float() / 255.0

    def frames_out(self, x: torch.Tensor) -> np.ndarray:
        """float ``[B, C, H, W]`` on [0, 1] -> uint8 ``[B, H, W]`` (``[B, H, W, C]`` for colour), rounded."""
        u8 = (x.clamp(0, 1) * 255.0).round().to(torch.uint8)
        u8 = u8.cpu()
        return u8[:, 0].numpy() if self.channels == 1 else u8.permute(0, 2, 3, 1).numpy()

    def one_hot(self, action: np.ndarray | torch.Tensor) -> torch.Tensor:
        """int64 ``[B]`` -> float ``[B, A]``. :raises ValueError: an action outside ``[0, num_actions)``."""
        a = torch.as_tensor(action, dtype=torch.int64)
        if a.numel() and (int(a.min()) < 0 or int(a.max()) >= self.num_actions):
            raise ValueError(f"actions must lie in [0, {self.num_actions}); got values from {int(a.min())} to "
                             f"{int(a.max())}.")
        return F.one_hot(a, self.num_actions).float().to(self.mean.device)

    # ----------------------------------------------------------------------------------- torch rollout
    def start(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Rollout state from real context: ``x`` float ``[B, k, C, H, W]`` on [0, 1] (differentiable)."""
        if x.shape[1] != self.context:
            raise ValueError(f"the model needs exactly {self.context} context frames, got {x.shape[1]}.")
        if self.lstm is None:
            return {"stack": x}
        b = x.shape[0]
        if self.cfg.body == "paper":
            zeros = x.new_zeros(b, self.cfg.hidden)
        else:
            h, w = self.frame_shape[0] // 4, self.frame_shape[1] // 4
            zeros = x.new_zeros(b, self.cfg.res_channels, h, w)
        state = {"h": zeros, "c": zeros, "frame": x[:, 0]}
        for t in range(1, self.context):  # warm the LSTM up on frames 0..k-2; frame k-1 is read by the first step
            state = {**self._read(state), "frame": x[:, t]}
        return state

    def _read(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Recurrent model: feed ``state["frame"]`` through encoder and LSTM; returns the new ``h``, ``c``
        (plus the encoder's skip features for the residual body)."""
        assert self.lstm is not None, "only the recurrent architecture reads frames one at a time"
        x = state["frame"] - self.mean
        if self.cfg.body == "paper":
            h, c = self.lstm(self.encoder(x), (state["h"], state["c"]))
            return {"h": h, "c": c}
        feat, skip = self.encoder(x)
        h, c = self.lstm(feat, (state["h"], state["c"]))
        return {"h": h, "c": c, "skip": skip}

    def advance(self, state: dict[str, torch.Tensor], action: torch.Tensor
                ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor | None]:
        """One prediction step, differentiable.

        :param state: from :meth:`start` or a previous :meth:`advance`.
        :param action: one-hot float ``[B, A]``.
        :return: ``(next_state, frame, head_logits)``: ``frame`` float ``[B, C, H, W]``, clipped to [0, 1]
            (what is fed back); ``head_logits`` ``[B, 4]`` or None (see :class:`RewardHead`).
        """
        if self.lstm is None:
            stack = state["stack"]
            last = stack[:, -1]
            x = (stack - self.mean).flatten(1, 2)  # [B, k*C, H, W], oldest frame first
            if self.cfg.body == "paper":
                feat, skip = self.encoder(x), None
            else:
                feat, skip = self.encoder(x)
            new: dict[str, torch.Tensor] = {}
        else:
            last = state["frame"]
            new = self._read(state)
            feat, skip = new["h"], new.get("skip")
            new.pop("skip", None)
        hidden = self.transform(feat, action)
        if self.cfg.body == "paper":
            frame = self.decoder(hidden) + self.mean
        else:
            frame = last + self.decoder(hidden, skip)
        frame = frame.clamp(0.0, 1.0)
        logits = self.head(hidden.detach()) if self.head is not None else None
        if self.lstm is None:
            new["stack"] = torch.cat([state["stack"][:, 1:], frame[:, None]], 1)
        else:
            new["frame"] = frame
        return new, frame, logits

    # ------------------------------------------------------------------------------ WorldModel protocol
    @torch.inference_mode()
    def initial(self, frames: np.ndarray, actions: np.ndarray | None = None) -> RolloutState:
        """Rollout state from the last ``k`` real frames (uint8 ``[B, k, H, W]``); ``actions`` is unused (the
        paper's models read only frames before the first action)."""
        x = self.frames_in(frames)
        b = x.shape[0]
        return RolloutState(self.start(x), np.zeros(b, np.float32), np.zeros(b, np.float32))

    @torch.inference_mode()
    def step(self, state: RolloutState, action: np.ndarray) -> tuple[RolloutState, np.ndarray]:
        """Advance every rollout by one action (int64 ``[B]``); returns the new state and the predicted frame,
        uint8 ``[B, H, W]`` (``[B, H, W, C]`` for colour). The state's ``reward``/``terminal`` describe this step."""
        tensors, frame, logits = self.advance(state.tensors, self.one_hot(action))
        reward, terminal = self.head_outputs(logits, frame.shape[0])
        return RolloutState(tensors, reward, terminal), self.frames_out(frame)

    @torch.inference_mode()
    def imagine(self, context_frames: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Open-loop rollout: uint8 ``[B, k, H, W]`` real frames and int64 ``[B, T]`` actions -> uint8
        ``[B, T, H, W]`` predictions; ``[:, t]`` is the frame after ``actions[:, t]``. The first action is the
        one taken at the last context frame."""
        state = self.start(self.frames_in(context_frames))
        acts = torch.as_tensor(np.asarray(actions), dtype=torch.int64)
        out = []
        for t in range(acts.shape[1]):
            state, frame, _ = self.advance(state, self.one_hot(acts[:, t]))
            out.append(self.frames_out(frame))
        return np.stack(out, 1)

    def head_outputs(self, logits: torch.Tensor | None, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """``(expected clipped reward, game-over probability)``, float32 ``[B]`` each (zeros without a head)."""
        if logits is None:
            return np.zeros(batch, np.float32), np.zeros(batch, np.float32)
        probs = logits[:, :3].softmax(1)
        reward = (probs[:, 2] - probs[:, 0]).float().cpu().numpy()
        return reward, torch.sigmoid(logits[:, 3]).float().cpu().numpy()

    def loss(self, batch: dict[str, Any], reward_weight: float = 1.0, moving_weight: float = 0.0) -> dict[str, Any]:
        """The K-step objective on real windows, K = ``frames.shape[1] - k``.

        :param batch: ``frames`` uint8 ``[B, k + K, H, W]``, ``actions`` int64 ``[B, k + K]`` (the action at
            frame ``t`` leads to frame ``t + 1``); optionally ``rewards`` float ``[B, k + K]`` and ``terminals``
            bool ``[B, k + K]`` for the reward head.
        :param reward_weight: weight of the reward/game-over head's cross-entropy in ``loss``.
        :param moving_weight: weight of the moving-pixel MSE (:func:`moving_pixel_mse`) added to each step's
            whole-frame MSE (0: the paper's objective). Ours, not the paper's: whole-frame error is mostly
            background, so its gradient barely notices a small object fading out of a rollout.
        :return: ``loss`` (what to minimise: per-pixel MSE averaged over the K steps, plus ``moving_weight``
            times the moving-pixel MSE averaged likewise, plus ``reward_weight`` times the head's loss when the
            batch has rewards), ``mse`` (tensor), ``step_mse`` (float list, length K), ``moving_mse`` (tensor:
            the moving-pixel MSE averaged over the K steps), ``head_loss`` (tensor or None) and ``predictions``
            (float ``[B, K, C, H, W]``, detached).
        """
        x = self.frames_in(batch["frames"])
        k, total = self.context, x.shape[1]
        steps = total - k
        if steps < 1:
            raise ValueError(f"a training window needs more than {k} frames (context {k} + at least one target).")
        actions = torch.as_tensor(batch["actions"], dtype=torch.int64)
        state = self.start(x[:, :k])
        step_mse, moving, preds, head_losses = [], [], [], []
        for j in range(steps):
            # Steps 2..K read only `state`, which holds the model's own predictions: the targets x[:, k + j]
            # never enter the rollout, only the loss.
            state, frame, logits = self.advance(state, self.one_hot(actions[:, k - 1 + j]))
            step_mse.append(F.mse_loss(frame, x[:, k + j]))
            moving.append(moving_pixel_mse(frame, x[:, k + j], x[:, k + j - 1]))
            preds.append(frame.detach())
            if logits is not None and "rewards" in batch:
                sign = torch.sign(torch.as_tensor(batch["rewards"])[:, k - 1 + j]).long().to(logits.device) + 1
                over = torch.as_tensor(batch["terminals"])[:, k + j].float().to(logits.device)
                head_losses.append(F.cross_entropy(logits[:, :3], sign)
                                   + F.binary_cross_entropy_with_logits(logits[:, 3], over))
        mse = torch.stack(step_mse).mean()
        moving_mse = torch.stack(moving).mean()
        head = torch.stack(head_losses).mean() if head_losses else None
        loss = mse + moving_weight * moving_mse + (reward_weight * head if head is not None else 0.0)
        return {"loss": loss, "mse": mse, "step_mse": [float(m.detach()) for m in step_mse],
                "moving_mse": moving_mse, "head_loss": head, "predictions": torch.stack(preds, 1)}

    # ----------------------------------------------------------------------------------- persistence
    def state_dict_full(self) -> dict[str, Any]:
        """Weights plus everything needed to rebuild the model (config, action count, game)."""
        # Choices as plain strings: the checkpoint unpickles without this package's Enum classes.
        config = {k: v.value if isinstance(v, Enum) else v for k, v in asdict(self.cfg).items()}
        return {"format": FORMAT, "model_config": config, "num_actions": self.num_actions,
                "game": self.game, "weights": self.state_dict()}

    @classmethod
    def from_state_dict_full(cls, state: dict[str, Any]) -> VideoPredictor:
        """Rebuild from :meth:`state_dict_full`. :raises ValueError: not a video-predictor state."""
        if state.get("format") != FORMAT:
            raise ValueError(f"not a video-predictor state (format {state.get('format')!r}, expected {FORMAT!r}).")
        model = cls(ModelConfig(**state["model_config"]), state["num_actions"], game=state.get("game", ""))
        model.load_state_dict(state["weights"])
        return model


def moving_pixel_mse(pred: torch.Tensor, target: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """Squared error on the pixels where the real frame moved, pooled over the batch: the training-time
    counterpart of ``reverie imagine``'s moving-pixel MSE (mask A of :mod:`worldmodels.video.motion`).

    A pixel moved when ``target`` and ``previous`` (the real frame before it) differ by more than
    ``CHANGE_THRESHOLD`` grey levels in any channel: where an object is now and where it was. Pooled over every
    moved pixel of the batch (so a frame with more motion counts more), unlike the evaluation, which averages
    frames; 0 when nothing moved.

    :param pred: the prediction, float ``[B, C, H, W]`` on the [0, 1] scale (centred or not: only differences
        enter).
    :param target: the real frame, the same shape and scale.
    :param previous: the real frame before ``target``, the same shape and scale.
    :return: scalar tensor, mean over moved pixels of the squared error averaged over channels.
    """
    moved = ((target - previous).abs().amax(dim=1) > CHANGE_THRESHOLD / 255.0).to(pred.dtype)  # [B, H, W]
    squared = (pred - target).pow(2).mean(dim=1)  # [B, H, W]
    return (moved * squared).sum() / moved.sum().clamp(min=1.0)


def load_world_model(run_or_checkpoint: str | Path) -> VideoPredictor:
    """The newest valid checkpoint of a `reverie fit-world-model` run (a corrupt newer one is skipped with a
    warning), or a checkpoint file, in eval mode on the CPU.

    :raises FileNotFoundError: no run or checkpoint there. :raises ValueError: a checkpoint of another kind.
    """
    from worldmodels.common.checkpoint import load_latest

    path, ckpt = load_latest(run_or_checkpoint)
    if "world_model" not in ckpt:
        raise ValueError(f"{path} is not a fit-world-model checkpoint (no 'world_model' state): give the run "
                         f"directory of `reverie fit-world-model`.")
    model = VideoPredictor.from_state_dict_full(ckpt["world_model"])
    return model.eval().requires_grad_(False)
