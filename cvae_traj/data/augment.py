"""Training-time augmentation: each agent's scene rotated by a random angle and mirrored at random.

Pedestrians in a held-out scene walk in directions the training scenes rarely show; turning and
mirroring whole scenes (target, future and neighbours alike) teaches the model that physics does not
depend on the map's axes. The pivot is the target's last observed position, an observed quantity.
"""
from __future__ import annotations

import math
import torch

from cvae_traj.batch import TrajectoryBatch


def rotate_and_flip(batch: TrajectoryBatch, rotate: bool = True, flip: bool = True,
                    generator: torch.Generator | None = None) -> TrajectoryBatch:
    """A new batch with every agent's scene turned (uniform angle) and/or mirrored (probability 1/2)."""
    b = len(batch)
    device, dtype = batch.past.device, batch.past.dtype
    angle = (torch.rand(b, generator=generator) * 2 * math.pi if rotate else torch.zeros(b)).to(device, dtype)
    mirror = (torch.rand(b, generator=generator) < 0.5 if flip else torch.zeros(b, dtype=torch.bool)).to(device)
    cos, sin = angle.cos(), angle.sin()
    sign = 1.0 - 2.0 * mirror.to(dtype)  # -1 mirrors x before turning
    # Row-vector convention: p' = p @ M, M = diag(sign, 1) @ R(angle)^T.
    m = torch.stack([torch.stack([sign * cos, sign * sin], -1), torch.stack([-sin, cos], -1)], -2)  # (B, 2, 2)
    return batch.transformed(m, pivot=batch.past[:, -1])
