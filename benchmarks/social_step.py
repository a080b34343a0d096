"""What the social encoder's packing saves: training steps with attention over present neighbours only, against
nn.MultiheadAttention over every padded slot, alternated on the same batches in one process.

    python benchmarks/social_step.py [scene=zara2] [steps=50] [rounds=4] [checkpoint=checkpoints/eth_ucy/<scene>.ckpt]

One torch thread. Trains a copy of the checkpoint (by default the shipped model of that fold) on its fold's training
windows, as the benchmark does (recordings also played backwards; the best-of-many term on decoder draws), for
`steps` optimiser steps one way, then the same steps the other way, `rounds` times, and prints each way's
median milliseconds per step, their ratio, and the neighbour slots a batch holds against those filled.
"""
import copy
import statistics
import time

import torch

from bench.options import options
from cvae_traj import TrajectoryCVAE
from cvae_traj.data.eth_ucy import EthUcyDataModule
from cvae_traj.forecast import load_model

cfg = options({"scene": "zara2", "steps": 50, "rounds": 4, "checkpoint": None, "data": "data/eth_ucy"})
scene, steps, rounds = cfg.scene, int(cfg.steps), int(cfg.rounds)
torch.set_num_threads(1)  # as each of the benchmark's two-at-a-time runs
torch.manual_seed(0)
shipped = load_model(cfg.checkpoint or f"checkpoints/eth_ucy/{scene}.ckpt")
data = EthUcyDataModule(scene=scene, root=cfg.data, augment_reverse=True)
data.setup("fit")
loader = iter(data.train_dataloader())
batches = [next(loader) for _ in range(steps)]
slots = sum(b.neighbour_mask.shape[1] for b in batches) / steps
filled = sum(b.neighbour_mask.any(-1).sum(1).float().mean().item() for b in batches) / steps


def train(model: TrajectoryCVAE, optimizer: torch.optim.Optimizer) -> float:
    """Milliseconds per optimiser step over `batches`: the recipe's loss, backward and AdamW."""
    h = model.hparams
    start = time.perf_counter()
    for batch in batches:
        terms = model.cvae.elbo_terms(batch, variety_samples=h.variety_samples, variety_noise=h.variety_noise)
        loss = terms["rec_nll"].mean() + h.beta * terms["kl_per_dim"].mean(0).sum() + h.variety_weight * terms[
            "variety"].mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / len(batches) * 1000


ways = {}
for packed in (True, False):
    model = copy.deepcopy(shipped).train()
    model.cvae.social_encoder.pack_neighbours = packed
    ways[packed] = (model, torch.optim.AdamW(model.parameters(), lr=1e-4), [])
for _ in range(rounds):
    for model, optimizer, times in ways.values():
        times.append(train(model, optimizer))
packed_ms, padded_ms = (statistics.median(ways[p][2]) for p in (True, False))
print(f"{scene} fold, {steps} steps x {rounds} rounds, one thread: {slots:.1f} neighbour slots a batch, "
      f"{filled:.1f} filled per window on average")
print(f"present neighbours only {packed_ms:.1f} ms/step, every slot {padded_ms:.1f} ms/step: "
      f"{padded_ms / packed_ms:.2f} times as fast")
