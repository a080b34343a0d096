"""Where per-frame sampling time goes: a least-squares fit of each predict_futures call's wall time on the
number of agents it forecasts, over every frame of a scene's test recordings (the frames `sampling_speed`
times), so the fixed cost of a call shows apart from the cost of each agent.

    python benchmarks/sampling_calls.py [checkpoint=checkpoints/eth_ucy/univ.ckpt] [scene=univ] [threads=2]

Prints ms per call = a + b x agents (a straight line: most frames hold 10 to 50 agents, so `a` is an
extrapolation, the cost of a call however few it forecasts) and the mean ms per agent by crowd size. The
first pass over the frames warms up and is not counted.
"""
import time
from pathlib import Path

import numpy as np
import torch

from bench.options import options
from cvae_traj.data.eth_ucy import SCENES
from cvae_traj.data.tracks import read_raw_eth_ucy, validate_tracks
from cvae_traj.errors import InputError
from cvae_traj.forecast import load_model, predict_futures

cfg = options({"checkpoint": "checkpoints/eth_ucy/univ.ckpt", "scene": "univ", "threads": 2, "data": "data/eth_ucy"})
ckpt, scene = Path(cfg.checkpoint), cfg.scene
torch.set_num_threads(int(cfg.threads))
model = load_model(ckpt)
tables = [validate_tracks(read_raw_eth_ucy(Path(cfg.data) / "all_data" / f"{r}.txt"), source=r, frame_step=10)
          for r in SCENES[scene]]

agents, ms = [], []
for timed in (False, True):
    for table in tables:
        for step in np.unique(table.step):
            start = time.perf_counter()
            try:
                futures = predict_futures(model, table, num_samples=20, at_frame=table.frames(step))
            except InputError:  # no agent with a full history at this frame
                continue
            if timed:
                ms.append(1000 * (time.perf_counter() - start))
                agents.append(futures["agent_id"].nunique())
agents, ms = np.array(agents, dtype=float), np.array(ms)
a, b = np.linalg.lstsq(np.stack([np.ones_like(agents), agents], 1), ms, rcond=None)[0]
print(f"{ckpt}, {scene} test frames, {torch.get_num_threads()} threads: {len(ms)} calls, {int(agents.sum())} agents, "
      f"{ms.sum() / agents.sum():.3f} ms per agent")
print(f"ms per call = {a:.2f} + {b:.3f} x agents")
for lo, hi in ((1, 10), (10, 30), (30, 50), (50, 1000)):
    k = (agents >= lo) & (agents < hi)
    if k.any():
        print(f"{lo}-{hi - 1} agents: {k.sum()} calls, {ms[k].mean():.2f} ms per call, "
              f"{ms[k].sum() / agents[k].sum():.3f} ms per agent")
