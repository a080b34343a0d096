"""Forecast live: frames arrive one at a time, and every agent present gets its futures at once.

    from cvae_traj import LiveForecaster, load_model
    live = LiveForecaster(load_model("checkpoints/eth_ucy/univ.ckpt"), num_samples=20, frame_step=10)
    for frame, rows in detections:          # rows: a data frame with agent_id, x, y (one row per agent)
        futures = live.update(frame, rows)  # predict_futures' long format, for the agents present now

The forecaster keeps, per agent, only the positions of the last T_obs steps, and forgets an agent once it has
not been seen for T_obs steps (it can then be no one's neighbour), so its memory stays flat over an unbounded
stream. An agent is forecast at a frame where it is present with `min_history` consecutive steps behind it (by
default the fewest the model was trained on: T_obs, or 2 for a model trained with model.min_history=2, so
that a newcomer gets futures from its second position). With `newcomer_model=` such a model forecasts only the
agents seen fewer than T_obs steps, and the others keep the whole-history model's futures (NewcomerRouter).

Missed detections: when an agent comes back after at most `max_gap` missed frames, the missing positions are
bridged on the straight line between its last position and the new one, at constant speed, and its track goes
on; after a longer gap its track starts afresh (it is forecast again once it has min_history steps). Bridged
positions are the forecaster's guess, not observations: `bridged` counts them.

For a stream without gaps, each frame's futures equal `predict_futures` on the table of all frames so far, for
the same torch seed (tested).

Calibrating as it goes: with `calibration=WidthOddsTemperature()` the forecaster calibrates its draws at a site
whose walkers its model did not train on: the odds that a standing agent sets off and the spread of its draws,
and the width of a walker's (calibration.WidthOddsTemperature; `OnlineTemperature()` moves one width factor for
everyone). Each agent forecast at step s and present again at step s + T_pred tells its class's factors the
highest-density level at which the agent's position entered the region of its draws' final positions
(metrics.hdr_level, scored exchangeably: unbiased from 20 draws); the factors multiply the model's
prior_temperature and divide its mixture logits (prior_odds) for the next forecasts, and the model is given back
as it was after each. With `WidthOddsTemperature(set_off=0.5)` the standers' odds move instead by how often they
set off (went further than 0.5 m from where they stood by the end of the forecast) against their draws' share that
did. Only positions already seen reach it.

Bad rows (a missing column, a non-numeric, NaN or infinite position, an agent twice
in one frame, a frame off the grid or not after the last) raise InputError naming the frame and the agent, and
leave the forecaster as it was before the call.
"""
from __future__ import annotations

from typing import Iterator, Mapping

import numpy as np
import pandas as pd
import torch

from cvae_traj.calibration import ClassSampler, OnlineTemperature, WidthOddsTemperature, departures, width_and_odds
from cvae_traj.data.current import FrameAgents, trailing_run
from cvae_traj.data.tracks import TrackTable, _checked_columns, _column_names, _id, _num
from cvae_traj.errors import InputError
from cvae_traj.forecast import NewcomerRouter, check_min_history, sample_batches
from cvae_traj.io import FUTURE_COLUMNS
from cvae_traj.metrics import hdr_level
from cvae_traj.system import TrajectoryCVAE

# A ring entry that holds no step: below any step a window can reach back to (steps count from 0 at the first frame).
_NONE = np.iinfo(np.int64).min


class LiveForecaster:
    """Futures per frame from a stream of frames (module docstring).

    Args:
        model: a trained TrajectoryCVAE (load_model).
        num_samples: futures per agent; faithful draws of weight 1/K, or with cluster_from M, K representatives
            of M draws with the share of the draws each stands for (as predict_futures).
        frame_step: frame numbers between the model's steps (10 for ETH/UCY's frame numbers at 0.4 s; 0.4
            for timestamps in seconds). Every frame given must lie on that grid, counted from the first.
        max_gap: missed frames in a row that are bridged rather than starting the agent's track afresh; at most
            T_obs - 2.
        columns: the rows' own names for agent_id, x and y (and frame, where they carry one).
        min_history: consecutive steps an agent needs to be forecast (None: the fewest the model, or the newcomer
            model where given, was trained on).
        runtime: "torch", or "onnxruntime" to draw the futures with the model's exported sampler
            (export.OnnxSampler; the export extra): faster in small crowds, slower in large ones, where the graph
            attends over every neighbour slot (benchmarks/HISTORY.md). The same torch seed gives the same
            futures either way, to float rounding.
        newcomer_model: a model trained with model.min_history, for the agents seen fewer than T_obs steps; those
            seen T_obs steps keep `model`'s futures (forecast.NewcomerRouter).
        calibration: a WidthOddsTemperature or OnlineTemperature to keep the draws calibrated on this stream
            (module docstring; faithful draws from the torch runtime only). It keeps its factors across reset(),
            as the site is the same.
    """

    def __init__(self, model: TrajectoryCVAE, num_samples: int = 20, cluster_from: int | None = None,
                 frame_step: float = 1.0, max_gap: int = 2, columns: Mapping[str, str] | None = None,
                 batch_size: int = 1024, neighbour_budget: int = 2**16, min_history: int | None = None,
                 runtime: str = "torch", newcomer_model: TrajectoryCVAE | None = None,
                 calibration: WidthOddsTemperature | OnlineTemperature | None = None) -> None:
        self.model = model.eval()
        if runtime not in ("torch", "onnxruntime"):
            raise InputError(f"runtime must be 'torch' or 'onnxruntime', got {runtime!r}")
        router = None if newcomer_model is None else NewcomerRouter(self.model, newcomer_model.eval())
        self.min_history = check_min_history(model if newcomer_model is None else newcomer_model, min_history)
        self.obs_len, self.pred_len = model.hparams.obs_len, model.hparams.pred_len
        if not 0 <= max_gap <= self.obs_len - 2:
            raise InputError(f"max_gap must be between 0 and {self.obs_len - 2} (obs_len - 2), got {max_gap}")
        if not frame_step > 0:
            raise InputError(f"frame_step must be positive, got {frame_step}")
        if cluster_from is not None and cluster_from < num_samples:
            raise InputError(f"cluster_from ({cluster_from}) must be at least num_samples ({num_samples})")
        self.num_samples, self.cluster_from, self.frame_step, self.max_gap = num_samples, cluster_from, frame_step, max_gap
        if calibration is not None and not isinstance(calibration, (WidthOddsTemperature, OnlineTemperature)):
            raise InputError(f"live calibration takes a WidthOddsTemperature or an OnlineTemperature, got "
                             f"{type(calibration).__name__}")
        if calibration is not None and (cluster_from is not None or runtime != "torch" or num_samples < 2):
            raise InputError("online calibration needs faithful draws from the torch runtime, at least 2 per agent "
                             "(no cluster_from)")
        self.calibration = calibration
        self._models = [self.model] + ([] if newcomer_model is None else [newcomer_model])
        self.names = _column_names(columns, "live rows")
        self.batch_size, self.neighbour_budget = batch_size, neighbour_budget
        self.sampler = router
        if runtime == "onnxruntime":
            from cvae_traj.export import OnnxSampler  # onnxruntime is an extra

            self.sampler = OnnxSampler(self.model) if router is None else NewcomerRouter(
                self.model, newcomer_model, samplers=(OnnxSampler(self.model), OnnxSampler(newcomer_model)))
        self.reset()

    def reset(self) -> None:
        """Forget every agent and the frame grid: the next frame starts a new stream."""
        self.frame0: float | None = None
        self.last_step: int | None = None
        self.bridged = 0
        self._slot: dict = {}  # agent id -> row of the arrays below
        self._ids: list = []
        length = self.obs_len
        self._pos = np.zeros((0, length, 2), dtype=np.float32)  # ring: step s at index s % obs_len
        self._at = np.zeros((0, length), dtype=np.int64)  # the step each ring entry holds (_NONE: none)
        self._seen = np.zeros(0, dtype=np.int64)  # last step the agent was present
        # step a forecast ends -> (ids, finals (A, K, 2), calibration class of each, position when forecast (A, 2))
        self._open: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}

    @property
    def agents(self) -> list:
        """Ids of the agents the forecaster holds: those seen within the last T_obs steps."""
        return list(self._ids)

    def update(self, frame: float, rows: pd.DataFrame) -> pd.DataFrame:
        """Take the rows of one frame (one per agent present; none if no one is) and return the futures of every
        agent present with T_obs steps behind it, in predict_futures' long format (FUTURE_COLUMNS)."""
        step = self._step_of(frame)
        ids, xy = self._checked_rows(frame, rows)
        if self.frame0 is None:
            self.frame0 = float(frame)
        self._advance(step, ids, xy)
        if self.calibration is None:
            return self._forecast(step, ids)
        self._check_forecasts(step, ids, xy)
        with width_and_odds(self._models, self.sampler) as at:
            drawer = ClassSampler(at, self.calibration, device=next(self.model.parameters()).device)
            futures = self._forecast(step, ids, drawer)
        finals = futures[futures["step"] == self.pred_len]
        if len(finals):
            forecast_ids = finals["agent_id"].to_numpy()[::self.num_samples]
            self._open[step + self.pred_len] = (forecast_ids,
                                                finals[["x", "y"]].to_numpy().reshape(-1, self.num_samples, 2),
                                                np.concatenate(drawer.drawn_classes),
                                                xy[pd.Index(ids).get_indexer(forecast_ids)])
        return futures

    def _check_forecasts(self, step: int, ids: np.ndarray, xy: np.ndarray) -> None:
        """Hand the calibration the levels of the forecasts that end at this step, for the agents present in it;
        forecasts that ended at a step without a frame are dropped unchecked."""
        for done in [s for s in self._open if s <= step]:
            forecast_ids, finals, classes, origins = self._open.pop(done)
            if done < step or not len(ids):
                continue
            where = pd.Index(ids).get_indexer(forecast_ids)
            seen = where >= 0
            if seen.any():
                truth, draws = torch.from_numpy(xy[where[seen]].astype(finals.dtype)), torch.from_numpy(finals[seen])
                levels = hdr_level(draws, truth, exchangeable=True)
                set_off = getattr(self.calibration, "set_off", None)  # a tracker of the user's may have none
                self.calibration.observe(levels.numpy(), classes[seen], None if set_off is None else departures(
                    draws, truth, torch.from_numpy(origins[seen].astype(finals.dtype)), set_off))

    def _step_of(self, frame: float) -> int:
        try:
            frame = float(frame)
        except (TypeError, ValueError):
            raise InputError(f"frame {frame!r} is not a number") from None
        if not np.isfinite(frame):
            raise InputError(f"frame {_num(frame)} is not finite")
        if self.frame0 is None:
            return 0
        grid = (frame - self.frame0) / self.frame_step
        if abs(grid - round(grid)) > 1e-3:
            raise InputError(f"frame {_num(frame)} is off the grid of frames {_num(self.frame0)} + k * "
                             f"{_num(self.frame_step)}")
        step = int(round(grid))
        if step <= self.last_step:
            raise InputError(f"frame {_num(frame)} is not after the last frame given, "
                             f"{_num(self.frame0 + self.last_step * self.frame_step)}")
        return step

    def _checked_rows(self, frame: float, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        source = f"frame {_num(float(frame))}"
        if not isinstance(rows, pd.DataFrame):
            raise InputError(f"{source}: rows must be a pandas DataFrame, got {type(rows).__name__}")
        if len(rows) == 0:
            return np.array([], dtype=object), np.zeros((0, 2))
        names = self.names
        if names["frame"] not in rows.columns:
            rows = rows.assign(**{names["frame"]: float(frame)})
        agent_col, values = _checked_columns(rows.reset_index(drop=True), source, names)
        if not np.all(values["frame"] == float(frame)):
            other = values["frame"][np.argmax(values["frame"] != float(frame))]
            raise InputError(f"{source}: a row carries frame {_num(other)}; give each frame's rows on their own")
        ids = agent_col.to_numpy()
        if pd.api.types.is_float_dtype(agent_col) and (agent_col % 1 == 0).all():
            ids = ids.astype(np.int64)  # ids written as 12.0 are the integer 12, as in a table
        codes, uniques = pd.factorize(ids)
        if len(uniques) < len(ids):
            twice = uniques[np.bincount(codes).argmax()]
            raise InputError(f"{source}: agent {_id(twice)} has more than one row")
        return ids, np.stack([values["x"], values["y"]], axis=1)

    def _advance(self, step: int, ids: np.ndarray, xy: np.ndarray) -> None:
        """Record the frame's positions (the rows are checked: nothing here can fail on them)."""
        self.last_step = step
        # Forget agents that can be no one's neighbour any more: not seen in the last obs_len steps.
        keep = self._seen > step - self.obs_len
        if not keep.all():
            self._ids = [a for a, k in zip(self._ids, keep) if k]
            self._slot = {a: i for i, a in enumerate(self._ids)}
            self._pos, self._at, self._seen = (a[keep] for a in (self._pos, self._at, self._seen))
        new = [a for a in ids if a not in self._slot]
        if new:
            n = len(new)
            self._slot.update({a: len(self._ids) + i for i, a in enumerate(new)})
            self._ids += new
            self._pos = np.concatenate([self._pos, np.zeros((n, self.obs_len, 2), dtype=np.float32)])
            self._at = np.concatenate([self._at, np.full((n, self.obs_len), _NONE, dtype=np.int64)])
            self._seen = np.concatenate([self._seen, np.full(n, step - self.obs_len, dtype=np.int64)])
        for a, position in zip(ids, xy.astype(np.float32)):
            i = self._slot[a]
            missed = step - self._seen[i] - 1
            if 0 < missed <= self.max_gap:  # bridge on the straight line to the new position
                last = self._pos[i, self._seen[i] % self.obs_len]
                for k in range(1, missed + 1):
                    s = self._seen[i] + k
                    self._pos[i, s % self.obs_len] = last + (position - last) * (k / (missed + 1))
                    self._at[i, s % self.obs_len] = s
                self.bridged += missed
            self._pos[i, step % self.obs_len] = position
            self._at[i, step % self.obs_len] = step
            self._seen[i] = step

    def _forecast(self, step: int, ids: np.ndarray, sampler=None) -> pd.DataFrame:
        """The futures of the agents of `ids` ready to be forecast, drawn by `sampler` (None: the forecaster's)."""
        if len(ids) == 0 or not self._ids:
            return pd.DataFrame({c: [] for c in FUTURE_COLUMNS})
        order = np.argsort(pd.factorize(np.asarray(self._ids, dtype=object), sort=True)[0], kind="stable")
        steps = step - self.obs_len + 1 + np.arange(self.obs_len)
        ring = steps % self.obs_len
        held = self._at[order][:, ring] == steps  # (A, T_obs)
        tracks = np.where(held[..., None], self._pos[order][:, ring], np.float32(np.nan)).astype(np.float32)
        present = np.zeros(len(self._ids), dtype=bool)
        present[[self._slot[a] for a in ids]] = True
        # A longer gap is not bridged, so the unheld steps end the agent's run there (its track starts afresh).
        ready = present[order] & (trailing_run(held) >= self.min_history)
        rows = np.flatnonzero(ready)
        if len(rows) == 0:
            return pd.DataFrame({c: [] for c in FUTURE_COLUMNS})
        agents = FrameAgents(tracks, rows, rows)
        size = max(1, min(self.batch_size, self.neighbour_budget // max(agents.crowd, 1)))
        frames = self.frame0 + (step + np.arange(1, self.pred_len + 1)) * self.frame_step
        if float(self.frame0).is_integer() and float(self.frame_step).is_integer():
            frames = frames.astype(np.int64)
        agent_ids = np.asarray(self._ids)[order][rows]
        with torch.no_grad():
            return pd.concat(list(sample_batches(self.model, agent_ids, frames, agents, self.num_samples, size,
                                                 self.cluster_from, sampler or self.sampler)), ignore_index=True)


def replay(model: TrajectoryCVAE, table: TrackTable, num_samples: int = 20, cluster_from: int | None = None,
           max_gap: int = 2, min_history: int | None = None,
           newcomer_model: TrajectoryCVAE | None = None,
           calibration: WidthOddsTemperature | OnlineTemperature | None = None) -> Iterator[tuple[int, pd.DataFrame]]:
    """A recorded table fed to a LiveForecaster step by step, as if live: (step, futures) for every grid step
    from the first at which an agent is forecast to the table's last (futures empty where no one is). Seed
    with torch.manual_seed for repeatable futures."""
    live = LiveForecaster(model, num_samples, cluster_from, frame_step=table.frame_step, max_gap=max_gap,
                          min_history=min_history, newcomer_model=newcomer_model, calibration=calibration)
    order = np.argsort(table.step, kind="stable")
    steps, ids, xy = table.step[order], table.agent_ids[table.agent[order]], table.xy[order]
    bounds = np.searchsorted(steps, np.arange(steps.min(), steps.max() + 2))
    started = False
    for i, step in enumerate(range(int(steps.min()), int(steps.max()) + 1)):
        lo, hi = bounds[i], bounds[i + 1]
        rows = pd.DataFrame({"agent_id": ids[lo:hi], "x": xy[lo:hi, 0], "y": xy[lo:hi, 1]})
        futures = live.update(table.frames(step), rows)
        started = started or len(futures) > 0
        if started:
            yield step, futures
