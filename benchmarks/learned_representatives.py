"""Learned representatives against clustered ones, on the benchmark's recorded runs (issue 26, item 2).

    python benchmarks/learned_representatives.py [variant=faithful_speed_clip] ['seeds=[0,1,2]'] \
        ['scenes=[eth,hotel,univ,zara1,zara2]'] [steps=4000] [prior_weight=0.001] [passes=5] [val_windows=1500] \
        [fresh=false]

For each run (variant, fold, seed) whose selected checkpoint is at hand: fit 20 learned representatives on the
fold's training windows (cvae_traj.representatives; the model itself frozen), write them beside the checkpoint
as represented.ckpt, then score best-of-20 on up to `val_windows` validation windows, clustered (20 of 200
draws) and learned, and on the test split, learned, over `passes` sampling passes (the learned futures do not
depend on the noise; their weights, from 200 draws, do). The choice between the two is made on validation
before the test numbers are read (the rule: learned, if better in both minADE and minFDE averaged over the
folds). The clustered test numbers are the run's recorded `passes`. Runs already in the output are skipped
unless fresh=true. Writes
benchmarks/results/learned_representatives.json and prints a table. Run it alone.
"""
import json
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from bench.eth_ucy_report import run_record_path
from bench.eth_ucy_runner import checkpoint_of
from bench.options import options
from bench.provenance import git_commit
from cvae_traj.evaluation import evaluate_best_of_k
from cvae_traj.forecast import load_model
from cvae_traj.io import write_json
from cvae_traj.representatives import fit_representatives, write_represented_checkpoint

cfg = options({"variant": "faithful_speed_clip", "seeds": [0, 1, 2], "scenes": ["eth", "hotel", "univ", "zara1", "zara2"],
               "steps": 4000, "prior_weight": 1e-3, "passes": 5, "val_windows": 1500, "cluster_from": 200,
               "runs_dir": "benchmarks/runs", "results": "benchmarks/results", "threads": 2, "fresh": False,
               "output": "benchmarks/results/learned_representatives.json"})
torch.set_num_threads(cfg.threads)
out = Path(cfg.output)
results = json.loads(out.read_text()) if out.is_file() else {}
KEYS = ("min_ade_20", "min_fde_20")


class Subset:
    """A datamodule stand-in whose validation split is a fixed random subset (the same for both kinds)."""

    def __init__(self, datamodule, n: int) -> None:
        windows = datamodule.windows("val")
        self.val = windows.subset(np.sort(np.random.default_rng(0).permutation(len(windows))[:n]))

    def windows(self, split):
        return self.val


for seed in cfg.seeds:
    for scene in cfg.scenes:
        if str(seed) in results.get(cfg.variant, {}).get(scene, {}) and not cfg.fresh:
            continue  # recorded already (fresh=true fits and measures it again)
        record = json.loads(run_record_path(Path(cfg.results), cfg.variant, scene, seed).read_text())
        ckpt = checkpoint_of(cfg, record, cfg.variant, scene, seed)
        if ckpt is None:
            print(f"{scene} seed {seed}: no checkpoint at hand", flush=True)
            continue
        with initialize_config_dir(str(Path("conf").resolve()), version_base="1.3"):
            # Only the data matters here (and some model options of old records are retired).
            data = [o for o in record["overrides"] if o.split("=")[0] in ("experiment", "seed")
                    or o.startswith(("data.", "paths."))]
            datamodule = instantiate(compose(config_name="train", overrides=data).data)
        model = load_model(ckpt)
        val = Subset(datamodule, cfg.val_windows)
        clustered_val = evaluate_best_of_k(model, val, "val", cluster_from=cfg.cluster_from, seed=0)
        fit = fit_representatives(model, datamodule.windows("train"), 20, cfg.steps, prior_weight=cfg.prior_weight,
                                  seed=seed)
        represented = ckpt.parent / "represented.ckpt"
        write_represented_checkpoint(ckpt, model, represented)
        model = load_model(represented)  # scored as a user loads it
        learned_val = evaluate_best_of_k(model, val, "val", cluster_from=cfg.cluster_from, seed=0)
        runs = [evaluate_best_of_k(model, datamodule, "test", cluster_from=cfg.cluster_from, seed=p)
                for p in range(cfg.passes)]
        results.setdefault(cfg.variant, {}).setdefault(scene, {})[str(seed)] = {
            "checkpoint": str(represented), "fit": {"steps": fit.steps, "cover": fit.cover, "seconds": fit.seconds,
                                                    "prior_weight": cfg.prior_weight},
            "val": {"windows": clustered_val["windows"], "clustered": {k: clustered_val[k] for k in KEYS},
                    "learned": {k: learned_val[k] for k in KEYS}},
            "test": {"learned": {k: [r[k] for r in runs] for k in KEYS},
                     "clustered": {k: record["passes"]["representatives"][k] for k in KEYS},
                     "seconds_per_agent": float(np.mean([r["sampling_seconds"] / r["windows"] for r in runs]))},
            "commit": git_commit(outputs=(str(out.parent),))}
        write_json(results, out)
        r = results[cfg.variant][scene][str(seed)]
        print(f"{scene} seed {seed}: fit {fit.seconds:.0f} s; val clustered "
              + " / ".join(f"{r['val']['clustered'][k]:.4f}" for k in KEYS) + ", learned "
              + " / ".join(f"{r['val']['learned'][k]:.4f}" for k in KEYS) + "; test learned "
              + " / ".join(f"{np.mean(r['test']['learned'][k]):.3f}" for k in KEYS) + ", clustered "
              + " / ".join(f"{np.mean(r['test']['clustered'][k]):.3f}" for k in KEYS), flush=True)

mine = results.get(cfg.variant, {})
print(f"\n{cfg.variant}: 20 representatives of {cfg.cluster_from} draws, minADE_20 / minFDE_20 (mean over seeds)\n")
print("| scene | seeds | val clustered | val learned | test clustered | test learned |\n|---|---|---|---|---|---|")
cells = {}
for scene, runs in mine.items():
    row = []
    for split, kind in (("val", "clustered"), ("val", "learned"), ("test", "clustered"), ("test", "learned")):
        values = [[np.mean(r[split][kind][k]) for k in KEYS] for r in runs.values()]
        cells.setdefault((split, kind), []).append(np.mean(values, axis=0))
        row.append(" / ".join(f"{v:.3f}" for v in np.mean(values, axis=0)))
    print(f"| {scene} | {sorted(int(s) for s in runs)} | " + " | ".join(row) + " |")
print("| average | | " + " | ".join(" / ".join(f"{v:.3f}" for v in np.mean(cells[c], axis=0)) for c in cells) + " |")
