"""How many draws final-position clustering should start from: best-of-20 on the validation windows of each
fold, for the shipped checkpoints, from 20 independent draws and from M draws clustered into 20.

    python benchmarks/clustering.py [split=val] ['cluster_from=[40,100,200,400]'] \
        [checkpoint=checkpoints/eth_ucy/{scene}.ckpt]

Prints per fold and on average minADE_20 / minFDE_20 and the sampling time per agent of each setting. The
benchmark's `clustered.cluster_from` was chosen with it on validation; the test split is the benchmark's.
`checkpoint` names each fold's model, with {scene} standing for the fold.
"""
import numpy as np
import torch

from cvae_traj.data.eth_ucy import SCENES, EthUcyDataModule
from cvae_traj.evaluation import evaluate_best_of_k
from bench.options import options
from cvae_traj.forecast import load_model

cfg = options({"split": "val", "cluster_from": [40, 100, 200, 400], "checkpoint": "checkpoints/eth_ucy/{scene}.ckpt",
               "data": "data/eth_ucy"})
split = cfg.split
settings = [None] + [int(m) for m in cfg.cluster_from]
table = {m: [] for m in settings}
for scene in SCENES:
    model = load_model(cfg.checkpoint.format(scene=scene))
    data = EthUcyDataModule(scene=scene, root=cfg.data)
    cells = []
    for m in settings:
        r = evaluate_best_of_k(model, data, split, cluster_from=m, seed=0)
        table[m].append((r["min_ade_20"], r["min_fde_20"], 1000 * r["sampling_seconds"] / r["windows"]))
        cells.append(f"{m or 20} draws {r['min_ade_20']:.4f} / {r['min_fde_20']:.4f} "
                     f"({table[m][-1][2]:.2f} ms/agent)")
    print(f"{scene} ({split}, {r['windows']} windows): " + " | ".join(cells), flush=True)
print(f"average over folds ({torch.get_num_threads()} threads): " + " | ".join(
    f"{m or 20} draws {np.mean([c[0] for c in table[m]]):.4f} / {np.mean([c[1] for c in table[m]]):.4f} "
    f"({np.mean([c[2] for c in table[m]]):.2f} ms/agent)" for m in settings))
