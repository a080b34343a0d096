"""Where best-of-20 loses: 20 futures from the prior path z ~ p(z|x) against 20 from the recognition net z ~ q(z|x,y).

    python benchmarks/latent_gap.py [scene=eth] [batches=40] [checkpoint=checkpoints/eth_ucy/<scene>.ckpt]
    # validation windows of that scene's fold

q has seen the future, so its best-of-20 is what the decoder can draw when z is right; the prior path is what
the protocol scores. A small gap would leave the prior to improve; a large one says the future is uncertain
given the past, whatever the prior's shape. Validation windows only (never the test split); seeded, so a
rerun prints the same numbers. With a mixture prior (model.prior_components) it also prints the components'
mean weights and the mean of each agent's largest weight: how many components are used, and how many per agent.
"""
import torch

from bench.options import options
from cvae_traj.data.eth_ucy import EthUcyDataModule
from cvae_traj.forecast import load_model
from cvae_traj.metrics import min_ade, min_fde
from cvae_traj.models.latent import prior_draw

cfg = options({"scene": "eth", "batches": 40, "checkpoint": None, "data": "data/eth_ucy"})
scene, batches, k = cfg.scene, int(cfg.batches), 20
model = load_model(cfg.checkpoint or f"checkpoints/eth_ucy/{scene}.ckpt")
data = EthUcyDataModule(scene=scene, root=cfg.data, batch_size=256)
data.setup("validate")
torch.manual_seed(0)
sums, windows, weights = {"prior": [0.0, 0.0], "posterior": [0.0, 0.0]}, 0, []
with torch.no_grad():
    for _, batch in zip(range(batches), data.val_dataloader()):
        frame, _, scale = model.cvae.agent_frame(batch)  # rotated: errors in metres as in the world frame
        metres = 1.0 if scale is None else scale  # lengths in units of observed speed with speed_frame
        context = model.cvae.encode(frame)
        prior = model.cvae.prior_net(context)
        if hasattr(prior, "mixture_distribution"):
            weights.append(prior.mixture_distribution.probs)
        latents = {"prior": prior_draw(prior, torch.randn(k, len(batch), model.noise_dim)),
                   "posterior": model.cvae.recognition_net(context, frame.past, frame.future).sample((k,))}
        for name, z in latents.items():
            futures = model.cvae.decode(context, z, frame.past[:, -1]).from_noise(torch.randn(k, *frame.future.shape))
            sums[name][0] += (min_ade(futures.transpose(0, 1), frame.future) * metres).sum().item()
            sums[name][1] += (min_fde(futures.transpose(0, 1), frame.future) * metres).sum().item()
        windows += len(batch)
print(f"{scene} fold, {windows} validation windows, best of {k} (minADE / minFDE, metres): "
      + "; ".join(f"z ~ {'p(z|x)' if name == 'prior' else 'q(z|x,y)'} {ade / windows:.4f} / {fde / windows:.4f}"
                  for name, (ade, fde) in sums.items()))
if weights:
    w = torch.cat(weights)
    print(f"mixture prior: mean weights {', '.join(f'{x:.3f}' for x in w.mean(0).tolist())}; "
          f"each agent's largest weight {w.max(-1).values.mean():.3f} on average")
