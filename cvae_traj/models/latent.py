"""The two distributions over the latent z: the prior net p(z | x) and the recognition net q(z | x, y)."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Independent, Normal
from torch.nn import functional as F


def mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim))


def diagonal_gaussian(params: Tensor, min_scale: float = 1e-4) -> Independent:
    """Independent(Normal) over the last dimension from concatenated (loc, pre-softplus scale).

    Not validated per call (torch's check costs a device sync each time): a NaN from the nets surfaces as
    TrainingDivergedError in training, and load_model refuses a checkpoint with non-finite weights."""
    loc, raw_scale = params.chunk(2, dim=-1)
    return Independent(Normal(loc, F.softplus(raw_scale) + min_scale, validate_args=False), 1, validate_args=False)


class PriorNet(nn.Module):
    """p_theta(z | x): where the latent may lie before the future is seen."""

    def __init__(self, context_dim: int, latent_dim: int, hidden_dim: int = 64) -> None:
        super().__init__()
        self.net = mlp(context_dim, hidden_dim, 2 * latent_dim)

    def forward(self, context: Tensor) -> Independent:
        return diagonal_gaussian(self.net(context))  # event (D,), batch (B,)


class RecognitionNet(nn.Module):
    """q_phi(z | x, y): the latent that explains the future y, given the past x."""

    def __init__(self, context_dim: int, latent_dim: int, hidden_dim: int = 64) -> None:
        super().__init__()
        self.future_gru = nn.GRU(4, hidden_dim, batch_first=True)
        self.net = mlp(context_dim + hidden_dim, hidden_dim, 2 * latent_dim)

    def forward(self, context: Tensor, past: Tensor, future: Tensor) -> Independent:
        origin = past[:, -1:]  # (B, 1, 2)
        steps = torch.diff(torch.cat([origin, future], dim=1), dim=1)  # (B, T_pred, 2)
        _, h = self.future_gru(torch.cat([future - origin, steps], dim=-1))
        return diagonal_gaussian(self.net(torch.cat([context, h[-1]], dim=-1)))
