"""The ETH/UCY benchmark: train every (variant, scene, seed), test once, and tabulate as PROTOCOL.md asks.

Each run is `train(cfg)` on the project's own train config, so checkpoint choice is on validation only and
the test split is read once per run, at its end. Constant velocity is computed in the same test pass, on
the same windows.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from hydra import compose
from hydra.utils import instantiate
from omegaconf import DictConfig

from bench.eth_ucy_report import collect, markdown_table, reliability_curves, run_record_path
from bench.provenance import git_commit, hardware
from cvae_traj.baselines import GaussianConstantVelocity
from cvae_traj.data.eth_ucy import SCENES
from cvae_traj.data.tracks import read_raw_eth_ucy, validate_tracks
from cvae_traj.ensemble import combine, write_checkpoint
from cvae_traj.errors import CvaeTrajError, InputError
from cvae_traj.evaluation import evaluate_best_of_k, evaluate_likelihood, evaluate_samples
from cvae_traj.forecast import NewcomerRouter, load_model, predict_futures
from cvae_traj.io import atomic_path, write_json
from cvae_traj.metrics import constant_velocity, min_ade, min_fde
from cvae_traj.plotting import plot_reliability, save_figure
from cvae_traj.training import score, train


log = logging.getLogger(__name__)
# How cluster_futures makes a representative, as records made from today's code say it.
REPRESENTATIVE = "cluster_mean"
# What a shipped checkpoint keeps: enough for TrajectoryCVAE.load_from_checkpoint, nothing to resume training.
SHIPPED_KEYS = ("state_dict", "hyper_parameters", "pytorch-lightning_version", "epoch", "global_step")


def run_benchmark(cfg: DictConfig) -> dict:
    """Train and test each (variant, scene, seed) not yet recorded, then tabulate every recorded run.

    Each finished run leaves a small JSON record in `<output_dir>/runs/`, committed with the results, so the
    benchmark can be continued across sessions; `fresh=true` retrains runs that already have a record.
    """
    out_dir = Path(cfg.output_dir)
    jobs = pending_runs(cfg)
    if cfg.workers > 1 and not cfg.report_only:
        run_in_workers(cfg, jobs)
        jobs = []
    for variant, seed, scene in jobs:
        run_dir = Path(cfg.runs_dir) / variant / scene / f"seed{seed}"
        overrides = [*cfg.train_overrides, *variant_overrides(cfg, variant, scene), f"data.scene={scene}",
                     f"seed={seed}", f"paths.output_dir={run_dir}", f"paths.data_dir={cfg.data_dir}"]
        train_cfg = compose(config_name="train", overrides=overrides)
        if variant in ensembles(cfg):
            log.info("combining %s / %s / seed %d", variant, scene, seed)
            metrics = combine_members(cfg, variant, scene, seed, train_cfg, run_dir)
        else:
            log.info("training %s / %s / seed %d", variant, scene, seed)
            metrics = train(train_cfg)
        start = time.perf_counter()
        best = run_dir / metrics["best_checkpoint"]
        metrics["likelihood"] = likelihood_on_test(train_cfg, best, cfg.likelihood, seed)
        metrics["likelihood_seconds"] = round(time.perf_counter() - start, 2)
        if cfg.clustered.cluster_from:
            metrics["clustered"] = clustered_on_test(train_cfg, best, cfg.clustered.cluster_from, seed) | {
                "representative": REPRESENTATIVE}
        metrics["naive"] = naive_on_test(train_cfg, cfg.likelihood, seed)
        if cfg.passes:
            metrics["passes"] = passes_on_test(train_cfg, best, cfg.passes, cfg.clustered.cluster_from)
        if cfg.history_lengths:
            metrics["history"] = history_on_test(train_cfg, best, cfg.passes or 1, cfg.history_lengths)
        if variant == cfg.speed_variant and seed == cfg.ship_seed and cfg.checkpoints_dir:
            ship_checkpoint(best, Path(cfg.checkpoints_dir) / f"{scene}.ckpt")
        commit = git_commit(outputs=(str(cfg.output_dir), str(cfg.checkpoints_dir or cfg.output_dir)))
        write_json({"variant": variant, "scene": scene, "seed": seed, "commit": commit,
                    "hardware": hardware(cfg.runs_at_once), "overrides": overrides, **metrics},
                   run_record_path(out_dir, variant, scene, seed))
    if cfg.clustered.fill:
        fill_clustered(cfg)
    if cfg.clustered.refresh:
        refresh_representatives(cfg)
    if cfg.naive_fill:
        fill_naive(cfg)
    if cfg.passes_fill:
        fill_passes(cfg)
    if not cfg.tabulate:
        return {}
    results = collect(cfg)
    if cfg.speed_variant in cfg.variants and cfg.checkpoints_dir and (Path(cfg.checkpoints_dir) / "univ.ckpt").is_file():
        results["sampling"] = sampling_speed(Path(cfg.checkpoints_dir) / "univ.ckpt", Path(cfg.data_dir) / "eth_ucy",
                                             "univ", cfg.speed_repeats)
    write_json(results, out_dir / "eth_ucy.json")
    with atomic_path(out_dir / "eth_ucy.md") as tmp:
        tmp.write_text(markdown_table(results))
    curves = reliability_curves(results["variants"].get(cfg.speed_variant, {}).get("scenes", {}))
    if curves:
        save_figure(plot_reliability(curves), out_dir / "reliability.png")
    return results


def ensembles(cfg: DictConfig) -> DictConfig:
    """The configured ensemble rows: {variant: {of: the row whose runs are its members, members: how many}}."""
    return cfg.get("ensembles") or {}


def member_seeds(cfg: DictConfig, variant: str, seed: int) -> list[int]:
    """The seeds of the `of` row's runs that ensemble `variant`'s seed `seed` is made of: none shared between
    its seeds, so its spread over seeds is that of independent ensembles."""
    size = ensembles(cfg)[variant].members
    return list(range(seed * size, (seed + 1) * size))


def combine_members(cfg: DictConfig, variant: str, scene: str, seed: int, train_cfg: DictConfig,
                    run_dir: Path) -> dict:
    """An ensemble row's run: its members' selected checkpoints (runs of the `of` row, recorded before; each
    member chosen on validation by its own run) combined into one, written to run_dir, scored as train() scores
    a run. Training time is the members' total."""
    base, out_dir = ensembles(cfg)[variant].of, Path(cfg.output_dir)
    seeds = member_seeds(cfg, variant, seed)
    records = {s: run_record_path(out_dir, base, scene, s) for s in seeds}
    missing = [s for s, r in records.items() if not r.is_file()]
    if missing:
        raise CvaeTrajError(f"{variant} / {scene} / seed {seed} is made of {base}'s runs of seeds {seeds}: run "
                            f"variants=[{base}] scenes=[{scene}] seeds={missing} first")
    members = {s: json.loads(r.read_text()) for s, r in records.items()}
    ckpts = [checkpoint_of(cfg, members[s], base, scene, s) for s in seeds]
    if None in ckpts:
        raise CvaeTrajError(f"{variant} / {scene} / seed {seed}: the checkpoint of {base}'s run of seed "
                            f"{seeds[ckpts.index(None)]} is gone")
    best = run_dir / "checkpoints" / "best.ckpt"
    best.parent.mkdir(parents=True, exist_ok=True)
    write_checkpoint(combine([load_model(c) for c in ckpts]), best, ckpts)
    return score(train_cfg, best) | {"best_checkpoint": "checkpoints/best.ckpt", "members": [str(c) for c in ckpts],
                                     "train_seconds": round(sum(m["train_seconds"] for m in members.values()), 2)}


def variant_overrides(cfg: DictConfig, variant: str, scene: str) -> list[str]:
    """A variant's training overrides on one fold: its `ablations` entry, then its `fold_ablations` entry for
    that fold, if any (a piece chosen per fold on validation, as benchmarks/scene_shift.py does). An ensemble
    row's are those of the row its members come from."""
    if variant in ensembles(cfg):
        return variant_overrides(cfg, ensembles(cfg)[variant].of, scene)
    per_fold = cfg.get("fold_ablations") or {}
    return [*cfg.ablations[variant], *(per_fold.get(variant) or {}).get(scene, [])]


def pending_runs(cfg: DictConfig) -> list[tuple[str, int, str]]:
    """(variant, seed, scene) of the runs to train: those without a record, or all with fresh=true.

    Seed-major order: every scene of the first seed finishes (and ships its model) before the next seed.
    """
    jobs = []
    for variant, seed, scene in itertools.product(cfg.variants, cfg.seeds, cfg.scenes):
        record = run_record_path(Path(cfg.output_dir), variant, scene, seed)
        if record.is_file() and not cfg.fresh:
            log.info("kept %s / %s / seed %d from %s", variant, scene, seed, record)
        elif cfg.report_only:
            log.info("not run yet: %s / %s / seed %d", variant, scene, seed)
        else:
            jobs.append((variant, seed, scene))
    return jobs


# Rough relative cost of a run per fold (training on the other four scenes, then the likelihood pass on the
# fold's test windows), so that the longest runs start first when runs share the CPU.
_FOLD_COST = {"univ": 5, "eth": 4, "hotel": 4, "zara1": 3, "zara2": 3}


def worker_commands(cfg: DictConfig, jobs: list[tuple[str, int, str]]) -> list[list[str]]:
    """One benchmark command per pending run, longest first, each one thread's share of the CPU cores."""
    base = [a for a in cfg.argv if a.split("=", 1)[0].lstrip("+~") not in _WORKER_KEYS]
    ordered = sorted(jobs, key=lambda job: -_FOLD_COST.get(job[2], 0))
    return [[sys.executable, str(cfg.script), *base, f"variants=[{variant}]", f"seeds=[{seed}]", f"scenes=[{scene}]",
             "fresh=true", "tabulate=false", "workers=1", f"runs_at_once={cfg.workers}"]
            for variant, seed, scene in ordered]


_WORKER_KEYS = {"variants", "seeds", "scenes", "fresh", "tabulate", "workers", "runs_at_once", "report_only",
                "clustered.fill", "clustered.refresh", "naive_fill", "passes_fill"}


def run_in_workers(cfg: DictConfig, jobs: list[tuple[str, int, str]]) -> None:
    """Run the pending runs as separate processes, cfg.workers at a time, each with cpu_count // workers torch
    threads: on a small CPU two one-thread runs finish nearly twice as fast as two two-thread runs in turn."""
    if not cfg.script:
        raise CvaeTrajError("workers > 1 starts the benchmark script once per run: set `script` to its path")
    env = os.environ | {var: str(max(1, (os.cpu_count() or 1) // cfg.workers))
                        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    logs = Path(cfg.runs_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    def run(command: list[str]) -> tuple[str, int]:
        name = "_".join(a.split("=", 1)[1].strip("[]") for a in command
                        if a.startswith(("variants=", "scenes=", "seeds=")))
        with open(logs / f"{name}.log", "w") as out:
            log.info("started %s (log: %s)", name, out.name)
            code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
        log.info("finished %s: exit %d", name, code)
        return name, code

    with ThreadPoolExecutor(cfg.workers) as pool:
        failed = [name for name, code in pool.map(run, worker_commands(cfg, jobs)) if code]
    if failed:
        raise CvaeTrajError(f"benchmark runs failed: {', '.join(failed)} (their logs are in {logs})")


def likelihood_on_test(train_cfg: DictConfig, ckpt: Path, settings: DictConfig, seed: int) -> dict:
    """Likelihood and calibration of the selected checkpoint on the run's test windows (evaluate_likelihood)."""
    datamodule = instantiate(train_cfg.data)
    return evaluate_likelihood(load_model(ckpt), datamodule, "test", num_importance=settings.num_importance,
                               kde_samples=settings.kde_samples, calibration_samples=settings.calibration_samples,
                               calibration_levels=tuple(settings.calibration_levels), seed=seed)


def naive_on_test(train_cfg: DictConfig, settings: DictConfig, seed: int) -> dict:
    """The calibrated naive baseline (baselines.GaussianConstantVelocity: spread fitted on the fold's training
    windows, scaled on its validation windows) scored on the run's test windows as the model's draws are."""
    datamodule = instantiate(train_cfg.data)
    baseline = GaussianConstantVelocity.fit(datamodule.windows("train"), datamodule.windows("val"))
    metrics = evaluate_samples(baseline, datamodule.windows("test"), kde_samples=settings.kde_samples,
                               calibration_samples=settings.calibration_samples,
                               calibration_levels=tuple(settings.calibration_levels), seed=seed)
    return metrics | {"sigma": baseline.sigma.tolist(), "factor": baseline.factor}


def passes_on_test(train_cfg: DictConfig, ckpt: Path, passes: int, cluster_from: int | None,
                   kinds: tuple[str, ...] = ("faithful", "representatives")) -> dict:
    """Best-of-20 on the run's test windows over `passes` sampling passes (seeds 0 .. passes - 1), of faithful
    draws and of representatives of `cluster_from` draws: best-of-K is itself random (PROTOCOL.md)."""
    model, datamodule = load_model(ckpt), instantiate(train_cfg.data)
    out = {}
    for kind, m in (("faithful", None), ("representatives", cluster_from)):
        if kind not in kinds or (kind == "representatives" and not m):
            continue
        runs = [evaluate_best_of_k(model, datamodule, "test", cluster_from=m, seed=p) for p in range(passes)]
        out[kind] = {k: [r[k] for r in runs] for k in ("min_ade_20", "min_fde_20")} | {"cluster_from": m}
        if kind == "representatives":
            out[kind]["representative"] = REPRESENTATIVE
    return out


def history_on_test(train_cfg: DictConfig, ckpt: Path, passes: int, lengths: list[int],
                    any_length: bool = False, newcomer: Path | None = None) -> dict:
    """Best-of-20 faithful draws on the run's test windows with every past cut to its last h steps, for each h of
    `lengths` the model was trained to forecast from (its min_history and up; every h up to T_obs with
    any_length), over `passes` sampling passes; beside them constant velocity on the same windows (the last two
    positions: the same for every h). With a `newcomer` checkpoint, the pair as forecast.NewcomerRouter
    samples it: whole pasts from `ckpt`, shorter ones from `newcomer`."""
    model, datamodule = load_model(ckpt), instantiate(train_cfg.data)
    if newcomer is not None:
        model = NewcomerRouter(model, load_model(newcomer))
    shortest = model.min_history if newcomer is not None else model.cvae.min_history
    out = {}
    for h in lengths:
        if (h < shortest and not any_length) or h > model.hparams.obs_len:
            continue
        runs = [evaluate_best_of_k(model, datamodule, "test", seed=p, history=h) for p in range(passes)]
        out[str(h)] = {k: [r[k] for r in runs] for k in ("min_ade_20", "min_fde_20")}
    windows = datamodule.windows("test")
    cv = constant_velocity(torch.from_numpy(windows.past), model.hparams.pred_len).unsqueeze(1)
    future = torch.from_numpy(windows.future)
    out["cv"] = {"min_ade_20": min_ade(cv, future).mean().item(), "min_fde_20": min_fde(cv, future).mean().item()}
    return out


def refresh_representatives(cfg: DictConfig) -> None:
    """Recompute the representatives of the configured runs' records (clustered and their sampling passes) with
    today's cluster_futures, where the run's checkpoint is still at hand (its own run folder, or the one of
    the run its record was copied from). Records made before say nothing of `representative`: their clusters
    gave the draw nearest the centre. Only the fold's test windows are read, as the run read them."""
    for variant, seed, scene in itertools.product(cfg.variants, cfg.seeds, cfg.scenes):
        path = run_record_path(Path(cfg.output_dir), variant, scene, seed)
        record = json.loads(path.read_text()) if path.is_file() else None
        if record is None or record.get("clustered", {}).get("representative") == REPRESENTATIVE:
            continue
        ckpt = checkpoint_of(cfg, record, variant, scene, seed)
        if ckpt is None:
            log.info("no checkpoint left for %s / %s / seed %d: representatives not refreshed", variant, scene, seed)
            continue
        log.info("representatives of %s / %s / seed %d from %s", variant, scene, seed, ckpt)
        fold_cfg = compose(config_name="train", overrides=[*cfg.train_overrides, f"data.scene={scene}",
                                                           f"paths.data_dir={cfg.data_dir}"])
        commit = git_commit(outputs=(str(cfg.output_dir), str(cfg.checkpoints_dir or cfg.output_dir)))
        record["clustered"] = clustered_on_test(fold_cfg, ckpt, cfg.clustered.cluster_from, seed) | {
            "commit": commit, "checkpoint": str(ckpt), "representative": REPRESENTATIVE}
        if "passes" in record:
            record["passes"] |= passes_on_test(fold_cfg, ckpt, len(record["passes"]["faithful"]["min_ade_20"]),
                                               cfg.clustered.cluster_from, kinds=("representatives",))
        write_json(record, path)


def checkpoint_of(cfg: DictConfig, record: dict, variant: str, scene: str, seed: int) -> Path | None:
    """A run's selected checkpoint, in its run folder or in that of the run its record was copied from."""
    while True:
        ckpt = Path(cfg.runs_dir) / variant / scene / f"seed{seed}" / record["best_checkpoint"]
        if ckpt.is_file():
            return ckpt
        source = record.get("copied_from", "").split(":", 1)[0]
        if not source or not Path(source).is_file():
            return None
        variant, record = Path(source).parts[-3], json.loads(Path(source).read_text())


def recorded_checkpoint(cfg: DictConfig, variant: str, scene: str, seed: int) -> Path:
    """The selected checkpoint of a recorded benchmark run (cfg.records, cfg.runs_dir); exits naming the record
    where the checkpoint is gone."""
    record_path = Path(cfg.records) / variant / scene / f"seed{seed}.json"
    ckpt = checkpoint_of(cfg, json.loads(record_path.read_text()), variant, scene, seed)
    if ckpt is None:
        sys.exit(f"{record_path}: its checkpoint is gone")
    return ckpt


def fill_naive(cfg: DictConfig) -> None:
    """Add the calibrated naive baseline to the configured runs' records that lack it (it needs no checkpoint)."""
    for variant, seed, scene in itertools.product(cfg.variants, cfg.seeds, cfg.scenes):
        path = run_record_path(Path(cfg.output_dir), variant, scene, seed)
        record = json.loads(path.read_text()) if path.is_file() else None
        if record is None or "naive" in record:
            continue
        log.info("naive baseline for %s / %s / seed %d", variant, scene, seed)
        train_cfg = compose(config_name="train", overrides=record["overrides"])
        record["naive"] = naive_on_test(train_cfg, cfg.likelihood, seed) | {"commit": git_commit(
            outputs=(str(cfg.output_dir), str(cfg.checkpoints_dir or cfg.output_dir)))}
        write_json(record, path)


def clustered_on_test(train_cfg: DictConfig, ckpt: Path, cluster_from: int, seed: int) -> dict:
    """Best-of-20 on the run's test windows of 20 representatives of `cluster_from` draws clustered by final
    position: a labelled variant beside the headline (PROTOCOL.md), never the headline."""
    return evaluate_best_of_k(load_model(ckpt), instantiate(train_cfg.data), "test", cluster_from=cluster_from,
                              seed=seed)


def checkpoint_at_hand(cfg: DictConfig, record: dict, variant: str, scene: str, seed: int) -> Path | None:
    """A run's selected checkpoint in the run's directory, or shipped (the ship seed of the speed variant)."""
    candidates = [Path(cfg.runs_dir) / variant / scene / f"seed{seed}" / record["best_checkpoint"]]
    if variant == cfg.speed_variant and seed == cfg.ship_seed and cfg.checkpoints_dir:
        candidates.append(Path(cfg.checkpoints_dir) / f"{scene}.ckpt")
    return next((c for c in candidates if c.is_file()), None)


def records_lacking(cfg: DictConfig, key: str):
    """(variant, seed, scene, record path, record, checkpoint) of the configured runs whose record lacks `key` and
    whose checkpoint is at hand (checkpoint_at_hand); those without one are logged and left out."""
    for variant, seed, scene in itertools.product(cfg.variants, cfg.seeds, cfg.scenes):
        path = run_record_path(Path(cfg.output_dir), variant, scene, seed)
        record = json.loads(path.read_text()) if path.is_file() else None
        if record is None or key in record:
            continue
        ckpt = checkpoint_at_hand(cfg, record, variant, scene, seed)
        if ckpt is None:
            log.info("no checkpoint left for %s / %s / seed %d: no %s added", variant, scene, seed, key)
            continue
        yield variant, seed, scene, path, record, ckpt


def fill_passes(cfg: DictConfig) -> None:
    """Add `passes` sampling passes of best-of-20 (faithful and representatives) to the records of the configured
    runs that lack them and whose selected checkpoint is at hand (checkpoint_at_hand): records made before passes
    were measured. The checkpoint must be the run's own: its most-likely ADE on the test windows (deterministic)
    must equal the record's, or nothing is added."""
    commit = git_commit(outputs=(str(cfg.output_dir), str(cfg.checkpoints_dir or cfg.output_dir)))
    for variant, seed, scene, path, record, ckpt in records_lacking(cfg, "passes"):
        train_cfg = compose(config_name="train", overrides=record["overrides"])
        recorded = record.get("test", {}).get("test/ml_ade")
        found = most_likely_ade(train_cfg, ckpt)
        if recorded is None or abs(found - recorded) > 1e-4:
            raise CvaeTrajError(f"{ckpt}: its most-likely ADE on the test windows is {found:.5f}, the record of "
                                f"{variant} / {scene} / seed {seed} says {recorded}: not that run's checkpoint")
        log.info("sampling passes of %s / %s / seed %d from %s", variant, scene, seed, ckpt)
        record["passes"] = passes_on_test(train_cfg, ckpt, cfg.passes, cfg.clustered.cluster_from) | {
            "commit": commit, "checkpoint": str(ckpt), "filled": True}
        write_json(record, path)


def most_likely_ade(train_cfg: DictConfig, ckpt: Path) -> float:
    """The mean ADE of the most likely future (TrajectoryCVAE.most_likely) over the fold's test windows."""
    model, windows = load_model(ckpt), instantiate(train_cfg.data).windows("test")
    total = 0.0
    with torch.no_grad():
        for lo in range(0, len(windows), 256):
            batch = windows.batch(np.arange(lo, min(lo + 256, len(windows))))
            total += (model.most_likely(batch) - batch.future).norm(dim=-1).mean(-1).sum().item()
    return total / len(windows)


def fill_clustered(cfg: DictConfig) -> None:
    """Add the clustered best-of-20 to the records of the configured runs that lack it and whose selected
    checkpoint is still at hand: in the run's directory, or shipped (the ship seed of the speed variant)."""
    commit = git_commit(outputs=(str(cfg.output_dir), str(cfg.checkpoints_dir or cfg.output_dir)))
    for variant, seed, scene, path, record, ckpt in records_lacking(cfg, "clustered"):
        train_cfg = compose(config_name="train", overrides=record["overrides"])
        log.info("clustering %s / %s / seed %d from %s", variant, scene, seed, ckpt)
        # With the thread count the run itself had, so the draws and the k-means are those it would have made:
        # k-means assignments turn float rounding into visible differences.
        threads = torch.get_num_threads()
        torch.set_num_threads(record.get("hardware", {}).get("torch_threads", threads))
        try:
            clustered = clustered_on_test(train_cfg, ckpt, cfg.clustered.cluster_from, seed)
        finally:
            torch.set_num_threads(threads)
        record["clustered"] = clustered | {"commit": commit, "checkpoint": str(ckpt)}
        write_json(record, path)


def sampling_speed(ckpt: Path, root: Path, scene: str = "univ", repeats: int = 1, cluster_from: int | None = None
                   ) -> dict:
    """Milliseconds per agent for 20 futures through predict_futures, at every frame of a scene's test set
    (faithful draws, or with cluster_from=M 20 representatives of M draws)."""
    model = load_model(ckpt)
    tables = [validate_tracks(read_raw_eth_ucy(root / f"all_data/{r}.txt"), source=r, frame_step=10)
              for r in SCENES[scene]]
    best, agents = float("inf"), 0
    for _ in range(repeats):
        start, agents = time.perf_counter(), 0
        for table in tables:
            for step in np.unique(table.step):
                try:
                    futures = predict_futures(model, table, num_samples=20, at_frame=table.frames(step),
                                              cluster_from=cluster_from)
                except InputError:  # no agent with a full history at this frame
                    continue
                agents += futures["agent_id"].nunique()
        best = min(best, time.perf_counter() - start)
    return {"ms_per_agent": 1000 * best / agents, "agents": agents, "seconds": best, "scene": scene,
            "threads": torch.get_num_threads(), "checkpoint": str(ckpt), "cluster_from": cluster_from}


def ship_checkpoint(source: Path, dest: Path) -> None:
    """A pretrained model for the repository: weights and hyper-parameters, no optimiser state."""
    full = torch.load(source, weights_only=True)
    with atomic_path(dest) as tmp:
        torch.save({key: full[key] for key in SHIPPED_KEYS}, tmp)
