"""Reading and validating track tables: one row per (frame, agent) with a 2-D position.

Every problem with a table is reported as one `InputError` naming the file, column, agent or frame,
so that the command-line tools can print it on one line.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal, Mapping

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
    return next(iter_table(path))


def iter_table(path: str | Path, chunk_rows: int | None = None) -> Iterator[pd.DataFrame]:
    """The table `read_table` reads, in data frames of at most `chunk_rows` rows read as they are asked for
    (None: the whole table as one frame), so that a table larger than memory can be scanned."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    if chunk_rows is not None and chunk_rows < 1:
        raise InputError(f"{path}: chunk_rows must be a positive number of rows, got {chunk_rows}")
    suffix = path.suffix.lower()
    kind = "Parquet" if suffix in (".parquet", ".pq") else "CSV"
    try:
        if kind == "Parquet":
            if chunk_rows is None:
                yield pd.read_parquet(path)
            else:
                import pyarrow.parquet as pq  # a dependency of ours; imported only where streamed

                for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
                    yield batch.to_pandas()
            return
        options = {}
        if suffix in (".tsv", ".txt"):
            headerless = _first_line_is_numeric(path)
            options = {"sep": r"\s+", "header": None if headerless else "infer",
                       "names": list(COLUMNS) if headerless else None}
        if chunk_rows is None:
            yield pd.read_csv(path, **options)
        else:
            with pd.read_csv(path, chunksize=chunk_rows, **options) as reader:
                yield from reader
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
    names = _column_names(columns, source)
    agent_col, values = _checked_columns(df, source, names)

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
    problem = _grid_problem(frame, frame0, frame_step, time_unit)
    if problem is not None:
        i, what = problem
        raise InputError(f"{source}: frame {_num(frame[i])} of agent {_id(agent_ids[agent[i]])} {what}")
    step = np.rint((frame - frame0) / frame_step)
    return TrackTable(step.astype(np.int64), agent, xy, agent_ids, frame0, float(frame_step), source)


def _grid_problem(frame: np.ndarray, frame0: float, frame_step: float,
                  time_unit: TimeUnit) -> tuple[int, str] | None:
    """The first frame that cannot be placed on the grid of `frame_step` from `frame0`, and why; None if all can."""
    extent = np.abs(frame) / frame_step
    if not (extent <= _MAX_STEPS).all():  # also catches inf
        return int(np.argmax(~(extent <= _MAX_STEPS))), (
            f"is too large for a frame step of {frame_step:g}: more than 2^40 steps from 0 cannot be placed on "
            f"the time grid exactly")
    grid = (frame - frame0) / frame_step
    off = np.abs(grid - np.rint(grid)) > _GRID_TOLERANCE
    if off.any():
        unit = f"{frame_step:g} s time grid" if time_unit == "seconds" else f"grid of frame step {frame_step:g}"
        return int(np.argmax(off)), f"is off the {unit} starting at {_num(frame0)}"
    return None


def _column_names(columns: Mapping[str, str] | None, source: str) -> dict[str, str]:
    """The table's column name of each role (frame, agent_id, x, y)."""
    names = {key: key for key in COLUMNS} | dict(columns or {})
    unknown = set(names) - set(COLUMNS)
    if unknown:
        raise InputError(f"{source}: unknown column role(s) {sorted(unknown)}; the roles are {list(COLUMNS)}")
    return names


def _checked_columns(df: pd.DataFrame, source: str, names: Mapping[str, str],
                     first_row: int = 0) -> tuple[pd.Series, dict[str, np.ndarray]]:
    """The agent column and the frame, x and y columns as float64, after the checks every row must pass.

    `first_row` is the position of the frame's first row in its file, for the row numbers of messages.
    """
    missing = [names[key] for key in COLUMNS if names[key] not in df.columns]
    if missing:
        found = ", ".join(map(str, df.columns[:10]))
        raise InputError(f"{source}: missing column(s) {', '.join(map(repr, missing))} (found: {found})")
    if len(df) == 0:
        raise InputError(f"{source}: the table has no rows")

    agent_col = df[names["agent_id"]]
    if agent_col.isna().any():
        row = _first_row(agent_col.isna(), first_row)
        raise InputError(f"{source}: column {names['agent_id']!r} is empty at row {row}")
    values = {}
    for key in ("frame", "x", "y"):
        raw = df[names[key]]
        numeric = pd.to_numeric(raw, errors="coerce")
        bad = numeric.isna() & raw.notna()
        if bad.any():
            row = _first_row(bad, first_row)
            raise InputError(f"{source}: column {names[key]!r} has a non-numeric value {raw[bad].iloc[0]!r} at row {row}")
        arr = numeric.to_numpy(dtype=np.float64, na_value=np.nan)
        finite = np.isfinite(arr)
        if not finite.all():
            i = int(np.argmin(finite))
            what = "NaN" if np.isnan(arr[i]) else "inf"
            raise InputError(f"{source}: column {names[key]!r} has {what} at row {_row_label(i + first_row)} "
                             f"(agent {_id(agent_col.iloc[i])})")
        if key != "frame" and (np.abs(arr) > _MAX_POSITION).any():
            i = int(np.argmax(np.abs(arr) > _MAX_POSITION))
            raise InputError(f"{source}: column {names[key]!r} has {arr[i]:g} at row {_row_label(i + first_row)}, "
                             f"beyond the float32 range the model computes in")
        values[key] = arr
    return agent_col, values


def load_tracks(path: str | Path, **kwargs) -> TrackTable:
    """Read and validate a CSV or Parquet track table; keyword arguments as for `validate_tracks`."""
    return validate_tracks(read_table(path), source=str(path), **kwargs)


def load_recent_tracks(
    path: str | Path,
    before: int,
    after: int,
    at_frame: float | None = None,
    chunk_rows: int = 1_000_000,
    columns: Mapping[str, str] | None = None,
    time_unit: TimeUnit = "frame",
    frame_step: float | None = None,
    dt: float = 0.4,
) -> TrackTable:
    """The rows of a track table that a forecast at `at_frame` (None: the last frame) uses, read in chunks.

    Keeps the `before` steps up to and including `at_frame` and the `after` steps past it, so memory grows
    with those rows, not with the file. Every row's values are checked as in `validate_tracks`, and every
    frame of the file must lie on the time grid; duplicates are looked for among the rows kept, and an
    inferred frame step is the most common one of those rows. The file is read twice.
    """
    source = str(path)
    names = _column_names(columns, source)
    distinct, rows, header = [], 0, None
    for chunk in iter_table(path, chunk_rows):
        header = chunk.columns if header is None else header
        if len(chunk):
            _, values = _checked_columns(chunk, source, names, first_row=rows)
            distinct.append(np.unique(values["frame"]))
        rows += len(chunk)
    if rows == 0:  # the column check first, as for a table read whole
        empty = pd.DataFrame(columns=header if header is not None else list(names.values()))
        _checked_columns(empty, source, names)
    frames = np.unique(np.concatenate(distinct))
    at = frames[-1] if at_frame is None else float(at_frame)
    step = float(dt) if time_unit == "seconds" else frame_step
    if step is not None and step > 0:  # a known grid: keep by value, half a step of slack for rounding
        lo, hi = at - (before - 0.5) * step, at + (after + 0.5) * step
    else:  # the grid is inferred from the rows kept: keep by count of distinct frames, a superset
        i = int(np.searchsorted(frames, at))
        if i == len(frames) or frames[i] != at:
            raise InputError(f"{source}: at_frame {at:g} is not a frame of the table")
        lo, hi = frames[max(i - before + 1, 0)], frames[min(i + after, len(frames) - 1)]
    kept = []
    for chunk in iter_table(path, chunk_rows):
        if len(chunk):
            frame = pd.to_numeric(chunk[names["frame"]]).to_numpy(dtype=np.float64)
            kept.append(chunk[(frame >= lo) & (frame <= hi)])
    kept = pd.concat(kept, ignore_index=True)
    if len(kept) == 0:
        raise InputError(f"{source}: no rows in the {before} steps up to frame {at:g}")
    table = validate_tracks(kept, source, columns, time_unit, frame_step, dt)
    problem = _grid_problem(frames, table.frame0, table.frame_step, time_unit)
    if problem is not None:  # a third pass, for the agent of the first row with that frame
        i, what = problem
        for chunk in iter_table(path, chunk_rows):
            hit = np.flatnonzero(pd.to_numeric(chunk[names["frame"]]).to_numpy(dtype=np.float64) == frames[i])
            if len(hit):
                agent = chunk[names["agent_id"]].iloc[hit[0]]
                raise InputError(f"{source}: frame {_num(frames[i])} of agent {_id(agent)} {what}")
    return table


def _infer_frame_step(agent: np.ndarray, frame: np.ndarray, source: str) -> float:
    """The most common frame difference between consecutive rows of the same agent."""
    diffs = np.diff(frame)[agent[1:] == agent[:-1]]
    if len(diffs) == 0:
        raise InputError(f"{source}: cannot infer the frame step: no agent has two rows; set frame_step")
    steps, counts = np.unique(diffs, return_counts=True)
    return float(steps[np.argmax(counts)])


def _first_row(mask: pd.Series, first_row: int = 0) -> str:
    return _row_label(int(np.argmax(mask.to_numpy())) + first_row)


def _row_label(position: int) -> str:
    """A 1-based data row number, as a spreadsheet user would count it below the header."""
    return str(position + 1)


def _id(value) -> str:
    """An agent id for a one-line message: text ids quoted when they hold line breaks or other control characters."""
    return repr(value) if isinstance(value, str) and not value.isprintable() else str(value)


def _num(value: float) -> str:
    return f"{value:g}"
