"""The sampling call of a live frame under torch and under onnxruntime, on the same batches and noise.

    python benchmarks/onnx_speed.py [scene=univ] [checkpoint=checkpoints/eth_ucy/{scene}.ckpt] [threads=2]
        [every=5]

Exports the checkpoint's sampler (cvae_traj.export) to a temporary file, then for every `every`-th frame of the
scene's test recording gathers the batch the live forecaster samples (the agents with 8 consecutive positions
and every agent present as a neighbour) and times the model call alone, 20 draws per agent: torch's
sample_from_noise against the ONNX session on the same noise (their futures are checked equal). Prints the
median ms per call by agents in the frame. Run it alone.
"""
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from bench.options import options
from cvae_traj.data.current import FrameAgents, current_windows
from cvae_traj.data.eth_ucy import EthUcyDataModule
from cvae_traj.errors import InputError
from cvae_traj.export import export_onnx
from cvae_traj.forecast import load_model

cfg = options({"scene": "univ", "checkpoint": "checkpoints/eth_ucy/{scene}.ckpt", "threads": 2, "every": 5,
               "num_samples": 20, "repeats": 3, "data": "data/eth_ucy"})
torch.set_num_threads(cfg.threads)
model = load_model(cfg.checkpoint.format(scene=cfg.scene))
options_ = ort.SessionOptions()
options_.intra_op_num_threads, options_.inter_op_num_threads = cfg.threads, 1
with tempfile.TemporaryDirectory() as tmp:
    session = ort.InferenceSession(str(export_onnx(model, Path(tmp) / "sampler.onnx")), options_,
                                   providers=["CPUExecutionProvider"])
data = EthUcyDataModule(scene=cfg.scene, root=cfg.data)
rows = []
generator = torch.Generator().manual_seed(0)
for table in data.load_split("test"):
    for step in range(7, int(table.step.max()) + 1, cfg.every):
        try:
            present = FrameAgents.gather(current_windows(table, model.hparams.obs_len, step))
        except InputError:
            continue
        batch = present.batch(np.arange(len(present)))
        z = torch.randn(cfg.num_samples, len(batch), model.noise_dim, generator=generator)
        y = torch.randn(cfg.num_samples, len(batch), model.hparams.pred_len, 2, generator=generator)
        feed = {"past": batch.past.numpy(), "neighbours": batch.neighbours.numpy(),
                "neighbour_mask": batch.neighbour_mask.numpy(), "z_noise": z.numpy(), "y_noise": y.numpy(),
                "history": np.full(len(batch), model.hparams.obs_len, dtype=np.int64)}
        times = {"torch": [], "onnx": []}
        for _ in range(cfg.repeats):
            start = time.perf_counter()
            with torch.no_grad():
                expected = model.sample_from_noise(batch, z, y)
            times["torch"].append(time.perf_counter() - start)
            start = time.perf_counter()
            got = session.run(None, feed)[0]
            times["onnx"].append(time.perf_counter() - start)
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-3, atol=1e-3)
        rows.append((len(batch), 1000 * min(times["torch"]), 1000 * min(times["onnx"])))

agents, torch_ms, onnx_ms = (np.array(c) for c in zip(*rows))
print(f"{cfg.scene}: {len(rows)} frames, {cfg.num_samples} draws per agent, {cfg.threads} threads, best of "
      f"{cfg.repeats} per frame; the model call alone (no table work), same noise, futures equal\n")
print("| agents in the frame | frames | torch median ms | onnxruntime median ms |\n|---|---|---|---|")
edges = [1, 10, 20, 30, 40, 50, 60, 1000]
for lo, hi in zip(edges[:-1], edges[1:]):
    mine = (agents >= lo) & (agents < hi)
    if mine.any():
        print(f"| {lo}-{hi - 1} | {mine.sum()} | {np.median(torch_ms[mine]):.2f} | {np.median(onnx_ms[mine]):.2f} |")
print(f"\nall frames: torch {np.median(torch_ms):.2f} ms, onnxruntime {np.median(onnx_ms):.2f} ms (median); "
      f"onnxruntime / torch {np.median(onnx_ms / torch_ms):.2f}")
