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
import platform
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

from cvae_traj.baselines import CALIBRATION_LEVELS, GaussianConstantVelocity
from cvae_traj.data.eth_ucy import SCENES
from cvae_traj.data.tracks import read_raw_eth_ucy, validate_tracks
from cvae_traj.errors import CvaeTrajError, InputError
from cvae_traj.evaluation import evaluate_best_of_k, evaluate_likelihood, evaluate_samples
from cvae_traj.inference import load_model, predict_futures
from cvae_traj.io import atomic_path, write_json
from cvae_traj.plotting import plot_reliability, save_figure
from cvae_traj.training import train

log = logging.getLogger(__name__)

METRICS = ("min_ade_20", "min_fde_20", "cv_ade", "cv_fde")
# Likelihood and calibration of the same test windows, from evaluate_likelihood.
LIKELIHOOD = ("kde_nll", "nll_iwae", "nll_iwae_per_step", "nll_elbo", "ml_ade", "ml_fde", "coverage_50", "coverage_90")
# Trajectron++ KDE NLL as published (Salzmann et al., ECCV 2020, ETH/UCY table); its inputs used central
# differences, so its test windows saw the future (PROTOCOL.md): a reference point, not a like-for-like run.
TRAJECTRON_KDE_NLL = {"eth": 1.80, "hotel": -1.29, "univ": -0.89, "zara1": -1.13, "zara2": -2.19}
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
        log.info("training %s / %s / seed %d", variant, scene, seed)
        train_cfg = compose(config_name="train", overrides=overrides)
        metrics = train(train_cfg)
        start = time.perf_counter()
        best = run_dir / metrics["best_checkpoint"]
        metrics["likelihood"] = likelihood_on_test(train_cfg, best, cfg.likelihood, seed)
        metrics["likelihood_seconds"] = round(time.perf_counter() - start, 2)
        if cfg.clustered.cluster_from:
            metrics["clustered"] = clustered_on_test(train_cfg, best, cfg.clustered.cluster_from, seed)
        metrics["naive"] = naive_on_test(train_cfg, cfg.likelihood, seed)
        if cfg.passes:
            metrics["passes"] = passes_on_test(train_cfg, best, cfg.passes, cfg.clustered.cluster_from)
        if variant == cfg.speed_variant and seed == cfg.ship_seed and cfg.checkpoints_dir:
            ship_checkpoint(best, Path(cfg.checkpoints_dir) / f"{scene}.ckpt")
        commit = git_commit(outputs=(str(cfg.output_dir), str(cfg.checkpoints_dir or cfg.output_dir)))
        write_json({"variant": variant, "scene": scene, "seed": seed, "commit": commit,
                    "hardware": hardware(cfg.runs_at_once), "overrides": overrides, **metrics},
                   run_record_path(out_dir, variant, scene, seed))
    if cfg.clustered.fill:
        fill_clustered(cfg)
    if cfg.naive_fill:
        fill_naive(cfg)
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


def variant_overrides(cfg: DictConfig, variant: str, scene: str) -> list[str]:
    """A variant's training overrides on one fold: its `ablations` entry, then its `fold_ablations` entry for
    that fold, if any (a piece chosen per fold on validation, as benchmarks/scene_shift.py does)."""
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
                "clustered.fill", "naive_fill"}


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


def passes_on_test(train_cfg: DictConfig, ckpt: Path, passes: int, cluster_from: int | None) -> dict:
    """Best-of-20 on the run's test windows over `passes` sampling passes (seeds 0 .. passes - 1), of faithful
    draws and of representatives of `cluster_from` draws: best-of-K is itself random (PROTOCOL.md)."""
    model, datamodule = load_model(ckpt), instantiate(train_cfg.data)
    out = {}
    for kind, m in (("faithful", None), ("representatives", cluster_from)):
        if kind == "representatives" and not m:
            continue
        runs = [evaluate_best_of_k(model, datamodule, "test", cluster_from=m, seed=p) for p in range(passes)]
        out[kind] = {k: [r[k] for r in runs] for k in ("min_ade_20", "min_fde_20")} | {"cluster_from": m}
    return out


def passes_table(results: dict) -> list[str]:
    """Markdown lines: best-of-20 mean ± std over sampling passes (each seed's passes, then the seeds' mean)."""
    rows = []
    for variant, v in results["variants"].items():
        for scene, row in v["scenes"].items():
            runs = [r for r in row["runs"] if "passes" in r]
            if runs:
                rows.append((variant, scene, runs))
    if not rows:
        return []
    lines = ["", "Best-of-20 over sampling passes (test, metres): for each run the mean ± std over its passes, then "
                 "averaged over the runs (seeds) that have them; faithful = 20 independent draws, representatives = "
                 "20 of the clustered draws with weights.", "",
             "| variant | scene | seeds | passes | faithful minADE_20 | faithful minFDE_20 | representatives minADE_20 "
             "| representatives minFDE_20 |", "|---|---|---|---|---|---|---|---|"]
    for variant, scene, runs in rows:
        cells = []
        for kind in ("faithful", "representatives"):
            for k in ("min_ade_20", "min_fde_20"):
                values = [r["passes"][kind][k] for r in runs if kind in r["passes"]]
                mean, spread = np.mean([np.mean(v) for v in values]), np.mean([np.std(v) for v in values])
                cells.append(f"{mean:.3f} ± {spread:.3f}" if values else "-")
        passes = len(runs[0]["passes"]["faithful"]["min_ade_20"])
        lines.append(f"| {variant} | {scene} | {[r['seed'] for r in runs]} | {passes} | " + " | ".join(cells) + " |")
    return lines


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


def calibration_error(likelihood: dict) -> float | None:
    """Mean over CALIBRATION_LEVELS of |coverage - level| from a record's coverage_<level> (None if any is missing)."""
    keys = [f"coverage_{round(100 * a)}" for a in CALIBRATION_LEVELS]
    if not all(k in likelihood for k in keys):
        return None
    return float(np.mean([abs(likelihood[k] - a) for k, a in zip(keys, CALIBRATION_LEVELS)]))


def clustered_on_test(train_cfg: DictConfig, ckpt: Path, cluster_from: int, seed: int) -> dict:
    """Best-of-20 on the run's test windows of 20 representatives of `cluster_from` draws clustered by final
    position: a labelled variant beside the headline (PROTOCOL.md), never the headline."""
    return evaluate_best_of_k(load_model(ckpt), instantiate(train_cfg.data), "test", cluster_from=cluster_from,
                              seed=seed)


def fill_clustered(cfg: DictConfig) -> None:
    """Add the clustered best-of-20 to the records of the configured runs that lack it and whose selected
    checkpoint is still at hand: in the run's directory, or shipped (the ship seed of the speed variant)."""
    commit = git_commit(outputs=(str(cfg.output_dir), str(cfg.checkpoints_dir or cfg.output_dir)))
    for variant, seed, scene in itertools.product(cfg.variants, cfg.seeds, cfg.scenes):
        path = run_record_path(Path(cfg.output_dir), variant, scene, seed)
        record = json.loads(path.read_text()) if path.is_file() else None
        if record is None or "clustered" in record:
            continue
        candidates = [Path(cfg.runs_dir) / variant / scene / f"seed{seed}" / record["best_checkpoint"]]
        if variant == cfg.speed_variant and seed == cfg.ship_seed and cfg.checkpoints_dir:
            candidates.append(Path(cfg.checkpoints_dir) / f"{scene}.ckpt")
        ckpt = next((c for c in candidates if c.is_file()), None)
        if ckpt is None:
            log.info("no checkpoint left for %s / %s / seed %d: not clustered", variant, scene, seed)
            continue
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


def reliability_curves(scenes: dict) -> dict[str, dict[float, float]]:
    """Per scene, the mean over seeds of the coverage at each recorded level: {scene: {level: coverage}}."""
    curves = {}
    for scene, row in scenes.items():
        runs = [r["likelihood"] for r in row["runs"] if "likelihood" in r]
        if runs:
            levels = sorted(int(k.split("_")[1]) for k in runs[0] if k.startswith("coverage_"))
            curves[scene] = {lv / 100: float(np.mean([r[f"coverage_{lv}"] for r in runs])) for lv in levels}
    return curves


def run_record_path(out_dir: Path, variant: str, scene: str, seed: int) -> Path:
    return out_dir / "runs" / variant / scene / f"seed{seed}.json"


def collect(cfg: DictConfig) -> dict:
    """The table's content from the recorded runs of the configured variants, scenes and seeds."""
    results = {"variants": {}, "hardware": hardware(), "command": cfg.command, "seeds": list(cfg.seeds),
               "protocol": "PROTOCOL.md: 8 observed / 12 predicted steps, stride-1 windows, best-of-20 from the "
                           "prior path, selection on validation, test read once"}
    for variant in cfg.variants:
        rows = {}
        for scene in cfg.scenes:
            records = [run_record_path(Path(cfg.output_dir), variant, scene, seed) for seed in cfg.seeds]
            runs = [json.loads(r.read_text()) for r in records if r.is_file()]
            if runs:
                rows[scene] = summarise_scene(runs)
        complete = len(rows) == len(cfg.scenes) and all(len(r["runs"]) == len(cfg.seeds) for r in rows.values())
        # The scene average needs every scene: it is taken over the seeds that every scene has run.
        common = sorted(set.intersection(*({r["seed"] for r in row["runs"]} for row in rows.values()))) \
            if rows and len(rows) == len(cfg.scenes) else []
        same_seeds = {scene: summarise_scene([r for r in row["runs"] if r["seed"] in common])
                      for scene, row in rows.items()} if common else {}
        fold_overrides = (cfg.get("fold_ablations") or {}).get(variant) or {}
        results["variants"][variant] = {"overrides": list(cfg.ablations[variant]), "scenes": rows,
                                        "fold_overrides": {k: list(v) for k, v in fold_overrides.items()},
                                        "complete": complete, "average_seeds": common,
                                        "average": scene_average(same_seeds) if common else None,
                                        "clustered_average": clustered_average(rows, len(cfg.scenes))}
    if cfg.speed_variant in results["variants"]:
        results["reference_variant"] = cfg.speed_variant
        for variant, v in results["variants"].items():
            if variant != cfg.speed_variant:
                v["validation_vs_reference"] = paired_validation(v, results["variants"][cfg.speed_variant])
    return results


def paired_validation(variant: dict, reference: dict) -> dict | None:
    """The variant's recorded validation minADE_20 / minFDE_20 against the reference's (the recipe), paired by
    fold and seed: the mean difference over the pairs both have run, and its standard error (None from one pair).
    A piece is kept or dropped on validation; a difference within about two standard errors is not one."""
    pairs = []
    for scene, row in variant["scenes"].items():
        theirs = {r["seed"]: r["val"] for r in reference["scenes"].get(scene, {}).get("runs", [])}
        pairs += [(r["val"], theirs[r["seed"]]) for r in row["runs"] if r["seed"] in theirs]
    if not pairs:
        return None
    result = {"pairs": len(pairs)}
    for name in ("min_ade_20", "min_fde_20"):
        ours, ref = (np.array([pair[i][f"val/{name}"] for pair in pairs]) for i in (0, 1))
        diff = ours - ref
        result[name] = {"variant": float(ours.mean()), "reference": float(ref.mean()), "difference": float(diff.mean()),
                        "se": float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else None}
    return result


def summarise_scene(runs: list[dict]) -> dict:
    """Mean and spread over seeds of the test metrics of one scene, with counts and timings."""
    summary = {"windows": runs[0]["windows"]["test"], "runs": runs,
               "trainable_parameters": runs[0]["trainable_parameters"],
               "train_seconds": float(np.mean([r["train_seconds"] for r in runs])),
               "test_seconds": float(np.mean([r["test_seconds"] for r in runs]))}
    for name in METRICS:
        values = [r["test"][f"test/{name}"] for r in runs]
        summary[name] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": values}
    clustered = [r for r in runs if "clustered" in r]
    if clustered:  # over the runs that have it, beside the same runs' independent draws
        summary["clustered"] = {"seeds": [r["seed"] for r in clustered],
                                "cluster_from": sorted({r["clustered"]["cluster_from"] for r in clustered})}
        for name, values in (("min_ade_20", [r["clustered"]["min_ade_20"] for r in clustered]),
                             ("min_fde_20", [r["clustered"]["min_fde_20"] for r in clustered]),
                             ("draws_ade_20", [r["test"]["test/min_ade_20"] for r in clustered]),
                             ("draws_fde_20", [r["test"]["test/min_fde_20"] for r in clustered])):
            summary["clustered"][name] = {"mean": float(np.mean(values)), "std": float(np.std(values)),
                                          "values": values}
    if all("likelihood" in r for r in runs):
        summary["likelihood_seconds"] = float(np.mean([r["likelihood_seconds"] for r in runs]))
        for name in LIKELIHOOD:
            values = [r["likelihood"][name] for r in runs]
            summary[name] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": values}
        errors = [calibration_error(r["likelihood"]) for r in runs]
        if None not in errors:
            summary["calibration_error"] = {"mean": float(np.mean(errors)), "std": float(np.std(errors)),
                                            "values": errors}
    if all("naive" in r for r in runs):
        for name in ("kde_nll", "calibration_error"):
            values = [r["naive"][name] for r in runs]
            summary[f"naive_{name}"] = {"mean": float(np.mean(values)), "std": float(np.std(values)),
                                        "values": values}
    return summary


def scene_average(rows: dict) -> dict:
    """The mean of the scene numbers (not pooled over windows), and its spread over seeds."""
    average = {}
    names = METRICS + (LIKELIHOOD if all(LIKELIHOOD[0] in row for row in rows.values()) else ())
    names += tuple(n for n in ("calibration_error", "naive_kde_nll", "naive_calibration_error")
                   if all(n in row for row in rows.values()))
    for name in names:
        per_seed = np.mean([rows[s][name]["values"] for s in rows], axis=0)  # (seeds,)
        average[name] = {"mean": float(per_seed.mean()), "std": float(per_seed.std())}
    return average


def clustered_average(rows: dict, scenes: int) -> dict | None:
    """The scene mean of the clustered best-of-20 and of the same runs' independent draws, per seed and then
    over seeds, when every scene has it for the same seeds (None otherwise)."""
    seeds = {tuple(row["clustered"]["seeds"]) for row in rows.values() if "clustered" in row}
    if len(rows) != scenes or len(seeds) != 1 or not all("clustered" in row for row in rows.values()):
        return None
    average = {"seeds": list(seeds.pop())}
    for name in ("min_ade_20", "min_fde_20", "draws_ade_20", "draws_fde_20"):
        per_seed = np.mean([row["clustered"][name]["values"] for row in rows.values()], axis=0)  # (seeds,)
        average[name] = {"mean": float(per_seed.mean()), "std": float(per_seed.std())}
    return average


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


def git_commit(outputs: tuple[str, ...] = (), cwd: str | Path | None = None) -> str | None:
    """The commit the code ran at, with a + when tracked files other than `outputs` (the benchmark's own
    records and shipped checkpoints, which a rerun rewrites) had uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=cwd).stdout.strip()
        top = Path(subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                                  check=True, cwd=cwd).stdout.strip()).resolve()
        inside = [(Path(cwd or ".") / o).resolve() for o in outputs]  # outputs outside the repo change nothing
        exclude = [f":(top,exclude){p.relative_to(top)}" for p in inside if p.is_relative_to(top)]
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *exclude],
                               capture_output=True, text=True, check=True, cwd=cwd).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+" if dirty else "")


def hardware(runs_at_once: int = 1) -> dict:
    return {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "runs_at_once": runs_at_once,
            "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform()}


def markdown_table(results: dict) -> str:
    """The results as Markdown: one row per scene and variant, the scene average, and the run facts."""
    lines = ["# ETH/UCY leave-one-out benchmark", "",
             f"Command: `{results['command']}`  ", f"Seeds: {results['seeds']}  ",
             f"Hardware: {_hardware_line(results)}  ", f"Protocol: {results['protocol']}", "",
             "minADE_20 / minFDE_20 in metres (mean ± std over the seeds run); constant velocity (CV) on the same "
             "windows. Train and test times are wall seconds per run.", "",
             "| variant | scene | windows | seeds | minADE_20 | minFDE_20 | CV ADE | CV FDE | params | train s | test s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    commits = set()
    for variant, v in results["variants"].items():
        for scene, row in v["scenes"].items():
            commits.update(str(r.get("commit")) for r in row["runs"])
            lines.append(f"| {variant} | {scene} | {row['windows']} | {len(row['runs'])} | {_pm(row['min_ade_20'])} | "
                         f"{_pm(row['min_fde_20'])} | {row['cv_ade']['mean']:.3f} | {row['cv_fde']['mean']:.3f} | "
                         f"{row['trainable_parameters']} | {row['train_seconds']:.0f} | {row['test_seconds']:.1f} |")
        a = v["average"]
        if a is None:
            lines.append(f"| **{variant}** | **average** | | | incomplete | incomplete | | | | | |")
        else:
            n = len(v["average_seeds"])
            seeds = n if v["complete"] else f"{n} of {len(results['seeds'])}"
            lines.append(f"| **{variant}** | **average** | | {seeds} | **{_pm(a['min_ade_20'])}** | "
                         f"**{_pm(a['min_fde_20'])}** | {a['cv_ade']['mean']:.3f} | {a['cv_fde']['mean']:.3f} | | | |")
    lines += likelihood_table(results)
    lines += clustered_table(results)
    lines += passes_table(results)
    lines += validation_table(results)
    lines += ["", "Variants (overrides on top of the benchmark's training config):", ""]
    lines += [f"- `{name}`: {' '.join(v['overrides']) or '(none)'}" for name, v in results["variants"].items()]
    lines += ["", f"Code commits of the runs: {', '.join(sorted(commits)) or 'none'}"]
    if "sampling" in results:
        s = results["sampling"]
        lines += ["", f"Sampling speed: {s['ms_per_agent']:.3f} ms per agent for 20 futures with neighbours, through "
                      f"predict_futures at every frame of the UNIV test set ({s['agents']} agents, "
                      f"{s['threads']} threads)."]
    return "\n".join(lines) + "\n"


def _hardware_line(results: dict) -> str:
    """The CPU and torch, and how the recorded runs shared the CPU (threads each, runs at once)."""
    h = results["hardware"]
    shares = sorted({(r["hardware"].get("torch_threads"), r["hardware"].get("runs_at_once", 1))
                     for v in results["variants"].values() for row in v["scenes"].values() for r in row["runs"]},
                    key=str)
    runs = "; ".join(f"{t} torch thread(s) per training run, {n} run(s) at a time" for t, n in shares)
    return f"{h['cpu']}, {h.get('cpu_count', '?')} CPUs, torch {h['torch']}" + (f"; {runs}" if runs else "")


def likelihood_table(results: dict) -> list[str]:
    """Markdown lines: likelihood and calibration per variant and scene, for the runs that recorded them."""
    rows = [(variant, scene, row) for variant, v in results["variants"].items() for scene, row in v["scenes"].items()
            if "kde_nll" in row]
    if not rows:
        return []
    lines = ["", "Likelihood and calibration on the same test windows (mean ± std over seeds): KDE NLL as Trajectron++ "
                 "defines it (2000 samples, nats per step), beside Trajectron++'s published value; the importance-"
                 "weighted bound (IWAE, 100 samples from q) and the ELBO as NLL in nats per agent (12 steps); "
                 "most-likely ADE/FDE (z at the prior mean, decoder mean); how often the true final position lies "
                 "in the 50% and 90% highest-density regions of the samples (calibrated: 0.50 and 0.90); the "
                 "calibration error, the mean over the levels 0.1 ... 0.9 of |coverage - level| (0: calibrated); "
                 "and, on the same windows, the KDE NLL and calibration error of the calibrated naive baseline "
                 "(constant velocity with per-step Gaussian noise fitted on the fold's training split, its scale "
                 "chosen on validation: cvae_traj.baselines).", "",
             "| variant | scene | KDE NLL | T++ KDE NLL | IWAE NLL | IWAE NLL / step | ELBO NLL | ML ADE | ML FDE | "
             "cover 50% | cover 90% | calib. error | naive KDE NLL | naive calib. error | eval s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for variant, scene, row in rows:
        lines.append(f"| {variant} | {scene} | {_pm(row['kde_nll'])} | {TRAJECTRON_KDE_NLL[scene]:.2f} | "
                     f"{_pm(row['nll_iwae'], 2)} | {_pm(row['nll_iwae_per_step'])} | {_pm(row['nll_elbo'], 2)} | "
                     f"{_pm(row['ml_ade'])} | {_pm(row['ml_fde'])} | {_pm(row['coverage_50'], 2)} | "
                     f"{_pm(row['coverage_90'], 2)} | {_pm_or_dash(row, 'calibration_error')} | "
                     f"{_pm_or_dash(row, 'naive_kde_nll')} | {_pm_or_dash(row, 'naive_calibration_error')} | "
                     f"{row['likelihood_seconds']:.0f} |")
    for variant, v in results["variants"].items():
        a = v["average"]
        if a is not None and "kde_nll" in a:
            reference = np.mean(list(TRAJECTRON_KDE_NLL.values()))
            lines.append(f"| **{variant}** | **average** | **{_pm(a['kde_nll'])}** | {reference:.2f} | "
                         f"{_pm(a['nll_iwae'], 2)} | {_pm(a['nll_iwae_per_step'])} | {_pm(a['nll_elbo'], 2)} | "
                         f"{_pm(a['ml_ade'])} | {_pm(a['ml_fde'])} | {_pm(a['coverage_50'], 2)} | "
                         f"{_pm(a['coverage_90'], 2)} | {_pm_or_dash(a, 'calibration_error')} | "
                         f"{_pm_or_dash(a, 'naive_kde_nll')} | {_pm_or_dash(a, 'naive_calibration_error')} | |")
    return lines


def validation_table(results: dict) -> list[str]:
    """Markdown lines: each variant's validation against the recipe's, paired by fold and seed."""
    rows = [(variant, v["validation_vs_reference"]) for variant, v in results["variants"].items()
            if v.get("validation_vs_reference")]
    if not rows:
        return []
    reference = results["reference_variant"]
    lines = ["", f"Validation, what pieces are chosen on: each variant's recorded val minADE_20 / minFDE_20 against "
                 f"`{reference}`'s runs of the same fold and seed (the test split plays no part), the mean over those "
                 f"pairs and the mean difference ± its standard error (negative: the variant is better). A "
                 f"difference within about two standard errors is noise. A row recorded on an earlier recipe (its "
                 f"records' commits) differs from `{reference}` by more than its own overrides.", "",
             f"| variant | pairs | val minADE_20 | {reference} | difference | val minFDE_20 | {reference} | difference |",
             "|---|---|---|---|---|---|---|---|"]
    for variant, c in rows:
        cells = []
        for name in ("min_ade_20", "min_fde_20"):
            m = c[name]
            se = "" if m["se"] is None else f" ± {m['se']:.4f}"
            cells.append(f"{m['variant']:.4f} | {m['reference']:.4f} | {m['difference']:+.4f}{se}")
        lines.append(f"| {variant} | {c['pairs']} | {' | '.join(cells)} |")
    return lines


def clustered_table(results: dict) -> list[str]:
    """Markdown lines: the labelled clustering variant, beside the independent draws of the same runs."""
    rows = [(variant, scene, row["clustered"]) for variant, v in results["variants"].items()
            for scene, row in v["scenes"].items() if "clustered" in row]
    if not rows:
        return []
    draws = "/".join(str(m) for m in sorted({m for _, _, c in rows for m in c["cluster_from"]}))
    lines = ["", f"Not the headline (PROTOCOL.md: re-selection from more than 20 raw samples, reported beside it): "
                 f"final-position clustering, the best of 20 representatives of {draws} draws clustered by final "
                 f"position (k-means; each cluster's draw nearest its centre), on the same test windows, beside the "
                 f"best of 20 independent draws of the same runs (mean ± std over the seeds listed).", "",
             "| variant | scene | seeds | clustered minADE_20 | clustered minFDE_20 | draws minADE_20 | "
             "draws minFDE_20 |",
             "|---|---|---|---|---|---|---|"]
    for variant, scene, c in rows:
        lines.append(f"| {variant} | {scene} | {c['seeds']} | {_pm(c['min_ade_20'])} | {_pm(c['min_fde_20'])} | "
                     f"{_pm(c['draws_ade_20'])} | {_pm(c['draws_fde_20'])} |")
    for variant, v in results["variants"].items():
        a = v.get("clustered_average")
        if a is not None:
            lines.append(f"| **{variant}** | **average** | {a['seeds']} | **{_pm(a['min_ade_20'])}** | "
                         f"**{_pm(a['min_fde_20'])}** | {_pm(a['draws_ade_20'])} | {_pm(a['draws_fde_20'])} |")
    return lines


def _pm(stat: dict, digits: int = 3) -> str:
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def _pm_or_dash(row: dict, name: str, digits: int = 2) -> str:
    """_pm of row[name], or a dash where the runs did not record it."""
    return _pm(row[name], digits) if name in row else "-"
