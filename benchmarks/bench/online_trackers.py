"""Online calibrations screened by benchmarks/online_calibration.py that the package does not ship, kept so that
the screen can be run again (benchmarks/HISTORY.md, "Online calibration"): neither beat
cvae_traj.calibration.OnlineTemperature's defaults on the unseen-scene screens (screen 'settle'). Screen 'odds'
ran cvae_traj.calibration.WidthOddsTemperature's kinds, and chose its defaults."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

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

