"""The three autoregressive Bernoulli parts of the binary VAE (a Deep AutoRegressive Network, Gregor et al.
2014) and the encoder of x that conditions the posterior.

- prior      p(z)     = prod_i Bern(z_i | f_p(z_<i))           :class:`~worldmodels.vae.made.MADE`
- posterior  q(z | x) = prod_i Bern(z_i | f_q(z_<i, e(x)))     MADE with the encoding e(x) as context
- likelihood p(x | z) = prod_i Bern(x_i | f_x(x_<i, z))        :class:`~worldmodels.vae.decoder.Decoder`

Parameters split in two groups that the estimators treat differently: ``generative_parameters`` (prior and
decoder, theta: always pathwise, ``grad log p(x, z)``) and ``inference_parameters`` (encoder and posterior,
phi: the score-function or relaxed estimator's job).

Shapes: a frame x is float32 ``[N, 1, S, S]`` in {0, 1}; a latent z is float32 ``[N, D]`` in {0, 1};
log probabilities are float32 ``[N]`` in nats.
"""

from __future__ import annotations

import torch
from torch import nn

from worldmodels.vae.config import ModelConfig
from worldmodels.vae.decoder import Decoder
from worldmodels.vae.made import MADE


class Encoder(nn.Module):
    """e(x): two (three at 84x84) stride-2 4x4 convolutions and a linear layer, ReLU throughout."""

    def __init__(self, size: int, channels: int, hidden: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(1, channels, 4, stride=2, padding=1), nn.ReLU(),
                                   nn.Conv2d(channels, 2 * channels, 4, stride=2, padding=1), nn.ReLU()]
        if size > 42:
            layers += [nn.Conv2d(2 * channels, 2 * channels, 4, stride=2, padding=1), nn.ReLU()]
        self.conv = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            flat = self.conv(torch.zeros(1, 1, size, size)).shape[1]
        self.fc = nn.Sequential(nn.Linear(flat, hidden), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """float32 ``[N, 1, S, S]`` -> float32 ``[N, hidden]``."""
        return self.fc(self.conv(x * 2.0 - 1.0))


class VAENetwork(nn.Module):
    """Prior, posterior, encoder and decoder of :class:`worldmodels.vae.BinaryVAE`."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.size, self.latent_dim = cfg.image_size, cfg.latent_dim
        self.prior = MADE(cfg.latent_dim, cfg.made_hidden, cfg.made_layers)
        self.encoder = Encoder(cfg.image_size, cfg.encoder_channels, cfg.encoder_hidden)
        self.posterior = MADE(cfg.latent_dim, cfg.made_hidden, cfg.made_layers, context_dim=cfg.encoder_hidden)
        self.decoder = Decoder(cfg.image_size, cfg.latent_dim, cfg.decoder, cfg.decoder_channels,
                               cfg.decoder_layers, cfg.decoder_kernel, cfg.cond_channels)

    def generative_parameters(self) -> list[nn.Parameter]:
        return [*self.prior.parameters(), *self.decoder.parameters()]

    def inference_parameters(self) -> list[nn.Parameter]:
        return [*self.encoder.parameters(), *self.posterior.parameters()]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior's context e(x), float32 ``[N, encoder_hidden]``."""
        return self.encoder(x)

    def sample_posterior(self, h: torch.Tensor, generator: torch.Generator | None = None,
                         greedy: bool = False, uniforms: torch.Tensor | None = None) -> torch.Tensor:
        """z ~ q(z | x) (no gradient), float32 ``[N, D]``, given the encodings h ``[N, E]`` (``uniforms``:
        optional U(0, 1) noise ``[N, D]``)."""
        return self.posterior.sample(len(h), h, generator=generator, greedy=greedy, uniforms=uniforms)

    def log_q(self, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """log q(z | x), float32 ``[N]``."""
        return self.posterior.log_prob(z, h)

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z), float32 ``[N]``."""
        return self.prior.log_prob(z)

    def log_q_units(self, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """log q(z_i | z_<i, x) of each unit, float32 ``[N, D]``."""
        return self.posterior.log_prob_units(z, h)

    def log_prior_units(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z_i | z_<i) of each unit, float32 ``[N, D]``."""
        return self.prior.log_prob_units(z)

    def log_lik(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z), float32 ``[N]``."""
        return self.decoder.log_prob(x, z)

    def log_weights(self, x: torch.Tensor, k: int, generator: torch.Generator | None = None,
                    uniforms: torch.Tensor | None = None) -> torch.Tensor:
        """Importance log-weights log p(x, z_k) - log q(z_k | x) for k independent z_k ~ q(z | x).

        :param x: float32 ``[B, 1, S, S]``.
        :param uniforms: optional float32 ``[k, D]`` U(0, 1) noise shared by every frame (sample j of each
            frame uses row j), so a frame's weights do not depend on which other frames share the batch.
        :return: float32 ``[k, B]`` (no gradient is needed by callers; they run under ``no_grad``).
        """
        b = len(x)
        h = self.encode(x).repeat(k, 1)
        xs = x.repeat(k, 1, 1, 1)
        u = uniforms.repeat_interleave(b, 0) if uniforms is not None else None
        z = self.sample_posterior(h, generator=generator, uniforms=u)
        lw = self.log_lik(xs, z) + self.log_prior(z) - self.log_q(z, h)
        return lw.view(k, b)
