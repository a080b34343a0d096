"""The user's own track table (CSV or Parquet) as a DataModule."""
from __future__ import annotations

from typing import Mapping

from cvae_traj.data.datamodule import Split, TrackDataModule
from cvae_traj.data.tracks import TimeUnit, TrackTable, load_tracks
from cvae_traj.errors import InputError


class CsvDataModule(TrackDataModule):
    """Windows from a track table with columns frame, agent_id, x, y (names configurable).

    With only `path`, the table is split in time: the first `1 - val_fraction - test_fraction` of its
    steps train, the next `val_fraction` validate, the last `test_fraction` test. Windows never straddle
    two splits. `val_path` and `test_path` give those splits as files of their own instead.
    """

    def __init__(
        self,
        path: str,
        val_path: str | None = None,
        test_path: str | None = None,
        columns: Mapping[str, str] | None = None,
        time_unit: TimeUnit = "frame",
        frame_step: float | None = None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if (val_path is None) != (test_path is None):
            raise InputError("give both data.val_path and data.test_path, or neither to split data.path in time")
        if not (0 < val_fraction and 0 < test_fraction and val_fraction + test_fraction < 1):
            raise InputError(f"val_fraction and test_fraction must be positive with a sum below 1, "
                             f"got {val_fraction} and {test_fraction}")
        self.paths = {"train": path, "val": val_path, "test": test_path}
        self.table_options = dict(columns=dict(columns or {}), time_unit=time_unit, frame_step=frame_step, dt=self.dt)
        self.fractions = (val_fraction, test_fraction)

    def load_split(self, split: Split) -> list[TrackTable]:
        if self.paths["val"] is not None:
            return [load_tracks(self.paths[split], **self.table_options)]
        table = load_tracks(self.paths["train"], **self.table_options)
        first, last = int(table.step.min()), int(table.step.max())
        span = last - first + 1
        val_start = first + round(span * (1 - sum(self.fractions)))
        test_start = first + round(span * (1 - self.fractions[1]))
        bounds = {"train": (first, val_start - 1), "val": (val_start, test_start - 1), "test": (test_start, last)}
        return [table.select_steps(*bounds[split])]
