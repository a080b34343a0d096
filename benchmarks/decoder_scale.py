"""How much noise the decoder puts on each step: its per-step std at z = the prior mean, for slow and other agents.

    python benchmarks/decoder_scale.py [scene=hotel] [batches=22] [checkpoint=checkpoints/eth_ucy/<scene>.ckpt]
    # validation windows of that scene's fold

Prints the mean std (metres), the share of per-step stds within 0.001 m of the floor (model.decoder_min_scale),
and the mean std of agents whose last observed step is under 0.1 m (slow) and of the others.
"""
import torch

from bench.options import options
from cvae_traj.data.eth_ucy import EthUcyDataModule
from cvae_traj.forecast import load_model

cfg = options({"scene": "hotel", "batches": 22, "checkpoint": None, "data": "data/eth_ucy"})
scene, batches = cfg.scene, int(cfg.batches)
model = load_model(cfg.checkpoint or f"checkpoints/eth_ucy/{scene}.ckpt")
data = EthUcyDataModule(scene=scene, root=cfg.data)
data.setup("validate")
scales, step = [], []
with torch.no_grad():
    for _, batch in zip(range(batches), data.val_dataloader()):
        frame, _, _ = model.cvae.agent_frame(batch)
        context = model.cvae.encode(frame)
        scales.append(model.cvae.generation_net(context, model.cvae.prior_net(context).mean, frame.past[:, -1]).scale)
        step.append((batch.past[:, -1] - batch.past[:, -2]).norm(dim=-1))
scale, slow = torch.cat(scales), torch.cat(step) < 0.1
floor = model.hparams.decoder_min_scale
print(f"{scene}: {len(scale)} validation windows, mean std {scale.mean():.4f} m, "
      f"{(scale < floor + 0.001).float().mean():.0%} of per-step stds within 0.001 m of the {floor} floor; "
      f"slow agents ({slow.float().mean():.0%}) {scale[slow].mean():.4f} m, others {scale[~slow].mean():.4f} m")
