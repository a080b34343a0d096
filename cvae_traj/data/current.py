"""The agents current at one step of a track table, and their batches: what a forecast at that step sees.

Rows after the step never reach the model: the windows hold the observed steps only, and their neighbours
come from the same steps.
"""
from __future__ import annotations

import numpy as np
import torch

from cvae_traj.batch import TrajectoryBatch
from cvae_traj.data.tracks import TrackTable
from cvae_traj.data.windows import Windows, make_windows
from cvae_traj.errors import InputError


def frame_to_step(table: TrackTable, frame: float | None) -> int:
    """The grid step of a frame of the table (None: its last frame)."""
    if frame is None:
        return int(table.step.max())
    grid = (float(frame) - table.frame0) / table.frame_step
    if abs(grid - round(grid)) > 1e-3 or not table.step.min() <= round(grid) <= table.step.max():
        raise InputError(f"{table.source}: at_frame {frame:g} is not a frame of the table")
    return int(round(grid))


def current_windows(table: TrackTable, obs_len: int, at_step: int) -> Windows:
    """Windows of the agents whose last `obs_len` positions are consecutive and end at `at_step`.

    Neighbours come from the same observed steps, so rows after `at_step` never reach the model.
    """
    observed = table.select_steps(at_step - obs_len + 1, at_step)
    windows = make_windows(observed, obs_len, 0)
    if len(windows) == 0:
        raise InputError(f"{table.source}: no agent has {obs_len} consecutive positions ending at frame "
                         f"{table.frames(at_step):g}")
    return windows


def trailing_run(held: np.ndarray) -> np.ndarray:
    """(A,) how many of the last steps each row of `held` (A, T) is True at without a break."""
    return np.cumprod(held[:, ::-1], axis=1).sum(axis=1)


class FrameAgents:
    """The agents present in the observed steps of windows that all end at one step (`current_windows`, or
    `FrameAgents.current` for histories shorter than T_obs), as one array, so that a batch is gathered from it:
    every window's neighbours are the same agents, all but itself. A batch equals `windows.batch` of the same
    windows (tested), without looking neighbours up per window."""

    def __init__(self, tracks: np.ndarray, row: np.ndarray, agent: np.ndarray) -> None:
        self.tracks = tracks  # (A, T_obs, 2) float32, NaN where absent; agents ascending, as Windows orders them
        self.row = row  # (W,): each window's agent among them
        self.agent = agent  # (W,): each window's agent in its table

    @classmethod
    def gather(cls, windows: Windows) -> FrameAgents:
        index = windows.index  # built on the observed steps only, so its dense steps are 0 .. T_obs - 1
        agents, inverse = np.unique(index.agent, return_inverse=True)
        tracks = np.full((len(agents), windows.obs_len, 2), np.nan, dtype=np.float32)
        tracks[inverse.reshape(-1), index.step_dense] = index.xy
        return cls(tracks, np.searchsorted(agents, windows.agent), windows.agent)

    @classmethod
    def current(cls, table: TrackTable, obs_len: int, at_step: int, min_history: int) -> FrameAgents:
        """The agents present at `at_step` with at least `min_history` consecutive positions ending there; with
        min_history = obs_len the agents of `current_windows`. Neighbours are everyone present in the last
        obs_len steps, as for full histories."""
        first = at_step - obs_len + 1
        observed = table.select_steps(first, at_step)
        agents, inverse = np.unique(observed.agent, return_inverse=True)
        tracks = np.full((len(agents), obs_len, 2), np.nan, dtype=np.float32)
        tracks[inverse.reshape(-1), observed.step - first] = observed.xy
        row = np.flatnonzero(trailing_run(~np.isnan(tracks[..., 0])) >= min_history)
        if len(row) == 0:
            raise InputError(f"{table.source}: no agent has {min_history} consecutive positions ending at frame "
                             f"{table.frames(at_step):g}")
        return cls(tracks, row, agents[row])

    def __len__(self) -> int:
        return len(self.row)

    @property
    def crowd(self) -> int:
        """Neighbours of each window."""
        return len(self.tracks) - 1

    def batch(self, indices: np.ndarray) -> TrajectoryBatch:
        row = self.row[indices]
        slot = np.arange(self.crowd)
        others = slot[None] + (slot[None] >= row[:, None])  # (B, A - 1): every agent but the target, ascending
        neigh = self.tracks[others]
        mask = ~np.isnan(neigh[..., 0])
        past = self.tracks[row]
        held = ~np.isnan(past[..., 0])
        history = trailing_run(held)  # the positions before an agent's last run are not its history
        return TrajectoryBatch(
            past=torch.from_numpy(np.where(held[..., None], past, np.float32(0.0))),
            future=torch.from_numpy(past[:, :0]),
            neighbours=torch.from_numpy(np.where(mask[..., None], neigh, np.float32(0.0))),
            neighbour_mask=torch.from_numpy(mask),
            history=None if (history == past.shape[1]).all() else torch.from_numpy(history.astype(np.int64)),
        )
