"""Online calibrations screened by benchmarks/online_calibration.py that the package does not ship, kept so that
the screen can be run again (benchmarks/HISTORY.md, "Online calibration"): neither beat
cvae_traj.calibration.OnlineTemperature's defaults on the unseen-scene screens (screen 'settle'). Screens 'odds' and
'stand_width' ran cvae_traj.calibration.WidthOddsTemperature's kinds, and chose its defaults."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cvae_traj.calibration import OnlineTemperature, WidthOddsTemperature
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


class SpeedClassTemperature(WidthOddsTemperature):
    """One copy of `tracker` per class of agents by observed speed (the length of the last observed step, in the
    tracks' units per step, split at `edges`), each moved by the levels of its own class only: a model's width can
    be off one way for agents standing still and the other way for walkers, which one factor for all averages
    out. WidthOddsTemperature with every class's kind "width", and one factor (the spread) per forecast."""

    def __init__(self, edges: tuple[float, ...], tracker: OnlineTemperature | None = None) -> None:
        if not tuple(edges):
            raise InputError(f"speed class edges must be positive and increasing, got {tuple(edges)!r}")
        tracker = OnlineTemperature() if tracker is None else tracker
        super().__init__(tuple(edges), ("width",) * (len(tuple(edges)) + 1), tracker)

    def factors(self, classes: np.ndarray) -> np.ndarray:
        return super().factors(classes)[:, 0]

    def fresh(self) -> SpeedClassTemperature:
        return SpeedClassTemperature(self.edges, self.width)
