"""Two DDP processes against one process: the same training, the same global batch, several seeds.

    python benchmarks/ddp_vs_single.py ['seeds=[0,1,2]'] [batch_size=64] ['train_overrides=[data=eth_ucy,...]']

Trains `python train.py` (the built-in dataset unless overrides say otherwise) once per seed in one process
with all CPU threads and once with trainer.devices=2 trainer.strategy=ddp, each process taking half the
batch and half the threads, so both see the same number of windows per optimiser step. Prints the test
metrics of each run, each mode's mean and spread over seeds, and the difference of the means in units of
that spread: results "match within noise" when the difference is no larger than seed-to-seed variation.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.options import options

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("test/min_ade_20", "test/min_fde_20", "test/ml_ade", "test/nll_iwae_10")


def train(run_dir: Path, seed: int, devices: int, batch_size: int, extra: list[str]) -> dict:
    threads = max(1, (os.cpu_count() or 1) // devices)
    command = [sys.executable, str(ROOT / "train.py"), *extra, f"seed={seed}",
               f"data.batch_size={batch_size // devices}", "trainer.accelerator=cpu", f"trainer.devices={devices}", "trainer.enable_progress_bar=false",
               f"hydra.run.dir={run_dir}"]
    if devices > 1:
        command.append("trainer.strategy=ddp")
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode:
        sys.exit(f"train.py failed ({' '.join(command[2:])}): {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"seconds": time.perf_counter() - start, **{m: metrics["test"][m] for m in METRICS}}


def main() -> None:
    cfg = options({"seeds": [0, 1, 2], "batch_size": 64, "train_overrides": []})
    seeds, batch_size, extra = [int(s) for s in cfg.seeds], int(cfg.batch_size), list(cfg.train_overrides)
    runs = {"1 process": [], "2 DDP processes": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for mode, devices in (("1 process", 1), ("2 DDP processes", 2)):
                runs[mode].append(train(Path(tmp) / f"{devices}_{seed}", seed, devices, batch_size, extra))
                r = runs[mode][-1]
                print(f"seed {seed} {mode:>15}: " + ", ".join(f"{m.split('/')[1]} {r[m]:.4f}" for m in METRICS)
                      + f" ({r['seconds']:.0f} s)", flush=True)
    print(f"\nmean ± std over seeds {seeds}, global batch {batch_size}:")
    for m in METRICS:
        a, b = (np.array([r[m] for r in runs[mode]]) for mode in runs)
        spread = max(a.std(), b.std(), 1e-12)
        print(f"{m:>18}: 1 process {a.mean():.4f} ± {a.std():.4f} | 2 DDP {b.mean():.4f} ± {b.std():.4f} | "
              f"difference {b.mean() - a.mean():+.4f} = {(b.mean() - a.mean()) / spread:+.2f} std")
    print("wall seconds per run: " + ", ".join(f"{mode} {np.mean([r['seconds'] for r in rs]):.0f}"
                                             for mode, rs in runs.items()))


if __name__ == "__main__":
    main()
