"""The generation net p_theta(y | x, z): a distribution over future positions, not a point."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Normal, constraints
from torch.nn import functional as F

from cvae_traj.models.latent import mlp


class IntegratedGaussian(Distribution):
    """Future positions whose per-step displacements are independent Gaussians N(loc_t, scale_t), summed from
    `origin`. The map from displacements to positions has a Jacobian of 1, so log p(positions) is the sum over
    steps and axes of log N(displacement_t; loc_t, scale_t).
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.real
    has_rsample = True

    def __init__(self, origin: Tensor, loc: Tensor, scale: Tensor, validate_args: bool | None = None) -> None:
        self.origin = origin  # (..., 2) last observed position
        self.loc, self.scale = loc, scale  # (..., T_pred, 2) displacement moments
        super().__init__(batch_shape=loc.shape[:-2], event_shape=loc.shape[-2:], validate_args=validate_args)

    @property
    def mean(self) -> Tensor:
        return self.origin.unsqueeze(-2) + self.loc.cumsum(dim=-2)  # (..., T_pred, 2)

    @property
    def mode(self) -> Tensor:
        return self.mean

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        eps = torch.randn(self._extended_shape(sample_shape), dtype=self.loc.dtype, device=self.loc.device)
        return self.from_noise(eps)

    def from_noise(self, eps: Tensor) -> Tensor:
        """The draw that standard normal noise `eps` (..., T_pred, 2) makes: deterministic, mean at eps = 0."""
        return self.origin.unsqueeze(-2) + (self.loc + self.scale * eps).cumsum(dim=-2)

    def log_prob(self, value: Tensor) -> Tensor:
        prev = torch.cat([self.origin.unsqueeze(-2).expand_as(value[..., :1, :]), value[..., :-1, :]], dim=-2)
        noise = Normal(self.loc, self.scale, validate_args=False)
        return noise.log_prob(value - prev).sum(dim=(-1, -2))


class TrajectoryDecoder(nn.Module):
    """Maps (x, z) to per-step Gaussian displacements, integrated into positions from the last observation."""

    def __init__(self, context_dim: int, latent_dim: int, pred_len: int, hidden_dim: int = 64,
                 min_scale: float = 0.01) -> None:
        super().__init__()
        self.pred_len, self.min_scale = pred_len, min_scale
        self.net = nn.Sequential(nn.Linear(context_dim + latent_dim, hidden_dim), nn.ReLU(),
                                 mlp(hidden_dim, hidden_dim, 4 * pred_len))

    def forward(self, context: Tensor, z: Tensor, origin: Tensor) -> IntegratedGaussian:
        """context (..., C), z (..., D), origin (..., 2) -> distribution with event (T_pred, 2). context and origin
        may have fewer leading dimensions than z and broadcast against it: (B, C) and (B, 2) for z (K, B, D)."""
        first, c = self.net[0], context.shape[-1]
        # The first layer on [context, z], with the context's share computed once per agent rather than once
        # per draw of z (the context is most of the input).
        hidden = F.linear(context, first.weight[:, :c], first.bias) + F.linear(z, first.weight[:, c:])
        out = self.net[1:](hidden).unflatten(-1, (self.pred_len, 4))
        loc, raw_scale = out[..., :2], out[..., 2:]
        return IntegratedGaussian(origin, loc, F.softplus(raw_scale) + self.min_scale,
                                  validate_args=False)  # as diagonal_gaussian: not checked per call
