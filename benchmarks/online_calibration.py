"""Calibrating while forecasting: a model that widens or narrows its draws from its own completed forecasts.

    python benchmarks/online_calibration.py stage=screen      # unseen-scene validation: which calibration
    python benchmarks/online_calibration.py stage=test rate=R floor=F [settle=S] [speed_edge=E] [odds=O] \
        [stand_floor=G] [stand_rate=Q] [set_off=D] [odds_rate=P] [reach=H]  # test
    python benchmarks/online_calibration.py report_only=true  # the tables, from benchmarks/results/

cvae_traj.calibration.OnlineTemperature replays each recording in time: every window is forecast at its last
observed step with the spread factor of that moment, and its truth's highest-density level is handed to the
factor 12 steps later, once its future has happened. Nothing later than the forecast's own step reaches it, so the
inputs stay causal; what it adds to the benchmark's protocol is that a forecaster learns from the scene it is
deployed in as it goes, which a live forecaster can do and a frozen model cannot. Its rows are labelled apart.

stage=screen chooses `rate`, `floor` (the lowest factor allowed), `settle` (levels after which the factor's step has
halved; none: constant), `speed_edge` (a factor for agents slower than it per step and one for the rest; none:
one factor) and `odds` (none: every factor scales the prior's spread; "all": every factor divides its mixture
logits instead, moving the odds of its modes, within `odds_bounds`; "standing": the standers' factor does, the
walkers' scales the spread) and `stand_floor` (with speed classes, a spread factor of the standers' own with this
floor, beside their odds factor where `odds` is "standing"; none: standers have none beside their odds, or the
walkers' floor), `stand_rate` (the rate of the standers' own factors, with stand_floor; none: `rate`),
`set_off` (with stand_floor and standers' odds: their odds factor moved by whether they set off, beyond this
distance by the last future step, against their draws' share that did, instead of by the levels; none: the levels)
`odds_rate` (that odds factor's rate; none: the standers' rate) and `reach` (with speed classes, the standers' draws'
displacements from where they stood times a factor of their own moved by their levels, this its lowest;
bench/online_trackers.Reached) on the unseen-scene screens of
benchmarks/scene_shift.py (each fold's model on a scene it never trained or validated on; the test scene never
read), by the rule in `rule` below, written before any screen ran. Rate 0 is the model as trained, scored the same
way. stage=test scores the benchmark's runs of `variant` (benchmarks/results/runs/<variant>/), as trained and
online as chosen, and the calibrated naive baseline as fitted and online the same way, on every test window:
calibration of 500 draws' final positions, KDE NLL of 2000, best of 20 over 5 disjoint sets of the same draws.
"""
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from bench.eth_ucy_runner import recorded_checkpoint
from bench.online_trackers import ReachTemperature, SettlingTemperature, SpeedClassTemperature, with_reach
from bench.options import options
from bench.provenance import git_commit, hardware
from cvae_traj.baselines import GaussianConstantVelocity
from cvae_traj.calibration import OnlineTemperature, WidthOddsTemperature, evaluate_online, width_and_odds
from cvae_traj.data.eth_ucy import SCENES, EthUcyDataModule
from cvae_traj.data.windows import make_windows
from cvae_traj.forecast import load_model
from cvae_traj.io import write_json

cfg = options({
    "stage": "screen", "rate": None, "floor": 0.25, "settle": None, "speed_edge": None, "odds": None,
    "stand_floor": None, "stand_rate": None, "set_off": None, "odds_rate": None, "reach": None,
    "odds_bounds": [0.125, 8.0],
    # stage=test: also score the models and the naive baseline as trained (their benchmark records have them too);
    # `naive` and `models` false leave the one or the other out (a run split in two to use both cores).
    "as_trained": True, "naive": True, "models": True,
    # [rate, floor, settle, speed_edge, odds] of each calibration screened; floor is the lowest spread factor
    # allowed: 1 never narrows the draws below the model as trained, 0.25 lets them narrow to a quarter. [0, 1] is
    # the model as trained. settle, speed_edge and odds as above (metres per step: 0.08 is 0.2 m/s at ETH/UCY's 2.5
    # steps a second). The screen named `screen_name` runs these; earlier screens stay in the results under their
    # own names (screen 'settle' ran [0, 1], [0.2, 1], [0.2, 1, 200], [0.2, 0.25, 200], [0.2, 1, 200, 0.08] and
    # [0.2, 0.25, 200, 0.08]; screen 'odds' [0, 1], [0.2, 1], [0.2, 1, None, None, "all"],
    # [0.2, 1, None, 0.08, "all"] and [0.2, 1, None, 0.08, "standing"]; screen 'stand_width' [0, 1],
    # [0.2, 1, None, 0.08, "standing"], [0.2, 1, None, 0.08, None, 0.25], [0.2, 1, None, 0.08, "standing", 1] and
    # [0.2, 1, None, 0.08, "standing", 0.25], whose last the package ships; screen 'stand_rate' [0, 1],
    # [0.2, 1, None, 0.08, "standing", 0.25] and [0.2, 1, None, 0.08, "standing", 0.25, 0.6]). Screen 'set_off'
    # moves the standers' odds factor by whether they set off (beyond 0.5 m by the last future step) against their
    # draws' share that did, and their spread by the levels alone, since one mean level cannot tell an error in
    # how often standers set off from one in how wide their draws are (benchmarks/HISTORY.md, ZARA2 diagnostic);
    # its first two candidates' rows are those of screen 'stand_rate', the same computation (it also ran
    # [0.2, 1, None, 0.08, "standing", 0.25, None, 0.5] and [0.2, 1, None, 0.08, "standing", 0.25, None, 0.5, 1.0]).
    # Screen 'reach' scales the standers' draws' displacements from where they stood by a factor moved by their
    # levels (floor 1/8): on the HOTEL screens their draws stay spread over several of the prior's modes around
    # where they stood, which the prior's width cannot narrow (a frozen check on the univ fold's HOTEL screen,
    # seed 0: standers' calibration error 0.121 as trained, 0.119-0.123 at width 1/2-1/4, 0.087 at reach 1/2). Beside
    # the standers' odds, with and without their own width, and with the odds moved by setting off; first two
    # candidates' rows copied from screen 'stand_rate' as before.
    "screen_name": "reach",
    "candidates": [[0, 1], [0.2, 1, None, 0.08, "standing", 0.25],
                   [0.2, 1, None, 0.08, "standing", None, None, None, None, 0.125],
                   [0.2, 1, None, 0.08, "standing", 0.25, None, None, None, 0.125],
                   [0.2, 1, None, 0.08, "standing", None, None, 0.5, None, 0.125]],
    # The unseen-scene screens: (fold, unseen scene, the variant its screens were trained as), seeds 0-2 each.
    "screens": [["zara1", "eth", "speed_clip_weights"], ["zara1", "univ", "speed_clip_weights"],
                ["zara2", "eth", "speed_clip"], ["hotel", "eth", "faithful_weights"],
                ["eth", "hotel", "speed_clip_weights"], ["univ", "hotel", "faithful_weights"]],
    # Written before any screen ran (a first screen, rates 0.025-0.4 without a floor, is in benchmarks/HISTORY.md),
    # and kept for every screen since: the candidate of the lowest calibration error averaged over the screens
    # (each the mean of its seeds), among those whose KDE NLL is at most `kde_margin` above the model as trained on
    # every screen; if that is not below the model as trained's, none. The screens named in class_guard (written
    # before screen 'odds' ran) also require of a candidate that its calibration errors for standing and for
    # moving agents, each averaged over the screens, be no higher than the model as trained's.
    "rule": {"kde_margin": 0.1, "class_guard": ["odds", "stand_width", "stand_rate", "set_off", "reach"]},
    "variant": "faithful_weights", "scenes": list(SCENES), "seeds": [0, 1, 2],
    # Screens on a scene with more windows forecast a random share of them, in time order, so that each screen
    # takes minutes: the factor then learns from those forecasts only.
    "screen_windows": 2000, "kde_samples": 2000, "calibration_samples": 500, "passes": 5,
    "data": "data/eth_ucy", "runs_dir": "benchmarks/runs", "records": "benchmarks/results/runs",
    "screen_runs": "benchmarks/runs/scene_shift", "output": "benchmarks/results/online_calibration.json",
    "report_only": False})
torch.set_num_threads(min(2, torch.get_num_threads()))
KEYS = ("calibration_error", "calibration_error_standing", "calibration_error_moving", "standing_share", "kde_nll",
        "min_ade_20", "min_fde_20", "min_ade_20_std", "min_fde_20_std", "coverage_50", "coverage_90", "temperature",
        "final_temperature", "factor_1", "windows")


def recordings(data: EthUcyDataModule, split: str, keep: int | None, seed: int) -> list:
    """The split's windows, one Windows per recording; with `keep`, a random share of them summing to about keep."""
    parts = [make_windows(t, 8, 12) for t in data.load_split(split)]
    total = sum(len(p) for p in parts)
    if keep is None or total <= keep:
        return parts
    rng = np.random.default_rng(seed)
    return [p.subset(np.sort(rng.permutation(len(p))[:round(len(p) * keep / total)])) for p in parts]


def tracker_of(candidate: tuple) -> OnlineTemperature | SpeedClassTemperature | WidthOddsTemperature:
    rate, floor, settle, edge, odds, stand_floor, stand_rate, set_off, odds_rate, reach = candidate
    if (set_off is not None or reach is not None) and (edge is None or odds != "standing"):
        sys.exit("set_off and reach need speed_edge= and odds=standing: they act on the standers")
    if reach is not None:
        own = rate if stand_rate is None else stand_rate
        return ReachTemperature(tracker_of((rate, floor, settle, edge, odds, stand_floor, stand_rate, set_off,
                                            odds_rate, None)), OnlineTemperature(own, bounds=(reach, 8.0)))
    tracker = (OnlineTemperature(rate, bounds=(floor, 8.0)) if settle is None
               else SettlingTemperature(rate, bounds=(floor, 8.0), settle=settle))
    odds_tracker = OnlineTemperature(rate, bounds=tuple(cfg.odds_bounds))
    if stand_floor is not None:  # the standers' own spread factor, beside an odds factor that stays 1 without odds
        if edge is None:
            sys.exit("stand_floor needs speed_edge=, the edge below which agents are standers")
        own = rate if stand_rate is None else stand_rate
        odds_own = own if odds_rate is None else odds_rate
        return WidthOddsTemperature((edge,), ("both", "width"), tracker,
                                    replace(odds_tracker, rate=odds_own if odds == "standing" else 0.0),
                                    OnlineTemperature(own, bounds=(stand_floor, 8.0)), set_off)
    if odds is not None:
        edges = () if edge is None else (edge,)
        kinds = ("odds", "width") if odds == "standing" else ("odds",) * (len(edges) + 1)
        odds_tracker = odds_tracker if odds_rate is None else replace(odds_tracker, rate=odds_rate)
        return WidthOddsTemperature(edges, kinds, tracker, odds_tracker, set_off=set_off)
    return tracker if edge is None else SpeedClassTemperature((edge,), tracker)


def scored(sampler_at, parts, candidate: tuple, seed: int) -> dict:
    start = time.perf_counter()
    s = evaluate_online(sampler_at, parts, tracker_of(candidate), kde_samples=cfg.kde_samples,
                        calibration_samples=cfg.calibration_samples, passes=cfg.passes, seed=seed)
    return {**{k: s[k] for k in KEYS if k in s}, "seconds": round(time.perf_counter() - start, 1)}


def model_scored(model, parts, candidate: tuple, seed: int) -> dict:
    """scored for a model, its prior_temperature times each spread factor and its mixture logits divided by each
    odds factor, and given back as trained afterwards (a run that started where the last one ended would start
    from that run's factors)."""
    with width_and_odds(model) as at:
        return scored(with_reach(at) if full(candidate)[-1] is not None else at, parts, candidate, seed)


FIELDS = ("fold", "scene", "model", "seed", "rate", "floor", "settle", "speed_edge", "odds", "stand_floor",
          "stand_rate", "set_off", "odds_rate", "reach", "screen_name")
KNOBS = ("rate", "floor", "settle", "speed_edge", "odds", "stand_floor", "stand_rate", "set_off", "odds_rate", "reach")


def full(candidate) -> tuple:
    """[rate, floor, settle, speed_edge, odds, stand_floor, stand_rate, set_off, odds_rate, reach] with those after
    floor none where left out."""
    return (*candidate, *[None] * (len(KNOBS) - len(candidate)))


def key_of(run: dict) -> tuple:
    return tuple(run.get(k, "rates" if k == "screen_name" else None) for k in FIELDS)


def candidate_of(run: dict) -> tuple:
    return tuple(run.get(k) for k in KNOBS)


def put(results: dict, part: str, run: dict) -> None:
    results[part] = [r for r in results.get(part, []) if key_of(r) != key_of(run)] + [run]


def fields_of(candidate: tuple) -> dict:
    return dict(zip(KNOBS, candidate))


def run_line(run: dict) -> str:
    return (f"{run['fold']} fold on {run['scene']}, {run['model']} seed {run['seed']}, {label(candidate_of(run))}: "
            f"calibration {run['calibration_error']:.3f}, KDE NLL {run['kde_nll']:.2f}, minADE/FDE "
            f"{run['min_ade_20']:.3f} / {run['min_fde_20']:.3f}, mean factor {run['temperature']:.2f} "
            f"({run['seconds']} s)")


def mean(runs: list, key: str) -> float:
    return float(np.mean([r[key] for r in runs]))


def label(candidate: tuple) -> str:
    rate, floor, settle, edge, odds, stand_floor, stand_rate, set_off, odds_rate, reach = full(candidate)
    if rate == 0:
        return "as trained"
    return (f"rate {rate}, floor {floor}" + (f", settle {settle}" if settle is not None else "")
            + (f", speed classes at {edge}" if edge is not None else "")
            + {None: "", "all": ", odds", "standing": ", standers' odds"}[odds]
            + (f", standers' width floor {stand_floor}" if stand_floor is not None else "")
            + (f", standers' rate {stand_rate}" if stand_rate is not None else "")
            + (f", odds by setting off beyond {set_off}" if set_off is not None else "")
            + (f" at rate {odds_rate}" if odds_rate is not None else "")
            + (f", standers' reach floor {reach}" if reach is not None else ""))


def order(candidate: tuple) -> tuple:
    rate, floor, settle, edge, odds, stand_floor, stand_rate, set_off, odds_rate, reach = candidate
    return (rate > 0, settle is not None, odds is not None, edge is not None, str(odds), stand_floor is not None,
            -(stand_floor or 0), stand_rate or 0, set_off is not None, odds_rate or 0, reach is not None, -(reach or 0),
            -floor, rate)


results = json.loads(Path(cfg.output).read_text()) if Path(cfg.output).is_file() else {}
if not cfg.report_only and cfg.stage == "screen":
    for fold, scene, variant in cfg.screens:
        data = EthUcyDataModule(scene=fold, root=cfg.data, val_scene=scene)
        for seed in cfg.seeds:
            ckpt = Path(cfg.screen_runs) / variant / f"{fold}_val_{scene}" / f"seed{seed}" / "checkpoints" / "best.ckpt"
            if not ckpt.is_file():
                sys.exit(f"{ckpt}: missing; train it with benchmarks/scene_shift.py")
            model, parts = load_model(ckpt), recordings(data, "val", cfg.screen_windows, seed)
            for candidate in map(full, cfg.candidates):
                run = {"fold": fold, "scene": scene, "model": variant, "seed": seed, **fields_of(candidate),
                       "screen_name": cfg.screen_name, "checkpoint": str(ckpt), "commit": git_commit(),
                       "hardware": hardware(1), **model_scored(model, parts, candidate, seed)}
                put(results, "screen", run)
                print(run_line(run), flush=True)
                write_json(results, cfg.output)
elif not cfg.report_only:
    if cfg.rate is None:
        sys.exit("stage=test needs rate=<the rate the screen chose> (and its floor=)")
    picked = (cfg.rate, cfg.floor, cfg.settle, cfg.speed_edge, cfg.odds, cfg.stand_floor, cfg.stand_rate,
              cfg.set_off, cfg.odds_rate, cfg.reach)
    chosen = [full([0, 1.0]), picked] if cfg.as_trained else [picked]
    for scene in cfg.scenes:
        data = EthUcyDataModule(scene=scene, root=cfg.data)
        parts = recordings(data, "test", None, 0)
        naive = GaussianConstantVelocity.fit(data.windows("train"), data.windows("val"))
        naive_at = lambda f, odds=1.0: naive.with_factor(naive.factor * f)  # noqa: E731
        # The naive baseline runs the same tracker; it has no modes, so an odds factor leaves it as it is.
        for candidate in chosen if cfg.naive else []:
            run = {"fold": scene, "scene": scene, "model": "naive", "seed": 0, **fields_of(candidate),
                   "commit": git_commit(), "hardware": hardware(1),
                   **scored(naive_at if full(candidate)[-1] is None else with_reach(naive_at), parts, candidate, 0)}
            put(results, "test", run)
            print(run_line(run), flush=True)
            write_json(results, cfg.output)
        for seed in cfg.seeds if cfg.models else []:
            ckpt = recorded_checkpoint(cfg, cfg.variant, scene, seed)
            model = load_model(ckpt)
            for candidate in chosen:
                run = {"fold": scene, "scene": scene, "model": cfg.variant, "seed": seed, **fields_of(candidate),
                       "checkpoint": str(ckpt), "commit": git_commit(), "hardware": hardware(1),
                       **model_scored(model, parts, candidate, seed)}
                put(results, "test", run)
                print(run_line(run), flush=True)
                write_json(results, cfg.output)


def screen_report(name: str, screens: list) -> None:
    """The table of one screen's runs, and the rule's choice among its candidates."""
    candidates = sorted({candidate_of(r) for r in screens}, key=order)
    groups = sorted({(r["fold"], r["scene"], r["model"]) for r in screens})
    cell = {(g, c): [r for r in screens if (r["fold"], r["scene"], r["model"]) == g and candidate_of(r) == c]
            for g in groups for c in candidates}
    print(f"\nUnseen-scene screen '{name}': calibration error / KDE NLL / minADE_20 (mean over seeds)\n")
    print("| fold, on scene | model | seeds | " + " | ".join(label(c) for c in candidates) + " |")
    print("|---|---|---|" + "---|" * len(candidates))
    for g in groups:
        cells = [f"{mean(x, 'calibration_error'):.3f} / {mean(x, 'kde_nll'):.2f} / {mean(x, 'min_ade_20'):.3f}"
                 if (x := cell[(g, c)]) else "" for c in candidates]
        print(f"| {g[0]}, on {g[1]} | {g[2]} | {len(cell[(g, candidates[0])])} | " + " | ".join(cells) + " |")
    complete = [c for c in candidates if all(cell[(g, c)] for g in groups)]
    trained = next((c for c in complete if c[0] == 0), None)
    if trained is not None:
        average = {c: np.mean([mean(cell[(g, c)], "calibration_error") for g in groups]) for c in complete}
        allowed = [c for c in complete if c[0] and all(
            mean(cell[(g, c)], "kde_nll") <= mean(cell[(g, trained)], "kde_nll") + cfg.rule.kde_margin
            for g in groups)]
        print("\nAverage calibration error: " + ", ".join(f"{label(c)} {average[c]:.3f}" for c in complete))
        if all("calibration_error_standing" in r for r in screens):
            by_class = {c: [np.mean([mean(cell[(g, c)], f"calibration_error_{k}") for g in groups])
                            for k in ("standing", "moving")] for c in complete}
            print("Average calibration error standing / moving: "
                  + ", ".join(f"{label(c)} {s:.3f} / {m:.3f}" for c, (s, m) in by_class.items()))
            if name in cfg.rule.class_guard:
                allowed = [c for c in allowed if all(np.array(by_class[c]) <= np.array(by_class[trained]))]
        choice = min(allowed, key=average.get) if allowed else None
        guard = ("; standing and moving errors no higher than as trained" if name in cfg.rule.class_guard else "")
        print(f"Rule (KDE NLL at most {cfg.rule.kde_margin} above the model as trained on every screen{guard}): "
              + (label(choice) if choice is not None and average[choice] < average[trained] else "none"))


all_screens = results.get("screen", [])
for name in sorted(dict.fromkeys(key_of(r)[-1] for r in all_screens), key=lambda n: n != "rates"):  # as run
    screen_report(name, [r for r in all_screens if key_of(r)[-1] == name])
tests = results.get("test", [])
if tests:
    print("\nTest, every window: calibration error (pooled, and standing / moving where recorded) / KDE NLL / "
          "minADE_20 / minFDE_20 (models: mean over seeds; best of 20 over 5 passes); mean factor (spread, and odds "
          "where it moves)\n")
    print("| scene | model | calibration | seeds | calibration error | standing / moving | KDE NLL | "
          "minADE_20 / minFDE_20 | factor |")
    print("|---|---|---|---|---|---|---|---|---|")
    for scene in SCENES:
        for name in sorted({r["model"] for r in tests if r["scene"] == scene}):
            for c in sorted({candidate_of(r) for r in tests if r["scene"] == scene and r["model"] == name}, key=order):
                runs = [r for r in tests if (r["scene"], r["model"]) == (scene, name) and candidate_of(r) == c]
                spread = np.std([r["calibration_error"] for r in runs])
                classes = (f"{mean(runs, 'calibration_error_standing'):.3f} / "
                           f"{mean(runs, 'calibration_error_moving'):.3f}"
                           if all("calibration_error_standing" in r for r in runs) else "")
                odds = f", {mean(runs, 'factor_1'):.2f}" if all("factor_1" in r for r in runs) else ""
                print(f"| {scene} | {name} | {label(c)} | {len(runs)} | {mean(runs, 'calibration_error'):.3f} ± "
                      f"{spread:.3f} | {classes} | {mean(runs, 'kde_nll'):.2f} | {mean(runs, 'min_ade_20'):.3f} / "
                      f"{mean(runs, 'min_fde_20'):.3f} | {mean(runs, 'temperature'):.2f}{odds} |")
