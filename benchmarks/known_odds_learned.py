"""Learned representatives on the worlds with known odds: do their weights keep the odds as the clusters' do?

    python benchmarks/known_odds_learned.py [variant=default] ['seeds=[0,1,2]'] [steps=4000] [prior_weight=0.001]
        [fresh=false]

For each recorded run of benchmarks/known_odds.py whose checkpoint is at hand: fit 20 learned representatives on
the world's training windows (cvae_traj.representatives, the model frozen), then measure the test split as that
benchmark does (evaluate_odds with the same draws and seed): the TV of the representatives' weights against the
true odds, whether they hold every mode of odds >= 0.1, and their best-of-20 over 5 passes. The clustered
numbers beside them are the run's record. Writes benchmarks/results/known_odds_learned.json and prints a table.
"""
import json
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from bench.options import options
from bench.provenance import git_commit
from cvae_traj.evaluation import evaluate_best_of_k
from cvae_traj.forecast import load_model
from cvae_traj.io import write_json
from cvae_traj.odds import evaluate_odds
from cvae_traj.representatives import fit_representatives

cfg = options({"variant": "default", "seeds": [0, 1, 2], "worlds": ["junction", "junction_skewed", "speed_odds", "stop_go"],
               "steps": 4000, "prior_weight": 1e-3, "passes": 5, "draws": 1000, "representative_draws": 200,
               "runs_dir": "benchmarks/runs/known_odds", "results": "benchmarks/results", "threads": 2, "fresh": False,
               "output": "benchmarks/results/known_odds_learned.json"})
torch.set_num_threads(cfg.threads)
out = Path(cfg.output)
results = json.loads(out.read_text()) if out.is_file() else {}
KEYS = ("min_ade_20", "min_fde_20")
for world in cfg.worlds:
    for seed in cfg.seeds:
        if str(seed) in results.get(cfg.variant, {}).get(world, {}) and not cfg.fresh:
            continue  # recorded already (fresh=true measures it again)
        record_file = Path(cfg.results) / "runs" / "known_odds" / cfg.variant / world / f"seed{seed}.json"
        ckpt = Path(cfg.runs_dir) / cfg.variant / world / f"seed{seed}" / "checkpoints" / "best.ckpt"
        if not (record_file.is_file() and ckpt.is_file()):
            print(f"{world} seed {seed}: no record or checkpoint", flush=True)
            continue
        record = json.loads(record_file.read_text())
        with initialize_config_dir(str(Path("conf").resolve()), version_base="1.3"):
            datamodule = instantiate(compose(config_name="train", overrides=record["overrides"]).data)
        model = load_model(ckpt)
        fit = fit_representatives(model, datamodule.windows("train"), 20, cfg.steps, prior_weight=cfg.prior_weight,
                                  seed=seed)
        odds = evaluate_odds(model, datamodule, "test", draws=cfg.draws, representative_draws=cfg.representative_draws,
                             seed=seed).summary()
        passes = [evaluate_best_of_k(model, datamodule, "test", cluster_from=cfg.representative_draws, seed=p)
                  for p in range(cfg.passes)]
        results.setdefault(cfg.variant, {}).setdefault(world, {})[str(seed)] = {
            "fit": {"steps": fit.steps, "cover": fit.cover, "seconds": fit.seconds, "prior_weight": cfg.prior_weight},
            "learned": {"tv_representatives": odds["tv_representatives"],
                        "coverage_representatives": odds["coverage_representatives"],
                        **{k: [r[k] for r in passes] for k in KEYS}},
            "clustered": {"tv_representatives": record["odds"]["tv_representatives"],
                          "coverage_representatives": record["odds"]["coverage_representatives"],
                          **{k: record["representatives_best_of_20"][k] for k in KEYS}},
            "commit": git_commit(outputs=(str(out.parent),))}
        write_json(results, out)
        r = results[cfg.variant][world][str(seed)]
        print(world, seed, {kind: {k: round(float(np.mean(v)), 4) for k, v in r[kind].items()}
                            for kind in ("learned", "clustered")}, flush=True)

print(f"\n{cfg.variant}: 20 representatives of {cfg.representative_draws} draws, test, mean over seeds\n")
print("| world | seeds | TV of weights: clustered / learned | all likely modes held: clustered / learned | "
      "best-of-20 clustered | best-of-20 learned |\n|---|---|---|---|---|---|")
for world, runs in results.get(cfg.variant, {}).items():
    mean = lambda kind, k: np.mean([np.mean(r[kind][k]) for r in runs.values()])  # noqa: E731
    print(f"| {world} | {sorted(int(s) for s in runs)} | {mean('clustered', 'tv_representatives'):.3f} / "
          f"{mean('learned', 'tv_representatives'):.3f} | {mean('clustered', 'coverage_representatives'):.3f} / "
          f"{mean('learned', 'coverage_representatives'):.3f} | "
          + " | ".join(" / ".join(f"{mean(kind, k):.3f}" for k in KEYS) for kind in ("clustered", "learned")) + " |")
