"""The batch that every datamodule yields and the model consumes.

Shape convention, used throughout the package:
    past            (B, T_obs, 2)      observed absolute positions, metres, oldest first
    future          (B, T_pred, 2)     ground-truth absolute positions (None when unknown)
    neighbours      (B, N, T_obs, 2)   other agents present in the observed frames
    neighbour_mask  (B, N, T_obs)      True where that neighbour was observed at that step
    history         (B,)               int64: the agent's observed steps, the last `history` of T_obs (None: all);
                                       the positions before them are placeholders the model fills in
    samples         (B, K, T_pred, 2)  K sampled futures per agent
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor


@dataclass
class TrajectoryBatch:
    """One batch of agents; neighbour positions are zero wherever the mask is False."""

    past: Tensor  # (B, T_obs, 2)
    future: Tensor | None  # (B, T_pred, 2)
    neighbours: Tensor  # (B, N, T_obs, 2)
    neighbour_mask: Tensor  # (B, N, T_obs)
    history: Tensor | None = None  # (B,) int64, 1 <= history <= T_obs; None: every step observed

    def __post_init__(self) -> None:
        b, t_obs, d = self.past.shape
        if d != 2:
            raise ValueError(f"past must be (B, T_obs, 2), got {tuple(self.past.shape)}")
        if self.future is not None and (self.future.shape[0] != b or self.future.shape[-1] != 2):
            raise ValueError(f"future must be (B, T_pred, 2), got {tuple(self.future.shape)}")
        if self.neighbours.shape[:1] + self.neighbours.shape[2:] != (b, t_obs, 2):
            raise ValueError(f"neighbours must be (B, N, T_obs, 2), got {tuple(self.neighbours.shape)}")
        if self.neighbour_mask.shape != self.neighbours.shape[:3]:
            raise ValueError(f"neighbour_mask must be (B, N, T_obs), got {tuple(self.neighbour_mask.shape)}")
        if self.history is not None and self.history.shape != (b,):
            raise ValueError(f"history must be (B,), got {tuple(self.history.shape)}")

    def __len__(self) -> int:
        return self.past.shape[0]

    def to(self, device: torch.device | str) -> TrajectoryBatch:
        """The same batch on another device."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(self, **{k: v.to(device) for k, v in moved.items() if v is not None})

    def transformed(self, m: Tensor, pivot: Tensor, keep_pivot: bool = True) -> TrajectoryBatch:
        """Every position p mapped to (p - pivot) @ m, plus pivot again if keep_pivot; padding stays zero.

        m (B, 2, 2) acts on row vectors; pivot (B, 2).
        """
        b = self.past.shape[0]  # not len(self): an exporter keeps shape[0] symbolic, len() makes it a constant

        def move(p: Tensor) -> Tensor:  # (B, ..., 2)
            shape = (b,) + (1,) * (p.dim() - 2) + (2,)
            out = ((p - pivot.view(shape)).reshape(b, -1, 2) @ m).reshape(p.shape)
            return out + pivot.view(shape) if keep_pivot else out

        return replace(
            self,
            past=move(self.past),
            future=None if self.future is None else move(self.future),
            neighbours=move(self.neighbours) * self.neighbour_mask.unsqueeze(-1).to(self.neighbours.dtype),
        )

    @classmethod
    def from_past(cls, past: Tensor, future: Tensor | None = None, history: Tensor | None = None) -> TrajectoryBatch:
        """A batch of agents without neighbours, for callers that only have the agents' own tracks."""
        b, t_obs, _ = past.shape
        return cls(
            past=past,
            future=future,
            neighbours=past.new_zeros(b, 0, t_obs, 2),
            neighbour_mask=torch.zeros(b, 0, t_obs, dtype=torch.bool, device=past.device),
            history=history,
        )

    def with_history(self, history: Tensor | None) -> TrajectoryBatch:
        """The same batch with only the last `history` (B,) steps of each agent's past counted as observed (None:
        every step)."""
        return replace(self, history=history)

    def select(self, index: Tensor) -> TrajectoryBatch:
        """The agents at `index` (indices or a (B,) bool mask), with their neighbours."""
        chosen = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(self, **{k: v[index] for k, v in chosen.items() if v is not None})
