"""The ETH/UCY benchmark: train every (variant, scene, seed), test once, and tabulate as PROTOCOL.md asks.

Each run is `train(cfg)` on the project's own train config, so checkpoint choice is on validation only and
the test split is read once per run, at its end. Constant velocity is computed in the same test pass, on
the same windows.
"""
from __future__ import annotations

import logging
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose
from omegaconf import DictConfig

from cvae_traj.data.eth_ucy import SCENES
from cvae_traj.data.tracks import read_raw_eth_ucy, validate_tracks
from cvae_traj.errors import InputError
from cvae_traj.inference import load_model, predict_futures
from cvae_traj.io import atomic_path, write_json
from cvae_traj.training import train

log = logging.getLogger(__name__)

METRICS = ("min_ade_20", "min_fde_20", "cv_ade", "cv_fde")


def run_benchmark(cfg: DictConfig) -> dict:
    """Train and test each variant on each scene and seed; write results as JSON and Markdown."""
    runs_dir, out_dir = Path(cfg.runs_dir), Path(cfg.output_dir)
    results = {"variants": {}, "hardware": hardware(), "command": cfg.command, "seeds": list(cfg.seeds),
               "protocol": "PROTOCOL.md: 8 observed / 12 predicted steps, stride-1 windows, best-of-20 from the "
                           "prior path, selection on validation, test read once"}
    for variant in cfg.variants:
        rows = {}
        for scene in cfg.scenes:
            runs = []
            for seed in cfg.seeds:
                run_dir = runs_dir / variant / scene / f"seed{seed}"
                overrides = [*cfg.train_overrides, *cfg.ablations[variant], f"data.scene={scene}", f"seed={seed}",
                             f"paths.output_dir={run_dir}", f"paths.data_dir={cfg.data_dir}"]
                log.info("training %s / %s / seed %d", variant, scene, seed)
                metrics = train(compose(config_name="train", overrides=overrides))
                runs.append({"seed": seed, "run_dir": str(run_dir), **metrics})
            rows[scene] = summarise_scene(runs)
        results["variants"][variant] = {"overrides": list(cfg.ablations[variant]), "scenes": rows,
                                        "average": scene_average(rows)}
    if cfg.speed_variant in results["variants"] and "univ" in cfg.scenes:
        univ = results["variants"][cfg.speed_variant]["scenes"]["univ"]
        results["sampling"] = sampling_speed(Path(univ["runs"][0]["run_dir"]) / "checkpoints" / "best.ckpt",
                                             Path(cfg.data_dir) / "eth_ucy", cfg.speed_repeats)
    if cfg.checkpoints_dir and cfg.speed_variant in results["variants"]:
        ship_checkpoints(results["variants"][cfg.speed_variant]["scenes"], Path(cfg.checkpoints_dir))
    write_json(results, out_dir / "eth_ucy.json")
    with atomic_path(out_dir / "eth_ucy.md") as tmp:
        tmp.write_text(markdown_table(results))
    return results


def summarise_scene(runs: list[dict]) -> dict:
    """Mean and spread over seeds of the test metrics of one scene, with counts and timings."""
    summary = {"windows": runs[0]["windows"]["test"], "runs": runs,
               "trainable_parameters": runs[0]["trainable_parameters"],
               "train_seconds": float(np.mean([r["train_seconds"] for r in runs])),
               "test_seconds": float(np.mean([r["test_seconds"] for r in runs]))}
    for name in METRICS:
        values = [r["test"][f"test/{name}"] for r in runs]
        summary[name] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": values}
    return summary


def scene_average(rows: dict) -> dict:
    """The mean of the scene numbers (not pooled over windows), and its spread over seeds."""
    average = {}
    for name in METRICS:
        per_seed = np.mean([rows[s][name]["values"] for s in rows], axis=0)  # (seeds,)
        average[name] = {"mean": float(per_seed.mean()), "std": float(per_seed.std())}
    return average


def sampling_speed(ckpt: Path, root: Path, repeats: int = 1) -> dict:
    """Milliseconds per agent for 20 futures through predict_futures, at every frame of the UNIV test set."""
    model = load_model(ckpt)
    tables = [validate_tracks(read_raw_eth_ucy(root / f"all_data/{r}.txt"), source=r, frame_step=10)
              for r in SCENES["univ"]]
    best, agents = float("inf"), 0
    for _ in range(repeats):
        start, agents = time.perf_counter(), 0
        for table in tables:
            for step in np.unique(table.step):
                try:
                    futures = predict_futures(model, table, num_samples=20, at_frame=table.frames(step))
                except InputError:  # no agent with a full history at this frame
                    continue
                agents += futures["agent_id"].nunique()
        best = min(best, time.perf_counter() - start)
    return {"ms_per_agent": 1000 * best / agents, "agents": agents, "seconds": best,
            "threads": torch.get_num_threads(), "checkpoint": str(ckpt)}


def ship_checkpoints(rows: dict, dest: Path) -> None:
    """Copy each scene's seed-0 best checkpoint to dest/<scene>.ckpt (the pretrained models)."""
    dest.mkdir(parents=True, exist_ok=True)
    for scene, row in rows.items():
        source = Path(row["runs"][0]["run_dir"]) / "checkpoints" / "best.ckpt"
        with atomic_path(dest / f"{scene}.ckpt") as tmp:
            shutil.copyfile(source, tmp)


def hardware() -> dict:
    return {"cpu": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform()}


def markdown_table(results: dict) -> str:
    """The results as Markdown: one row per scene and variant, the scene average, and the run facts."""
    lines = ["# ETH/UCY leave-one-out benchmark", "",
             f"Command: `{results['command']}`  ", f"Seeds: {results['seeds']}  ",
             f"Hardware: {results['hardware']['cpu']}, {results['hardware']['torch_threads']} torch threads, "
             f"torch {results['hardware']['torch']}  ", f"Protocol: {results['protocol']}", "",
             "minADE_20 / minFDE_20 in metres (mean ± std over seeds); constant velocity on the same windows.", "",
             "| variant | scene | windows | minADE_20 | minFDE_20 | CV ADE | CV FDE | params | train s | test s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for variant, v in results["variants"].items():
        for scene, row in v["scenes"].items():
            lines.append(f"| {variant} | {scene} | {row['windows']} | {_pm(row['min_ade_20'])} | "
                         f"{_pm(row['min_fde_20'])} | {row['cv_ade']['mean']:.3f} | {row['cv_fde']['mean']:.3f} | "
                         f"{row['trainable_parameters']} | {row['train_seconds']:.0f} | {row['test_seconds']:.1f} |")
        a = v["average"]
        lines.append(f"| **{variant}** | **average** | | **{_pm(a['min_ade_20'])}** | **{_pm(a['min_fde_20'])}** | "
                     f"{a['cv_ade']['mean']:.3f} | {a['cv_fde']['mean']:.3f} | | | |")
    lines += ["", "Variants (overrides on top of the benchmark's training config):", ""]
    lines += [f"- `{name}`: {' '.join(v['overrides']) or '(none)'}" for name, v in results["variants"].items()]
    if "sampling" in results:
        s = results["sampling"]
        lines += ["", f"Sampling speed: {s['ms_per_agent']:.3f} ms per agent for 20 futures with neighbours, through "
                      f"predict_futures at every frame of the UNIV test set ({s['agents']} agents, "
                      f"{s['threads']} threads)."]
    return "\n".join(lines) + "\n"


def _pm(stat: dict) -> str:
    return f"{stat['mean']:.3f} ± {stat['std']:.3f}"

