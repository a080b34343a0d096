"""Cutting track tables into (past, future) windows, as PROTOCOL.md defines them, with numpy only.

A window is T_obs + T_pred consecutive grid steps of one agent (stride 1 by default) and never spans
a gap in its track. Its neighbours are the other agents present in any of its observed steps; their
positions are kept for the observed steps only, so no future information reaches the inputs.

Windows are stored as references (the first row of each window) into an index of each table, and
positions and neighbours are gathered when a batch is asked for: cutting is linear in the rows, and
memory is the table's plus 8 bytes per window, however crowded the scene.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from cvae_traj.batch import TrajectoryBatch
from cvae_traj.data.tracks import TrackTable


@dataclass(frozen=True)
class SceneIndex:
    """One table, indexed for gathering windows and looking up who is present at which step.

    Rows are the table's, sorted by (agent, step). Steps are renumbered densely over the steps the table
    has (`step_dense`), so the index scales with the rows, not with the span of the frame numbers.
    """

    xy: np.ndarray  # (R, 2) float32
    agent: np.ndarray  # (R,) int64
    step_dense: np.ndarray  # (R,) int64
    keys: np.ndarray  # (R,) int64, sorted: agent * n_steps + step_dense
    by_step: np.ndarray  # (R,) rows in step order
    step_start: np.ndarray  # (n_steps + 1,): rows by_step[step_start[s]:step_start[s + 1]] are at step s

    @classmethod
    def build(cls, table: TrackTable) -> SceneIndex:
        present_steps, step_dense = np.unique(table.step, return_inverse=True)
        step_dense = step_dense.reshape(-1).astype(np.int64)
        n_steps = len(present_steps)
        by_step = np.argsort(step_dense, kind="stable")
        step_start = np.searchsorted(step_dense[by_step], np.arange(n_steps + 1))
        return cls(xy=table.xy.astype(np.float32), agent=table.agent, step_dense=step_dense,
                   keys=table.agent * n_steps + step_dense, by_step=by_step, step_start=step_start)

    @classmethod
    def merge(cls, parts: list[SceneIndex]) -> SceneIndex:
        """Several tables as one index whose agents and steps are disjoint between tables, so that a batch
        mixing tables is looked up in one pass and no agent of one table is a neighbour in another."""
        rows = np.cumsum([0] + [len(p.agent) for p in parts])
        agents = np.cumsum([0] + [int(p.agent.max(initial=-1)) + 1 for p in parts])
        steps = np.cumsum([0] + [len(p.step_start) - 1 for p in parts])
        agent = np.concatenate([p.agent + a for p, a in zip(parts, agents)])
        step_dense = np.concatenate([p.step_dense + t for p, t in zip(parts, steps)])
        return cls(
            xy=np.concatenate([p.xy for p in parts]),
            agent=agent,
            step_dense=step_dense,
            keys=agent * steps[-1] + step_dense,  # sorted: tables in order, each sorted by (agent, step)
            by_step=np.concatenate([p.by_step + r for p, r in zip(parts, rows)]),
            step_start=np.concatenate([p.step_start[:-1] + r for p, r in zip(parts, rows)] + [rows[-1:]]),
        )

    def neighbours(self, start: np.ndarray, obs_len: int) -> tuple[np.ndarray, np.ndarray]:
        """For windows starting at rows `start` (C,): how many neighbours each has (C,), and their tracks
        (M, obs_len, 2), grouped by window with agents ascending, NaN where a neighbour is absent."""
        n_steps = len(self.step_start) - 1
        target = self.agent[start]
        # The target is present at each observed step, and they are consecutive, so dense steps are too.
        steps = self.step_dense[start][:, None] + np.arange(obs_len)  # (C, T_obs)
        present = self.step_start[steps + 1] - self.step_start[steps]  # (C, T_obs) agents at each step
        slot = np.arange(int(present.max(initial=0)))  # as wide as this batch's most crowded step
        valid = slot[None, None, :] < present[..., None]  # (C, T_obs, width)
        rows = self.by_step[np.minimum(self.step_start[steps][..., None] + slot, len(self.by_step) - 1)]
        cand = np.where(valid, self.agent[rows], -1).reshape(len(start), -1)
        cand[cand == target[:, None]] = -1
        cand.sort(axis=1)
        dup = np.zeros_like(cand, dtype=bool)
        dup[:, 1:] = cand[:, 1:] == cand[:, :-1]
        keep = (cand >= 0) & ~dup
        window, col = np.nonzero(keep)  # row-major: grouped by window, agents ascending
        nb_keys = cand[window, col][:, None] * n_steps + steps[window]  # (M, T_obs)
        found = np.minimum(np.searchsorted(self.keys, nb_keys), len(self.keys) - 1)
        hit = self.keys[found] == nb_keys
        return keep.sum(axis=1), np.where(hit[..., None], self.xy[found], np.float32(np.nan))


@dataclass
class Windows:
    """Windows of one or more tables: window w is rows start[w] .. start[w] + obs_len + pred_len - 1 of
    `index`. Neighbours are looked up per batch and padded to the batch's largest count."""

    start: np.ndarray  # (W,) int64
    agent: np.ndarray  # (W,) int64: index into its own table's agent_ids
    last_step: np.ndarray  # (W,) int64: grid step of the last observed position
    index: SceneIndex
    obs_len: int
    pred_len: int

    def __len__(self) -> int:
        return len(self.start)

    @property
    def past(self) -> np.ndarray:
        """(W, T_obs, 2) float32, gathered on each access."""
        return self._tracks(self.start)[:, :self.obs_len]

    @property
    def future(self) -> np.ndarray:
        """(W, T_pred, 2) float32, gathered on each access."""
        return self._tracks(self.start)[:, self.obs_len:]

    @classmethod
    def concatenate(cls, parts: list[Windows]) -> Windows:
        """Windows of several tables in one set; agent indices stay per table."""
        rows = np.cumsum([0] + [len(p.index.agent) for p in parts[:-1]])
        return cls(
            start=np.concatenate([p.start + r for p, r in zip(parts, rows)]),
            agent=np.concatenate([p.agent for p in parts]),
            last_step=np.concatenate([p.last_step for p in parts]),
            index=SceneIndex.merge([p.index for p in parts]),
            obs_len=parts[0].obs_len,
            pred_len=parts[0].pred_len,
        )

    def subset(self, indices) -> Windows:
        """The windows at `indices`, in that order, with the same scene index (neighbours are unchanged)."""
        indices = np.asarray(indices, dtype=np.int64)
        return replace(self, start=self.start[indices], agent=self.agent[indices], last_step=self.last_step[indices])

    def neighbour_tracks(self, i: int) -> np.ndarray:
        """The neighbours of window i: (N_i, T_obs, 2), agents ascending, NaN where absent."""
        return self.index.neighbours(self.start[i:i + 1], self.obs_len)[1]

    def batch(self, indices) -> TrajectoryBatch:
        """Gather windows into a batch, padding neighbours to the largest count among them."""
        start = self.start[np.asarray(indices, dtype=np.int64)]
        tracks = self._tracks(start)
        counts, pos = self.index.neighbours(start, self.obs_len)
        owner = np.repeat(np.arange(len(start)), counts)  # the window of each neighbour track
        slot = np.arange(len(pos)) - np.repeat(np.cumsum(counts) - counts, counts)
        neigh = np.full((len(start), int(counts.max(initial=0)), self.obs_len, 2), np.nan, dtype=np.float32)
        neigh[owner, slot] = pos
        mask = ~np.isnan(neigh[..., 0])  # (B, N, T_obs): padding slots are all NaN, so never observed
        return TrajectoryBatch(
            past=torch.from_numpy(np.ascontiguousarray(tracks[:, :self.obs_len])),
            future=torch.from_numpy(np.ascontiguousarray(tracks[:, self.obs_len:])),
            neighbours=torch.from_numpy(np.where(mask[..., None], neigh, np.float32(0.0))),
            neighbour_mask=torch.from_numpy(mask),
        )

    def _tracks(self, start: np.ndarray) -> np.ndarray:
        """Positions over all steps of the windows starting at rows `start`: (len, T_obs + T_pred, 2)."""
        return self.index.xy[start[:, None] + np.arange(self.obs_len + self.pred_len)]


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
    return Windows(
        start=starts,
        agent=agent[starts],
        last_step=step[starts + obs_len - 1],
        index=SceneIndex.build(table),
        obs_len=obs_len,
        pred_len=pred_len,
    )
