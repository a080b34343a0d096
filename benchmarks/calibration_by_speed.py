"""Calibration apart for agents standing and moving, on ETH/UCY test: what the pooled error hides.

    python benchmarks/calibration_by_speed.py ['scenes=[eth,hotel]'] [checkpoints=checkpoints/eth_ucy_faithful]

The pooled calibration error can look fine while draws are too wide for people standing still and too narrow
for walkers: the two cancel (benchmarks/HISTORY.md). This scores the shipped faithful models
(`checkpoints/<dir>/<scene>.ckpt`) and, in the same run, the calibrated naive baseline, on every test window of
each scene: calibration of 500 draws' final positions, pooled and apart for windows whose last observed step is
under 0.08 m (0.2 m/s) and the rest (cvae_traj.evaluation.evaluate_samples), with the share standing. It
chooses nothing: it reports models already chosen on validation. Results go to `output` and print as a table.
"""
import time
from pathlib import Path

import torch

from bench.options import options
from bench.provenance import git_commit, hardware
from cvae_traj.baselines import GaussianConstantVelocity
from cvae_traj.data.eth_ucy import SCENES, EthUcyDataModule
from cvae_traj.evaluation import evaluate_samples
from cvae_traj.forecast import load_model
from cvae_traj.io import write_json

cfg = options({"scenes": list(SCENES), "checkpoints": "checkpoints/eth_ucy_faithful", "calibration_samples": 500,
               "data": "data/eth_ucy", "output": "benchmarks/results/calibration_by_speed.json", "seed": 0})
torch.set_num_threads(min(2, torch.get_num_threads()))
KEYS = ("calibration_error", "calibration_error_standing", "calibration_error_moving", "calibration_bias_standing",
        "calibration_bias_moving", "standing_share", "coverage_50", "coverage_90", "windows")

rows = []
for scene in cfg.scenes:
    data = EthUcyDataModule(scene=scene, root=cfg.data)
    test = data.windows("test")
    naive = GaussianConstantVelocity.fit(data.windows("train"), data.windows("val"))
    ckpt = Path(cfg.checkpoints) / f"{scene}.ckpt"
    for name, sampler in (("model", load_model(ckpt)), ("naive", naive)):
        start = time.perf_counter()
        s = evaluate_samples(sampler, test, num_samples=1, kde_samples=0,
                             calibration_samples=cfg.calibration_samples, seed=cfg.seed)
        rows.append({"scene": scene, "sampler": name, "checkpoint": str(ckpt) if name == "model" else None,
                     **{k: s[k] for k in KEYS}, "seconds": round(time.perf_counter() - start, 1)})
        print(rows[-1], flush=True)
        write_json({"commit": git_commit(), "hardware": hardware(1), "rows": rows}, cfg.output)
print("\nCalibration error (mean coverage - level: + too wide, - too narrow), pooled and apart\n")
print("| scene | sampler | pooled | standing | moving | share standing | cover 50% / 90% |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    standing, moving = (f"{r[f'calibration_error_{c}']:.3f} ({r[f'calibration_bias_{c}']:+.2f})"
                        if f"calibration_error_{c}" in r else "-" for c in ("standing", "moving"))
    print(f"| {r['scene']} | {r['sampler']} | {r['calibration_error']:.3f} | {standing} | {moving} | "
          f"{r['standing_share']:.2f} | {r['coverage_50']:.2f} / {r['coverage_90']:.2f} |")
