"""Writing files atomically (a temporary file beside the target, then a rename), and the futures files."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cvae_traj.errors import InputError

# weight: the probability mass a future stands for (1/K for K faithful draws; a cluster's share of the draws
# for representatives); the weights of an agent's K futures sum to 1.
FUTURE_COLUMNS = ("agent_id", "sample", "step", "frame", "x", "y", "weight")
OUTPUT_FORMATS = {".csv": "CSV", ".parquet": "Parquet"}


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; it replaces `path` only if the block finishes without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes private files; give the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(obj, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def check_output_path(path: str | Path) -> Path:
    """Refuse an output format we cannot write before any work is done."""
    path = Path(path)
    if path.suffix.lower() not in OUTPUT_FORMATS:
        raise InputError(f"{path}: output must end in {' or '.join(OUTPUT_FORMATS)}")
    return path


def write_futures(futures: pd.DataFrame | Iterable[pd.DataFrame], path: str | Path) -> int:
    """Write futures as CSV or Parquet (by extension), atomically; returns the number of rows written.

    `futures` may be one data frame or an iterable of them (as `iter_futures` gives), written as they come:
    if the iterable fails part way, the target is left as it was.
    """
    path = check_output_path(path)
    chunks = [futures] if isinstance(futures, pd.DataFrame) else futures
    rows = 0
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".parquet":
            writer = None
            try:
                for chunk in chunks:
                    part = pa.Table.from_pandas(chunk, preserve_index=False)
                    writer = writer or pq.ParquetWriter(tmp, part.schema)
                    writer.write_table(part)
                    rows += len(chunk)
                if writer is None:
                    pd.DataFrame(columns=list(FUTURE_COLUMNS)).to_parquet(tmp, index=False)
            finally:
                if writer is not None:
                    writer.close()
        else:
            with open(tmp, "w", newline="") as f:
                header = True
                for chunk in chunks:
                    chunk.to_csv(f, index=False, header=header)
                    header, rows = False, rows + len(chunk)
                if header:
                    f.write(",".join(FUTURE_COLUMNS) + "\n")
    return rows


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
