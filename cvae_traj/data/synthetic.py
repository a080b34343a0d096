"""Built-in worlds whose odds are known: the data to check that sampled futures have the right frequencies.

Every agent walks north along x = 0 towards a decision point at the origin and then follows one of a few
modes, each with a probability that the world knows:
- `junction`: turn left (a quarter circle to the west), go straight or turn right, with fixed odds;
- `speed_odds`: the same junction, but the odds depend on the agent's speed, which the past shows (slow
  walkers turn more often, fast ones go straight), so a prior that ignores x gets them wrong;
- `stop_go`: walk on, or stop at the line and wait longer than the forecast horizon before walking on.
Speeds vary per agent and per step, so futures differ in length too. Agents reach the decision point at
a random step of their track, so windows end at several distances before it.

Besides the track table a world returns `KnownOdds`: each agent's odds of each mode and where it would be
under each mode, from which `decision_windows` finds the windows whose future the mode decides and holds
their true odds (`cvae_traj.odds` compares a model's draws with them).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from cvae_traj.data.datamodule import Split, TrackDataModule
from cvae_traj.data.tracks import TrackTable, validate_tracks
from cvae_traj.data.windows import Windows
from cvae_traj.errors import InputError

WORLDS: Final = ("junction", "speed_odds", "stop_go")
BRANCHES: Final = ("left", "straight", "right")
MODES: Final = {"junction": BRANCHES, "speed_odds": BRANCHES, "stop_go": ("go", "stop")}
# speed_odds: the odds of the slowest and of the fastest walkers; those between mix them by speed.
SLOW_ODDS: Final = (0.6, 0.1, 0.3)
FAST_ODDS: Final = (0.1, 0.8, 0.1)
SPEED_RANGE: Final = (0.9, 1.7)  # m/s, uniform
# A post beside the decision point (metres; the walkers pass it on their right).
POST: Final = (1.0, -0.5)
# Different generator seeds per split: the three splits share no agent.
_SPLIT_SEED_OFFSET: Final = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class KnownOdds:
    """What a generated world knows and a recording never tells, per agent (ids 0 .. A - 1)."""

    modes: tuple[str, ...]
    probs: np.ndarray  # (A, M): the agent's odds of each mode, given what its observed track shows
    mode: np.ndarray  # (A,) the mode it took
    first_frame: np.ndarray  # (A,) frame of its first track step
    decision: np.ndarray  # (A,) track step at which it is first past the decision point
    paths: np.ndarray  # (A, L, M, 2): noise-free position at each track step under each mode

    def decision_windows(self, table: TrackTable, windows: Windows, min_separation: float = 1.0,
                         decided_for: int | None = None) -> DecisionWindows:
        """The windows of `table` whose last observed step comes before the agent's decision and whose final
        step lies at least `min_separation` metres from where any other mode would have put it, so that the
        mode of a sampled future can be told from its final position alone.

        With `decided_for=k` they are instead the windows observed at least k steps past the decision, whose
        odds are certain (1 for the mode the agent took, which its past already shows): a faithful model
        keeps its draws on that mode rather than deciding again. `distance` is then the metres travelled past
        the decision point."""
        agent = table.agent_ids[windows.agent].astype(np.int64)
        last = (table.frame0 + windows.last_step * table.frame_step - self.first_frame[agent]).round().astype(np.int64)
        final = last + windows.pred_len
        chosen = (last < self.decision[agent] if decided_for is None
                  else last >= self.decision[agent] + decided_for)
        anchors = self.paths[agent, np.minimum(final, self.paths.shape[1] - 1)]  # (W, M, 2)
        gaps = np.linalg.norm(anchors[:, :, None] - anchors[:, None], axis=-1)  # (W, M, M)
        gaps[:, np.arange(len(self.modes)), np.arange(len(self.modes))] = np.inf
        keep = np.flatnonzero(chosen & (gaps.min(axis=(1, 2)) >= min_separation))
        mode = self.mode[agent[keep]]
        # Before the decision every mode is at the same place; after it, the agent is on its own mode's path.
        observed = self.paths[agent[keep], last[keep], 0 if decided_for is None else mode]
        probs = self.probs[agent[keep]] if decided_for is None else np.eye(len(self.modes))[mode]
        return DecisionWindows(index=keep, probs=probs, mode=mode, anchors=anchors[keep],
                               distance=np.linalg.norm(observed, axis=-1), modes=self.modes)


@dataclass(frozen=True)
class DecisionWindows:
    """Windows whose future a mode decides, with their true odds: `index` (N,) into the windows they came from."""

    index: np.ndarray  # (N,)
    probs: np.ndarray  # (N, M) true odds
    mode: np.ndarray  # (N,) the mode the agent took
    anchors: np.ndarray  # (N, M, 2) the final position under each mode
    distance: np.ndarray  # (N,) metres from the last observed position to the decision point
    modes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.index)

    def take(self, rows: slice | np.ndarray) -> DecisionWindows:
        """The decision windows at `rows` of these."""
        return DecisionWindows(self.index[rows], self.probs[rows], self.mode[rows], self.anchors[rows],
                               self.distance[rows], self.modes)

    def classify(self, finals: np.ndarray) -> np.ndarray:
        """The mode of each sampled final position, the nearest anchor's: (N, K, 2) -> (N, K) int."""
        return np.linalg.norm(finals[:, :, None] - self.anchors[:, None], axis=-1).argmin(-1)


def generate_world(
    world: str,
    num_agents: int,
    seed: int,
    branch_probs: tuple[float, float, float] = (0.5, 0.3, 0.2),
    stop_prob: float = 0.3,
    track_len: int = 24,
    dt: float = 0.4,
    speed: float = 1.3,
    speed_spread: float = 0.1,
    step_noise: float = 0.05,
    position_noise: float = 0.02,
    turn_radius: float = 2.0,
    agents_per_frame: float = 4.0,
    post_track_len: int | None = 19,
) -> tuple[pd.DataFrame, KnownOdds]:
    """A track table (frame, agent_id, x, y, mode) of `num_agents` walkers in `world`, and its known odds.

    stop_go agents who stop wait at the line for 14 to 20 steps (longer than a 12-step forecast), then walk
    on; every stop_go track is that much longer, whatever its mode, so that a window is as likely to exist
    under either mode and the odds of a window's mode are the agent's.

    A post stands at POST beside the decision point in every frame, so that a model that looks at the other
    agents can tell how far ahead the decision lies (a translation-invariant model sees nothing else that
    says so). It is written as a run of agents of `post_track_len` steps each (mode "post", ids from
    num_agents on), one short of a window, so it is a neighbour but never a window to forecast (None: no post).
    """
    if world not in WORLDS:
        raise InputError(f"world must be one of {', '.join(WORLDS)}, got {world!r}")
    if num_agents < 1 or track_len < 10:
        raise InputError(f"a world needs at least 1 agent and track_len >= 10, got {num_agents} and {track_len}")
    rng = np.random.default_rng(seed)
    if world == "speed_odds":
        agent_speed = rng.uniform(*SPEED_RANGE, num_agents)
        mix = ((agent_speed - SPEED_RANGE[0]) / (SPEED_RANGE[1] - SPEED_RANGE[0]))[:, None]
        probs = (1 - mix) * np.asarray(SLOW_ODDS) + mix * np.asarray(FAST_ODDS)  # (A, 3)
    else:
        agent_speed = speed * (1.0 + speed_spread * rng.standard_normal(num_agents))
        odds = branch_probs if world == "junction" else (1.0 - stop_prob, stop_prob)
        probs = np.broadcast_to(_checked_odds(odds, world), (num_agents, len(odds)))
    # Inverse CDF per agent; the clip keeps a draw above a cumulative sum rounded below 1 on the last mode.
    mode = np.minimum((probs.cumsum(-1) < rng.random((num_agents, 1))).sum(-1), probs.shape[1] - 1)
    pause = rng.integers(14, 21, num_agents) if world == "stop_go" else np.zeros(num_agents, dtype=np.int64)
    longest = track_len + int(pause.max())
    # Arc length walked; the decision point (s = 0) is passed at a random step of the first track_len steps.
    ds = agent_speed[:, None] * dt * (1.0 + step_noise * rng.standard_normal((num_agents, longest)))
    s = np.cumsum(ds, axis=1)
    s -= s[np.arange(num_agents), rng.integers(4, track_len - 4, num_agents)][:, None]
    decision = (s <= 0).sum(axis=1)  # the first step past the point
    if world == "stop_go":
        paths = np.stack([_straight(s), _straight(_paused(s, decision, pause))], axis=2)  # (A, L, 2, 2)
    else:
        paths = np.stack([_turn(s, side, turn_radius) for side in (-1.0, 0.0, 1.0)], axis=2)  # (A, L, 3, 2)
    length = track_len + pause  # whatever the mode, so that no mode has more windows than its odds give it
    xy = paths[np.arange(num_agents), :, mode] + position_noise * rng.standard_normal((num_agents, longest, 2))

    first_frame = np.sort(rng.integers(0, max(1, int(num_agents * track_len / agents_per_frame)), num_agents))
    on_track = np.arange(longest)[None] < length[:, None]  # (A, L)
    agent_of_row = np.broadcast_to(np.arange(num_agents)[:, None], on_track.shape)[on_track]
    names = np.asarray(MODES[world])
    table = pd.DataFrame({
        "frame": (first_frame[:, None] + np.arange(longest))[on_track],
        "agent_id": agent_of_row,
        "x": xy[..., 0][on_track],
        "y": xy[..., 1][on_track],
        "mode": names[mode][agent_of_row],
    })
    if post_track_len is not None:
        table = pd.concat([table, _post(int(table.frame.min()), int(table.frame.max()), post_track_len, num_agents)],
                          ignore_index=True)
    odds = KnownOdds(modes=MODES[world], probs=np.ascontiguousarray(probs), mode=mode, first_frame=first_frame,
                     decision=decision, paths=paths)
    return table, odds


def junction_tracks(num_agents: int, seed: int, branch_probs: tuple[float, float, float] = (0.5, 0.3, 0.2),
                    **kwargs) -> pd.DataFrame:
    """A track table (frame, agent_id, x, y, branch) of walkers through the fixed-odds junction."""
    table, _ = generate_world("junction", num_agents, seed, branch_probs=branch_probs, **kwargs)
    return table.rename(columns={"mode": "branch"})


def _post(first: int, last: int, track_len: int, first_id: int) -> pd.DataFrame:
    """The post's rows: at POST in every frame from `first` to `last`, a new agent id every `track_len` frames."""
    frames = np.arange(first, last + 1)
    return pd.DataFrame({"frame": frames, "agent_id": first_id + (frames - first) // track_len, "x": POST[0],
                         "y": POST[1], "mode": "post"})


def _checked_odds(odds: tuple[float, ...], world: str) -> np.ndarray:
    probs = np.asarray(odds, dtype=np.float64)
    if (probs < 0).any() or not np.isclose(probs.sum(), 1.0):
        what = "branch_probs must be three" if world == "junction" else "stop_prob must be in [0, 1], giving"
        raise InputError(f"{what} non-negative odds summing to 1, got {tuple(float(p) for p in odds)}")
    return probs


def _turn(s: np.ndarray, side: float, radius: float) -> np.ndarray:
    """Positions along the branch `side` (-1 west, 0 straight, +1 east) at arc lengths s (A, L): (A, L, 2)."""
    if side == 0.0:
        return _straight(s)
    arc = np.clip(s, 0.0, np.pi * radius / 2)
    after = np.maximum(s - np.pi * radius / 2, 0.0)
    x = np.where(s > 0, side * (radius * (1 - np.cos(arc / radius)) + after), 0.0)
    y = np.where(s > 0, radius * np.sin(arc / radius), s)
    return np.stack([x, y], axis=-1)


def _straight(s: np.ndarray) -> np.ndarray:
    return np.stack([np.zeros_like(s), s], axis=-1)


def _paused(s: np.ndarray, decision: np.ndarray, pause: np.ndarray) -> np.ndarray:
    """Arc lengths of agents who stop at s = 0 for `pause` steps, then walk on as they walked before."""
    t = np.arange(s.shape[1])[None]
    resumed = np.take_along_axis(s, np.maximum(t - pause[:, None], 0), axis=1)  # the walk, `pause` steps late
    at_line = (t >= decision[:, None]) & (t < (decision + pause)[:, None])
    return np.where(at_line, 0.0, np.where(t < decision[:, None], s, resumed))


class SyntheticDataModule(TrackDataModule):
    """A built-in world with known odds (`world`: junction, speed_odds or stop_go), generated in code.

    `known_odds(split)` and `decision_windows(split)` hold what the world knows, for `cvae_traj.odds`.
    """

    def __init__(
        self,
        world: str = "junction",
        num_train_agents: int = 3000,
        num_val_agents: int = 200,
        num_test_agents: int = 200,
        seed: int = 0,
        branch_probs: tuple[float, float, float] = (0.5, 0.3, 0.2),
        stop_prob: float = 0.3,
        track_len: int = 24,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if world not in WORLDS:
            raise InputError(f"data.world must be one of {', '.join(WORLDS)}, got {world!r}")
        if not 0.0 <= stop_prob <= 1.0:
            raise InputError(f"data.stop_prob must be in [0, 1], got {stop_prob!r}")
        _checked_odds(tuple(branch_probs), "junction")
        self.world, self.seed, self.track_len = world, seed, track_len
        self.num_agents = {"train": num_train_agents, "val": num_val_agents, "test": num_test_agents}
        self.branch_probs, self.stop_prob = tuple(float(p) for p in branch_probs), float(stop_prob)
        self._generated: dict[str, tuple[TrackTable, KnownOdds]] = {}

    def load_split(self, split: Split) -> list[TrackTable]:
        return [self._generate(split)[0]]

    def known_odds(self, split: Split) -> KnownOdds:
        return self._generate(split)[1]

    def decision_windows(self, split: Split, min_separation: float = 1.0,
                         decided_for: int | None = None) -> DecisionWindows:
        """The split's windows that a mode decides, or (decided_for=k) observed k steps past the decision
        (KnownOdds.decision_windows), indexing `windows(split)`."""
        table, odds = self._generate(split)
        if split == "train" and self.augment_reverse:
            raise InputError("decision windows are defined for recordings played forwards (augment_reverse off)")
        return odds.decision_windows(table, self.windows(split), min_separation, decided_for)

    def _generate(self, split: Split) -> tuple[TrackTable, KnownOdds]:
        if split not in self._generated:
            seed = self.seed * 3 + _SPLIT_SEED_OFFSET[split]
            df, odds = generate_world(self.world, self.num_agents[split], seed=seed,
                                      branch_probs=self.branch_probs, stop_prob=self.stop_prob,
                                      track_len=self.track_len, dt=self.dt,
                                      post_track_len=self.obs_len + self.pred_len - 1)
            table = validate_tracks(df, source=f"synthetic {self.world} {split}", frame_step=1)
            self._generated[split] = (table, odds)
        return self._generated[split]
