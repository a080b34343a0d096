"""Calibrating while forecasting: a model that widens or narrows its draws from its own completed forecasts.

    python benchmarks/online_calibration.py stage=screen      # unseen-scene validation: which rate
    python benchmarks/online_calibration.py stage=test rate=R # ETH/UCY test, the benchmark's runs of `variant`
    python benchmarks/online_calibration.py report_only=true  # the tables, from benchmarks/results/

cvae_traj.calibration.OnlineTemperature replays each recording in time: every window is forecast at its last
observed step with the spread factor of that moment, and its truth's highest-density level is handed to the
factor 12 steps later, once its future has happened. Nothing later than the forecast's own step reaches it, so the
inputs stay causal; what it adds to the benchmark's protocol is that a forecaster learns from the scene it is
deployed in as it goes, which a live forecaster can do and a frozen model cannot. Its rows are labelled apart.

stage=screen chooses `rate` on the unseen-scene screens of benchmarks/scene_shift.py (each fold's model on a scene
it never trained or validated on; the test scene never read), by the rule in `rule` below, written before any
screen ran. rate 0 is the model as trained, scored on the same draws. stage=test scores the benchmark's runs of
`variant` (benchmarks/results/runs/<variant>/), as trained and online at the chosen rate, and the calibrated naive
baseline as fitted and online at the same rate, on every test window: calibration of 500 draws' final positions,
KDE NLL of 2000, best of 20 over 5 disjoint sets of the same draws.
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench.eth_ucy_runner import checkpoint_of
from bench.options import options
from bench.provenance import git_commit, hardware
from cvae_traj.baselines import GaussianConstantVelocity
from cvae_traj.calibration import OnlineTemperature, evaluate_online
from cvae_traj.data.eth_ucy import SCENES, EthUcyDataModule
from cvae_traj.data.windows import make_windows
from cvae_traj.forecast import load_model
from cvae_traj.io import write_json

cfg = options({
    "stage": "screen", "rate": None, "rates": [0, 0.025, 0.05, 0.1, 0.2, 0.4],
    # The unseen-scene screens: (fold, unseen scene, the variant its screens were trained as), seeds 0-2 each.
    "screens": [["zara1", "eth", "speed_clip_weights"], ["zara1", "univ", "speed_clip_weights"],
                ["zara2", "eth", "speed_clip"], ["hotel", "eth", "faithful_weights"],
                ["eth", "hotel", "speed_clip_weights"], ["univ", "hotel", "faithful_weights"]],
    # Written before any screen ran: the rate of the lowest calibration error averaged over the screens (each the
    # mean of its seeds), among the rates whose KDE NLL is at most `kde_margin` above rate 0's on every screen.
    "rule": {"kde_margin": 0.1},
    "variant": "faithful_weights", "scenes": list(SCENES), "seeds": [0, 1, 2],
    # Screens on a scene with more windows forecast a random share of them, in time order, so that each screen
    # takes minutes: the factor then learns from those forecasts only.
    "screen_windows": 3000, "kde_samples": 2000, "calibration_samples": 500, "passes": 5,
    "data": "data/eth_ucy", "runs_dir": "benchmarks/runs", "records": "benchmarks/results/runs",
    "screen_runs": "benchmarks/runs/scene_shift", "output": "benchmarks/results/online_calibration.json",
    "report_only": False})
torch.set_num_threads(min(2, torch.get_num_threads()))
KEYS = ("calibration_error", "kde_nll", "min_ade_20", "min_fde_20", "min_ade_20_std", "min_fde_20_std", "coverage_50",
        "coverage_90", "temperature", "final_temperature", "windows")


def recordings(data: EthUcyDataModule, split: str, keep: int | None, seed: int) -> list:
    """The split's windows, one Windows per recording; with `keep`, a random share of them summing to about keep."""
    parts = [make_windows(t, 8, 12) for t in data.load_split(split)]
    total = sum(len(p) for p in parts)
    if keep is None or total <= keep:
        return parts
    rng = np.random.default_rng(seed)
    return [p.subset(np.sort(rng.permutation(len(p))[:round(len(p) * keep / total)])) for p in parts]


def scored(sampler_at, parts, rate: float, seed: int) -> dict:
    start = time.perf_counter()
    s = evaluate_online(sampler_at, parts, OnlineTemperature(rate), kde_samples=cfg.kde_samples,
                        calibration_samples=cfg.calibration_samples, passes=cfg.passes, seed=seed)
    return {**{k: s[k] for k in KEYS}, "seconds": round(time.perf_counter() - start, 1)}


def model_scored(model, parts, rate: float, seed: int) -> dict:
    """scored for a model, its prior_temperature times each factor, and given back as trained afterwards (a run
    that started where the last one ended would start from that run's factor)."""
    base = model.cvae.prior_temperature

    def at(factor: float):
        model.cvae.prior_temperature = base * factor
        return model
    try:
        return scored(at, parts, rate, seed)
    finally:
        model.cvae.prior_temperature = base


def put(results: dict, part: str, run: dict, key: tuple) -> None:
    results[part] = [r for r in results.get(part, []) if tuple(r[k] for k in ("scene", "seed", "rate", "model",
                                                                              "fold")) != key] + [run]


results = json.loads(Path(cfg.output).read_text()) if Path(cfg.output).is_file() else {}
if not cfg.report_only and cfg.stage == "screen":
    for fold, scene, variant in cfg.screens:
        data = EthUcyDataModule(scene=fold, root=cfg.data, val_scene=scene)
        for seed in cfg.seeds:
            ckpt = Path(cfg.screen_runs) / variant / f"{fold}_val_{scene}" / f"seed{seed}" / "checkpoints" / "best.ckpt"
            if not ckpt.is_file():
                sys.exit(f"{ckpt}: missing; train it with benchmarks/scene_shift.py")
            model, parts = load_model(ckpt), recordings(data, "val", cfg.screen_windows, seed)
            for rate in cfg.rates:
                run = {"fold": fold, "scene": scene, "model": variant, "seed": seed, "rate": rate,
                       "checkpoint": str(ckpt), "commit": git_commit(), "hardware": hardware(1),
                       **model_scored(model, parts, rate, seed)}
                put(results, "screen", run, (scene, seed, rate, variant, fold))
                print(f"{fold} fold on {scene}, {variant} seed {seed}, rate {rate}: calibration "
                      f"{run['calibration_error']:.3f}, KDE NLL {run['kde_nll']:.2f}, minADE/FDE "
                      f"{run['min_ade_20']:.3f} / {run['min_fde_20']:.3f}, mean factor {run['temperature']:.2f} "
                      f"({run['seconds']} s)", flush=True)
                write_json(results, cfg.output)
elif not cfg.report_only:
    if cfg.rate is None:
        sys.exit("stage=test needs rate=<the rate the screen chose>")
    for scene in cfg.scenes:
        data = EthUcyDataModule(scene=scene, root=cfg.data)
        parts = recordings(data, "test", None, 0)
        naive = GaussianConstantVelocity.fit(data.windows("train"), data.windows("val"))
        for rate in (0, cfg.rate):
            run = {"fold": scene, "scene": scene, "model": "naive", "seed": 0, "rate": rate, "commit": git_commit(),
                   "hardware": hardware(1),
                   **scored(lambda f: naive.with_factor(naive.factor * f), parts, rate, 0)}
            put(results, "test", run, (scene, 0, rate, "naive", scene))
        for seed in cfg.seeds:
            record_path = Path(cfg.records) / cfg.variant / scene / f"seed{seed}.json"
            ckpt = checkpoint_of(cfg, json.loads(record_path.read_text()), cfg.variant, scene, seed)
            if ckpt is None:
                sys.exit(f"{record_path}: its checkpoint is gone")
            model = load_model(ckpt)
            for rate in (0, cfg.rate):
                run = {"fold": scene, "scene": scene, "model": cfg.variant, "seed": seed, "rate": rate,
                       "checkpoint": str(ckpt), "commit": git_commit(), "hardware": hardware(1),
                       **model_scored(model, parts, rate, seed)}
                put(results, "test", run, (scene, seed, rate, cfg.variant, scene))
                print(f"{scene} {cfg.variant} seed {seed}, rate {rate}: calibration {run['calibration_error']:.3f}, "
                      f"KDE NLL {run['kde_nll']:.2f}, minADE/FDE {run['min_ade_20']:.3f} / {run['min_fde_20']:.3f}, "
                      f"mean factor {run['temperature']:.2f} ({run['seconds']} s)", flush=True)
                write_json(results, cfg.output)


def mean(runs: list, key: str) -> float:
    return float(np.mean([r[key] for r in runs]))


screens = results.get("screen", [])
if screens:
    rates = sorted({r["rate"] for r in screens})
    groups = sorted({(r["fold"], r["scene"], r["model"]) for r in screens})
    cell = {(g, rate): [r for r in screens if (r["fold"], r["scene"], r["model"]) == g and r["rate"] == rate]
            for g in groups for rate in rates}
    print("\nUnseen-scene screens: calibration error / KDE NLL / minADE_20 (mean over seeds)\n")
    print("| fold, on scene | model | seeds | " + " | ".join(f"rate {r}" for r in rates) + " |")
    print("|---|---|---|" + "---|" * len(rates))
    for g in groups:
        cells = [f"{mean(c, 'calibration_error'):.3f} / {mean(c, 'kde_nll'):.2f} / {mean(c, 'min_ade_20'):.3f}"
                 if (c := cell[(g, rate)]) else "" for rate in rates]
        print(f"| {g[0]}, on {g[1]} | {g[2]} | {len(cell[(g, rates[0])])} | " + " | ".join(cells) + " |")
    complete = [rate for rate in rates if all(cell[(g, rate)] for g in groups)]
    if 0 in complete:
        allowed = [rate for rate in complete if rate and all(
            mean(cell[(g, rate)], "kde_nll") <= mean(cell[(g, 0)], "kde_nll") + cfg.rule.kde_margin for g in groups)]
        average = {rate: np.mean([mean(cell[(g, rate)], "calibration_error") for g in groups]) for rate in complete}
        print("\nAverage calibration error: " + ", ".join(f"rate {r} {average[r]:.3f}" for r in complete))
        choice = min(allowed, key=average.get) if allowed else None
        print(f"Rule (KDE NLL at most {cfg.rule.kde_margin} above rate 0's on every screen): "
              + (f"rate {choice}" if choice is not None and average[choice] < average[0] else "no online calibration"))
tests = results.get("test", [])
if tests:
    print("\nTest, every window: calibration error / KDE NLL / minADE_20 / minFDE_20 (models: mean over seeds; "
          "best of 20 over 5 passes); mean factor\n")
    print("| scene | model | rate | seeds | calibration error | KDE NLL | minADE_20 / minFDE_20 | factor |")
    print("|---|---|---|---|---|---|---|---|")
    for scene in SCENES:
        for name in sorted({r["model"] for r in tests if r["scene"] == scene}):
            for rate in sorted({r["rate"] for r in tests if r["scene"] == scene and r["model"] == name}):
                runs = [r for r in tests if (r["scene"], r["model"], r["rate"]) == (scene, name, rate)]
                spread = np.std([r["calibration_error"] for r in runs])
                print(f"| {scene} | {name} | {rate} | {len(runs)} | {mean(runs, 'calibration_error'):.3f} ± "
                      f"{spread:.3f} | {mean(runs, 'kde_nll'):.2f} | {mean(runs, 'min_ade_20'):.3f} / "
                      f"{mean(runs, 'min_fde_20'):.3f} | {mean(runs, 'temperature'):.2f} |")
