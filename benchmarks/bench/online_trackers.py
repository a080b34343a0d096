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


class Reached:
    """The draws of `sampler` with each one's displacement from where its agent was last seen (the last observed
    position) times `reach`: below 1 they stay nearer, above 1 they go further. A factor in the space of positions,
    where the prior's width (a factor in the latent) cannot narrow draws spread over several of its modes."""

    def __init__(self, sampler, reach: float) -> None:
        self.sampler, self.reach = sampler, reach

    def sample(self, batch, num_samples: int):
        drawn = self.sampler.sample(batch, num_samples)
        if self.reach == 1.0:
            return drawn
        origin = batch.past[:, -1, None, None].to(drawn)
        return origin + self.reach * (drawn - origin)


def with_reach(sampler_at):
    """sampler_at(width, odds=1, reach=1) from sampler_at(width, odds=1)."""
    return lambda width, odds=1.0, reach=1.0: Reached(sampler_at(width, odds), reach)


class ReachTemperature:
    """`base` (a WidthOddsTemperature) and, for the agents of its classes `reach_classes`, a reach factor (Reached)
    moved by their levels, as a spread factor is: each forecast's factors are base's (width, odds) and its reach."""

    def __init__(self, base: WidthOddsTemperature, reach: OnlineTemperature, reach_classes: tuple[int, ...] = (0,)):
        self.base, self.template, self.reach_classes = base, reach, tuple(reach_classes)
        self.reach = {c: reach.fresh() for c in self.reach_classes}
        self.set_off = base.set_off

    @property
    def num_classes(self) -> int:
        return self.base.num_classes

    def classes(self, past) -> np.ndarray:
        return self.base.classes(past)

    def factors(self, classes: np.ndarray) -> np.ndarray:
        classes = np.asarray(classes, dtype=np.int64)
        reach = np.array([self.reach[c].temperature if c in self.reach else 1.0 for c in range(self.num_classes)])
        return np.column_stack([self.base.factors(classes), reach[classes]])

    def observe(self, levels, classes, departures=None) -> np.ndarray:
        self.base.observe(levels, classes, departures)
        levels, classes = np.asarray(levels, dtype=np.float64).reshape(-1), np.asarray(classes).reshape(-1)
        for c, tracker in self.reach.items():
            tracker.observe(levels[classes == c])
        return self.factors(np.arange(self.num_classes))

    def fresh(self) -> ReachTemperature:
        return ReachTemperature(self.base.fresh(), self.template, self.reach_classes)
