"""Reading and validating track tables: one row per (frame, agent) with a 2-D position.

Every problem with a table is reported as one `InputError` naming the file, column, agent or frame,
so that the command-line tools can print it on one line.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Mapping

import numpy as np
import pandas as pd

from cvae_traj.errors import InputError

COLUMNS = ("frame", "agent_id", "x", "y")
TimeUnit = Literal["frame", "seconds"]
# Timestamps within this fraction of a step of the grid count as on it (float rounding in CSVs).
_GRID_TOLERANCE = 1e-3
# Positions are float32 in windows and models; larger magnitudes would become inf.
_MAX_POSITION = float(np.finfo(np.float32).max)
# Frames at most this many steps from 0 land on the grid within float64 rounding well below _GRID_TOLERANCE.
_MAX_STEPS = 2.0**40


@dataclass(frozen=True)
class TrackTable:
    """A validated track table on an integer time grid, rows sorted by (agent, step).

    `step[i]` is row i's index on the grid `frame = frame0 + step * frame_step`; `agent[i]` indexes `agent_ids`.
    """

    step: np.ndarray  # (R,) int64
    agent: np.ndarray  # (R,) int64
    xy: np.ndarray  # (R, 2) float64
    agent_ids: np.ndarray  # (A,) original ids
    frame0: float
    frame_step: float
    source: str

    def __len__(self) -> int:
        return len(self.step)

    def frames(self, step: np.ndarray) -> np.ndarray:
        """Frame numbers (or timestamps) of grid steps, in the units of the input table."""
        frames = self.frame0 + np.asarray(step) * self.frame_step
        integral = float(self.frame0).is_integer() and float(self.frame_step).is_integer()
        exact = np.all(np.abs(frames) < 2.0**53)  # beyond, float64 holds no exact integer and int64 may overflow
        return frames.astype(np.int64) if integral and exact else frames

    def select_steps(self, first: int, last: int) -> TrackTable:
        """The rows with `first <= step <= last`, as a table on the same grid."""
        keep = (self.step >= first) & (self.step <= last)
        return TrackTable(self.step[keep], self.agent[keep], self.xy[keep], self.agent_ids, self.frame0,
                          self.frame_step, self.source)


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a track table by its extension: .parquet, .tsv/.txt (whitespace-separated) or CSV (anything else).

    A whitespace file whose first line is all numbers has no header: its columns are frame, agent_id, x, y
    (the layout of the ETH/UCY benchmark files).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    suffix = path.suffix.lower()
    kind = "Parquet" if suffix in (".parquet", ".pq") else "CSV"
    try:
        if kind == "Parquet":
            return pd.read_parquet(path)
        if suffix in (".tsv", ".txt"):
            headerless = _first_line_is_numeric(path)
            return pd.read_csv(path, sep=r"\s+", header=None if headerless else "infer",
                               names=list(COLUMNS) if headerless else None)
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as err:
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise InputError(f"{path}: cannot be read as a {kind} table ({first_line})") from None


def _first_line_is_numeric(path: Path) -> bool:
    with open(path, encoding="utf-8", errors="replace") as f:
        tokens = f.readline().split()
    try:
        [float(t) for t in tokens]
    except ValueError:
        return False
    return bool(tokens)


def read_raw_eth_ucy(path: str | Path) -> pd.DataFrame:
    """Read one ETH/UCY benchmark file: whitespace-separated `frame agent_id x y`, no header."""
    return read_table(path)


def validate_tracks(
    df: pd.DataFrame,
    source: str = "table",
    columns: Mapping[str, str] | None = None,
    time_unit: TimeUnit = "frame",
    frame_step: float | None = None,
    dt: float = 0.4,
) -> TrackTable:
    """Check a track table and put it on an integer time grid.

    Args:
        columns: maps the package's names (frame, agent_id, x, y) to the table's own column names.
        time_unit: "frame" when the frame column holds frame numbers, "seconds" when it holds timestamps.
        frame_step: frame numbers between consecutive steps; None infers the most common step of the tracks.
            Ignored for timestamps, whose step is `dt`.
    """
    names = {key: key for key in COLUMNS} | dict(columns or {})
    unknown = set(names) - set(COLUMNS)
    if unknown:
        raise InputError(f"{source}: unknown column role(s) {sorted(unknown)}; the roles are {list(COLUMNS)}")
    missing = [names[key] for key in COLUMNS if names[key] not in df.columns]
    if missing:
        found = ", ".join(map(str, df.columns[:10]))
        raise InputError(f"{source}: missing column(s) {', '.join(map(repr, missing))} (found: {found})")
    if len(df) == 0:
        raise InputError(f"{source}: the table has no rows")

    agent_col = df[names["agent_id"]]
    if agent_col.isna().any():
        raise InputError(f"{source}: column {names['agent_id']!r} is empty at row {_first_row(agent_col.isna())}")
    values = {}
    for key in ("frame", "x", "y"):
        raw = df[names[key]]
        numeric = pd.to_numeric(raw, errors="coerce")
        bad = numeric.isna() & raw.notna()
        if bad.any():
            row = _first_row(bad)
            raise InputError(f"{source}: column {names[key]!r} has a non-numeric value {raw[bad].iloc[0]!r} at row {row}")
        arr = numeric.to_numpy(dtype=np.float64, na_value=np.nan)
        finite = np.isfinite(arr)
        if not finite.all():
            i = int(np.argmin(finite))
            what = "NaN" if np.isnan(arr[i]) else "inf"
            raise InputError(f"{source}: column {names[key]!r} has {what} at row {_row_label(i)} "
                             f"(agent {_id(agent_col.iloc[i])})")
        if key != "frame" and (np.abs(arr) > _MAX_POSITION).any():
            i = int(np.argmax(np.abs(arr) > _MAX_POSITION))
            raise InputError(f"{source}: column {names[key]!r} has {arr[i]:g} at row {_row_label(i)}, beyond the "
                             f"float32 range the model computes in")
        values[key] = arr

    if pd.api.types.is_float_dtype(agent_col) and np.isfinite(agent_col).all() and (agent_col % 1 == 0).all():
        agent_col = agent_col.astype(np.int64)  # ids written as 12.0 are the integer 12
    agent, agent_ids = pd.factorize(agent_col, sort=True)
    agent_ids = np.asarray(agent_ids)
    frame = values["frame"]
    by_frame = np.argsort(frame, kind="stable")  # then a stable sort by agent: faster than np.lexsort
    order = by_frame[np.argsort(agent[by_frame], kind="stable")]
    agent, frame = agent[order].astype(np.int64), frame[order]
    xy = np.stack([values["x"][order], values["y"][order]], axis=1)

    same = (agent[1:] == agent[:-1]) & (frame[1:] == frame[:-1])
    if same.any():
        i = int(np.argmax(same))
        raise InputError(f"{source}: duplicate rows for agent {_id(agent_ids[agent[i]])} at frame {_num(frame[i])}")

    if time_unit == "seconds":
        frame_step = float(dt)
    elif time_unit != "frame":
        raise InputError(f"{source}: time_unit must be 'frame' or 'seconds', got {time_unit!r}")
    elif frame_step is None:
        frame_step = _infer_frame_step(agent, frame, source)
    if not frame_step > 0:
        raise InputError(f"{source}: the frame step must be positive, got {frame_step}")

    frame0 = float(frame.min())
    extent = np.abs(frame) / frame_step
    if not (extent <= _MAX_STEPS).all():  # also catches inf
        i = int(np.argmax(~(extent <= _MAX_STEPS)))
        raise InputError(f"{source}: frame {_num(frame[i])} of agent {_id(agent_ids[agent[i]])} is too large for a "
                         f"frame step of {frame_step:g}: more than 2^40 steps from 0 cannot be placed on the "
                         f"time grid exactly")
    grid = (frame - frame0) / frame_step
    step = np.rint(grid)
    off = np.abs(grid - step) > _GRID_TOLERANCE
    if off.any():
        i = int(np.argmax(off))
        unit = f"{frame_step:g} s time grid" if time_unit == "seconds" else f"grid of frame step {frame_step:g}"
        raise InputError(f"{source}: frame {_num(frame[i])} of agent {_id(agent_ids[agent[i]])} is off the {unit} "
                         f"starting at {_num(frame0)}")
    return TrackTable(step.astype(np.int64), agent, xy, agent_ids, frame0, float(frame_step), source)


def load_tracks(path: str | Path, **kwargs) -> TrackTable:
    """Read and validate a CSV or Parquet track table; keyword arguments as for `validate_tracks`."""
    return validate_tracks(read_table(path), source=str(path), **kwargs)


def _infer_frame_step(agent: np.ndarray, frame: np.ndarray, source: str) -> float:
    """The most common frame difference between consecutive rows of the same agent."""
    diffs = np.diff(frame)[agent[1:] == agent[:-1]]
    if len(diffs) == 0:
        raise InputError(f"{source}: cannot infer the frame step: no agent has two rows; set frame_step")
    steps, counts = np.unique(diffs, return_counts=True)
    return float(steps[np.argmax(counts)])


def _first_row(mask: pd.Series) -> str:
    return _row_label(int(np.argmax(mask.to_numpy())))


def _row_label(position: int) -> str:
    """A 1-based data row number, as a spreadsheet user would count it below the header."""
    return str(position + 1)


def _id(value) -> str:
    """An agent id for a one-line message: text ids quoted when they hold line breaks or other control characters."""
    return repr(value) if isinstance(value, str) and not value.isprintable() else str(value)


def _num(value: float) -> str:
    return f"{value:g}"
