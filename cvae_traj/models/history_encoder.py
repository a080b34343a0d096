"""The encoder of x: what is known now about the target agent, from as few as two observed positions."""
from __future__ import annotations

import torch
from torch import Tensor, nn


def observed_steps(history: Tensor, obs_len: int) -> Tensor:
    """(B, T_obs) bool, True at the last `history` (B,) steps: those an agent was observed at."""
    return torch.arange(obs_len, device=history.device) >= (obs_len - history)[:, None]


def backfill(past: Tensor, history: Tensor) -> Tensor:
    """The past with the steps before the last `history` (B,) replaced by the track run backwards at its mean
    observed velocity (constant velocity into the past): (B, T_obs, 2).

    A short track then looks like a long one walked steadily, so the agent's frame (heading and speed) and the
    features are defined as for any other, and the model is told which steps were seen (HistoryEncoder). The
    values at the unobserved steps are never read (they may be NaN); an agent seen once stands still.
    """
    t_obs = past.shape[1]
    h = history.clamp(1, t_obs)
    first_at = (t_obs - h)[:, None, None].expand(-1, 1, 2)  # (B, 1, 2): index of the first observed step
    first = past.gather(1, first_at)  # (B, 1, 2)
    last = past[:, -1:]
    velocity = torch.where(h[:, None, None] > 1, (last - first) / (h - 1).clamp_min(1)[:, None, None],
                           torch.zeros_like(last))
    before = (first_at[..., :1] - torch.arange(t_obs, device=past.device)[None, :, None]).to(past.dtype)
    return torch.where(observed_steps(h, t_obs)[..., None], past, first - before * velocity)


def observed_features(past: Tensor) -> Tensor:
    """Positions relative to the last observed one, with backward-difference velocities.

    Only observed steps are used (velocity at t is x[t] - x[t-1], zero at the first step), so nothing
    about the future can reach the model's inputs.
    """
    rel = past - past[:, -1:]  # (B, T_obs, 2)
    vel = torch.cat([torch.zeros_like(past[:, :1]), past[:, 1:] - past[:, :-1]], dim=1)  # (B, T_obs, 2)
    return torch.cat([rel, vel], dim=-1)  # (B, T_obs, 4)


class HistoryEncoder(nn.Module):
    """A GRU over the observed track; its last state summarises x.

    With `observed_flag` each step also carries whether it was observed or filled in (backfill), for a model
    trained on histories shorter than T_obs.
    """

    def __init__(self, hidden_dim: int = 64, observed_flag: bool = False) -> None:
        super().__init__()
        self.observed_flag = observed_flag
        self.gru = nn.GRU(5 if observed_flag else 4, hidden_dim, batch_first=True)
        self.out_dim = hidden_dim

    def forward(self, past: Tensor, observed: Tensor | None = None) -> Tensor:
        """past (B, T_obs, 2), observed (B, T_obs) bool (None: every step) -> (B, H)."""
        features = observed_features(past)
        if self.observed_flag:
            flag = past.new_ones(past.shape[:2]) if observed is None else observed.to(past.dtype)
            features = torch.cat([features, flag.unsqueeze(-1)], dim=-1)
        _, h = self.gru(features)  # (1, B, H)
        return h[-1]  # (B, H)
