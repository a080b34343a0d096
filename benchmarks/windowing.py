"""Reading and windowing at scale: validate and window a synthetic track table of many rows on one core.

    python benchmarks/windowing.py [rows=10000000] [track_len=40] [agents_per_frame=50] [seed=0]

Prints rows per second of validate_tracks and of make_windows, the peak memory each allocates (numpy
and Python allocations, from tracemalloc), the bytes kept per window and per row, and the time to
gather one batch with its neighbours (looked up per batch, not stored). Run it with one thread (the script sets OMP/MKL threads to 1
before numpy loads). Goal of issue 5: >= 1M rows/s.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import time  # noqa: E402
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench.options import options  # noqa: E402
from cvae_traj.data.tracks import validate_tracks  # noqa: E402
from cvae_traj.data.windows import make_windows  # noqa: E402


def synthetic_table(rows: int, track_len: int = 40, agents_per_frame: int = 50, seed: int = 0) -> pd.DataFrame:
    """`rows` rows of random-walk tracks, `track_len` steps each (frame step 10), about `agents_per_frame`
    agents present at any frame, rows in random order (as a merged log would be)."""
    rng = np.random.default_rng(seed)
    n_tracks = -(-rows // track_len)
    starts = rng.integers(0, max(1, n_tracks * track_len // agents_per_frame), n_tracks)
    agent = np.repeat(np.arange(n_tracks), track_len)[:rows]
    frame = (np.repeat(starts, track_len) + np.tile(np.arange(track_len), n_tracks))[:rows] * 10
    xy = (rng.normal(0, 0.05, (n_tracks * track_len, 2)).reshape(n_tracks, track_len, 2).cumsum(1)
          + rng.uniform(0, 50, (n_tracks, 1, 2))).reshape(-1, 2)[:rows]
    order = rng.permutation(rows)
    return pd.DataFrame({"frame": frame[order], "agent_id": agent[order], "x": xy[order, 0], "y": xy[order, 1]})


def measure(fn):
    tracemalloc.start()
    tracemalloc.reset_peak()
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, seconds, peak


def main() -> None:
    cfg = options({"rows": 10_000_000, "track_len": 40, "agents_per_frame": 50, "seed": 0})
    rows = int(cfg.rows)
    df = synthetic_table(rows, int(cfg.track_len), int(cfg.agents_per_frame), int(cfg.seed))
    table, t_validate, m_validate = measure(lambda: validate_tracks(df, source="synthetic", frame_step=10))
    windows, t_windows, m_windows = measure(lambda: make_windows(table, obs_len=8, pred_len=12))
    kept = sum(a.nbytes for a in (windows.start, windows.agent, windows.last_step))
    s = windows.index
    index = sum(a.nbytes for a in (s.xy, s.agent, s.step_dense, s.keys, s.by_step, s.step_start))
    batch, t_batch, _ = measure(lambda: windows.batch(np.arange(min(len(windows), 4096))))
    mb = 2.0**20
    print(f"rows: {rows:,}  windows: {len(windows):,}")
    print(f"validate_tracks: {t_validate:.2f} s = {rows / t_validate / 1e6:.2f} M rows/s, peak {m_validate / mb:.0f} MiB")
    print(f"make_windows:    {t_windows:.2f} s = {rows / t_windows / 1e6:.2f} M rows/s, peak {m_windows / mb:.0f} MiB")
    print(f"together:        {rows / (t_validate + t_windows) / 1e6:.2f} M rows/s")
    print(f"kept: {kept / mb:.0f} MiB of window references ({kept / len(windows):.0f} bytes per window) and a "
          f"{index / mb:.0f} MiB table index ({index / rows:.0f} bytes per row)")
    print(f"a batch of {len(batch)} windows with {batch.neighbours.shape[1]} neighbour slots: {1000 * t_batch:.0f} ms")

if __name__ == "__main__":
    main()
