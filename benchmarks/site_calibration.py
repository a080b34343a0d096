"""Calibrating on the site: how far a few minutes of recorded tracks of the test scene move calibration.

    python benchmarks/site_calibration.py [variant=faithful_speed_clip] ['seeds=[0,1,2]'] [fraction=0.3]
    python benchmarks/site_calibration.py report_only=true     # the table from benchmarks/results/site_calibration.json

Not the benchmark's protocol, and labelled apart from it: each test recording is cut in time. Windows that end
within its first `fraction` of frames are the site's calibration tracks; the model's prior_temperature is fitted
on them (cvae_traj.calibration.fit_prior_temperature), and both models, as trained and calibrated, are scored on
the windows that start after the cut, which share no frame with them. The calibrated naive baseline gets the
same help: its spread factor is chosen on the same calibration windows instead of the fold's validation files.
Calibration error of 500 draws' final positions and KDE NLL of 2000 draws, on at most `eval_windows` of the later
windows (drawn at random, the same for every model). Checkpoints are the benchmark's runs (benchmarks/eth_ucy.py),
found through their records in benchmarks/results/runs/<variant>/. Runs are added to `output`, replacing those
of the same scene and seed, and the table covers every run there.
"""
import json
import time
from pathlib import Path

import numpy as np
import torch

from bench.eth_ucy_runner import recorded_checkpoint
from bench.options import options
from bench.provenance import git_commit, hardware
from cvae_traj.baselines import GaussianConstantVelocity
from cvae_traj.calibration import fit_prior_temperature
from cvae_traj.data.eth_ucy import SCENES, EthUcyDataModule
from cvae_traj.data.windows import Windows, make_windows
from cvae_traj.evaluation import evaluate_samples
from cvae_traj.forecast import load_model
from cvae_traj.io import write_json

cfg = options({"variant": "faithful_speed_clip", "scenes": list(SCENES), "seeds": [0, 1, 2], "fraction": 0.3,
               "fit_windows": 1000, "eval_windows": 5000, "calibration_samples": 500, "kde_samples": 2000,
               "data": "data/eth_ucy", "runs_dir": "benchmarks/runs", "records": "benchmarks/results/runs",
               "output": "benchmarks/results/site_calibration.json", "report_only": False})
torch.set_num_threads(min(2, torch.get_num_threads()))


def split_in_time(data: EthUcyDataModule, obs_len: int, pred_len: int) -> tuple[Windows, Windows]:
    """The test recordings' windows that end by the cut (calibration) and that start after it (evaluation)."""
    before, after = [], []
    for table in data.load_split("test"):
        windows = make_windows(table, obs_len, pred_len)
        cut = table.step.min() + cfg.fraction * (table.step.max() - table.step.min())
        first = windows.last_step - obs_len + 1
        last = windows.last_step + pred_len
        before.append(windows.subset(np.flatnonzero(last <= cut)))
        after.append(windows.subset(np.flatnonzero(first > cut)))
    return Windows.concatenate(before), Windows.concatenate(after)


def scores(sampler, windows, rows: np.ndarray, seed: int) -> dict:
    s = evaluate_samples(sampler, windows.subset(rows), kde_samples=cfg.kde_samples,
                         calibration_samples=cfg.calibration_samples, seed=seed)
    return {k: s[k] for k in ("calibration_error", "kde_nll", "coverage_50", "coverage_90")}


results = {"runs": []}
if Path(cfg.output).is_file():
    results = json.loads(Path(cfg.output).read_text())
for scene in [] if cfg.report_only else cfg.scenes:
    data = EthUcyDataModule(scene=scene, root=cfg.data)
    fit_part, eval_part = split_in_time(data, 8, 12)
    rows = np.sort(np.random.default_rng(0).permutation(len(eval_part))[:cfg.eval_windows])
    naive = GaussianConstantVelocity.fit(data.windows("train"), data.windows("val"))
    naive_site = GaussianConstantVelocity.fit(data.windows("train"), fit_part)
    naive_scores = {"as_fitted": scores(naive, eval_part, rows, 0), "site": scores(naive_site, eval_part, rows, 0),
                    "factor": naive.factor, "site_factor": naive_site.factor}
    for seed in cfg.seeds:
        ckpt = recorded_checkpoint(cfg, cfg.variant, scene, seed)
        model = load_model(ckpt)
        start = time.perf_counter()
        fit = fit_prior_temperature(model, fit_part, samples=cfg.calibration_samples, max_windows=cfg.fit_windows,
                                    seed=seed)
        as_trained = scores(model, eval_part, rows, seed)
        model.cvae.prior_temperature = fit.temperature
        calibrated = scores(model, eval_part, rows, seed)
        run = {"scene": scene, "seed": seed, "variant": cfg.variant, "checkpoint": str(ckpt), "commit": git_commit(),
               "hardware": hardware(1), "fraction": cfg.fraction, "fit_windows": len(fit_part),
               "eval_windows": len(rows), "eval_windows_all": len(eval_part), "temperature": fit.temperature,
               "fit_errors": fit.errors, "as_trained": as_trained, "calibrated": calibrated, "naive": naive_scores,
               "seconds": round(time.perf_counter() - start, 1)}
        results["runs"] = [r for r in results["runs"] if (r["scene"], r["seed"]) != (scene, seed)] + [run]
        print(f"{scene} seed {seed}: {len(fit_part)} calibration windows, {len(rows)} scored; prior_temperature "
              f"{fit.temperature:.2f}; calibration error {as_trained['calibration_error']:.3f} -> "
              f"{calibrated['calibration_error']:.3f}, KDE NLL {as_trained['kde_nll']:.2f} -> "
              f"{calibrated['kde_nll']:.2f}; naive {naive_scores['as_fitted']['calibration_error']:.3f} -> "
              f"{naive_scores['site']['calibration_error']:.3f} ({run['seconds']} s)", flush=True)

print("\n| scene | calibration windows | scored | prior_temperature | calibration error as trained -> site-calibrated "
      "| KDE NLL | naive calibration error as fitted -> site-calibrated |\n|---|---|---|---|---|---|---|")
for scene in cfg.scenes:
    runs = sorted((r for r in results["runs"] if r["scene"] == scene), key=lambda r: r["seed"])
    if not runs:
        continue
    mean = lambda key, part: np.mean([r[part][key] for r in runs])  # noqa: E731
    temps = ", ".join(f"{r['temperature']:.2f}" for r in runs) + f" (seeds {', '.join(str(r['seed']) for r in runs)})"
    naive = runs[0]["naive"]
    print(f"| {scene} | {runs[0]['fit_windows']} | {runs[0]['eval_windows']} | {temps} | "
          f"{mean('calibration_error', 'as_trained'):.3f} -> {mean('calibration_error', 'calibrated'):.3f} | "
          f"{mean('kde_nll', 'as_trained'):.2f} -> {mean('kde_nll', 'calibrated'):.2f} | "
          f"{naive['as_fitted']['calibration_error']:.3f} -> {naive['site']['calibration_error']:.3f} |")
if not cfg.report_only:
    write_json(results, cfg.output)
