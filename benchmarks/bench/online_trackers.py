"""Online calibrations screened by benchmarks/online_calibration.py that the package does not ship, kept so that
the screen can be run again (benchmarks/HISTORY.md, "Online calibration"): neither beat
cvae_traj.calibration.OnlineTemperature's defaults on the unseen-scene screens. WidthOddsTemperature (with
width_and_odds) moves the odds of the prior's modes instead of, or beside, their spread."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Categorical, MixtureSameFamily

from cvae_traj.calibration import OnlineTemperature
from cvae_traj.errors import InputError


@dataclass
class SettlingTemperature(OnlineTemperature):
    """OnlineTemperature whose step is rate * settle / (settle + levels observed so far): halved after `settle`
    levels, so that the factor settles where the levels average 0.5 instead of wandering on their noise (a
    stochastic approximation, whose steps shrink as evidence builds up)."""

    settle: float = 200.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.settle > 0:
            raise InputError(f"settle must be a positive count of levels, got {self.settle!r}")

    def step(self) -> float:
        return self.rate * self.settle / (self.settle + self.observed)


@dataclass
class SpeedClassTemperature:
    """One copy of `tracker` per class of agents by observed speed (the length of the last observed step, in the
    tracks' units per step, split at `edges`), each moved by the levels of its own class only: a model's width can
    be off one way for agents standing still and the other way for walkers, which one factor for all averages
    out. A tracker as online_forecasts takes one."""

    edges: tuple[float, ...]
    tracker: OnlineTemperature = field(default_factory=OnlineTemperature)
    trackers: list[OnlineTemperature] = field(init=False)

    def __post_init__(self) -> None:
        self.edges = tuple(float(e) for e in self.edges)
        if not self.edges or any(not e > 0 for e in self.edges) or list(self.edges) != sorted(set(self.edges)):
            raise InputError(f"speed class edges must be positive and increasing, got {self.edges!r}")
        self.trackers = [self.tracker.fresh() for _ in range(len(self.edges) + 1)]

    @property
    def num_classes(self) -> int:
        return len(self.trackers)

    def classes(self, past: Tensor) -> np.ndarray:
        speed = torch.linalg.vector_norm(past[:, -1] - past[:, -2], dim=-1).numpy()
        return np.searchsorted(np.asarray(self.edges), speed, side="right")

    def factors(self, classes: np.ndarray) -> np.ndarray:
        return np.array([self.trackers[c].temperature for c in classes], dtype=np.float64)

    def observe(self, levels, classes) -> list[float]:
        levels, classes = np.asarray(levels, dtype=np.float64).reshape(-1), np.asarray(classes).reshape(-1)
        if len(classes) != len(levels):
            raise InputError(f"{len(levels)} levels with {len(classes)} classes")
        for c, tracker in enumerate(self.trackers):
            tracker.observe(levels[classes == c])
        return [t.temperature for t in self.trackers]

    def fresh(self) -> SpeedClassTemperature:
        return SpeedClassTemperature(self.edges, self.tracker)


def odds_tempered(prior, odds: float):
    """`prior` with its mixture logits divided by `odds`: above 1 the modes' odds even out (more of the draws set off
    or turn), below 1 they sharpen towards the likeliest mode; each mode's own spread unchanged. A single-Gaussian
    prior, or odds 1, comes back as it is."""
    if odds == 1 or not isinstance(prior, MixtureSameFamily):
        return prior
    return MixtureSameFamily(Categorical(logits=prior.mixture_distribution.logits / odds, validate_args=False),
                             prior.component_distribution, validate_args=False)


@contextmanager
def width_and_odds(model) -> Iterator[Callable[..., object]]:
    """sampler_at(width, odds=1) for online_forecasts over a TrajectoryCVAE: its prior's standard deviations times
    `width` (prior_temperature) and its mixture logits divided by `odds`; the model as it was on leaving."""
    cvae = model.cvae
    base, odds_now = cvae.prior_temperature, [1.0]
    cvae.prior = lambda context: odds_tempered(type(cvae).prior(cvae, context), odds_now[0])

    def at(width: float, odds: float = 1.0):
        cvae.prior_temperature, odds_now[0] = base * width, odds
        return model
    try:
        yield at
    finally:
        cvae.prior_temperature = base
        del cvae.prior


@dataclass
class WidthOddsTemperature:
    """Per class of agents by observed speed (the last observed step split at `edges`; none: one class), an
    OnlineTemperature moved by that class's levels alone, acting on the spread (kind "width": the prior's standard
    deviations) or on the odds of the modes (kind "odds": the prior's mixture logits, divided by it). Standers'
    draws are wide or narrow by the odds of setting off (benchmarks/HISTORY.md), which no spread factor reaches.
    `factors` gives (B, 2): each forecast's (width, odds), the one its class does not move at 1."""

    edges: tuple[float, ...]
    kinds: tuple[str, ...]
    width: OnlineTemperature = field(default_factory=OnlineTemperature)
    odds: OnlineTemperature = field(default_factory=lambda: OnlineTemperature(bounds=(0.125, 8.0)))
    trackers: list[OnlineTemperature] = field(init=False)

    def __post_init__(self) -> None:
        self.edges = tuple(float(e) for e in self.edges)
        if any(not e > 0 for e in self.edges) or list(self.edges) != sorted(set(self.edges)):
            raise InputError(f"speed class edges must be positive and increasing, got {self.edges!r}")
        if len(self.kinds) != len(self.edges) + 1 or set(self.kinds) - {"width", "odds"}:
            raise InputError(f"one kind, 'width' or 'odds', per speed class: {len(self.edges) + 1} for edges "
                             f"{self.edges!r}, got {self.kinds!r}")
        self.trackers = [(self.width if kind == "width" else self.odds).fresh() for kind in self.kinds]

    @property
    def num_classes(self) -> int:
        return len(self.trackers)

    def classes(self, past: Tensor) -> np.ndarray:
        speed = torch.linalg.vector_norm(past[:, -1] - past[:, -2], dim=-1).numpy()
        return np.searchsorted(np.asarray(self.edges), speed, side="right")

    def factors(self, classes: np.ndarray) -> np.ndarray:
        out = np.ones((len(classes), 2))
        for c, (kind, tracker) in enumerate(zip(self.kinds, self.trackers)):
            out[classes == c, int(kind == "odds")] = tracker.temperature
        return out

    def observe(self, levels, classes) -> list[float]:
        levels, classes = np.asarray(levels, dtype=np.float64).reshape(-1), np.asarray(classes).reshape(-1)
        if len(classes) != len(levels):
            raise InputError(f"{len(levels)} levels with {len(classes)} classes")
        for c, tracker in enumerate(self.trackers):
            tracker.observe(levels[classes == c])
        return [t.temperature for t in self.trackers]

    def fresh(self) -> WidthOddsTemperature:
        return WidthOddsTemperature(self.edges, self.kinds, self.width, self.odds)
