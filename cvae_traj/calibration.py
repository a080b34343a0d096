"""Calibrate a trained model's spread on recorded tracks of the place it will forecast:

    python -m cvae_traj.calibration ckpt_path=model.ckpt input=site_tracks.csv output=calibrated.ckpt

A model is calibrated on scenes like its training scenes, but on a new site its draws can be too narrow or too
wide: on ETH/UCY the faithful models' 50% regions hold the truth 20-30% of the time on ETH and UNIV, scenes
never trained on, and 55% on HOTEL (benchmarks/HISTORY.md). The width that fits lies in the latent: scaling
every prior component's standard deviation (TrajectoryCVAE's prior_temperature) brings those coverages to their
levels, where scaling the decoder's per-step noise barely moves them. The mixture weights are left alone, so
each mode keeps its odds.

`fit_prior_temperature` tries each factor of a grid on windows whose futures are known and keeps the one whose
sampled final positions are best calibrated (the mean |coverage - level| over the highest-density regions of
levels 0.1 ... 0.9, as evaluation.evaluate_samples scores them). The windows must be disjoint from those the
result is then judged on: calibrate on an earlier stretch of a recording, judge on a later one.

Online, while forecasting: `OnlineTemperature` keeps adjusting the factor from the forecaster's own past
forecasts whose futures have since been observed. For each of them it takes the highest-density level at which
the truth entered the region of its draws (metrics.hdr_level: uniform on [0, 1] for calibrated draws, near 1
for too narrow ones) and moves the log of the factor by `rate` times the mean level less 0.5. Only what has
happened by the time of a forecast reaches it: `evaluate_online` replays recordings so, forecasting each window
at its last observed step with the factor of that moment and handing its level over 12 steps later, when its
future is complete. `WidthOddsTemperature` keeps factors per class of agents by speed: for agents standing
still it moves the odds of the prior's modes (the model's prior_odds divides its mixture logits) and their
spread, for walkers the spread, since a stander's draws are off by how likely it is to set off, which no spread
factor reaches.
"""
from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import hydra
import numpy as np
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig
from torch import Tensor

from cvae_traj.baselines import CALIBRATION_LEVELS
from cvae_traj.cli import KNOWN_FUTURES_OPTIONS, checkpoint_output, known_windows, run_or_exit
from cvae_traj.data.windows import Windows
from cvae_traj.errors import CheckpointError, InputError
from cvae_traj.evaluation import STANDING_STEP, calibration_by_class, evaluate_samples, standing
from cvae_traj.forecast import load_model
from cvae_traj.io import atomic_path
from cvae_traj.metrics import hdr_coverage, hdr_level, kde_nll, min_ade, min_fde
from cvae_traj.system import TrajectoryCVAE

log = logging.getLogger(__name__)
# Factors of the prior's standard deviations tried: 0.5 to 4 in steps of 2 ** 0.25, 1 among them.
TEMPERATURES = tuple(float(t) for t in np.geomspace(0.5, 4.0, 13))


@dataclass(frozen=True)
class TemperatureFit:
    """The factor chosen and the calibration error of each factor tried, on `windows` windows."""

    temperature: float
    errors: dict[float, float]
    windows: int

    def table(self) -> str:
        return "\n".join(f"  prior_temperature {t:.3f}: calibration error {e:.3f}" + ("  <-" if t == self.temperature
                                                                                       else "")
                         for t, e in self.errors.items())


@torch.no_grad()
def fit_prior_temperature(model: TrajectoryCVAE, windows: Windows, temperatures: tuple[float, ...] = TEMPERATURES,
                          samples: int = 500, max_windows: int | None = 2000, seed: int = 0) -> TemperatureFit:
    """The factor of `temperatures` whose `samples` draws per window are best calibrated on `windows`; at most
    `max_windows` of them, drawn at random with `seed`. Every factor is scored on the same noise. The model comes
    back as it was given; set the result with `model.cvae.prior_temperature = fit.temperature`, or write it into
    a checkpoint (`calibrate`)."""
    if len(windows) == 0:
        raise InputError("no windows to calibrate on")
    if not temperatures or min(temperatures) <= 0:
        raise InputError(f"temperatures must be positive factors, got {list(temperatures)}")
    rows = np.arange(len(windows))
    if max_windows is not None and len(rows) > max_windows:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_windows, replace=False))
    subset = windows.subset(rows)
    model.eval()
    device = next(model.parameters()).device
    before = model.cvae.prior_temperature
    errors = {}
    try:
        for t in temperatures:
            model.cvae.prior_temperature = float(t)
            scores = evaluate_samples(model, subset, num_samples=1, kde_samples=0, calibration_samples=samples,
                                      seed=seed, device=device)
            errors[float(t)] = scores["calibration_error"]
    finally:
        model.cvae.prior_temperature = before
    return TemperatureFit(min(errors, key=errors.get), errors, len(rows))


@dataclass
class OnlineTemperature:
    """A spread factor kept calibrated while forecasting (module docstring): `observe` the highest-density levels
    of the truths of forecasts now complete; `temperature` is the factor for the next forecasts. It multiplies
    the spread as trained (a model's prior_temperature, the naive baseline's factor) and starts at 1.

    The defaults are those chosen on ETH/UCY's unseen-scene screens (benchmarks/online_calibration.py): rate 0.2,
    and never narrower than the model as trained (bounds (1, 8)). Letting it narrow calibrated a little better
    where a model was too wide, at a cost in KDE NLL (its draws then miss the odd walker badly). A step that
    shrinks as levels build up, and a factor per class of walking speed, did not do better on those screens.

    For online_forecasts a tracker also sorts forecasts into classes (`classes`), gives each class its factor
    (`factors`) and starts afresh (`fresh`): this one has a single class."""

    rate: float = 0.2
    temperature: float = 1.0
    bounds: tuple[float, float] = (1.0, 8.0)
    observed: int = field(default=0, init=False)
    start: float = field(default=1.0, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.rate >= 0:
            raise InputError(f"the online calibration's rate must be at least 0, got {self.rate!r}")
        low, high = self.bounds
        if not 0 < low <= self.temperature <= high:
            raise InputError(f"the online calibration's temperature {self.temperature!r} must lie within its bounds "
                             f"{self.bounds!r}, which must be positive")
        self.start = self.temperature

    def step(self) -> float:
        """How far log(factor) moves per unit of (mean level - 0.5) at the next observation."""
        return self.rate

    # No tracker of this kind reads whether agents set off (WidthOddsTemperature.set_off): callers hand it none.
    set_off = None

    def observe(self, levels, classes=None, departures=None) -> float:
        """Move the factor by the levels (each in [0, 1]) of the forecasts completed at one step; -> the factor.
        `classes` (those of `classes()`) are all one class here; `departures` are not read."""
        levels = np.asarray(levels, dtype=np.float64).reshape(-1)
        if len(levels):
            if np.isnan(levels).any() or levels.min() < 0 or levels.max() > 1:
                raise InputError("highest-density levels must lie in [0, 1]")
            self.nudge(levels.mean() - 0.5, len(levels))
        return self.temperature

    def nudge(self, signal: float, count: int) -> float:
        """Move log(factor) by step() times `signal` (learnt from `count` forecasts), within the bounds."""
        self.temperature = float(np.clip(math.exp(math.log(self.temperature) + self.step() * signal), *self.bounds))
        self.observed += count
        return self.temperature

    @property
    def num_classes(self) -> int:
        return 1

    def classes(self, past: Tensor) -> np.ndarray:
        """The class of each forecast (B,) from its observed track (B, T_obs, 2)."""
        return np.zeros(len(past), dtype=np.int64)

    def factors(self, classes: np.ndarray) -> np.ndarray:
        """The factor now for forecasts of each class."""
        return np.full(len(classes), self.temperature)

    def fresh(self) -> OnlineTemperature:
        """A copy as it was made, before any observation (for a new recording or site)."""
        return replace(self, temperature=self.start)


@dataclass
class WidthOddsTemperature:
    """Online calibration per class of agents by observed speed (the last observed step split at `edges`, in the
    tracks' units per step): each class has its own factors, moved by that class's levels alone. A class of kind
    "width" has a spread factor (`width`: the prior's standard deviations, as OnlineTemperature does); one of kind
    "odds" a factor on the odds of the prior's modes (`odds`: its mixture logits divided by the factor; above 1 the
    modes' odds even out, below 1 they sharpen); one of kind "both" an odds factor and a spread factor of its own
    (`both_width`), each moved by the same levels. `factors` gives each forecast's (width, odds), a factor its class
    does not have at 1; width_and_odds applies them to a model. `width`, `odds` and `both_width` are templates:
    each class starts from a fresh copy.

    The defaults are those chosen on ETH/UCY's unseen-scene screens (benchmarks/online_calibration.py, screens
    'odds' and 'stand_width'): agents standing (last step under evaluation.STANDING_STEP) get their odds of setting
    off calibrated, within (1/8, 8), and their spread, free to narrow to a quarter; walkers their spread, never
    narrower than as trained. A stander's draws are off by how often the model thinks it sets off, which no spread
    factor reaches, and by how far it goes when it does; a walker's by its width.

    With `set_off` (a distance), the odds factors move by how often agents set off (went further than it from where
    they were by their last future step) against their draws' share that did, and only the spread factors by the
    levels (observe). Not the default: on screen 'set_off' it brought the standers' draws' share of setting off
    nearer the truth on a HOTEL screen (0.166 -> 0.057 where 0.012 set off; seed 0) at about the same average
    calibration error (0.049 against 0.048), with KDE NLL up to 0.11 worse (benchmarks/HISTORY.md).
    """

    edges: tuple[float, ...] = (STANDING_STEP,)
    kinds: tuple[str, ...] = ("both", "width")
    width: OnlineTemperature = field(default_factory=OnlineTemperature)
    odds: OnlineTemperature = field(default_factory=lambda: OnlineTemperature(bounds=(0.125, 8.0)))
    both_width: OnlineTemperature = field(default_factory=lambda: OnlineTemperature(bounds=(0.25, 8.0)))
    set_off: float | None = None
    trackers: list[tuple[OnlineTemperature | None, OnlineTemperature | None]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.edges, self.kinds = tuple(float(e) for e in self.edges), tuple(self.kinds)
        if any(not e > 0 for e in self.edges) or list(self.edges) != sorted(set(self.edges)):
            raise InputError(f"speed class edges must be positive and increasing, got {self.edges!r}")
        if self.set_off is not None and not self.set_off > 0:
            raise InputError(f"the distance at which an agent has set off must be positive, got {self.set_off!r}")
        if len(self.kinds) != len(self.edges) + 1 or set(self.kinds) - {"width", "odds", "both"}:
            raise InputError(f"one kind, 'width', 'odds' or 'both', per speed class: {len(self.edges) + 1} for edges "
                             f"{self.edges!r}, got {self.kinds!r}")
        templates = {"width": (self.width, None), "odds": (None, self.odds), "both": (self.both_width, self.odds)}
        self.trackers = [tuple(None if t is None else t.fresh() for t in templates[kind]) for kind in self.kinds]

    @property
    def num_classes(self) -> int:
        return len(self.trackers)

    def classes(self, past: Tensor) -> np.ndarray:
        """The class of each forecast (B,) from its observed track (B, T_obs, 2)."""
        speed = torch.linalg.vector_norm(past[:, -1] - past[:, -2], dim=-1).cpu().numpy()
        return np.searchsorted(np.asarray(self.edges), speed, side="right")

    def factors(self, classes: np.ndarray) -> np.ndarray:
        """(B, 2): each forecast's (width, odds) now."""
        now = np.array([[1.0 if t is None else t.temperature for t in pair] for pair in self.trackers])
        return now[np.asarray(classes, dtype=np.int64)]

    def observe(self, levels, classes, departures=None) -> np.ndarray:
        """Move each class's factors by the levels of that class's forecasts completed at one step; -> each class's
        (width, odds), (C, 2). With `set_off`, `departures` (B, 2) of those forecasts (calibration.departures:
        whether each agent set off, and its draws' share that did) move the odds factors instead of the levels:
        log(odds) by the odds' rate times the share of the class's agents that set off less their draws' mean share.
        Above 1 the factor evens out the modes' odds, which raises the share of draws that set off wherever the
        modes that stay hold more than an even share of the mass (on the stop_go world, where 65% of the standers
        set off, it still did: 0.64, 0.655 and 0.68 at factors 1/2, 1 and 2; benchmarks/HISTORY.md)."""
        levels, classes = np.asarray(levels, dtype=np.float64).reshape(-1), np.asarray(classes).reshape(-1)
        if len(classes) != len(levels):
            raise InputError(f"{len(levels)} levels with {len(classes)} classes")
        if self.set_off is not None:
            if departures is None:
                raise InputError("a tracker with set_off needs the departures of the forecasts it observes")
            departures = np.asarray(departures, dtype=np.float64).reshape(-1, 2)
            if len(departures) != len(levels):
                raise InputError(f"{len(levels)} levels with {len(departures)} departures")
        for c, (width, odds) in enumerate(self.trackers):
            mine = classes == c
            if width is not None:
                width.observe(levels[mine])
            if odds is not None and self.set_off is None:
                odds.observe(levels[mine])
            elif odds is not None and mine.any():
                odds.nudge(float(departures[mine, 0].mean() - departures[mine, 1].mean()), int(mine.sum()))
        return self.factors(np.arange(self.num_classes))

    def fresh(self) -> WidthOddsTemperature:
        """A copy as it was made, before any observation."""
        return WidthOddsTemperature(self.edges, self.kinds, self.width, self.odds, self.both_width, self.set_off)


def departures(draws: Tensor, truth: Tensor, origin: Tensor, distance: float) -> np.ndarray:
    """(B, 2): whether each agent's `truth` (B, 2) lies more than `distance` from its `origin` (B, 2), its last
    observed position, and the share of its `draws` (B, K, 2) that do: what WidthOddsTemperature.set_off reads."""
    origin = origin.to(draws.dtype).unsqueeze(1)
    went = torch.linalg.vector_norm(truth.to(draws.dtype).unsqueeze(1) - origin, dim=-1)[:, 0] > distance
    drawn = (torch.linalg.vector_norm(draws - origin, dim=-1) > distance).double().mean(dim=1)
    return torch.stack([went.double(), drawn], dim=1).cpu().numpy()


@contextmanager
def width_and_odds(models, sampler=None) -> Iterator[Callable[..., object]]:
    """sampler_at(width, odds=1) for online_forecasts over `models` (a model, or several sampled together): each
    model's prior_temperature times `width` and its prior_odds set to `odds`; returns `sampler` (where another
    object draws with those models: a NewcomerRouter) or the first model. The models as they were on leaving."""
    models = list(models) if isinstance(models, (list, tuple)) else [models]
    base = [(m.cvae.prior_temperature, m.cvae.prior_odds) for m in models]

    def at(width: float, odds: float = 1.0):
        for m, (t, _) in zip(models, base):
            m.cvae.prior_temperature, m.cvae.prior_odds = t * width, odds
        return models[0] if sampler is None else sampler
    try:
        yield at
    finally:
        for m, (t, o) in zip(models, base):
            m.cvae.prior_temperature, m.cvae.prior_odds = t, o


def draw_by_factors(sampler_at: Callable[..., object], settings: np.ndarray, batch, num_samples: int) -> Tensor:
    """`num_samples` draws per agent of `batch` (B, K, T, 2), agent b with `sampler_at(*settings[b])`: the agents
    of each setting (a row of the (B,) or (B, F) factors) drawn together."""
    settings = np.asarray(settings, dtype=np.float64).reshape(len(batch), -1)
    samples = None
    for setting in np.unique(settings, axis=0):
        part = np.flatnonzero((settings == setting).all(axis=1))
        drawn = sampler_at(*map(float, setting)).sample(
            batch if len(part) == len(batch) else batch.select(torch.from_numpy(part)), num_samples)
        if samples is None:
            samples = drawn.new_empty((len(batch), *drawn.shape[1:]))
        samples[torch.from_numpy(part).to(drawn.device)] = drawn
    return samples


class ClassSampler:
    """Draws each agent with the factors its class has in `tracker` now (draw_by_factors), for code that samples
    through one object (forecast.sample_batches, LiveForecaster); the classes of the agents drawn so far are in
    `drawn_classes`, in the order drawn."""

    def __init__(self, sampler_at: Callable[..., object], tracker, device: torch.device | None = None) -> None:
        self.sampler_at, self.tracker, self.device, self.drawn_classes = sampler_at, tracker, device, []

    def sample(self, batch, num_samples: int) -> Tensor:
        classes = self.tracker.classes(batch.past)
        self.drawn_classes.append(classes)
        batch = batch if self.device is None else batch.to(self.device)
        return draw_by_factors(self.sampler_at, self.tracker.factors(classes), batch, num_samples)


def online_forecasts(sampler_at: Callable[[float], object], windows: Windows, tracker: OnlineTemperature,
                     num_samples: int, levels_from: int) -> Iterator[tuple[np.ndarray, np.ndarray, Tensor]]:
    """Replay one recording's windows in time: at each step, first hand `tracker` the levels (from the first
    `levels_from` draws' final positions) of the forecasts whose last future step it is, then forecast the windows
    whose last observed step it is, each with `sampler_at(factor of its class)`. Yields (rows, factor of each row,
    draws (B, K, T, 2)) per step; the truths of windows not yet complete reach nothing but the caller.

    A tracker whose `factors` gives several per forecast, (B, F), has each forecast drawn with
    `sampler_at(*its F factors)` (a spread factor and an odds factor, say) and the (B, F) factors yielded."""
    # end step of each forecast -> (levels, classes, departures or None)
    pending: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]] = {}
    set_off = getattr(tracker, "set_off", None)
    for step in np.unique(windows.last_step):
        for done in sorted(s for s in pending if s <= step):
            done_levels, done_classes, done_departures = zip(*pending.pop(done))
            tracker.observe(np.concatenate(done_levels), np.concatenate(done_classes),
                            None if set_off is None else np.concatenate(done_departures))
        rows = np.flatnonzero(windows.last_step == step)
        batch = windows.batch(rows)
        classes = tracker.classes(batch.past)
        factors = np.asarray(tracker.factors(classes), dtype=np.float64)
        samples = draw_by_factors(sampler_at, factors, batch, num_samples)
        finals, truths = samples[:, :levels_from, -1], batch.future[:, -1]
        pending.setdefault(int(step) + windows.pred_len, []).append(
            (hdr_level(finals, truths).numpy(), classes,
             None if set_off is None else departures(finals, truths, batch.past[:, -1], set_off)))
        yield rows, factors, samples


@torch.no_grad()
def evaluate_online(sampler_at: Callable[[float], object], recordings: list[Windows], tracker: OnlineTemperature,
                    num_samples: int = 20, passes: int = 5, kde_samples: int = 2000, calibration_samples: int = 500,
                    calibration_levels: tuple[float, ...] = CALIBRATION_LEVELS, seed: int = 0) -> dict[str, float]:
    """Forecast each recording as online_forecasts replays it, with `tracker.fresh()` on each (as at a new
    site), and score as evaluation.evaluate_samples does, from one set of max(kde_samples, calibration_samples,
    passes * num_samples) draws per window: KDE NLL of the first kde_samples (0: skipped), calibration of the
    first calibration_samples' final positions (at least 2; the levels the tracker learns from are theirs), and
    best of `num_samples` over `passes` disjoint sets (mean, and std over passes). Also the factor each window was
    forecast with, averaged (`temperature`; with several factors per forecast the first, and `factor_1` ... the
    others), and the factors each recording ended with (of each class in turn), averaged."""
    if calibration_samples < 2:
        raise InputError("online calibration needs at least 2 draws per window for the levels of its truths")
    draws = max(kde_samples, calibration_samples, passes * num_samples)
    torch.manual_seed(seed)
    sums: dict[str, float] = {}
    best = np.zeros((passes, 2))
    count, finals = 0, []
    classes: dict[str, list[Tensor]] = {"standing": [], "moving": []}
    for windows in recordings:
        fresh = tracker.fresh()
        for rows, factors, samples in online_forecasts(sampler_at, windows, fresh, draws, calibration_samples):
            done = windows.subset(rows)
            future = torch.from_numpy(done.future)
            settings = factors.reshape(len(rows), -1)
            values = {"temperature": torch.from_numpy(settings[:, 0])}
            if settings.shape[1] > 1:  # a second factor (the odds factor of bench/online_trackers' trackers)
                values.update({f"factor_{i}": torch.from_numpy(settings[:, i]) for i in range(1, settings.shape[1])})
            if kde_samples:
                values["kde_nll"] = kde_nll(samples[:, :kde_samples], future)
            inside = hdr_coverage(samples[:, :calibration_samples, -1], future[:, -1], calibration_levels)
            still = standing(torch.from_numpy(done.past))
            classes["standing"].append(inside[still])
            classes["moving"].append(inside[~still])
            values.update({f"coverage_{round(100 * a)}": inside[:, i].float()
                           for i, a in enumerate(calibration_levels)})
            for name, value in values.items():
                sums[name] = sums.get(name, 0.0) + value.sum().item()
            for p in range(passes):
                drawn = samples[:, p * num_samples:(p + 1) * num_samples]
                best[p] += (min_ade(drawn, future).sum().item(), min_fde(drawn, future).sum().item())
            count += len(rows)
        finals.append(fresh.factors(np.arange(fresh.num_classes)))
    if count == 0:
        raise InputError("no windows to forecast")
    metrics = {name: total / count for name, total in sums.items()}
    metrics["calibration_error"] = float(np.mean([abs(metrics[f"coverage_{round(100 * a)}"] - a)
                                                  for a in calibration_levels]))
    metrics.update(calibration_by_class(classes, calibration_levels))
    best /= count
    k = num_samples
    final = np.mean(finals, axis=0).reshape(-1)  # per class, each class's factors in turn
    metrics.update({f"min_ade_{k}": float(best[:, 0].mean()), f"min_fde_{k}": float(best[:, 1].mean()),
                    f"min_ade_{k}_std": float(best[:, 0].std()), f"min_fde_{k}_std": float(best[:, 1].std()),
                    "final_temperature": float(final[0]) if len(final) == 1 else [float(f) for f in final],
                    "windows": count, "passes": passes, "kde_samples": kde_samples,
                    "calibration_samples": calibration_samples})
    return metrics


def write_calibrated_checkpoint(source: str | Path, temperature: float, output: str | Path) -> Path:
    """A copy of checkpoint `source` whose model samples with prior_temperature `temperature`, written atomically."""
    content = torch.load(source, map_location="cpu", weights_only=True)
    if not isinstance(content, dict) or "hyper_parameters" not in content:
        raise CheckpointError(f"{source}: not a Lightning checkpoint with hyper-parameters")
    content["hyper_parameters"]["prior_temperature"] = float(temperature)
    with atomic_path(output) as tmp:
        torch.save(content, tmp)
    return Path(output)


def calibrate(cfg: DictConfig) -> TemperatureFit:
    """Fit prior_temperature on every window of cfg.input (a track table as predict.py reads) and write
    cfg.ckpt_path with it to cfg.output. The model's own temperature is replaced, not multiplied."""
    checkpoint_output(cfg.output)
    model = load_model(cfg.ckpt_path)
    hp = model.hparams
    windows = known_windows(cfg, hp, "calibrate against")
    temperatures = tuple(cfg.temperatures) if cfg.temperatures else TEMPERATURES
    fit = fit_prior_temperature(model, windows, temperatures, cfg.samples, cfg.max_windows, cfg.seed)
    log.info("calibration error of %d draws' final positions on %d windows of %s:\n%s", cfg.samples, fit.windows,
             cfg.input, fit.table())
    write_calibrated_checkpoint(cfg.ckpt_path, fit.temperature, cfg.output)
    log.info("wrote %s with prior_temperature %.3f (was %.3f)", cfg.output, fit.temperature,
             hp.get("prior_temperature", 1.0))
    return fit


ConfigStore.instance().store(name="calibrate", node={
    "defaults": [{"override hydra/job_logging": "stdout"}, "_self_"],
    "ckpt_path": "???",
    "input": "???",
    "output": "calibrated.ckpt",
    # null: TEMPERATURES, 0.5 to 4.
    "temperatures": None,
    "samples": 500,
    "max_windows": 2000,
    "seed": 0,
    **KNOWN_FUTURES_OPTIONS,
    "hydra": {"run": {"dir": "."}, "output_subdir": None},
})


@hydra.main(version_base="1.3", config_path=None, config_name="calibrate")
def main(cfg: DictConfig) -> None:
    run_or_exit(lambda: calibrate(cfg))


if __name__ == "__main__":
    main()
