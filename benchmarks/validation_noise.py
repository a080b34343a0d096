"""How much a run's recorded validation moves from the draws alone: one checkpoint validated again and again.

    python benchmarks/validation_noise.py [scene=eth] [repeats=8] [checkpoint=checkpoints/eth_ucy/<scene>.ckpt]

Validates the checkpoint (by default the shipped model of the scene's fold) on its fold's validation windows `repeats` times, each with fresh
random draws, and prints the mean and std of val minADE_20 / minFDE_20: the noise under every validation
number, beside the differences pieces are chosen on (the benchmark table's validation section).
"""
import warnings

import lightning as L
import numpy as np
import torch

from bench.options import options
from cvae_traj.data.eth_ucy import EthUcyDataModule
from cvae_traj.forecast import load_model

cfg = options({"scene": "eth", "repeats": 8, "checkpoint": None, "data": "data/eth_ucy"})
scene, repeats = cfg.scene, int(cfg.repeats)
model = load_model(cfg.checkpoint or f"checkpoints/eth_ucy/{scene}.ckpt")
model.hparams.num_eval_importance = 0  # the likelihood bound is not what is measured here
data = EthUcyDataModule(scene=scene, root=cfg.data)
trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
scores = []
for repeat in range(repeats):
    torch.manual_seed(1000 + repeat)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = trainer.validate(model, datamodule=data, verbose=False)[0]
    scores.append((metrics["val/min_ade_20"], metrics["val/min_fde_20"]))
ade, fde = np.array(scores).T
print(f"{scene}: {len(data.windows('val'))} validation windows, {repeats} validations: minADE_20 {ade.mean():.4f} "
      f"± {ade.std():.4f}, minFDE_20 {fde.mean():.4f} ± {fde.std():.4f} (mean ± std over the validations)")
