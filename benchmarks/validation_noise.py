"""How much a run's recorded validation moves from the draws alone: one checkpoint validated again and again.

    python benchmarks/validation_noise.py [scene] [repeats]   # defaults: eth 8 (the shipped model of that fold)

Validates checkpoints/eth_ucy/<scene>.ckpt on its fold's validation windows `repeats` times, each with fresh
random draws, and prints the mean and std of val minADE_20 / minFDE_20: the noise under every validation
number, beside the differences pieces are chosen on (the benchmark table's validation section).
"""
import sys
import warnings

import lightning as L
import numpy as np
import torch

from cvae_traj import TrajectoryCVAE
from cvae_traj.data.eth_ucy import EthUcyDataModule

scene = sys.argv[1] if len(sys.argv) > 1 else "eth"
repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 8
model = TrajectoryCVAE.load_from_checkpoint(f"checkpoints/eth_ucy/{scene}.ckpt", map_location="cpu")
model.hparams.num_eval_importance = 0  # the likelihood bound is not what is measured here
data = EthUcyDataModule(scene=scene, root="data/eth_ucy")
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
