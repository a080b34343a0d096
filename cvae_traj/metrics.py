"""Displacement metrics and the constant-velocity baseline, as pure functions of tensors."""
from __future__ import annotations

import torch
from torch import Tensor


def displacement(pred: Tensor, future: Tensor) -> Tensor:
    """Euclidean error per step: pred (B, K, T, 2), future (B, T, 2) -> (B, K, T)."""
    return (pred - future.unsqueeze(1)).norm(dim=-1)


def min_ade(samples: Tensor, future: Tensor) -> Tensor:
    """Best-of-K average displacement per agent: (B, K, T, 2), (B, T, 2) -> (B,)."""
    return displacement(samples, future).mean(dim=-1).min(dim=1).values


def min_fde(samples: Tensor, future: Tensor) -> Tensor:
    """Best-of-K final displacement per agent, chosen separately from ADE: -> (B,)."""
    return displacement(samples, future)[..., -1].min(dim=1).values


def constant_velocity(past: Tensor, pred_len: int) -> Tensor:
    """Extrapolate the last observed velocity (a backward difference): (B, T_obs, 2) -> (B, T_pred, 2)."""
    velocity = past[:, -1] - past[:, -2]  # (B, 2)
    steps = torch.arange(1, pred_len + 1, dtype=past.dtype, device=past.device)  # (T_pred,)
    return past[:, -1:] + steps[None, :, None] * velocity[:, None]
