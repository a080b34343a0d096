"""Cutting track tables into (past, future) windows, as PROTOCOL.md defines them, with numpy only.

A window is T_obs + T_pred consecutive grid steps of one agent (stride 1 by default) and never spans
a gap in its track. Its neighbours are the other agents present in any of its observed steps; their
positions are kept for the observed steps only, so no future information reaches the inputs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cvae_traj.batch import TrajectoryBatch
from cvae_traj.data.tracks import TrackTable

# Windows are processed in chunks so that the neighbour search needs memory for a chunk, not a scene.
_CHUNK = 4096


@dataclass
class Windows:
    """Windows of one or more scenes; neighbours are stored ragged and padded per batch."""

    past: np.ndarray  # (W, T_obs, 2) float32
    future: np.ndarray  # (W, T_pred, 2) float32
    neighbour_offsets: np.ndarray  # (W + 1,) int64: window w owns neighbours[offsets[w]:offsets[w + 1]]
    neighbours: np.ndarray  # (M, T_obs, 2) float32, NaN where that neighbour is absent
    agent: np.ndarray  # (W,) int64: index into the table's agent_ids
    last_step: np.ndarray  # (W,) int64: grid step of the last observed position

    def __len__(self) -> int:
        return len(self.past)

    @classmethod
    def concatenate(cls, parts: list[Windows]) -> Windows:
        """Windows of several scenes in one set; agent indices stay per scene."""
        counts = np.cumsum([0] + [len(p.neighbours) for p in parts[:-1]])
        offsets = [parts[0].neighbour_offsets[:1]] + [p.neighbour_offsets[1:] + c for p, c in zip(parts, counts)]
        return cls(
            past=np.concatenate([p.past for p in parts]),
            future=np.concatenate([p.future for p in parts]),
            neighbour_offsets=np.concatenate(offsets),
            neighbours=np.concatenate([p.neighbours for p in parts]),
            agent=np.concatenate([p.agent for p in parts]),
            last_step=np.concatenate([p.last_step for p in parts]),
        )

    def batch(self, indices) -> TrajectoryBatch:
        """Gather windows into a batch, padding neighbours to the largest count among them."""
        idx = np.asarray(indices, dtype=np.int64)
        start = self.neighbour_offsets[idx]
        count = self.neighbour_offsets[idx + 1] - start
        n_max = int(count.max(initial=0))
        slot = np.arange(n_max)
        present = slot[None, :] < count[:, None]  # (B, N)
        neigh = self.neighbours[np.where(present, start[:, None] + slot[None, :], 0)]  # (B, N, T_obs, 2)
        mask = ~np.isnan(neigh[..., 0]) & present[..., None]  # (B, N, T_obs)
        return TrajectoryBatch(
            past=torch.from_numpy(self.past[idx]),
            future=torch.from_numpy(self.future[idx]),
            neighbours=torch.from_numpy(np.where(mask[..., None], neigh, np.float32(0.0))),
            neighbour_mask=torch.from_numpy(mask),
        )


def make_windows(table: TrackTable, obs_len: int, pred_len: int, stride: int = 1) -> Windows:
    """All windows of `obs_len + pred_len` consecutive steps in a table (pred_len may be 0)."""
    length = obs_len + pred_len
    step, agent = table.step, table.agent
    # Rows are sorted by (agent, step): a run of consecutive steps breaks at a new agent or a gap.
    breaks = np.ones(len(step), dtype=bool)
    breaks[1:] = (agent[1:] != agent[:-1]) | (step[1:] != step[:-1] + 1)
    run_start = np.maximum.accumulate(np.where(breaks, np.arange(len(step)), 0))
    run_id = np.cumsum(breaks) - 1
    run_end = np.flatnonzero(np.r_[breaks[1:], True])  # last row of each run
    pos_in_run = np.arange(len(step)) - run_start
    rows_left = run_end[run_id] - np.arange(len(step)) + 1
    starts = np.flatnonzero((rows_left >= length) & (pos_in_run % stride == 0))

    rows = starts[:, None] + np.arange(length)  # (W, L)
    xy = table.xy[rows].astype(np.float32)
    last_step = step[starts + obs_len - 1]
    offsets, neighbours = _neighbours(table, agent[starts], last_step - obs_len + 1, obs_len)
    return Windows(
        past=xy[:, :obs_len],
        future=xy[:, obs_len:],
        neighbour_offsets=offsets,
        neighbours=neighbours,
        agent=agent[starts],
        last_step=last_step,
    )


def _neighbours(table: TrackTable, target: np.ndarray, first_step: np.ndarray, obs_len: int):
    """Ragged neighbour tracks: every other agent present in steps first_step .. first_step + obs_len - 1."""
    if len(target) == 0:
        return np.zeros(1, np.int64), np.zeros((0, obs_len, 2), np.float32)
    # Steps renumbered densely over the steps the table has, so index arrays scale with its rows, not with
    # the span of its frame numbers. A window's observed steps all exist: the target is present in each.
    present_steps, step = np.unique(table.step, return_inverse=True)
    first_step = np.searchsorted(present_steps, first_step)
    n_steps = len(present_steps)
    by_step = np.argsort(step, kind="stable")
    step_start = np.searchsorted(step[by_step], np.arange(n_steps + 1))
    per_step = np.diff(step_start)
    width = int(per_step.max(initial=0))
    # Rows are sorted by (agent, step), so these keys are sorted and searchsorted finds any (agent, step).
    keys = table.agent * n_steps + step

    counts, chunks = [], []
    for lo in range(0, len(target), _CHUNK):
        tgt, first = target[lo:lo + _CHUNK], first_step[lo:lo + _CHUNK]
        steps = first[:, None] + np.arange(obs_len)  # (C, T_obs)
        slot = np.arange(width)
        valid = slot[None, None, :] < per_step[steps][..., None]  # (C, T_obs, width)
        rows = by_step[np.minimum(step_start[steps][..., None] + slot, len(by_step) - 1)]
        cand = np.where(valid, table.agent[rows], -1).reshape(len(tgt), -1)
        cand[cand == tgt[:, None]] = -1
        cand.sort(axis=1)
        dup = np.zeros_like(cand, dtype=bool)
        dup[:, 1:] = cand[:, 1:] == cand[:, :-1]
        keep = (cand >= 0) & ~dup
        counts.append(keep.sum(axis=1))
        window, col = np.nonzero(keep)  # row-major: grouped by window, agents ascending
        nb_agent = cand[window, col]
        nb_keys = nb_agent[:, None] * n_steps + steps[window]  # (M, T_obs)
        found = np.minimum(np.searchsorted(keys, nb_keys), len(keys) - 1)
        hit = keys[found] == nb_keys
        pos = np.where(hit[..., None], table.xy[found], np.nan)
        chunks.append(pos.astype(np.float32))
    offsets = np.concatenate([[0], np.cumsum(np.concatenate(counts))]).astype(np.int64)
    return offsets, np.concatenate(chunks)
