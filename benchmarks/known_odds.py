"""Are the futures right about how likely each is? Train on the built-in worlds with known odds and measure.

    python benchmarks/known_odds.py                                   # the default recipe, every world, 3 seeds
    python benchmarks/known_odds.py 'run_variants=[before,eth_ucy_recipe]' 'seeds=[0]'
    python benchmarks/known_odds.py report_only=true                  # rebuild the table from the records
    python benchmarks/known_odds.py report_only=true decided_fill=true  # add the after-decision share
    python benchmarks/known_odds.py report_only=true representatives_refresh=true  # the run variants' again
    python benchmarks/known_odds.py split=val 'seeds=[100,101]' '+variants.wide=[model.hidden_dim=128]' \
        'run_variants=[wide,default]'                                 # screen a change on fresh worlds' validation

Each (variant, world, seed) is one train(cfg) of train.py's config with the variant's and the world's
overrides, data.seed = seed (a fresh world per seed, never tuned on one draw), the checkpoint chosen on
validation; then the test split is measured once (`split=val` measures the validation split instead, to
screen a change before any test number is read; its records, runs and table are kept apart): per decision
window, mode frequencies of 1000 faithful draws against the true odds (TV), how often 20 draws hold every
mode of odds >= 0.1, the TV of the weights of 20 representatives of 200 draws, and best-of-20 (mean ± std over 5 sampling passes). A finished run
leaves a record in benchmarks/results/runs/known_odds/, so the command continues where it stopped;
benchmarks/results/known_odds.md is rebuilt from all records.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import hydra
import numpy as np
from hydra import compose
from hydra.utils import instantiate
from omegaconf import DictConfig

from bench.provenance import git_commit, hardware
from cvae_traj.evaluation import evaluate_best_of_k
from cvae_traj.forecast import load_model
from cvae_traj.io import atomic_path, write_json
from cvae_traj.odds import COVERAGE_MIN_ODDS, DISTANCE_BINS, evaluate_odds
from cvae_traj.training import train

log = logging.getLogger("known_odds")
COLUMNS = ("tv", "tv_floor", "tv_pooled", "coverage", "coverage_ideal", "coverage_representatives",
           "tv_representatives", "min_ade_20", "min_fde_20", "rep_min_ade_20", "rep_min_fde_20", "stray")


def records_dir(cfg: DictConfig) -> Path:
    """Where the records of `cfg.split` live: the test split's as ever, the validation screens' apart."""
    return Path(cfg.output_dir) / "runs" / ("known_odds" if cfg.split == "test" else f"known_odds_{cfg.split}")


def record_path(cfg: DictConfig, variant: str, world: str, seed: int) -> Path:
    return records_dir(cfg) / variant / world / f"seed{seed}.json"


def run_dir(cfg: DictConfig, variant: str, world: str, seed: int) -> Path:
    """The run's training output (checkpoints); validation screens' apart from the test runs'."""
    return Path(cfg.runs_dir + ("" if cfg.split == "test" else f"_{cfg.split}")) / variant / world / f"seed{seed}"


def run_one(cfg: DictConfig, variant: str, world: str, seed: int) -> dict:
    out = run_dir(cfg, variant, world, seed)
    overrides = [*cfg.train_overrides, *cfg.variants[variant], *cfg.worlds[world], f"data.seed={seed}",
                 f"seed={seed}", "test=false", f"paths.output_dir={out}"]
    metrics = train(compose(config_name="train", overrides=overrides))
    model = load_model(out / metrics["best_checkpoint"])
    datamodule = instantiate(compose(config_name="train", overrides=overrides).data)
    start = time.perf_counter()
    report = evaluate_odds(model, datamodule, cfg.split, draws=cfg.draws, coverage_draws=cfg.coverage_draws,
                           representatives=cfg.representatives, representative_draws=cfg.representative_draws,
                           seed=seed)
    decided = decided_summary(cfg, model, datamodule, seed)
    passes = [evaluate_best_of_k(model, datamodule, cfg.split, seed=p) for p in range(cfg.passes)]
    reps = [evaluate_best_of_k(model, datamodule, cfg.split, cluster_from=cfg.representative_draws, seed=p)
            for p in range(cfg.passes)]
    return {"variant": variant, "world": world, "seed": seed, "split": cfg.split, "overrides": overrides, "commit": git_commit(),
            "hardware": hardware(1), "train_seconds": metrics["train_seconds"],
            "eval_seconds": round(time.perf_counter() - start, 2), "windows": metrics["windows"],
            "trainable_parameters": metrics["trainable_parameters"], "val": metrics["val"],
            "odds": report.summary(), "decided": decided,
            "by_distance": report.by_distance(),
            "best_of_20": {k: [p[f"{k}"] for p in passes] for k in ("min_ade_20", "min_fde_20")},
            "representatives_best_of_20": {k: [p[k] for p in reps] for k in ("min_ade_20", "min_fde_20")}}


def decided_summary(cfg: DictConfig, model, datamodule, seed: int) -> dict:
    """The split's windows observed `decided_for` steps past the decision: `stray`, the share of faithful draws
    that take another mode than the one the agent already took (its odds are 1)."""
    report = evaluate_odds(model, datamodule, cfg.split, draws=cfg.draws, coverage_draws=cfg.coverage_draws,
                           representatives=cfg.representatives, representative_draws=cfg.representative_draws,
                           seed=seed, decided_for=cfg.decided_for)
    summary = report.summary()
    return {"decided_for": cfg.decided_for, "windows": summary["windows"], "stray": summary["tv"],
            "stray_representatives": summary["tv_representatives"]}


def fill_decided(cfg: DictConfig, path: Path) -> None:
    """Add `decided` to a record made before it existed, from the run's checkpoint if it is still at hand."""
    record = json.loads(path.read_text())
    ckpt = run_dir(cfg, record["variant"], record["world"], record["seed"]) / "checkpoints" / "best.ckpt"
    if "decided" in record or not ckpt.is_file():
        return
    datamodule = instantiate(compose(config_name="train", overrides=record["overrides"]).data)
    record["decided"] = decided_summary(cfg, load_model(ckpt), datamodule, record["seed"])
    record["decided"]["filled_at"] = git_commit()
    log.info("%s / %s / seed %d: stray %.3f after the decision", record["variant"], record["world"],
             record["seed"], record["decided"]["stray"])
    write_json(record, path)


def refresh_representatives(cfg: DictConfig, path: Path) -> None:
    """Measure a record's representatives again from its checkpoint, as today's code makes them (their draws'
    components stratified since the record was made, for one): their coverage, the TV of their weights and
    their best-of-20. The faithful draws' columns stay as recorded."""
    record = json.loads(path.read_text())
    ckpt = run_dir(cfg, record["variant"], record["world"], record["seed"]) / "checkpoints" / "best.ckpt"
    if not ckpt.is_file():
        log.info("no checkpoint left for %s / %s / seed %d: representatives as recorded", record["variant"],
                 record["world"], record["seed"])
        return
    model, datamodule = load_model(ckpt), instantiate(compose(config_name="train", overrides=record["overrides"]).data)
    summary = evaluate_odds(model, datamodule, cfg.split, draws=cfg.draws, coverage_draws=cfg.coverage_draws,
                            representatives=cfg.representatives, representative_draws=cfg.representative_draws,
                            seed=record["seed"]).summary()
    for key in ("coverage_representatives", "tv_representatives"):
        record["odds"][key] = summary[key]
    reps = [evaluate_best_of_k(model, datamodule, cfg.split, cluster_from=cfg.representative_draws, seed=p)
            for p in range(cfg.passes)]
    record["representatives_best_of_20"] = {k: [p[k] for p in reps] for k in ("min_ade_20", "min_fde_20")}
    record["representatives_refreshed_at"] = git_commit()
    log.info("%s / %s / seed %d: representatives' TV %.3f", record["variant"], record["world"], record["seed"],
             summary["tv_representatives"])
    write_json(record, path)


def row(records: list[dict]) -> dict[str, tuple[float, float]]:
    """Mean and std over seeds of each column; best-of-20 columns average each seed's passes first."""
    per_seed = []
    for r in records:
        o = r["odds"]
        per_seed.append({**{k: o[k] for k in COLUMNS[:7]},
                         "min_ade_20": np.mean(r["best_of_20"]["min_ade_20"]),
                         "min_fde_20": np.mean(r["best_of_20"]["min_fde_20"]),
                         "rep_min_ade_20": np.mean(r["representatives_best_of_20"]["min_ade_20"]),
                         "rep_min_fde_20": np.mean(r["representatives_best_of_20"]["min_fde_20"]),
                         "stray": r.get("decided", {}).get("stray", np.nan)})
    return {k: (float(np.mean([s[k] for s in per_seed])), float(np.std([s[k] for s in per_seed])))
            for k in COLUMNS}


def report(cfg: DictConfig) -> str:
    records = [json.loads(p.read_text()) for p in sorted(records_dir(cfg).rglob("*.json"))]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["variant"], r["world"]), []).append(r)
    order = {w: i for i, w in enumerate(cfg.worlds)}
    lines = [
        "# Known-odds worlds: are the futures right about how likely each is?", "",
        f"Generated by `python benchmarks/known_odds.py{'' if cfg.split == 'test' else ' split=' + cfg.split}` "
        f"(PROTOCOL.md). {'Test' if cfg.split == 'test' else 'Validation'} split of each world (generated afresh",
        "per seed), checkpoint chosen on validation. Per decision window (a window whose future a mode decides):",
        f"TV = total variation between the mode shares of {cfg.draws} faithful draws and the true odds, averaged",
        f"over windows (tv floor: what {cfg.draws} draws of the true odds give by chance; pooled: TV of the shares",
        f"averaged over windows); coverage = share of windows whose {cfg.coverage_draws} faithful draws hold every mode",
        f"of odds >= {COVERAGE_MIN_ODDS} (ideal: what perfect draws would give), and the same for"
        f" {cfg.representatives} representatives of {cfg.representative_draws} draws;",
        "rep TV = TV of the representatives' weights summed per mode. Stray: on the windows observed"
        f" {cfg.decided_for} or more",
        "steps past the decision (odds 1 for the mode taken), the share of faithful draws that take another mode",
        f"(-: not measured). Best-of-20 on all {cfg.split} windows, metres, mean",
        f"of {cfg.passes} sampling passes per seed. Mean ± std over training seeds.", "",
        "| variant | world | seeds | TV | TV floor | TV pooled | coverage (ideal) | rep coverage | rep TV | stray "
        "| minADE/FDE_20 faithful | minADE/FDE_20 representatives |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (variant, world), recs in sorted(groups.items(), key=lambda kv: (kv[0][0] != "default", kv[0][0],
                                                                           order.get(kv[0][1], 99))):
        m = row(recs)
        f = lambda k, d=3: f"{m[k][0]:.{d}f} ± {m[k][1]:.{d}f}"  # noqa: E731
        lines.append(f"| {variant} | {world} | {sorted(r['seed'] for r in recs)} | {f('tv')} | {m['tv_floor'][0]:.3f} "
                     f"| {f('tv_pooled')} | {f('coverage', 2)} ({m['coverage_ideal'][0]:.2f}) "
                     f"| {f('coverage_representatives', 2)} | {f('tv_representatives')} "
                     f"| {'-' if np.isnan(m['stray'][0]) else f('stray')} "
                     f"| {m['min_ade_20'][0]:.3f} / {m['min_fde_20'][0]:.3f} "
                     f"| {m['rep_min_ade_20'][0]:.3f} / {m['rep_min_fde_20'][0]:.3f} |")
    lines += ["", "TV by distance from the last observed position to the decision point (default recipe, mean over"
              " seeds):", "", "| world | " + " | ".join(f"{b} m" for b in DISTANCE_BINS) + " |",
              "|---|" + "---|" * len(DISTANCE_BINS)]
    for world in cfg.worlds:
        recs = groups.get(("default", world), [])
        if recs:
            cells = [np.mean([r["by_distance"][b] for r in recs if r["by_distance"].get(b) is not None] or [np.nan])
                     for b in DISTANCE_BINS]
            lines.append(f"| {world} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    seconds = [r["train_seconds"] for r in records]
    h = records[0]["hardware"] if records else {}
    lines += ["", f"Hardware: {h.get('cpu')}, {h.get('cpu_count')} CPUs, torch {h.get('torch')} on "
              f"{h.get('torch_threads')} threads, one run at a time; train {min(seconds, default=0):.0f}-"
              f"{max(seconds, default=0):.0f} s per run; code at {', '.join(sorted({str(r['commit']) for r in records}))}"
              " (+: uncommitted changes beside it)."]
    return "\n".join(lines) + "\n"


@hydra.main(version_base="1.3", config_path="../conf", config_name="known_odds")
def main(cfg: DictConfig) -> None:
    logging.getLogger("lightning").setLevel(logging.WARNING)
    variants = cfg.run_variants or list(cfg.variants)
    worlds = cfg.run_worlds or list(cfg.worlds)
    if not cfg.report_only:
        for variant in variants:
            for world in worlds:
                for seed in cfg.seeds:
                    path = record_path(cfg, variant, world, seed)
                    if path.exists() and not cfg.fresh:
                        continue
                    log.info("training %s / %s / seed %d", variant, world, seed)
                    write_json(run_one(cfg, variant, world, seed), path)
    if cfg.representatives_refresh:
        for variant in variants:
            for path in sorted((records_dir(cfg) / variant).rglob("*.json")):
                refresh_representatives(cfg, path)
    if cfg.decided_fill:
        for path in sorted(records_dir(cfg).rglob("*.json")):
            fill_decided(cfg, path)
    table = report(cfg)
    name = "known_odds.md" if cfg.split == "test" else f"known_odds_{cfg.split}.md"
    with atomic_path(Path(cfg.output_dir) / name) as tmp:
        tmp.write_text(table)
    print(table)


if __name__ == "__main__":
    main()
