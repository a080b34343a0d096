"""Best-of-20 by history length for checkpoints outside the benchmark's records (the shipped ones by default).

    python benchmarks/history_length.py [checkpoints=checkpoints/eth_ucy/{scene}.ckpt] [label=shipped]
        [lengths=[2,4,8]] [passes=5] [any_length=true] [newcomer=checkpoints/eth_ucy_short/{scene}.ckpt]

For each ETH/UCY fold: the checkpoint's faithful best-of-20 on the fold's test windows with every past cut to its
last h steps (5 sampling passes), beside constant velocity on the same windows, as bench.eth_ucy_runner's
`history` record. any_length=true also scores a model trained on whole histories on shorter ones (its pasts
filled in at their mean velocity, as a model trained with min_history does): what training on short pasts adds.
With newcomer=..., the pair that `predict.py newcomer_ckpt_path=` forecasts with (forecast.NewcomerRouter): whole
pasts from the checkpoint, shorter ones from the newcomer one.
Writes benchmarks/results/history_length.json (keyed by label and scene) and prints a table. Run it alone.
"""
import json
from pathlib import Path

import numpy as np

from hydra import compose, initialize_config_dir

from bench.eth_ucy_runner import history_on_test
from bench.options import options
from bench.provenance import git_commit
from cvae_traj.data.eth_ucy import SCENES
from cvae_traj.io import write_json

cfg = options({"checkpoints": "checkpoints/eth_ucy/{scene}.ckpt", "label": "shipped", "lengths": [2, 4, 8],
               "passes": 5, "any_length": False, "newcomer": None, "data_dir": "data", "output": "benchmarks/results/history_length.json",
               "scenes": list(SCENES)})
out = Path(cfg.output)
results = json.loads(out.read_text()) if out.is_file() else {}
mine = results.setdefault(cfg.label, {})
for scene in cfg.scenes:
    ckpt = Path(cfg.checkpoints.format(scene=scene))
    with initialize_config_dir(str(Path("conf").resolve()), version_base="1.3"):
        fold = compose(config_name="train", overrides=["experiment=eth_ucy", f"data.scene={scene}",
                                                       f"paths.data_dir={cfg.data_dir}"])
    newcomer = None if cfg.newcomer is None else Path(cfg.newcomer.format(scene=scene))
    record = history_on_test(fold, ckpt, cfg.passes, list(cfg.lengths), any_length=cfg.any_length, newcomer=newcomer)
    mine[scene] = record | {"checkpoint": str(ckpt), "commit": git_commit(outputs=(str(out.parent),))} | (
        {} if newcomer is None else {"newcomer": str(newcomer)})
    print(scene, {h: [round(float(np.mean(v[k])), 3) for k in ("min_ade_20", "min_fde_20")]
                  for h, v in record.items()}, flush=True)
    write_json(results, out)

print(f"\n{cfg.label}: minADE_20 / minFDE_20 by history length (test, mean of {cfg.passes} passes)\n")
lengths = [str(h) for h in cfg.lengths]
print("| scene | " + " | ".join(f"{h} steps" for h in lengths) + " | CV |\n|---|" + "---|" * (len(lengths) + 1))
for scene, record in mine.items():
    cells = [" / ".join(f"{np.mean(record[h][k]):.3f}" for k in ("min_ade_20", "min_fde_20")) if h in record else "-"
             for h in lengths + ["cv"]]
    print(f"| {scene} | " + " | ".join(cells) + " |")
