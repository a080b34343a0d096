"""A built-in multi-modal dataset: walkers reach a junction and turn left, go straight or turn right.

Every agent walks north along x = 0 towards the junction at the origin, then follows one of three
branches with known probabilities: a quarter circle of radius `turn_radius` to the west (left) or east
(right), or straight on. Speeds vary per agent and per step, so futures differ in length too.
"""
from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd

from cvae_traj.data.datamodule import Split, TrackDataModule
from cvae_traj.data.tracks import TrackTable, validate_tracks
from cvae_traj.errors import InputError

BRANCHES: Final = ("left", "straight", "right")
# Different generator seeds per split: the three splits share no agent.
_SPLIT_SEED_OFFSET: Final = {"train": 0, "val": 1, "test": 2}


def junction_tracks(
    num_agents: int,
    seed: int,
    branch_probs: tuple[float, float, float] = (0.3, 0.4, 0.3),
    track_len: int = 24,
    dt: float = 0.4,
    speed: float = 1.3,
    speed_spread: float = 0.1,
    step_noise: float = 0.05,
    position_noise: float = 0.02,
    turn_radius: float = 2.0,
    agents_per_frame: float = 4.0,
) -> pd.DataFrame:
    """A track table (frame, agent_id, x, y, branch) of `num_agents` walkers through the junction."""
    probs = np.asarray(branch_probs, dtype=np.float64)
    if probs.shape != (3,) or (probs < 0).any() or not np.isclose(probs.sum(), 1.0):
        raise InputError(f"branch_probs must be three non-negative numbers summing to 1, got {branch_probs}")
    rng = np.random.default_rng(seed)
    branch = rng.choice(3, size=num_agents, p=probs)
    agent_speed = speed * (1.0 + speed_spread * rng.standard_normal(num_agents))
    # Arc length travelled; the junction (s = 0) is reached at a random step of the track.
    ds = agent_speed[:, None] * dt * (1.0 + step_noise * rng.standard_normal((num_agents, track_len)))
    s = np.cumsum(ds, axis=1)
    s -= s[np.arange(num_agents), rng.integers(4, track_len - 4, num_agents)][:, None]

    arc = np.clip(s, 0.0, np.pi * turn_radius / 2)
    after = np.maximum(s - np.pi * turn_radius / 2, 0.0)
    side = (branch - 1).astype(np.float64)[:, None]  # -1 left (west), 0 straight, +1 right (east)
    turned_x = side * (turn_radius * (1 - np.cos(arc / turn_radius)) + after)
    turned_y = turn_radius * np.sin(arc / turn_radius)
    x = np.where((s > 0) & (side != 0), turned_x, 0.0)
    y = np.where((s > 0) & (side != 0), turned_y, s)
    xy = np.stack([x, y], axis=-1) + position_noise * rng.standard_normal((num_agents, track_len, 2))

    start = np.sort(rng.integers(0, max(1, int(num_agents * track_len / agents_per_frame)), num_agents))
    frames = start[:, None] + np.arange(track_len)
    return pd.DataFrame({
        "frame": frames.ravel(),
        "agent_id": np.repeat(np.arange(num_agents), track_len),
        "x": xy[..., 0].ravel(),
        "y": xy[..., 1].ravel(),
        "branch": np.repeat(np.asarray(BRANCHES)[branch], track_len),
    })


class SyntheticDataModule(TrackDataModule):
    """Junction walkers generated in code: a multi-modal problem that trains in about a minute on a CPU."""

    def __init__(
        self,
        num_train_agents: int = 1200,
        num_val_agents: int = 200,
        num_test_agents: int = 200,
        seed: int = 0,
        branch_probs: tuple[float, float, float] = (0.3, 0.4, 0.3),
        track_len: int = 24,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.num_agents = {"train": num_train_agents, "val": num_val_agents, "test": num_test_agents}
        self.seed, self.branch_probs, self.track_len = seed, tuple(branch_probs), track_len

    def load_split(self, split: Split) -> list[TrackTable]:
        df = junction_tracks(self.num_agents[split], seed=self.seed * 3 + _SPLIT_SEED_OFFSET[split],
                             branch_probs=self.branch_probs, track_len=self.track_len, dt=self.dt)
        return [validate_tracks(df, source=f"synthetic {split}", frame_step=1)]
