"""Training-time augmentation: each agent's scene rotated by a random angle, mirrored and scaled at random,
whole recordings played backwards, and observed positions jittered.

Pedestrians in a held-out scene walk in directions the training scenes rarely show; turning and
mirroring whole scenes (target, future and neighbours alike) teaches the model that physics does not
depend on the map's axes. Scaling a scene scales its speeds and distances alike, for a held-out scene
whose people walk faster or slower than the training ones. The pivot is the target's last observed
position, an observed quantity.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch

from cvae_traj.batch import TrajectoryBatch
from cvae_traj.data.tracks import TrackTable


def rotate_and_flip(batch: TrajectoryBatch, rotate: bool = True, flip: bool = True,
                    generator: torch.Generator | None = None,
                    scale: tuple[float, float] | None = None) -> TrajectoryBatch:
    """A new batch with every agent's scene turned (uniform angle) and/or mirrored (probability 1/2), and
    scaled by a factor log-uniform in `scale` = (low, high) if given."""
    b = len(batch)
    device, dtype = batch.past.device, batch.past.dtype
    angle = (torch.rand(b, generator=generator) * 2 * math.pi if rotate else torch.zeros(b)).to(device, dtype)
    mirror = (torch.rand(b, generator=generator) < 0.5 if flip else torch.zeros(b, dtype=torch.bool)).to(device)
    cos, sin = angle.cos(), angle.sin()
    sign = 1.0 - 2.0 * mirror.to(dtype)  # -1 mirrors x before turning
    # Row-vector convention: p' = p @ M, M = diag(sign, 1) @ R(angle)^T.
    m = torch.stack([torch.stack([sign * cos, sign * sin], -1), torch.stack([-sin, cos], -1)], -2)  # (B, 2, 2)
    if scale is not None:
        low, high = map(float, scale)
        if not 0 < low <= high:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {scale}")
        factor = low * (high / low) ** torch.rand(b, generator=generator)
        m = m * factor.to(device, dtype)[:, None, None]
    return batch.transformed(m, pivot=batch.past[:, -1])


def jittered(batch: TrajectoryBatch, std: float, generator: torch.Generator | None = None) -> TrajectoryBatch:
    """A new batch with independent Gaussian noise of `std` metres on every observed position, the target's
    past and its neighbours' (unseen neighbour steps stay zero), the future untouched.

    Meant to keep a model from reading centimetres of tracking noise as the start of a turn. On the known-odds
    worlds it lowered the per-window odds error on the junctions but raised it on stop_go, and the draws
    strayed more after the decision (benchmarks/HISTORY.md), so no recipe turns it on. Noise is drawn on the
    batch's device unless a (CPU) generator is given."""
    device = None if generator is not None else batch.past.device
    noise = torch.randn(batch.past.shape, generator=generator, device=device).to(batch.past)
    neighbour_noise = torch.randn(batch.neighbours.shape, generator=generator, device=device).to(batch.neighbours)
    mask = batch.neighbour_mask.unsqueeze(-1).to(batch.neighbours.dtype)
    return replace(batch, past=batch.past + std * noise, neighbours=batch.neighbours + std * neighbour_noise * mask)


def time_reversed(table: TrackTable) -> TrackTable:
    """The recording played backwards: every track runs from its last position to its first, on the same grid
    span, so each 20-step stretch gives a window walked the other way, neighbours reversed with it."""
    step = table.step.max() - table.step
    order = np.lexsort((step, table.agent))  # rows sorted by (agent, step) again
    return TrackTable(step[order], table.agent[order], table.xy[order], table.agent_ids, table.frame0,
                      table.frame_step, f"{table.source} (reversed)")
