"""Are a model's futures right about how likely each is? Measured on worlds whose odds are known.

On a built-in world (cvae_traj.data.synthetic) every decision window carries the true odds of each mode.
For each such window the model draws many faithful futures; each is given the mode whose final position
is nearest (DecisionWindows.classify), and the sampled mode frequencies are compared with the truth by
total variation, TV = 1/2 sum_m |sampled_m - true_m|. Best-of-K cannot see this: it rewards covering a
mode, not drawing it as often as it happens.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import torch

from cvae_traj.data.synthetic import DecisionWindows, SyntheticDataModule
from cvae_traj.data.datamodule import Split
from cvae_traj.system import TrajectoryCVAE

# A mode this likely must show up among the few futures a user looks at.
COVERAGE_MIN_ODDS = 0.1
# Distance bins (metres, from the last observed position to the decision point) for OddsReport.by_distance.
DISTANCE_BINS = ("0-1", "1-2", "2-3", "3+")


@dataclass(frozen=True)
class OddsReport:
    """Per decision window: true odds, sampled frequencies, mode coverage and the representatives' weights."""

    windows: DecisionWindows
    sampled: np.ndarray  # (N, M) share of the faithful draws in each mode
    covered: np.ndarray  # (N,) share of groups of `coverage_draws` draws holding every mode with odds >= 0.1
    represented: np.ndarray  # (N, M) the representatives' weights summed per mode
    represented_covered: np.ndarray  # (N,) whether the representatives (of weight > 0) hold every likely mode
    draws: int
    coverage_draws: int

    def summary(self) -> dict[str, float]:
        """Means over the decision windows: `tv` of the faithful draws (and `tv_floor`, the TV that a perfect
        sampler's `draws` draws would have, by chance alone), `tv_pooled` of the frequencies over all windows,
        `coverage` (and `coverage_ideal`, a perfect sampler's), `coverage_representatives` and
        `tv_representatives`."""
        truth = self.windows.probs
        return {
            "windows": len(self.windows),
            "tv": float(total_variation(self.sampled, truth).mean()),
            "tv_floor": float(tv_floor(truth, self.draws).mean()),
            "tv_pooled": float(total_variation(self.sampled.mean(0), truth.mean(0))),
            "coverage": float(self.covered.mean()),
            "coverage_ideal": float(ideal_coverage(truth, self.coverage_draws).mean()),
            "coverage_representatives": float(self.represented_covered.mean()),
            "tv_representatives": float(total_variation(self.represented, truth).mean()),
            **{f"true_{m}": float(p) for m, p in zip(self.windows.modes, truth.mean(0))},
            **{f"sampled_{m}": float(p) for m, p in zip(self.windows.modes, self.sampled.mean(0))},
        }

    def by_distance(self) -> dict[str, float | None]:
        """Mean TV of the faithful draws per DISTANCE_BINS bin of distance to the decision point (None: empty)."""
        tv = total_variation(self.sampled, self.windows.probs)
        edges = [float(b.split("-")[0].rstrip("+")) for b in DISTANCE_BINS] + [np.inf]
        bins = np.digitize(self.windows.distance, edges[1:-1])
        return {b: (float(tv[bins == i].mean()) if (bins == i).any() else None) for i, b in enumerate(DISTANCE_BINS)}


def ideal_coverage(probs: np.ndarray, draws: int, min_odds: float = COVERAGE_MIN_ODDS) -> np.ndarray:
    """The chance that `draws` independent draws of the true odds hold every mode of odds >= min_odds, per
    row of probs (N, M), by inclusion-exclusion: sum over subsets T of those modes of (-1)^|T| (1 - p_T)^draws.
    A perfect sampler's coverage: below 1 for rare modes (0.88 for a mode of odds 0.1 in 20 draws)."""
    out = np.zeros(len(probs))
    for i, p in enumerate(probs):
        likely = p[p >= min_odds]
        out[i] = sum((-1) ** r * (1.0 - sum(t)) ** draws for r in range(len(likely) + 1)
                     for t in combinations(likely, r))
    return out


def total_variation(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """1/2 sum |p - q| over the last axis."""
    return 0.5 * np.abs(np.asarray(p) - np.asarray(q)).sum(-1)


def tv_floor(probs: np.ndarray, draws: int, repeats: int = 200, seed: int = 0) -> np.ndarray:
    """The expected TV between `draws` draws of the true odds and the odds themselves, per row of `probs`
    (N, M): what sampling noise alone gives a perfect model."""
    rng = np.random.default_rng(seed)
    counts = np.stack([rng.multinomial(draws, p / p.sum(), size=repeats) for p in probs])  # (N, R, M)
    return total_variation(counts / draws, probs[:, None]).mean(-1)


@torch.no_grad()
def evaluate_odds(
    model: TrajectoryCVAE,
    datamodule: SyntheticDataModule,
    split: Split = "val",
    draws: int = 1000,
    coverage_draws: int = 20,
    representatives: int = 20,
    representative_draws: int = 200,
    batch_size: int = 64,
    seed: int = 0,
    decided_for: int | None = None,
) -> OddsReport:
    """Mode frequencies of `draws` faithful draws per decision window of a built-in world's split, against the
    truth; coverage of the likely modes among `coverage_draws` draws (averaged over the draws cut into groups
    of that many); and the weights of `representatives` representatives of `representative_draws` draws.

    With `decided_for=k` the same is measured on the windows observed k steps past the decision, whose odds
    are 1 for the mode already taken: `tv` is then the share of draws that stray to another mode."""
    if draws % coverage_draws:
        raise ValueError(f"draws ({draws}) must be a multiple of coverage_draws ({coverage_draws})")
    model.eval()
    torch.manual_seed(seed)
    decisions = datamodule.decision_windows(split, decided_for=decided_for)
    windows = datamodule.windows(split)
    device = next(model.parameters()).device
    m = len(decisions.modes)
    sampled, covered, represented, represented_covered = [], [], [], []
    for lo in range(0, len(decisions), batch_size):
        anchors = decisions.take(slice(lo, lo + batch_size))
        batch = windows.batch(anchors.index).to(device)
        finals = model.sample(batch, num_samples=draws)[:, :, -1].cpu().numpy()  # (B, draws, 2)
        mode = anchors.classify(finals)  # (B, draws)
        onehot = np.eye(m)[mode]  # (B, draws, M)
        sampled.append(onehot.mean(1))
        groups = onehot.reshape(len(mode), -1, coverage_draws, m).any(2)  # (B, G, M): mode present in the group
        likely = anchors.probs >= COVERAGE_MIN_ODDS  # (B, M)
        covered.append((groups | ~likely[:, None]).all(-1).mean(-1))
        futures, weights = model.representatives(batch, representatives, representative_draws)
        rep_mode = anchors.classify(futures[:, :, -1].cpu().numpy())  # (B, K)
        held = np.eye(m)[rep_mode] * weights.cpu().numpy()[..., None]  # (B, K, M)
        represented.append(held.sum(1))
        represented_covered.append(((held > 0).any(1) | ~likely).all(-1))
    return OddsReport(windows=decisions, sampled=np.concatenate(sampled), covered=np.concatenate(covered),
                      represented=np.concatenate(represented),
                      represented_covered=np.concatenate(represented_covered), draws=draws,
                      coverage_draws=coverage_draws)
