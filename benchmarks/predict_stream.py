"""predict.py on a large track table: streamed (the default) against reading the table and the futures whole.

    python benchmarks/predict_stream.py [rows=10000000] [agents_per_frame=20000] [chunk_rows=1000000]
        [checkpoint=checkpoints/eth_ucy/zara1.ckpt]

Writes a synthetic CSV (benchmarks/windowing.py's random walks, rows in random order), then forecasts 20
futures for every agent current at a frame in the middle of it, once as predict.py does (the table read in
chunks keeping only the frames used, futures sampled and written in batches) and once the old way
(load_tracks + predict_futures + write_futures of one data frame). Each runs in its own process, so its
peak resident memory (VmHWM) is its own; both use one thread. Prints seconds and peak memory of each and
checks that the two outputs are the same file.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import filecmp  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from bench.options import options  # noqa: E402
from windowing import synthetic_table  # noqa: E402


def child(mode: str, ckpt: str, table: str, output: str, at_frame: float, chunk_rows: int) -> None:
    import torch

    from cvae_traj.data.tracks import load_tracks
    from omegaconf import OmegaConf

    from cvae_traj.forecast import load_model, predict, predict_futures
    from cvae_traj.io import write_futures

    start = time.perf_counter()
    if mode == "stream":
        cfg = OmegaConf.load(Path(__file__).parents[1] / "conf" / "predict.yaml")
        cfg.pop("defaults"), cfg.pop("hydra")
        cfg.update(ckpt_path=ckpt, input=table, output=output, at_frame=at_frame, chunk_rows=chunk_rows)
        predict(cfg)
    else:
        model = load_model(ckpt)
        tracks = load_tracks(table, dt=model.hparams.dt)
        torch.manual_seed(0)
        write_futures(predict_futures(model, tracks, num_samples=20, at_frame=at_frame), output)
    print(json.dumps({"seconds": time.perf_counter() - start, "peak_mib": peak_rss_mib()}))


def peak_rss_mib() -> float:
    """This process's peak resident memory. Linux's VmHWM starts afresh at exec; ru_maxrss does not (it keeps
    the parent's peak across fork and exec), so it is only the fallback."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    cfg = options({"rows": 10_000_000, "agents_per_frame": 20_000, "chunk_rows": 1_000_000,
                   "checkpoint": "checkpoints/eth_ucy/zara1.ckpt"})
    rows, per_frame, chunk_rows, ckpt = int(cfg.rows), int(cfg.agents_per_frame), int(cfg.chunk_rows), cfg.checkpoint
    with tempfile.TemporaryDirectory() as tmp:
        df = synthetic_table(rows, agents_per_frame=per_frame)
        at_frame = float(df["frame"].median())
        table = Path(tmp) / "tracks.csv"
        start = time.perf_counter()
        df.to_csv(table, index=False)
        print(f"table: {rows:,} rows, {table.stat().st_size / 2**20:,.0f} MiB CSV written in "
              f"{time.perf_counter() - start:.1f} s; forecasting at frame {at_frame:g}")
        del df
        results = {}
        for mode in ("stream", "whole"):
            out = str(Path(tmp) / f"{mode}.csv")
            done = subprocess.run([sys.executable, __file__, "--child", mode, ckpt, str(table), out, str(at_frame),
                                   str(chunk_rows)], capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"{mode} failed: {done.stderr.strip().splitlines()[-1]}")
            results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
            results[mode]["futures"] = sum(1 for _ in open(out)) - 1
        same = filecmp.cmp(Path(tmp) / "stream.csv", Path(tmp) / "whole.csv", shallow=False)
    agents = results["stream"]["futures"] // (20 * 12)
    for mode, label in (("stream", "predict.py, streamed"), ("whole", "read whole, futures whole")):
        r = results[mode]
        print(f"{label:>26}: {r['seconds']:6.1f} s, peak {r['peak_mib']:7.0f} MiB, {r['futures']:,} future rows")
    print(f"{agents:,} agents forecast; outputs identical: {same}; streamed peak memory "
          f"{results['stream']['peak_mib'] / results['whole']['peak_mib']:.2f} x the whole read's")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        m, c, t, o, a, r = sys.argv[2:8]
        child(m, c, t, o, float(a), int(r))
    else:
        main()
