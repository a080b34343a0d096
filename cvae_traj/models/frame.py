"""The agent's own frame: origin at its last observed position, x axis along its observed heading.

Forecasting in this frame makes the model independent of the map's orientation by construction. The
heading comes from observed positions only (PROTOCOL.md: rotations from observed data).
"""
from __future__ import annotations

import torch
from torch import Tensor


def heading_rotation(past: Tensor, min_displacement: float = 0.2) -> Tensor:
    """(B, 2, 2) rotation m with (past[-1] - past[0]) @ m along +x; near-still agents keep the world axes."""
    heading = past[:, -1] - past[:, 0]  # (B, 2)
    length = heading.norm(dim=-1, keepdim=True)
    unit = torch.where(length > min_displacement, heading / length.clamp_min(1e-9),
                       torch.tensor([1.0, 0.0], dtype=past.dtype, device=past.device))
    cos, sin = unit[:, 0], unit[:, 1]
    return torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)


def to_world(points: Tensor, m: Tensor, origin: Tensor) -> Tensor:
    """Map agent-frame points (B, ..., 2) back to world coordinates: p @ m^T + origin."""
    b = points.shape[0]
    shape = (b,) + (1,) * (points.dim() - 2) + (2,)
    return (points.reshape(b, -1, 2) @ m.transpose(1, 2)).reshape(points.shape) + origin.view(shape)
