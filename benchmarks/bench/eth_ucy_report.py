"""The ETH/UCY benchmark's tables: the recorded runs summarised over seeds and scenes, as JSON and Markdown.

Reads only the run records under benchmarks/results/runs/ (bench.eth_ucy_runner writes them), so a table
can be rebuilt at any time without training or reading a test split again.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from bench.provenance import hardware
from cvae_traj.baselines import CALIBRATION_LEVELS


METRICS = ("min_ade_20", "min_fde_20", "cv_ade", "cv_fde")
# Likelihood and calibration of the same test windows, from evaluate_likelihood.
LIKELIHOOD = ("kde_nll", "nll_iwae", "nll_iwae_per_step", "nll_elbo", "ml_ade", "ml_fde", "coverage_50", "coverage_90")
# Trajectron++ KDE NLL as published (Salzmann et al., ECCV 2020, ETH/UCY table); its inputs used central
# differences, so its test windows saw the future (PROTOCOL.md): a reference point, not a like-for-like run.
TRAJECTRON_KDE_NLL = {"eth": 1.80, "hotel": -1.29, "univ": -0.89, "zara1": -1.13, "zara2": -2.19}


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
        of = ((cfg.get("ensembles") or {}).get(variant) or {}).get("of")  # an ensemble row: its members' row
        fold_overrides = (cfg.get("fold_ablations") or {}).get(of or variant) or {}
        results["variants"][variant] = {"overrides": list(cfg.ablations[of or variant]), "scenes": rows,
                                        **({"ensemble_of": of} if of else {}),
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


def calibration_error(likelihood: dict) -> float | None:
    """Mean over CALIBRATION_LEVELS of |coverage - level| from a record's coverage_<level> (None if any is missing)."""
    keys = [f"coverage_{round(100 * a)}" for a in CALIBRATION_LEVELS]
    if not all(k in likelihood for k in keys):
        return None
    return float(np.mean([abs(likelihood[k] - a) for k, a in zip(keys, CALIBRATION_LEVELS)]))


def reliability_curves(scenes: dict) -> dict[str, dict[float, float]]:
    """Per scene, the mean over seeds of the coverage at each recorded level: {scene: {level: coverage}}."""
    curves = {}
    for scene, row in scenes.items():
        runs = [r["likelihood"] for r in row["runs"] if "likelihood" in r]
        if runs:
            levels = sorted(int(k.split("_")[1]) for k in runs[0] if k.startswith("coverage_"))
            curves[scene] = {lv / 100: float(np.mean([r[f"coverage_{lv}"] for r in runs])) for lv in levels}
    return curves


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
    lines += history_table(results)
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
                 f"position (k-means; each cluster's mean future for the faithful rows, its draw nearest the "
                 f"centre for `full` and the older rows, recorded before the mean was chosen), on the same test "
                 f"windows, beside the "
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


def passes_table(results: dict) -> list[str]:
    """Markdown lines: best-of-20 mean ± std over sampling passes (each seed's passes, then the seeds' mean)."""
    rows = _recorded(results, "passes")
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


def history_table(results: dict) -> list[str]:
    """Markdown lines: best-of-20 of faithful draws with every test past cut to its last h steps (the runs'
    `history` records), mean over passes then seeds, beside constant velocity on the same windows."""
    rows = _recorded(results, "history")
    if not rows:
        return []
    lengths = sorted({int(h) for _, _, runs in rows for r in runs for h in r["history"] if h != "cv"})
    lines = ["", "Best-of-20 by history length (test, metres, faithful draws): every past cut to its last h steps, as "
                 "for an agent seen h times; minADE_20 / minFDE_20, mean over the passes and seeds; constant velocity "
                 "(the last two positions) on the same windows.", "",
             "| variant | scene | seeds | " + " | ".join(f"{h} steps" for h in lengths) + " | CV |",
             "|---|---|---|" + "---|" * len(lengths) + "---|"]
    for variant, scene, runs in rows:
        cells = []
        for h in [str(h) for h in lengths] + ["cv"]:
            values = [r["history"][h] for r in runs if h in r["history"]]
            cells.append(" / ".join(f"{np.mean([np.mean(v[k]) for v in values]):.3f}"
                                    for k in ("min_ade_20", "min_fde_20")) if values else "-")
        lines.append(f"| {variant} | {scene} | {[r['seed'] for r in runs]} | " + " | ".join(cells) + " |")
    return lines


def _recorded(results: dict, key: str) -> list[tuple[str, str, list[dict]]]:
    """(variant, scene, runs) for every scene whose runs recorded `key`, with those runs."""
    rows = []
    for variant, v in results["variants"].items():
        for scene, row in v["scenes"].items():
            runs = [r for r in row["runs"] if key in r]
            if runs:
                rows.append((variant, scene, runs))
    return rows


def _pm(stat: dict, digits: int = 3) -> str:
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def _pm_or_dash(row: dict, name: str, digits: int = 2) -> str:
    """_pm of row[name], or a dash where the runs did not record it."""
    return _pm(row[name], digits) if name in row else "-"


def run_record_path(out_dir: Path, variant: str, scene: str, seed: int) -> Path:
    return out_dir / "runs" / variant / scene / f"seed{seed}.json"
