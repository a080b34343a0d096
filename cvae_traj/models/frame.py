"""The agent's own frame: origin at its last observed position, x axis along its observed heading, and
optionally lengths in units of its observed speed.

Forecasting in this frame makes the model independent of the map's orientation by construction, and
with the speed scale of how fast people walk in a scene (ETH's walkers are twice as fast as the others').
Heading and speed come from observed positions only (PROTOCOL.md: rotations and scaling from observed
data).
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


def speed_scale(past: Tensor, dt: float, min_speed: float = 0.5, ref_speed: float = 1.0) -> Tensor:
    """(B,) how many times faster than `ref_speed` (m/s) each agent walked while observed: its mean step
    length over dt, floored at `min_speed` so that standing agents keep a finite scale."""
    speed = (past[:, 1:] - past[:, :-1]).norm(dim=-1).mean(dim=1) / dt
    return speed.clamp_min(min_speed) / ref_speed


def to_world(points: Tensor, m: Tensor, origin: Tensor, scale: Tensor | None = None) -> Tensor:
    """Map agent-frame points (B, ..., 2) back to world coordinates: scale * p @ m^T + origin, the inverse of
    p -> (p - origin) @ m / scale for a rotation (or reflection) m and a per-agent scale (B,)."""
    b = points.shape[0]
    shape = (b,) + (1,) * (points.dim() - 2) + (2,)
    world = (points.reshape(b, -1, 2) @ m.transpose(1, 2)).reshape(points.shape)
    if scale is not None:
        world = world * scale.view((b,) + (1,) * (points.dim() - 1))
    return world + origin.view(shape)
