"""Per-frame latency of the live forecaster, replaying a recording frame by frame.

    python benchmarks/live_latency.py [scene=univ] [checkpoint=checkpoints/eth_ucy/{scene}.ckpt] [num_samples=20]
        [cluster_from=null] [threads=2] [frames=null] [runtime=torch|onnxruntime]
        [newcomer=checkpoints/eth_ucy_short/{scene}.ckpt]

Feeds the scene's test recording (UNIV, the crowded one, by default) to cvae_traj.LiveForecaster one frame at a
time, as a camera would, and times each `update` call: rows in, futures of every agent present out (a data
frame, as the user gets it). runtime=onnxruntime draws with the exported sampler (LiveForecaster's runtime).
newcomer=... forecasts the agents seen fewer than 8 steps with that checkpoint (LiveForecaster's newcomer_model):
every agent seen twice is then forecast, by two model calls where a frame holds both kinds.
Prints the median and 99th percentile per-frame latency by how many agents the frame forecast, per agent at the
largest frames, and the process's peak resident memory. Run it alone: on 2 cores anything beside it slows both.
"""
import resource
import time

import numpy as np
import torch

from bench.options import options
from cvae_traj import LiveForecaster, load_model
from cvae_traj.data.eth_ucy import FRAME_STEP, SCENES, EthUcyDataModule
from cvae_traj.data.tracks import read_raw_eth_ucy

cfg = options({"scene": "univ", "checkpoint": "checkpoints/eth_ucy/{scene}.ckpt", "num_samples": 20,
               "cluster_from": None, "threads": 2, "frames": None, "data": "data/eth_ucy", "warmup": 20, "runtime": "torch",
               "newcomer": None})
assert cfg.scene in SCENES, f"scene must be one of {SCENES}"
torch.set_num_threads(cfg.threads)
model = load_model(cfg.checkpoint.format(scene=cfg.scene))
newcomer = None if cfg.newcomer is None else load_model(cfg.newcomer.format(scene=cfg.scene))
data = EthUcyDataModule(scene=cfg.scene, root=cfg.data)
rows = []
for rel in data.files["test"]:
    table = read_raw_eth_ucy(data.root / rel)
    live = LiveForecaster(model, num_samples=cfg.num_samples, cluster_from=cfg.cluster_from, frame_step=FRAME_STEP,
                          runtime=cfg.runtime, newcomer_model=newcomer)
    frames = list(table.groupby("frame", sort=True))
    if cfg.frames is not None:
        frames = frames[:cfg.frames]
    for i, (frame, present) in enumerate(frames):
        start = time.perf_counter()
        futures = live.update(frame, present)
        seconds = time.perf_counter() - start
        if i >= cfg.warmup:
            rows.append((len(present), futures["agent_id"].nunique() if len(futures) else 0, seconds))
    print(f"{rel}: {len(frames)} frames, {live.bridged} positions bridged", flush=True)

present, forecast, seconds = (np.array(c) for c in zip(*rows))
ms = 1000 * seconds
print(f"\n{cfg.scene}, {cfg.num_samples} futures per agent"
      + (f" (representatives of {cfg.cluster_from} draws)" if cfg.cluster_from else " (faithful draws)")
      + ("" if newcomer is None else ", newcomers by their own model")
      + f", {cfg.runtime}, {torch.get_num_threads()} threads, {len(rows)} frames timed after {cfg.warmup} warm-up "
        f"frames each\n")
print("| agents forecast in the frame | frames | median ms | p99 ms | median ms per agent |\n|---|---|---|---|---|")
edges = [0, 1, 10, 20, 30, 40, 50, 60, 80, 1000]
for lo, hi in zip(edges[:-1], edges[1:]):
    mine = (forecast >= lo) & (forecast < hi)
    if mine.any():
        per_agent = np.median(ms[mine] / np.maximum(forecast[mine], 1))
        print(f"| {lo}-{hi - 1} | {mine.sum()} | {np.median(ms[mine]):.2f} | {np.percentile(ms[mine], 99):.2f} | "
              f"{per_agent:.3f} |")
top = forecast >= np.percentile(forecast, 99)
print(f"\nlargest frames ({forecast[top].min()}-{forecast.max()} agents): median {np.median(ms[top]):.2f} ms, "
      f"{np.median(ms[top] / forecast[top]):.3f} ms per agent")
print(f"all frames: median {np.median(ms):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms; peak resident memory "
      f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
