"""Does calibrating the odds online keep them right where the model has them right? The worlds with known odds.

    python benchmarks/online_known_odds.py                       # odds, one factor: every world, seeds 0-2
    python benchmarks/online_known_odds.py speed_edge=0.08 odds=standing 'worlds=[stop_go]'
    python benchmarks/online_known_odds.py speed_edge=0.08 odds=standing stand_floor=0.25   # the package's default
    python benchmarks/online_known_odds.py speed_edge=0.08 odds=standing stand_floor=0.25 set_off=0.5 odds_rate=1

benchmarks/online_calibration.py moves the odds of a model's modes (the prior's mixture logits divided by a factor)
from its own completed forecasts on ETH/UCY, where no one knows the odds. Here they are known. For each world and
seed, the default recipe's run of benchmarks/known_odds.py (its checkpoint, or trained again from its record's
overrides when gone) replays the world's test split in time with the tracker (each window forecast at its last
observed step, its level handed over once its future has happened), and the mode frequencies of 1000 faithful draws
per decision window (cvae_traj.odds.evaluate_odds, the same draws and seed as that benchmark) are measured with the
model as trained and with the factors the replay ended with. A calibration that moves odds must not move them away
from the truth where the model was right: TV as trained against TV after, and the factors it ended with.
Writes benchmarks/results/online_known_odds.json and prints a table.
"""
import json
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from bench.options import options
from bench.provenance import git_commit, hardware
from cvae_traj.calibration import (OnlineTemperature, WidthOddsTemperature, draw_by_factors, online_forecasts,
                                   width_and_odds)
from cvae_traj.data.windows import make_windows
from cvae_traj.forecast import load_model
from cvae_traj.io import write_json
from cvae_traj.odds import evaluate_odds
from cvae_traj.training import train

# stand_floor (with speed_edge and odds=standing): the standers also get a spread factor of their own, this its floor;
# set_off (with stand_floor): their odds factor moves, at odds_rate (none: rate), by whether they set off beyond
# this distance against their draws' share that did (WidthOddsTemperature.set_off), not by the levels.
cfg = options({"rate": 0.2, "floor": 1.0, "speed_edge": None, "odds": "all", "odds_bounds": [0.125, 8.0],
               "stand_floor": None, "set_off": None, "odds_rate": None,
               "variant": "default", "seeds": [0, 1, 2], "worlds": ["junction", "junction_skewed", "speed_odds", "stop_go"],
               "draws": 1000, "calibration_samples": 200, "runs_dir": "benchmarks/runs/known_odds",
               "records": "benchmarks/results/runs/known_odds", "threads": 2,
               "output": "benchmarks/results/online_known_odds.json"})
torch.set_num_threads(cfg.threads)


def tracker_of() -> WidthOddsTemperature:
    edges = () if cfg.speed_edge is None else (cfg.speed_edge,)
    kinds = ("odds", "width") if cfg.odds == "standing" else ("odds",) * (len(edges) + 1)
    if cfg.stand_floor is not None:
        if cfg.odds != "standing" or not edges:
            raise SystemExit("stand_floor needs speed_edge= and odds=standing")
        kinds = ("both", "width")
    elif cfg.set_off is not None:
        raise SystemExit("set_off needs stand_floor=")
    odds_rate = cfg.rate if cfg.odds_rate is None else cfg.odds_rate
    return WidthOddsTemperature(edges, kinds, OnlineTemperature(cfg.rate, bounds=(cfg.floor, 8.0)),
                                OnlineTemperature(odds_rate, bounds=tuple(cfg.odds_bounds)),
                                OnlineTemperature(cfg.rate, bounds=(cfg.stand_floor or 0.25, 8.0)), cfg.set_off)


class ByClass:
    """A model that draws each agent with the factors of its class (as the tracker ended), for evaluate_odds;
    representatives as trained (only the faithful draws' frequencies are read here)."""

    def __init__(self, model, at, tracker: WidthOddsTemperature) -> None:
        self.model, self.at, self.tracker = model, at, tracker
        self.representatives = model.representatives

    def eval(self):
        return self

    def parameters(self):
        return self.model.parameters()

    def sample(self, batch, num_samples: int) -> torch.Tensor:
        return draw_by_factors(self.at, self.tracker.factors(self.tracker.classes(batch.past)), batch, num_samples)


def checkpoint(world: str, seed: int) -> tuple[Path, list]:
    record = json.loads((Path(cfg.records) / cfg.variant / world / f"seed{seed}.json").read_text())
    ckpt = Path(cfg.runs_dir) / cfg.variant / world / f"seed{seed}" / "checkpoints" / "best.ckpt"
    if not ckpt.is_file():
        train(compose(config_name="train", overrides=record["overrides"]))
    return ckpt, record


out = Path(cfg.output)
results = json.loads(out.read_text()) if out.is_file() else {}
odds_rate = cfg.rate if cfg.odds_rate is None else cfg.odds_rate
label = (f"rate {cfg.rate}, odds {cfg.odds}" + (f", speed classes at {cfg.speed_edge}" if cfg.speed_edge else "")
         + (f", standers' width floor {cfg.stand_floor}" if cfg.stand_floor is not None else "")
         + (f", odds by setting off beyond {cfg.set_off} at rate {odds_rate}" if cfg.set_off is not None else ""))
with initialize_config_dir(str(Path("conf").resolve()), version_base="1.3"):
    for world in cfg.worlds:
        for seed in cfg.seeds:
            ckpt, record = checkpoint(world, seed)
            model = load_model(ckpt)
            datamodule = instantiate(compose(config_name="train", overrides=record["overrides"]).data)
            hp = model.hparams
            tracker = tracker_of()
            torch.manual_seed(seed)
            with width_and_odds(model) as at:
                for table in datamodule.load_split("test"):
                    for _ in online_forecasts(at, make_windows(table, hp.obs_len, hp.pred_len), tracker,
                                              cfg.calibration_samples, cfg.calibration_samples):
                        pass
                before = evaluate_odds(model, datamodule, "test", draws=cfg.draws, seed=seed).summary()
                after = evaluate_odds(ByClass(model, at, tracker), datamodule, "test", draws=cfg.draws,
                                      seed=seed).summary()
            final = tracker.factors(np.arange(tracker.num_classes)).tolist()
            results.setdefault(label, {}).setdefault(world, {})[str(seed)] = {
                "as_trained": {k: before[k] for k in ("tv", "coverage")},
                "online": {k: after[k] for k in ("tv", "coverage")}, "final_factors": final,
                "recorded_tv": record["odds"]["tv"], "checkpoint": str(ckpt), "commit": git_commit(),
                "hardware": hardware(1)}
            write_json(results, out)
            print(f"{world} seed {seed}: TV as trained {before['tv']:.3f} (recorded {record['odds']['tv']:.3f}), "
                  f"after the replay {after['tv']:.3f}; factors (width, odds) per class {final}", flush=True)

for name, worlds in results.items():
    print(f"\n{name}: test split, 1000 draws per decision window, mean over seeds\n")
    print("| world | seeds | TV as trained | TV online | all likely modes among 20: as trained / online | "
          "odds factor at the end |\n|---|---|---|---|---|---|")
    for world, runs in worlds.items():
        m = lambda kind, k: np.mean([r[kind][k] for r in runs.values()])  # noqa: E731
        factors = np.mean([np.array(r["final_factors"])[:, 1] for r in runs.values()], axis=0)
        print(f"| {world} | {len(runs)} | {m('as_trained', 'tv'):.3f} | {m('online', 'tv'):.3f} | "
              f"{m('as_trained', 'coverage'):.3f} / {m('online', 'coverage'):.3f} | "
              + " / ".join(f"{f:.2f}" for f in factors) + " |")
