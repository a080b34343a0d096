"""The encoder of x: what is known now about the target agent."""
from __future__ import annotations

import torch
from torch import Tensor, nn


def observed_features(past: Tensor) -> Tensor:
    """Positions relative to the last observed one, with backward-difference velocities.

    Only observed steps are used (velocity at t is x[t] - x[t-1], zero at the first step), so nothing
    about the future can reach the model's inputs.
    """
    rel = past - past[:, -1:]  # (B, T_obs, 2)
    vel = torch.cat([torch.zeros_like(past[:, :1]), past[:, 1:] - past[:, :-1]], dim=1)  # (B, T_obs, 2)
    return torch.cat([rel, vel], dim=-1)  # (B, T_obs, 4)


class HistoryEncoder(nn.Module):
    """A GRU over the observed track; its last state summarises x."""

    def __init__(self, hidden_dim: int = 64) -> None:
        super().__init__()
        self.gru = nn.GRU(4, hidden_dim, batch_first=True)
        self.out_dim = hidden_dim

    def forward(self, past: Tensor) -> Tensor:
        _, h = self.gru(observed_features(past))  # (1, B, H)
        return h[-1]  # (B, H)
